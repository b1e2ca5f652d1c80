"""The agents' service jails after `site.yml` with the example inventory, on the stand-in FreeBSD host.

The stand-in (tests/standin) is a Linux chroot with doubles of FreeBSD's commands, not FreeBSD: its
Bastille 1.4.4 double builds real jail roots and starts each VNET jail in a network namespace of its
own, so the servers the jails run (doubles of sshd, nginx and ollama, the machine's PostgreSQL) really
listen at the jail's address. Expected values come from the host's plan (/usr/local/etc/warden/plan.json,
written by the same run), never from names derived here.
"""

import json
import os
import re
import subprocess

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NAME = os.environ.get("WARDEN_STANDIN_NAME", "molecule-default")
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
ROOT = os.path.join(BASE, NAME, "root")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")


def sh(*argv, check=True):
    run = subprocess.run([STANDIN, "exec", NAME, "--", *argv], capture_output=True, text=True, check=False)
    if check:
        assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def state():
    return json.loads(subprocess.run([STANDIN, "state", NAME], capture_output=True, text=True, check=True).stdout)


@pytest.fixture(scope="module")
def plan():
    with open(os.path.join(ROOT, "usr/local/etc/warden/plan.json"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def wanted(plan):
    jails = [j for j in plan["jails"] if j["state"] == "present"]
    assert {j["name"] for j in jails} >= {"atlasgit", "atlascms", "atlasllm", "atlasdb", "clawdiegit", "clawdiecms",
                                          "clawdiedb"}
    return jails


def test_every_jail_is_a_running_vnet_jail_on_warden0_with_its_address_and_gateway(state, wanted):
    for jail in wanted:
        got = state["jails"][jail["name"]]
        assert (got["state"], got["vnet"], got["bridge"]) == ("Up", True, "warden0"), jail["name"]
        assert (got["ip"], got["gateway"]) == (jail["cidr"], jail["gateway"]), jail["name"]
        assert got["type"] == ("thick" if jail["thick"] else "thin"), jail["name"]
        # its own stack: the address and the default route inside the jail, as the agent reaches it
        inside = sh("jexec", jail["name"], "ifconfig", "vnet0").stdout
        assert f"inet {jail['ip']} netmask 0xffffff00" in inside, jail["name"]
        assert f"gateway: {jail['gateway']}" in sh("jexec", jail["name"], "route", "-n", "get", "default").stdout
        # every create passed -B and the agent's own gateway
    creates = {c["args"][-4]: c["args"] for c in state["bastille"]["create_calls"]}
    for jail in wanted:
        assert creates[jail["name"]][:4] == ["create", "-B", "-g", jail["gateway"]], creates[jail["name"]]


def test_db_jails_are_thick_with_their_own_sysv_ipc_and_start_at_boot(state, wanted):
    dbs = [j for j in wanted if j["slot"] == "db"]
    assert [j["name"] for j in dbs] == ["atlasdb", "clawdiedb"]
    for jail in dbs:
        conf = state["jails"][jail["name"]]["jail_conf"]
        for param in ("sysvshm", "sysvsem", "sysvmsg"):
            assert re.search(rf"^\s*{param} = new;$", conf, re.M), (jail["name"], param)
        assert state["jails"][jail["name"]]["type"] == "thick"
    for jail in wanted:
        assert sh("bastille", "config", jail["name"], "get", "boot").stdout.strip() == "on", jail["name"]


def test_every_jail_has_its_packages_rc_conf_and_running_services(state, wanted):
    for jail in wanted:
        installed = set(sh("pkg", "-j", jail["name"], "query", "-a", "%n").stdout.split())
        assert set(jail["packages"]) <= installed, jail["name"]
        for var, value in jail["rc_conf"].items():
            assert sh("sysrc", "-j", jail["name"], "-n", var).stdout.strip() == value, (jail["name"], var)
        services = state["jails"][jail["name"]]["services"]
        for service in jail["services"]:
            assert services[service]["running"], (jail["name"], service)
    # what the plan says, spelled out once for the example's atlas
    by_name = {j["name"]: j for j in wanted}
    assert by_name["atlascms"]["packages"] == ["nginx"]
    assert by_name["atlasllm"]["rc_conf"]["ollama_env"] == "OLLAMA_HOST=10.0.1.4:11434"
    assert "postgresql17-server" in by_name["atlasdb"]["packages"]
    assert by_name["atlasdb"]["rc_conf"] == {"postgresql_enable": "YES"}


def test_the_servers_answer_at_their_jail_address(wanted):
    by_slot = {}
    for jail in wanted:
        by_slot.setdefault(jail["slot"], []).append(jail["ip"])
    probe = (
        "import socket, sys, urllib.request\n"
        "kind, ip = sys.argv[1], sys.argv[2]\n"
        "if kind == 'git':\n"
        "    print(socket.create_connection((ip, 22), timeout=10).recv(64).decode())\n"
        "elif kind == 'cms':\n"
        "    print(urllib.request.urlopen(f'http://{ip}/', timeout=10).read().decode())\n"
        "else:\n"
        "    print(urllib.request.urlopen(f'http://{ip}:11434/api/version', timeout=10).read().decode())\n"
    )
    seen = {}
    for slot in ("git", "cms", "llm"):
        for ip in by_slot[slot]:
            seen[(slot, ip)] = sh("/usr/local/bin/python3.11", "-c", probe, slot, ip).stdout
    assert all(out.startswith("SSH-2.0-") for (slot, _ip), out in seen.items() if slot == "git")
    assert all("Welcome to nginx!" in out for (slot, _ip), out in seen.items() if slot == "cms")
    assert all(json.loads(out)["version"] for (slot, _ip), out in seen.items() if slot == "llm")
    assert ("llm", "10.0.1.4") in seen


def test_bastille_configuration_release_and_vnet_ruleset(state, plan):
    conf = sh("cat", "/usr/local/etc/bastille/bastille.conf").stdout
    assert f'bastille_prefix="{plan["bastille"]["prefix"]}"' in conf
    assert f'bastille_jailsdir="{plan["bastille"]["jailsdir"]}"' in conf
    # the stand-in has no pool: Bastille stays off ZFS
    assert 'bastille_zfs_enable="NO"' in conf
    assert sh("stat", "-f", "%Lp %Su", plan["bastille"]["prefix"]).stdout.split() == ["750", "root"]
    assert sh("sysrc", "-n", "bastille_enable").stdout.strip() == "YES"
    assert sh("test", "-f", plan["bastille"]["release_dir"] + "/bin/freebsd-version").returncode == 0
    # ruleset 13 is in devfs.rules and loaded in the kernel, with what a VNET jail needs (pf, bpf)
    assert "[bastille_vnet=13]" in sh("cat", "/etc/devfs.rules").stdout
    rules = sh("devfs", "rule", "-s", "13", "show").stdout
    assert "include 5" in rules and "path bpf* unhide" in rules
    assert "path pf unhide" in sh("devfs", "rule", "-s", "5", "show").stdout
    assert all(re.search(r"devfs_ruleset = 13;", j["jail_conf"]) for j in state["jails"].values())


def _tasks(stdout):
    """(task name, [result lines]) of an ansible-playbook run."""
    sections = re.split(r"^TASK \[(.+?)\](?: \*+)?$", stdout, flags=re.M)
    return [(name, re.findall(r"^(ok|changed|skipping|failed): ", body, re.M))
            for name, body in zip(sections[1::2], sections[2::2], strict=True)]


def test_check_mode_on_the_converged_host_changes_nothing_and_calls_each_module_once():
    plain = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    run = subprocess.run([STANDIN, "run", NAME, "--", "ansible-playbook", "-i",
                          os.path.join(PROJECT, "inventories", "example", "hosts.yml"),
                          os.path.join(PROJECT, "site.yml"), "--check", "--diff"],
                         capture_output=True, text=True, check=False, env=plain)
    assert run.returncode == 0, run.stdout + run.stderr
    tasks = dict(_tasks(run.stdout))
    create = tasks["warden.fleet.jails : Create and start the agents' jails, destroy the removed agents' jails"]
    provision = tasks["warden.fleet.jails : Install and start what runs in each jail"]
    # one result each for the whole host: one module call for seven jails, and nothing to change
    assert create == ["ok"] and provision == ["ok"]
    assert tasks["warden.fleet.jails : List the jails Bastille has"] == ["skipping"]
    assert all(results != ["changed"] for name, results in tasks.items() if name.startswith("warden.fleet.bastille"))
    # every agent's key was there before its jails were provisioned: no missing-key warning on a converged host
    assert "no SSH key for" not in run.stdout + run.stderr


def test_each_git_jail_has_the_agents_account_and_bare_repository(wanted):
    for jail in (j for j in wanted if j["slot"] == "git"):
        [account] = jail["accounts"]
        entry = sh("jexec", jail["name"], "pw", "usershow", account["name"]).stdout.strip().split(":")
        assert (entry[0], entry[8], entry[9]) == (account["name"], account["home"], account["shell"])
        for repo in account["repositories"]:
            bare = sh("jexec", "-l", "-U", account["name"], jail["name"], "git", "-C", f"{account['home']}/{repo}",
                      "rev-parse", "--is-bare-repository").stdout.strip()
            assert bare == "true", (jail["name"], repo)
        assert account["authorized_key"]["from"] == jail["gateway"]


def test_the_first_converge_put_each_agents_own_key_in_its_git_jail_and_no_other(plan, wanted):
    # Molecule's idempotence step ran before verify and changed nothing: the key and authorized_keys below are
    # what the first converge made (the agents' users and keys come before their jails in site.yml).
    public = {}
    for name, agent in plan["agents"].items():
        if agent["state"] != "present":
            continue
        key = agent["ssh_key"]
        assert sh("stat", "-f", "%Su:%Sg %Lp", key["dir"]).stdout.split() == [f"root:{agent['user']['group']}", "750"]
        assert sh("stat", "-f", "%Su %Lp", key["private"]).stdout.split() == [name, "600"]
        assert sh("stat", "-f", "%Su %Lp", key["public"]).stdout.split() == [name, "644"]
        public[name] = sh("cat", key["public"]).stdout.strip()
        assert public[name].startswith("ssh-ed25519 ") and public[name].endswith(f" {key['comment']}")
        # the agent can use its private key: its public half, derived as the agent, is the published one
        derived = sh("su", "-m", name, "-c", f"/usr/bin/ssh-keygen -y -f {key['private']}").stdout.split()
        assert derived[:2] == public[name].split()[:2], name
        # and cannot replace it: .ssh is root's
        assert sh("su", "-m", name, "-c", f"/bin/mv {key['private']} {key['private']}.old", check=False).returncode != 0
    assert len(set(public.values())) == len(public) >= 2
    for jail in (j for j in wanted if j["slot"] == "git"):
        [account] = jail["accounts"]
        keys = sh("jexec", "-l", "-U", account["name"], jail["name"], "cat",
                  f"{account['home']}/.ssh/authorized_keys").stdout.splitlines()
        restrictions = "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty"
        assert keys == [f'from="{jail["gateway"]}",{restrictions} {public[jail["agent"]]}'], jail["name"]
        # another agent's key is not accepted there
        assert not any(other in line for line in keys for agent, other in public.items() if agent != jail["agent"])


def test_each_agent_pins_its_git_jails_host_key_and_reaches_it_as_git(plan, wanted):
    git_jails = {j["name"]: j for j in wanted if j["slot"] == "git"}
    for name, agent in plan["agents"].items():
        if agent["state"] != "present":
            continue
        key = agent["ssh_key"]
        [host] = key["hosts"]
        assert host["jail"] in git_jails and host["ip"] == git_jails[host["jail"]]["ip"]
        for path in (key["known_hosts"], key["config"]):
            assert sh("stat", "-f", "%Su:%Sg %Lp", path).stdout.split() == [f"root:{agent['user']['group']}", "640"]
        # the jail's own sshd host key, made by its rc.d/sshd, is the one pinned for its address
        host_key = sh("jexec", host["jail"], "cat", host["host_key"]).stdout.split()[:2]
        pinned = sh("su", "-m", name, "-c", f"/usr/bin/ssh-keygen -F {host['ip']} -f {key['known_hosts']}").stdout
        assert " ".join([host["ip"], *host_key]) in pinned, name
        # as the agent, ssh(1) reads its config (it refuses a ~/.ssh/config others can write) and resolves `git`
        resolved = sh("su", "-m", name, "-c", "/usr/bin/ssh -G git").stdout
        options = dict(line.split(" ", 1) for line in resolved.splitlines())
        assert (options["hostname"], options["user"], options["stricthostkeychecking"]) == (host["ip"], "git", "true")
        assert options["identityfile"] == key["private"] and options["userknownhostsfile"] == key["known_hosts"]

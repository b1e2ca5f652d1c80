"""Verify the stand-in FreeBSD host after `site.yml` with the example inventory.

The stand-in (tests/standin) is a Linux chroot with doubles of FreeBSD's
commands, not FreeBSD.  Tests read it two ways: testinfra's chroot backend
(files, commands run inside it) and `standin state` (the simulated kernel:
interfaces, PF, jails, services, users, packages).

Every role that site.yml applies must have tests here (see ROLE_TESTS).
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import testinfra
import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NAME = os.environ.get("WARDEN_STANDIN_NAME", "molecule-default")
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
ROOT = os.path.join(BASE, NAME, "root")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")

# roles of site.yml -> the tests below that check what each leaves on the host
ROLE_TESTS = {
    "preflight": ["test_preflight_rejects_a_bad_inventory_before_anything_changes"],
    "host_tools": ["test_host_tools_installed_the_warden_command"],
    "backup_schedule": ["test_backup_schedule_installed_a_working_cron_job"],
    "lock": ["test_lock_was_released_and_only_the_mutex_is_left"],
    "registry": ["test_registry_lists_the_inventory_agents"],
    # reboot, check mode, adding and removing an agent: test_network.py on a stand-in of its own
    "network": ["test_network_warden0_carries_every_gateway_and_rc_conf_persists_them"],
    "pf": ["test_pf_anchor_nat_and_isolation_on_the_converged_host"],
    # services, packages, addresses, devfs, check mode: test_jails.py on this host; removal: tests/standin
    "bastille": ["test_bastille_bootstrapped_the_release_and_starts_jails_at_boot"],
    "jails": ["test_every_jail_of_the_plan_is_up_on_warden0"],
    # reaching it from the agent and from a neighbour, createdb/createrole, -vvv, reboot: test_postgresql.py
    "postgresql": ["test_postgresql_serves_every_agent_its_role_and_databases"],
    # layout, souls, env files, shared files, re-runs, a new soul version: test_agents.py
    "shared_files": ["test_shared_files_are_root_owned_and_read_only_for_agents"],
    "agent_user": ["test_agent_users_own_private_workspaces"],
    "agent_soul": ["test_agent_souls_are_installed_at_their_pinned_commit"],
    "agent_env": ["test_agent_env_files_are_private_and_hold_the_database_password"],
    # status, log, database, tmux: test_agent_service.py; stop, locks, restarts, reboot: tests/standin
    "agent_service": ["test_agent_service_runs_every_example_agent_as_its_user"],
    # removing agents (three set absent, nothing left but backups): test_lock_and_registry.py; a live process,
    # a damaged backup, jails gone in an earlier run, planted links: tests/standin/test_agent_removal.py
    "agent_remove": ["test_agent_remove_left_every_present_agent_whole"],
}


@pytest.fixture(scope="module")
def standin():
    return testinfra.get_host(ROOT, connection="chroot")


@pytest.fixture(scope="module")
def state():
    out = subprocess.run([STANDIN, "state", NAME], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def example_host():
    with open(os.path.join(PROJECT, "inventories", "example", "hosts.yml"), encoding="utf-8") as fh:
        inv = yaml.safe_load(fh)
    name, hostvars = next(iter(inv["warden_hosts"]["hosts"].items()))
    return name, hostvars


def site_roles():
    roles = []

    def walk(path):
        with open(path, encoding="utf-8") as fh:
            plays = yaml.safe_load(fh) or []
        for play in plays:
            if "ansible.builtin.import_playbook" in play:
                walk(os.path.join(os.path.dirname(path), play["ansible.builtin.import_playbook"]))
            for r in play.get("roles", []):
                roles.append((r["role"] if isinstance(r, dict) else r).split(".")[-1])
            tasks(play.get("tasks", []) + play.get("pre_tasks", []) + play.get("post_tasks", []))

    def tasks(task_list):
        for t in task_list or []:
            for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                if key in t:
                    roles.append(t[key]["name"].split(".")[-1])
            for section in ("block", "rescue", "always"):
                tasks(t.get(section))

    walk(os.path.join(PROJECT, "site.yml"))
    return sorted(set(roles))


def test_every_role_of_site_yml_is_verified():
    missing = [r for r in site_roles() if r not in ROLE_TESTS]
    assert not missing, f"roles applied by site.yml without verify tests in molecule/default: {missing}"
    for tests in ROLE_TESTS.values():
        for t in tests:
            assert t in globals(), t


def test_the_host_is_the_standin(standin, state):
    assert state["standin"] is True and "not FreeBSD" in state["label"]
    assert standin.file("/etc/STANDIN").exists
    out = standin.check_output("/usr/local/bin/python3.11 -c 'import platform; print(platform.system())'")
    assert out.strip() == "FreeBSD"


def test_preflight_rejects_a_bad_inventory_before_anything_changes(tmp_path):
    # A second stand-in, an inventory with one bad value: site.yml must fail
    # in preflight and leave that host exactly as it was brought up.
    name = NAME + "-bad"
    inv = tmp_path / "hosts.yml"
    with open(os.path.join(PROJECT, "inventories", "example", "hosts.yml"), encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    host = next(iter(data["warden_hosts"]["hosts"].values()))
    host["warden_agents"]["atlas"]["subnet"] = "10.0.300"
    inv.write_text(yaml.safe_dump(data))
    subprocess.run([STANDIN, "up", name], check=True, capture_output=True)
    try:
        before = json.loads(subprocess.run([STANDIN, "state", name], check=True, capture_output=True,
                                           text=True).stdout)
        run = subprocess.run([STANDIN, "run", name, "--", "ansible-playbook", "-i", str(inv),
                              os.path.join(PROJECT, "site.yml")], capture_output=True, text=True, check=False)
        assert run.returncode != 0
        assert "10.0.300" in run.stdout
        after = json.loads(subprocess.run([STANDIN, "state", name], check=True, capture_output=True,
                                          text=True).stdout)
        for key in ("rc_conf", "cron_d", "users", "packages", "pf", "jails", "services", "interfaces"):
            assert after[key] == before[key], key
        root = os.path.join(BASE, name, "root")
        assert not os.path.exists(os.path.join(root, "usr/local/bin/warden"))
        assert not os.path.exists(os.path.join(root, "usr/local/etc/warden"))
    finally:
        subprocess.run([STANDIN, "down", name], check=True, capture_output=True)


def test_host_tools_installed_the_warden_command(standin, example_host):
    warden = standin.file("/usr/local/bin/warden")
    assert warden.exists and warden.user == "root" and warden.mode == 0o755
    assert warden.content_string.splitlines()[0] == "#!/usr/local/bin/python3.11"
    # the backup library is the collection's module_utils/backup package; the single file of earlier releases is gone
    assert standin.file("/usr/local/lib/warden/warden_backup/__init__.py").exists
    assert not standin.file("/usr/local/lib/warden/warden_backup.py").exists
    plan_file = standin.file("/usr/local/etc/warden/plan.json")
    assert plan_file.mode == 0o600
    plan = json.loads(plan_file.content_string)
    host, hostvars = example_host
    assert plan["host"] == host
    assert sorted(plan["agents"]) == sorted(hostvars["warden_agents"])
    out = standin.check_output("/usr/local/bin/warden --plan /usr/local/etc/warden/plan.json list")
    for agent in hostvars["warden_agents"]:
        assert re.search(rf"^{agent}\s+present", out, re.M), out


def test_backup_schedule_installed_a_working_cron_job(standin, state):
    assert list(state["cron_d"]) == ["warden-backup"]
    lines = [x for x in state["cron_d"]["warden-backup"].splitlines() if x and not x.startswith("#")]
    jobs = [x for x in lines if not re.match(r"^[A-Z]+=", x)]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 6)
    assert fields[:6] == ["17", "3", "*", "*", "*", "root"]  # schedule from the plan's defaults, system format
    command = fields[6].split(">>")[0].strip()
    assert command.startswith("/usr/bin/lockf -k -t 0 /var/run/warden-backup.lock /usr/local/bin/warden ")
    # the scheduled command runs on the host as cron would run it
    result = standin.run(command)
    assert result.rc == 0, result.stderr


def test_lock_was_released_and_only_the_mutex_is_left(standin):
    # the run released the host lock in its always section; the flock(2) mutex file stays, empty
    assert not standin.file("/var/run/warden/fleet.lock").exists
    assert standin.file("/var/run/warden").mode == 0o700


def test_registry_lists_the_inventory_agents(standin, example_host):
    registry = standin.file("/var/db/warden/registry.json")
    assert registry.user == "root" and registry.mode == 0o600
    data = json.loads(registry.content_string)
    assert sorted(data["agents"]) == sorted(example_host[1]["warden_agents"])
    assert all(a["state"] == "present" for a in data["agents"].values())


def test_network_warden0_carries_every_gateway_and_rc_conf_persists_them(standin, state):
    # the example's agents: atlas on 10.0.1, clawdie on 192.168.72
    assert state["warden0"]["kind"] == "bridge" and state["warden0"]["up"]
    assert sorted(state["warden0"]["inet"]) == ["10.0.1.1/24", "192.168.72.1/24"]
    rc_conf = state["rc_conf"]
    clone = rc_conf["cloned_interfaces"].split()[-1]
    assert rc_conf[f"ifconfig_{clone}_name"] == "warden0"
    assert rc_conf["ifconfig_warden0_aliases"] == "inet 10.0.1.1/24 inet 192.168.72.1/24"
    assert rc_conf["gateway_enable"] == "YES"
    pfil = standin.check_output("sysctl -n net.link.bridge.pfil_member net.link.bridge.pfil_bridge")
    assert pfil.split() == ["1", "1"]
    assert "net.link.bridge.pfil_member=1" in standin.file("/etc/sysctl.conf").content_string


def test_pf_anchor_nat_and_isolation_on_the_converged_host(standin, state, example_host):
    # the operator-file, rejected-ruleset, check-mode and reboot cases: test_pf.py on a stand-in of its own
    pf = state["pf"]
    assert pf["enabled"] is True and state["rc_conf"]["pf_enable"] == "YES"
    fleet = pf["anchors"]["warden/fleet"]
    agents = {n: a for n, a in example_host[1]["warden_agents"].items() if a.get("state", "present") == "present"}
    assert sorted(fleet["tables"]["warden_net"]) == sorted(f"{a['subnet']}.0/24" for a in agents.values())
    assert fleet["nat"] == ["nat on vtnet0 inet from <warden_net> to any -> (vtnet0) round-robin"]
    assert 'anchor "warden/*" all' in pf["anchors"]["/"]["rules"]
    assert 'load anchor "warden/fleet" from "/etc/pf.warden.conf"' in standin.file("/etc/pf.conf").content_string
    if not state.get("warden0"):
        return      # isolation is decided on the bridge: packet checks need the network role's warden0
    import sys
    sys.path.insert(0, os.path.join(PROJECT, "tests", "standin"))
    from pf_eval import PF
    evaluator = PF.from_host(NAME)
    a, b = sorted(str(x["subnet"]) for x in agents.values())[:2]

    def verdict(src, dst, proto="tcp", dport=None, iface="warden0", **kw):
        return evaluator.filter(src, dst, proto=proto, dport=dport, iface=iface, direction="in", **kw).action

    assert verdict(f"{a}.2", "198.51.100.7", dport=443) == "pass"
    assert evaluator.translate(f"{a}.2", "198.51.100.7", proto="tcp", dport=443, iface="vtnet0",
                               direction="out").address is not None
    assert verdict(f"{a}.2", f"{a}.1", "icmp", icmp_type=8) == "pass"
    assert verdict(f"{a}.2", f"{a}.1", "udp", 53) == "pass"
    assert verdict(f"{a}.2", f"{b}.2", dport=22) == "block"
    assert verdict(f"{a}.2", f"{a}.1", dport=22) == "block"
    assert verdict("203.0.113.9", "192.0.2.10", dport=22, iface="vtnet0") == "pass"


def test_jails_were_created_with_an_explicit_gateway(state):
    # Bastille takes the host's default route without -g: the collection must
    # always pass it (checked on every `bastille create` the run made).
    assert state["bastille"]["all_creates_passed_gateway"] is True
    for name, jail in state["jails"].items():
        assert jail["gateway"] != state["default_route"], name


def test_bastille_bootstrapped_the_release_and_starts_jails_at_boot(standin, state):
    plan = json.loads(standin.file("/usr/local/etc/warden/plan.json").content_string)
    assert standin.file(plan["bastille"]["release_dir"] + "/bin/freebsd-version").is_file
    assert standin.file(plan["bastille"]["prefix"]).mode == 0o750
    assert state["services"]["bastille"]["enabled"] is True


def test_every_jail_of_the_plan_is_up_on_warden0(standin, state):
    plan = json.loads(standin.file("/usr/local/etc/warden/plan.json").content_string)
    present = [j for j in plan["jails"] if j["state"] == "present"]
    assert len(present) == 7
    for jail in present:
        got = state["jails"][jail["name"]]
        wanted = ("Up", "warden0", jail["cidr"], jail["gateway"])
        assert (got["state"], got["bridge"], got["ip"], got["gateway"]) == wanted, jail["name"]


def test_postgresql_serves_every_agent_its_role_and_databases(standin, state):
    plan = json.loads(standin.file("/usr/local/etc/warden/plan.json").content_string)
    dbs = [a["db"] for a in plan["agents"].values() if a["state"] == "present" and a["db"]]
    assert len(dbs) == 2
    for db in dbs:
        served = state["jails"][db["jail"]]["postgresql"]
        assert db["role"] in served["roles"], db["jail"]
        assert set(db["databases"].values()) <= set(served["databases"]), db["jail"]


def test_no_process_of_the_run_is_left_behind(state):
    # only supervised services may run; nothing else the converge started
    service_pids = {pid for s in state["services"].values() for pid in s["pids"]}
    # and the services each jail's own rc runs (sshd, nginx, ollama, PostgreSQL)
    service_pids |= {pid for j in state["jails"].values() for s in (j.get("services") or {}).values()
                     for pid in s["pids"]}
    # with their process trees: an agent's service is daemon(8), timeout(1) as the reaper, the session
    # helper, the agent's tmux server and the agent itself, all descendants of the service's supervisor
    children = {}
    for p in state["processes"]:
        children.setdefault(p["ppid"], []).append(p["pid"])
    todo = list(service_pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in service_pids:
                service_pids.add(child)
                todo.append(child)
    strays = [p for p in state["processes"]
              if p["pid"] not in service_pids and not re.search(r"daemon|timeout", " ".join(p["cmdline"]))]
    assert strays == []


def _changed_tasks(stdout):
    """Names of the tasks an ansible-playbook run reports as changed."""
    sections = re.split(r"^TASK \[(.+?)\](?: \*+)?$", stdout, flags=re.M)
    tasks = zip(sections[1::2], sections[2::2], strict=True)
    return [name for name, body in tasks if re.search(r"^changed: ", body, re.M)]


def test_adding_an_agent_changes_only_what_lists_the_agents(tmp_path, standin, example_host):
    # Last in this file: it converges the host once more with a third agent,
    # then puts the example back.
    host, hostvars = example_host
    added = tmp_path / "hosts.yml"
    hermes = {"subnet": "10.0.2", "jails": ["git"], "command": "/usr/local/bin/agent-runtime", "port": 18810}
    agents = dict(hostvars["warden_agents"], hermes=hermes)
    added.write_text(yaml.safe_dump({"warden_hosts": {"hosts": {host: dict(hostvars, warden_agents=agents)}}}))
    cron_before = standin.file("/usr/local/etc/cron.d/warden-backup").content_string

    plain = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")

    def site(inventory):
        return subprocess.run([STANDIN, "run", NAME, "--", "ansible-playbook", "-i", str(inventory),
                               os.path.join(PROJECT, "site.yml")], capture_output=True, text=True, check=False,
                              env=plain)

    try:
        run = site(added)
        assert run.returncode == 0, run.stdout + run.stderr
        assert _changed_tasks(run.stdout) == [
            "warden.fleet.registry : Register this inventory's agents and read every agent the host runs",
            "warden.fleet.network : Bring up the agents' bridge with every agent's gateway",
            "warden.fleet.network : Rename it to the bridge's name, bring it up with the gateways, and forward",
            "warden.fleet.pf : Install and load the agents' PF anchor, referenced from pf.conf",
            # the new agent's user, home and key come before its jails: its git jail gets the key at once
            "warden.fleet.agent_user : Create the agents' missing groups",
            "warden.fleet.agent_user : Create or correct the agents' users",
            "warden.fleet.agent_user : Lay out every agent's home and workspace",
            "warden.fleet.jails : Create and start the agents' jails, destroy the removed agents' jails",
            "warden.fleet.jails : Install and start what runs in each jail",
            "warden.fleet.agent_user : Pin each agent's git jail host key and write its ssh config",
            "warden.fleet.agent_env : Write every agent's environment file",
            "warden.fleet.agent_service : Install the agents' rc.d scripts, their log rotation and the session helper",
            "warden.fleet.agent_service : Enable the agents that are not enabled yet",
            "warden.fleet.agent_service : Start, restart or stop the agents' services",
            "warden.fleet.host_tools : Install the warden command, its backup library and the host's plan"]
        plan = json.loads(standin.file("/usr/local/etc/warden/plan.json").content_string)
        assert sorted(plan["agents"]) == sorted(agents)
        assert plan["agents"]["hermes"]["jails"][0]["name"] == "hermesgit"
        # on its first run hermes's git jail already takes hermes's own key
        [git] = plan["agents"]["hermes"]["jails"][0]["accounts"]
        hermes_key = standin.file(plan["agents"]["hermes"]["ssh_key"]["public"]).content_string.strip()
        keys = standin.check_output(f"jexec -l -U {git['name']} hermesgit cat {git['home']}/.ssh/authorized_keys")
        assert keys.endswith(f" {hermes_key}") and keys.count("ssh-ed25519") == 1
        assert standin.file("/usr/local/etc/cron.d/warden-backup").content_string == cron_before
    finally:
        restored = site(os.path.join(PROJECT, "inventories", "example", "hosts.yml"))
    assert restored.returncode == 0, restored.stdout
    # an inventory that omits hermes leaves it registered (removed only by state: absent, test_lock_and_registry)
    assert _changed_tasks(restored.stdout) == [
        "warden.fleet.host_tools : Install the warden command, its backup library and the host's plan"]
    registry = json.loads(standin.file("/var/db/warden/registry.json").content_string)
    assert sorted(registry["agents"]) == sorted(agents)


def test_agent_service_runs_every_example_agent_as_its_user(standin, state, example_host):
    for agent, spec in example_host[1]["warden_agents"].items():
        if spec.get("state", "present") != "present":
            continue
        assert state["rc_conf"][f"{agent}_enable"] == "YES"
        assert standin.run(f"service {agent} status").rc == 0
        child = int(standin.file(f"/var/run/{agent}.child.pid").content_string)
        uid = int(standin.check_output(f"id -u {agent}"))
        assert [p["uid"] for p in state["processes"] if p["pid"] == child] == [uid]


def test_agent_remove_left_every_present_agent_whole(standin, state, example_host):
    plan = _runtime_plan(example_host)
    for name, agent in plan["agents"].items():
        assert agent["state"] == "present"
        assert name in state["users"] and name in state["groups"]
        for path in (agent["paths"]["workspace"], agent["paths"]["state"], agent["paths"]["env_file"],
                     agent["paths"]["soul"], agent["service"]["rc_script"]):
            assert standin.file(path).exists, path
        assert os.path.isfile(os.path.expanduser(agent["db"]["password_file"])), name
    # nothing of a removed agent is staged for removal either
    assert not standin.run("ls -a /usr/local/warden/agents /usr/local/warden/souls | grep -F .warden-removing-").stdout


def _runtime_plan(example_host):
    """The converged plan: the example inventory with molecule's shared files (plan.json changes in later tests)."""
    spec = importlib.util.spec_from_file_location(
        "warden_fleet_model", os.path.join(PROJECT, "plugins", "module_utils", "fleet_model.py"))
    model = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, model)  # its dataclasses look their module up
    spec.loader.exec_module(model)
    shared = os.path.join(PROJECT, "inventories", "example", "shared")
    return model.plan_or_raise(example_host[0], dict(example_host[1], warden_shared_files={"src": shared}))


def test_shared_files_are_root_owned_and_read_only_for_agents(standin, example_host):
    plan = _runtime_plan(example_host)
    shared = standin.file(plan["shared_files"]["dir"])
    assert (shared.user, shared.mode) == ("root", 0o755)
    tools = standin.file(f"{plan['shared_files']['dir']}/TOOLS.md")
    assert (tools.user, tools.mode) == ("root", 0o644)
    for name, agent in plan["agents"].items():
        assert standin.file(f"{agent['paths']['workspace']}/shared").linked_to == plan["shared_files"]["dir"]
        write = standin.run(f"su -m {name} -c 'echo x >> {agent['paths']['workspace']}/shared/TOOLS.md'")
        assert write.rc != 0, f"{name} could write a shared file"


def test_agent_users_own_private_workspaces(standin, state, example_host):
    for name, agent in _runtime_plan(example_host)["agents"].items():
        assert state["users"][name]["home"] == agent["paths"]["home"]
        workspace = standin.file(agent["paths"]["workspace"])
        assert (workspace.user, workspace.group, workspace.mode) == (name, agent["user"]["group"], 0o700)
        assert standin.file(f"{agent['paths']['workspace']}/MEMORY.md").is_file


def test_agent_souls_are_installed_at_their_pinned_commit(standin, example_host):
    for agent in _runtime_plan(example_host)["agents"].values():
        soul = agent["soul"]
        installed = standin.check_output(f"git -C {soul['dest']} rev-parse HEAD")
        # create.yml serves the example's souls from bare repositories in /var/tmp/souls
        bare = f"/var/tmp/souls/{os.path.basename(soul['repo'])}"
        pinned = standin.check_output(f"git -C {bare} rev-parse 'refs/tags/{soul['version']}^{{commit}}'")
        assert installed == pinned and standin.file(f"{agent['paths']['workspace']}/SOUL.md").size > 0


def test_agent_env_files_are_private_and_hold_the_database_password(standin, example_host):
    for name, agent in _runtime_plan(example_host)["agents"].items():
        env = standin.file(agent["paths"]["env_file"])
        assert (env.user, env.mode) == (name, 0o600)
        assert "WARDEN_DB_PASSWORD='" in env.content_string and f"WARDEN_DB_USER='{name}'" in env.content_string

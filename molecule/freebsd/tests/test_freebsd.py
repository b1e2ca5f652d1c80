"""Verify a real FreeBSD 14 host after `site.yml` with the example inventory.

Runs through Molecule's testinfra verifier over SSH (molecule/freebsd), as root (sudo where the
scenario logs in as another user). Checks what the stand-in host cannot: FreeBSD's own rc.subr,
sysrc, pfctl parser, jail(8)/Bastille, VNET, sshd and git over SSH, procctl-based whole-tree stop.
Every role of site.yml must have tests here, as in molecule/default.
"""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
INVENTORY = os.path.join(PROJECT, "inventories", "example", "hosts.yml")

# roles of site.yml -> the tests below that check what each leaves on the host
ROLE_TESTS = {
    "preflight": ["test_preflight_rejects_a_bad_inventory_before_anything_changes"],
    "host_tools": ["test_host_tools_installed_the_warden_command"],
    "backup_schedule": ["test_backup_schedule_installed_a_working_cron_job"],
    "lock": ["test_lock_was_released"],
    "registry": ["test_registry_lists_the_inventory_agents"],
    "network": ["test_warden0_carries_every_gateway_and_rc_conf_keeps_them"],
    "pf": ["test_pf_runs_the_warden_anchor_with_nat_and_the_agents_table"],
    "bastille": ["test_bastille_bootstrapped_the_release_and_starts_jails_at_boot"],
    "jails": ["test_every_jail_of_the_plan_runs_as_a_vnet_jail_on_warden0",
              "test_each_agent_reaches_its_git_jail_over_ssh_and_no_other"],
    "postgresql": ["test_each_agent_reaches_its_own_database_and_nothing_more"],
    "shared_files": ["test_shared_files_are_root_owned_and_read_only_for_agents"],
    "agent_user": ["test_agent_users_own_private_workspaces"],
    "agent_soul": ["test_agent_souls_are_installed_at_their_pinned_commit"],
    "agent_env": ["test_agent_env_files_are_private_and_hold_the_database_password"],
    "agent_service": ["test_agent_services_run_as_their_users_and_stop_their_whole_tree"],
    "agent_remove": ["test_agent_remove_left_every_present_agent_whole"],
}


def _site_roles():
    roles = []

    def walk(path):
        with open(path, encoding="utf-8") as fh:
            for play in yaml.safe_load(fh) or []:
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


@pytest.fixture(scope="module")
def root(host):
    with host.sudo():
        yield host


@pytest.fixture(scope="module")
def plan():
    """The converged plan: the example inventory with the scenario's shared files (inventory/host_vars)."""
    spec = importlib.util.spec_from_file_location(
        "warden_fleet_model", os.path.join(PROJECT, "plugins", "module_utils", "fleet_model.py"))
    model = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, model)  # its dataclasses look their module up
    spec.loader.exec_module(model)
    with open(INVENTORY, encoding="utf-8") as fh:
        name, hostvars = next(iter(yaml.safe_load(fh)["warden_hosts"]["hosts"].items()))
    shared = os.path.join(PROJECT, "inventories", "example", "shared")
    return model.plan_or_raise(name, dict(hostvars, warden_shared_files={"src": shared}))


@pytest.fixture(scope="module")
def agents(plan):
    present = {n: a for n, a in plan["agents"].items() if a["state"] == "present"}
    assert len(present) == 2, "the example has two agents"
    return present


def test_every_role_of_site_yml_is_verified():
    assert [r for r in _site_roles() if r not in ROLE_TESTS] == []
    for tests in ROLE_TESTS.values():
        for t in tests:
            assert t in globals(), t


def test_the_host_is_freebsd_14(host):
    assert host.system_info.type == "freebsd"
    assert host.check_output("freebsd-version -u").startswith("14.")
    assert host.file("/usr/local/bin/python3.11").exists


def test_preflight_rejects_a_bad_inventory_before_anything_changes(root, tmp_path):
    """site.yml with one bad value fails in preflight and leaves rc.conf, PF and the plan as they were."""
    def snapshot():
        return (root.check_output("sha256 -q /etc/rc.conf"), root.run("pfctl -sr").stdout,
                root.check_output("sha256 -q /usr/local/etc/warden/plan.json"), root.check_output("jls name"))

    with open(INVENTORY, encoding="utf-8") as fh:
        hostvars = next(iter(yaml.safe_load(fh)["warden_hosts"]["hosts"].values()))
    bad = dict(hostvars["warden_agents"])
    bad["atlas"] = dict(bad["atlas"], subnet="10.0.300")
    extra = tmp_path / "bad.json"
    extra.write_text(json.dumps({"warden_agents": bad}))
    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    before = snapshot()
    playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    run = subprocess.run([playbook, "-i", inventory, "-e", f"@{extra}", os.path.join(PROJECT, "site.yml")],
                         capture_output=True, text=True, check=False,
                         env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg")))
    assert run.returncode != 0 and "10.0.300" in run.stdout, run.stdout[-2000:]
    assert snapshot() == before


def test_host_tools_installed_the_warden_command(root, agents):
    warden = root.file("/usr/local/bin/warden")
    assert warden.exists and warden.user == "root" and warden.mode == 0o755
    assert warden.content_string.splitlines()[0] == "#!/usr/local/bin/python3.11"
    assert root.file("/usr/local/etc/warden/plan.json").mode == 0o600
    out = root.check_output("/usr/local/bin/warden --plan /usr/local/etc/warden/plan.json list")
    for agent in agents:
        assert re.search(rf"^{agent}\s+present", out, re.M), out


def test_backup_schedule_installed_a_working_cron_job(root):
    text = root.file("/usr/local/etc/cron.d/warden-backup").content_string
    jobs = [x for x in text.splitlines() if x and not x.startswith("#") and not re.match(r"^[A-Z]+=", x)]
    assert len(jobs) == 1
    command = jobs[0].split(None, 6)[6].split(">>")[0].strip()
    assert command.startswith("/usr/bin/lockf -k -t 0 ")
    assert root.run(command).rc == 0


def test_lock_was_released(root):
    assert not root.file("/var/run/warden/fleet.lock").exists
    assert root.file("/var/run/warden").mode == 0o700


def test_registry_lists_the_inventory_agents(root, agents):
    registry = root.file("/var/db/warden/registry.json")
    assert registry.user == "root" and registry.mode == 0o600
    assert sorted(json.loads(registry.content_string)["agents"]) == sorted(agents)


def test_warden0_carries_every_gateway_and_rc_conf_keeps_them(root, agents):
    out = root.check_output("ifconfig warden0")
    assert re.search(r"^\s+groups: bridge", out, re.M), out
    gateways = sorted(re.findall(r"^\s+inet (\S+) netmask 0xffffff00", out, re.M))
    assert gateways == sorted(a["gateway"] for a in agents.values()), out
    assert root.check_output("sysrc -n gateway_enable") == "YES"
    assert root.check_output("sysctl -n net.link.bridge.pfil_member").strip() == "1"


def test_pf_runs_the_warden_anchor_with_nat_and_the_agents_table(root, agents):
    assert "Status: Enabled" in root.check_output("pfctl -s info")
    assert root.check_output("sysrc -n pf_enable") == "YES"
    table = root.check_output("pfctl -a warden/fleet -t warden_net -T show").split()
    assert sorted(table) == sorted(f"{a['subnet']}.0/24" for a in agents.values())
    assert "nat on " in root.check_output("pfctl -a warden/fleet -sn")
    assert 'anchor "warden/*"' in root.check_output("pfctl -sr")


def test_bastille_bootstrapped_the_release_and_starts_jails_at_boot(root, plan):
    assert root.file(plan["bastille"]["release_dir"] + "/bin/freebsd-version").is_file
    assert root.file(plan["bastille"]["prefix"]).mode == 0o750
    assert root.check_output("sysrc -n bastille_enable") == "YES"


def test_every_jail_of_the_plan_runs_as_a_vnet_jail_on_warden0(root, plan):
    running = root.check_output("jls name").split()
    present = [j for j in plan["jails"] if j["state"] == "present"]
    assert len(present) == 7
    for jail in present:
        name = jail["name"]
        assert name in running, name
        assert root.check_output(f"jls -j {name} vnet") == "new", name
        inside = root.check_output(f"jexec {name} ifconfig")
        assert f"inet {jail['ip']} " in inside, (name, inside)
        route = root.check_output(f"jexec {name} route -n get default")
        assert f"gateway: {jail['gateway']}" in route, (name, route)
    db = [j for j in present if j["slot"] == "db"]
    for jail in db:
        assert root.check_output(f"jls -j {jail['name']} sysvshm") == "new", jail["name"]


def _as_agent(root, agent, script):
    """script run by /bin/sh as the agent's user, with its HOME, in /tmp (su -m: root's shell reads the -c)."""
    inner = f"cd /tmp && HOME={shlex.quote(agent['paths']['home'])} && export HOME && {script}"
    return root.run(f"su -m {agent['user']['name']} -c {shlex.quote('/bin/sh -c ' + shlex.quote(inner))}")


def test_each_agent_reaches_its_git_jail_over_ssh_and_no_other(root, agents):
    """git over SSH as the agent, with the key, known_hosts and `Host git` the run wrote; not as a neighbour."""
    for name, agent in agents.items():
        listed = _as_agent(root, agent, f"git ls-remote git:{name}.git")
        assert listed.rc == 0, listed.stderr
        for other, peer in agents.items():
            if other != name:
                # the neighbour's git jail does not take this agent's key
                [theirs] = peer["ssh_key"]["hosts"]
                refused = _as_agent(root, agent, (
                    f"ssh -i {agent['ssh_key']['private']} -o BatchMode=yes -o ConnectTimeout=5 "
                    f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null git@{theirs['ip']} "
                    f"git-upload-pack {other}.git"))
                assert refused.rc != 0, (name, other)


def test_each_agent_reaches_its_own_database_and_nothing_more(root, plan, agents):
    """As the agent, with only its environment file: psql at its db jail's address; no database of its own
    making, no neighbour's server."""
    if root.run("command -v psql").rc != 0:
        root.check_output(f"pkg install -y postgresql{plan['postgresql_version']}-client")

    def psql(agent, host, database, sql):
        return _as_agent(root, agent, (
            f". {shlex.quote(agent['paths']['env_file'])} && PGPASSWORD=$WARDEN_DB_PASSWORD PGCONNECT_TIMEOUT=5 "
            f"psql -X -At -h {host} -U \"$WARDEN_DB_USER\" -d {database} -c {shlex.quote(sql)}"))

    for name, agent in agents.items():
        db = agent["db"]
        out = psql(agent, "\"$WARDEN_DB_HOST\"", "\"$WARDEN_DB_OPS\"",
                   "select current_user || chr(32) || current_database() || chr(32) || host(inet_server_addr())")
        assert out.rc == 0, out.stderr
        assert out.stdout.split() == [db["role"], db["databases"]["ops"], db["host"]]
        created = psql(agent, "\"$WARDEN_DB_HOST\"", "\"$WARDEN_DB_OPS\"", "create database warden_test")
        assert created.rc != 0 and "permission denied" in created.stderr, created.stderr
        for other, peer in agents.items():
            if other != name:
                crossed = psql(agent, peer["db"]["host"], "postgres", "select 1")
                assert crossed.rc != 0, (name, other)


def test_shared_files_are_root_owned_and_read_only_for_agents(root, plan, agents):
    shared = root.file(plan["shared_files"]["dir"])
    assert (shared.user, shared.mode) == ("root", 0o755)
    for name, agent in agents.items():
        assert root.file(f"{agent['paths']['workspace']}/shared").linked_to == plan["shared_files"]["dir"]
        write = root.run(f"su -m {name} -c 'echo x >> {agent['paths']['workspace']}/shared/TOOLS.md'")
        assert write.rc != 0, f"{name} could write a shared file"


def test_agent_users_own_private_workspaces(root, agents):
    for name, agent in agents.items():
        assert root.user(name).home == agent["paths"]["home"]
        workspace = root.file(agent["paths"]["workspace"])
        assert (workspace.user, workspace.group, workspace.mode) == (name, agent["user"]["group"], 0o700)
        assert root.file(f"{agent['paths']['workspace']}/MEMORY.md").is_file
        key = root.file(agent["ssh_key"]["private"])
        assert (key.user, key.mode) == (name, 0o600)
        assert (root.file(agent["ssh_key"]["dir"]).user, root.file(agent["ssh_key"]["dir"]).mode) == ("root", 0o750)


def test_agent_souls_are_installed_at_their_pinned_commit(root, agents):
    for agent in agents.values():
        soul = agent["soul"]
        installed = root.check_output(f"git -C {soul['dest']} rev-parse HEAD")
        # prepare.yml serves the example's souls from bare repositories in /var/tmp/souls
        bare = f"/var/tmp/souls/{os.path.basename(soul['repo'])}"
        assert installed == root.check_output(f"git -C {bare} rev-parse 'refs/tags/{soul['version']}^{{commit}}'")
        assert root.file(f"{agent['paths']['workspace']}/SOUL.md").size > 0


def test_agent_env_files_are_private_and_hold_the_database_password(root, agents):
    for name, agent in agents.items():
        env = root.file(agent["paths"]["env_file"])
        assert (env.user, env.mode) == (name, 0o600)
        assert "WARDEN_DB_PASSWORD='" in env.content_string and f"WARDEN_DB_USER='{name}'" in env.content_string


def test_agent_services_run_as_their_users_and_stop_their_whole_tree(root, agents):
    """FreeBSD's rc.subr, daemon(8) and timeout(1)'s reaper: the agent's tmux server detaches from its
    session, and stop must still leave no process of the agent's user; start brings it back."""
    for name in agents:
        assert root.check_output(f"sysrc -n {name}_enable") == "YES"
        assert root.run(f"service {name} status").rc == 0
        assert root.run(f"pgrep -U {name} tmux").rc == 0
        root.check_output(f"service {name} stop")
        assert root.run(f"pgrep -U {name}").rc == 1, root.run(f"ps -U {name} -o pid,ppid,command").stdout
        root.check_output(f"service {name} start")
        assert root.run(f"service {name} status").rc == 0


def test_agent_remove_left_every_present_agent_whole(root, agents):
    for name, agent in agents.items():
        assert root.user(name).exists and root.group(name).exists
        for path in (agent["paths"]["workspace"], agent["paths"]["state"], agent["paths"]["env_file"],
                     agent["paths"]["soul"], agent["service"]["rc_script"]):
            assert root.file(path).exists, path

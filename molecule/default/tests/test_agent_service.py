"""The agents' rc.d services on the converged stand-in (site.yml with the example inventory).

The example agents run /usr/local/bin/agent-runtime, the scenario's test runtime
(molecule/default/files/agent-runtime, installed by create.yml): it prints who it
is and waits.  Molecule's idempotence step is the second run with changed=0.
Stop, leftovers, stale locks, restarts and reboot: tests/standin/test_agent_service.py.
"""

import json
import os
import subprocess
import time

import pytest
import testinfra
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(os.path.join(HERE, "..", "..", ".."))
NAME = os.environ.get("WARDEN_STANDIN_NAME", "molecule-default")
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
ROOT = os.path.join(BASE, NAME, "root")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")


@pytest.fixture(scope="module")
def standin():
    return testinfra.get_host(ROOT, connection="chroot")


@pytest.fixture(scope="module")
def agents():
    with open(os.path.join(PROJECT, "inventories", "example", "hosts.yml"), encoding="utf-8") as fh:
        inv = yaml.safe_load(fh)
    hostvars = next(iter(inv["warden_hosts"]["hosts"].values()))
    return sorted(n for n, a in hostvars["warden_agents"].items() if a.get("state", "present") == "present")


def state():
    out = subprocess.run([STANDIN, "state", NAME], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_every_example_agent_is_enabled_and_runs_as_its_user(standin, agents):
    st = state()
    for agent in agents:
        assert st["rc_conf"][f"{agent}_enable"] == "YES"
        script = standin.file(f"/usr/local/etc/rc.d/{agent}")
        assert script.exists and script.user == "root" and script.mode == 0o555
        status = standin.run(f"service {agent} status")
        assert status.rc == 0 and status.stdout.startswith(f"{agent} is running as pid "), status.stdout
        uid = int(standin.check_output(f"id -u {agent}"))
        child = int(standin.file(f"/var/run/{agent}.child.pid").content_string)
        procs = {p["pid"]: p for p in st["processes"]}
        assert procs[child]["uid"] == uid and procs[child]["jail"] is None
        # the runtime itself, in the agent's tmux session, as the agent
        runtime = [p for p in st["processes"] if p["uid"] == uid and p["cmdline"] == ["sleep", "2147483647"]]
        assert len(runtime) == 1, [p for p in st["processes"] if p["uid"] == uid]
        assert standin.run(f"su -m {agent} -c 'tmux -L {agent} has-session -t ={agent}'").rc == 0


def test_every_agents_log_has_its_runtime_output(standin, agents):
    for agent in agents:
        deadline = time.time() + 20
        log = standin.file(f"/var/log/{agent}.log")
        while time.time() < deadline and f"agent-runtime {agent} up as {agent}" not in log.content_string:
            time.sleep(0.5)
        assert f"agent-runtime {agent} up as {agent} in /usr/local/warden/agents/{agent}/workspace" \
            in log.content_string
        assert log.user == "root" and log.mode == 0o600
        rotation = standin.file(f"/usr/local/etc/newsyslog.conf.d/warden-{agent}.conf").content_string
        assert f"/var/log/{agent}.log\troot:wheel\t600\t" in rotation
        assert rotation.rstrip().endswith(f"/var/run/{agent}.pid")


def test_the_agent_reaches_its_own_database_with_the_env_files_password(standin, agents):
    """As the agent, with only its environment file: psql to its ops database at the db jail's address."""
    if standin.run("command -v psql").rc != 0:
        standin.check_output("pkg install -y postgresql17-client")
    for agent in agents:
        env_file = f"/usr/local/etc/warden/{agent}.env"
        assert standin.file(env_file).mode == 0o600 and standin.file(env_file).user == agent
        # through `standin exec`: inside the stand-in's network namespace, where the db jail's address lives
        out = subprocess.run(
            [STANDIN, "exec", NAME, "--", "su", "-m", agent, "-c",
             f"cd /tmp; set -a; . {env_file}; PGPASSWORD=$WARDEN_DB_PASSWORD "
             f"psql -h $WARDEN_DB_HOST -U $WARDEN_DB_USER -d $WARDEN_DB_OPS -Atc "
             f"'select current_user || chr(32) || current_database() || chr(32) || host(inet_server_addr())'"],
            capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        plan = json.loads(standin.file("/usr/local/etc/warden/plan.json").content_string)
        db = plan["agents"][agent]["db"]
        assert out.stdout.split() == [db["role"], db["databases"]["ops"], db["host"]]

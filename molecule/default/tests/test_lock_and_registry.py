"""One writer at a time, no lost agents: site.yml runs racing on the converged stand-in.

Runs after test_default.py (which leaves hermes registered though the example does not list it) and leaves
the host with the example's agents only. The stand-in is a Linux chroot with doubles of FreeBSD's commands.
"""

import json
import os
import signal
import subprocess
import time

import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NAME = os.environ.get("WARDEN_STANDIN_NAME", "molecule-default")
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
ROOT = os.path.join(BASE, NAME, "root")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")
LOCK = os.path.join(ROOT, "var/run/warden/fleet.lock")
REGISTRY = os.path.join(ROOT, "var/db/warden/registry.json")
PLAIN = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
EXTRA = {
    "iris": {"subnet": "10.0.3", "jails": ["git"], "command": "/usr/local/bin/agent-runtime", "port": 18820},
    "juno": {"subnet": "10.0.4", "jails": ["git"], "command": "/usr/local/bin/agent-runtime", "port": 18830},
}


def _inventory(tmp_path, label, **extra):
    with open(os.path.join(PROJECT, "inventories", "example", "hosts.yml"), encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    host = next(iter(data["warden_hosts"]["hosts"].values()))
    host["warden_agents"].update(extra)
    path = tmp_path / f"{label}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(inventory):
    return subprocess.Popen([STANDIN, "run", NAME, "--", "ansible-playbook", "-i", str(inventory),
                             os.path.join(PROJECT, "site.yml")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=PLAIN)


def _registry():
    with open(REGISTRY, encoding="utf-8") as fh:
        return json.load(fh)["agents"]


def _site_has_network_role():
    with open(os.path.join(PROJECT, "playbooks", "site.yml"), encoding="utf-8") as fh:
        return "warden.fleet.network" in fh.read()


def test_two_runs_adding_different_agents_at_once_keep_both(tmp_path):
    runs = [_start(_inventory(tmp_path, name, **{name: agent})) for name, agent in EXTRA.items()]
    outputs = [run.communicate(timeout=1800)[0] for run in runs]
    for run, out in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out
    # the run that waited said so, naming the holder (user@controller, pid, start time, playbook)
    waited = [line for out in outputs for line in out.splitlines() if "waiting up to" in line]
    assert waited, outputs
    assert "held by root@" in waited[0] and "pid " in waited[0] and "site.yml" in waited[0]
    agents = _registry()
    assert {"atlas", "clawdie", "iris", "juno"} <= set(agents)
    assert not os.path.exists(LOCK)
    if _site_has_network_role():
        state = json.loads(subprocess.run([STANDIN, "state", NAME], capture_output=True, text=True,
                                          check=True).stdout)
        text = json.dumps(state["warden0"])
        for gateway in ("10.0.1.1", "192.168.72.1", "10.0.3.1", "10.0.4.1"):
            assert gateway in text, gateway


def test_a_run_killed_while_holding_the_lock_does_not_block_the_next(tmp_path):
    gone = {name: dict(agent, state="absent") for name, agent in EXTRA.items()}
    gone["hermes"] = {"subnet": "10.0.2", "jails": ["git"], "command": "/usr/local/bin/agent-runtime",
                      "port": 18810, "state": "absent"}
    inventory = _inventory(tmp_path, "absent", **gone)
    run = _start(inventory)
    deadline = time.monotonic() + 900
    while not os.path.exists(LOCK) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert os.path.exists(LOCK), run.communicate()[0]
    with open(LOCK, encoding="utf-8") as fh:
        holder = json.load(fh)
    os.kill(int(holder["pid"]), signal.SIGKILL)  # the ansible-playbook process of the run
    run.communicate(timeout=600)
    assert os.path.exists(LOCK)  # nothing released it

    again = _start(inventory)
    out = again.communicate(timeout=1800)[0]
    assert again.returncode == 0, out
    assert "took over the host lock left by a dead run" in out and f"pid {holder['pid']}" in out
    assert not os.path.exists(LOCK)
    # state: absent removed the three agents from the registry; the example's agents stay
    assert sorted(_registry()) == ["atlas", "clawdie"]
    # and nothing of them is left on the host but their backups
    state = json.loads(subprocess.run([STANDIN, "state", NAME], capture_output=True, text=True, check=True).stdout)
    for agent in gone:
        assert agent not in state["users"] and agent not in state["groups"], agent
        assert agent not in state["services"], agent
        for path in (f"usr/local/warden/agents/{agent}", f"usr/local/warden/souls/{agent}",
                     f"usr/local/etc/warden/{agent}.env", f"var/log/{agent}.log"):
            assert not os.path.lexists(os.path.join(ROOT, path)), path
        backups = os.listdir(os.path.join(ROOT, "var/backups/warden", agent))
        assert any(n.startswith(f"{agent}_") and n.endswith(".manifest.json") for n in backups), (agent, backups)

"""Removing an agent (state: absent) on a stand-in host of its own: its jails go only after a verified backup.

Runs the roles preflight, network, bastille and jails with ansible-playbook against the stand-in (a Linux
chroot with doubles of FreeBSD's commands, not FreeBSD). Two agents with a git jail each, a workspace on
disk for each: removing one backs it up, verifies the archive and destroys exactly its jail; a damaged
archive of the other stops the run before anything of it is destroyed; the backups stay. Needs root.
"""

import json
import os
import subprocess
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
STANDIN = os.path.join(HERE, "standin")
HOST = "bsd1.example.net"
COMMAND = "/usr/local/bin/agent-runtime"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")


def standin(*args, check=True):
    return subprocess.run([STANDIN, *args], capture_output=True, text=True, check=check)


def agents(atlas="present", hermes="present"):
    return {
        "atlas": {"subnet": "10.0.1", "jails": ["git"], "command": COMMAND, "state": atlas},
        "hermes": {"subnet": "10.0.2", "jails": ["git"], "command": COMMAND, "state": hermes},
    }


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("removal")
    name = "pytest-rm-" + uuid.uuid4().hex[:6]
    (tmp / "jails.yml").write_text(yaml.safe_dump([
        {"name": "Preflight", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.preflight"}]},
        {"name": "Jails", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.network"}, {"role": "warden.fleet.bastille"},
                   {"role": "warden.fleet.jails"}]},
    ]))
    (tmp / "backup.yml").write_text(yaml.safe_dump([
        {"name": "Preflight", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.preflight"}]},
        {"name": "Back up", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.backup"}]},
    ]))
    standin("down", name, check=False)
    standin("up", name)
    try:
        for agent in ("atlas", "hermes"):
            sh(name, "mkdir", "-p", f"/usr/local/warden/agents/{agent}/workspace/notes",
               f"/usr/local/warden/agents/{agent}/state")
            sh(name, "/bin/sh", "-c", f"echo {agent} remembers > /usr/local/warden/agents/{agent}/workspace/notes/a.md")
        run = play(name, tmp, "jails.yml", agents())
        assert run.returncode == 0, run.stdout + run.stderr
        yield name, tmp
    finally:
        standin("down", name)


def sh(name, *argv):
    run = standin("exec", name, "--", *argv, check=False)
    assert run.returncode == 0, (argv, run.stdout, run.stderr)
    return run.stdout


def play(name, tmp, playbook, agent_settings):
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"warden_hosts": {"hosts": {HOST: {
        "ansible_python_interpreter": "/usr/local/bin/python3.11", "warden_ext_if": "vtnet0",
        "warden_agents": agent_settings}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    return subprocess.run([STANDIN, "run", name, "--", "ansible-playbook", "-i", str(inventory), str(tmp / playbook)],
                          capture_output=True, text=True, check=False, env=env, cwd=PROJECT)


def jails(name):
    return {n: j["state"] for n, j in json.loads(standin("state", name).stdout)["jails"].items()}


def archives(name, agent):
    out = standin("exec", name, "--", "find", f"/var/backups/warden/{agent}", "-name", "*.tar.*", "-type", "f",
                  check=False).stdout
    return sorted(line for line in out.splitlines() if line.endswith((".tar.zst", ".tar.xz", ".tar.gz")))


def test_a_damaged_backup_stops_the_removal_before_anything_is_destroyed(host):
    name, tmp = host
    run = play(name, tmp, "backup.yml", agents())
    assert run.returncode == 0, run.stdout + run.stderr
    [archive] = archives(name, "hermes")
    # the archive rots; the workspace is unchanged, so no new archive is taken: verification must fail
    sh(name, "/usr/local/bin/python3.11", "-c",
       "import sys; p = sys.argv[1]; d = bytearray(open(p, 'rb').read()); d[len(d) // 2] ^= 1; "
       "open(p, 'wb').write(bytes(d))", archive)
    run = play(name, tmp, "jails.yml", agents(hermes="absent"))
    assert run.returncode != 0
    assert "not removing it, its backups need a look first" in run.stdout, run.stdout
    assert "Create and start the agents' jails" not in run.stdout
    assert jails(name) == {"atlasgit": "Up", "hermesgit": "Up"}
    # the backups stay: the damaged archive is kept aside for a look, none is deleted
    assert os.path.join(os.path.dirname(archive), "damaged", os.path.basename(archive)) in archives(name, "hermes")


def test_removing_an_agent_destroys_its_jails_after_a_verified_backup_and_keeps_the_backup(host):
    name, tmp = host
    before = archives(name, "atlas")
    run = play(name, tmp, "jails.yml", agents(atlas="absent"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verified archive" in run.stdout
    # the backup ran before the destroy, and exactly the agent's jail went
    assert run.stdout.index("Verify the new archive completely, atlas") < run.stdout.index(
        "Create and start the agents' jails, destroy the removed agents' jails")
    assert jails(name) == {"hermesgit": "Up"}
    kept = archives(name, "atlas")
    assert kept and set(before) <= set(kept)
    assert all(path.startswith("/var/backups/warden/atlas/atlas_") for path in kept)
    # nothing left to back up or destroy: the next run lists the jails once and skips the backup
    again = play(name, tmp, "jails.yml", agents(atlas="absent"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "included: warden.fleet.backup" not in again.stdout
    assert "changed=0" in again.stdout
    assert archives(name, "atlas") == kept

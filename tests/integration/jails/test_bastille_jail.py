"""warden.fleet.bastille_jail on the stand-in FreeBSD host (tests/standin), through ansible-playbook.

One stand-in for the module: pkg installs Bastille, a minimal bastille.conf, ``bastille
bootstrap 14.3-RELEASE``, the bridge warden0 with the agent's gateway 10.0.1.1. The module
then creates a thick db jail with ``sysvshm new`` and a thin git jail with a read-only nullfs
mount; a second run changes nothing, check mode touches nothing, and destroying ``agent``
leaves ``agent1`` (Bastille would prefix-match it). What the host has afterwards is read with
``standin state``. Needs root (the stand-in is a chroot with mounts).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import uuid

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests" / "standin"))

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

ANSIBLE_PLAYBOOK = str(pathlib.Path(sys.executable).parent / "ansible-playbook")
BASTILLE_CONF = """\
bastille_prefix="/usr/local/bastille"
bastille_jailsdir="${bastille_prefix}/jails"
bastille_releasesdir="${bastille_prefix}/releases"
bastille_logsdir="/var/log/bastille"
bastille_zfs_enable="NO"
"""
GATEWAY = "10.0.1.1"
DB = {
    "name": "atlasdb",
    "ip": "10.0.1.5/24",
    "gateway": GATEWAY,
    "thick": True,
    "priority": 10,
    "config": {"sysvshm": "new", "sysvsem": "new", "sysvmsg": "new"},
}
GIT = {
    "name": "atlasgit",
    "ip": "10.0.1.2/24",
    "gateway": GATEWAY,
    "mounts": [{"host": "/usr/local/share/warden/shared", "jail": "/srv/shared", "mode": "ro"}],
}


def sh(name, script):
    proc = H.exec_in(name, ["/bin/sh", "-c", script], capture=True)
    assert proc.returncode == 0, (script, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    name = "jm-" + uuid.uuid4().hex[:8]
    H.up(name)
    try:
        sh(name, "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null")
        sh(name, f"cat > /usr/local/etc/bastille/bastille.conf <<'EOF'\n{BASTILLE_CONF}EOF")
        sh(name, "bastille bootstrap 14.3-RELEASE >/dev/null")
        sh(name, f"ifconfig bridge create name warden0 up >/dev/null && ifconfig warden0 inet {GATEWAY}/24")
        sh(name, "mkdir -p /usr/local/share/warden/shared && echo shared > /usr/local/share/warden/shared/AGENTS.md")
        yield {"name": name, "dir": tmp_path_factory.mktemp("bastille_jail")}
    finally:
        H.down(name)


def run_module(host, capfd, jails, check=False):
    """One bastille_jail task through ansible-playbook; the task's result (json callback)."""
    workdir = host["dir"]
    (workdir / "hosts.yml").write_text("all:\n  hosts:\n    standin: {}\n")
    play = [
        {
            "name": "Jails",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Jails",
                    "warden.fleet.bastille_jail": {"release": "14.3-RELEASE", "bridge": "warden0", "jails": jails},
                }
            ],
        }
    ]
    (workdir / "play.yml").write_text("---\n" + yaml.safe_dump(play))
    argv = [ANSIBLE_PLAYBOOK, "-i", str(workdir / "hosts.yml"), str(workdir / "play.yml"), "--diff"]
    if check:
        argv.append("--check")
    saved = dict(os.environ)
    os.environ.update({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        capfd.readouterr()
        rc = H.run(host["name"], argv)
        out = capfd.readouterr().out
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    result = json.loads(out[out.index("{") :])["plays"][0]["tasks"][0]["hosts"]["standin"]
    assert rc == (2 if result.get("failed") else 0), out
    return result


def test_check_mode_on_a_fresh_host_creates_nothing(host, capfd):
    result = run_module(host, capfd, [DB, GIT], check=True)
    assert result["changed"] is True, result
    assert result["jails"]["atlasdb"]["actions"][0] == "create thick jail 10.0.1.5/24 via 10.0.1.1 on warden0"
    assert "restart (jail.conf changed)" in result["jails"]["atlasdb"]["actions"]
    assert result["jails"]["atlasgit"]["actions"] == [
        "create thin jail 10.0.1.2/24 via 10.0.1.1 on warden0",
        "mount /usr/local/share/warden/shared -> /srv/shared (ro)",
    ]
    state = H.state(host["name"])
    assert state["jails"] == {}
    assert state["bastille"]["create_calls"] == []


def test_creates_a_thick_db_jail_and_a_thin_jail_with_a_mount(host, capfd):
    result = run_module(host, capfd, [DB, GIT])
    assert result["changed"] is True, result
    assert result["jails"]["atlasdb"]["state"] == "started"
    assert result["jails"]["atlasgit"]["state"] == "started"
    state = H.state(host["name"])
    jails = state["jails"]
    assert sorted(jails) == ["atlasdb", "atlasgit"]
    for spec, kind in ((DB, "thick"), (GIT, "thin")):
        jail = jails[spec["name"]]
        assert jail["ip"] == spec["ip"]
        assert jail["gateway"] == GATEWAY
        assert jail["vnet"] is True
        assert jail["bridge"] == "warden0"
        assert jail["type"] == kind
        assert jail["state"] == "Up"
        assert jail["release"] == "14.3-RELEASE"
    # the epairs' host ends are members of warden0
    assert {"e0a_atlasdb", "e0a_atlasgit"} <= set(state["warden0"]["members"])
    for param in ("sysvshm", "sysvsem", "sysvmsg"):
        assert f"  {param} = new;" in jails["atlasdb"]["jail_conf"].splitlines()
    root = H.paths(host["name"])["root"]
    settings = pathlib.Path(root, "usr/local/bastille/jails/atlasdb/settings.conf").read_text()
    assert 'priority="10"' in settings and 'boot="on"' in settings
    assert (
        "/usr/local/share/warden/shared /usr/local/bastille/jails/atlasgit/root/srv/shared nullfs ro 0 0"
        in jails["atlasgit"]["fstab"]
    )
    # every create passed -g (the jails' own gateway), -B on warden0
    assert state["bastille"]["all_creates_passed_gateway"] is True
    assert [c["args"][:4] for c in state["bastille"]["create_calls"]] == [["create", "-B", "-g", GATEWAY]] * 2
    # the mount is live inside the running jail, read-only
    out = sh(host["name"], "jexec -l atlasgit cat /srv/shared/AGENTS.md")
    assert out == "shared\n"
    proc = H.exec_in(host["name"], ["jexec", "-l", "atlasgit", "/bin/sh", "-c", "echo x > /srv/shared/x"], capture=True)
    assert proc.returncode != 0


def test_a_second_run_changes_nothing(host, capfd):
    before = H.state(host["name"])["jails"]
    result = run_module(host, capfd, [DB, GIT])
    assert result["changed"] is False, result
    assert all(j["actions"] == [] for j in result["jails"].values())
    after = H.state(host["name"])["jails"]
    assert {n: (j["jid"], j["jail_conf"], j["fstab"]) for n, j in after.items()} == {
        n: (j["jid"], j["jail_conf"], j["fstab"]) for n, j in before.items()
    }


def test_check_mode_touches_nothing(host, capfd):
    before = H.state(host["name"])
    stopped = dict(GIT, state="stopped", config={"allow.raw_sockets": True})
    result = run_module(host, capfd, [dict(DB, state="absent"), stopped], check=True)
    assert result["changed"] is True
    assert result["jails"]["atlasdb"]["actions"] == ["destroy"]
    assert result["jails"]["atlasgit"]["actions"] == ["config allow.raw_sockets=true", "stop"]
    after = H.state(host["name"])
    assert after["jails"] == before["jails"]
    assert after["bastille"]["create_calls"] == before["bastille"]["create_calls"]


def test_destroy_takes_the_exact_name_and_leaves_its_prefix_sibling(host, capfd):
    agent = {"name": "agent", "ip": "10.0.1.7/24", "gateway": GATEWAY}
    agent1 = {"name": "agent1", "ip": "10.0.1.8/24", "gateway": GATEWAY}
    result = run_module(host, capfd, [agent, agent1])
    assert result["changed"] is True
    assert {"agent", "agent1"} <= set(H.state(host["name"])["jails"])

    result = run_module(host, capfd, [{"name": "agent", "state": "absent"}])
    assert result["jails"]["agent"] == {"changed": True, "actions": ["destroy"], "state": "absent"}
    jails = H.state(host["name"])["jails"]
    assert "agent" not in jails
    assert jails["agent1"]["state"] == "Up"

    # agent is gone: "bastille destroy agent" would now destroy agent1, so nothing is called
    result = run_module(host, capfd, [{"name": "agent", "state": "absent"}])
    assert result["changed"] is False
    assert sorted(H.state(host["name"])["jails"]) == ["agent1", "atlasdb", "atlasgit"]


def test_a_jail_that_does_not_start_fails_the_module(host, capfd):
    """start.sh exits 0 when jail -c fails: the module reads jls and fails with Bastille's words."""
    sh(host["name"], "bastille stop agent1 >/dev/null 2>&1; ifconfig warden0 destroy")
    try:
        result = run_module(host, capfd, [{"name": "agent1", "ip": "10.0.1.8/24", "gateway": GATEWAY}])
    finally:
        sh(host["name"], f"ifconfig bridge create name warden0 up >/dev/null && ifconfig warden0 inet {GATEWAY}/24")
    assert result["failed"] is True
    assert "bastille start agent1 exited 0 but jls does not list it" in result["msg"]
    assert "exec.prestart" in result["msg"]
    assert H.state(host["name"])["jails"]["agent1"]["state"] == "Down"

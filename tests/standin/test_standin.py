"""Tests of the stand-in FreeBSD host (tests/standin): strict doubles, FreeBSD
semantics that the collection relies on, real processes, leak-free down.

Needs root (chroot, mounts).  Run: .venv/bin/pytest tests/standin
"""

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")


@pytest.fixture(scope="module")
def host():
    name = "pytest-" + uuid.uuid4().hex[:8]
    H.up(name)
    yield name
    H.down(name)


def sh(host, script, input_text=None):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True, input_text=input_text)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def root_file(host, path):
    with open(os.path.join(H.paths(host)["root"], path.lstrip("/")), encoding="utf-8") as fh:
        return fh.read()


# ------------------------------------------------------------------ strictness

@pytest.mark.parametrize("cmd", [
    "sysrc -z x", "service --bogus", "ifconfig -Z", "ifconfig lo0 frobnicate", "pfctl -X",
    "pfctl -s memory", "jls -x", "jexec -Z x", "pkg -Z", "pkg frobnicate", "pw useradd x -Z 1",
    "pw frob", "daemon -Q true", "lockf -Z f true", "sysctl -a", "zfs rollback a@b", "route monitor",
    "timeout -Z 1 true", "freebsd-version -x", "chpass -s /bin/sh root",
])
def test_unknown_forms_exit_64(host, cmd):
    rc, _out, err = sh(host, cmd)
    assert rc == 64
    assert "stand-in: " in err and " is not implemented" in err
    assert err.strip().split(":", 1)[1].strip().startswith(cmd.split()[0])


def test_bastille_unknown_subcommand_exits_64(host):
    ok(host, "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null")
    rc, _out, err = sh(host, "bastille export foo")
    assert rc == 64 and "stand-in: bastille export foo is not implemented" in err


def test_python_reports_freebsd(host):
    out = ok(host, "/usr/local/bin/python3.11 -c 'import platform; print(platform.system(), platform.release())'")
    assert out.strip() == "FreeBSD 14.3-RELEASE"


# ------------------------------------------------------------------ sysrc

def test_sysrc_semantics(host):
    assert ok(host, "sysrc gateway_enable=YES").strip() == "gateway_enable: NO -> YES"
    assert ok(host, "sysrc -n gateway_enable").strip() == "YES"
    assert 'gateway_enable="YES"' in root_file(host, "/etc/rc.conf")
    # default value only (not in rc.conf)
    assert ok(host, "sysrc -n pf_enable").strip() == "NO"
    assert ok(host, "sysrc -f /etc/rc.conf -v -n gateway_enable").strip() == "/etc/rc.conf: YES"
    assert ok(host, "sysrc -e gateway_enable").strip() == 'gateway_enable="YES"'
    rc, _o, err = sh(host, "sysrc -n no_such_var")
    assert rc == 1 and "sysrc: unknown variable 'no_such_var'" in err
    rc, out, err = sh(host, "sysrc -i -n no_such_var")
    assert rc == 1 and out == "" and err == ""
    # -c: 0 when nothing would change, 1 otherwise; never writes
    assert sh(host, "sysrc -c gateway_enable=YES")[0] == 0
    assert sh(host, "sysrc -c gateway_enable=NO")[0] == 1
    assert sh(host, "sysrc -c unset_var=x")[0] == 1
    assert ok(host, "sysrc -n gateway_enable").strip() == "YES"
    # += appends only missing words, -= removes
    assert ok(host, "sysrc demo_list+=bridge0").strip() == "demo_list:  -> bridge0"
    assert ok(host, "sysrc demo_list+=bridge0").strip() == "demo_list: bridge0 -> bridge0"
    assert ok(host, "sysrc demo_list+=lagg0").strip() == "demo_list: bridge0 -> bridge0 lagg0"
    assert ok(host, "sysrc demo_list-=bridge0").strip() == "demo_list: bridge0 lagg0 -> lagg0"
    # -x removes the line; a second -x of a variable set nowhere fails
    ok(host, "sysrc -x demo_list")
    assert "demo_list" not in root_file(host, "/etc/rc.conf")
    rc, _o, err = sh(host, "sysrc -x demo_list")
    assert rc == 1 and "unknown variable" in err
    # a variable with a default in /etc/defaults/rc.conf stays known after -x
    ok(host, "sysrc cloned_interfaces=bridge0 && sysrc -x cloned_interfaces")
    assert ok(host, "sysrc -n cloned_interfaces") == "\n"
    # -f FILE creates and edits another file, values with spaces are quoted
    ok(host, 'sysrc -f /etc/rc.conf.d/demo demo_flags="-a -b"')
    assert root_file(host, "/etc/rc.conf.d/demo") == 'demo_flags="-a -b"\n'
    assert ok(host, "sysrc -f /etc/rc.conf.d/demo -n demo_flags").strip() == "-a -b"


def test_sysrc_replaces_in_place_keeping_other_lines(host):
    ok(host, "printf '# keep me\\nfoo_enable=\"NO\"\\nbar=1\\n' > /etc/rc.conf.local")
    ok(host, "sysrc -f /etc/rc.conf.local foo_enable=YES")
    assert root_file(host, "/etc/rc.conf.local") == '# keep me\nfoo_enable="YES"\nbar=1\n'


# ------------------------------------------------------------------ ifconfig / sysctl

def test_bridge_and_aliases(host):
    assert ok(host, "ifconfig bridge create").strip().startswith("bridge")
    ok(host, "ifconfig bridge0 name warden0 && ifconfig warden0 inet 192.168.72.1/24 up")
    ok(host, "ifconfig warden0 inet 10.0.1.1/24 alias")
    out = ok(host, "ifconfig warden0")
    assert "inet 192.168.72.1 netmask 0xffffff00 broadcast 192.168.72.255" in out
    assert "inet 10.0.1.1 netmask 0xffffff00" in out and "groups: bridge" in out
    assert ok(host, "ifconfig -g bridge").split() == ["warden0"]
    ok(host, "ifconfig warden0 inet 10.0.1.1 -alias")
    assert "10.0.1.1" not in ok(host, "ifconfig warden0")
    rc, _o, err = sh(host, "ifconfig nosuch0")
    assert rc == 1 and "interface nosuch0 does not exist" in err
    ok(host, "ifconfig warden0 inet 10.0.1.1/24 alias")


def test_sysctl_table(host):
    assert ok(host, "sysctl -n net.link.bridge.pfil_member").strip() == "1"
    assert ok(host, "sysctl net.inet.ip.forwarding=1").strip() == "net.inet.ip.forwarding: 0 -> 1"
    assert ok(host, "sysctl -n net.inet.ip.forwarding").strip() == "1"
    rc, _o, err = sh(host, "sysctl -n no.such.oid")
    assert rc == 1 and "unknown oid 'no.such.oid'" in err


# ------------------------------------------------------------------ pfctl
# The pfctl tests (grammar, commands, tables, anchors, evaluator) are in test_pf.py.


# ------------------------------------------------------------------ pkg / pw

def test_pkg(host):
    assert sh(host, "pkg info -e python311")[0] == 0
    assert sh(host, "pkg info -e tmux")[0] == 1
    out = ok(host, "pkg install -y tmux")
    assert "Installing tmux-3.5a" in out
    assert "already installed" in ok(host, "pkg install -y tmux")
    assert ok(host, "pkg query '%n %v' tmux").strip() == "tmux 3.5a"
    rc, _o, err = sh(host, "pkg install -y no-such-pkg")
    assert rc == 1 and "No packages available to install matching 'no-such-pkg'" in err
    assert "already installed" in ok(host, "env ASSUME_ALWAYS_YES=yes pkg bootstrap")
    assert "Installing pkg-" in ok(host, "env ASSUME_ALWAYS_YES=yes pkg bootstrap -f")


def test_pw_users_and_groups(host):
    ok(host, "pw groupadd agents -g 2000")
    ok(host, "pw useradd -n atlas -u 2001 -c Atlas -d /home/atlas -m -s /bin/sh -G agents")
    assert ok(host, "pw usershow atlas").strip() == "atlas:*:2001:2001::0:0:Atlas:/home/atlas:/bin/sh"
    assert ok(host, "pw groupshow agents").strip() == "agents:*:2000:atlas"
    assert ok(host, "id -u atlas").strip() == "2001"  # glibc reads the stand-in's /etc/passwd
    rc, _o, err = sh(host, "pw useradd atlas")
    assert rc == 65 and "pw: user 'atlas' already exists" in err
    ok(host, "pw userdel atlas -r")
    rc, _o, err = sh(host, "pw usershow atlas")
    assert rc == 67 and "no such user `atlas'" in err


# ------------------------------------------------------------------ processes

RC_SCRIPT = """\
#!/bin/sh
# PROVIDE: sitest
. /etc/rc.subr
name=sitest
rcvar=sitest_enable
load_rc_config $name
: ${sitest_enable:=NO}
pidfile=/var/run/${name}.pid
procname=/usr/sbin/daemon
command=/usr/sbin/daemon
command_args="-f -P ${pidfile} -p /var/run/${name}.child.pid -r -R 1 -t ${name} -o /var/log/${name}.log \\
  -u sitest /usr/bin/timeout 0 /bin/sh -c 'sleep 3001 & setsid sleep 3002 & echo started; wait'"
run_rc_command "$1"
"""


def _pids_running(host, needle):
    return [p["pid"] for p in H.state(host)["processes"] if needle in " ".join(p["cmdline"])]


def test_rc_script_runs_under_daemon_and_stop_kills_the_tree(host):
    ok(host, "pw useradd sitest -d /nonexistent -s /usr/sbin/nologin")
    ok(host, f"cat > /usr/local/etc/rc.d/sitest <<'EOF'\n{RC_SCRIPT}EOF\nchmod 555 /usr/local/etc/rc.d/sitest")
    out = ok(host, "service sitest start")
    assert ("Cannot 'start' sitest. Set sitest_enable to YES in /etc/rc.conf or use 'onestart' "
            "instead of 'start'.") in out
    assert ok(host, "service sitest onestart").strip() == "Starting sitest."
    deadline = time.time() + 10
    while time.time() < deadline and not (_pids_running(host, "sleep 3001") and _pids_running(host, "sleep 3002")):
        time.sleep(0.2)
    assert _pids_running(host, "sleep 3001") and _pids_running(host, "sleep 3002")
    status = ok(host, "service sitest onestatus").strip()
    sup = root_file(host, "/var/run/sitest.pid").strip()
    assert status == f"sitest is running as pid {sup}."
    child = int(root_file(host, "/var/run/sitest.child.pid"))
    with open(f"/proc/{child}/status", encoding="ascii") as fh:
        uid = [line.split()[1] for line in fh if line.startswith("Uid:")][0]
    assert uid == ok(host, "id -u sitest").strip()
    assert "started" in root_file(host, "/var/log/sitest.log")
    # a second daemon on the same pidfile: exit 3
    rc, _o, err = sh(host, "daemon -P /var/run/sitest.pid true")
    assert rc == 3 and "process already running, pid: " in err
    rc, _o, err = sh(host, "service sitest onestart")
    assert rc == 1 and "sitest already running? (pid=" in err
    assert "Stopping sitest." in ok(host, "service sitest onestop")
    deadline = time.time() + 10
    while time.time() < deadline and (_pids_running(host, "sleep 300") or _pids_running(host, "/usr/sbin/daemon")):
        time.sleep(0.2)
    assert not _pids_running(host, "sleep 3001")
    assert not _pids_running(host, "sleep 3002"), "a setsid child survived the stop"
    assert not _pids_running(host, "/usr/sbin/daemon")
    rc, out, _e = sh(host, "service sitest onestatus")
    assert rc == 1 and out.strip() == "sitest is not running."
    ok(host, "sysrc sitest_enable=YES")
    assert ok(host, "service sitest enabled; echo $?").strip() == "0"
    assert ok(host, "service -e").strip().endswith("/usr/local/etc/rc.d/sitest")
    assert ok(host, "service sitest disable").strip() == "sitest disabled in /etc/rc.conf"


def test_lockf_exit_75_when_held(host):
    ok(host, "lockf -k -t 0 /tmp/held.lock sleep 2 >/dev/null 2>&1 &")
    time.sleep(0.5)
    rc, _o, err = sh(host, "lockf -k -t 0 /tmp/held.lock true")
    assert rc == 75 and "already locked" in err
    time.sleep(2)
    assert sh(host, "lockf -k -t 0 /tmp/held.lock true")[0] == 0


# ------------------------------------------------------------------ bastille / jails

@pytest.fixture(scope="module")
def bastille(host):
    ok(host, "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null")
    ok(host, "b=$(ifconfig bridge create) && ifconfig $b name wbr0 >/dev/null")
    ok(host, "bastille bootstrap 14.3-RELEASE >/dev/null")
    return host


def test_create_without_gateway_uses_the_hosts_default_route(bastille):
    ok(bastille, "bastille create -B nogw 14.3-RELEASE 10.9.0.2/24 wbr0")
    st = H.state(bastille)
    assert st["jails"]["nogw"]["gateway"] == st["default_route"] == "192.0.2.1"
    assert st["bastille"]["all_creates_passed_gateway"] is False
    ok(bastille, "bastille create -B -g 10.9.1.1 withgw 14.3-RELEASE 10.9.1.2/24 wbr0")
    st = H.state(bastille)
    assert st["jails"]["withgw"]["gateway"] == "10.9.1.1"
    assert st["jails"]["withgw"]["ip"] == "10.9.1.2/24" and st["jails"]["withgw"]["state"] == "Up"
    assert [c["gateway_flag"] for c in st["bastille"]["create_calls"]][-1] is True
    ok(bastille, "bastille destroy -afy nogw >/dev/null 2>&1")


def test_vnet_names_and_thick(bastille):
    rc, _o, err = sh(bastille, "bastille create -B -g 10.9.2.1 bad-name 14.3-RELEASE 10.9.2.2/24 wbr0")
    assert rc == 1 and "VNET jail names may not contain (-|_) characters." in err
    rc, _o, err = sh(bastille, "bastille create -B -g 10.9.2.1 x 14.3-RELEASE 10.9.2.2/24 vtnet0")
    assert rc == 1 and "Interface is not a bridge: vtnet0" in err
    ok(bastille, "bastille create -B -T -g 10.9.2.1 thick1 14.3-RELEASE 10.9.2.5/24 wbr0")
    assert H.state(bastille)["jails"]["thick1"]["type"] == "thick"


def test_quirks_already_running_and_destroy(bastille):
    rc, _o, err = sh(bastille, "bastille start withgw")
    assert rc == 0 and "Jail is already running." in err
    ok(bastille, "bastille stop withgw")
    rc, _o, err = sh(bastille, "bastille stop withgw")
    assert rc == 0 and "Jail is already stopped." in err
    ok(bastille, "bastille start withgw")
    rc, _o, err = sh(bastille, "bastille destroy -y withgw")
    assert rc == 0 and "Jail is running." in err
    assert "withgw" in H.state(bastille)["jails"]
    rc, out, err = sh(bastille, "bastille destroy -a withgw", input_text="n\n")
    assert rc == 1 and "Are you sure you want to continue? [y|n]:" in out and "Cancelled by user" in err
    assert "withgw" in H.state(bastille)["jails"]


def test_targets_are_prefix_matched(bastille):
    ok(bastille, "bastille create -B -g 10.9.3.1 agent1 14.3-RELEASE 10.9.3.2/24 wbr0")
    ok(bastille, "bastille destroy -afy agent")  # "agent" is not a jail, but agent1 is the only match
    assert "agent1" not in H.state(bastille)["jails"]
    ok(bastille, "bastille create -B -g 10.9.3.1 agent1 14.3-RELEASE 10.9.3.2/24 wbr0")
    ok(bastille, "bastille create -B -g 10.9.3.1 agent2 14.3-RELEASE 10.9.3.3/24 wbr0")
    rc, _o, err = sh(bastille, "bastille destroy -afy agent")
    assert rc == 1 and "Multiple jails found for agent" in err


def test_list_jls_jexec_mount_config(bastille):
    ok(bastille, "bastille start withgw")  # destroy -a stopped it before the prompt was refused
    out = ok(bastille, "bastille list")
    assert out.splitlines()[0].split() == ["JID", "Name", "Boot", "Prio", "State", "Type", "IP", "Address",
                                           "Published", "Ports", "Release", "Tags"]
    assert "withgw" in ok(bastille, "bastille list jails").split()
    jid = ok(bastille, "jls -j withgw jid").strip()
    assert jid.isdigit()
    rc, _o, err = sh(bastille, "jls -j nosuch jid")
    assert rc == 1 and 'jls: jail "nosuch" not found' in err
    # jexec really runs inside the jail root
    rcconf = ok(bastille, "jexec -l -U root withgw cat /etc/rc.conf")
    assert 'defaultrouter="10.9.1.1"' in rcconf and 'ifconfig_vnet0="inet 10.9.1.2/24"' in rcconf
    assert 'ifconfig_vnet0="inet 10.9.1.2/24"' in ok(bastille, "bastille cmd withgw cat /etc/rc.conf")
    ok(bastille, "bastille sysrc withgw sshd_enable=YES")
    assert ok(bastille, "sysrc -j withgw -n sshd_enable").strip() == "YES"
    ok(bastille, "mkdir -p /srv/shared && echo hi > /srv/shared/f")
    ok(bastille, "bastille mount withgw /srv/shared /mnt/shared nullfs ro 0 0")
    assert ok(bastille, "jexec -l withgw cat /mnt/shared/f").strip() == "hi"
    rc, _o, err = sh(bastille, "bastille mount withgw /srv/shared /mnt/shared nullfs ro 0 0")
    assert rc == 0 and "Mountpoint already present" in err
    ok(bastille, "bastille config withgw set sysvshm new")
    assert "sysvshm = new;" in H.state(bastille)["jails"]["withgw"]["jail_conf"]
    assert ok(bastille, "bastille config withgw get sysvshm").strip() == "new"


# ------------------------------------------------------------------ down

def test_down_leaves_nothing_behind():
    name = "pytest-down-" + uuid.uuid4().hex[:6]
    p = H.up(name)
    H.exec_in(name, ["/bin/sh", "-c", "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null; "
                     "ifconfig bridge create >/dev/null; bastille bootstrap 14.3-RELEASE >/dev/null; "
                     "bastille create -B -g 10.8.0.1 j1 14.3-RELEASE 10.8.0.2/24 bridge0 >/dev/null 2>&1; "
                     "daemon -f -P /var/run/x.pid sleep 6017; (setsid sleep 6018 >/dev/null 2>&1 &)"], capture=True)
    time.sleep(0.5)
    assert H.processes_under(p["base"]), "the test should leave processes for down to kill"
    assert len(H.mounts_under(p["base"])) > 3, "a running jail adds mounts"
    H.down(name)
    assert not os.path.exists(p["base"])
    assert H.mounts_under(p["base"]) == []
    assert H.processes_under(p["base"]) == []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        assert p["base"] not in fh.read()
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "sleep 6017" not in out and "sleep 6018" not in out


def test_cli_state_is_json_and_labelled(host):
    out = subprocess.run([os.path.join(HERE, "standin"), "state", host], capture_output=True, text=True, check=True)
    st = json.loads(out.stdout)
    assert st["standin"] is True and "not FreeBSD" in st["label"]
    for key in ("warden0", "pf", "jails", "rc_conf", "services", "users", "packages", "cron_d"):
        assert key in st
    script = textwrap.dedent("""
        echo hi
        exit 7
    """)
    proc = subprocess.run([os.path.join(HERE, "standin"), "exec", host, "--", "/bin/sh", "-c", script],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 7 and proc.stdout.strip() == "hi"

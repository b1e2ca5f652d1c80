"""The agents' rc.d services (role warden.fleet.agent_service) on a stand-in of their own.

Two agents (tests/standin/agent_service/hosts.yml) run the test agent
(agent.sh): it prints who it is, starts a double-forked grandchild
(sleep 1001), a setsid child (sleep 1002) and a grandchild that ignores
SIGTERM and SIGHUP (sleep 1003), then waits.  converge.yml gives each agent the user,
directories and environment file the runtime roles make, then applies the role.

Needs root (chroot, mounts).  Run: .venv/bin/pytest tests/standin/test_agent_service.py
"""

import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_boot  # noqa: E402
import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

PROJECT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(HERE, "agent_service")
PLAYBOOK = os.path.join(FIXTURES, "converge.yml")
STANDIN = os.path.join(HERE, "standin")
ANSIBLE_PLAYBOOK = os.path.join(PROJECT, ".venv", "bin", "ansible-playbook")
SLEEPS = ("sleep 1001", "sleep 1002", "sleep 1003")


def sh(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def root_file(host, path):
    with open(os.path.join(H.paths(host)["root"], path.lstrip("/")), encoding="utf-8") as fh:
        return fh.read()


def converge(host, inventory, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"))
    proc = subprocess.run([STANDIN, "run", host, "--", ANSIBLE_PLAYBOOK, "-i", inventory, PLAYBOOK, *extra],
                          capture_output=True, text=True, check=False, cwd=PROJECT, env=env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    recap = re.search(r"svc1\.test\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert recap, proc.stdout[-3000:]
    return int(recap.group(1)), proc.stdout


def uid_of(host, user):
    return int(ok(host, f"id -u {user}"))


def processes(host):
    """The stand-in host's own processes (not its jails'): dicts with pid, ppid, uid, cmdline.

    Read from /proc directly: `standin state` also asks every rc.d script for its status.
    """
    st = os.stat(H.paths(host)["root"])
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            rst = os.stat(f"/proc/{entry}/root")
            if (rst.st_dev, rst.st_ino) != (st.st_dev, st.st_ino):
                continue
            with open(f"/proc/{entry}/status", encoding="utf-8", errors="replace") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except (OSError, ValueError):
            continue
        if status["State"].split()[0] == "Z":
            continue
        found.append({"pid": int(entry), "ppid": int(status["PPid"]), "uid": int(status["Uid"].split()[0]),
                      "cmdline": cmdline})
    return found


def agent_processes(host, user):
    """The host's (not a jail's) processes of the agent's user: (pid, ppid, command line)."""
    uid = uid_of(host, user)
    return [(p["pid"], p["ppid"], " ".join(p["cmdline"])) for p in processes(host) if p["uid"] == uid]


def wait_for(predicate, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    return predicate()


def all_sleeps_run(host, user):
    cmds = [c for _p, _pp, c in agent_processes(host, user)]
    return all(any(c == s for c in cmds) for s in SLEEPS)


def child_pid(host, agent):
    return int(root_file(host, f"/var/run/{agent}.child.pid"))


@pytest.fixture(scope="module")
def host():
    name = "pytest-svc-" + uuid.uuid4().hex[:8]
    H.up(name)
    root = H.paths(name)["root"]
    shutil.copyfile(os.path.join(FIXTURES, "agent.sh"), os.path.join(root, "usr/local/bin/test-agent"))
    os.chmod(os.path.join(root, "usr/local/bin/test-agent"), 0o755)
    ok(name, "pkg install -y tmux >/dev/null")
    yield name
    H.down(name)


@pytest.fixture(scope="module")
def converged(host):
    changed, _out = converge(host, os.path.join(FIXTURES, "hosts.yml"))
    assert changed > 0
    for agent in ("atlas", "hermes"):
        assert wait_for(lambda a=agent: all_sleeps_run(host, a)), agent_processes(host, agent)
    return host


# ------------------------------------------------------------------ doubles

def test_pgrep_and_pkill_forms(host):
    ok(host, "pw usershow pgtest >/dev/null 2>&1 || pw useradd pgtest -d /nonexistent -s /usr/sbin/nologin")
    ok(host, "su -m pgtest -c 'sleep 4001 >/dev/null 2>&1 & sleep 4002 >/dev/null 2>&1 &'")
    pids = ok(host, "pgrep -U pgtest -j none").split()
    assert len(pids) == 2
    assert ok(host, "pgrep -d , -U pgtest -j none").strip() == ",".join(pids)
    assert sorted(ok(host, "pgrep -l -U pgtest").splitlines()) == sorted(f"{p} sleep" for p in pids)
    assert ok(host, "pgrep -f -x 'sleep 4001' -U pgtest").strip() == pids[0]
    assert sh(host, "pgrep -q -U pgtest")[:2] == (0, "")
    assert sh(host, "pgrep -j any -U pgtest")[0] == 1          # none of them is in a jail
    rc, _o, err = sh(host, "pgrep")
    assert rc == 2 and err.startswith("usage: pgrep")
    rc, _o, err = sh(host, "pgrep -U nosuchuser")
    assert (rc, err) == (2, "pgrep: Unknown user `nosuchuser'\n")
    rc, _o, err = sh(host, "pgrep -j nosuchjail sleep")
    assert (rc, err) == (2, "pgrep: Invalid jail ID or name `nosuchjail'\n")
    rc, _o, err = sh(host, "pgrep -F /var/run/x.pid")
    assert rc == 64 and "is not implemented" in err
    # the signal comes first (pkill.c reads it from argv[1] only)
    assert sh(host, "pkill -l -KILL -U pgtest")[0] == 2
    rc, out, _e = sh(host, "pkill -KILL -l -U pgtest -j none")
    assert rc == 0 and sorted(out.splitlines()) == sorted(f"kill -9 {p}" for p in pids)
    assert wait_for(lambda: sh(host, "pgrep -U pgtest")[0] == 1, 5)
    rc, out, err = sh(host, "pkill -l -U pgtest")
    assert (rc, out, err) == (1, "", "No matching processes belonging to you were found\n")


def test_timeout_leaves_a_descendant_that_ignores_the_signal(host):
    """FreeBSD 14 timeout.c: SIGTERM goes to every descendant, then only the child is waited for."""
    ok(host, "timeout 0 sh -c '(trap \"\" TERM; exec sleep 4101) & sleep 4102 & wait' >/dev/null 2>&1 &")
    # both running, so the subshell has set its trap before the signal comes
    assert wait_for(lambda: all(f"sleep {n}" in ok(host, "ps -eo args") for n in (4101, 4102)))
    ok(host, "pkill -TERM -f 'timeout 0 sh -c'")
    assert wait_for(lambda: "sleep 4102" not in ok(host, "ps -eo args"))
    assert "sleep 4101" in ok(host, "ps -eo args")
    ok(host, "pkill -KILL -f -x 'sleep 4101'")


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("timeout 5 sh -c 'exit 3'", 3),  # the child's own status
        ("timeout 0 true", 0),  # 0: no timer at all
        ("timeout 1 sleep 4103", 124),  # expired, SIGTERM
        ("timeout --preserve-status 1 sleep 4104", 128 + 15),
        ("timeout -k 1 1 sh -c 'trap \"\" TERM; sleep 4105'", 124),  # SIGKILL a second after the ignored SIGTERM
        ("timeout 5 sh -c 'kill -9 $$'", 128 + 9),  # killed by another: 128 + the signal
        ("timeout 5 sh -c 'sleep 4106 & kill -TERM $PPID; wait'", 128 + 15),  # timeout's own SIGTERM goes on
    ],
)
def test_timeout_exit_status(host, script, status):
    """bin/timeout/timeout.c: the child's status, 124 on expiry (unless --preserve-status), 128 + a signal."""
    assert sh(host, script)[0] == status
    assert "sleep 410" not in ok(host, "ps -eo args")


# ------------------------------------------------------------------ the services

def test_services_enabled_and_running_as_the_agents_users(converged):
    host = converged
    for agent in ("atlas", "hermes"):
        assert ok(host, f"sysrc -n {agent}_enable") == "YES\n"
        uid = uid_of(host, agent)
        # daemon(8) runs as root; its child (timeout, the reaper) and everything below as the agent
        child = child_pid(host, agent)
        procs = {p["pid"]: p for p in processes(host)}
        assert procs[child]["uid"] == uid
        assert "/usr/bin/timeout 0 /usr/local/libexec/warden/agent-session" in " ".join(procs[child]["cmdline"])
        mine = agent_processes(host, agent)
        assert any(c.endswith(f"/usr/local/bin/test-agent{' --name atlas agent' if agent == 'atlas' else ''}"
                              + (" it's" if agent == "atlas" else "")) or "sleep 100000" in c
                   for _p, _pp, c in mine)
        # the tmux session named after the agent, on its own socket
        ok(host, f"su -m {agent} -c 'tmux -L {agent} has-session -t ={agent}'")
    # the secret reaches the agent through the environment file, never a command line
    assert not [p for p in processes(host) if "s3cr" in " ".join(p["cmdline"])]


def test_the_log_gets_the_agents_output_with_its_environment_and_locale(converged):
    log = root_file(converged, "/var/log/atlas.log")
    assert ("test-agent atlas up as atlas in /usr/local/warden/agents/atlas/workspace "
            "LANG=sl_SI.UTF-8 LC_ALL=sl_SI.UTF-8 secret=s3cr$t it's atlas args:--name atlas agent it's\n") in log
    assert "\r" not in log
    assert "test-agent hermes up as hermes" in root_file(converged, "/var/log/hermes.log")
    st = os.stat(os.path.join(H.paths(converged)["root"], "var/log/atlas.log"))
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)


def test_newsyslog_rotates_each_agents_log_signalling_the_supervisor(converged):
    text = root_file(converged, "/usr/local/etc/newsyslog.conf.d/warden-atlas.conf")
    lines = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [["/var/log/atlas.log", "root:wheel", "600", "7", "10240", "*", "J", "/var/run/atlas.pid"]]


def test_second_run_changes_nothing_and_check_mode_agrees(converged):
    changed, _out = converge(converged, os.path.join(FIXTURES, "hosts.yml"))
    assert changed == 0
    changed, out = converge(converged, os.path.join(FIXTURES, "hosts.yml"), "--check", "--diff")
    assert changed == 0, out[-3000:]


def test_status_says_whether_it_runs(converged):
    host = converged
    out = ok(host, "service atlas status")
    sup = int(root_file(host, "/var/run/atlas.pid"))
    assert out == (f"atlas is running as pid {sup}.\n"
                   f"atlas: agent pid {child_pid(host, 'atlas')} (timeout, the reaper), tmux session atlas.\n")


def test_stop_ends_the_whole_tree_and_reports_the_leftovers(converged):
    host = converged
    assert wait_for(lambda: all_sleeps_run(host, "atlas"))
    hermes_before = child_pid(host, "hermes")
    ok(host, "sysrc atlas_stop_grace=2 >/dev/null")
    rc, out, err = sh(host, "service atlas stop")
    assert rc == 0, (out, err)
    assert out.startswith("Stopping atlas.\n")
    # sleep 1003 ignores SIGTERM: the reaper's SIGTERM leaves it, the sweep kills it and says so
    assert out.rstrip().endswith("atlas: killed 1 leftover processes")
    assert agent_processes(host, "atlas") == []
    rc, out, _e = sh(host, "service atlas status")
    assert (rc, out) == (1, "atlas is not running.\n")
    # the other agent is untouched
    assert child_pid(host, "hermes") == hermes_before
    assert all_sleeps_run(host, "hermes")


def test_stale_lock_is_removed_and_a_live_one_kept(converged):
    host = converged
    if sh(host, "service atlas status")[0] == 0:
        ok(host, "service atlas stop >/dev/null")
    state = "/usr/local/warden/agents/atlas/state"
    workspace = "/usr/local/warden/agents/atlas/workspace"
    live = int(ok(host, "su -m atlas -c 'sleep 600 >/dev/null 2>&1 & echo $!'"))
    dead = 4194000
    assert not os.path.exists(f"/proc/{dead}")
    ok(host, f"su -m atlas -c \"echo {dead} > {state}/dead.lock; echo {live} > {state}/live.lock; "
             f"echo '{{\\\"pid\\\": {dead}, \\\"host\\\": \\\"x\\\"}}' > {workspace}/gateway.lock; "
             f"printf 'version = 3\\n' > {workspace}/Cargo.lock; echo {dead} > {state}/held.lock; "
             f"lockf -k {state}/held.lock sleep 600 >/dev/null 2>&1 &\"")
    time.sleep(0.5)
    ok(host, "service atlas start")
    assert wait_for(lambda: all_sleeps_run(host, "atlas"))
    root = H.paths(host)["root"]
    assert not os.path.exists(f"{root}{state}/dead.lock")
    assert not os.path.exists(f"{root}{workspace}/gateway.lock")
    assert os.path.exists(f"{root}{state}/live.lock")
    assert os.path.exists(f"{root}{state}/held.lock")
    assert root_file(host, f"{workspace}/Cargo.lock") == "version = 3\n"
    log = root_file(host, "/var/log/atlas.log")
    assert f"warden: atlas: removed stale {state}/dead.lock (pid {dead} is gone)" in log
    assert f"warden: atlas: kept {state}/live.lock: pid {live} is alive" in log
    assert f"warden: atlas: kept {state}/held.lock: it is locked" in log


def test_changing_the_command_restarts_only_that_agent(converged, tmp_path):
    host = converged
    if sh(host, "service atlas status")[0] != 0:
        ok(host, "service atlas start")
    atlas_before, hermes_before = child_pid(host, "atlas"), child_pid(host, "hermes")
    with open(os.path.join(FIXTURES, "hosts.yml"), encoding="utf-8") as fh:
        inv = yaml.safe_load(fh)
    inv["warden_hosts"]["hosts"]["svc1.test"]["warden_agents"]["hermes"]["args"] = ["--changed"]
    changed_inv = tmp_path / "hosts.yml"
    changed_inv.write_text(yaml.safe_dump(inv))
    changed, _out = converge(host, str(changed_inv))
    assert changed == 2          # hermes's script, and hermes restarted
    assert child_pid(host, "atlas") == atlas_before
    assert wait_for(lambda: child_pid(host, "hermes") != hermes_before)
    assert wait_for(lambda: "args:--changed" in root_file(host, "/var/log/hermes.log"))


def test_a_crashed_agent_is_restarted_by_daemon(converged):
    host = converged
    before = child_pid(host, "hermes")
    agent = [p for p, _pp, c in agent_processes(host, "hermes") if c == "sleep 100000"]
    assert len(agent) == 1
    os.kill(agent[0], 9)
    # the helper asks the reaper to end the tree, daemon restarts after its delay (5 s)
    assert wait_for(lambda: os.path.exists(f"{H.paths(host)['root']}/var/run/hermes.child.pid")
                    and child_pid(host, "hermes") != before, 30)
    assert wait_for(lambda: all_sleeps_run(host, "hermes"), 20)
    assert "the agent exited with status 137" in root_file(host, "/var/log/hermes.log")


def test_newsyslog_rotates_the_log_and_the_supervisor_reopens_it(converged):
    """newsyslog -F with the agent's own file: log.0.bz2, a new root-only log, daemon -H reopens it on SIGHUP."""
    host = converged
    root = H.paths(host)["root"]
    rotated = root_file(host, "/var/log/hermes.log")
    ok(host, "newsyslog -F -f /usr/local/etc/newsyslog.conf.d/warden-hermes.conf")
    assert subprocess.run(["bzip2", "-dc", f"{root}/var/log/hermes.log.0.bz2"], capture_output=True,
                          text=True, check=True).stdout == rotated
    fresh = root_file(host, "/var/log/hermes.log")
    assert re.fullmatch(r"\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ newsyslog\[\d+\]: logfile turned over\n", fresh)
    st = os.stat(f"{root}/var/log/hermes.log")
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    before = child_pid(host, "hermes")
    agent = [p for p, _pp, c in agent_processes(host, "hermes") if c == "sleep 100000"]
    os.kill(agent[0], 9)
    assert wait_for(lambda: "test-agent hermes up" in root_file(host, "/var/log/hermes.log"), 30)
    assert "the agent exited with status 137" in root_file(host, "/var/log/hermes.log")
    assert wait_for(lambda: child_pid(host, "hermes") != before)


def test_newsyslog_refuses_what_it_does_not_know(host):
    ok(host, "printf '/var/log/x.log root:wheel 6x0 7 100 * J\\n' > /tmp/bad.conf")
    rc, _o, err = sh(host, "newsyslog -F -f /tmp/bad.conf")
    assert rc == 1 and err.startswith("newsyslog: malformed line (error in mode):")
    ok(host, "printf '/var/log/x.log 600 7 100 @T00 J\\n' > /tmp/at.conf")
    rc, _o, err = sh(host, "newsyslog -f /tmp/at.conf")
    assert rc == 64 and "is not implemented" in err
    rc, _o, err = sh(host, "newsyslog -n")
    assert rc == 64 and "is not implemented" in err


def test_reboot_brings_every_enabled_agent_back_as_its_user(converged):
    host = converged
    standin_boot.reboot(host)
    for agent in ("atlas", "hermes"):
        assert wait_for(lambda a=agent: all_sleeps_run(host, a), 40), agent_processes(host, agent)
        procs = {p["pid"]: p for p in processes(host)}
        assert procs[child_pid(host, agent)]["uid"] == uid_of(host, agent)
        assert ok(host, f"service {agent} status").startswith(f"{agent} is running as pid ")


def test_an_absent_agent_is_stopped_disabled_and_its_files_removed(converged, tmp_path):
    host = converged
    atlas_before = child_pid(host, "atlas")
    with open(os.path.join(FIXTURES, "hosts.yml"), encoding="utf-8") as fh:
        inv = yaml.safe_load(fh)
    inv["warden_hosts"]["hosts"]["svc1.test"]["warden_agents"]["hermes"]["state"] = "absent"
    absent_inv = tmp_path / "hosts.yml"
    absent_inv.write_text(yaml.safe_dump(inv))
    changed, out = converge(host, str(absent_inv))
    assert changed == 3, out[-3000:]      # stopped, rcvar removed, script and newsyslog file removed
    assert agent_processes(host, "hermes") == []
    assert sh(host, "sysrc -n hermes_enable")[0] != 0
    root = H.paths(host)["root"]
    assert not os.path.exists(f"{root}/usr/local/etc/rc.d/hermes")
    assert not os.path.exists(f"{root}/usr/local/etc/newsyslog.conf.d/warden-hermes.conf")
    assert os.path.exists(f"{root}/var/log/hermes.log")          # the log stays
    assert child_pid(host, "atlas") == atlas_before
    changed, out = converge(host, str(absent_inv))
    assert changed == 0, out[-3000:]

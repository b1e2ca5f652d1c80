"""PostgreSQL inside a jail of the stand-in FreeBSD host: the su(1) double, the
postgresqlNN-server/-client packages (FreeBSD's layout as wrappers of the
machine's PostgreSQL), the rc.d script's initdb/start/status/stop, dumps
through jexec as the backup takes them, and `standin down` killing the server.

Needs root and the machine's PostgreSQL (/usr/lib/postgresql/*/bin).
"""

import glob
import os
import re
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

JAIL = "pgdb"


def sh(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def jail_root(host):
    return os.path.join(H.paths(host)["root"], "usr/local/bastille/jails", JAIL, "root")


def server_pids(host):
    """PIDs of postgres processes whose root directory is the jail's root."""
    real = os.path.realpath(jail_root(host))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/root") != real:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv0 = fh.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if "postgres" in argv0:
            pids.append(int(entry))
    return pids


def running(pid):
    """True while pid exists and is not a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def bring_up_jail(name):
    H.up(name)
    ok(name, "pkg install -y bastille >/dev/null"
             " && ifconfig bridge create >/dev/null && ifconfig bridge0 name warden0 >/dev/null"
             " && ifconfig warden0 inet 10.9.0.1/24 && ifconfig warden0 up"
             " && bastille bootstrap 14.3-RELEASE >/dev/null"
             f" && bastille create -B -T -g 10.9.0.1 {JAIL} 14.3-RELEASE 10.9.0.5/24 warden0 >/dev/null 2>&1"
             # PostgreSQL needs System V shared memory, which a jail lacks by default (jail(8))
             f" && bastille config {JAIL} set sysvshm new >/dev/null"
             f" && bastille restart {JAIL} >/dev/null 2>&1"
             f" && bastille pkg {JAIL} bootstrap -y >/dev/null")


@pytest.fixture(scope="module")
def host():
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        pytest.fail("these tests need the machine's PostgreSQL under /usr/lib/postgresql/*/bin")
    name = "pytest-pg-" + uuid.uuid4().hex[:8]
    bring_up_jail(name)
    yield name
    H.down(name)


# ------------------------------------------------------------------ su(1)

@pytest.mark.parametrize("cmd", ["su -x root", "su -c staff nobody", "su -l -m nobody"])
def test_su_unknown_forms_exit_64(host, cmd):
    rc, _out, err = sh(host, cmd + " -c true")
    assert rc == 64 and f"stand-in: {cmd.split()[0]}" in err and "is not implemented" in err


def test_su_login_runs_the_shell_as_the_user_in_a_login_environment(host):
    ok(host, "pw useradd sutest -d /home/sutest -m -s /bin/sh")
    out = ok(host, "FOO=bar su -l sutest -c 'id -u; id -g; pwd; echo \"$HOME|$USER|$SHELL|$FOO|$PATH\"'")
    uid, gid, cwd, env = out.split("\n")[:4]
    assert int(uid) == int(gid) != 0
    assert cwd == "/home/sutest"
    assert env == "/home/sutest|sutest|/bin/sh||/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin:" \
                  "/home/sutest/bin"
    # -m keeps the caller's environment; without -l HOME and SHELL follow the login
    assert ok(host, "FOO=bar su -m sutest -c 'echo $FOO $HOME'").strip() == "bar /root"
    assert ok(host, "FOO=bar su sutest -c 'echo $FOO $HOME $USER'").strip() == "bar /home/sutest sutest"
    rc, _out, err = sh(host, "su -l nosuchuser -c true")
    assert rc == 1 and "su: unknown login: nosuchuser" in err


# ------------------------------------------------------------------ packages

def test_postgresql_server_package_installs_freebsds_layout_in_the_jail(host):
    out = ok(host, f"bastille pkg {JAIL} install -y postgresql17-server")
    assert "postgresql17-client" in out and "postgresql17-server" in out  # the client comes with it
    info = ok(host, f"pkg -j {JAIL} query '%n %a' postgresql17-server postgresql17-client")
    assert info.split("\n")[:2] == ["postgresql17-server 0", "postgresql17-client 1"]
    root = jail_root(host)
    for tool in ("psql", "pg_dump", "pg_restore", "initdb", "pg_ctl", "postgres"):
        path = os.path.join(root, "usr/local/bin", tool)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        assert os.access(path, os.X_OK) and "stand-in FreeBSD host" in text and "NOT FreeBSD" in text, tool
        assert re.search(r"exec /usr/lib/postgresql/\d+/bin/" + tool, text), tool
    with open(os.path.join(root, "usr/local/etc/rc.d/postgresql"), encoding="utf-8") as fh:
        rc_text = fh.read()
    assert "databases/postgresql17-server/files/postgresql.in" in rc_text and "data17" in rc_text
    # the postgres user of ports/UIDs, in the jail only
    with open(os.path.join(root, "etc/master.passwd"), encoding="utf-8") as fh:
        assert "postgres:*:770:770::0:0:PostgreSQL Daemon:/var/db/postgres:/bin/sh\n" in fh.read()
    with open(os.path.join(root, "etc/group"), encoding="utf-8") as fh:
        assert "postgres:*:770:\n" in fh.read()
    st = os.stat(os.path.join(root, "var/db/postgres"))
    assert (st.st_uid, st.st_gid) == (770, 770)
    assert "postgres" not in H.state(host)["users"]
    # already installed: nothing to do
    assert "already installed" in ok(host, f"bastille pkg {JAIL} install -y postgresql17-server")


# ------------------------------------------------------------------ rc.d script

def test_rc_script_refuses_initdb_until_enabled(host):
    out = ok(host, f"bastille service {JAIL} postgresql initdb")
    assert "Cannot 'initdb' postgresql. Set postgresql_enable to YES" in out
    assert not os.path.exists(os.path.join(jail_root(host), "var/db/postgres/data17"))


def test_rc_script_initdb_start_status_dump_stop(host):
    root = jail_root(host)
    ok(host, f"bastille sysrc {JAIL} postgresql_enable=YES")
    out = ok(host, f"bastille service {JAIL} postgresql initdb 2>&1")
    assert "creating directory /var/db/postgres/data17 ... ok" in out
    data = os.path.join(root, "var/db/postgres/data17")
    st = os.stat(data)
    assert (st.st_uid, st.st_mode & 0o777) == (770, 0o700)
    rc, out, _err = sh(host, f"jexec {JAIL} /usr/sbin/service postgresql status")
    # pg_ctl status exits 3; rc.subr's _run_rc_doit turns a failed ${rc_arg}_cmd into 1
    assert rc == 1 and "no server running" in out

    ok(host, f"bastille service {JAIL} postgresql start")
    pids = server_pids(host)
    assert pids, "no postgres process runs with the jail's root"
    for pid in pids:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            assert re.search(r"^Uid:\s+770\s", fh.read(), re.M)
    out = ok(host, f"bastille service {JAIL} postgresql status")
    assert re.search(r"server is running \(PID: \d+\)", out)
    # FreeBSD's socket directory inside the jail, and TCP on postgresql.conf's default
    # listen_addresses ('localhost'), in the jail's own network stack
    assert os.path.exists(os.path.join(root, "tmp/.s.PGSQL.5432"))
    with open(os.path.join(data, "postmaster.pid"), encoding="ascii") as fh:
        lines = fh.read().split("\n")
    assert lines[4] == "/tmp" and lines[5] == "localhost"

    # as the backup dumps: jexec -l -U postgres JAIL /usr/local/bin/pg_dump -Fc DB
    ok(host, f"jexec -l -U postgres {JAIL} /usr/local/bin/createdb pgtest"
             f" && jexec -l -U postgres {JAIL} /usr/local/bin/psql -q -v ON_ERROR_STOP=1 -d pgtest"
             " -c 'CREATE TABLE t (id int); INSERT INTO t VALUES (42)'")
    dump = subprocess.run([os.path.join(HERE, "standin"), "exec", host, "--", "/usr/sbin/jexec", "-l", "-U",
                           "postgres", JAIL, "/usr/local/bin/pg_dump", "-Fc", "pgtest"],
                          capture_output=True, check=True)
    assert dump.stdout[:5] == b"PGDMP"
    out = ok(host, f"jexec -l -U postgres {JAIL} /usr/local/bin/pg_dump -Fc pgtest"
                   f" | jexec -l -U postgres {JAIL} /usr/local/bin/pg_restore --data-only -f -")
    assert re.search(r"^COPY public\.t \(id\) FROM stdin;\n42\n", out, re.M)

    out = ok(host, f"bastille service {JAIL} postgresql stop")
    assert server_pids(host) == []
    rc, out, _err = sh(host, f"jexec {JAIL} /usr/sbin/service postgresql status")
    # pg_ctl status exits 3; rc.subr's _run_rc_doit turns a failed ${rc_arg}_cmd into 1
    assert rc == 1 and "no server running" in out


def test_down_kills_a_running_server():
    name = "pytest-pgdown-" + uuid.uuid4().hex[:8]
    bring_up_jail(name)
    try:
        ok(name, f"bastille pkg {JAIL} install -y postgresql17-server >/dev/null"
                 f" && bastille sysrc {JAIL} postgresql_enable=YES >/dev/null"
                 f" && bastille service {JAIL} postgresql initdb >/dev/null 2>&1"
                 f" && bastille service {JAIL} postgresql start")
        pids = server_pids(name)
        assert pids
        with open(os.path.join(jail_root(name), "var/db/postgres/data17/postmaster.pid"), encoding="ascii") as fh:
            shmid = fh.read().split("\n")[6].split()[1]
        # the segment lives in the jail's own IPC namespace (sysvshm=new), not in the machine's
        ipc_ns = os.path.join(H.paths(name)["root"], ".standin/ns", f"jail.{JAIL}.ipc")
        in_jail = subprocess.run(["nsenter", f"--ipc={ipc_ns}", "ipcs", "-m"], capture_output=True, text=True,
                                 check=True).stdout
        assert shmid in [line.split()[1] for line in in_jail.splitlines() if len(line.split()) > 1]
        namespaces = H.namespaces_under(H.paths(name)["base"])
    finally:
        H.down(name)
    assert [p for p in pids if running(p)] == []
    # the server is gone, and so is the jail's IPC namespace with every segment in it
    assert namespaces and H.processes_under(H.paths(name)["base"], namespaces) == []
    ipcs = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=True).stdout
    assert shmid not in [line.split()[1] for line in ipcs.splitlines() if len(line.split()) > 1]

"""Fixtures for the backup integration tests: real files, real tar/zstd, and
for every FreeBSD command the backup runs (service, jexec, jls, zfs) the
stand-in FreeBSD host of tests/standin, one for the whole session.

The backup runs in the test process (so a test can wrap any step to race it
as an agent would); its FreeBSD commands are the stand-in's doubles, reached
as `standin exec` reaches them, through the stand-in's chroot wrapper
(FREEBSD_COMMANDS below, first on PATH). On the stand-in: the rc.d
services `atlas` and `hermes` (rc.subr, daemon), the running jail
`atlasgit`, and, for the tests that take the `postgres` fixture, the db jails
`atlasdb` and `hermesdb` with PostgreSQL, set up as molecule/backup/prepare.yml
does. The session's temporary directory is mounted at the same path inside
the stand-in, so a path means the same on both sides (what `zfs list` prints
is what the backup opens)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

HERE = pathlib.Path(__file__).resolve().parent
STANDIN_DIR = HERE.parents[1] / "standin"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(STANDIN_DIR))

import standin_host  # noqa: E402
from backup_helpers import PG_BIN, Fleet, agents_spec, session_plan  # noqa: E402

# what the backup calls on a FreeBSD host, answered by the stand-in's doubles
FREEBSD_COMMANDS = ("service", "jexec", "jls", "zfs")
AGENTS = ("atlas", "hermes")

# an agent's service as its rc.d script will run it: daemon(8) supervising the agent
RC_SCRIPT = """\
#!/bin/sh
# PROVIDE: {name}
# REQUIRE: LOGIN
# KEYWORD: shutdown
. /etc/rc.subr
name={name}
rcvar={rcvar}
load_rc_config $name
: ${{{rcvar}:=NO}}
pidfile={pidfile}
procname=/usr/sbin/daemon
command=/usr/sbin/daemon
command_args="-f -P ${{pidfile}} -p {child_pidfile} -t ${{name}} /bin/sleep 600"
run_rc_command "$1"
"""


class StandIn:
    """The session's stand-in FreeBSD host, as the tests see it from outside."""

    def __init__(self, name, bindir):
        self.name = name
        self.root = pathlib.Path(standin_host.paths(name)["root"])
        self.bindir = bindir
        self.calls_log = self.root / ".standin" / "calls.log"
        self.datasets = False

    def sh(self, script, check=True):
        proc = standin_host.exec_in(self.name, ["/bin/sh", "-c", script], capture=True)
        if check:
            assert proc.returncode == 0, (script, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def outside(self, path):
        """Where a path of the stand-in is seen from this machine."""
        return self.root / str(path).lstrip("/")

    def calls(self):
        """Every double call so far, as `cmd arg arg`."""
        if not self.calls_log.exists():
            return []
        entries = [json.loads(line) for line in self.calls_log.read_text().splitlines() if line]
        return [" ".join([e["cmd"], *e["args"]]) for e in entries]

    def add_dataset(self, name, mountpoint):
        """The stand-in has no pools: give its simulated kernel a file system mounted at mountpoint."""
        code = (
            "import sys; sys.path.insert(0, '/usr/libexec/standin')\n"
            "from standin_doubles.common import kernel\n"
            "with kernel(write=True) as k:\n"
            "    k['zfs']['datasets'][sys.argv[1]] = sys.argv[2]\n"
        )
        argv = ["/usr/libexec/standin/bin/python3.11", "-c", code, name, str(mountpoint)]
        proc = standin_host.exec_in(self.name, argv, capture=True)
        assert proc.returncode == 0, proc.stderr
        self.datasets = True

    def forget_datasets(self):
        code = (
            "import sys; sys.path.insert(0, '/usr/libexec/standin')\n"
            "from standin_doubles.common import kernel\n"
            "with kernel(write=True) as k:\n"
            "    k['zfs'] = {'datasets': {}, 'snapshots': []}\n"
        )
        proc = standin_host.exec_in(self.name, ["/usr/libexec/standin/bin/python3.11", "-c", code], capture=True)
        assert proc.returncode == 0, proc.stderr
        self.datasets = False

    def service_running(self, service):
        """Whether the supervisor in the service's pidfile lives (what `service NAME status` checks)."""
        try:
            pid = int(self.outside(service["pidfile"]).read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return True


def _bring_up(host, plan):
    """warden0 with the gateways, Bastille with the release, the git jail of
    the first agent running, and every agent's rc.d service, enabled."""
    first = plan["agents"][AGENTS[0]]
    git = next(j for j in first["jails"] if j["slot"] == "git")
    lines = [
        "pkg install -y bastille >/dev/null",
        f"ifconfig $(ifconfig bridge create) name {plan['bridge']} >/dev/null",
        *(f"ifconfig {plan['bridge']} inet {gw}{'' if i == 0 else ' alias'}" for i, gw in enumerate(plan["gateways"])),
        f"ifconfig {plan['bridge']} up",
        f"bastille bootstrap {plan['release']} >/dev/null",
        f"bastille create -B -g {git['gateway']} {git['name']} {plan['release']} {git['cidr']} {plan['bridge']}"
        " >/dev/null 2>&1",
    ]
    for agent in AGENTS:
        service = plan["agents"][agent]["service"]
        script = RC_SCRIPT.format(**service)
        lines += [
            f"cat > {service['rc_script']} <<'EOF'\n{script}EOF\n",
            f"chmod 555 {service['rc_script']}",
            f"sysrc {service['rcvar']}=YES >/dev/null",
        ]
    host.sh("set -e\n" + "\n".join(lines))
    assert host.sh(f"jls -j {git['name']} jid", check=False).returncode == 0, "the git jail runs"


@pytest.fixture(scope="session")
def freebsd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the backup tests need root: the stand-in FreeBSD host is a chroot with mounts")
    name = "pytest-backup-" + uuid.uuid4().hex[:8]
    bindir = tmp_path_factory.mktemp("freebsd-commands")
    shared = tmp_path_factory.getbasetemp()
    host = StandIn(name, bindir)
    standin_host.up(name)
    mountpoint = None
    try:
        _bring_up(host, session_plan())
        mountpoint = host.outside(shared)
        mountpoint.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(shared), str(mountpoint)], check=True)
        # `standin exec` without its Python start: the stand-in's own chroot(8)
        # wrapper (its namespaces, then its root; Ansible's chroot connection
        # uses it too) with the environment of a FreeBSD root login
        enter = standin_host.chroot_wrapper(standin_host.paths(name))
        login = f"PATH={standin_host.FREEBSD_PATH} HOME=/root USER=root SHELL=/bin/sh LANG=C.UTF-8"
        for command in FREEBSD_COMMANDS:
            forward = bindir / command
            forward.write_text(f'#!/bin/sh\nexec env -i {login} {enter} {host.root} {command} "$@"\n')
            forward.chmod(0o755)
        yield host
    finally:
        if mountpoint is not None:
            subprocess.run(["umount", str(mountpoint)], check=False)
        standin_host.down(name)


@pytest.fixture(scope="session")
def postgres(freebsd, tmp_path_factory):
    """Each agent's db jail with PostgreSQL running, as the database role will leave it.

    The tests reach a server from outside through its unix socket (a short
    link to the jail's /tmp: socket paths are limited to about 100 bytes)."""
    if not (PG_BIN / "psql").exists():
        pytest.fail(f"PostgreSQL client not found in {PG_BIN} (set WARDEN_TEST_PG_BIN)")
    plan = session_plan()
    sockets = {}
    for agent in AGENTS:
        db = next(j for j in plan["agents"][agent]["jails"] if j["slot"] == "db")
        freebsd.sh(
            " && ".join(
                [
                    f"bastille create -B{' -T' if db['thick'] else ''} -g {db['gateway']} {db['name']}"
                    f" {plan['release']} {db['cidr']} {plan['bridge']} >/dev/null 2>&1",
                    # PostgreSQL needs System V shared memory, which a jail lacks by default (jail(8))
                    f"bastille config {db['name']} set sysvshm new >/dev/null",
                    f"bastille restart {db['name']} >/dev/null 2>&1",
                    f"bastille pkg {db['name']} bootstrap -y >/dev/null",
                    f"bastille pkg {db['name']} install -y postgresql{plan['postgresql_version']}-server >/dev/null",
                    f"bastille sysrc {db['name']} postgresql_enable=YES >/dev/null",
                    f"bastille service {db['name']} postgresql initdb >/dev/null",
                    f"bastille service {db['name']} postgresql start >/dev/null",
                ]
            )
        )
        link = tmp_path_factory.getbasetemp() / f"pg-{db['name']}"
        link.symlink_to(freebsd.outside(f"/usr/local/bastille/jails/{db['name']}/root/tmp"))
        sockets[db["name"]] = str(link)
    return {"sockets": sockets, "port": "5432"}


@pytest.fixture(autouse=True)
def no_service_left_running(request):
    """A test leaves no agent service running and no ZFS dataset on the stand-in."""
    yield
    if "freebsd" not in request.fixturenames:
        return
    host = request.getfixturevalue("freebsd")
    for agent in session_plan()["agents"].values():
        if host.service_running(agent["service"]):
            host.sh(f"service {agent['service']['name']} stop >/dev/null")
    if host.datasets:
        host.forget_datasets()


@pytest.fixture
def make_fleet(tmp_path, monkeypatch, freebsd):
    def make(*names, db=(), backup=None):
        fleet = Fleet(tmp_path, agents_spec(*names, db=db), backup=backup, host=freebsd)
        monkeypatch.setenv(
            "PATH", os.pathsep.join([str(freebsd.bindir), os.path.dirname(sys.executable), os.environ["PATH"]])
        )
        return fleet

    return make

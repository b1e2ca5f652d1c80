"""Fixtures for the backup integration tests: real files, real tar/zstd,
a real PostgreSQL 15 on a unix socket, and strict doubles of the FreeBSD
commands (jexec, service, jls, zfs) from ./bin on PATH."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from backup_helpers import DOUBLES, PG_BIN, Fleet, agents_spec  # noqa: E402


def _as_postgres(argv):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL instance of our own, trust auth on a unix socket only."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL binaries not found in {PG_BIN} (set WARDEN_TEST_PG_BIN)")
    base = pathlib.Path(tempfile.mkdtemp(prefix="warden-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    port = "54329"
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-w",
                "-o",
                f"-k {sock} -c listen_addresses='' -p {port}",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield {"host": str(sock), "port": port, "bin": str(PG_BIN)}
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_service_left_running(tmp_path):
    """A test leaves no process behind: stop every service the service double started in it."""
    yield
    ledger = tmp_path / "run" / ".started"
    if not ledger.exists():
        return
    for pid in {int(word) for word in ledger.read_text().split()}:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if cmdline.read().split(b"\0")[:2] != [b"sleep", b"600"]:
                    continue  # gone, and the pid was reused
            os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            continue


@pytest.fixture
def make_fleet(tmp_path, monkeypatch):
    def make(*names, db=(), backup=None, pg=None, jails_up=()):
        fleet = Fleet(tmp_path, agents_spec(*names, db=db), backup=backup)
        monkeypatch.setenv("PATH", os.pathsep.join([str(DOUBLES), os.path.dirname(sys.executable), os.environ["PATH"]]))
        monkeypatch.setenv("WARDEN_TEST_CALLS", str(fleet.calls))
        monkeypatch.setenv("WARDEN_TEST_RUN", str(fleet.run_dir))
        monkeypatch.setenv(
            "WARDEN_TEST_SERVICES", ",".join(a["service"]["name"] for a in fleet.plan["agents"].values())
        )
        monkeypatch.setenv("WARDEN_TEST_JAILS_UP", ",".join(jails_up))
        db_jails = [a["db"]["jail"] for a in fleet.plan["agents"].values() if a.get("db")]
        monkeypatch.setenv("WARDEN_TEST_DB_JAILS", ",".join(db_jails))
        if pg:
            monkeypatch.setenv("WARDEN_TEST_PGHOST", pg["host"])
            monkeypatch.setenv("WARDEN_TEST_PGPORT", pg["port"])
            monkeypatch.setenv("WARDEN_TEST_PG_BIN", pg["bin"])
        return fleet

    return make

"""The test's own PostgreSQL server (pg_server.py), one per test module."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pg_server import OS_USER, PG_BIN, PYTHON, Server, as_postgres  # noqa: E402


@pytest.fixture(scope="module")
def server():
    if os.geteuid() != 0:
        pytest.fail("these tests run PostgreSQL as the postgres user: run them as root")
    for need in (PG_BIN / "initdb", pathlib.Path(PYTHON)):
        if not need.exists():
            pytest.fail(f"{need} is missing (PostgreSQL 15 binaries: WARDEN_TEST_PG_BIN; Python: python3.11)")
    if subprocess.run([PYTHON, "-c", "import psycopg2"], check=False).returncode != 0:
        pytest.fail(f"{PYTHON} cannot import psycopg2 (Debian: apt-get install python3-psycopg2)")
    top = pathlib.Path(tempfile.mkdtemp(prefix="warden-pg-"))
    top.chmod(0o755)
    srv = Server(top)
    srv.sock.mkdir()
    shutil.chown(top, OS_USER)
    shutil.chown(srv.sock, OS_USER)
    # FreeBSD's rc.d script: initdb --encoding=utf-8 --lc-collate=C -D DATA -U postgres
    proc = as_postgres([str(PG_BIN / "initdb"), "--encoding=utf-8", "--lc-collate=C", "-D", str(srv.data),
                        "-U", "postgres"])
    assert proc.returncode == 0, proc.stderr
    with open(srv.data / "postgresql.conf", "a", encoding="utf-8") as fh:
        fh.write(f"port = {srv.port}\nunix_socket_directories = '{srv.sock}'\n")
    srv.pg_ctl("start")
    try:
        yield srv
    finally:
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(srv.data), "-m", "immediate", "stop"])
        shutil.rmtree(top, ignore_errors=True)

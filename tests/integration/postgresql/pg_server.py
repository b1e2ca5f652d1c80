"""A real PostgreSQL server of the test's own (the machine's PostgreSQL 15 binaries, a temporary directory, a
unix socket there and 127.0.0.1 on a free port), run as the machine's `postgres` user as FreeBSD's rc.d script
runs it, initialised with the flags of FreeBSD's rc.d script (postgresql_initdb_flags).

Needs root (to act as the `postgres` user), /usr/lib/postgresql/15/bin (or WARDEN_TEST_PG_BIN) and Debian's
python3-psycopg2 for /usr/bin/python3.11, the interpreter the modules run with here as the jail's does on FreeBSD.
"""

import os
import pathlib
import socket
import subprocess

PG_BIN = pathlib.Path(os.environ.get("WARDEN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PYTHON = "/usr/bin/python3.11"
OS_USER = "postgres"


def as_postgres(argv, **kwargs):
    return subprocess.run(["runuser", "-u", OS_USER, "--", *argv], check=False, capture_output=True, text=True,
                          **kwargs)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, top):
        self.top = top
        self.data = top / "data"
        self.sock = top / "sock"
        self.port = free_port()

    def pg_ctl(self, *args):
        proc = as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.top / "server.log"),
                            "-w", "-t", "60", *args])
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr, (self.top / "server.log").read_text())

    def psql(self, sql, user="postgres", database="postgres", host=None, password=None):
        """psql as USER: over the socket (as the postgres OS user, peer) or, with host, over TCP."""
        env = {"PATH": "/usr/bin:/bin", "PGPORT": str(self.port), "PGHOST": host or str(self.sock),
               "PGCONNECT_TIMEOUT": "10"}
        if password is not None:
            env["PGPASSWORD"] = password
        return as_postgres(["env", *(f"{k}={v}" for k, v in env.items()), str(PG_BIN / "psql"), "-X", "-A", "-t",
                            "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", database, "-c", sql])

    def ok(self, sql, **kwargs):
        proc = self.psql(sql, **kwargs)
        assert proc.returncode == 0, (sql, proc.stderr)
        return proc.stdout.strip()

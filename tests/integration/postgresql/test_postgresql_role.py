"""The postgresql role's database tasks and its probe against a real PostgreSQL server (conftest.py).

The role's in-jail tasks (community.postgresql's modules with the role's arguments) run through
ansible-playbook; the probe's SQL runs through the probe's own code, with jexec's part played by
runuser (a test double: FreeBSD's jexec -l -U postgres JAIL CMD becomes runuser -u postgres -- CMD).
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import postgresql_probe as pgp

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pg_server import PG_BIN, PYTHON  # noqa: E402

ROOT = HERE.parents[2]
PASSWORD = "Zq8Lr2Vn5Tx7Kp3Wm9Hb4Cd6Fg1Js0Ay"
DATABASES = {"ops": "atlas_ops", "brain": "atlas_brain", "skills": "atlas_skills"}
EXTENSIONS = ("pgcrypto", "uuid-ossp")


def agent(server, extensions=EXTENSIONS):
    """A plan agent as fleet_model derives it, its db on the test's server."""
    return {
        "name": "atlas",
        "state": "present",
        "db": {
            "role": "atlas",
            "jail": "atlasdb",
            "host": "127.0.0.1",
            "databases": DATABASES,
            "extensions": list(extensions),
            "client_cidr": "127.0.0.0/8",
            "data_directory": str(server.data),
            "hba_file": str(server.data / "pg_hba.conf"),
        },
    }


def entry(server, password=PASSWORD, extensions=EXTENSIONS):
    """The probe's entry for the agent, as the role's warden_postgresql_wanted builds it."""
    return {
        "agent": "atlas", "jail": "atlasdb", "role": "atlas", "databases": list(DATABASES.values()),
        "extensions": list(extensions), "listen_addresses": "127.0.0.1", "data_directory": str(server.data),
        "password": password,
        "hba": [
            {"contype": "local", "databases": "all", "users": "postgres", "method": "peer"},
            {"contype": "host", "databases": ",".join(DATABASES.values()), "users": "atlas", "source": "127.0.0.0/8",
             "method": "scram-sha-256"},
        ],
    }


def jexec_double(server):
    """run_command for the probe: FreeBSD's jail commands become this machine's, as the jail's user."""

    def run_command(argv, data=None, environ_update=None):
        bound, rest = argv[:4], argv[4:]
        assert bound[0] == pgp.TIMEOUT and rest[0] in (pgp.JEXEC, pgp.JLS), argv
        if rest[0] == pgp.JLS:
            assert rest[1:] == ["name"], argv
            return 0, "atlasgit\natlasdb\n", ""
        user = "root"
        rest = rest[2:] if rest[1] == "-l" else rest[1:]
        if rest[0] == "-U":
            user, rest = rest[1], rest[2:]
        assert rest[0] == "atlasdb", argv
        cmd = rest[1:]
        if cmd[0] == pgp.PSQL:
            cmd = ["env", f"PGHOST={server.sock}", f"PGPORT={server.port}", str(PG_BIN / "psql"), *cmd[1:]]
        elif cmd[:3] == [pgp.SERVICE, "postgresql", "status"]:
            user, cmd = "postgres", [str(PG_BIN / "pg_ctl"), "-D", str(server.data), "status"]
        elif cmd[0] == "/bin/test":
            cmd = ["test", *cmd[1:]]
        else:
            raise AssertionError(f"the probe ran {argv}")
        runner = ["runuser", "-u", user, "--"] if user != "root" else []
        proc = subprocess.run(["timeout", *bound[1:], *runner, *cmd], input=data, capture_output=True, text=True,
                              check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(environ_update or {})})
        return proc.returncode, proc.stdout, proc.stderr

    return pgp.Runner(run_command, 60)


def probe(server, wanted):
    """The probe module's calls: the running jails once, then the agent's entry."""
    run = jexec_double(server)
    return pgp.probe(run, wanted, pgp.running_jails(run))


def run_role(server, tmp_path, differences, verbosity=0):
    wrapper = tmp_path / "jail-python"
    wrapper.write_text(f"#!/bin/sh\nexec runuser -u postgres -- {PYTHON} \"$@\"\n")
    wrapper.chmod(0o755)
    extra = {
        "warden_plan": {"agents": {"atlas": agent(server)}},
        "warden_postgresql_probe": {
            "agents": {"atlas": {"agent": "atlas", "running": True, "differences": differences}},
            "differ": ["atlas"] if differences else [],
        },
        "warden_test_passwords": {"atlas": PASSWORD},
        "warden_postgresql_jail_python": str(wrapper),
        "warden_postgresql_socket_dir": str(server.sock),
        "warden_postgresql_port": server.port,
    }
    extra_file = tmp_path / "extra.json"
    extra_file.write_text(json.dumps(extra))
    extra_file.chmod(0o600)
    playbook = pathlib.Path(sys.executable).parent / "ansible-playbook"
    argv = [str(playbook), "-i", "localhost,", str(HERE / "database.yml"), "-e", f"@{extra_file}"]
    argv += ["-" + "v" * verbosity] if verbosity else []
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", proc.stdout)
    return int(recap.group(2)), proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def converged(server, tmp_path_factory):
    """The role's database tasks once on the fresh server (at -vvv), then the restart its listen address needs."""
    before = probe(server, entry(server))
    changed, log = run_role(server, tmp_path_factory.mktemp("run1"), before["differences"], verbosity=3)
    server.pg_ctl("restart")
    return {"before": before, "changed": changed, "log": log}


def test_the_probe_of_a_fresh_cluster_lists_every_difference(converged):
    before = converged["before"]
    assert before["initialized"] and before["running"]
    assert before["differences"] == ["settings", "pg_hba", "role", "password", "databases", "extensions"]
    assert before["role"] is None and before["databases"] == {} and before["password_ok"] is False
    assert converged["changed"] > 0


def test_the_role_and_its_databases(server, converged):
    attrs = server.ok("SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = 'atlas'")
    assert attrs == "f|f|f|t"
    owners = server.ok("SELECT datname || '=' || pg_get_userbyid(datdba) FROM pg_database "
                       "WHERE datname LIKE 'atlas%' ORDER BY 1")
    assert owners.split() == ["atlas_brain=atlas", "atlas_ops=atlas", "atlas_skills=atlas"]
    for database in DATABASES.values():
        assert server.ok("SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
                         database=database) == "pgcrypto,plpgsql,uuid-ossp"
    assert server.ok("SHOW listen_addresses") == "127.0.0.1"
    assert server.ok("SHOW password_encryption") == "scram-sha-256"
    assert server.ok("SELECT rolpassword FROM pg_authid WHERE rolname = 'atlas'").startswith("SCRAM-SHA-256$4096:")


def test_pg_hba_admits_the_role_into_its_databases_from_its_network_only(server, converged):
    rules = server.ok("SELECT type, database, user_name, address, netmask, auth_method FROM pg_hba_file_rules "
                      "ORDER BY line_number").splitlines()
    assert rules == [
        "local|{all}|{postgres}|||peer",
        "host|{atlas_brain}|{atlas}|127.0.0.0|255.0.0.0|scram-sha-256",
        "host|{atlas_ops}|{atlas}|127.0.0.0|255.0.0.0|scram-sha-256",
        "host|{atlas_skills}|{atlas}|127.0.0.0|255.0.0.0|scram-sha-256",
    ]
    assert server.ok("SELECT current_user", user="atlas", database="atlas_brain", host="127.0.0.1",
                     password=PASSWORD) == "atlas"
    wrong = server.psql("SELECT 1", user="atlas", database="atlas_ops", host="127.0.0.1", password="wrong")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    for user, database in (("atlas", "postgres"), ("postgres", "atlas_ops"), ("postgres", "postgres")):
        refused = server.psql("SELECT 1", user=user, database=database, host="127.0.0.1", password=PASSWORD)
        assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stderr, (user, database)
    # the agent's role over the local socket: no rule either
    refused = server.psql("SELECT 1", user="atlas", database="atlas_ops", password=PASSWORD)
    assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stderr


def test_the_agents_role_cannot_create_databases_or_roles(server, converged):
    as_atlas = {"user": "atlas", "database": "atlas_ops", "host": "127.0.0.1", "password": PASSWORD}
    for sql in ("CREATE DATABASE atlas_more", "CREATE ROLE helper", "ALTER ROLE atlas CREATEDB"):
        proc = server.psql(sql, **as_atlas)
        assert proc.returncode != 0 and "permission denied" in proc.stderr, (sql, proc.stderr)
    # it owns its databases: it can work in them
    assert server.ok("CREATE TABLE notes (id int); INSERT INTO notes VALUES (1); SELECT count(*) FROM notes",
                     **as_atlas) == "1"


def test_the_probe_finds_nothing_to_do_after_the_repairs_and_the_restart(server, converged):
    after = probe(server, entry(server))
    assert after["differences"] == [], after
    assert after["password_ok"] is True and after["missing_extensions"] == []
    assert "rolpassword" not in after["role"] and PASSWORD not in json.dumps(after)


def test_the_probe_sees_a_wrong_password_and_an_extension_the_server_lacks(server, converged):
    # Debian's PostgreSQL 15 has no pgvector: the probe names it; FreeBSD's pgvector package provides it
    vector = probe(server, entry(server, password="other", extensions=["vector", *EXTENSIONS]))
    assert vector["differences"] == ["password", "extensions"]
    assert vector["missing_extensions"] == ["vector"]


def test_the_probe_sees_a_changed_pg_hba_and_a_superuser(server, converged):
    hba = server.data / "pg_hba.conf"
    kept = hba.read_bytes()
    server.ok("ALTER ROLE atlas SUPERUSER")
    hba.write_bytes(kept + b"\nhost all all 0.0.0.0/0 trust\n")
    try:
        found = probe(server, entry(server))
        assert found["differences"] == ["pg_hba", "role"]
    finally:
        server.ok("ALTER ROLE atlas NOSUPERUSER")
        hba.write_bytes(kept)


def test_a_second_run_changes_nothing(server, converged, tmp_path):
    # the modules again, as for an agent whose probe differs: each finds its part in order
    changed, log = run_role(server, tmp_path, ["role"])
    assert changed == 0, [line for line in log.splitlines() if line.startswith(("TASK", "changed"))]


def test_no_password_in_the_verbose_log(converged):
    assert "atlas_ops" in converged["log"], "the log is the role's"
    assert PASSWORD not in converged["log"]

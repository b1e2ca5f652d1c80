"""Every agent's PostgreSQL on the converged stand-in host, as an agent and a neighbour reach it.

The stand-in's db jails run the machine's PostgreSQL in their own network namespaces, so
``psql -h <db jail IP>`` from a git jail goes through the stand-in's bridge, PF and the server's
pg_hba.conf. The passwords are the controller's files (the plan's db.password_file).

The last test reboots the stand-in (`standin reboot`); it runs last in this module, and this
module after the others of the scenario.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(os.path.join(HERE, "..", "..", ".."))
NAME = os.environ.get("WARDEN_STANDIN_NAME", "molecule-default")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")
INVENTORY = os.path.join(PROJECT, "inventories", "example", "hosts.yml")
BIN = os.path.dirname(sys.executable)


def exec_in(*argv, env=None):
    """A command inside the stand-in (as root), its rc and output."""
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    return subprocess.run([STANDIN, "exec", NAME, "--", *prefix, *argv], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def plan():
    sys.path.insert(0, os.path.join(PROJECT, "plugins", "module_utils"))
    import fleet_model  # noqa: PLC0415 - the model is a plain module on the controller side

    with open(INVENTORY, encoding="utf-8") as handle:
        host, hostvars = next(iter(yaml.safe_load(handle)["warden_hosts"]["hosts"].items()))
    return fleet_model.plan_or_raise(host, hostvars)


@pytest.fixture(scope="module")
def agents(plan):
    """The agents with a db jail, each with its git jail and the password the role keeps on the controller."""
    found = []
    for agent in plan["agents"].values():
        if agent["state"] != "present" or not agent["db"]:
            continue
        with open(os.path.expanduser(agent["db"]["password_file"]), encoding="utf-8") as handle:
            password = handle.read().split()[0]
        git = next(j["name"] for j in agent["jails"] if j["slot"] == "git")
        found.append(dict(agent, password=password, git=git))
    assert len(found) >= 2, "the example has two agents with a db jail"
    # psql in the git jails, as an agent's tools would connect (the jails role installs only git there)
    for agent in found:
        client = f"postgresql{plan['postgresql_version']}-client"
        proc = exec_in("/usr/sbin/pkg", "-j", agent["git"], "install", "-y", client)
        assert exec_in("/usr/sbin/jexec", "-l", agent["git"], "/usr/local/bin/psql", "--version").returncode == 0, proc
    return found


def psql_from(jail, agent, user=None, database=None, sql="SELECT current_user", password=None):
    """psql over TCP from a jail to agent's db jail address."""
    env = {"PGPASSWORD": password or agent["password"], "PGCONNECT_TIMEOUT": "5"}
    return exec_in("/usr/sbin/jexec", "-l", jail, "env", *(f"{k}={v}" for k, v in env.items()),
                   "/usr/local/bin/psql", "-X", "-A", "-t", "-q", "-h", agent["db"]["host"],
                   "-U", user or agent["db"]["role"], "-d", database or agent["db"]["databases"]["ops"], "-c", sql)


def as_postgres(agent, sql, database="postgres"):
    proc = exec_in("/usr/sbin/jexec", "-l", "-U", "postgres", agent["db"]["jail"], "/usr/local/bin/psql", "-X",
                   "-A", "-t", "-q", "-d", database, "-c", sql)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_each_agent_reaches_its_own_databases_from_its_git_jail(agents):
    for agent in agents:
        for database in agent["db"]["databases"].values():
            proc = psql_from(agent["git"], agent, database=database)
            assert proc.returncode == 0 and proc.stdout.strip() == agent["db"]["role"], (database, proc.stderr)


def test_the_server_listens_on_the_jail_address_only_with_scram(agents):
    for agent in agents:
        assert as_postgres(agent, "SHOW listen_addresses") == agent["db"]["host"]
        assert as_postgres(agent, "SHOW password_encryption") == "scram-sha-256"
        role = as_postgres(agent, "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, "
                                  f"left(rolpassword, 14) FROM pg_authid WHERE rolname = '{agent['db']['role']}'")
        assert role == "f|f|f|t|SCRAM-SHA-256$"
        owners = as_postgres(agent, "SELECT datname || '=' || pg_get_userbyid(datdba) FROM pg_database "
                                    "WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1")
        assert owners.split() == sorted(f"{db}={agent['db']['role']}" for db in agent["db"]["databases"].values())
        for database in agent["db"]["databases"].values():
            extensions = as_postgres(agent, "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
                                     database=database).split(",")
            assert set(agent["db"]["extensions"]) <= set(extensions), (database, extensions)


def test_pg_hba_admits_the_role_from_its_subnet_and_postgres_by_the_socket_only(agents):
    for agent in agents:
        rules = as_postgres(agent, "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), "
                                   "coalesce(address, ''), coalesce(netmask, ''), auth_method FROM pg_hba_file_rules "
                                   "ORDER BY 1, 2").splitlines()
        network = agent["db"]["client_cidr"].split("/")[0]
        assert rules == sorted(
            [f"host|{db}|{agent['db']['role']}|{network}|255.255.255.0|scram-sha-256"
             for db in agent["db"]["databases"].values()] + ["local|all|postgres|||peer"]
        )
        # inside the agent's own subnet, pg_hba still refuses the superuser and other databases
        for user, database in (("postgres", agent["db"]["databases"]["ops"]), (agent["db"]["role"], "postgres")):
            proc = psql_from(agent["git"], agent, user=user, database=database)
            assert proc.returncode != 0 and "no pg_hba.conf entry" in proc.stderr, (user, database, proc.stderr)
        wrong = psql_from(agent["git"], agent, password="not-the-password")
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_another_agents_subnet_is_refused(agents):
    for agent in agents:
        for other in agents:
            if other is agent:
                continue
            # from the other agent's git jail, with the right role and password: PF drops it before pg_hba
            proc = psql_from(other["git"], agent)
            assert proc.returncode != 0, (other["name"], agent["name"], proc.stdout)
            assert agent["db"]["role"] not in proc.stdout


def test_the_agents_role_cannot_create_a_database_or_a_role(agents):
    for agent in agents:
        for sql in ("CREATE DATABASE extra", "CREATE ROLE helper", f"ALTER ROLE {agent['db']['role']} CREATEDB"):
            proc = psql_from(agent["git"], agent, sql=sql)
            assert proc.returncode != 0 and "permission denied" in proc.stderr, (sql, proc.stderr)


def test_a_verbose_rerun_changes_no_database_and_prints_no_password(agents, tmp_path):
    # the inventory molecule converged with (the example's hosts and the stand-in's host_vars)
    inventory = (os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"]) if "MOLECULE_INVENTORY_FILE" in os.environ
                 else os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory"))
    log = tmp_path / "postgresql-vvv.log"
    with open(log, "w", encoding="utf-8") as handle:
        run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", inventory,
                              os.path.join(HERE, "postgresql_play.yml"), "-vvv"], stdout=handle,
                             stderr=subprocess.STDOUT, check=False, cwd=PROJECT,
                             env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    text = log.read_text()
    assert run.returncode == 0, text[-3000:]
    assert "warden.fleet.postgresql : Probe every agent's PostgreSQL" in text
    assert [a["name"] for a in agents if a["password"] in text] == []
    assert re.search(r"bsd1\.example\.net\s*: ok=\d+\s+changed=0\s", text), "nothing to repair"
    # the per-agent tasks loop over no agent
    for task in ("Initialise the clusters", "Create the agent's login role", "Create the agent's databases"):
        section = text.split(f"warden.fleet.postgresql : {task}", 1)[1].split("TASK [", 1)[0]
        ran = "changed: [" in section or "ok: [" in section
        assert "skipping: [" in section and not ran, (task, section[:500])


def test_every_agents_postgresql_answers_again_after_a_reboot(agents):
    reboot = subprocess.run([STANDIN, "reboot", NAME], capture_output=True, text=True, check=False)
    assert reboot.returncode == 0, reboot.stderr
    state = json.loads(subprocess.run([STANDIN, "state", NAME], capture_output=True, text=True, check=True).stdout)
    for agent in agents:
        served = state["jails"][agent["db"]["jail"]]["postgresql"]
        assert agent["db"]["role"] in served["roles"]
        assert set(agent["db"]["databases"].values()) <= set(served["databases"])
        proc = psql_from(agent["git"], agent)
        assert proc.returncode == 0 and proc.stdout.strip() == agent["db"]["role"], proc.stderr

# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""What each agent's PostgreSQL in its db jail looks like, against what the plan wants.

One probe per host answers for every db jail, so a run whose databases are all in
order adds no task per agent: the role's per-agent loops run only over the agents
whose probe found a difference.  Everything is read inside the jail, through
``jexec -l -U postgres JAIL`` (the jail's own psql and rc.d script, the local
socket, peer authentication); nothing of the jail is read through the host's
view of its root.  Each command is bounded by timeout(1).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import ipaddress
import json
import re

JEXEC = "/usr/sbin/jexec"
JLS = "/usr/sbin/jls"
TIMEOUT = "/usr/bin/timeout"
PSQL = "/usr/local/bin/psql"
SERVICE = "/usr/sbin/service"
KILL_AFTER = 5
PARALLEL_READS = 8
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
JAIL_RE = re.compile(r"^[A-Za-z0-9]{1,11}$")
EXTENSION_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
SCRAM_RE = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")

# Differences in the order the role repairs them.
DIFFERENCES = (
    "jail", "cluster", "running", "settings", "pg_hba", "role", "password", "databases", "extensions", "restart",
)

# Run as the postgres superuser over the jail's local socket. psql variables: role, dbs, exts (comma lists).
# pg_authid's verifier never leaves this module: only whether the password matches it.
CLUSTER_SQL = r"""
SELECT json_build_object(
  'listen_addresses', current_setting('listen_addresses'),
  'password_encryption', current_setting('password_encryption'),
  'hba_file', current_setting('hba_file'),
  'data_directory', current_setting('data_directory'),
  'pending_restart', (SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM pg_settings WHERE pending_restart),
  'role', (SELECT row_to_json(r) FROM (
      SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolpassword
      FROM pg_authid WHERE rolname = :'role') r),
  'databases', (SELECT coalesce(json_object_agg(datname, pg_get_userbyid(datdba)), '{}')
      FROM pg_database WHERE datname = ANY (string_to_array(:'dbs', ','))),
  'available_extensions', (SELECT coalesce(json_agg(name ORDER BY name), '[]')
      FROM pg_available_extensions WHERE name = ANY (string_to_array(:'exts', ','))),
  'hba', (SELECT coalesce(json_agg(json_build_object(
      'type', type, 'database', database, 'user_name', user_name, 'address', address, 'netmask', netmask,
      'auth_method', auth_method, 'error', error) ORDER BY line_number), '[]') FROM pg_hba_file_rules)
);
"""
# Then, for each of the agent's databases that exists and takes connections, its installed extensions: one psql
# run answers everything. DB is a name the plan derived and validate() checked (NAME_RE).
EXTENSIONS_SQL = r"""
SELECT EXISTS (SELECT FROM pg_database WHERE datname = '{db}' AND datallowconn) AS warden_db_exists \gset
\if :warden_db_exists
\connect {db}
SELECT json_build_object('database', current_database(),
  'extensions', (SELECT coalesce(json_agg(extname ORDER BY extname), '[]') FROM pg_extension));
\endif
"""


class Runner:
    """Runs argv lists bounded by timeout(1); run_command is AnsibleModule.run_command or a test double."""

    def __init__(self, run_command, timeout):
        self.run_command = run_command
        self.timeout = timeout

    def __call__(self, argv, data=None):
        bound = [TIMEOUT, "-k", f"{KILL_AFTER}s", f"{self.timeout}s"]
        return self.run_command(bound + argv, data=data, environ_update={"LC_ALL": "C"})


def validate(entries):
    """Every problem of the databases option at once, before any command runs."""
    problems = []
    seen = set()
    for entry in entries:
        agent, jail = entry.get("agent"), entry.get("jail") or ""
        if not JAIL_RE.match(jail):
            problems.append(f"{agent}: {jail!r} is not a VNET jail name")
        if jail in seen:
            problems.append(f"{agent}: jail {jail} is listed twice")
        seen.add(jail)
        names = [entry["role"], *entry["databases"]]
        problems += [f"{agent}: {n!r} is not a PostgreSQL name of the plan" for n in names if not NAME_RE.match(n)]
        problems += [f"{agent}: {e!r} is not an extension" for e in entry["extensions"] if not EXTENSION_RE.match(e)]
    return problems


def scram_matches(verifier, password):
    """Whether a SCRAM-SHA-256 verifier of pg_authid.rolpassword was made from password (RFC 5802, RFC 7677).

    The plan's passwords are ASCII letters and digits, which SASLprep leaves as they are.
    """
    match = SCRAM_RE.match(verifier or "")
    if not match or password is None:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    ok_stored = hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    ok_server = hmac.compare_digest(server, base64.b64decode(server_key))
    return ok_stored and ok_server


def hba_keys(rule):
    """A pg_hba rule, as postgresql_pg_hba takes it or as pg_hba_file_rules shows it, as comparable tuples, one
    per database and user (postgresql_pg_hba writes a rule of several databases as one line per database)."""
    if "contype" in rule:
        source = rule.get("source") or ""
        address = str(ipaddress.ip_network(source, strict=False)) if source else ""
        kind, method = rule["contype"], rule["method"]
        databases, users = str(rule["databases"]).split(","), str(rule["users"]).split(",")
    else:
        address = _network(rule.get("address"), rule.get("netmask"))
        kind, method = rule["type"], rule["auth_method"]
        databases, users = rule["database"] or [], rule["user_name"] or []
    return [(kind, database, user, address, method) for database in databases for user in users]


def hba_matches(found, wanted):
    """Whether the rules found admit exactly what the wanted rules admit (as sets of atomic rules)."""
    return sorted(k for r in found for k in hba_keys(r)) == sorted(set(k for r in wanted for k in hba_keys(r)))


def _network(address, netmask):
    """pg_hba_file_rules' address and netmask as a CIDR; keywords (all, samenet) and host names as they are."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
        prefix = bin(int(ipaddress.ip_address(netmask))).count("1") if netmask else ip.max_prefixlen
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    except ValueError:
        return address


def _psql(run, jail, database, sql, variables=None):
    argv = [JEXEC, "-l", "-U", "postgres", jail, PSQL, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    for name, value in (variables or {}).items():
        argv += ["-v", f"{name}={value}"]
    return run(argv + ["-d", database, "-f", "-"], data=sql)


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def running_jails(run):
    """Names of the running jails, from one jls(8) call for the whole host."""
    rc, out, err = run([JLS, "name"])
    if rc != 0:
        raise ProbeError(f"jls name failed (rc {rc}): {err.strip() or out.strip()}")
    return set(out.split())


def probe(run, entry, jails_up):
    """The state of one agent's PostgreSQL and its differences from entry (an element of the databases option).

    jails_up: the running jails (running_jails()).  A running server answers everything in one psql call; only
    when it does not are initdb and the server's status asked for (two more commands).
    """
    jail = entry["jail"]
    found = {"agent": entry["agent"], "jail": jail, "differences": [], "jail_running": jail in jails_up}
    diff = found["differences"]
    if not found["jail_running"]:
        # Nothing inside can be read; the jails role creates and starts it (in check mode it has not yet).
        found.update(initialized=False, running=False)
        diff.append("jail")
        return found
    variables = {"role": entry["role"], "dbs": ",".join(entry["databases"]), "exts": ",".join(entry["extensions"])}
    script = CLUSTER_SQL + "".join(EXTENSIONS_SQL.format(db=db) for db in entry["databases"])
    rc, out, err = _psql(run, jail, "postgres", script, variables)
    if rc != 0:
        rc_init, _out, _err = run([JEXEC, "-l", "-U", "postgres", jail, "/bin/test", "-f",
                                   f"{entry['data_directory']}/PG_VERSION"])
        rc_status, _out, _err = run([JEXEC, "-l", jail, SERVICE, "postgresql", "status"])
        found.update(initialized=rc_init == 0, running=rc_status == 0)
        if found["running"]:
            raise ProbeError(f"{jail}: psql as postgres failed (rc {rc}): {err.strip() or out.strip()}")
        # Nothing more can be read: everything after the start is to be checked by the role's modules.
        diff += [d for d in DIFFERENCES if d not in ("jail", "restart") and (d != "cluster" or rc_init != 0)]
        return found
    found.update(initialized=True, running=True)
    state, *extension_rows = _json_lines(out)
    found.update(
        listen_addresses=state["listen_addresses"],
        password_encryption=state["password_encryption"],
        hba_file=state["hba_file"],
        data_directory=state["data_directory"],
        pending_restart=state["pending_restart"],
        databases=state["databases"],
        available_extensions=state["available_extensions"],
        missing_extensions=[e for e in entry["extensions"] if e not in state["available_extensions"]],
        hba_errors=[r["error"] for r in state["hba"] if r.get("error")],
    )
    if state["listen_addresses"] != entry["listen_addresses"] or state["password_encryption"] != "scram-sha-256":
        diff.append("settings")
    if found["hba_errors"] or not hba_matches(state["hba"], entry["hba"]):
        diff.append("pg_hba")
    role = state["role"]
    verifier = role.pop("rolpassword", None) if role else None
    found["role"] = role
    if not role or role["rolsuper"] or role["rolcreaterole"] or role["rolcreatedb"] or not role["rolcanlogin"]:
        diff.append("role")
    found["password_ok"] = scram_matches(verifier, entry.get("password"))
    del verifier
    if not found["password_ok"]:
        diff.append("password")
    if any(state["databases"].get(db) != entry["role"] for db in entry["databases"]):
        diff.append("databases")
    found["extensions"] = {row["database"]: row["extensions"] for row in extension_rows}
    if any(sorted(set(entry["extensions"]) - set(found["extensions"].get(db, []))) for db in entry["databases"]):
        diff.append("extensions")
    if state["pending_restart"]:
        diff.append("restart")
    return found


def probe_all(run, entries, jails_up):
    """probe() of every entry, {agent: found}; the servers are asked in parallel, so a run that changes
    nothing takes about as long for twenty agents as for one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_READS, len(entries)))) as pool:
        found = list(pool.map(lambda entry: probe(run, entry, jails_up), entries))
    return {entry["agent"]: state for entry, state in zip(entries, found, strict=True)}


class ProbeError(Exception):
    pass

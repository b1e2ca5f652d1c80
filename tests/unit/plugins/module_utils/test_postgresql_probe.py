"""postgresql_probe's pure parts: argument checks, pg_hba normalisation, the SCRAM check.
The SQL against a real server: tests/integration/postgresql."""

import base64
import hashlib
import hmac

from ansible_collections.warden.fleet.plugins.module_utils import postgresql_probe as pgp


def _entry(**over):
    entry = {"agent": "atlas", "jail": "atlasdb", "role": "atlas", "databases": ["atlas_ops"], "extensions": ["vector"]}
    entry.update(over)
    return entry


def _verifier(password, salt=b"0123456789abcdef", iterations=4096):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", hashlib.sha256).digest()).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"


def test_validate_names_every_bad_name_at_once():
    problems = pgp.validate([
        _entry(),
        _entry(agent="bob", jail="atlasdb", role="Bob;drop", databases=["bob ops"], extensions=["x'y"]),
        _entry(agent="eve", jail="eve-db"),
    ])
    assert problems == [
        "bob: jail atlasdb is listed twice",
        "bob: 'Bob;drop' is not a PostgreSQL name of the plan",
        "bob: 'bob ops' is not a PostgreSQL name of the plan",
        "bob: \"x'y\" is not an extension",
        "eve: 'eve-db' is not a VNET jail name",
    ]


def test_hba_rules_compare_as_atomic_rules_whatever_their_grouping():
    wanted = [
        {"contype": "local", "databases": "all", "users": "postgres", "method": "peer"},
        {"contype": "host", "databases": "a_ops,a_brain", "users": "a", "source": "10.0.1.0/24",
         "method": "scram-sha-256"},
    ]
    found = [
        {"type": "host", "database": ["a_brain"], "user_name": ["a"], "address": "10.0.1.0", "netmask": "255.255.255.0",
         "auth_method": "scram-sha-256"},
        {"type": "local", "database": ["all"], "user_name": ["postgres"], "address": None, "netmask": None,
         "auth_method": "peer"},
        {"type": "host", "database": ["a_ops"], "user_name": ["a"], "address": "10.0.1.0", "netmask": "255.255.255.0",
         "auth_method": "scram-sha-256"},
    ]
    assert pgp.hba_matches(found, wanted)
    # initdb's defaults (IPv6, trust) or one more rule are differences
    ipv6 = {"type": "host", "database": ["all"], "user_name": ["all"], "address": "::1",
            "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "auth_method": "trust"}
    assert pgp.hba_keys(ipv6) == [("host", "all", "all", "::1/128", "trust")]
    assert not pgp.hba_matches([*found, ipv6], wanted)
    assert not pgp.hba_matches(found[:2], wanted)
    samenet = {"type": "host", "database": ["all"], "user_name": ["all"], "address": "samenet", "netmask": None,
               "auth_method": "md5"}
    assert pgp.hba_keys(samenet) == [("host", "all", "all", "samenet", "md5")]


def test_scram_check_accepts_only_the_password_it_was_made_from():
    verifier = _verifier("Zq8Lr2Vn5Tx7")
    assert pgp.scram_matches(verifier, "Zq8Lr2Vn5Tx7")
    assert not pgp.scram_matches(verifier, "Zq8Lr2Vn5Tx8")
    assert not pgp.scram_matches("md5" + "0" * 32, "Zq8Lr2Vn5Tx7")
    assert not pgp.scram_matches(None, "Zq8Lr2Vn5Tx7")
    assert not pgp.scram_matches(verifier, None)


def test_a_db_jail_that_is_not_running_is_one_difference_and_nothing_is_read_inside():
    calls = []

    def run_command(argv, data=None, environ_update=None):
        calls.append(argv)
        return 0, "atlasgit\nclawdiedb\n", ""

    run = pgp.Runner(run_command, 5)
    jails_up = pgp.running_jails(run)
    assert jails_up == {"atlasgit", "clawdiedb"}
    found = pgp.probe(run, _entry(data_directory="/var/db/postgres/data17"), jails_up)
    assert found["differences"] == ["jail"] and not found["running"] and not found["jail_running"]
    assert calls == [["/usr/bin/timeout", "-k", "5s", "5s", "/usr/sbin/jls", "name"]]


def test_every_agent_is_probed_and_each_keeps_its_own_result():
    """probe_all asks the servers in parallel; each agent's result stays its own, in the entries' order."""
    calls = []

    def run_command(argv, data=None, environ_update=None):
        calls.append(argv)
        return 0, "", ""

    run = pgp.Runner(run_command, 5)
    entries = [_entry(agent=f"agent{i:02d}", jail=f"agent{i:02d}db", data_directory="/var/db/postgres/data17")
               for i in range(1, 21)]
    found = pgp.probe_all(run, entries, jails_up=set())
    assert list(found) == [e["agent"] for e in entries]
    assert all(found[e["agent"]]["jail"] == e["jail"] and found[e["agent"]]["differences"] == ["jail"] for e in entries)
    assert calls == []  # no jail runs: nothing is asked inside any
    assert pgp.probe_all(run, [], jails_up=set()) == {}

"""The fleet model: bad inventories are named precisely, good ones derive the right values."""

from __future__ import annotations

import copy
import ipaddress
import pathlib

import pytest
import yaml

from ansible_collections.warden.fleet.plugins.action.fleet_plan import role_variables
from ansible_collections.warden.fleet.plugins.module_utils import fleet_model
from ansible_collections.warden.fleet.plugins.module_utils.fleet_model import (
    InventoryError,
    build_plan,
    host_networks_from_facts,
    plan_or_raise,
)

ROLE_VARS = role_variables()
HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[3]
BAD_CASES = yaml.safe_load((HERE / "fleet_model_bad.yml").read_text())
EXAMPLE = yaml.safe_load((ROOT / "inventories/example/hosts.yml").read_text())["warden_hosts"]["hosts"]


def _hostvars(case):
    hostvars = {"warden_ext_if": "vtnet0"}
    if not case.get("no_agents"):
        agents = copy.deepcopy(case["agents"])
        if isinstance(agents, dict):
            for settings in agents.values():
                if isinstance(settings, dict):
                    settings.setdefault("command", "/usr/local/bin/agent-runtime")
        hostvars["warden_agents"] = agents
    hostvars.update(case.get("host", {}))
    return {key: value for key, value in hostvars.items() if value is not None}


def test_there_are_enough_distinct_bad_inventories():
    ids = [case["id"] for case in BAD_CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


@pytest.mark.parametrize("case", BAD_CASES, ids=[c["id"] for c in BAD_CASES])
def test_bad_inventory_names_agent_and_field(case):
    networks = [(iface, ipaddress.ip_network(net)) for iface, net in case.get("host_networks", [])]
    problems = build_plan("bsd1", _hostvars(case), networks, role_vars=ROLE_VARS)[1]

    found = sorted(((p.agent, p.field) for p in problems), key=str)
    expected = sorted(((e["agent"], e["field"]) for e in case["expect"]), key=str)
    assert found == expected, "\n".join(str(p) for p in problems)
    for expect in case["expect"]:
        problem = next(p for p in problems if (p.agent, p.field) == (expect["agent"], expect["field"]))
        assert problem.host == "bsd1"
        assert problem.fix, "every problem says what to do"
        assert expect.get("message", "") in problem.message
        assert expect.get("fix", "") in problem.fix
        text = str(problem)
        assert f"field '{expect['field']}'" in text
        if expect["agent"] is not None:
            assert f"agent '{expect['agent']}'" in text


def test_plan_or_raise_lists_every_problem():
    with pytest.raises(InventoryError) as raised:
        plan_or_raise("bsd1", {"warden_agents": {"Atlas": {}, "bob": {"subnet": "8.8.8"}}})
    fields = {(p.agent, p.field) for p in raised.value.problems}
    assert fields == {
        (None, "warden_ext_if"),
        ("Atlas", "name"),
        ("Atlas", "subnet"),
        ("Atlas", "command"),
        ("bob", "subnet"),
        ("bob", "command"),
    }
    assert str(raised.value).count("\n") == len(fields) - 1


def test_host_problems_come_before_agent_problems():
    problems = build_plan("bsd1", {"warden_agents": {"bob": {"subnet": "10.0.1"}}, "warden_relase": "x"})[1]
    assert [p.agent for p in problems] == [None, None, "bob"]


# -- good inventories -------------------------------------------------------


def _example_plan():
    plan, problems = build_plan("bsd1.example.net", EXAMPLE["bsd1.example.net"], role_vars=ROLE_VARS)
    assert problems == []
    return plan


def test_example_inventory_derives_host_values():
    plan = _example_plan()
    assert plan["bridge"] == "warden0"
    assert plan["ext_if"] == "vtnet0"
    assert plan["release"] == "14.3-RELEASE"
    assert plan["warden_net"] == ["10.0.1.0/24", "192.168.72.0/24"]
    assert plan["gateways"] == ["10.0.1.1/24", "192.168.72.1/24"]
    assert list(plan["agents"]) == ["atlas", "clawdie"]


def test_example_inventory_derives_atlas():
    atlas = _example_plan()["agents"]["atlas"]
    assert atlas["gateway"] == "10.0.1.1"
    assert atlas["cidr"] == "10.0.1.0/24"
    assert [(j["slot"], j["name"], j["ip"], j["thick"]) for j in atlas["jails"]] == [
        ("git", "atlasgit", "10.0.1.2", False),
        ("cms", "atlascms", "10.0.1.3", False),
        ("llm", "atlasllm", "10.0.1.4", False),
        ("db", "atlasdb", "10.0.1.5", True),
    ]
    assert all(j["gateway"] == "10.0.1.1" and j["cidr"] == f"{j['ip']}/24" for j in atlas["jails"])
    assert atlas["db"] == {
        "role": "atlas",
        "jail": "atlasdb",
        "host": "10.0.1.5",
        "databases": {"ops": "atlas_ops", "brain": "atlas_brain", "skills": "atlas_skills"},
        "extensions": ["vector", "pgcrypto", "uuid-ossp"],
        "client_cidr": "10.0.1.0/24",
        "password_file": "~/.config/warden/credentials/bsd1.example.net/atlas.db",
        "data_directory": "/var/db/postgres/data17",
        "hba_file": "/var/db/postgres/data17/pg_hba.conf",
    }
    assert atlas["llm"] == {"mode": "own", "ip": "10.0.1.4", "jail": "atlasllm"}
    assert atlas["service"]["rc_script"] == "/usr/local/etc/rc.d/atlas"
    assert atlas["service"]["rcvar"] == "atlas_enable"
    assert atlas["service"]["tmux_session"] == "atlas"
    assert atlas["ports"] == [18800, 18803]
    assert atlas["paths"]["workspace"] == "/usr/local/warden/agents/atlas/workspace"
    assert atlas["paths"]["env_file"] == "/usr/local/etc/warden/atlas.env"
    assert atlas["paths"]["backup_dir"] == "/var/backups/warden/atlas"
    assert atlas["soul"] == {
        "agent": "atlas",
        "repo": "https://git.example.net/souls/atlas.git",
        "version": "v1.2.0",
        "dest": "/usr/local/warden/souls/atlas",
        "workspace": "/usr/local/warden/agents/atlas/workspace",
        "owner": "atlas",
        "group": "atlas",
        "key_file": None,
    }
    assert atlas["paths"]["soul"] == atlas["soul"]["dest"]
    env = atlas["environment"]
    assert env["WARDEN_DB_IP"] == "10.0.1.5"
    assert env["WARDEN_OLLAMA_IP"] == env["WARDEN_LLAMA_CPP_IP"] == "10.0.1.4"
    assert (env["DISPLAY_LOCALE"], env["ASSISTANT_LOCALE"], env["SYSTEM_LOCALE"]) == ("sl-SI", "sl-SI", "sl_SI.UTF-8")


def test_a_soul_deploy_key_reaches_the_soul_entry():
    agent = {"subnet": "10.0.1", "command": "/bin/a",
             "soul": {"repo": "git@git.example.net:souls/atlas.git", "version": "v1", "key_file": "/root/keys/atlas"}}
    plan, problems = build_plan("h", {"warden_ext_if": "vtnet0", "warden_agents": {"atlas": agent}})
    assert problems == []
    assert plan["agents"]["atlas"]["soul"]["key_file"] == "/root/keys/atlas"
    assert plan["agents"]["atlas"]["soul"]["dest"] == "/usr/local/warden/souls/atlas"


def test_example_inventory_derives_clawdie_without_llm():
    clawdie = _example_plan()["agents"]["clawdie"]
    assert [j["name"] for j in clawdie["jails"]] == ["clawdiegit", "clawdiecms", "clawdiedb"]
    assert clawdie["gateway"] == "192.168.72.1"
    assert clawdie["llm"] == {"mode": "none", "ip": None, "jail": None}
    assert clawdie["environment"]["WARDEN_OLLAMA_IP"] == ""


def test_defaults_for_a_minimal_agent():
    plan = plan_or_raise(
        "h", {"warden_ext_if": "em0", "warden_agents": {"pi": {"subnet": "172.16.50", "command": "/bin/pi"}}}
    )
    pi = plan["agents"]["pi"]
    assert pi["assistant_name"] == "Pi"
    assert pi["state"] == "present"
    assert [j["slot"] for j in pi["jails"]] == list(fleet_model.DEFAULT_JAILS)
    assert pi["locale"] == fleet_model.DEFAULT_LOCALE
    assert pi["port"] is None and pi["ports"] == []
    assert pi["soul"] is None
    assert plan["postgresql_version"] == 17
    assert plan["backup"]["keep_last"] == 7


def test_overrides_and_display_locale_default_for_assistant():
    plan = plan_or_raise(
        "h",
        {
            "warden_ext_if": "em0",
            "warden_root": "/srv/warden/",
            "warden_agents": {
                "hermes": {
                    "subnet": "10.9.9",
                    "command": "/bin/h",
                    "jails": ["db", "git"],
                    "ips": {"db": "10.9.9.50"},
                    "jail_names": {"db": "hermesdata"},
                    "locale": {"display": "de-DE"},
                }
            },
        },
    )
    hermes = plan["agents"]["hermes"]
    assert [(j["slot"], j["name"], j["ip"]) for j in hermes["jails"]] == [
        ("git", "hermesgit", "10.9.9.2"),
        ("db", "hermesdata", "10.9.9.50"),
    ]
    assert hermes["db"]["jail"] == "hermesdata"
    assert hermes["db"]["host"] == "10.9.9.50"
    assert hermes["locale"] == {"display": "de-DE", "assistant": "de-DE", "system": "en_US.UTF-8"}
    assert hermes["paths"]["home"] == "/srv/warden/agents/hermes"


def test_shared_llm_is_one_jail_for_all_agents():
    plan = plan_or_raise(
        "h",
        {
            "warden_ext_if": "em0",
            "warden_shared_llm": {"subnet": "10.0.254", "name": "ollama1"},
            "warden_agents": {
                "atlas": {"subnet": "10.0.1", "command": "/bin/a", "llm": "shared"},
                "bob": {"subnet": "10.0.2", "command": "/bin/b", "llm": "shared"},
            },
        },
    )
    assert plan["shared_llm"] == {
        "name": "ollama1",
        "subnet": "10.0.254",
        "cidr": "10.0.254.0/24",
        "ip": "10.0.254.4",
        "gateway": "10.0.254.1",
    }
    for name in ("atlas", "bob"):
        assert plan["agents"][name]["llm"] == {"mode": "shared", "ip": "10.0.254.4", "jail": "ollama1"}
        assert plan["agents"][name]["environment"]["WARDEN_OLLAMA_IP"] == "10.0.254.4"
    assert plan["warden_net"] == ["10.0.1.0/24", "10.0.2.0/24", "10.0.254.0/24"]


def test_absent_agents_leave_the_network_but_keep_their_names():
    hostvars = copy.deepcopy(EXAMPLE["bsd1.example.net"])
    hostvars["warden_agents"]["clawdie"]["state"] = "absent"
    plan = plan_or_raise("h", hostvars)
    assert plan["warden_net"] == ["10.0.1.0/24"]
    assert plan["gateways"] == ["10.0.1.1/24"]
    assert plan["agents"]["clawdie"]["state"] == "absent"
    assert [j["name"] for j in plan["agents"]["clawdie"]["jails"]] == ["clawdiegit", "clawdiecms", "clawdiedb"]


def test_role_variables_come_from_the_roles_themselves():
    assert {"warden_preflight_show_plan", "warden_backup_schedule_enabled", "warden_host_tools_prefix"} <= ROLE_VARS
    assert "warden_preflight_result" in ROLE_VARS, "registered results count too"
    assert not any(name in ROLE_VARS for name in fleet_model.HOST_KEYS)


def test_role_variables_are_not_typos():
    hostvars = dict(EXAMPLE["bsd1.example.net"], warden_preflight_show_plan=True, warden_plan_out="/tmp/x")
    problems = build_plan("h", hostvars, role_vars=ROLE_VARS)[1]
    assert problems == []


def test_longest_agent_name_that_fits_every_jail():
    name = "a" * (fleet_model.JAIL_NAME_MAX - 3)
    plan = plan_or_raise(
        "h",
        {
            "warden_ext_if": "em0",
            "warden_agents": {name: {"subnet": "10.0.1", "command": "/b", "jails": ["git", "cms", "llm", "db"]}},
        },
    )
    assert max(len(j["name"]) for j in plan["agents"][name]["jails"]) == fleet_model.JAIL_NAME_MAX


def test_ports_ten_apart_do_not_collide():
    agents = {f"a{i}": {"subnet": f"10.0.{i}", "command": "/b", "port": 18800 + 10 * i} for i in range(1, 6)}
    plan = plan_or_raise("h", {"warden_ext_if": "em0", "warden_agents": agents})
    ports = [p for a in plan["agents"].values() for p in a["ports"]]
    assert len(ports) == len(set(ports)) == 10


def test_host_networks_from_freebsd_facts_skip_the_bridge_and_loopback():
    facts = {
        "interfaces": ["vtnet0", "lo0", "warden0", "e0a_atlasgit"],
        "vtnet0": {"ipv4": [{"address": "203.0.113.7", "netmask": "255.255.255.0"}]},
        "lo0": {"ipv4": [{"address": "127.0.0.1", "netmask": "255.0.0.0"}]},
        "warden0": {"ipv4": [{"address": "10.0.1.1", "netmask": "255.255.255.0"}]},
    }
    assert host_networks_from_facts(facts, "warden0") == [("vtnet0", ipaddress.ip_network("203.0.113.0/24"))]


def test_host_networks_from_linux_style_facts_include_secondaries():
    facts = {
        "interfaces": ["eth0"],
        "eth0": {
            "ipv4": {"address": "192.168.1.10", "netmask": "255.255.255.0"},
            "ipv4_secondaries": [{"address": "10.0.0.5", "netmask": "255.255.0.0"}],
        },
    }
    nets = [str(pair[1]) for pair in host_networks_from_facts(facts, "warden0")]
    assert nets == ["192.168.1.0/24", "10.0.0.0/16"]
    assert host_networks_from_facts(None, "warden0") == []


def test_summary_mentions_every_jail_and_database():
    lines = "\n".join(fleet_model.plan_summary(_example_plan()))
    for word in (
        "atlasgit",
        "atlasdb",
        "clawdiecms",
        "atlas_brain",
        "clawdie_skills",
        "/usr/local/etc/rc.d/atlas",
        "18803",
    ):
        assert word in lines


def test_every_inventory_key_is_documented():
    doc = (ROOT / "docs/inventory.md").read_text()
    keys = [f"`{k}`" for k in fleet_model.AGENT_KEYS if k not in ("locale", "soul")]
    keys += [f"`locale.{k}`" for k in fleet_model.LOCALE_KEYS]
    keys += [f"`soul.{k}`" for k in fleet_model.SOUL_KEYS]
    keys += [f"`{k}`" for k in fleet_model.HOST_KEYS if k not in ("warden_backup", "warden_shared_llm")]
    keys += [f"`warden_shared_llm.{k}`" for k in fleet_model.SHARED_LLM_KEYS]
    keys += [f"`warden_backup.{k}`" for k in fleet_model.BACKUP_DEFAULTS if k != "schedule"]
    keys += [f"`warden_backup.schedule.{k}`" for k in fleet_model.SCHEDULE_KEYS]
    missing = [k for k in keys if k not in doc]
    assert missing == []


def test_every_service_jail_says_what_runs_in_it():
    atlas = {j["slot"]: j for j in _example_plan()["agents"]["atlas"]["jails"]}
    assert (atlas["git"]["packages"], atlas["git"]["rc_conf"], atlas["git"]["services"]) == (
        ["git"], {"sshd_enable": "YES"}, ["sshd"])
    assert (atlas["cms"]["packages"], atlas["cms"]["rc_conf"], atlas["cms"]["services"]) == (
        ["nginx"], {"nginx_enable": "YES"}, ["nginx"])
    assert atlas["llm"]["packages"] == ["ollama"]
    assert atlas["llm"]["rc_conf"] == {"ollama_enable": "YES", "ollama_env": "OLLAMA_HOST=10.0.1.4:11434"}
    assert atlas["llm"]["services"] == ["ollama"]
    assert atlas["db"]["packages"] == [
        "postgresql17-server", "postgresql17-contrib", "pgvector", "python311", "py311-psycopg2"]
    assert atlas["db"]["rc_conf"] == {"postgresql_enable": "YES"}
    # PostgreSQL is initialised and started by the database role, after the jail exists
    assert atlas["db"]["services"] == []
    assert atlas["db"]["config"] == {"sysvshm": "new", "sysvsem": "new", "sysvmsg": "new"}
    assert all(atlas[slot]["config"] == {} for slot in ("git", "cms", "llm"))


def test_llama_cpp_backend_listens_on_the_jail_address():
    hostvars = copy.deepcopy(EXAMPLE["bsd1.example.net"])
    hostvars["warden_llm_backend"] = "llama-cpp"
    hostvars["warden_postgresql_version"] = 16
    plan = plan_or_raise("h", hostvars)
    jails = {j["slot"]: j for j in plan["agents"]["atlas"]["jails"]}
    assert plan["llm_backend"] == "llama-cpp" and plan["llm_port"] == 11434
    assert jails["llm"]["packages"] == ["llama-cpp"]
    assert jails["llm"]["rc_conf"] == {
        "llama_server_enable": "YES",
        "llama_server_model": "/var/db/llama-server/model.gguf",
        "llama_server_args": "--host 10.0.1.4 --port 11434",
    }
    # it needs the operator's model file first
    assert jails["llm"]["services"] == []
    assert jails["db"]["packages"][:2] == ["postgresql16-server", "postgresql16-contrib"]


def test_unknown_llm_backend_is_a_problem():
    hostvars = copy.deepcopy(EXAMPLE["bsd1.example.net"])
    hostvars["warden_llm_backend"] = "olama"
    _plan, problems = build_plan("h", hostvars)
    assert [(p.field, p.fix) for p in problems] == [("warden_llm_backend", "did you mean 'ollama'?")]


def test_host_jails_list_every_agent_jail_and_the_shared_llm_jail_in_use():
    hostvars = {
        "warden_ext_if": "em0",
        "warden_shared_llm": {"subnet": "10.0.254"},
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "command": "/bin/a", "llm": "shared", "jails": ["git"]},
            "bob": {"subnet": "10.0.2", "command": "/bin/b", "jails": ["db"], "state": "absent"},
        },
    }
    plan = plan_or_raise("h", hostvars)
    assert [(j["name"], j["agent"], j["state"], j["ip"], j["gateway"], j["thick"]) for j in plan["jails"]] == [
        ("atlasgit", "atlas", "present", "10.0.1.2", "10.0.1.1", False),
        ("bobdb", "bob", "absent", "10.0.2.5", "10.0.2.1", True),
        ("llm", None, "present", "10.0.254.4", "10.0.254.1", False),
    ]
    shared = plan["jails"][-1]
    assert shared["cidr"] == "10.0.254.4/24" and shared["services"] == ["ollama"]
    assert shared["rc_conf"]["ollama_env"] == "OLLAMA_HOST=10.0.254.4:11434"
    # without a present agent on it, the shared LLM jail is left alone (not listed, not destroyed)
    hostvars["warden_agents"]["atlas"]["state"] = "absent"
    assert [j["name"] for j in plan_or_raise("h", hostvars)["jails"]] == ["atlasgit", "bobdb"]


def test_the_git_jail_has_the_agents_account_reached_from_its_gateway_only():
    plan = _example_plan()
    jails = {j["slot"]: j for j in plan["agents"]["atlas"]["jails"]}
    assert jails["git"]["accounts"] == [
        {
            "name": "git",
            "home": "/srv/git",
            "shell": "/usr/local/bin/git-shell",
            "comment": "git repositories of atlas",
            "repositories": ["atlas.git"],
            "authorized_key": {
                "file": "/usr/local/warden/agents/atlas/.ssh/id_ed25519.pub",
                "owner": "atlas",
                "from": "10.0.1.1",
            },
        }
    ]
    assert all(jails[slot]["accounts"] == [] for slot in ("cms", "llm", "db"))


def test_every_agent_has_its_ssh_key_pair_in_its_home_and_the_git_jail_takes_its_public_key():
    plan = _example_plan()
    atlas = plan["agents"]["atlas"]
    assert atlas["ssh_key"] == {
        "dir": "/usr/local/warden/agents/atlas/.ssh",
        "private": "/usr/local/warden/agents/atlas/.ssh/id_ed25519",
        "public": "/usr/local/warden/agents/atlas/.ssh/id_ed25519.pub",
        "type": "ed25519",
        "comment": "atlas@bsd1.example.net",
        "known_hosts": "/usr/local/warden/agents/atlas/.ssh/known_hosts",
        "config": "/usr/local/warden/agents/atlas/.ssh/config",
        "hosts": [{"alias": "git", "jail": "atlasgit", "ip": "10.0.1.2", "user": "git",
                   "host_key": "/etc/ssh/ssh_host_ed25519_key.pub"}],
    }
    git = next(j for j in atlas["jails"] if j["slot"] == "git")
    assert git["accounts"][0]["authorized_key"]["file"] == atlas["ssh_key"]["public"]
    assert git["accounts"][0]["name"] == atlas["ssh_key"]["hosts"][0]["user"]
    # an agent without a git jail pins no host
    bob = {"subnet": "10.0.2", "command": "/bin/b", "jails": ["db"]}
    hostvars = {"warden_ext_if": "vtnet0", "warden_agents": {"bob": bob}}
    assert plan_or_raise("h", hostvars)["agents"]["bob"]["ssh_key"]["hosts"] == []
    assert {name: agent["ssh_key"]["dir"] for name, agent in plan["agents"].items()} == {
        name: f"{agent['paths']['home']}/.ssh" for name, agent in plan["agents"].items()
    }


def test_bastille_directories_follow_the_prefix_and_release():
    hostvars = copy.deepcopy(EXAMPLE["bsd1.example.net"])
    hostvars["warden_bastille_prefix"] = "/srv/bastille/"
    assert plan_or_raise("h", hostvars)["bastille"] == {
        "prefix": "/srv/bastille",
        "jailsdir": "/srv/bastille/jails",
        "releasesdir": "/srv/bastille/releases",
        "release_dir": "/srv/bastille/releases/14.3-RELEASE",
        "logsdir": "/var/log/bastille",
    }


def test_expose_derives_the_jail_address_and_defaults():
    agents = {
        "atlas": {"subnet": "10.0.1", "command": "/b", "ips": {"cms": "10.0.1.30"},
                  "expose": [{"port": 8443, "slot": "cms", "to": 443}, {"port": 2222, "slot": "git", "proto": "udp"}]},
        "bob": {"subnet": "10.0.2", "command": "/b", "state": "absent", "expose": [{"port": 8443, "slot": "cms"}]},
    }
    plan = plan_or_raise("h", {"warden_ext_if": "em0", "warden_agents": agents})
    assert plan["agents"]["atlas"]["expose"] == [
        {"proto": "tcp", "port": 8443, "slot": "cms", "jail": "atlascms", "ip": "10.0.1.30", "to": 443},
        {"proto": "udp", "port": 2222, "slot": "git", "jail": "atlasgit", "ip": "10.0.1.2", "to": 2222},
    ]
    # an absent agent's redirect no longer holds the host's port
    assert plan["agents"]["bob"]["expose"][0]["port"] == 8443


def _runtime_hostvars():
    return {
        "warden_ext_if": "vtnet0",
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "command": "/bin/a", "secrets": {"GATEWAY_TOKEN": "tok-atlas-1"}},
            "bob": {"subnet": "10.0.2", "command": "/bin/b", "jails": ["git"], "secrets": {"API_KEY": "key-bob"}},
        },
    }


def test_secret_values_never_enter_the_plan_only_their_names():
    plan = plan_or_raise("h", _runtime_hostvars())
    assert plan["agents"]["atlas"]["secrets"] == ["GATEWAY_TOKEN"]
    assert plan["agents"]["bob"]["secrets"] == ["API_KEY"]
    text = repr(plan)
    assert "tok-atlas-1" not in text and "key-bob" not in text


def test_two_agents_with_the_same_secret_value_are_refused_naming_both_never_the_value():
    hostvars = _runtime_hostvars()
    hostvars["warden_agents"]["bob"]["secrets"]["GATEWAY_TOKEN"] = "tok-atlas-1"
    problems = build_plan("h", hostvars)[1]
    assert [(p.agent, p.field) for p in problems] == [("bob", "secrets.GATEWAY_TOKEN")]
    assert "agent 'atlas'" in problems[0].message and "GATEWAY_TOKEN" in problems[0].message
    assert "one token per agent" in problems[0].fix
    assert "tok-atlas-1" not in str(problems[0])


@pytest.mark.parametrize(
    ("secrets", "field", "message"),
    [
        ({"1TOKEN": "x"}, "secrets.1TOKEN", "not an environment variable name"),
        ({"TOKEN": ""}, "secrets.TOKEN", "non-empty single-line"),
        ({"TOKEN": "a\nb"}, "secrets.TOKEN", "non-empty single-line"),
        ({"TOKEN": 12345}, "secrets.TOKEN", "non-empty single-line"),
        ({"WARDEN_DB_PASSWORD": "x"}, "secrets.WARDEN_DB_PASSWORD", "collection sets"),
        ({"AGENT_NAME": "x"}, "secrets.AGENT_NAME", "collection sets"),
        ({"WARDEN_DB_USER": "x"}, "secrets.WARDEN_DB_USER", "collection sets"),
        (["TOKEN"], "secrets", "must be a mapping"),
    ],
)
def test_bad_secrets_are_named_without_their_value(secrets, field, message):
    hostvars = _runtime_hostvars()
    hostvars["warden_agents"]["atlas"]["secrets"] = secrets
    plan, problems = build_plan("h", hostvars)
    assert [(p.agent, p.field) for p in problems] == [("atlas", field)]
    assert message in problems[0].message
    assert "a\nb" not in str(problems[0]) and "12345" not in str(problems[0])
    assert plan["agents"]["atlas"]["secrets"] == []


def test_env_gets_the_database_connection_log_dir_and_shared_dir_but_no_password():
    hostvars = _runtime_hostvars()
    hostvars["warden_shared_files"] = {"src": "/srv/warden/shared/"}
    plan = plan_or_raise("h", hostvars)
    assert plan["shared_files"] == {"src": "/srv/warden/shared", "dir": "/usr/local/warden/shared"}
    atlas = plan["agents"]["atlas"]
    env = atlas["environment"]
    assert env["WARDEN_DB_HOST"] == "10.0.1.5" and env["WARDEN_DB_USER"] == "atlas"
    assert (env["WARDEN_DB_OPS"], env["WARDEN_DB_BRAIN"], env["WARDEN_DB_SKILLS"]) == (
        "atlas_ops",
        "atlas_brain",
        "atlas_skills",
    )
    assert "WARDEN_DB_PASSWORD" not in env
    assert env["WARDEN_LOG_DIR"] == atlas["paths"]["logs"] == "/usr/local/warden/agents/atlas/logs"
    assert "WARDEN_SHARED_DIR" not in env, "the workspace link is the way in"
    assert atlas["paths"]["shared"] == "/usr/local/warden/agents/atlas/workspace/shared"
    # an agent without a db jail gets no database variables
    assert plan["agents"]["bob"]["environment"]["WARDEN_DB_IP"] == ""
    assert not [k for k in plan["agents"]["bob"]["environment"] if k.startswith("WARDEN_DB_") and k != "WARDEN_DB_IP"]


def test_shared_files_are_optional_and_need_an_absolute_source():
    plan = plan_or_raise("h", _runtime_hostvars())
    assert plan["shared_files"] is None and "shared" not in plan["agents"]["atlas"]["paths"]
    hostvars = _runtime_hostvars()
    hostvars["warden_shared_files"] = {"src": "shared", "dest": "/x"}
    problems = build_plan("h", hostvars)[1]
    assert sorted(p.field for p in problems) == ["warden_shared_files.dest", "warden_shared_files.src"]


def test_db_gets_vector_then_the_inventory_extensions_its_client_network_and_password_file():
    hostvars = {
        "warden_ext_if": "vtnet0",
        "warden_db_extensions": ["pgcrypto"],
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "command": "/bin/a", "db_extensions": ["uuid-ossp", "vector", "uuid-ossp"]},
            "bob": {"subnet": "10.0.2", "command": "/bin/b"},
        },
    }
    plan = plan_or_raise("bsd1", hostvars)
    atlas, bob = plan["agents"]["atlas"]["db"], plan["agents"]["bob"]["db"]
    # vector always, first and once; an agent's own list replaces the host's
    assert atlas["extensions"] == ["vector", "uuid-ossp"]
    assert bob["extensions"] == ["vector", "pgcrypto"]
    assert atlas["client_cidr"] == "10.0.1.0/24" and bob["client_cidr"] == "10.0.2.0/24"
    # one file per host and agent, under the controller's credentials directory (never in the plan: the value)
    assert atlas["password_file"] == "~/.config/warden/credentials/bsd1/atlas.db"
    hostvars["warden_credentials_dir"] = "/srv/vault/warden/"
    assert plan_or_raise("bsd1", hostvars)["agents"]["bob"]["db"]["password_file"] == "/srv/vault/warden/bsd1/bob.db"


def test_every_db_extension_names_the_freebsd_package_that_ships_it():
    assert fleet_model.DB_EXTENSION_PACKAGES["vector"] == "pgvector"
    assert fleet_model.DB_EXTENSION_PACKAGES["pgcrypto"] == fleet_model.DB_EXTENSION_PACKAGES["uuid-ossp"]
    assert set(fleet_model.DB_DEFAULT_EXTENSIONS) <= set(fleet_model.DB_EXTENSION_PACKAGES)

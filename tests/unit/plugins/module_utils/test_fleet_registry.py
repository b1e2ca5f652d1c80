"""The agent registry: runs add and update, an unlisted agent stays, only state absent removes one."""

from __future__ import annotations

import copy
import json
import os
import pathlib

import pytest
import yaml

from ansible_collections.warden.fleet.plugins.module_utils import fleet_registry as reg
from ansible_collections.warden.fleet.plugins.module_utils.fleet_model import plan_or_raise

ROOT = pathlib.Path(__file__).resolve().parents[4]
EXAMPLE = yaml.safe_load((ROOT / "inventories/example/hosts.yml").read_text())["warden_hosts"]["hosts"]
HOST, HOSTVARS = next(iter(EXAMPLE.items()))


def plan(**agents):
    hostvars = copy.deepcopy(HOSTVARS)
    for name, agent in agents.items():
        if agent is None:
            hostvars["warden_agents"].pop(name, None)
        else:
            hostvars["warden_agents"][name] = agent
    return plan_or_raise(HOST, hostvars)


HERMES = {"subnet": "10.0.2", "jails": ["git"], "command": "/usr/local/bin/agent-runtime", "port": 18810}


def test_first_run_registers_the_inventory(tmp_path):
    path = str(tmp_path / "db" / "registry.json")
    data = reg.update(reg.load(path), plan())
    reg.save(path, data)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert reg.load(path) == data and sorted(data["agents"]) == ["atlas", "clawdie"]
    merged = reg.merged(data, plan())
    assert merged["gateways"] == ["10.0.1.1/24", "192.168.72.1/24"]
    assert merged["warden_net"] == ["10.0.1.0/24", "192.168.72.0/24"]
    assert merged["absent"] == [] and merged["gateways_absent"] == [] and merged["unlisted"] == []


def test_an_inventory_that_omits_an_agent_keeps_it():
    data = reg.update(reg.empty(), plan(hermes=HERMES))
    other = plan(atlas=None)  # another operator's inventory: clawdie only
    after = reg.update(data, other)
    assert sorted(after["agents"]) == ["atlas", "clawdie", "hermes"]
    merged = reg.merged(after, other)
    assert merged["gateways"] == ["10.0.1.1/24", "10.0.2.1/24", "192.168.72.1/24"]
    assert merged["unlisted"] == ["atlas", "hermes"]
    assert [a["name"] for a in merged["agents"]] == ["atlas", "hermes", "clawdie"]


def test_state_absent_marks_then_prune_forgets():
    data = reg.update(reg.empty(), plan(hermes=HERMES))
    gone = plan(hermes=dict(HERMES, state="absent"))
    marked = reg.update(data, gone)
    assert marked["agents"]["hermes"]["state"] == "absent"
    merged = reg.merged(marked, gone)
    assert merged["absent_names"] == ["hermes"] and merged["gateways_absent"] == ["10.0.2.1/24"]
    assert "10.0.2.1/24" not in merged["gateways"] and "10.0.2.0/24" not in merged["warden_net"]
    # a run from an inventory that does not list hermes still removes it while it is marked absent
    assert reg.merged(marked, plan())["gateways_absent"] == ["10.0.2.1/24"]
    assert sorted(reg.prune(marked)["agents"]) == ["atlas", "clawdie"]


def test_absent_agent_never_registered_is_still_removed():
    gone = plan(hermes=dict(HERMES, state="absent"))
    data = reg.update(reg.empty(), gone)
    assert "hermes" not in data["agents"]
    assert reg.merged(data, gone)["gateways_absent"] == ["10.0.2.1/24"]


def test_subnet_of_an_unlisted_registered_agent_is_a_conflict():
    data = reg.update(reg.empty(), plan(hermes=HERMES))
    clash = plan(hermes=None, hera=dict(HERMES, port=18820))
    with pytest.raises(reg.RegistryError, match="'hera' wants subnet 10.0.2.0/24.*'hermes'"):
        reg.update(data, clash)


def test_a_damaged_registry_fails_without_changes(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text("[]")
    with pytest.raises(reg.RegistryError, match="not an agent registry"):
        reg.load(str(path))
    path.write_text(json.dumps({"version": 99, "agents": {}}))
    with pytest.raises(reg.RegistryError, match="version 99"):
        reg.load(str(path))

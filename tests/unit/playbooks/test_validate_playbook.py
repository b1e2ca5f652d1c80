"""playbooks/validate.yml and site.yml's preflight, run for real with ansible-playbook.

The inventories name hosts that do not resolve: any attempt to contact one
would fail as unreachable, so a pass also proves validation stays on the
controller.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent


def run_playbook(playbook, inventory, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def bad_inventory(tmp_path):
    inventory = {
        "warden_hosts": {
            "hosts": {
                "bsd-a.invalid": {
                    "warden_ext_if": "vtnet0",
                    "warden_agents": {
                        "atlas": {"subnet": "10.0.1", "command": "/usr/local/bin/agent-runtime", "port": 18800},
                        "hermes": {"subnet": "10.0.1", "command": "/usr/local/bin/agent-runtime", "port": 18803},
                    },
                },
                "bsd-b.invalid": {
                    "warden_ext_if": "em0",
                    "warden_agents": {
                        "pi": {"subnet": "10.0.7", "command": "/bin/pi", "soul": {"repo": "/srv/pi.git"}}
                    },
                },
            }
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def test_example_inventory_validates_and_writes_the_plan(tmp_path):
    out = tmp_path / "plan.json"
    result = run_playbook("playbooks/validate.yml", "inventories/example/hosts.yml", "-e", f"warden_plan_out={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agent atlas (Atlas, present): subnet 10.0.1.0/24, gateway 10.0.1.1" in result.stdout
    assert "jail db   atlasdb      10.0.1.5        (thick)" in result.stdout
    assert "db   role clawdie on clawdiedb: clawdie_ops, clawdie_brain, clawdie_skills" in result.stdout

    plans = json.loads(out.read_text())
    assert list(plans) == ["bsd1.example.net"]
    atlas = plans["bsd1.example.net"]["agents"]["atlas"]
    assert atlas["subnet"] == "10.0.1"
    assert atlas["gateway"] == "10.0.1.1"
    assert {j["name"]: j["ip"] for j in atlas["jails"]} == {
        "atlasgit": "10.0.1.2",
        "atlascms": "10.0.1.3",
        "atlasllm": "10.0.1.4",
        "atlasdb": "10.0.1.5",
    }
    assert atlas["db"]["role"] == "atlas"
    assert sorted(atlas["db"]["databases"].values()) == ["atlas_brain", "atlas_ops", "atlas_skills"]
    assert atlas["service"]["name"] == "atlas"
    assert atlas["port"] == 18800


def test_bad_inventory_fails_listing_every_problem_of_every_host(bad_inventory, tmp_path):
    out = tmp_path / "plan.json"
    result = run_playbook("playbooks/validate.yml", bad_inventory, "-e", f"warden_plan_out={out}")
    assert result.returncode != 0
    text = result.stdout
    assert "bsd-a.invalid: agent 'hermes', field 'subnet': 10.0.1.0/24 is also the subnet of agent 'atlas'" in text
    assert "bsd-a.invalid: agent 'hermes', field 'port'" in text
    assert "bsd-b.invalid: agent 'pi', field 'soul.version': the soul repo has no pinned version" in text
    assert "unreachable=1" not in text and "UNREACHABLE" not in text
    assert not out.exists(), "no plan is written for a bad inventory"


def test_site_stops_every_host_in_preflight(bad_inventory):
    result = run_playbook("site.yml", bad_inventory)
    assert result.returncode != 0
    assert "field 'subnet'" in result.stdout
    assert "Read the host's own networks" not in result.stdout, "no host is contacted once one fails"


def test_wrong_types_are_named_plainly(tmp_path):
    # Values reach the model as Ansible's tagged subclasses of str, float, list...
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "warden_hosts:\n"
        "  hosts:\n"
        "    h1.invalid:\n"
        "      warden_ext_if: vtnet0\n"
        "      warden_agents:\n"
        "        atlas: {subnet: 10.5, command: /bin/x, port: '18800', jails: git}\n"
        "        bob: [1]\n"
    )
    result = run_playbook("playbooks/validate.yml", inventory)
    assert result.returncode != 0
    text = result.stdout
    assert "agent 'atlas', field 'subnet': must be a string like '10.0.1', got number 10.5" in text
    assert "agent 'atlas', field 'port': must be an integer, got string '18800'" in text
    assert "agent 'atlas', field 'jails': must be a list, got string" in text
    assert "agent 'bob', field 'settings': must be a mapping, got list" in text
    assert "_AnsibleTagged" not in text


def test_an_unevaluable_warden_variable_is_a_clear_error_and_other_variables_are_left_alone(tmp_path):
    inventory = tmp_path / "hosts.yml"
    agents = "      warden_agents:\n        atlas: {subnet: '{{ atlas_subnet }}', command: /bin/x}\n"
    inventory.write_text("warden_hosts:\n  hosts:\n    h1.invalid:\n      warden_ext_if: vtnet0\n" + agents)
    result = run_playbook("playbooks/validate.yml", inventory)
    assert result.returncode != 0
    flat = " ".join(result.stdout.split())
    assert "h1.invalid: a warden_* variable cannot be evaluated, nothing was changed" in flat
    assert "''atlas_subnet'' is undefined" in flat
    assert "Traceback" not in result.stdout + result.stderr

    unrelated = "      unrelated: '{{ not_defined_anywhere }}'\n"
    inventory.write_text(
        "warden_hosts:\n  hosts:\n    h1.invalid:\n      warden_ext_if: vtnet0\n"
        + unrelated
        + agents.replace("'{{ atlas_subnet }}'", "10.0.1")
    )
    result = run_playbook("playbooks/validate.yml", inventory)
    assert result.returncode == 0, result.stdout

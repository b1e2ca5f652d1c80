# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Validate a host's warden inventory and return its plan, on the controller.

Runs without connecting to the host: it reads the host's inventory variables
and, when they were gathered, its network facts.
"""

from __future__ import annotations

import functools
import glob
import os

import yaml
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.warden.fleet.plugins.module_utils.fleet_model import (
    build_plan,
    host_networks_from_facts,
    plan_summary,
)

ROLES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "roles")
SET_FACT = ("set_fact", "ansible.builtin.set_fact")
NESTED = ("block", "rescue", "always")


def _load(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None


def _task_variables(tasks):
    """Names a task list registers or sets as facts, blocks included."""
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        if isinstance(task.get("register"), str):
            yield task["register"]
        for action in SET_FACT:
            if isinstance(task.get(action), dict):
                yield from (key for key in task[action] if key != "cacheable")
        for section in NESTED:
            yield from _task_variables(task.get(section))


@functools.lru_cache(maxsize=1)
def role_variables():
    """Every variable the collection's roles define: documented options, defaults, registered results, facts.

    Such variables in the inventory are deliberate, not typos.
    """
    names = set()
    for spec_file in glob.glob(os.path.join(ROLES_DIR, "*", "meta", "argument_specs.yml")):
        specs = (_load(spec_file) or {}).get("argument_specs") or {}
        for entry in specs.values():
            names.update((entry or {}).get("options") or {})
    for defaults_file in glob.glob(os.path.join(ROLES_DIR, "*", "defaults", "main.yml")):
        names.update(_load(defaults_file) or {})
    for tasks_file in glob.glob(os.path.join(ROLES_DIR, "*", "tasks", "*.yml")):
        names.update(_task_variables(_load(tasks_file)))
    return frozenset(names)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("use_facts",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        use_facts = self._task.args.get("use_facts", True)
        if not isinstance(use_facts, bool):
            return dict(result, failed=True, msg="use_facts must be a boolean")

        host = task_vars.get("inventory_hostname")
        source = task_vars.get("hostvars", {}).get(host, {})
        facts = task_vars.get("ansible_facts") if use_facts else None
        try:
            # Only the warden_* variables: the host's other variables are none of our business
            # and templating them could fail for reasons unrelated to the fleet.
            hostvars = {key: source[key] for key in source if isinstance(key, str) and key.startswith("warden_")}
            networks = host_networks_from_facts(facts, hostvars.get("warden_bridge", "warden0"))
            plan, problems = build_plan(host, hostvars, networks, role_variables())
        except AnsibleError as error:
            return dict(
                result,
                failed=True,
                msg=f"{host}: a warden_* variable cannot be evaluated, nothing was changed: {error.message}. "
                "Fix: define what its template uses, or write the value literally",
            )
        result.update(
            changed=False,
            plan={} if problems else plan,
            summary=plan_summary(plan) if not problems else [],
            problems=[p.as_dict() for p in problems],
            checked_networks=[f"{iface} {net}" for iface, net in networks],
        )
        if problems:
            result["failed"] = True
            count = len(problems)
            result["msg"] = (
                f"{count} problem{'s' if count > 1 else ''} in the inventory of {host}, nothing was changed:\n"
                + ("\n".join(f"- {p}" for p in problems))
            )
        return result

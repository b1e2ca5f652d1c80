# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Validate a host's warden inventory and return its plan, on the controller.

Runs without connecting to the host: it reads the host's inventory variables
and, when they were gathered, its network facts.
"""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

from ansible_collections.warden.fleet.plugins.module_utils.fleet_model import (
    build_plan,
    host_networks_from_facts,
    plan_summary,
)

ROLES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "roles")


def _role_names():
    try:
        return sorted(entry for entry in os.listdir(ROLES_DIR) if os.path.isdir(os.path.join(ROLES_DIR, entry)))
    except OSError:
        return []


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
        hostvars = dict(task_vars.get("hostvars", {}).get(host, {}))
        facts = task_vars.get("ansible_facts") if use_facts else None
        bridge = hostvars.get("warden_bridge", "warden0")
        networks = host_networks_from_facts(facts, bridge)

        plan, problems = build_plan(host, hostvars, networks, _role_names())
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

# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""What the plan says about an agent: its entry, its backup directory, the workspaces no agent owns."""

from __future__ import annotations

import os

from .common import RESTORE_PREFIX, BackupError


def agent_plan(plan, name):
    agents = plan.get("agents") or {}
    if name not in agents:
        raise BackupError("agent {!r} is not in the plan of host {}".format(name, plan.get("host", "?")))
    return agents[name]


def agent_backup_dir(plan, name):
    agents = plan.get("agents") or {}
    if name in agents and agents[name].get("paths", {}).get("backup_dir"):
        return agents[name]["paths"]["backup_dir"]
    return os.path.join(plan["backup"]["dir"], name)


def selected_agents(plan, names=None):
    agents = plan.get("agents") or {}
    if names:
        missing = [n for n in names if n not in agents]
        if missing:
            raise BackupError("not in the plan: {}".format(", ".join(sorted(missing))))
        return sorted(names)
    return sorted(n for n, a in agents.items() if a.get("state", "present") == "present")


def orphan_workspaces(plan):
    """Directories under <root>/agents/ that no agent of the plan owns."""
    base = os.path.join(plan["root"], "agents")
    known = set((plan.get("agents") or {}).keys())
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [
        os.path.join(base, n)
        for n in names
        if n not in known
        and not n.startswith(RESTORE_PREFIX)  # a restore's root-only staging
        and os.path.isdir(os.path.join(base, n))
        and not os.path.islink(os.path.join(base, n))
    ]

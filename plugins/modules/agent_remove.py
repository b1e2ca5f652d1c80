#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: agent_remove
short_description: Remove what is left of the removed agents of a host, once a verified backup holds their files
version_added: 0.1.0
description:
  - One call handles every removed agent of a host (O(agents), each with C(state=absent) in the plan). A call that
    finds nothing left of them only looks (a few C(lstat) calls per agent).
  - "Per agent, from the plan: its env file C(paths.env_file), its soul checkout C(paths.soul), its home C(paths.home)
    (workspace, state, logs and anything else in it), the service's pidfiles C(service.pidfile) and
    C(service.child_pidfile), its log C(service.log) with the copies newsyslog(8) rotated, and its tmux socket
    directory C(/tmp/tmux-UID). Its backups are never touched. Its user and group are left to
    M(ansible.builtin.user) and M(ansible.builtin.group): RV(users) and RV(groups) name those that still exist."
  - Nothing of an agent is removed while a process of its user runs on the host (C(pgrep -U USER -j none)), nor
    unless the newest good archive of its backups holds its workspace and state exactly as they are on disk (every
    directory, every file by size and sha256, every link by target; the backup's exclusions apply) and verifies
    completely (the archive's sha256 and every member's). Such an agent is listed in RV(refused) with the reason and
    nothing of it is removed; the other agents are removed.
  - The agent is hostile to root. The directory above each path is opened from C(/) down without following symlinks,
    and a tree is removed with C(shutil.rmtree) relative to that descriptor, which on FreeBSD opens every directory
    with C(O_NOFOLLOW) relative to its parent and unlinks a symlink instead of following it, so a link the agent
    planted to a file outside its home is removed and the file stays. A tree is first renamed to
    C(.warden-removing-NAME) in its root-owned parent, so a removal that stops half way never leaves a half workspace
    behind for a backup to take.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agents:
    description: The agents to remove, by name. Each must have C(state=absent) in the plan.
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Reports what is left of each agent, its processes and whether a verified backup holds its files;
      removes nothing and refuses nothing.
  diff_mode:
    support: full
    description: Per agent, the paths that would be removed (the user and group tasks show theirs).
notes:
  - Runs as root on the FreeBSD host, after the agent's service was stopped and before its user is removed.
seealso:
  - module: warden.fleet.workspace_backup
  - module: ansible.builtin.user
"""

EXAMPLES = r"""
- name: See what is left of the removed agents and whether a verified backup holds their files
  warden.fleet.agent_remove:
    plan: "{{ warden_plan }}"
    agents: [hermes]
  check_mode: true
  register: warden_agent_remove_probe

- name: Remove what is left of them
  warden.fleet.agent_remove:
    plan: "{{ warden_plan }}"
    agents: [hermes]
  register: warden_agent_remove_result
"""

RETURN = r"""
agents:
  description: Per agent with anything left, what was found, by agent name.
  returned: always
  type: dict
  sample:
    hermes:
      paths: [/usr/local/etc/warden/hermes.env, /usr/local/warden/souls/hermes, /usr/local/warden/agents/hermes]
      user: true
      group: true
      processes: []
      db_jail_running: false
      backup: {status: covered, archive: /var/backups/warden/hermes/hermes_20260101T031700Z.tar.zst, reason: ""}
      removed: [/usr/local/etc/warden/hermes.env, /usr/local/warden/souls/hermes, /usr/local/warden/agents/hermes]
backup_needed:
  description: Agents whose workspace or state no verified backup holds as it is now (back them up first).
  returned: always
  type: list
  elements: str
without_db_jail:
  description: Agents of RV(backup_needed) with a database whose db jail does not run any more (a backup can hold
    only their files; the dumps taken before their jails were destroyed are in the earlier archives).
  returned: always
  type: list
  elements: str
users:
  description: Users of agents not refused that still exist (or, in check mode, would be removed).
  returned: always
  type: list
  elements: str
groups:
  description: Groups of agents not refused that still exist.
  returned: always
  type: list
  elements: str
refused:
  description: Agents nothing was removed of, with the reason. Never set in check mode.
  returned: always
  type: dict
  sample: {hermes: "processes of hermes still run: 4242 4243"}
"""

import grp  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.agent_remove import (  # noqa: E402
    backup_coverage,
    leftovers,
    processes,
    remove_path,
)
from ansible_collections.warden.fleet.plugins.module_utils.agent_runtime import UnsafePath  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.backup.common import BackupError  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.backup.listing import jail_running  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def group_exists(name):
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def look(module, plan, name):
    """What is left of the agent, its processes, and whether a verified backup holds its files; None when nothing."""
    agent = plan["agents"][name]
    user, group = agent["user"]["name"], agent["user"]["group"]
    found = leftovers(agent)
    found["group"] = group_exists(group)
    if not (found["paths"] or found["user"] or found["group"]):
        return None
    found["processes"] = processes(module.run_command, user) if found["user"] else []
    found["backup"] = backup_coverage(plan, name)
    db = agent.get("db")
    found["db_jail_running"] = jail_running(db["jail"]) is not False if db else None
    found["removed"] = []
    return found


def refusal(name, found):
    if found["processes"]:
        return f"processes of {name} still run: {' '.join(found['processes'])}; its service must be stopped first"
    if found["backup"]["status"] == "needed":
        return f"no verified backup holds its workspace as it is now: {found['backup']['reason']}"
    return None


def run(module):
    plan, names = module.params["plan"], module.params["agents"]
    agents = plan.get("agents") or {}
    wrong = sorted(n for n in names if n not in agents or agents[n].get("state") != "absent")
    if wrong:
        module.fail_json(msg=f"not removed agents (state absent) of the plan: {', '.join(wrong)}; nothing removed")
    result = {"agents": {}, "backup_needed": [], "without_db_jail": [], "users": [], "groups": [], "refused": {}}
    diffs = []
    for name in sorted(set(names)):
        try:
            found = look(module, plan, name)
        except (BackupError, UnsafePath, OSError) as exc:
            result["refused"][name] = f"cannot tell what is left of it: {exc}"
            continue
        if found is None:
            continue
        result["agents"][name] = found
        if found["backup"]["status"] == "needed":
            result["backup_needed"].append(name)
            if found["db_jail_running"] is False:
                result["without_db_jail"].append(name)
        reason = None if module.check_mode else refusal(name, found)
        if reason:
            result["refused"][name] = reason
            continue
        user = agents[name]["user"]
        if found["paths"]:
            diffs.append({"before_header": f"agent {name}", "after_header": f"agent {name}",
                          "before": "".join(f"{p}\n" for p in found["paths"]), "after": ""})
        if not module.check_mode:
            try:
                for path in found["paths"]:
                    if remove_path(path):
                        found["removed"].append(path)
            except (UnsafePath, OSError) as exc:
                result["refused"][name] = f"removing {path} failed, its user is kept: {exc}"
                continue
        # the user and group go last, by ansible.builtin.user and group: files above first, while their owner exists
        result["users"] += [user["name"]] if found["user"] else []
        result["groups"] += [user["group"]] if found["group"] else []
    result["changed"] = bool(diffs) if module.check_mode else any(f["removed"] for f in result["agents"].values())
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(agents=dict(type="list", elements="str", required=True)),
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()

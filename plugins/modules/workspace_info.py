#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: workspace_info
short_description: List the agent workspaces of a warden host with their last backup, service and jails
version_added: 0.1.0
description:
  - For every agent of the plan (or the named ones) returns the workspace path, its size and last
    modification, the newest good archive (age, size, verified), whether the rc.d service is running
    (its supervisor pidfile names a live process) and whether each jail is up (C(jls -j NAME jid)).
  - Also returns the workspaces under C(<root>/agents/) that no agent of the plan owns.
  - Returns the same as a readable table, as the C(warden list) command prints it.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agents:
    description: Only these agents (default all agents of the plan).
    type: list
    elements: str
    default: []
  verify:
    description:
      - Check the newest archive's sha256 against its manifest (reads the archive).
      - Without it, the newest archive counts as verified when its size and mtime are the ones recorded at its
        last full sha256 check (every backup run makes that check at least every C(verify_every) days);
        C(verified) is null when it was never checked in full on this host.
    type: bool
    default: false
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Never changes anything.
  diff_mode:
    support: none
    description: Nothing to show a diff of.
seealso:
  - module: warden.fleet.workspace_backup
"""

EXAMPLES = r"""
- name: List the workspaces
  warden.fleet.workspace_info:
    plan: "{{ warden_plan }}"
  register: warden_workspaces

- name: Show them
  ansible.builtin.debug:
    msg: "{{ warden_workspaces.table_lines }}"
"""

RETURN = r"""
host:
  description: The host of the plan.
  returned: always
  type: str
generated:
  description: When the listing was made (UTC).
  returned: always
  type: str
agents:
  description: One entry per agent.
  returned: always
  type: list
  elements: dict
  sample:
    - agent: atlas
      state: present
      workspace: /usr/local/warden/agents/atlas/workspace
      exists: true
      size: 1048576
      files: 812
      last_modified: "2025-03-02T10:00:00Z"
      last_modified_age: 3600
      backups: 9
      incomplete_backups: 0
      backup:
        archive: /var/backups/warden/atlas/atlas_20250302T031700Z.tar.zst
        created: "2025-03-02T03:17:00Z"
        age: 28000
        size: 204800
        verified: true
        checked: size+mtime
        last_full_verification: "2025-03-02T03:17:00Z"
        error: null
      service: {name: atlas, running: true}
      jails: [{name: atlasgit, slot: git, running: true}]
orphans:
  description: Directories under C(<root>/agents/) that no agent of the plan owns, with size and file count.
  returned: always
  type: list
  elements: dict
table:
  description: The listing as a text table.
  returned: always
  type: str
table_lines:
  description: The table as a list of lines (reads well in C(debug) output).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError, fleet_info  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(
            agents=dict(type="list", elements="str", default=[]),
            verify=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        data = fleet_info(module.params["plan"], agents=module.params["agents"] or None, verify=module.params["verify"])
    except (BackupError, KeyError, OSError) as exc:
        module.fail_json(msg=f"listing failed: {exc}")
    data["table_lines"] = data["table"].splitlines()
    module.exit_json(changed=False, **data)


if __name__ == "__main__":
    main()

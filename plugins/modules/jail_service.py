#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: jail_service
short_description: rc.d commands for services inside jails (service -j), several jails in one call
version_added: 0.1.0
description:
  - Runs each of O(actions) in order as C(service -j JAIL SERVICE ACTION), under C(timeout(1)), and fails at
    the first one that fails, naming the jail, the service and what it said.
  - After C(start), C(restart) and C(reload) the service must answer C(status) with 0; an exit code alone is
    not taken as success.
  - The caller decides what needs doing (for example from M(warden.fleet.postgresql_probe)); every listed
    action is a change. In check mode nothing runs and each action is reported as the change it would be,
    so C(--check) shows the same changes a real run makes.
  - Commands that leave a daemon behind run under C(timeout -f), which bounds the command alone (FreeBSD's
    timeout without C(-f) waits for every descendant it reaped, and would hold the run and then kill the
    daemon).
author:
  - warden.fleet contributors (@warden-fleet)
options:
  actions:
    description: The rc.d commands, run in this order (an empty list does nothing).
    type: list
    elements: dict
    required: true
    suboptions:
      jail:
        description: The jail's exact name (letters and digits, at most 11).
        type: str
        required: true
      service:
        description: The rc.d script in the jail.
        type: str
        required: true
      action:
        description: The rc.d command.
        type: str
        required: true
        choices: [initdb, start, stop, restart, reload]
      timeout:
        description: Seconds the command may take before it is stopped.
        type: int
        default: 300
attributes:
  check_mode:
    support: full
    description: Runs nothing and reports every listed action as the change it would be.
  diff_mode:
    support: none
    description: The actions are in RV(actions); there is no file content to compare.
notes:
  - Runs C(/usr/bin/timeout) and C(/usr/sbin/service) with the C(-j) option (which enters the jail with
    jexec(8)); never touches the jail's root directory from the host.
seealso:
  - module: warden.fleet.jail_provision
  - module: warden.fleet.postgresql_probe
"""

EXAMPLES = r"""
- name: Initialise and start the clusters that have none
  warden.fleet.jail_service:
    actions:
      - {jail: atlasdb, service: postgresql, action: initdb}
      - {jail: atlasdb, service: postgresql, action: start}
"""

RETURN = r"""
actions:
  description: The commands run (or, in check mode, that would run), one line each.
  returned: always
  type: list
  elements: str
  sample: ["atlasdb: service postgresql initdb", "atlasdb: service postgresql start"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.warden.fleet.plugins.module_utils.backup.common import BackupError  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.jail_provision import (  # noqa: E402
    SERVICE_ACTIONS,
    ProvisionError,
    Runner,
    service_actions,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "actions": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "jail": {"type": "str", "required": True},
                    "service": {"type": "str", "required": True},
                    "action": {"type": "str", "required": True, "choices": list(SERVICE_ACTIONS)},
                    "timeout": {"type": "int", "default": 300},
                },
            },
        },
        supports_check_mode=True,
    )
    try:
        done = service_actions(Runner(module.run_command), module.params["actions"], module.check_mode)
    except (ProvisionError, BackupError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(done), actions=done)


if __name__ == "__main__":
    main()

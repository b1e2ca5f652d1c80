#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: bridge
short_description: The agents' bridge (warden0) at runtime, with its gateway addresses, and its rc.conf plan
version_added: 0.1.0
description:
  - In one call per host, lists the interfaces once (C(ifconfig -l), C(ifconfig NAME)), creates the bridge
    when it is missing (C(ifconfig bridge create name NAME up), so an existing C(bridge0) is never renamed),
    brings it up, adds the missing O(addresses) (C(ifconfig NAME inet A/N alias)) and removes those listed in
    O(absent) (C(ifconfig NAME inet A -alias)), sets the O(sysctls) that differ, then reads the end state back
    and fails unless it is the wanted one.
  - Addresses on the bridge that are neither in O(addresses) nor in O(absent) are left alone.
  - Never renames or destroys an interface. When O(name) exists and is not a bridge, fails before changing
    anything.
  - Reads the rc.conf variables that bring the bridge back at boot (C(sysrc -i)) and returns what they should
    be (RV(clone), RV(rc_conf)) for M(community.general.sysrc) to write; it does not write rc.conf itself.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  name:
    description: Name of the bridge, the plan's C(bridge).
    type: str
    required: true
  addresses:
    description:
      - IPv4 addresses with their prefix length (C(10.0.1.1/24)) the bridge must carry.
    type: list
    elements: str
    default: []
  absent:
    description:
      - Addresses (with or without the prefix length) to remove from the bridge, and from the rendered
        C(ifconfig_NAME_aliases).
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel variables to set at runtime (C(sysctl name=value)) when they differ.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Reports what it would change and changes nothing.
  diff_mode:
    support: full
    description: The bridge's addresses and sysctls, and the rc.conf variables, before and after.
notes:
  - Runs C(/sbin/ifconfig), C(/sbin/sysctl) and C(/usr/sbin/sysrc) with argument lists, never through a shell.
seealso:
  - module: community.general.sysrc
"""

EXAMPLES = r"""
- name: Bring up warden0 with the agents' gateways
  warden.fleet.bridge:
    name: warden0
    addresses: [10.0.1.1/24, 192.168.72.1/24]
    absent: [10.0.9.1]
    sysctls:
      net.link.bridge.pfil_member: 1
      net.link.bridge.pfil_bridge: 1
  register: warden_bridge

- name: Persist it
  community.general.sysrc:
    name: "{{ item.key }}"
    value: "{{ item.value }}"
  loop: "{{ warden_bridge.rc_conf | dict2items }}"
"""

RETURN = r"""
created:
  description: Whether the bridge was (or, in check mode, would be) created.
  returned: always
  type: bool
added:
  description: Addresses added (or to add).
  returned: always
  type: list
  elements: str
  sample: [10.0.1.1/24]
removed:
  description: Addresses removed (or to remove).
  returned: always
  type: list
  elements: str
addresses:
  description: The bridge's IPv4 addresses after the run.
  returned: always
  type: list
  elements: str
  sample: [10.0.1.1/24, 192.168.72.1/24]
sysctls_set:
  description: The sysctls that were (or would be) set, with their new values.
  returned: always
  type: dict
clone:
  description:
    - The cloned interface rc.conf lists in C(cloned_interfaces) and renames to the bridge at boot.
    - It is the one rc.conf already renames to O(name), otherwise the lowest C(bridgeN) neither rc.conf nor the
      kernel uses.
  returned: always
  type: str
  sample: bridge0
rc_conf:
  description:
    - The rc.conf variables (name to value) that bring the bridge back at boot, to set with
      M(community.general.sysrc); C(cloned_interfaces) is not among them (add RV(clone) to it).
    - C(ifconfig_NAME_aliases) lists the desired addresses and those it already held that are neither desired
      nor absent, in numerical order.
  returned: always
  type: dict
  sample:
    ifconfig_bridge0_name: warden0
    ifconfig_warden0: up
    ifconfig_warden0_aliases: inet 10.0.1.1/24 inet 192.168.72.1/24
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.bridge import BridgeError, converge  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            addresses=dict(type="list", elements="str", default=[]),
            absent=dict(type="list", elements="str", default=[]),
            sysctls=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    params = module.params
    try:
        result = converge(
            run, params["name"], params["addresses"], params["absent"], params["sysctls"], module.check_mode
        )
    except BridgeError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()

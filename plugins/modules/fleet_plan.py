#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: fleet_plan
short_description: Validate a host's warden inventory and derive its fleet plan
version_added: 0.1.0
description:
  - Reads the host's inventory variables (C(warden_agents), C(warden_ext_if), C(warden_release) and the other
    host settings documented in C(docs/inventory.md)) and checks every rule at once.
  - On success returns the plan, every derived value of the host and its agents. That is gateway and slot
    IPs, jail names, database role and database names, rc.d service, tmux session, paths, ports, the union
    of agent subnets for PF and the gateway addresses of the bridge.
  - On failure lists every problem, each naming the host, the agent, the field and the fix.
  - Runs on the controller and never connects to the host. When network facts were gathered, agent subnets
    are also checked against the host's own networks.
  - Variables named C(warden_<role>_*) belong to the collection's roles; any other unknown C(warden_*) host
    variable is reported as a probable typo.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  use_facts:
    description:
      - Compare agent subnets with the host networks found in C(ansible_facts), when facts were gathered.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Never changes anything.
  diff_mode:
    support: none
    description: Nothing to show a diff of.
  action:
    support: full
    description: Runs entirely on the controller.
notes:
  - The same model (C(plugins/module_utils/fleet_model.py)) is used by every role of the collection.
seealso:
  - name: Inventory reference
    description: Every key, its default and its rule.
    link: https://github.com/warden-fleet/warden.fleet/blob/main/docs/inventory.md
"""

EXAMPLES = r"""
- name: Validate the inventory and derive the plan
  warden.fleet.fleet_plan:
  register: warden_fleet_plan

- name: Validate without the host's network facts
  warden.fleet.fleet_plan:
    use_facts: false
"""

RETURN = r"""
plan:
  description: Every derived value of the host and its agents, keyed by agent name.
  returned: always
  type: dict
  sample:
    host: bsd1.example.net
    bridge: warden0
    warden_net: [10.0.1.0/24, 192.168.72.0/24]
    agents:
      atlas:
        subnet: 10.0.1
        gateway: 10.0.1.1
        jails: [{slot: git, name: atlasgit, ip: 10.0.1.2, cidr: 10.0.1.2/24, gateway: 10.0.1.1, thick: false}]
        db: {role: atlas, jail: atlasdb, host: 10.0.1.5, databases: {ops: atlas_ops}}
        service: {name: atlas, rc_script: /usr/local/etc/rc.d/atlas}
summary:
  description: The plan as readable lines; empty when there are problems.
  returned: always
  type: list
  elements: str
problems:
  description: Every problem found, each with host, agent, field, message and fix.
  returned: always
  type: list
  elements: dict
checked_networks:
  description: The host networks the agent subnets were compared with.
  returned: always
  type: list
  elements: str
  sample: [vtnet0 203.0.113.0/24]
"""

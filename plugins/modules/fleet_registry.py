#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: fleet_registry
short_description: Keep the host's registry of the agents the collection manages and return every agent to cover
version_added: 0.1.0
description:
  - The host keeps the agents the collection manages in O(path) (JSON, root only, written atomically). A run adds
    or updates the agents of its inventory; an agent the inventory does not list stays registered, so a stale
    checkout or another operator's inventory never removes it. Only C(state=absent) removes an agent; it is marked
    absent, reported in the absent lists so the roles remove its resources, and dropped with O(prune) at the end of
    a run that succeeded.
  - Returns what the global artifacts must cover (gateways on the bridge, PF's C(warden_net) and rules), that is every
    present agent of the registry and of the inventory, and the absent agents whose resources go.
  - Call it only while holding the host lock (M(warden.fleet.host_lock)), so two runs adding agents at once then
    never lose one.
  - An inventory agent whose subnet overlaps an agent registered on the host that the inventory does not list
    fails the task before anything changes, naming both agents.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  path:
    description: The registry file. Its directory is created (mode 0700) when missing.
    type: path
    default: /var/db/warden/registry.json
  prune:
    description: Drop the agents marked absent (their resources were removed by this run) instead of registering
      the inventory's agents.
    type: bool
    default: false
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Computes and returns the same lists and diff, writes nothing.
  diff_mode:
    support: full
    description: The registry before and after, as JSON.
seealso:
  - module: warden.fleet.host_lock
"""

EXAMPLES = r"""
- name: Register this inventory's agents
  warden.fleet.fleet_registry:
    plan: "{{ warden_plan }}"
  register: warden_registry

- name: Drop the agents removed by this run
  warden.fleet.fleet_registry:
    plan: "{{ warden_plan }}"
    prune: true
"""

RETURN = r"""
agents:
  description: Every present agent to cover, from the inventory and the registry, in subnet order (plan agent dicts).
  returned: always
  type: list
  elements: dict
agent_names:
  description: Their names.
  returned: always
  type: list
  elements: str
  sample: [atlas, hermes, clawdie]
unlisted:
  description: Registered present agents this inventory does not list (kept untouched).
  returned: always
  type: list
  elements: str
warden_net:
  description: The subnets of every present agent (PF's C(warden_net)).
  returned: always
  type: list
  elements: str
  sample: [10.0.1.0/24, 10.0.2.0/24, 192.168.72.0/24]
gateways:
  description: The addresses the host must own on the bridge, one per present agent.
  returned: always
  type: list
  elements: str
  sample: [10.0.1.1/24, 10.0.2.1/24, 192.168.72.1/24]
absent:
  description: The agents with C(state=absent) (this inventory's and those marked absent in the registry).
  returned: always
  type: list
  elements: dict
absent_names:
  description: Their names.
  returned: always
  type: list
  elements: str
gateways_absent:
  description: Gateways of the absent agents, to remove at runtime and from rc.conf (never one a present agent owns).
  returned: always
  type: list
  elements: str
  sample: [10.0.9.1/24]
path:
  description: The registry file.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import fleet_registry  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(
            path=dict(type="path", default=fleet_registry.DEFAULT_PATH),
            prune=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    path, plan = module.params["path"], module.params["plan"]
    try:
        before = fleet_registry.load(path)
        after = fleet_registry.prune(before) if module.params["prune"] else fleet_registry.update(before, plan)
        changed = after != before
        if changed and not module.check_mode:
            fleet_registry.save(path, after)
        result = fleet_registry.merged(after, plan)
    except fleet_registry.RegistryError as exc:
        module.fail_json(msg=f"{plan.get('host', '?')}: {exc}")
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg=f"the plan is incomplete ({exc!r}); pass the warden_plan the preflight role sets")
    except OSError as exc:
        module.fail_json(msg=f"{path}: cannot write the agent registry: {exc}")
    diff = dict(before=fleet_registry.dump(before), after=fleet_registry.dump(after),
                before_header=path, after_header=path)
    module.exit_json(changed=changed, path=path, diff=diff, **result)


if __name__ == "__main__":
    main()

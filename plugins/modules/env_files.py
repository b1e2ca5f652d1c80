#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: env_files
short_description: Every agent's environment file on a host, with its database password and secrets, in one call
version_added: 0.1.0
description:
  - One call writes the environment file C(paths.env_file) of every agent of a host (O(agents), default every
    present agent of the plan); a call that finds every file as it must be only reads.
  - "The file holds, in this order, the plan's C(environment) (names, addresses, locales, paths, the database host,
    user and databases), the agent's database password as C(WARDEN_DB_PASSWORD) (from O(db_passwords); required for
    an agent with a db jail) and the agent's own secrets (O(secrets)), one C(NAME='value') line each, as sh(1) reads
    it back (C(set -a; . FILE))."
  - The file is owned by the agent's user and group, mode C(0600), and written atomically (a temporary file in the
    same root-owned directory, owned and moded on its descriptor, synced, renamed), so a reader sees the old or the new
    file, never a part. The directory is opened without following symlinks.
  - Secrets never leave the host through this module. O(db_passwords) and O(secrets) are C(no_log) options (Ansible
    masks their values in every output), and the diff shows the names with every value the plan does not list
    replaced by C(<redacted>), or C(<redacted, changed>) where the value changed.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agents:
    description: The agents to handle, by name. Default every agent of the plan with C(state=present).
    type: list
    elements: str
  db_passwords:
    description: The database password of every agent with a db jail, by agent name (the C(warden.fleet.postgresql)
      role sets C(warden_db_passwords)).
    type: dict
    default: {}
  secrets:
    description:
      - "Per agent name, its secrets C({NAME: value}) (the inventory's C(warden_agents[NAME].secrets))."
      - The model already refused names that clash with the plan's environment and values shared by two agents.
    type: dict
    default: {}
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Compares and reports; writes nothing.
  diff_mode:
    support: full
    description: One redacted diff per changed file.
seealso:
  - module: warden.fleet.agent_workspace
notes:
  - The task calling it still needs C(no_log) unless diff mode is on, as every task handling a secret does; the
    redacted diff is what C(--diff) shows.
"""

EXAMPLES = r"""
- name: Environment files of every present agent
  warden.fleet.env_files:
    plan: "{{ warden_plan }}"
    db_passwords: "{{ warden_db_passwords }}"
    secrets:
      atlas: "{{ warden_agents.atlas.secrets }}"
      clawdie: "{{ warden_agents.clawdie.secrets }}"
  no_log: "{{ not ansible_diff_mode | bool }}"

- name: Only a new agent without a database
  warden.fleet.env_files:
    plan: "{{ warden_plan }}"
    agents: [hermes]
  no_log: true
"""

RETURN = r"""
agents:
  description: Per agent, whether its file changed, and the names (never the values) it holds.
  returned: always
  type: dict
  sample:
    atlas:
      changed: true
      path: /usr/local/etc/warden/atlas.env
      names: [AGENT_NAME, WARDEN_DB_HOST, WARDEN_DB_PASSWORD, GATEWAY_TOKEN]
      secret_names: [WARDEN_DB_PASSWORD, GATEWAY_TOKEN]
changed_agents:
  description: The names of the agents whose environment file changed (their service needs a restart).
  returned: always
  type: list
  elements: str
  sample: [atlas]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import agent_runtime  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(
            agents=dict(type="list", elements="str"),
            db_passwords=dict(type="dict", default={}, no_log=True),
            secrets=dict(type="dict", default={}, no_log=True),
        ),
        supports_check_mode=True,
    )
    plan, params = module.params["plan"], module.params
    agents = plan.get("agents") or {}
    names = params["agents"]
    if names is None:
        names = sorted(name for name, agent in agents.items() if agent.get("state") == "present")
    unknown = [name for name in names if name not in agents]
    if unknown:
        module.fail_json(msg=f"not agents of the plan: {', '.join(unknown)}")

    results, failures, diffs = {}, [], []
    for name in names:
        agent = agents[name]
        secrets = params["secrets"].get(name) or {}
        try:
            if not isinstance(secrets, dict):
                raise ValueError(f"{name}: secrets must be a mapping of NAME: value")
            password = params["db_passwords"].get(name)
            values, secret_names = agent_runtime.env_values(agent, None if password is None else str(password), secrets)
            outcome = agent_runtime.ensure_env_file(agent, values, module.check_mode)
        except (agent_runtime.UnsafePath, ValueError, OSError) as error:
            failures.append(str(error))
            results[name] = {"changed": False, "path": agent["paths"]["env_file"]}
            continue
        results[name] = {
            "changed": outcome["changed"],
            "path": agent["paths"]["env_file"],
            "names": list(values),
            "secret_names": secret_names,
        }
        if outcome["diff"]:
            diffs.append(outcome["diff"])
    changed_agents = [name for name in names if results[name]["changed"]]
    result = dict(changed=bool(changed_agents), agents=results, changed_agents=changed_agents)
    agent_runtime.exit_per_agent(module, result, diffs, failures)


if __name__ == "__main__":
    main()

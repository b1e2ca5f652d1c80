#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: agent_workspace
short_description: Every agent's home, workspace, state and logs directories and SSH key on a host, in one call
version_added: 0.1.0
description:
  - One call handles every agent of a host (O(agents), default every present agent of the plan); a call that finds
    everything in place only reads.
  - "Per agent, from the plan: the home C(paths.home) owned by root, group the agent's, mode C(0750) (the agent reads
    it but cannot add, rename or remove anything in it); the workspace C(paths.workspace), state C(paths.state) and
    logs C(paths.logs) owned by the agent, mode C(0700), so agents cannot read each other's files. Owner and mode
    of these four are set again when they differ."
  - Inside the workspace the agent rules. Only what is missing is created (O(dirs) mode C(0700), O(files) empty,
    mode C(0600), owned by the agent, and the link C(shared) to the host's shared files when the plan has them);
    anything already there, the agent's content or something it planted, is left alone and reported in
    C(left_alone). The files the soul provides (O(soul_files)) are left to M(warden.fleet.soul_repo) for agents
    with a soul.
  - "With O(ssh_key), the agent's SSH key pair from the plan's C(ssh_key): C(HOME/.ssh) owned by root, group the
    agent's, mode C(0750) (the agent cannot plant anything in it), C(id_ed25519) the agent's C(0600) and
    C(id_ed25519.pub) the agent's C(0644), made once with C(/usr/bin/ssh-keygen -t ed25519 -N '' -C AGENT@HOST) under
    C(timeout(1)) in a root-only directory and hard-linked into place, which never replaces anything. A key that
    exists is the agent's identity and is never regenerated; only its owner and mode are set again (a file with
    more than one link is left alone). A private key without its public half gets it back (C(ssh-keygen -y))."
  - The agent is hostile to root. Directories are opened from C(/) down without following symlinks, owner and mode
    are set on descriptors, files are created with C(O_CREAT|O_EXCL|O_NOFOLLOW) relative to the held workspace
    descriptor; a symlink planted where a directory of the layout belongs fails the call for that agent instead of
    being followed.
  - The users and groups must exist (M(ansible.builtin.user) first), except in check mode.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agents:
    description: The agents to handle, by name. Default every agent of the plan with C(state=present).
    type: list
    elements: str
  dirs:
    description: Directories every workspace has (created when missing).
    type: list
    elements: str
    default: [memory, skills]
  files:
    description: Files every workspace has (created empty when missing, never changed).
    type: list
    elements: str
    default: [SOUL.md, USER.md, IDENTITY.md, AGENTS.md, TOOLS.md, MEMORY.md]
  soul_files:
    description: The files of O(files) that an agent's soul provides; not created for agents with a soul.
    type: list
    elements: str
    default: [SOUL.md, USER.md, IDENTITY.md, AGENTS.md]
  ssh_key:
    description: Give every agent its SSH key pair (the plan's C(ssh_key)) when it has none.
    type: bool
    default: true
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Reports what would be created or fixed; changes nothing.
  diff_mode:
    support: full
    description: Per agent, the paths that would be created or fixed (never a key's content).
seealso:
  - module: warden.fleet.soul_repo
  - module: warden.fleet.env_files
"""

EXAMPLES = r"""
- name: Homes and workspaces of every present agent
  warden.fleet.agent_workspace:
    plan: "{{ warden_plan }}"

- name: Only the agents that were just added, without the placeholders
  warden.fleet.agent_workspace:
    plan: "{{ warden_plan }}"
    agents: [hermes]
    files: [MEMORY.md]
"""

RETURN = r"""
agents:
  description: Per agent, what was (or would be) done.
  returned: always
  type: dict
  sample:
    atlas:
      changed: true
      created: [/usr/local/warden/agents/atlas/workspace/memory]
      fixed: [/usr/local/warden/agents/atlas/state]
      left_alone: [/usr/local/warden/agents/atlas/workspace/skills]
      public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... atlas@bsd1.example.net
changed_agents:
  description: The names of the agents whose home changed.
  returned: always
  type: list
  elements: str
  sample: [atlas]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import agent_runtime, agent_ssh  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def merge(report, more):
    for key in ("created", "fixed", "left_alone"):
        report[key] += more[key]
    report["changed"] = report["changed"] or more["changed"]


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(
            agents=dict(type="list", elements="str"),
            dirs=dict(type="list", elements="str", default=["memory", "skills"]),
            files=dict(
                type="list",
                elements="str",
                default=["SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md", "TOOLS.md", "MEMORY.md"],
            ),
            soul_files=dict(type="list", elements="str", default=["SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md"]),
            ssh_key=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    plan, params = module.params["plan"], module.params

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    agents = plan.get("agents") or {}
    names = params["agents"]
    if names is None:
        names = sorted(name for name, agent in agents.items() if agent.get("state") == "present")
    unknown = [name for name in names if name not in agents]
    if unknown:
        module.fail_json(msg=f"not agents of the plan: {', '.join(unknown)}")
    for entry in params["dirs"] + params["files"]:
        if not entry or "/" in entry or entry in (".", ".."):
            module.fail_json(msg=f"{entry!r}: dirs and files are names directly inside the workspace")

    results, failures, diffs = {}, [], []
    for name in names:
        agent = agents[name]
        try:
            layout = agent_runtime.workspace_layout(agent, plan, params["dirs"], params["files"], params["soul_files"])
            results[name] = agent_runtime.ensure_workspace(agent, layout, module.check_mode)
            if params["ssh_key"]:
                merge(results[name], agent_ssh.ensure_key(agent, run, module.check_mode))
                results[name]["public_key"] = agent_ssh.public_key(agent)
        except (agent_runtime.UnsafePath, agent_ssh.KeygenError, ValueError, OSError) as error:
            failures.append(f"{name}: {error}")
            results[name] = {"changed": False, "error": str(error)}
            continue
        if results[name]["changed"]:
            diffs.append(
                {
                    "before_header": f"{name}: {agent['paths']['home']}",
                    "after_header": f"{name}: {agent['paths']['home']}",
                    "before": "",
                    "after": "".join(f"created {p}\n" for p in results[name]["created"])
                    + "".join(f"owner/mode set {p}\n" for p in results[name]["fixed"]),
                }
            )
    changed_agents = [name for name in names if results[name]["changed"]]
    result = dict(changed=bool(changed_agents), agents=results, changed_agents=changed_agents)
    agent_runtime.exit_per_agent(module, result, diffs, failures)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: agent_ssh_hosts
short_description: Every agent's known_hosts with its git jail's host key and its ssh config, in one call
version_added: 0.1.0
description:
  - One call handles every agent of a host (O(agents), default every present agent of the plan), so that
    C(git push git:AGENT.git) works as the agent without a prompt and only against its own git jail's sshd.
  - Per agent, from the plan's C(ssh_key.hosts) (its git jail), C(ssh_key.known_hosts) pins the jail's sshd host
    key (C(IP TYPE KEY)), read inside the running jail through C(jexec) (FreeBSD's C(rc.d/sshd) makes it before
    sshd's first start), and C(ssh_key.config) has a C(Host) entry per host (C(HostName) the jail's IP, C(User),
    the agent's C(IdentityFile), C(StrictHostKeyChecking yes), C(UpdateHostKeys no)).
  - Both files belong to root, group the agent's, mode C(0640), in the agent's root-owned C(.ssh)
    (M(warden.fleet.agent_workspace) makes it); ssh(1) reads them, the agent cannot change them. They are written
    atomically (temporary file, fsync, rename) only when their content, owner or mode differ.
  - An agent whose git jail's host key cannot be read (its sshd has no ed25519 key) keeps the files it has, and a
    warning names the jail. In check mode, a git jail that does not run yet (this run would create it) is reported
    as the files that would be written.
  - Every C(jexec) runs under C(timeout(1)).
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agents:
    description: The agents to handle, by name. Default every agent of the plan with C(state=present).
    type: list
    elements: str
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Reads the host keys and reports which files would be written; writes nothing.
  diff_mode:
    support: full
    description: Per file, its content before and after (host keys and addresses only, nothing secret).
seealso:
  - module: warden.fleet.agent_workspace
  - module: warden.fleet.jail_provision
"""

EXAMPLES = r"""
- name: Pin each agent's git jail host key and write its ssh config
  warden.fleet.agent_ssh_hosts:
    plan: "{{ warden_plan }}"
"""

RETURN = r"""
agents:
  description: Per agent, the files written (or that would be written).
  returned: always
  type: dict
  sample:
    atlas:
      changed: true
      written: [/usr/local/warden/agents/atlas/.ssh/known_hosts, /usr/local/warden/agents/atlas/.ssh/config]
host_keys:
  description: Per git jail, the host key pinned (type and key).
  returned: always
  type: dict
  sample: {atlasgit: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA..."}
"""

import concurrent.futures  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import agent_runtime, agent_ssh  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402

PARALLEL_READS = 8


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(agents=dict(type="list", elements="str")),
        supports_check_mode=True,
    )
    plan = module.params["plan"]
    agents = plan.get("agents") or {}
    names = module.params["agents"]
    if names is None:
        names = sorted(name for name, agent in agents.items() if agent.get("state") == "present")
    unknown = [name for name in names if name not in agents]
    if unknown:
        module.fail_json(msg=f"not agents of the plan: {', '.join(unknown)}")

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    # every host key once, read in parallel: a run that changes nothing costs one jexec per git jail
    hosts = {h["jail"]: h for name in names for h in agents[name]["ssh_key"]["hosts"]}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_READS, len(hosts)))) as pool:
        read = dict(zip(hosts, pool.map(lambda host: agent_ssh.read_host_key(run, host), hosts.values()), strict=True))
    host_keys = {jail: key for jail, (key, _why) in read.items() if key}

    results, diffs, failures = {}, [], []
    for name in names:
        agent = agents[name]
        missing = [why for jail, (key, why) in read.items() if not key and jail in
                   {h["jail"] for h in agent["ssh_key"]["hosts"]}]
        if missing and module.check_mode:
            # a new git jail (created by this run) has its host key once its sshd first starts
            spec = agent["ssh_key"]
            results[name] = {"changed": True, "written": [spec["known_hosts"], spec["config"]], "pending": missing}
            continue
        if missing:
            for why in missing:
                module.warn(f"{name}: known_hosts and ssh config left as they are: {why}")
            results[name] = {"changed": False, "written": [], "skipped": missing}
            continue
        try:
            report = agent_ssh.ensure_ssh_files(agent, agent_ssh.ssh_texts(agent, host_keys), module.check_mode)
        except (agent_runtime.UnsafePath, ValueError, OSError) as error:
            failures.append(f"{name}: {error}")
            results[name] = {"changed": False, "written": [], "error": str(error)}
            continue
        diffs += report.pop("diff")
        results[name] = report
    changed = any(result["changed"] for result in results.values())
    result = dict(changed=changed, agents=results, host_keys=host_keys)
    agent_runtime.exit_per_agent(module, result, diffs, failures)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: agent_services
short_description: Start, restart or stop every agent's rc.d service of a host in one call
version_added: 0.1.0
description:
  - One call per host, whatever the number of agents. Asks every service once whether it runs
    (C(service NAME status), exit 0 when it does; up to eight at a time), then acts only on those that differ
    from the wanted state -
    C(service NAME start) for a wanted service that does not run, C(service NAME restart) for one marked
    O(services[].restart) that runs (one that does not is started), C(service NAME onestop) for one that must
    not run.
  - Does not trust an exit code - asks C(status) again after every action and fails, naming the service and
    quoting its output, when the service is not in the wanted state.
  - Enabling a service at boot is not its job - M(community.general.sysrc) does that.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  services:
    description: The services, by rc.d script name.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The rc.d script's name (C(/usr/local/etc/rc.d/NAME)).
        type: str
        required: true
      state:
        description: C(started) - running; C(stopped) - not running.
        type: str
        choices: [started, stopped]
        default: started
      restart:
        description: Restart it when it runs (its script, command, environment or soul changed).
        type: bool
        default: false
  settle:
    description: Seconds to wait after a start before asking C(status) again, so that an agent that dies at once
      is reported.
    type: float
    default: 1.0
attributes:
  check_mode:
    support: full
    description: Asks C(status) only and reports what it would start, restart or stop.
  diff_mode:
    support: none
    description: Services have no content to show; RV(started), RV(restarted) and RV(stopped) say what changes.
notes:
  - Runs C(/usr/sbin/service) with argument lists, never through a shell.
seealso:
  - module: community.general.sysrc
"""

EXAMPLES = r"""
- name: Start every agent that does not run, restart those that changed
  warden.fleet.agent_services:
    services:
      - {name: atlas}
      - {name: clawdie, restart: true}
      - {name: hermes, state: stopped}
"""

RETURN = r"""
started:
  description: Services started (or, in check mode, to start).
  returned: always
  type: list
  elements: str
  sample: [atlas]
restarted:
  description: Services restarted (or to restart).
  returned: always
  type: list
  elements: str
stopped:
  description: Services stopped (or to stop).
  returned: always
  type: list
  elements: str
output:
  description: What each C(start), C(restart) or C(onestop) printed, by service (not in check mode).
  returned: when a service was started, restarted or stopped
  type: dict
  sample: {hermes: "Stopping hermes.\nhermes: killed 1 leftover processes"}
status:
  description: Each service's C(status) output after the run (before it, in check mode).
  returned: always
  type: dict
  sample: {atlas: "atlas is running as pid 4242.\natlas: agent pid 4243 (timeout, the reaper), tmux session atlas."}
"""

import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

SERVICE = "/usr/sbin/service"
# status probes run side by side, this many at a time
PARALLEL = 8


def status(module, name):
    rc, out, err = module.run_command([SERVICE, name, "status"])
    return rc == 0, (out + err).strip()


def act(module, name, verb):
    rc, out, err = module.run_command([SERVICE, name, verb])
    return rc, (out + err).strip()


def run(module):
    services = module.params["services"]
    names = [s["name"] for s in services]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        module.fail_json(msg=f"services given more than once: {', '.join(duplicates)}")
    result = {"started": [], "restarted": [], "stopped": [], "status": {}}
    # every status at once: a no-op run costs about one status, whatever the number of agents
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        answers = dict(pool.map(lambda n: (n, status(module, n)), names))
    todo = []
    for svc in services:
        running, text = answers[svc["name"]]
        result["status"][svc["name"]] = text
        if svc["state"] == "stopped":
            if running:
                todo.append((svc["name"], "onestop", "stopped", False))
        elif not running:
            todo.append((svc["name"], "start", "started", True))
        elif svc["restart"]:
            todo.append((svc["name"], "restart", "restarted", True))
    for name, _verb, key, _wanted in todo:
        result[key].append(name)
    result["changed"] = bool(todo)
    if module.check_mode or not todo:
        module.exit_json(**result)
    outputs = {name: act(module, name, verb) for name, verb, _key, _wanted in todo}
    if any(wanted for _n, _v, _k, wanted in todo):
        time.sleep(module.params["settle"])
    failed = []
    for name, verb, _key, wanted in todo:
        running, text = status(module, name)
        result["status"][name] = text
        if running != wanted:
            rc, out = outputs[name]
            failed.append(f"{name}: 'service {name} {verb}' exited {rc} ({out or 'no output'}) "
                          f"but status says: {text}")
    # what stop and restart said, e.g. "atlas: killed 2 leftover processes"
    result["output"] = {name: out for name, (_rc, out) in outputs.items()}
    if failed:
        module.fail_json(msg="; ".join(failed), **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "services": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
                    "restart": {"type": "bool", "default": False},
                },
            },
            "settle": {"type": "float", "default": 1.0},
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()

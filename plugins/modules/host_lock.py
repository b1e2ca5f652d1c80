#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: host_lock
short_description: Take or release the host-wide lock of a warden host, so that one run at a time changes it
version_added: 0.1.0
description:
  - Every play that changes a warden host takes this lock first and releases it at the end, also when the play
    fails (C(block)/C(always)). The lock is a JSON record naming the holder (controller user and host, start time,
    playbook, pid, run id) in O(path), under C(/var/run), which FreeBSD clears at boot, as a reboot ends every run.
  - The action plugin of the same name runs on the controller. It fills in the holder, waits up to O(timeout)
    seconds while another run holds the lock, naming it, and takes over a lock left by a dead run (on the same
    controller when the holder's process is gone or is another process; from another controller when the lock is
    older than O(stale_after)). The module on the host makes one attempt per call.
  - Taking or releasing the lock reports C(changed=false), as the lock lives only as long as the run, so a run
    that changes nothing else changes nothing.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  state:
    description: C(locked) takes the lock, C(unlocked) releases it if this run holds it (a lock held by another run
      is left alone).
    type: str
    choices: [locked, unlocked]
    default: locked
  path:
    description: The lock file. Its directory is created (mode 0700) when missing.
    type: path
    default: /var/run/warden/fleet.lock
  timeout:
    description: Seconds to wait for a lock another live run holds before failing with a message naming it.
      Handled by the action plugin.
    type: int
    default: 300
  stale_after:
    description:
      - Seconds after which a lock taken from another controller counts as left by a dead run and is taken over.
        Handled by the action plugin. C(0) never takes over such a lock.
      - A lock taken from this controller is judged by its process instead, whatever its age.
    type: int
    default: 7200
  poll:
    description: Seconds between two attempts while waiting. Handled by the action plugin.
    type: int
    default: 2
  run_id:
    description: Internal, set by the action plugin. The id of this run.
    type: str
  holder:
    description: Internal, set by the action plugin. The record of this run (user, controller, pid, playbook...).
    type: dict
  takeover:
    description: Internal, set by the action plugin. The run id of a holder found dead, to replace.
    type: str
attributes:
  action:
    support: full
    description: The action plugin fills in the holder, waits and decides whether a holder is dead.
  check_mode:
    support: full
    description: The lock is taken and released in check mode too, so a check run waits for a real one and never
      sees a half-changed host; it reports C(changed=false) as always.
  diff_mode:
    support: none
    description: The lock is not a change to show.
seealso:
  - module: warden.fleet.fleet_registry
notes:
  - "To release a lock by hand (docs/network.md, recovering from a stale lock): check that the run named in it is
    gone, then C(rm /var/run/warden/fleet.lock)."
"""

EXAMPLES = r"""
- name: Take the host's lock
  warden.fleet.host_lock:
    state: locked
    timeout: 600

- name: Release it
  warden.fleet.host_lock:
    state: unlocked
"""

RETURN = r"""
status:
  description: C(acquired), C(held) (this run held it already), C(taken_over) (from a dead run), C(released),
    C(not_held) (nothing to release), or C(busy) (another run holds it; the action plugin waits).
  returned: always
  type: str
holder:
  description: The lock record after the call (this run's when it took the lock, the other run's when busy).
  returned: always
  type: dict
  sample:
    run_id: "ctl.example.net:41234:Tue Dec  1 21:40:02 2026"
    user: ops
    controller: ctl.example.net
    pid: 41234
    started: "2026-12-01T21:40:02Z"
    playbook: /home/ops/fleet/site.yml
    acquired: "2026-12-01T21:40:05Z"
    age: 3
took_over:
  description: The dead run whose lock was taken over, and why it counted as dead.
  returned: when status is taken_over
  type: dict
waited:
  description: Seconds the run waited for the lock.
  returned: when state is locked
  type: int
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import host_lock  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["locked", "unlocked"], default="locked"),
            path=dict(type="path", default=host_lock.DEFAULT_PATH),
            timeout=dict(type="int", default=300),
            stale_after=dict(type="int", default=7200),
            poll=dict(type="int", default=2),
            run_id=dict(type="str"),
            holder=dict(type="dict"),
            takeover=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["run_id"]:
        module.fail_json(msg="run_id is missing: call warden.fleet.host_lock as a task, its action plugin sets it")
    try:
        if params["state"] == "locked":
            status, record = host_lock.acquire(params["path"], params["run_id"], params["holder"] or {},
                                               takeover=params["takeover"])
        else:
            released, record = host_lock.release(params["path"], params["run_id"])
            status = "released" if released else "not_held"
    except (host_lock.LockError, OSError) as exc:
        module.fail_json(msg=f"host lock {params['path']}: {exc}")
    module.exit_json(changed=False, status=status, holder=record or {})


if __name__ == "__main__":
    main()

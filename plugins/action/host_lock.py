# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Take or release a warden host's lock, on the controller side.

The module on the host makes one attempt; this plugin names the run (controller
user and host, the ansible-playbook process and its start time, the playbook),
waits while another live run holds the lock and takes over a lock whose run is
dead. Only this side can tell: the holder's process lives on its controller.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.warden.fleet.plugins.module_utils.host_lock import describe, is_stale

display = Display()


def process_start(pid):
    """Start time of process ``pid`` on this controller as ps(1) prints it, or None when there is none.

    ``ps -o lstart=`` has the same meaning on FreeBSD, macOS and Linux.
    """
    try:
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False,
                             env=dict(os.environ, LC_ALL="C", TZ="UTC"), timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    started = " ".join(out.stdout.split())
    return started if out.returncode == 0 and started else None


def _iso(lstart):
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(lstart, "%a %b %d %H:%M:%S %Y"))
    except (TypeError, ValueError):
        return lstart


def run_holder():
    """This run's holder record and run id: the ansible-playbook process is the parent of the task's worker."""
    try:
        from ansible import context  # pylint: disable=import-outside-toplevel
        playbooks = list(context.CLIARGS.get("args") or [])
    except (ImportError, AttributeError):
        playbooks = []
    pid = os.getppid()
    pid_start = process_start(pid)
    controller = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    holder = dict(
        user=user,
        controller=controller,
        pid=pid,
        pid_start=pid_start,
        started=_iso(pid_start),
        playbook=" ".join(os.path.abspath(p) for p in playbooks) or "?",
    )
    return f"{controller}:{pid}:{pid_start}", holder


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("state", "path", "timeout", "stale_after", "poll"))

    def _attempt(self, args, task_vars):
        result = self._execute_module(module_name="warden.fleet.host_lock", module_args=args, task_vars=task_vars)
        if result.get("failed"):
            raise AnsibleActionFail(result.get("msg", "host_lock failed"), result=result)
        return result

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        for key, default in (("timeout", 300), ("stale_after", 7200), ("poll", 2)):
            try:
                args[key] = int(args.get(key, default))
            except (TypeError, ValueError):
                return dict(result, failed=True, msg=f"{key} must be a number of seconds, got {args.get(key)!r}")
            if args[key] < 0:
                return dict(result, failed=True, msg=f"{key} must not be negative, got {args[key]}")
        state = args.get("state", "locked")
        run_id, holder = run_holder()
        args.update(run_id=run_id, holder=holder)
        host = task_vars.get("inventory_hostname", "?")
        if state != "locked":
            return dict(result, **self._attempt(args, task_vars))

        start = time.monotonic()
        waiting_for = reason_taken = None
        while True:
            answer = self._attempt(args, task_vars)
            args.pop("takeover", None)
            other = answer.get("holder") or {}
            if answer.get("status") != "busy":
                answer["waited"] = int(time.monotonic() - start)
                if answer.get("status") == "taken_over":
                    answer["took_over"] = dict(other.get("took_over") or {}, reason=reason_taken)
                    display.warning(f"{host}: took over the host lock left by a dead run ({reason_taken})")
                return dict(result, **answer)
            stale, reason = is_stale(other, holder["controller"], process_start, args["stale_after"])
            if stale:
                reason_taken = f"{describe(other)}: {reason}"
                args["takeover"] = other["run_id"]
                continue
            waited = time.monotonic() - start
            if waited >= args["timeout"]:
                return dict(result, failed=True, holder=other, waited=int(waited), msg=(
                    f"{host}: the host lock is held by {describe(other)}; gave up after {args['timeout']}s "
                    f"(warden_lock_timeout). Nothing was changed by this run. If that run is gone, see "
                    f"docs/network.md, 'Recovering from a stale lock' ({reason})"))
            if waiting_for != other.get("run_id"):
                waiting_for = other.get("run_id")
                display.display(f"{host}: waiting up to {args['timeout']}s for the host lock held by "
                                f"{describe(other)}")
            time.sleep(max(1, args["poll"]))

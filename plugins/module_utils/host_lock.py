# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""The host-wide lock every play that changes a warden host holds.

The lock outlives the single module execution that takes it (a play runs many
tasks, each a process of its own), so it is a file: a JSON record naming the
holder.  Each step that reads and changes the record (take, take over, release)
runs under flock(2) on a separate mutex file, which the kernel releases when
the process dies, so the short steps never leave a stale mutex behind; the
record itself is written atomically (temp file, fsync, rename).

Whether a holder is dead is decided by the caller: only the controller that
started a run can look at its process table.  This module only takes over a
record whose run id the caller names, after re-reading it under the mutex.
"""

from __future__ import annotations

import fcntl
import json
import os
import time

DEFAULT_PATH = "/var/run/warden/fleet.lock"


class LockError(Exception):
    """The lock file cannot be read or written."""


def _mutex(path):
    fd = os.open(path + ".mutex", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        raise
    return fd


def read(path):
    """The holder record, or None when nobody holds the lock."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        # A record that cannot be parsed was not written by us (writes are atomic):
        # report it rather than take or delete it.
        raise LockError(f"{path}: not a lock record ({exc}); remove it by hand if no run holds the lock") from exc
    if not isinstance(record, dict) or not record.get("run_id"):
        raise LockError(f"{path}: not a lock record (no run_id); remove it by hand if no run holds the lock")
    return record


def _write(path, record):
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True, indent=1) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def with_age(record, now=None):
    """The record plus its age in seconds, measured on the host's clock (the clock that wrote it)."""
    if record is None:
        return None
    now = time.time() if now is None else now
    return dict(record, age=max(0, int(now - float(record.get("acquired_epoch") or now))))


def acquire(path, run_id, holder, takeover=None, now=None):
    """Take the lock for ``run_id``; ``holder`` describes the run (user, controller, playbook, pid...).

    Returns ``(status, record)``: status is ``acquired``, ``held`` (this run already holds it),
    ``taken_over`` (the record of ``takeover``, the run id the caller found dead, was replaced)
    or ``busy`` (another run holds it: record is that holder, with its age).
    """
    now = time.time() if now is None else now
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = _mutex(path)
    try:
        current = read(path)
        if current is not None and current["run_id"] == run_id:
            return "held", with_age(current, now)
        if current is not None and (takeover is None or current["run_id"] != takeover):
            return "busy", with_age(current, now)
        record = dict(holder, run_id=run_id, acquired_epoch=now,
                      acquired=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), host_pid=os.getpid())
        if current is not None:
            keys = ("run_id", "user", "controller", "started", "playbook", "pid")
            record["took_over"] = {k: current.get(k) for k in keys}
        _write(path, record)
        return ("taken_over" if current is not None else "acquired"), with_age(record, now)
    finally:
        os.close(fd)


def release(path, run_id):
    """Release the lock if ``run_id`` holds it. Returns ``(released, record)``: the record found (or None)."""
    if not os.path.isdir(os.path.dirname(path)):
        return False, None
    fd = _mutex(path)
    try:
        current = read(path)
        if current is None or current["run_id"] != run_id:
            return False, with_age(current)
        os.unlink(path)
        return True, with_age(current)
    finally:
        os.close(fd)


def describe(record):
    """One line naming the holder, for messages."""
    if not record:
        return "nobody"
    return (f"{record.get('user', '?')}@{record.get('controller', '?')} (pid {record.get('pid', '?')}, "
            f"started {record.get('started', '?')}, playbook {record.get('playbook', '?')}, "
            f"run {record.get('run_id', '?')}), holding it for {record.get('age', '?')}s")


def is_stale(record, controller, pid_start, stale_after):
    """Whether the run that holds ``record`` is dead, seen from ``controller``.

    ``pid_start(pid)`` returns the start time of a process of this controller (None when there is no such
    process). On the same controller the holder is dead when its pid is gone or is now another process
    (a different start time); from another controller only age tells: older than ``stale_after`` seconds.
    Returns ``(stale, reason)``.
    """
    if record.get("controller") == controller and record.get("pid"):
        started = pid_start(int(record["pid"]))
        if started is None:
            return True, f"its process {record['pid']} on {controller} is gone"
        if record.get("pid_start") and started != record["pid_start"]:
            return True, f"its process {record['pid']} on {controller} is now another process"
        return False, f"its process {record['pid']} on {controller} is running"
    if stale_after and int(record.get("age") or 0) > int(stale_after):
        return True, f"it is {record.get('age')}s old, older than the stale age of {stale_after}s"
    return False, f"it was taken from another controller {record.get('age')}s ago (stale after {stale_after}s)"

"""Shared helpers of the stand-in FreeBSD host's command doubles.

Everything here runs *inside* the stand-in root (a chroot).  The simulated
kernel state (interfaces, PF rulesets, jails, sysctl values) lives in
``/.standin/kernel.json``; files a real FreeBSD host keeps on disk
(rc.conf, pf.conf, passwd, the pkg database...) are ordinary files at their
FreeBSD paths inside the root.

Strictness: every double accepts only the forms listed in its module and
calls :func:`not_implemented` for anything else, which prints
``stand-in: <cmd> <args> is not implemented`` and exits 64 (EX_USAGE).
"""

import contextlib
import fcntl
import json
import os
import sys

STATE_DIR = "/.standin"
KERNEL = os.path.join(STATE_DIR, "kernel.json")
LOCK = os.path.join(STATE_DIR, "kernel.lock")
CALL_LOG = os.path.join(STATE_DIR, "calls.log")
EX_USAGE = 64


class Exit(Exception):
    """Raised to end a double with an exit status (after output was written)."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def out(msg=""):
    sys.stdout.write(msg + "\n")


def err(msg):
    sys.stderr.write(msg + "\n")


def not_implemented(cmd, args):
    import shlex  # only refusals quote: not every call's start-up

    text = " ".join([cmd] + [shlex.quote(a) for a in args])
    err(f"stand-in: {text} is not implemented")
    raise Exit(EX_USAGE)


def log_call(cmd, args):
    """Append the call to the stand-in's call log (for tests and `state`)."""
    try:
        with open(CALL_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"cmd": cmd, "args": args}) + "\n")
    except OSError:
        pass


def atomic_write(path, data, mode=None):
    """Write ``data`` (str or bytes) to ``path``: temp file, fsync, rename."""
    import tempfile  # only writers need it (it imports random and hashlib): not every call's start-up

    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=".standin.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def default_kernel():
    return {
        "hostname": "standin",
        "ifaces": {},
        "routes": {},
        "sysctl": {},
        "pf": {"enabled": False, "anchors": {}},
        "jails": {},
        "next_jid": 1,
        "zfs": {"datasets": {}, "snapshots": []},
    }


@contextlib.contextmanager
def kernel(write=False):
    """Yield the simulated kernel state; with ``write`` save it afterwards.

    A lock file serialises concurrent doubles (Ansible forks, services).
    """
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        try:
            with open(KERNEL, encoding="utf-8") as fh:
                state = json.load(fh)
        except FileNotFoundError:
            state = default_kernel()
        if write and state.get("jail"):
            # inside a jail kernel.json is the jail's own view (jails.py): read-only
            from .jails import refuse_kernel_write
            refuse_kernel_write(state)
        yield state
        if write:
            atomic_write(KERNEL, json.dumps(state, indent=1, sort_keys=True) + "\n")
            # real namespaces follow every change of the simulated kernel (netns.py)
            from .netns import reconcile
            reconcile(state)


def run_main(cmd, func, argv):
    """Run a double's ``func(args)`` and turn :class:`Exit` into the status."""
    log_call(cmd, argv)
    try:
        code = func(list(argv))
    except Exit as exc:
        code = exc.code
    except BrokenPipeError:
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return 0 if code is None else code


def getopt_strict(cmd, args, shortopts, allowed_long=()):
    """POSIX getopt over ``args``; unknown options are not implemented.

    Returns (opts list of (flag, value), remaining args).  Stops at the first
    non-option, like FreeBSD's getopt(3).
    """
    import getopt

    try:
        opts, rest = getopt.getopt(args, shortopts, list(allowed_long))
    except getopt.GetoptError:
        not_implemented(cmd, args)
    return opts, rest

"""daemon(8), lockf(1) and timeout(1) doubles: they really run processes.

daemon (after FreeBSD usr.sbin/daemon/daemon.c and daemon(8), 14.x):
  daemon [-f] [-r] [-R secs] [-P supervisor_pidfile] [-p child_pidfile]
         [-t title] [-u user] [-o output_file] [-c] [-H] command args...
  - detaches (fork + setsid), the supervisor writes and locks -P, the child
    writes and locks -p, then runs the command as -u user;
  - -r restarts the child after it exits, waiting -R seconds (default 1);
  - SIGTERM to the supervisor is passed to the direct child only, then the
    supervisor removes its pidfiles and exits;
  - a locked pidfile means "already running": errx 3
    "process already running, pid: N".
lockf (after FreeBSD usr.bin/lockf/lockf.c): lockf [-k] [-s] [-t secs] file cmd...
  exit 75 (EX_TEMPFAIL) with "lockf: FILE: already locked" when -t 0 and held.
timeout (after FreeBSD bin/timeout/timeout.c): timeout [-k time] [-s sig]
  [--preserve-status] [-f] duration cmd...  Acquires the reaper role and on
  SIGTERM (or expiry) signals every descendant, not only the child.
"""

import contextlib
import ctypes
import fcntl
import os
import pwd
import signal
import sys
import time

from .common import err, getopt_strict, not_implemented

PR_SET_CHILD_SUBREAPER = 36


def _lock_pidfile(path):
    """Open+lock a pidfile like pidfile_open(3); return fd or (None, pid)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            with open(path, encoding="ascii") as fh:
                other = fh.read().strip()
        except OSError:
            other = "?"
        os.close(fd)
        return None, other
    return fd, None


def _write_pid(fd, pid):
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{pid}\n".encode())
    os.fsync(fd)


def _drop_privileges(user):
    pw = pwd.getpwnam(user)
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ["HOME"] = pw.pw_dir
    os.environ["USER"] = pw.pw_name
    os.environ["SHELL"] = pw.pw_shell


def daemon_main(args):
    opts, rest = getopt_strict("daemon", args, "cfHrR:P:p:t:u:o:")
    if not rest:
        not_implemented("daemon", args)
    o = {}
    for k, v in opts:
        o[k] = v
    restart = "-r" in o or "-R" in o
    delay = float(o.get("-R", "1"))
    sup_file, child_file, user, output = o.get("-P"), o.get("-p"), o.get("-u"), o.get("-o")
    if user:
        try:
            pwd.getpwnam(user)
        except KeyError:
            err("daemon: failed to set user environment")
            return 1
    sup_fd = child_fd = None
    if sup_file:
        sup_fd, other = _lock_pidfile(sup_file)
        if sup_fd is None:
            err(f"daemon: process already running, pid: {other}")
            return 3
    if child_file:
        child_fd, other = _lock_pidfile(child_file)
        if child_fd is None:
            err(f"daemon: process already running, pid: {other}")
            return 3
    # detach: the caller returns at once, as daemon(3) does
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if "-c" not in o:
        os.chdir("/")
    if "-f" in o or output:
        devnull = os.open("/dev/null", os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(devnull, n)
    if sup_fd is not None:
        _write_pid(sup_fd, os.getpid())
    out_fd = None
    if output:
        out_fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    state = {"child": 0, "stop": False}

    def on_term(signum, _frame):
        state["stop"] = True
        if state["child"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["child"], signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            if out_fd is not None:
                os.dup2(out_fd, 1)
                os.dup2(out_fd, 2)
            if user:
                _drop_privileges(user)
            try:
                os.execvp(rest[0], rest)
            except OSError as exc:
                sys.stderr.write(f"daemon: execvp: {rest[0]}: {exc.strerror}\n")
                os._exit(1)
        state["child"] = pid
        if child_fd is not None:
            _write_pid(child_fd, pid)
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        state["child"] = 0
        if state["stop"] or not restart:
            break
        slept = 0.0
        while slept < delay and not state["stop"]:
            time.sleep(0.1)
            slept += 0.1
        if state["stop"]:
            break
    for path, fd in ((child_file, child_fd), (sup_file, sup_fd)):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)
    os._exit(0)


def lockf_main(args):
    opts, rest = getopt_strict("lockf", args, "kst:")
    if len(rest) < 2:
        not_implemented("lockf", args)
    o = dict(opts)
    path = rest[0]
    wait = float(o["-t"]) if "-t" in o else None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if wait is not None and time.monotonic() - start >= wait:
                if "-s" not in o:
                    err(f"lockf: {path}: already locked")
                return 75
            time.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(rest[1], rest[1:])
        except OSError:
            err(f"lockf: {rest[1]}: No such file or directory")
            os._exit(71)
    status = os.waitpid(pid, 0)[1]
    if "-k" not in o:
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(fd)
    return os.waitstatus_to_exitcode(status) if status else 0


def _duration(text):
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in mult:
        return float(text[:-1]) * mult[text[-1]]
    return float(text)


def _descendants(root_pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root_pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def timeout_main(args):
    argv = list(args)
    preserve = False
    rest = []
    while argv and argv[0] == "--preserve-status":
        preserve = True
        argv.pop(0)
    opts, rest = getopt_strict("timeout", argv, "fk:s:")
    o = dict(opts)
    if len(rest) < 2:
        not_implemented("timeout", args)
    sig = o.get("-s", "TERM").upper()
    signum = getattr(signal, sig if sig.startswith("SIG") else "SIG" + sig, None)
    if signum is None:
        not_implemented("timeout", args)
    limit = _duration(rest[0])
    kill_after = _duration(o["-k"]) if "-k" in o else None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(rest[1], rest[1:])
        except OSError:
            os._exit(127)
    state = {"signalled": None}

    def kill_tree(signum_):
        for p in _descendants(me):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signum_)

    def on_signal(signum_, _frame):
        state["signalled"] = signum_
        kill_tree(signum_)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    deadline = time.monotonic() + limit if limit > 0 else None
    status = None
    timed_out = False
    while status is None:
        try:
            wpid, wstatus = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid == pid:
            status = wstatus
            break
        if wpid:
            continue
        now = time.monotonic()
        if deadline and not timed_out and now >= deadline:
            timed_out = True
            kill_tree(signum)
            deadline = now + kill_after if kill_after else None
        elif timed_out and deadline and now >= deadline:
            kill_tree(signal.SIGKILL)
            deadline = None
        time.sleep(0.05)
    if state["signalled"] is not None or timed_out:
        # the whole tree goes: give it a moment, then SIGKILL what is left
        grace = time.monotonic() + 2
        while _descendants(me) and time.monotonic() < grace:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-1, os.WNOHANG)
            time.sleep(0.05)
        kill_tree(signal.SIGKILL)
    if timed_out and not preserve:
        return 124
    if status is None:
        return 0
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code

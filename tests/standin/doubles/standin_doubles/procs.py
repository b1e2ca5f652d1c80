"""daemon(8), lockf(1) and timeout(1) doubles: they really run processes.

daemon (after FreeBSD usr.sbin/daemon/daemon.c and daemon(8), 14.x):
  daemon [-cfHrS] [-p child_pidfile] [-P supervisor_pidfile] [-t title]
         [-u user] [-o output_file] [-m output_mask] [-R restart_delay]
         [-s syslog_priority] [-T syslog_tag] [-l syslog_facility] command args...
  - detaches (daemon(3): the caller gets 0 at once; an unknown -u user is
    reported by the detached child, "daemon: unknown user: NAME");
  - -p, -P, -r, -R, -o, -S, -T, -l, -s turn on supervision: the supervisor
    writes and locks -P, forks the child, which writes -p and execs the
    command as -u user; the child's output reaches the supervisor through a
    pipe and goes to -o (appended), to syslog with -S (there is no syslogd in
    the stand-in: lines go to /var/log/messages in syslogd's format, as
    FreeBSD's default syslog.conf files daemon.notice), or to daemon's stdout;
    -m picks which of the child's stdout (1) and stderr (2) are passed (3);
    -H reopens the -o file on SIGHUP;
  - -r restarts the child one second after it exits, -R secs after secs
    (below 1: "invalid restart delay", exit 6); -m outside 0..3:
    "unrecognized listening mask", exit 6; unknown -l facility exit 5,
    unknown -s priority exit 4 (errx codes of daemon.c main);
  - SIGTERM to the supervisor is passed to the direct child only, then the
    supervisor removes its pidfiles and exits;
  - a locked pidfile means "already running": errx 3
    "process already running, pid: N" (daemon.c open_pid_files).
  Not modelled: -t (the supervisor's title; procname checks use
  /usr/sbin/daemon), login classes of -u.
lockf (after FreeBSD usr.bin/lockf/lockf.c): lockf [-k] [-s] [-t secs] file cmd...
  exit 75 (EX_TEMPFAIL) with "lockf: FILE: already locked" when -t 0 and held.
timeout (after FreeBSD bin/timeout/timeout.c): timeout [-k time] [-s sig]
  [--preserve-status] [-f] duration cmd...  Acquires the reaper role and on
  SIGTERM (or expiry) signals every descendant, not only the child; without
  -k it then only waits for its child, so a descendant that ignores the
  signal is left running (re-parented), as FreeBSD 14's timeout.c does; a
  duration of 0 sets no timer.  Not modelled: after the child ends, FreeBSD
  14's timeout keeps waiting while orphans re-parented to it still run
  (PROC_REAP_STATUS rs_children), e.g. a daemon a `service X start` under
  timeout leaves; the double exits with its child.
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
    # daemon.c restrict_process: setusercontext(..., LOGIN_SETALL) sets PATH
    # from the login class (FreeBSD's default class, as su -l does)
    from .su import DEFAULT_PATH
    os.environ["PATH"] = DEFAULT_PATH.format(home=pw.pw_dir)


# syslog(3) names daemon(8) accepts for -l and -s (sys/syslog.h facilitynames,
# prioritynames; daemon.c get_log_mapping compares them exactly)
SYSLOG_FACILITIES = ("auth", "authpriv", "console", "cron", "daemon", "ftp", "kern", "lpr", "mail",
                     "news", "ntp", "security", "syslog", "user", "uucp", "local0", "local1", "local2",
                     "local3", "local4", "local5", "local6", "local7")
SYSLOG_PRIORITIES = ("alert", "crit", "debug", "emerg", "err", "error", "info", "notice", "panic",
                     "warning", "warn")
# The stand-in runs no syslogd: daemon -S writes what syslogd would write with
# FreeBSD's default /etc/syslog.conf ("*.notice;...  /var/log/messages").
SYSLOG_FILE = "/var/log/messages"


def _syslog_line(tag, text):
    """One line as syslogd writes it: "Mmm dd HH:MM:SS host tag[pid]: text"."""
    from .common import kernel

    with kernel() as k:
        host = (k.get("hostname") or "standin").split(".")[0]
    stamp = time.strftime("%b %e %H:%M:%S")
    return f"{stamp} {host} {tag}[{os.getpid()}]: {text}\n"


class _Output:
    """Where daemon(8)'s supervisor puts the child's output (daemon.c do_output).

    -o appends the bytes as they come; -S sends each line to syslog with the
    tag and priority; with neither the output goes to daemon's own stdout
    unless -f closed it.
    """

    def __init__(self, path, syslog_tag, keep_fds):
        self.path, self.tag, self.keep_fds = path, syslog_tag, keep_fds
        self.fd = self._open() if path else None
        self.reopen = False

    def _open(self):
        # daemon.c open_log: O_CREAT | O_WRONLY | O_APPEND, mode 0600
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, data):
        if self.reopen and self.path:
            # -H: reopen after SIGHUP so newsyslog can rotate the file
            self.reopen = False
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = self._open()
        if self.tag is not None:
            text = data.decode("utf-8", "replace").rstrip("\n")
            with contextlib.suppress(OSError), open(SYSLOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(_syslog_line(self.tag, text))
        if self.fd is not None:
            os.write(self.fd, data)
        if self.keep_fds and self.tag is None and self.fd is None:
            with contextlib.suppress(OSError):
                os.write(1, data)


def _pump(read_fd, output, stopping):
    """Copy the child's output line by line until EOF (daemon.c listen_child).

    Returns early once ``stopping()`` is true: after SIGTERM daemon.c leaves at
    once instead of waiting for an EOF that a lingering grandchild may delay.
    """
    import select

    pending = b""
    while not stopping():
        try:
            ready, _w, _x = select.select([read_fd], [], [], 0.2)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            chunk = os.read(read_fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            output.write(line + b"\n")
    if pending:
        output.write(pending)
    os.close(read_fd)


def daemon_main(args):
    """daemon(8) as usr.sbin/daemon/daemon.c (14.x) main() parses and runs it."""
    opts, rest = getopt_strict("daemon", args, "cfHl:m:rR:P:p:s:St:T:u:o:")
    if not rest:
        not_implemented("daemon", args)
    o = {}
    for k, v in opts:
        o[k] = v
    # daemon.c: -R below 1 and a mask outside 0..3 end with errx(6, ...);
    # unknown syslog names with errx(5) (facility) and errx(4) (priority)
    delay = 1
    if "-R" in o:
        try:
            delay = int(o["-R"], 0)
        except ValueError:
            delay = 0
        if delay < 1:
            err("daemon: invalid restart delay")
            return 6
    mask = 3
    if "-m" in o:
        if not o["-m"].isdigit() or int(o["-m"]) > 3:
            err("daemon: unrecognized listening mask")
            return 6
        mask = int(o["-m"])
    if "-l" in o and o["-l"] not in SYSLOG_FACILITIES:
        err("daemon: unrecognized syslog facility")
        return 5
    if "-s" in o and o["-s"] not in SYSLOG_PRIORITIES:
        err("daemon: unrecognized syslog priority")
        return 4
    # -S, -T, -l and -s each turn syslog on; the default tag is "daemon"
    syslog = any(f in o for f in ("-S", "-T", "-l", "-s"))
    tag = o.get("-T", "daemon") if syslog else None
    restart = "-r" in o or "-R" in o
    sup_file, child_file, user, output = o.get("-P"), o.get("-p"), o.get("-u"), o.get("-o")
    # supervision mode: any of -p -P -r -R -o -S -l -s -T (daemon.c comment in main)
    supervise = bool(sup_file or child_file or restart or output or syslog)
    sup_fd = child_fd = None
    if child_file:
        child_fd, other = _lock_pidfile(child_file)
        if child_fd is None:
            err(f"daemon: process already running, pid: {other}")
            return 3
    if sup_file:
        sup_fd, other = _lock_pidfile(sup_file)
        if sup_fd is None:
            if child_fd is not None:
                os.close(child_fd)
            err(f"daemon: process already running, pid: {other}")
            return 3
    # daemon(3): the caller returns 0 at once; later errors (an unknown -u
    # user, a failed exec) happen in the detached process
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if "-c" not in o:
        os.chdir("/")
    keep_fds = "-f" not in o
    if not keep_fds:
        devnull = os.open("/dev/null", os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(devnull, n)
    if sup_fd is not None:
        _write_pid(sup_fd, os.getpid())
    if not supervise:
        if child_fd is not None:
            _write_pid(child_fd, os.getpid())
        _exec_child(rest, user, None, mask)
    sink = _Output(output, tag, keep_fds)
    state = {"child": 0, "stop": False}

    def on_term(signum, _frame):
        # daemon.c handle_term: pass SIGTERM to the child, then leave
        state["stop"] = True
        if state["child"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["child"], signum)

    def on_hup(_signum, _frame):
        sink.reopen = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup if "-H" in o and output else signal.SIG_IGN)
    while True:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _exec_child(rest, user, write_fd, mask)
        os.close(write_fd)
        state["child"] = pid
        if child_fd is not None:
            _write_pid(child_fd, pid)
        _pump(read_fd, sink, lambda: state["stop"])
        # after EOF wait for the child itself (it may have closed its output);
        # SIGTERM ends the wait as daemon.c's sigsuspend loop does
        while not state["stop"]:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
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
    os._exit(1)


def _exec_child(argv, user, pipe_fd, mask):
    """The child branch of daemon.c: drop to -u user, wire the output, exec."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if user:
        try:
            _drop_privileges(user)
        except KeyError:
            sys.stderr.write(f"daemon: unknown user: {user}\n")
            os._exit(1)
    if pipe_fd is not None:
        # -m: 1 = stdout, 2 = stderr, 3 = both go to the supervisor
        if mask & 2:
            os.dup2(pipe_fd, 2)
        if mask & 1:
            os.dup2(pipe_fd, 1)
        if pipe_fd not in (1, 2):
            os.close(pipe_fd)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"daemon: {argv[0]}: {exc.strerror}\n")
        os._exit(1)


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
    foreground = "-f" in o
    libc = ctypes.CDLL(None, use_errno=True)
    if not foreground:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    # Like timeout.c's sigsuspend loop: the signals it acts on are blocked and taken one at a time, so the
    # loop wakes when the child ends or a signal comes, never on a polling interval.
    watched = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        try:
            os.execvp(rest[1], rest[1:])
        except OSError:
            os._exit(127)
    pending = None

    def kill_tree(signum_):
        # PROC_REAP_KILL: every descendant; --foreground: the child only
        for p in ([pid] if foreground else _descendants(me)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signum_)

    # The main loop of FreeBSD 14 bin/timeout/timeout.c: a duration of 0 sets no
    # timer (set_interval(0)); expiry or a signal sends the signal to the whole
    # tree (PROC_REAP_KILL) and, without -k, ends the loop at once: processes
    # that ignore it are left behind; with -k, SIGKILL follows after that time.
    deadline = time.monotonic() + limit if limit > 0 else None
    status = None
    timed_out = False
    while True:
        with contextlib.suppress(ChildProcessError):
            while True:
                wpid, wstatus = os.waitpid(-1, os.WNOHANG)
                if not wpid:
                    break
                if wpid == pid:
                    status = wstatus
        # FreeBSD 14 keeps waiting here while orphans re-parented to the reaper
        # run (PROC_REAP_STATUS rs_children != 0): not modelled, the double
        # leaves when its child ends (see tests/standin/README.md)
        if status is not None:
            break
        now = time.monotonic()
        sig = None
        if pending is not None:
            sig, pending = pending, None
        elif deadline is not None and now >= deadline:
            timed_out = True
            sig = signum
        if sig is not None:
            kill_tree(sig)
            if kill_after is None:
                break
            deadline, kill_after, signum = now + kill_after, None, signal.SIGKILL
        if deadline is None:
            info = signal.sigwaitinfo(watched)
        else:
            info = signal.sigtimedwait(watched, max(0.0, deadline - time.monotonic()))
        if info is not None and info.si_signo != signal.SIGCHLD:
            pending = info.si_signo
    while status is None:
        try:
            wpid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if wpid == pid:
            status = wstatus
    if timed_out and not preserve:
        return 124
    if status is None:
        return 0
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code

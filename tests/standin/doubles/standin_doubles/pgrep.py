"""pgrep(1) and pkill(1) doubles: find and signal processes of the stand-in host.

After FreeBSD bin/pkill/pkill.c (14.x) and pkill(1):
  pgrep [-filqvx] [-d delim] [-U uid] [-u euid] [-j jail] [pattern ...]
  pkill [-signal] [-filvx] [-U uid] [-u euid] [-j jail] [pattern ...]
  - -U real uids, -u effective uids: comma lists of names or numbers
    ("Unknown user `X'", exit 2);
  - -j jail: "none" (not in a jail, jid 0), "any" (in any jail), a jail name
    or jid ("Invalid jail ID or name `X'", exit 2);
  - pattern: an extended regular expression matched against the command
    name, or with -f against the whole argument list; -x anchors it;
  - the calling process and its ancestors are never selected;
  - pgrep prints the pids separated by -d (default newline), -l adds the
    name (-lf the arguments), -q prints nothing;
  - pkill sends the signal (default TERM) and with -l prints
    "kill -N PID" for every selected process, or "No matching processes
    belonging to you were found" on stderr when none;
  - exit 0 when something matched, 1 when nothing did, 2 on bad usage.
  Without criteria: the usage text, exit 2.

The stand-in's processes are those whose root directory is the stand-in's
root (jid 0) or a running jail's root (that jail's jid); processes of the
machine outside the stand-in do not exist for it.  Not modelled (exit 64):
-F -L -G -M -N -P -S -a -c -g -i -n -o -s -t -D -I.
"""

import os
import pwd
import re
import signal
import sys

from .common import err, kernel, not_implemented

USAGE = ("usage: {prog} {ustr} [-F pidfile] [-G gid] [-M core] [-N system]\n"
         "             [-P ppid] [-U uid] [-c class] [-g pgrp] [-j jail]\n"
         "             [-s sid] [-t tty] [-u euid] pattern ...\n")


class _BadUsage(Exception):
    pass


def _usage(prog):
    ustr = "[-LSfilnoqvx] [-d delim]" if prog == "pgrep" else "[-signal] [-ILfilnovx]"
    sys.stderr.write(USAGE.format(prog=prog, ustr=ustr))
    return 2


def _users(spec):
    uids = []
    for item in spec.split(","):
        if not item:
            raise _BadUsage("")
        if item.isdigit():
            uids.append(int(item))
            continue
        try:
            uids.append(pwd.getpwnam(item).pw_uid)
        except KeyError:
            raise _BadUsage(f"Unknown user `{item}'") from None
    return uids


def _jails(spec, running):
    """-j list -> jids; -1 is "any jail" (pkill.c makelist LT_JAIL)."""
    jids = []
    for item in spec.split(","):
        if item == "none":
            jids.append(0)
        elif item == "any":
            jids.append(-1)
        elif item.isdigit():
            # "For compatibility with old -j": 0 means any jail
            jids.append(int(item) or -1)
        elif item in running:
            jids.append(running[item]["jid"])
        else:
            raise _BadUsage(f"Invalid jail ID or name `{item}'")
    return jids


def _root_id(path):
    st = os.stat(path)
    return st.st_dev, st.st_ino


def processes():
    """Every process of the stand-in: dicts with pid, ppid, ruid, euid, jid, comm, args."""
    with kernel() as k:
        running = {n: j for n, j in k.get("jails", {}).items() if j.get("running") and j.get("path")}
    roots = {_root_id("/"): 0}
    for j in running.values():
        try:
            roots[_root_id(j["path"])] = j["jid"]
        except OSError:
            continue
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            jid = roots.get(_root_id(f"/proc/{entry}/root"))
            if jid is None:
                continue  # a process of the machine, outside the stand-in
            with open(f"/proc/{entry}/status", encoding="utf-8", errors="replace") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
        except (OSError, ValueError):
            continue  # gone while we looked, or not ours to read
        if status.get("State", "").split()[:1] == ["Z"]:
            continue
        uids = status["Uid"].split()
        found.append({"pid": int(entry), "ppid": int(status["PPid"]), "ruid": int(uids[0]),
                      "euid": int(uids[1]), "jid": jid, "comm": status["Name"].strip(), "args": args})
    return found, running


def _signal_number(text):
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name[3:] if name.startswith("SIG") else name
    sig = getattr(signal, "SIG" + name, None)
    return int(sig) if isinstance(sig, signal.Signals) else None


def main(prog, args):
    argv = list(args)
    signum = signal.SIGTERM
    if prog == "pkill" and argv and argv[0].startswith("-") and len(argv[0]) > 1:
        sig = _signal_number(argv[0][1:])
        if sig is not None:
            signum = sig
            argv.pop(0)
    import getopt

    shortopts = "d:fj:lqU:u:vx" if prog == "pgrep" else "fj:lU:u:vx"
    try:
        opts, patterns = getopt.getopt(argv, shortopts)
    except getopt.GetoptError:
        known = "DF:G:ILM:N:P:SU:ac:d:fg:ij:lnoqs:t:u:vx"
        try:
            getopt.getopt(argv, known)
        except getopt.GetoptError:
            return _usage(prog)
        not_implemented(prog, args)
    o = dict(opts)
    procs, running = processes()
    try:
        ruids = _users(o["-U"]) if "-U" in o else None
        euids = _users(o["-u"]) if "-u" in o else None
        jids = _jails(o["-j"], running) if "-j" in o else None
        regexes = [re.compile(p) for p in patterns]
    except _BadUsage as exc:
        if str(exc):
            err(f"{prog}: {exc}")
            return 2
        return _usage(prog)
    except re.error as exc:
        err(f"{prog}: Cannot compile regular expression `{exc.pattern}' ({exc.msg})")
        return 2
    if ruids is None and euids is None and jids is None and not patterns:
        return _usage(prog)
    # the caller and its ancestors are never selected (pkill.c: unless -a)
    by_pid = {p["pid"]: p for p in procs}
    skip, pid = set(), os.getpid()
    while pid in by_pid and pid not in skip:
        skip.add(pid)
        pid = by_pid[pid]["ppid"]
    skip.add(os.getppid())

    def selected(p):
        if regexes:
            text = " ".join(p["args"]) if "-f" in o else p["comm"]
            hit = any((r.fullmatch(text) if "-x" in o else r.search(text)) for r in regexes)
            if not hit:
                return False
        if ruids is not None and p["ruid"] not in ruids:
            return False
        if euids is not None and p["euid"] not in euids:
            return False
        # -j: the jail's jid, 0 for none, -1 for any jail
        return jids is None or any(p["jid"] == j or (j == -1 and p["jid"] > 0) for j in jids)

    chosen = [p for p in sorted(procs, key=lambda p: p["pid"])
              if p["pid"] not in skip and (selected(p) != ("-v" in o))]
    if prog == "pgrep":
        if "-q" not in o and chosen:
            def show(p):
                if "-l" in o:
                    return f"{p['pid']} {' '.join(p['args']) if '-f' in o else p['comm']}"
                return str(p["pid"])
            sys.stdout.write(o.get("-d", "\n").join(show(p) for p in chosen) + "\n")
        return 0 if chosen else 1
    killed = 0
    for p in chosen:
        if "-l" in o:
            sys.stdout.write(f"kill -{int(signum)} {p['pid']}\n")
        try:
            os.kill(p["pid"], signum)
            killed += 1
        except ProcessLookupError:
            continue  # gone between matching and signalling: not a match (pkill.c)
        except PermissionError:
            err(f"{prog}: signalling pid {p['pid']}: Operation not permitted")
    if "-l" in o and not chosen:
        err("No matching processes belonging to you were found")
    return 0 if killed else 1


def pgrep_main(args):
    return main("pgrep", args)


def pkill_main(args):
    return main("pkill", args)

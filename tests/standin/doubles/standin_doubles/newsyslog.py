"""newsyslog(8) double: rotate the logs a configuration names (after FreeBSD usr.sbin/newsyslog).

Forms: newsyslog [-CF] [-f config_file] [file ...]
  - the configuration (default /etc/newsyslog.conf) as newsyslog.conf(5) and
    parse_file() read it: "#" comments, "<include> GLOB" lines, and entries
    "logfilename [owner:group] mode count size when flags [/pid_file] [sig_num]";
    a malformed entry: "newsyslog: malformed line (...)" and the line, exit 1;
  - size: kilobytes or "*"; when: hours or "*" ("@..." and "$..." times are
    not modelled, exit 64); flags: "-" or any of B C G J N X Y Z (others not
    modelled, exit 64);
  - an entry is rotated with -F, or when the log has reached its size, or is
    older than its hours: log.N for N >= count goes, log.N-1 becomes log.N
    (compressed ones keep their suffix), the log becomes log.0 and a new empty
    log is created with the entry's owner, group and mode, which (without B)
    gets "DATE HOST newsyslog[PID]: logfile turned over" (log_trim());
    then the pid file's process gets the signal (default SIGHUP; not with N),
    then log.0 is compressed (J bzip2, Z gzip, X xz, Y zstd);
  - a missing log is created only with -C and the C flag (or -CC);
  - file operands limit the run to those entries.
  Not modelled (exit 64): -a -d -n -r -s -t -v -N -P -R -S -D.
"""

import contextlib
import glob
import grp
import os
import pwd
import signal
import subprocess
import sys
import time

from .common import err, getopt_strict, not_implemented

DEFAULT_CONF = "/etc/newsyslog.conf"
COMPRESS = {"J": ("bzip2", ".bz2"), "Z": ("gzip", ".gz"), "X": ("xz", ".xz"), "Y": ("zstd", ".zst")}
FLAGS = set("BCGJNXYZ-")


class Malformed(Exception):
    pass


def _entries(path, seen=None):
    seen = seen if seen is not None else set()
    if path in seen:
        return []
    seen.add(path)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError as exc:
        err(f"newsyslog: {path}: {exc.strerror}")
        raise SystemExit(1) from exc
    found = []
    for raw in lines:
        if raw.startswith(("#", "\n")) or not raw.strip():
            continue
        line = raw.split("#", 1)[0] if "\\#" not in raw else raw.replace("\\#", "\0").split("#", 1)[0]
        fields = line.replace("\0", "#").split()
        if not fields:
            continue
        if fields[0].lower() == "<include>":
            if len(fields) < 2:
                err(f"newsyslog: include line missing argument:\n{raw}")
                continue
            for inc in sorted(glob.glob(fields[1])):
                found += _entries(inc, seen)
            continue
        found.append(_entry(fields, raw))
    return found


def _entry(fields, raw):
    def bad(what):
        raise Malformed(f"malformed line ({what}):\n{raw}")

    e = {"log": fields[0], "owner": None, "group": None}
    rest = fields[1:]
    if rest and (":" in rest[0] or "." in rest[0]) and not rest[0].isdigit():
        owner, _sep, group = rest[0].partition(":")
        try:
            e["owner"] = pwd.getpwnam(owner).pw_uid if owner else None
        except KeyError:
            bad(f"unknown user {owner}")
        try:
            e["group"] = grp.getgrnam(group).gr_gid if group else None
        except KeyError:
            bad(f"unknown group {group}")
        rest = rest[1:]
    if len(rest) < 4:
        bad("missing fields")
    try:
        e["mode"] = int(rest[0], 8)
    except ValueError:
        bad("error in mode")
    if not rest[1].isdigit():
        bad("error in count")
    e["count"] = int(rest[1])
    if rest[2] == "*":
        e["size"] = -1
    elif rest[2].isdigit():
        e["size"] = int(rest[2])
    else:
        bad("error in size")
    when = rest[3]
    if when == "*":
        e["hours"] = -1
    elif when.isdigit():
        e["hours"] = int(when)
    elif when[:1] in ("@", "$"):
        not_implemented("newsyslog", [f"when field {when}"])
    else:
        bad("error in time")
    flags = rest[4] if len(rest) > 4 else "-"
    if set(flags) - FLAGS:
        not_implemented("newsyslog", [f"flags {flags}"])
    e["flags"] = set(flags) - {"-"}
    e["pidfile"] = rest[5] if len(rest) > 5 else None
    if e["pidfile"] is not None and not e["pidfile"].startswith("/"):
        bad("pid file must be an absolute path")
    e["sig"] = signal.SIGHUP
    if len(rest) > 6:
        name = rest[6].upper()
        sig = int(name) if name.isdigit() else getattr(signal, name if name.startswith("SIG") else "SIG" + name, None)
        if sig is None:
            bad("unknown signal")
        e["sig"] = sig
    return e


def _suffix(e):
    return COMPRESS[next(iter(e["flags"] & set(COMPRESS)))][1] if e["flags"] & set(COMPRESS) else ""


def _create(e):
    fd = os.open(e["log"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchown(fd, -1 if e["owner"] is None else e["owner"], -1 if e["group"] is None else e["group"])
    os.fchmod(fd, e["mode"])
    os.close(fd)


def _rotate(e, hostname):
    log, ext = e["log"], _suffix(e)
    for n in range(e["count"], 100):
        for suffix in ("", ext):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{log}.{n}{suffix}")
    for n in range(e["count"] - 1, 0, -1):
        for suffix in ("", ext):
            if os.path.exists(f"{log}.{n - 1}{suffix}"):
                os.rename(f"{log}.{n - 1}{suffix}", f"{log}.{n}{suffix}")
    if e["count"] > 0:
        os.rename(log, f"{log}.0")
    else:
        os.unlink(log)
    _create(e)
    if "B" not in e["flags"]:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%b %e %H:%M:%S')} {hostname} newsyslog[{os.getpid()}]: logfile turned over\n")
    if e["pidfile"] and "N" not in e["flags"]:
        try:
            with open(e["pidfile"], encoding="ascii") as fh:
                pid = int(fh.read().split()[0])
            os.kill(pid, e["sig"])
        except (OSError, ValueError, IndexError):
            err(f"newsyslog: pid file doesn't contain a valid pid: {e['pidfile']}")
    if ext and e["count"] > 0:
        from .layout import host_tool
        tool = COMPRESS[next(iter(e["flags"] & set(COMPRESS)))][0]
        subprocess.run([host_tool(tool), "-f", f"{log}.0"], check=False)


def main(args):
    opts, files = getopt_strict("newsyslog", args, "CFf:")
    o = {}
    for k, v in opts:
        o[k] = o.get(k, 0) + 1 if k != "-f" else v
    try:
        entries = _entries(o.get("-f", DEFAULT_CONF))
    except Malformed as exc:
        err(f"newsyslog: {exc}")
        return 1
    if files:
        entries = [e for e in entries if e["log"] in files]
    from .common import kernel

    with kernel() as k:
        hostname = (k.get("hostname") or "standin").split(".")[0]
    for e in entries:
        if not os.path.exists(e["log"]):
            if o.get("-C", 0) > 1 or (o.get("-C") and "C" in e["flags"]):
                _create(e)
            continue
        size_kb = os.stat(e["log"]).st_size // 1024
        age_h = (time.time() - os.stat(f"{e['log']}.0").st_mtime) / 3600 if os.path.exists(f"{e['log']}.0") else -1
        due = ("-F" in o or (e["size"] > 0 and size_kb >= e["size"])
               or (e["hours"] > 0 and (age_h < 0 or age_h >= e["hours"])))
        if due:
            _rotate(e, hostname)
    sys.stdout.flush()
    return 0

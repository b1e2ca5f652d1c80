"""FreeBSD userland commands whose options differ from the machine's GNU ones.

Each double parses its arguments strictly as FreeBSD 14's getopt(3) and
command do (an unknown option prints "CMD: illegal option -- X" and the
command's usage, with the command's exit status), then either does the work
itself (stat, date, install, uname, hostname) or runs the machine's GNU tool
with the equivalent GNU options (sed, find, xargs), reached through
layout.host_tool() because the GNU names are not on the stand-in's PATH.

  sed      [-Ealnru] [-i ext | -I ext] script | -e script ... | -f file ...   usr.bin/sed/main.c
  stat     [-FLnq] [-f format | -l | -r | -s | -x] [-t timefmt] [file ...]   usr.bin/stat/stat.c
  date     [-jnRu] [-I[fmt]] [-f in_fmt] [-z zone] [-r secs|file] [-v adj] [spec] [+fmt]
                                                                              bin/date/date.c, vary.c
  install  [-bCcpSv] [-B suffix] [-g group] [-m mode] [-o owner] file... target; -d dir...
                                                                              usr.bin/xinstall/xinstall.c
  find     [-H|-L|-P] [-Edsx] [-f path] path... [expression]                 usr.bin/find/{main,option}.c
  xargs    [-0oprtx] [-E eof] [-I repl [-R -1]] [-J repl] [-L n] [-n n] [-P n] [-s size]
                                                                              usr.bin/xargs/xargs.c
  uname    [-aiKmnoprsUv]                                                     usr.bin/uname/uname.c
  hostname [-f] [-s | -d] [name]                                              bin/hostname/hostname.c

What the stand-in refuses (not_implemented, exit 64): setting the clock
(date without -j), file flags, birth times, metalogs, find's -s with actions.
"""

import calendar
import contextlib
import grp
import hashlib
import os
import pwd
import re
import shlex
import shutil
import stat as st
import subprocess
import sys
import tempfile
import time

from .common import Exit, err, kernel, not_implemented, out
from .layout import host_tool

# ---------------------------------------------------------------- getopt(3)


class Usage(Exception):
    """A getopt(3) error: the command prints its usage and exits."""


def bsd_getopt(cmd, args, optstring):
    """getopt(3) as FreeBSD's libc does it (lib/libc/stdlib/getopt.c).

    Options end at the first operand or at "--"; "x:" takes an argument
    (attached or the next word), "x::" an optional attached one.  Errors print
    "CMD: illegal option -- X" / "CMD: option requires an argument -- X".
    A GNU long option ("--in-place") is the option character "-", illegal.
    """
    arity = {}
    i = 0
    while i < len(optstring):
        c = optstring[i]
        n = 0
        if optstring[i + 1:i + 2] == ":":
            n = 2 if optstring[i + 2:i + 3] == ":" else 1
        arity[c] = n
        i += 1 + n
    opts, idx = [], 0
    while idx < len(args):
        a = args[idx]
        if a == "--":
            idx += 1
            break
        if not a.startswith("-") or a == "-":
            break
        j = 1
        while j < len(a):
            c = a[j]
            if c not in arity or c == ":":
                err(f"{cmd}: illegal option -- {c}")
                raise Usage
            if arity[c] == 0:
                opts.append((c, None))
                j += 1
                continue
            if arity[c] == 2:
                opts.append((c, a[j + 1:] or None))
                break
            if j + 1 < len(a):
                opts.append((c, a[j + 1:]))
            else:
                idx += 1
                if idx >= len(args):
                    err(f"{cmd}: option requires an argument -- {c}")
                    raise Usage
                opts.append((c, args[idx]))
            break
        idx += 1
    return opts, args[idx:]


def usage(text, code):
    err(text)
    raise Exit(code)


def _run_gnu(tool, argv, stderr_fix=None, rc_map=None):
    """Run the machine's GNU ``tool``; stdin/stdout pass through.

    ``stderr_fix`` rewrites GNU's diagnostics into FreeBSD's wording,
    ``rc_map`` maps GNU exit statuses onto FreeBSD's.
    """
    sys.stdout.flush()
    # argv[0] is the bare name, so GNU's messages start "sed:" as FreeBSD's do
    proc = subprocess.Popen([tool] + argv, executable=host_tool(tool), stderr=subprocess.PIPE)
    _o, errs = proc.communicate()
    text = errs.decode("utf-8", "replace")
    if stderr_fix:
        text = stderr_fix(text)
    sys.stderr.write(text)
    return (rc_map or {}).get(proc.returncode, proc.returncode)


# --------------------------------------------------------------------- sed

SED_USAGE = ("usage: sed script [-Ealnru] [-i extension] [file ...]\n"
             "       sed [-Ealnu] [-i extension] [-e script] ... [-f script_file] ... [file ...]")
# sed(1) FUNCTIONS / compile.c cmd_fmts: the command letters a script may use
SED_COMMANDS = set("{}=:!#abcdDgGhHilnNpPqrstwxy")


def _sed_first_command_error(script):
    """FreeBSD compile.c's message when the first command letter is not one.

    Catches GNU's ``sed -i 's/a/b/' FILE``: FreeBSD takes the expression as
    -i's extension and FILE as the script ("invalid command code f").
    Addresses skipped: N, $, /re/, \\cREc, a range with ",", and "!".
    """
    p = 0
    n = len(script)

    def skip_blanks(q):
        while q < n and script[q] in " \t;\n":
            q += 1
        return q

    def address(q):
        if q < n and script[q].isdigit():
            while q < n and script[q].isdigit():
                q += 1
        elif q < n and script[q] == "$":
            q += 1
        elif q < n and script[q] in "/\\":
            delim = script[q]
            if delim == "\\":
                q += 1
                if q >= n:
                    return q
                delim = script[q]
            q += 1
            while q < n and script[q] != delim:
                q += 2 if script[q] == "\\" else 1
            q += 1
        return q

    p = skip_blanks(p)
    if p >= n:
        return None
    p = address(p)
    if p < n and script[p] == ",":
        p = address(p + 1)
    while p < n and script[p] in " \t!":
        p += 1
    if p < n and script[p] not in SED_COMMANDS:
        label = f'"{script}"' if len(script) < 27 else f'"{script[:23]} ..."'
        return f"sed: 1: {label}: invalid command code {script[p]}"
    return None


def _sed_stderr(text):
    # GNU "sed: can't read F: No such file or directory"; FreeBSD warn("%s", fname)
    return re.sub(r"^sed: can't read (.*?): ", r"sed: \1: ", text, flags=re.M)


def sed_main(args):
    try:
        opts, rest = bsd_getopt("sed", args, "EI:ae:f:i:lnru")
    except Usage:
        usage(SED_USAGE, 1)
    gnu, scripts, inplace, span = [], [], None, False
    for o, v in opts:
        if o in ("E", "r"):  # main.c: case 'r' "Gnu sed compat", same as -E
            gnu.append("-E")
        elif o == "I":  # -I ext: in place, line numbers span the files
            inplace, span = v, True
        elif o == "i":  # -i ext: mandatory extension argument; "" = no backup
            inplace, span = v, False
        elif o == "a":  # delay opening w files: no effect on the result
            pass
        elif o == "e":
            scripts += ["-e", v]
        elif o == "f":
            scripts += ["-f", v]
        elif o in ("l", "u"):  # line-buffered / unbuffered output
            gnu.append("-u")
        elif o == "n":
            gnu.append("-n")
    if not scripts:
        if not rest:
            usage(SED_USAGE, 1)
        problem = _sed_first_command_error(rest[0])
        if problem:
            err(problem)
            return 1
        scripts = ["-e", rest[0]]
        rest = rest[1:]
    if inplace is not None:
        if not rest:
            # main.c compiles the script before mf_fgets() refuses stdin
            if _run_gnu("sed", ["-n"] + scripts + ["/dev/null"], _sed_stderr) != 0:
                return 1
            err("sed: -I or -i may not be used with stdin")
            return 1
        if span and len(rest) > 1:
            not_implemented("sed", args)  # GNU cannot number lines across in-place files
        gnu.append(f"--in-place={inplace}" if inplace else "--in-place")
    # GNU exits 2 for an unreadable input and 4 for an I/O error; FreeBSD 1
    return _run_gnu("sed", gnu + scripts + ["--"] + rest, _sed_stderr, {2: 1, 4: 1})


# -------------------------------------------------------------------- stat

STAT_USAGE = "usage: stat [-FLnq] [-f format | -l | -r | -s | -x] [-t timefmt] [file|handle ...]"
# stat.c: DEF_FORMAT, RAW_FORMAT, LS_FORMAT, LSF_FORMAT, SHELL_FORMAT, LINUX_FORMAT
STAT_FORMATS = {
    "default": '%d %i %Sp %l %Su %Sg %r %z "%Sa" "%Sm" "%Sc" "%SB" %k %b %#Xf %N',
    "r": "%d %i %#p %l %u %g %r %z %a %m %c %B %k %b %f %N",
    "l": "%Sp %l %Su %Sg %Z %Sm %N%SY",
    "lF": "%Sp %l %Su %Sg %Z %Sm %N%T%SY",
    "s": ("st_dev=%d st_ino=%i st_mode=%#p st_nlink=%l st_uid=%u st_gid=%g st_rdev=%r st_size=%z "
          "st_atime=%a st_mtime=%m st_ctime=%c st_birthtime=%B st_blksize=%k st_blocks=%b st_flags=%f"),
    "x": ('  File: "%N"%n  Size: %-11z  FileType: %HT%n'
          "  Mode: (%OMp%03OLp/%.10Sp)         Uid: (%5u/%8Su)  Gid: (%5g/%8Sg)%n"
          "Device: %Hd,%Ld   Inode: %i    Links: %l%nAccess: %Sa%nModify: %Sm%nChange: %Sc"),
}
STAT_TIMEFMT = "%b %e %T %Y"
STAT_FIELDS = "RdiplugramcBzbkfvYTNZ"  # stat.c SHOW_* characters
STAT_SPEC = re.compile(r"%([-# +0]*)(\d+)?(?:\.(\d*))?([DOUXFS]?)([HML]?)(.)")
TYPE_NAMES = {st.S_IFIFO: "Fifo File", st.S_IFCHR: "Character Device", st.S_IFDIR: "Directory",
              st.S_IFBLK: "Block Device", st.S_IFREG: "Regular File", st.S_IFLNK: "Symbolic Link",
              st.S_IFSOCK: "Socket"}


def strmode(mode):
    """strmode(3): "-rw-r--r--" (FreeBSD's trailing space trimmed, as stat.c does)."""
    kind = {st.S_IFDIR: "d", st.S_IFCHR: "c", st.S_IFBLK: "b", st.S_IFLNK: "l", st.S_IFSOCK: "s",
            st.S_IFIFO: "p"}.get(st.S_IFMT(mode), "-")
    bits = ""
    for who, (r, w, x, special, on, off) in enumerate(
            ((st.S_IRUSR, st.S_IWUSR, st.S_IXUSR, st.S_ISUID, "s", "S"),
             (st.S_IRGRP, st.S_IWGRP, st.S_IXGRP, st.S_ISGID, "s", "S"),
             (st.S_IROTH, st.S_IWOTH, st.S_IXOTH, st.S_ISVTX, "t", "T"))):
        del who
        bits += "r" if mode & r else "-"
        bits += "w" if mode & w else "-"
        if mode & special:
            bits += on if mode & x else off
        else:
            bits += "x" if mode & x else "-"
    return kind + bits


def _c_number(value, flags, width, prec, conv):
    """printf(3) of one integer with stat.c's flags: # space + - 0, width, precision."""
    negative = value < 0 and conv == "d"
    digits = format(abs(value) if conv == "d" else value & 0xFFFFFFFFFFFFFFFF,
                    {"d": "d", "u": "d", "o": "o", "x": "x"}[conv])
    if prec is not None:
        digits = digits.zfill(prec) if prec else ("" if value == 0 else digits)
    prefix = ""
    if "#" in flags:
        if conv == "o" and not digits.startswith("0"):
            digits = "0" + digits
        elif conv == "x" and value != 0:
            prefix = "0x"
    if conv == "d":
        prefix = "-" if negative else ("+" if "+" in flags else (" " if " " in flags else ""))
    body = prefix + digits
    if width and len(body) < width:
        if "-" in flags:
            body = body.ljust(width)
        elif "0" in flags and prec is None:
            body = prefix + digits.rjust(width - len(prefix), "0")
        else:
            body = body.rjust(width)
    return body


def _c_string(text, flags, width, prec):
    if prec is not None:
        text = text[:prec]
    if width:
        text = text.ljust(width) if "-" in flags else text.rjust(width)
    return text


class StatState:
    def __init__(self, timefmt):
        self.timefmt = timefmt
        self.linkfail = False


def _stat_field(state, sr, path, spec, flags, width, prec, ofmt, hilo, what):
    """One %-conversion of stat.c's format1()."""
    bad = f"stat: {spec}: bad format"
    data, sdata, formats, default = None, None, "DOUXS", "U"
    if what in "dr":
        raw = sr.st_dev if what == "d" else sr.st_rdev
        data = os.major(raw) if hilo == "H" else os.minor(raw) if hilo == "L" else raw
        hilo = "" if hilo in "HL" else hilo
        sdata = "???"  # devname(3) has no name for the machine's device numbers
    elif what == "i":
        data, formats = sr.st_ino, "DOUX"
    elif what == "p":
        data, sdata, default = sr.st_mode, strmode(sr.st_mode), "O"
        if hilo == "H":
            data, sdata = data >> 12, sdata[1:4]
        elif hilo == "M":
            data, sdata = (data >> 9) & 0o7, sdata[4:7]
        elif hilo == "L":
            data, sdata = data & 0o777, sdata[7:10]
        hilo = ""
    elif what == "l":
        data, formats = sr.st_nlink, "DOUX"
    elif what == "u":
        data = sr.st_uid
        try:
            sdata = pwd.getpwuid(sr.st_uid).pw_name
        except KeyError:
            sdata = f"({sr.st_uid})"
    elif what == "g":
        data = sr.st_gid
        try:
            sdata = grp.getgrgid(sr.st_gid).gr_name
        except KeyError:
            sdata = f"({sr.st_gid})"
    elif what in "amcB":
        # %B: Linux gives no birth time through stat(2); the change time stands in
        ns = {"a": sr.st_atime_ns, "m": sr.st_mtime_ns, "c": sr.st_ctime_ns, "B": sr.st_ctime_ns}[what]
        data, formats, default = ns // 10**9, "DOUXFS", "D"
        sdata = time.strftime(state.timefmt, time.localtime(data))
        if ofmt == "F":
            frac = ns % 10**9
            p = 9 if prec is None else prec
            if p == 0:
                return _c_number(data, flags, width, None, "d")
            digits = f"{frac:09d}"[:min(p, 9)] + "0" * max(0, p - 9)
            head = _c_number(data, flags, max(0, (width or 0) - p - 1) or None, None, "d")
            return f"{head}.{digits}"
    elif what == "z":
        data, formats = sr.st_size, "DOUX"
    elif what == "b":
        data, formats = sr.st_blocks, "DOUX"
    elif what == "k":
        data, formats = sr.st_blksize, "DOUX"
    elif what == "f":
        data, sdata = 0, "-"  # file flags (chflags): none on the stand-in
    elif what == "v":
        data, formats = 0, "DOUX"
    elif what == "R":
        formats, default = "S", "S"
        real = os.path.realpath(path) if path else "(stdin)"
        sdata = (" -> " + real) if ofmt == "S" and path else real
    elif what == "Y":
        formats, default = "S", "S"
        if st.S_ISLNK(sr.st_mode):
            target = os.readlink(path)
            sdata = (" -> " + target) if ofmt == "S" else target
        else:
            state.linkfail = True
            sdata = ""
    elif what == "T":
        formats, default = "S", "S"
        fmt = st.S_IFMT(sr.st_mode)
        if hilo == "H":
            sdata = TYPE_NAMES.get(fmt, "???")
        else:
            sdata = {st.S_IFIFO: "|", st.S_IFDIR: "/", st.S_IFLNK: "@", st.S_IFSOCK: "="}.get(fmt, "")
            if fmt == st.S_IFREG and sr.st_mode & 0o111:
                sdata = "*"
        hilo = ""
    elif what == "N":
        formats, default, sdata = "S", "S", path or "(stdin)"
    elif what == "Z":
        if st.S_ISCHR(sr.st_mode) or st.S_ISBLK(sr.st_mode):
            major = _stat_field(state, sr, path, spec, flags, width, prec, ofmt, "H", "r")
            minor = _stat_field(state, sr, path, spec, flags, width, prec, ofmt, "L", "r")
            return f"{major},{minor}"
        return _stat_field(state, sr, path, spec, flags, width, prec, ofmt, hilo, "z")
    else:
        err(bad)
        raise Exit(1)
    ofmt = ofmt or default
    if hilo or ofmt not in formats:
        err(bad)
        raise Exit(1)
    if ofmt == "S":
        if sdata is None:
            err(bad)
            raise Exit(1)
        return _c_string(sdata, flags, width, prec)
    return _c_number(data, flags, width, prec, {"D": "d", "O": "o", "U": "u", "X": "x"}[ofmt])


def _stat_output(state, sr, path, fmt, number, nonl):
    pieces, pos = [], 0
    while pos < len(fmt):
        c = fmt[pos]
        if c != "%":
            pieces.append(c)
            pos += 1
            continue
        nxt = fmt[pos + 1:pos + 2]
        simple = {"n": "\n", "t": "\t", "%": "%", "@": str(number)}
        if nxt in simple:
            pieces.append(simple[nxt])
            pos += 2
            continue
        m = STAT_SPEC.match(fmt, pos)
        if not m or m.group(6) not in STAT_FIELDS:
            chunk = fmt[pos:(m.end() if m else pos + 2)]
            err(f"stat: {chunk}: bad format")
            raise Exit(1)
        flags, width, prec, ofmt, hilo, what = m.groups()
        pieces.append(_stat_field(state, sr, path, m.group(0), flags, int(width) if width else None,
                                  int(prec or 0) if prec is not None else None, ofmt, hilo, what))
        pos = m.end()
    text = "".join(pieces)
    if not text.endswith("\n") and not nonl:
        text += "\n"
    sys.stdout.write(text)


def stat_main(args):
    try:
        opts, files = bsd_getopt("stat", args, "f:FHlLnqrst:x")
    except Usage:
        usage(STAT_USAGE, 1)
    fmtchar, statfmt, timefmt, follow, nonl, quiet, lsf = None, None, None, False, False, False, False
    for o, v in opts:
        if o == "F":
            lsf = True
        elif o == "H":
            not_implemented("stat", args)  # file handles (fhstat): no NFS handles here
        elif o == "L":
            follow = True
        elif o == "n":
            nonl = True
        elif o == "q":
            quiet = True
        elif o == "t":
            timefmt = v
        else:  # f l r s x: one output format only
            if fmtchar is not None:
                err(f"stat: can't use format '{fmtchar}' with '{o}'")
                return 1
            fmtchar = o
            if o == "f":
                statfmt = v
    if fmtchar is None:
        fmtchar = "l" if lsf else "f"
        statfmt = statfmt or (None if lsf else STAT_FORMATS["default"])
    if lsf and fmtchar != "l":
        err(f"stat: can't use format '{fmtchar}' with -F")
        return 1
    if fmtchar != "f":
        statfmt = STAT_FORMATS["lF" if lsf else fmtchar]
    if fmtchar == "x" and timefmt is None:
        timefmt = "%c"
    state = StatState(timefmt or STAT_TIMEFMT)
    errors = 0
    for number, path in enumerate(files or [None], start=1):
        try:
            if path is None:
                sr = os.fstat(0)
            elif follow:
                try:
                    sr = os.stat(path)
                except FileNotFoundError:
                    sr = os.lstat(path)  # a dangling symlink: stat.c falls back to lstat
            else:
                sr = os.lstat(path)
        except OSError as exc:
            errors = 1
            if not quiet:
                err(f"stat: {path or '(stdin)'}: stat: {exc.strerror}")
            continue
        _stat_output(state, sr, path, statfmt, number, nonl)
    return errors


# -------------------------------------------------------------------- date

DATE_USAGE = ("usage: date [-jnRu] [-I[date|hours|minutes|seconds|ns]] [-f input_fmt]\n"
              "            [ -z output_zone ] [-r filename|seconds] [-v[+|-]val[y|m|w|d|H|M|S]]\n"
              "            [[[[[[cc]yy]mm]dd]HH]MM[.SS] | new_date] [+output_fmt]")
ISO_PARTS = (("date", "%Y-%m-%d"), ("hours", "T%H"), ("minutes", ":%M"), ("seconds", ":%S"), ("ns", ",%N"))
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def _strftime(fmt, tm, nsec):
    """strftime(3) of FreeBSD's libc on the machine's: %+ and %v are FreeBSD's,
    %N is date.c's strftime_ns() (nanoseconds)."""
    out_fmt, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            c = fmt[i + 1]
            if c == "+":
                out_fmt.append("%a %b %e %H:%M:%S %Z %Y")
            elif c == "v":
                out_fmt.append("%e-%b-%Y")
            elif c == "N":
                out_fmt.append(f"{nsec:09d}")
            else:
                out_fmt.append(fmt[i:i + 2])
            i += 2
        else:
            out_fmt.append(fmt[i])
            i += 1
    return time.strftime("".join(out_fmt), tm)


class Tm:
    """struct tm fields vary.c adjusts (wall clock, normalised by mktime)."""

    def __init__(self, t):
        self.year, self.mon, self.mday = t.tm_year, t.tm_mon - 1, t.tm_mday
        self.hour, self.min, self.sec = t.tm_hour, t.tm_min, t.tm_sec

    def days_in_month(self):
        return calendar.monthrange(self.year, self.mon + 1)[1]

    def wday(self):
        return (calendar.weekday(self.year, self.mon + 1, self.mday) + 1) % 7

    def mktime(self):
        return int(time.mktime((self.year, self.mon + 1, self.mday, self.hour, self.min, self.sec, 0, 0, -1)))


def _vary_add_days(t, n):
    ordinal = calendar.datetime.date(t.year, t.mon + 1, t.mday).toordinal() + n
    d = calendar.datetime.date.fromordinal(ordinal)
    t.year, t.mon, t.mday = d.year, d.month - 1, d.day


def _vary_months(t, sign, n):
    total = t.year * 12 + t.mon + (n if sign == "+" else -n)
    t.year, t.mon = divmod(total, 12)
    # vary.c adjmon(): "-v-1m on March, 31 is the last day of February"
    t.mday = min(t.mday, t.days_in_month())


def _vary_one(t, arg):
    """One -v adjustment after bin/date/vary.c vary_apply(); False if it cannot apply."""
    sign = arg[0] if arg[:1] in ("+", "-") else ""
    body = arg[1:] if sign else arg
    if len(body) < 2:
        return False
    if not (body[:-1].isdigit() and body[-1] in "SMHdwmy"):
        word = body.lower()
        for names, kind in ((WEEKDAYS, "w"), (MONTHS, "m")):
            for value, name in enumerate(names):
                if word[:3] == name[:3] and (len(word) == 3 or name.startswith(word)):
                    return _vary_text(t, sign, value, kind)
        return False
    val, unit = int(body[:-1]), body[-1]
    if unit in "SMH":
        seconds = val * {"S": 1, "M": 60, "H": 3600}[unit]
        if sign:
            stamp = calendar.timegm((t.year, t.mon + 1, t.mday, t.hour, t.min, t.sec))
            stamp += seconds if sign == "+" else -seconds
            g = time.gmtime(stamp)
            t.year, t.mon, t.mday, t.hour, t.min, t.sec = g.tm_year, g.tm_mon - 1, g.tm_mday, g.tm_hour, \
                g.tm_min, g.tm_sec
        else:
            limit = 23 if unit == "H" else 59
            if val > limit:
                return False
            setattr(t, {"S": "sec", "M": "min", "H": "hour"}[unit], val)
    elif unit in "dw":
        if sign:
            _vary_add_days(t, (val * (7 if unit == "w" else 1)) * (1 if sign == "+" else -1))
        elif unit == "d":
            if not 0 < val <= t.days_in_month():
                return False
            t.mday = val
        else:
            if val > 6:
                return False
            _vary_add_days(t, val - t.wday())
    elif unit == "m":
        if sign:
            _vary_months(t, sign, val)
        else:
            if not 1 <= val <= 12:
                return False
            t.mon = val - 1
            t.mday = min(t.mday, t.days_in_month())
    else:  # y
        if sign:
            t.year += val if sign == "+" else -val
        else:
            t.year = val + (2000 if val < 69 else 1900) if val < 1900 else val
    return True


def _vary_text(t, sign, value, kind):
    if kind == "w":  # adjwday() with a day name
        now = t.wday()
        if sign == "+":
            _vary_add_days(t, (7 - now + value) if value < now else value - now)
        elif sign == "-":
            _vary_add_days(t, -((7 - value + now) if value > now else now - value))
        else:
            _vary_add_days(t, value - now)
        return True
    month = value + 1  # adjmon() with a month name: the next/previous such month
    if sign == "+":
        steps = (month + 11 - t.mon) if month <= t.mon else month - (t.mon + 1)
        _vary_months(t, "+", steps)
    elif sign == "-":
        steps = (13 - month + t.mon) if month - 1 > t.mon else t.mon - month + 1
        _vary_months(t, "-", steps)
    else:
        t.mon = value
        t.mday = min(t.mday, t.days_in_month())
    return True


# strptime(3) conversions and the struct tm fields they set (the others keep
# the current time's values, as date.c's setthetime() starts from localtime())
STRPTIME_FIELDS = {
    "Y": "year", "y": "year", "C": "year", "G": "year", "m": "mon", "b": "mon", "B": "mon", "h": "mon",
    "d": "mday", "e": "mday", "j": "mon mday", "H": "hour", "k": "hour", "I": "hour", "l": "hour",
    "M": "min", "S": "sec", "T": "hour min sec", "R": "hour min", "r": "hour min sec",
    "D": "year mon mday", "F": "year mon mday", "s": "year mon mday hour min sec", "c": "year mon mday hour min sec",
}


def _date_parse(fmt, text, now):
    """date -f: strptime() over the current local time (fields not in ``fmt`` stay)."""
    py_fmt = fmt.replace("%e", "%d").replace("%k", "%H").replace("%l", "%I").replace("%T", "%H:%M:%S") \
        .replace("%R", "%H:%M").replace("%D", "%m/%d/%y").replace("%F", "%Y-%m-%d")
    rest = ""
    try:
        parsed = time.strptime(text, py_fmt)
    except ValueError as exc:
        m = re.match(r"unconverted data remains: (.*)$", str(exc), re.S)
        if not m:
            err(f"Failed conversion of ``{text}'' using format ``{fmt}''")
            return None
        rest = m.group(1)
        parsed = time.strptime(text[:len(text) - len(rest)], py_fmt)
        err(f"Warning: Ignoring {len(rest)} extraneous characters in date string ({rest})")
    if "%s" in fmt:
        return time.localtime(calendar.timegm(parsed))
    fields = set()
    for conv in re.findall(r"%([A-Za-z])", fmt):
        fields.update(STRPTIME_FIELDS.get(conv, "").split())
    t = Tm(now)
    for name, value in (("year", parsed.tm_year), ("mon", parsed.tm_mon - 1), ("mday", parsed.tm_mday),
                        ("hour", parsed.tm_hour), ("min", parsed.tm_min), ("sec", parsed.tm_sec)):
        if name in fields:
            setattr(t, name, value)
    return time.localtime(t.mktime())


def _date_spec(text, now):
    """[[[[[cc]yy]mm]dd]HH]MM[.SS] after date.c setthetime(); None = bad format."""
    m = re.fullmatch(r"(\d+)(?:\.(\d\d))?", text)
    if not m or len(m.group(1)) not in (2, 4, 6, 8, 10, 12):
        return None
    digits = m.group(1)
    t = Tm(now)
    t.sec = int(m.group(2)) if m.group(2) else 0
    pairs = [int(digits[i:i + 2]) for i in range(0, len(digits), 2)]
    if len(pairs) == 6:
        t.year = pairs[0] * 100 + pairs[1]
        pairs = pairs[2:]
    elif len(pairs) == 5:
        t.year = pairs[0] + (2000 if pairs[0] < 69 else 1900)  # "hack for 2000 ;-}"
        pairs = pairs[1:]
    names = ["mon", "mday", "hour", "min"][-len(pairs):]
    limits = {"mon": 12, "mday": 31, "hour": 23, "min": 59}
    for name, value in zip(names, pairs, strict=True):
        if value > limits[name] or t.sec > 61:
            return None
        setattr(t, name, value - 1 if name == "mon" else value)
    return time.localtime(t.mktime())


def _strtoq(text):
    """strtoq(3) with base 0, the whole string: 0x.. hex, 0.. octal, else decimal."""
    m = re.fullmatch(r"([-+]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        raise ValueError(text)
    digits = m.group(2)
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8) if digits.startswith("0") \
        else int(digits)
    return -value if m.group(1) == "-" else value


def date_main(args):
    try:
        opts, rest = bsd_getopt("date", args, "f:I::jnRr:uv:z:")
    except Usage:
        usage(DATE_USAGE, 1)
    in_fmt, iso, jflag, rfc, stamp, zone, varies = None, None, False, False, None, None, []
    for o, v in opts:
        if o == "f":
            in_fmt = v
        elif o == "I":
            if rfc:
                err("date: multiple output formats specified")
                return 1
            names = [n for n, _f in ISO_PARTS]
            if v is not None and v not in names:
                err(f"date: invalid argument '{v}' for -I")
                return 1
            iso = names.index(v) if v else 0
        elif o == "j":
            jflag = True
        elif o == "n":
            pass  # timed(8) no longer exists: -n does nothing
        elif o == "R":
            if iso is not None:
                err("date: multiple output formats specified")
                return 1
            rfc = True
        elif o == "r":  # seconds (strtoq base 0) or a file's mtime
            try:
                stamp = (_strtoq(v), 0)
            except ValueError:
                try:
                    sr = os.stat(v)
                    stamp = (int(sr.st_mtime), sr.st_mtime_ns % 10**9)
                except OSError:
                    usage(DATE_USAGE, 1)
        elif o == "u":
            os.environ["TZ"] = "UTC0"
            time.tzset()
        elif o == "z":
            zone = v
        elif o == "v":
            varies.append(v)
    if stamp is None:
        ns = time.time_ns()
        stamp = (ns // 10**9, ns % 10**9)
    fmt = "%+"
    if rfc:
        fmt = "%a, %d %b %Y %T %z"
    if rest and rest[0].startswith("+"):
        if iso is not None:
            err("date: multiple output formats specified")
            return 1
        fmt, rest = rest[0][1:], rest[1:]
    seconds, nsec = stamp
    if rest:
        if not jflag:
            not_implemented("date", args)  # setting the clock: the stand-in never sets the machine's
        now = time.localtime(seconds)
        lt = _date_parse(in_fmt, rest[0], now) if in_fmt is not None else _date_spec(rest[0], now)
        if lt is None:
            err("date: illegal time format")
            usage(DATE_USAGE, 1)
        seconds, nsec, rest = int(time.mktime(lt)), 0, rest[1:]
    elif in_fmt is not None:
        usage(DATE_USAGE, 1)
    if rest and rest[0].startswith("+"):
        if iso is not None:
            err("date: multiple output formats specified")
            return 1
        fmt, rest = rest[0][1:], rest[1:]
    if rest:
        usage(DATE_USAGE, 1)
    if zone is not None:
        os.environ["TZ"] = zone
        time.tzset()
    lt = time.localtime(seconds)
    if varies:
        t = Tm(lt)
        for v in varies:
            if not _vary_one(t, v):
                err(f"{v}: Cannot apply date adjustment")
                usage(DATE_USAGE, 1)
        lt = time.localtime(t.mktime())
    if iso is not None:
        text = _strftime("".join(f for _n, f in ISO_PARTS[:iso + 1]), lt, nsec)
        if iso > 0:
            z = time.strftime("%z", lt)
            text += z[:3] + ":" + z[3:]
        out(text)
        return 0
    if rfc:
        os.environ["LC_TIME"] = "C"  # date.c: RFC 2822 ignores the locale
    out(_strftime(fmt, lt, nsec))
    return 0


# ----------------------------------------------------------------- install

INSTALL_USAGE = (
    "usage: install [-bCcpSsUv] [-f flags] [-g group] [-m mode] [-o owner]\n"
    "               [-M log] [-D dest] [-h hash] [-T tags]\n"
    "               [-B suffix] [-l linkflags] [-N dbdir]\n"
    "               file1 file2\n"
    "       install [-bCcpSsUv] [-f flags] [-g group] [-m mode] [-o owner]\n"
    "               [-M log] [-D dest] [-h hash] [-T tags]\n"
    "               [-B suffix] [-l linkflags] [-N dbdir]\n"
    "               file1 ... fileN directory\n"
    "       install -dU [-vU] [-g group] [-m mode] [-N dbdir] [-o owner]\n"
    "               [-M log] [-D dest] [-h hash] [-T tags]\n"
    "               directory ...")
EX_USAGE, EX_OSERR, EX_CANTCREAT = 64, 71, 73


def parse_mode(text, base, is_dir=False):
    """setmode(3)/getmode(3): octal, or symbolic [ugoa]*[+-=][rwxXst]* clauses."""
    if re.fullmatch(r"[0-7]+", text):
        return int(text, 8) & 0o7777
    mode = base
    for clause in text.split(","):
        m = re.fullmatch(r"([ugoa]*)((?:[-+=][rwxXstugo]*)+)", clause)
        if not m:
            return None
        who = m.group(1) or "a"
        mask = 0
        for w in who:
            mask |= {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}[w]
        if not m.group(1):
            mask &= ~os.umask(os.umask(0))
        for op, perms in re.findall(r"([-+=])([rwxXstugo]*)", m.group(2)):
            bits = 0
            for p in perms:
                bits |= {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000,
                         "X": 0o111 if is_dir or mode & 0o111 else 0,
                         "u": ((mode >> 6) & 7) * 0o111, "g": ((mode >> 3) & 7) * 0o111,
                         "o": (mode & 7) * 0o111}[p]
            bits &= mask
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~mask) | bits
    return mode


def _owner_ids(owner, group):
    uid = gid = -1
    if owner is not None:
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            if not owner.isdigit():
                err(f"install: unknown user {owner}")
                raise Exit(1) from None
            uid = int(owner)
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            if not group.isdigit():
                err(f"install: unknown group {group}")
                raise Exit(1) from None
            gid = int(group)
    return uid, gid


def _same_content(a, b):
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ca, cb = fa.read(1 << 16), fb.read(1 << 16)
                if ca != cb:
                    return False
                if not ca:
                    return True
    except OSError:
        return False


def _install_file(src, dst, mode, uid, gid, o):
    """xinstall.c install(): copy to a temporary file beside the target, set
    owner, group and mode, rename over the target (-b keeps the old one)."""
    try:
        src_sr = os.stat(src)
    except OSError as exc:
        err(f"install: {src}: {exc.strerror}")
        raise Exit(EX_OSERR) from None
    if not st.S_ISREG(src_sr.st_mode) and src != "/dev/null":
        err(f"install: {src}: Inappropriate file type or format")
        raise Exit(EX_OSERR)
    exists = os.path.exists(dst)
    if exists and o.get("C") and _same_content(src, dst):
        # -C: an unchanged target keeps its contents and mtime; only its
        # owner, group and mode are set (nothing printed with -v)
        os.chmod(dst, mode)
        if uid != -1 or gid != -1:
            os.chown(dst, uid, gid)
        return
    directory = os.path.dirname(dst) or "."
    fd, tmp = tempfile.mkstemp(prefix="INS@", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh, open(src, "rb") as fs:
            shutil.copyfileobj(fs, fh)
            if o.get("S"):
                fh.flush()
                os.fsync(fh.fileno())
        if uid != -1 or gid != -1:
            os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        if o.get("p"):
            os.utime(tmp, ns=(src_sr.st_atime_ns, src_sr.st_mtime_ns))
        if exists and o.get("b"):
            os.rename(dst, dst + o.get("B", ".old"))
        os.rename(tmp, dst)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        err(f"install: {dst}: {exc.strerror}")
        raise Exit(EX_OSERR) from None
    if o.get("v"):
        out(f"install: {src} -> {dst}")


def _install_dir(path, mode, uid, gid, verbose):
    """xinstall.c install_dir(): mkdir -p, then owner/group and mode on the last one."""
    parts, current = path.split("/"), ""
    for i, part in enumerate(parts):
        current = part if i == 0 else f"{current}/{part}"
        if not current or os.path.isdir(current):
            continue
        try:
            os.mkdir(current, 0o777)
        except FileExistsError:
            if not os.path.isdir(current):
                err(f"install: {current}: Not a directory")
                raise Exit(EX_OSERR) from None
            continue
        except OSError as exc:
            err(f"install: mkdir {current}: {exc.strerror}")
            raise Exit(EX_OSERR) from None
        if verbose:
            out(f"install: mkdir {current}")
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    os.chmod(path, mode)


def install_main(args):
    try:
        opts, rest = bsd_getopt("install", args, "B:bCcD:df:g:h:l:M:m:N:o:pSsT:Uv")
    except Usage:
        usage(INSTALL_USAGE, EX_USAGE)
    o = {}
    for k, v in opts:
        o[k] = v if v is not None else True
    dodir = bool(o.get("d"))
    if o.get("s") and dodir:
        err("install: -d and -s may not be specified together")
        usage(INSTALL_USAGE, EX_USAGE)
    # at least two operands, or one with -d (xinstall.c main)
    if not rest or (len(rest) == 1 and not dodir):
        usage(INSTALL_USAGE, EX_USAGE)
    # metalog (-D -M -T -h), file flags (-f), links (-l), other user dbs (-N),
    # unprivileged (-U) and strip (-s) are not modelled
    if any(k in o for k in "DMThflNUs"):
        not_implemented("install", args)
    if "B" in o:
        o["b"] = True
    if "p" in o:
        o["C"] = True
    mode = 0o755
    if "m" in o:
        parsed = parse_mode(o["m"], 0o755 if not dodir else 0o755, dodir)
        if parsed is None:
            err(f"install: invalid file mode: {o['m']}")
            return EX_USAGE
        mode = parsed
    uid, gid = _owner_ids(o.get("o"), o.get("g"))
    if dodir:
        for path in rest:
            _install_dir(path, mode, uid, gid, bool(o.get("v")))
        return 0
    target = rest[-1]
    if os.path.isdir(target):
        for src in rest[:-1]:
            _install_file(src, os.path.join(target, os.path.basename(src)), mode, uid, gid, o)
        return 0
    if len(rest) != 2:
        if os.path.exists(target):
            err(f"install: target `{target}' is not a directory")
        else:
            err(f"install: target directory `{target}' does not exist")
        usage(INSTALL_USAGE, EX_USAGE)
    if os.path.exists(target):
        if not os.path.isfile(target):
            err(f"install: {target}: Inappropriate file type or format")
            return EX_CANTCREAT
        if os.path.samefile(rest[0], target):
            err(f"install: {rest[0]} and {target} are the same file")
            return EX_USAGE
    _install_file(rest[0], target, mode, uid, gid, o)
    return 0


# -------------------------------------------------------------------- find

FIND_USAGE = ("usage: find [-H | -L | -P] [-EXdsx] [-f path] path ... [expression]\n"
              "       find [-H | -L | -P] [-EXdsx] -f path [path ...] [expression]")
# usr.bin/find/option.c: FreeBSD's primaries and how many arguments each takes
# (-1: up to ";" or "+"), for those the machine's GNU find also has.
FIND_PRIMARIES = {
    "!": 0, "(": 0, ")": 0, "-a": 0, "-and": 0, "-o": 0, "-or": 0, "-not": 0,
    "-amin": 1, "-anewer": 1, "-atime": 1, "-cmin": 1, "-cnewer": 1, "-ctime": 1, "-d": 0,
    "-delete": 0, "-depth": 0, "-empty": 0, "-exec": -1, "-execdir": -1, "-false": 0,
    "-follow": 0, "-fstype": 1, "-gid": 1, "-group": 1, "-ignore_readdir_race": 0, "-ilname": 1,
    "-iname": 1, "-inum": 1, "-ipath": 1, "-iregex": 1, "-iwholename": 1, "-links": 1,
    "-lname": 1, "-ls": 0, "-maxdepth": 1, "-mindepth": 1, "-mmin": 1, "-mnewer": 1, "-mount": 0,
    "-mtime": 1, "-name": 1, "-newer": 1, "-nogroup": 0, "-noignore_readdir_race": 0,
    "-noleaf": 0, "-nouser": 0, "-ok": -1, "-okdir": -1, "-path": 1, "-perm": 1, "-print": 0,
    "-print0": 0, "-prune": 0, "-quit": 0, "-regex": 1, "-samefile": 1, "-size": 1, "-true": 0,
    "-type": 1, "-uid": 1, "-user": 1, "-wholename": 1, "-xdev": 0,
}
# FreeBSD primaries GNU find cannot evaluate: the stand-in refuses them
FIND_UNMODELLED = {"-Bmin", "-Bnewer", "-Btime", "-acl", "-flags", "-sparse", "-xattr", "-xattrname"}
FIND_ACTIONS = {"-delete", "-exec", "-execdir", "-ok", "-okdir", "-ls", "-print", "-print0", "-prune", "-quit"}


def _find_expression(args, tokens):
    """Check the expression as find(1) parses it; return GNU find's tokens."""
    gnu, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        newer = re.fullmatch(r"-newer([aBcmt])([aBcmt])", tok)
        if tok in FIND_UNMODELLED or (newer and "B" in newer.groups()):
            not_implemented("find", args)
        if newer:
            nargs = 1
        elif tok in FIND_PRIMARIES:
            nargs = FIND_PRIMARIES[tok]
        else:
            err(f"find: {tok}: unknown primary or operator")  # option.c lookup_option()
            raise Exit(1)
        if nargs == -1:
            end = i + 1
            while end < len(tokens) and tokens[end] not in (";", "+"):
                end += 1
            if end >= len(tokens) or end == i + 1:
                err(f"find: {tok}: no terminating \";\" or \"+\"")
                raise Exit(1)
            gnu += tokens[i:end + 1]
            i = end + 1
            continue
        if nargs and i + nargs >= len(tokens):
            err(f"find: {tok}: requires additional arguments")
            raise Exit(1)
        arg = tokens[i + 1] if nargs else None
        if tok == "-d":
            gnu.append("-depth")
        elif tok == "-depth" and i + 1 < len(tokens) and re.fullmatch(r"[-+]?\d+", tokens[i + 1]):
            not_implemented("find", args)  # -depth n (a test on the depth): GNU has no such test
        elif tok == "-mnewer":
            gnu += ["-newer", arg]
        elif tok in ("-atime", "-ctime", "-mtime") and not re.fullmatch(r"[-+]?\d+", arg):
            not_implemented("find", args)  # time units (n[smhdw]) not translated
        elif tok == "-size":
            if not re.fullmatch(r"[-+]?\d+[ckMG]?", arg):
                if re.fullmatch(r"[-+]?\d+[TP]", arg):
                    not_implemented("find", args)
                err(f"find: -size: {arg}: illegal trailing character")
                raise Exit(1)
            gnu += [tok, arg]
        elif tok == "-type":
            if arg not in tuple("bcdflps"):
                if arg == "w":
                    not_implemented("find", args)  # whiteouts
                err(f"find: -type: {arg}: unknown type")
                raise Exit(1)
            gnu += [tok, arg]
        elif tok == "-perm":
            # FreeBSD "+mode" (any of the bits) is GNU's "/mode"
            gnu += [tok, "/" + arg[1:] if arg.startswith("+") else arg]
        else:
            gnu += tokens[i:i + 1 + nargs]
        i += 1 + nargs
    return gnu


def find_main(args):
    try:
        opts, rest = bsd_getopt("find", args, "EHLPXdf:sx")
    except Usage:
        usage(FIND_USAGE, 1)
    options, paths, extended, depth_first, sort = [], [], False, False, False
    for o, v in opts:
        if o == "E":
            extended = True
        elif o in "HLP":
            options.append("-" + o)
        elif o == "X":
            not_implemented("find", args)  # xargs-safety warnings
        elif o == "d":
            depth_first = True
        elif o == "f":
            paths.append(v)
        elif o == "s":
            sort = True
        elif o == "x":
            options.append("-x")
    i = 0
    while i < len(rest) and not (rest[i].startswith("-") or rest[i] in ("!", "(")):
        paths.append(rest[i])
        i += 1
    if not paths:
        usage(FIND_USAGE, 1)
    expression = _find_expression(args, rest[i:])
    globals_ = ["-nowarn", "-regextype", "posix-extended" if extended else "posix-basic"]
    if "-x" in options:
        options.remove("-x")
        globals_.append("-xdev")
    if depth_first:
        globals_.append("-depth")
    gnu = options + ["--"] + paths + globals_
    if not sort:
        return _run_gnu("find", gnu + expression)
    # -s: lexicographic traversal, which GNU find has not: collect and sort
    # the names, possible only when find just prints them
    actions = [t for t in expression if t in FIND_ACTIONS]
    if depth_first or any(a not in ("-print", "-print0") for a in actions) or len(set(actions)) > 1:
        not_implemented("find", args)
    separator = "\0" if actions == ["-print0"] else "\n"
    body = [t for t in expression if t not in ("-print", "-print0")]
    query = gnu + (["("] + body + [")"] if body else []) + ["-print0"]
    sys.stdout.flush()
    proc = subprocess.run(["find"] + query, executable=host_tool("find"), stdout=subprocess.PIPE, check=False)
    names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    roots = sorted(paths)
    ordered = []
    for root in roots:
        mine = [n for n in names if n == root or n.startswith(root.rstrip("/") + "/")]
        ordered += sorted(mine, key=lambda n: n.split("/"))
    sys.stdout.write("".join(n + separator for n in ordered))
    return proc.returncode


# ------------------------------------------------------------------- xargs

XARGS_USAGE = ("usage: xargs [-0opt] [-E eofstr] [-I replstr [-R replacements] [-S replsize]]\n"
               "             [-J replstr] [-L number] [-n number [-x]] [-P maxprocs]\n"
               "             [-s size] [utility [argument ...]]")


def xargs_main(args):
    try:
        opts, utility = bsd_getopt("xargs", args, "0E:I:J:L:n:oP:pR:rS:s:tx")
    except Usage:
        usage(XARGS_USAGE, 1)
    # FreeBSD never runs the utility on empty input; GNU does unless -r
    gnu, repl, per, replacements = ["-r"], None, None, None
    for o, v in opts:
        if o == "0":
            gnu.append("-0")
        elif o == "E":
            gnu += ["-E", v]
        elif o in ("I", "J"):  # xargs.c: the last of -I/-J wins
            repl = (o, v)
            if o == "I":
                per = None  # -I implies -L 1
        elif o in ("L", "n"):  # the last of -L/-n wins (xargs(1))
            if not v.isdigit() or int(v) <= 0:
                err("xargs: illegal argument count" if o == "n" else f"xargs: value {v} for -L option should be >= 1")
                return 1
            per = (o, v)
        elif o == "o":
            gnu.append("--open-tty")
        elif o == "P":
            gnu += ["-P", v]
        elif o == "p":
            gnu.append("-p")
        elif o == "R":
            replacements = v
        elif o == "r":
            pass  # xargs(1): "-r Compatibility with GNU xargs": FreeBSD already skips empty input
        elif o == "S":
            not_implemented("xargs", args)  # replsize: GNU has no limit to set
        elif o == "s":
            gnu += ["-s", v]
        elif o == "t":
            gnu.append("-t")
        elif o == "x":
            gnu.append("-x")
    if replacements is not None and (repl is None or repl[0] != "I"):
        usage(XARGS_USAGE, 1)
    if replacements not in (None, "-1"):
        not_implemented("xargs", args)  # GNU replaces every occurrence, as -R -1
    utility = utility or ["/bin/echo"]
    if per and not (repl and repl[0] == "I"):
        gnu += ["-" + per[0], per[1]]
    if repl and repl[0] == "I":
        gnu += ["-I", repl[1]]
    elif repl:
        # -J: the input words replace the single argument equal to replstr
        try:
            where = utility.index(repl[1])
        except ValueError:
            where = None
        if where is not None and where > 0:
            before = " ".join(shlex.quote(a) for a in utility[:where])
            after = " ".join(shlex.quote(a) for a in utility[where + 1:])
            utility = ["/bin/sh", "-c", f'exec {before} "$@" {after}', "sh"]
    # GNU: 123 (an invocation failed), 124 (exited 255), 125 (killed); FreeBSD 1
    return _run_gnu("xargs", gnu + ["--"] + utility, rc_map={123: 1, 124: 1, 125: 1})


# ------------------------------------------------------- uname and hostname

UNAME_USAGE = "usage: uname [-abiKmnoprsUv]"
# FreeBSD 14.3-RELEASE amd64 GENERIC: kern.version, kern.osreldate, kern.ident
OSRELDATE = {"13.5-RELEASE": 1305000, "14.1-RELEASE": 1401000, "14.2-RELEASE": 1402000,
             "14.3-RELEASE": 1403000, "15.0-RELEASE": 1500068}
BUILD = {"14.3-RELEASE": "releng/14.3-n271432-8c9ce319fef7"}


def _identity():
    """(hostname, release) of the kernel this process sees.

    The single place where a jail's own view enters: inside a jail
    (jails.current_jail()) the kernel state the doubles read is the jail's.
    """
    with kernel() as k:
        hostname, release = k.get("hostname") or "", k.get("release") or "14.3-RELEASE"
    return hostname, release


def _in_jail():
    try:
        from .jails import current_jail
    except ImportError:
        return None
    return current_jail()


def uname_main(args):
    try:
        opts, rest = bsd_getopt("uname", args, "abiKmnoprsUv")
    except Usage:
        usage(UNAME_USAGE, 1)
    if rest:
        usage(UNAME_USAGE, 1)
    flags = set()
    for o, _v in opts:
        if o == "a":
            flags |= set("mnrsv")
        elif o == "o":
            flags.add("s")
        elif o == "b":
            not_implemented("uname", args)  # kern.build_id of a real kernel image
        else:
            flags.add(o)
    flags = flags or {"s"}
    hostname, release = _identity()
    build = BUILD.get(release, f"releng/{release.split('-')[0]}")

    def value(letter, native):
        # uname.c setup_get(): UNAME_s, UNAME_n, ... override each field
        return os.environ.get("UNAME_" + letter, native)

    values = {
        "s": value("s", "FreeBSD"), "n": value("n", hostname), "r": value("r", release),
        "v": value("v", f"FreeBSD {release} {build} GENERIC"), "m": value("m", "amd64"),
        "p": value("p", "amd64"), "i": value("i", "GENERIC"),
        "K": str(OSRELDATE.get(release, 1403000)), "U": str(OSRELDATE.get(release, 1403000)),
    }
    # uname.c print_uname(): this order whatever the order of the flags
    out(" ".join(values[f] for f in "snrvmpiKU" if f in flags))
    return 0


HOSTNAME_USAGE = "usage: hostname [-f] [-s | -d] [name-of-host]"


def hostname_main(args):
    try:
        opts, rest = bsd_getopt("hostname", args, "fsd")
    except Usage:
        usage(HOSTNAME_USAGE, 1)
    flags = {o for o, _v in opts}
    if ("s" in flags and "d" in flags) or len(rest) > 1:
        usage(HOSTNAME_USAGE, 1)
    if rest:
        # sethostname(3): root only; a jail without allow.set_hostname gets EPERM
        if os.geteuid() != 0 or _in_jail():
            err("hostname: sethostname: Operation not permitted")
            return 1
        with kernel(write=True) as k:
            k["hostname"] = rest[0]
        return 0
    name, _release = _identity()
    if "s" in flags:
        name = name.split(".", 1)[0]
    elif "d" in flags:
        name = name.split(".", 1)[1] if "." in name else ""
    out(name)
    return 0


# ------------------------------------------------------ md5, sha256, ...

# sbin/md5/md5.c in BSD mode (the program's name picks the algorithm; the
# *sum names, GNU's format, are the machine's coreutils on the stand-in)
DIGESTS = {"md5": "MD5", "sha1": "SHA1", "sha224": "SHA224", "sha256": "SHA256", "sha384": "SHA384",
           "sha512": "SHA512"}
DIGEST_LONG = {"check": True, "passthrough": False, "quiet": False, "reverse": False, "string": True,
               "time-trial": False, "self-test": False}
DIGEST_SHORT = {"b": "b", "c": "check", "p": "passthrough", "q": "quiet", "r": "reverse", "s": "string",
                "t": "time-trial", "x": "self-test"}


def _digest_options(cmd, args):
    """getopt_long(3) over "bc:pqrs:tx" and md5.c's bsd_longopts: options may
    follow operands (argument permutation), long names may be abbreviated.
    Messages as lib/libc/stdlib/getopt_long.c prints them."""
    opts, operands, i = [], [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            operands += args[i + 1:]
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            matches = [n for n in DIGEST_LONG if n == name] or [n for n in DIGEST_LONG if n.startswith(name)]
            if len(matches) != 1:
                err(f"{cmd}: {'ambiguous' if matches else 'unknown'} option -- {name}")
                raise Usage
            name = matches[0]
            if DIGEST_LONG[name] and not eq:
                i += 1
                if i >= len(args):
                    err(f"{cmd}: option requires an argument -- {name}")
                    raise Usage
                value = args[i]
            elif not DIGEST_LONG[name] and eq:
                err(f"{cmd}: option doesn't take an argument -- {name}")
                raise Usage
            opts.append((name, value if DIGEST_LONG[name] else None))
        elif a.startswith("-") and a != "-":
            j = 1
            while j < len(a):
                c = a[j]
                if c not in DIGEST_SHORT:
                    err(f"{cmd}: illegal option -- {c}")
                    raise Usage
                if c in "cs":  # these take an argument: the rest of the word or the next one
                    value = a[j + 1:]
                    if not value:
                        i += 1
                        if i >= len(args):
                            err(f"{cmd}: option requires an argument -- {c}")
                            raise Usage
                        value = args[i]
                    opts.append((DIGEST_SHORT[c], value))
                    break
                opts.append((DIGEST_SHORT[c], None))
                j += 1
        else:
            operands.append(a)
        i += 1
    return opts, operands


def digest_main(cmd, args):
    name = DIGESTS[cmd]
    usage_text = f"usage: {cmd} [-pqrtx] [-c string] [-s string] [files ...]"
    try:
        opts, files = _digest_options(cmd, args)
    except Usage:
        usage(usage_text, 1)
    mode, check, passthrough, quiet = "tagged", None, False, False
    for o, v in opts:
        if o == "b":
            pass  # md5.c: "in BSD mode, -b is now a no-op"
        elif o == "check":
            check = v
        elif o == "passthrough":
            passthrough = True
        elif o == "quiet":
            mode, quiet = "bare", True
        elif o == "reverse":
            if not quiet:
                mode = "reverse"
        else:  # -s string, -t time trial, -x self test
            not_implemented(cmd, args)
    failed = mismatched = False

    def output(hexdigest, label):
        nonlocal mismatched
        line = {"bare": hexdigest, "reverse": f"{hexdigest} {label}",
                "tagged": f"{name} ({label}) = {hexdigest}"}[mode]
        if check is not None and check.lower() != hexdigest:
            mismatched = True
            if not quiet:
                line += " [ Failed ]"
        out(line)

    algorithm = name.lower()
    if files and not passthrough:
        for path in files:
            digest = hashlib.new(algorithm)
            try:
                with (open(path, "rb") if path != "-" else os.fdopen(os.dup(0), "rb")) as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 16), b""):
                        digest.update(block)
            except OSError as exc:
                err(f"{cmd}: {path}: {exc.strerror}")
                failed = True
                continue
            output(digest.hexdigest(), path)
    elif check is None:
        # standard input: bare digest (md5.c: output_bare in BSD mode); -p echoes it
        mode = "bare"
        digest = hashlib.new(algorithm)
        for block in iter(lambda: sys.stdin.buffer.read(1 << 16), b""):
            if passthrough:
                sys.stdout.buffer.write(block)
            digest.update(block)
        sys.stdout.flush()
        output(digest.hexdigest(), "-")
    if failed:
        return 1
    return 2 if mismatched else 0


MAINS = {"sed": sed_main, "stat": stat_main, "date": date_main, "install": install_main,
         "find": find_main, "xargs": xargs_main, "uname": uname_main, "hostname": hostname_main}
MAINS.update({cmd: (lambda args, cmd=cmd: digest_main(cmd, args)) for cmd in DIGESTS})

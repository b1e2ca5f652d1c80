"""service(8) double.

Forms (after FreeBSD usr.sbin/service/service.sh, 14.x):
  service [-j jail] NAME ARGS...   run /etc/rc.d/NAME or /usr/local/etc/rc.d/NAME
                                   in a clean environment (env -i HOME=/ PATH=...)
  service -e                       the scripts of enabled services (paths, in
                                   rcorder order; only scripts with an rcvar line)
  service -l                       list all scripts (names)
The rc.d script runs with the stand-in's /etc/rc.subr, which implements
load_rc_config, checkyesno and run_rc_command for real.
"""

import os
import subprocess

from .common import err, getopt_strict, not_implemented, out
from .jails import jexec_argv

CMD = "service"
RC_DIRS = ("/etc/rc.d", "/usr/local/etc/rc.d")
ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"}


def _scripts():
    found = []
    for d in RC_DIRS:
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            continue
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                found.append(p)
    return found


def _enabled(script):
    """service.sh -e: only scripts with an "rcvar" line, whose rcvar is YES."""
    try:
        with open(script, encoding="utf-8", errors="replace") as fh:
            if not any(line.startswith("rcvar") for line in fh):
                return False
    except OSError:
        return False
    proc = subprocess.run(["/bin/sh", script, "enabled"], env=ENV, capture_output=True,
                          text=True, check=False)
    return proc.returncode == 0


def _in_boot_order(scripts):
    """service.sh -e lists in rcorder(8) order (the boot order)."""
    from .rcorder import order
    return order(scripts)[0]


def main(args):
    opts, rest = getopt_strict(CMD, args, "elj:")
    flags = dict(opts)
    if "-j" in flags:
        if "-e" in flags or "-l" in flags or not rest:
            not_implemented(CMD, args)
        argv = jexec_argv(flags["-j"], ["/usr/sbin/service"] + rest)
        return subprocess.run(argv, check=False).returncode
    if "-e" in flags:
        if rest or "-l" in flags:
            not_implemented(CMD, args)
        for s in _in_boot_order(_scripts()):
            if _enabled(s):
                out(s)
        return 0
    if "-l" in flags:
        if rest:
            not_implemented(CMD, args)
        for s in _scripts():
            out(os.path.basename(s))
        return 0
    if len(rest) < 2:
        not_implemented(CMD, args)
    name, cmdargs = rest[0], rest[1:]
    for d in RC_DIRS:
        script = os.path.join(d, name)
        if os.path.isfile(script) and os.access(script, os.X_OK):
            os.chdir("/")
            return subprocess.run([script] + cmdargs, env=ENV, check=False).returncode
    err(f"{name} does not exist in /etc/rc.d or the local startup")
    err("directories (/usr/local/etc/rc.d), or is not executable")
    return 1

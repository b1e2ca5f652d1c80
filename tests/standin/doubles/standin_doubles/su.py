"""su(1) double: run a shell as another user (the caller is root).

Forms (after FreeBSD usr.bin/su/su.c and su(1), 14.x):
  su [-] [-l] [-m] [-c class] [login [args ...]]
  - ``login`` defaults to root; ``args`` are passed to the login's shell
    (so ``su -l postgres -c "cmd"`` runs ``sh -c "cmd"`` as postgres);
  - ``-l`` (or ``-``): simulate a full login: the environment is discarded
    except TERM; HOME, SHELL, USER and PATH (the login class's, FreeBSD's
    default class) are set, the shell is a login shell (argv[0] "-su") and
    starts in the home directory;
  - ``-m``: leave the environment unmodified; the shell is the caller's
    login shell, not the target's (so a nologin target still runs commands);
  - neither: HOME and SHELL are set, and USER when the login is not root;
  - ``-c class``: only FreeBSD's ``default`` login class is modelled.
  unknown login: "su: unknown login: NAME", exit 1.
Only root may use it in the stand-in (no PAM, no passwords): others get
"su: Sorry", exit 1.  Anything else is not implemented (exit 64).
"""

import os
import pwd

from .common import err, not_implemented

# login.conf(5) default class path of FreeBSD 14 (etc/login.conf, "default:" entry)
DEFAULT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin:{home}/bin"


def main(args):
    argv = list(args)
    login_shell = keep_env = False
    klass = None
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-", "-l"):
            login_shell = True
        elif a == "-m":
            keep_env = True
        elif a == "-c" and argv and klass is None:
            klass = argv.pop(0)
        elif a == "--":
            break
        else:
            not_implemented("su", args)
    if klass is not None and klass != "default":
        not_implemented("su", args)
    if login_shell and keep_env:
        not_implemented("su", args)
    login = argv.pop(0) if argv else "root"
    if os.geteuid() != 0:
        err("su: Sorry")
        return 1
    try:
        pw = pwd.getpwnam(login)
    except KeyError:
        err(f"su: unknown login: {login}")
        return 1
    shell = pw.pw_shell or "/bin/sh"
    if keep_env:
        # su(1) -m: "The invoked shell is your login shell": the caller's own
        # passwd shell, not the target's (su.c takes it from the invoking
        # user's entry when asme is set).  This is why rc.subr's
        # `su -m USER -c 'sh -c "..."'` works for users whose shell is
        # /usr/sbin/nologin.
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
        except KeyError:
            shell = "/bin/sh"
    if login_shell:
        env = {"HOME": pw.pw_dir, "SHELL": shell, "USER": pw.pw_name,
               "PATH": DEFAULT_PATH.format(home=pw.pw_dir)}
        if "TERM" in os.environ:
            env["TERM"] = os.environ["TERM"]
    else:
        env = dict(os.environ)
        if not keep_env:
            env["HOME"], env["SHELL"] = pw.pw_dir, shell
            if pw.pw_uid != 0:
                env["USER"] = pw.pw_name
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    if login_shell:
        try:
            os.chdir(pw.pw_dir)
        except OSError:
            err(f"su: no directory {pw.pw_dir}")
            return 1
    arg0 = "-su" if login_shell else "su"
    try:
        os.execve(shell, [arg0] + argv, env)
    except OSError as exc:
        err(f"su: {shell}: {exc.strerror}")
        return 1
    return 0

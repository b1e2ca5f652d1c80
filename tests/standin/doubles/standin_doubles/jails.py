"""jls(8) and jexec(8) doubles, and the stand-in's model of a running jail.

A jail of the stand-in is a directory (bastille's jails/NAME/root) plus an
entry in the simulated kernel state.  Starting one bind-mounts the host's
/usr/{bin,sbin,lib,lib64,libexec,share} read-only into it (as Bastille's
thin jails null-mount their release) and mounts /dev and /proc; commands run
in it through jexec, which chroots into the jail root.

jls forms (after FreeBSD usr.sbin/jls/jls.c and jls(8), 14.x):
  jls [-N]                       "   JID  IP Address      Hostname                      Path"
  jls [-n] [-j jail] [param ...]  params: jid name path host.hostname ip4.addr vnet osrelease
  unknown jail: "jls: jail "NAME" not found", exit 1
jexec forms (after FreeBSD usr.sbin/jexec/jexec.c):
  jexec [-l] [-u user | -U user] jail [command ...]
  unknown jail: "jexec: jail "NAME" not found", exit 1
"""

import os
import pwd
import subprocess

from .common import err, getopt_strict, kernel, not_implemented, out

USR_DIRS = ("bin", "sbin", "lib", "lib64", "libexec", "share")
JLS_PARAMS = ("jid", "name", "path", "host.hostname", "ip4.addr", "vnet", "osrelease", "dying")


def find_running(k, ident):
    for name, j in k["jails"].items():
        if j.get("running") and (name == ident or str(j.get("jid")) == str(ident)):
            return name, j
    return None, None


def _mounted(path):
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(line.split()[1] == path for line in fh)


def _mount(args):
    subprocess.run(["/bin/mount"] + args, check=True, capture_output=True)


def mount_jail(root):
    """Mount the shared system directories into a jail root (idempotent)."""
    os.makedirs(os.path.join(root, "usr"), exist_ok=True)
    for d in USR_DIRS:
        src = os.path.join("/usr", d)
        if not os.path.isdir(src):
            continue
        dst = os.path.join(root, "usr", d)
        os.makedirs(dst, exist_ok=True)
        if not _mounted(dst):
            _mount(["--bind", src, dst])
            _mount(["-o", "remount,bind,ro", dst])
    for d, link in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        p = os.path.join(root, d)
        if not os.path.lexists(p):
            os.symlink(link, p)
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    if not _mounted(dev):
        _mount(["--bind", "/dev", dev])
    proc = os.path.join(root, "proc")
    os.makedirs(proc, exist_ok=True)
    if not _mounted(proc):
        _mount(["-t", "proc", "proc", proc])


def unmount_jail(root):
    """Kill the jail's processes and unmount what mount_jail mounted."""
    real = os.path.realpath(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/root") == real:
                os.kill(int(entry), 9)
        except OSError:
            continue
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh]
    for p in sorted((p for p in points if p == real or p.startswith(real + "/")), reverse=True):
        subprocess.run(["/bin/umount", "-l", p], check=False, capture_output=True)


def jexec_argv(ident, command, user=None, login=False):
    """argv that runs ``command`` inside a running jail (for other doubles)."""
    argv = ["/usr/sbin/jexec"]
    if login:
        argv.append("-l")
    if user:
        argv += ["-U", user]
    return argv + [ident] + list(command)


def jexec_main(args):
    opts, rest = getopt_strict("jexec", args, "lu:U:")
    if not rest:
        not_implemented("jexec", args)
    o = dict(opts)
    with kernel() as k:
        name, j = find_running(k, rest[0])
    if not name:
        err(f'jexec: jail "{rest[0]}" not found')
        return 1
    user = o.get("-U") or o.get("-u") or "root"
    command = rest[1:] or ["/bin/sh"]
    os.chroot(j["path"])
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        err(f"jexec: getpwnam: {user}: no such user")
        return 1
    if "-l" in o:
        env = {"HOME": pw.pw_dir, "SHELL": pw.pw_shell, "USER": pw.pw_name, "TERM": os.environ.get("TERM", "dumb"),
               "PATH": f"/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin:{pw.pw_dir}/bin"}
        try:
            os.chdir(pw.pw_dir)
        except OSError:
            os.chdir("/")
    else:
        env = dict(os.environ)
        os.chdir("/")
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        err(f"jexec: execvp: {command[0]}: {exc.strerror}")
        return 1
    return 0


def _param(j, name, p):
    if p == "jid":
        return str(j["jid"])
    if p == "name":
        return name
    if p == "path":
        return j["path"]
    if p == "host.hostname":
        return j.get("hostname", name)
    if p == "ip4.addr":
        return j.get("ip4") or "-"
    if p == "vnet":
        return "new" if j.get("vnet") else "inherit"
    if p == "osrelease":
        return j.get("osrelease", "")
    if p == "dying":
        return "false"
    return ""


def jls_main(args):
    opts, rest = getopt_strict("jls", args, "Nnj:")
    o = dict(opts)
    for p in rest:
        if p not in JLS_PARAMS:
            not_implemented("jls", args)
    with kernel() as k:
        running = sorted(((n, j) for n, j in k["jails"].items() if j.get("running")),
                         key=lambda item: item[1]["jid"])
        if "-j" in o:
            name, j = find_running(k, o["-j"])
            if not name:
                err('jls: jail "{}" not found'.format(o["-j"]))
                return 1
            running = [(name, j)]
    if not rest:
        if "-n" in o:
            not_implemented("jls", args)
        out("   JID  IP Address      Hostname                      Path")
        for name, j in running:
            ident = name if "-N" in o else str(j["jid"])
            ip = (j.get("ip4") or "")[:15]
            out(f"{ident:>6}  {ip:<15} {j.get('hostname', name):<29} {j['path']}")
        return 0
    if "-N" in o:
        not_implemented("jls", args)
    for name, j in running:
        if "-n" in o:
            out(" ".join(f"{p}={_param(j, name, p)}" for p in rest))
        else:
            out(" ".join(_param(j, name, p) for p in rest))
    return 0

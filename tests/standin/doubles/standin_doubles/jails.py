"""jls(8) and jexec(8) doubles, and the stand-in's model of a running jail.

A jail of the stand-in is a directory (bastille's jails/NAME/root) plus an
entry in the simulated kernel state, plus real Linux namespaces (netns.py):
a VNET jail has its own network namespace (its interface, address and default
route from its rc.conf), and a jail has its own System V IPC namespace that
follows its sysvmsg/sysvsem/sysvshm parameters.  Starting one bind-mounts the
host's /usr/{bin,sbin,lib,lib64,libexec,share} read-only into it (as
Bastille's thin jails null-mount their release), mounts /dev and /proc, and
mounts the jail's own view of the kernel on its /.standin; then jail(8)'s
exec.start runs inside it ("/bin/sh /etc/rc" in Bastille's jail.conf), so
the jail boots its own enabled rc.d services.  Stopping runs exec.stop
("/bin/sh /etc/rc.shutdown"), then signals what is left, as jail -r does.
Every process of a jail (jexec, exec.start, exec.stop) enters the jail's
namespaces before it chroots into the jail root.

The jail's own view (kernel.json in the jail's /.standin, read-only): lo0 and
its vnet interface with its address, its defaultrouter, host.hostname,
osrelease, security.jail.jailed 1 and security.jail.vnet; so the ifconfig,
route, sysctl, freebsd-version, hostname and uname doubles answer inside a
jail as FreeBSD does there.  :func:`current_jail` tells a double whether it
runs in a jail.

jls forms (after FreeBSD usr.sbin/jls/jls.c and jls(8), 14.x):
  jls [-N]                       "   JID  IP Address      Hostname                      Path"
  jls [-n] [-j jail] [param ...]  params: jid name path host.hostname ip4.addr vnet osrelease
  unknown jail: "jls: jail "NAME" not found", exit 1
jexec forms (after FreeBSD usr.sbin/jexec/jexec.c):
  jexec [-l] [-u user | -U user] jail [command ...]
  unknown jail: "jexec: jail "NAME" not found", exit 1
"""

import contextlib
import ipaddress
import json
import os
import pwd
import re
import signal
import subprocess
import time

from . import netns
from .common import Exit, atomic_write, default_kernel, err, getopt_strict, kernel, not_implemented, out

USR_DIRS = ("bin", "sbin", "lib", "lib64", "libexec", "share")
JLS_PARAMS = ("jid", "name", "path", "host.hostname", "ip4.addr", "vnet", "osrelease", "dying",
              "sysvmsg", "sysvsem", "sysvshm")
VIEWS = "/.standin/jails"
# jail(8) "stop.timeout": seconds between SIGTERM and the jail's removal (default 10)
STOP_TIMEOUT = 10
# defaults/rc.conf rcshutdown_timeout: the longest rc.shutdown may run
RCSHUTDOWN_TIMEOUT = 90


def find_running(k, ident):
    for name, j in k["jails"].items():
        if j.get("running") and (name == ident or str(j.get("jid")) == str(ident)):
            return name, j
    return None, None


def find_by_path(k, root):
    real = os.path.realpath(root)
    for name, j in k["jails"].items():
        if j.get("running") and os.path.realpath(j["path"]) == real:
            return name, j
    return None, None


def current_jail():
    """The jail this process runs in ({"name", "jid", "vnet"}), or None on the stand-in host."""
    with kernel() as k:
        return k.get("jail")


def refuse_kernel_write(state):
    """A jail's view of the kernel is read-only: changing it is not modelled."""
    err("stand-in: changing the kernel state inside jail {} (interfaces, routes, sysctl, PF) "
        "is not implemented".format(state["jail"]["name"]))
    raise Exit(64)


# ------------------------------------------------------------------ jail.conf

def read_params(jail_conf, name):
    """Parameters of one jail block of a jail.conf(5) file: name -> value (True for booleans).

    Enough of jail.conf(5) for Bastille's files: ``name = value;``,
    ``name += value;`` (a list), ``name;`` and quoted values.
    """
    params = {}
    try:
        with open(jail_conf, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return params
    m = re.search(r"^\s*" + re.escape(name) + r"\s*\{(.*?)^\s*\}", text, re.S | re.M)
    for line in (m.group(1) if m else "").splitlines():
        mm = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(\+?=)\s*(.*?);\s*$", line)
        if mm:
            value = mm.group(3).strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if mm.group(2) == "+=":
                params.setdefault(mm.group(1), []).append(value)
            else:
                params[mm.group(1)] = value
        elif re.match(r"^\s*([A-Za-z0-9_.]+);\s*$", line):
            params[line.strip().rstrip(";")] = True
    return params


def jail_conf_of(j):
    """Bastille keeps jail.conf next to the jail's root (jails/NAME/{jail.conf,root})."""
    return os.path.join(os.path.dirname(j["path"].rstrip("/")), "jail.conf")


def sysv_params(params):
    """sysvmsg/sysvsem/sysvshm after jail(8): "disable" by default; the
    deprecated allow.sysvipc means "inherit" for all three."""
    base = "inherit" if params.get("allow.sysvipc") in (True, "1", "true") else "disable"
    result = {}
    for module in ("sysvmsg", "sysvsem", "sysvshm"):
        value = params.get(module, base)
        if value is True:
            value = "inherit"
        if value not in ("disable", "new", "inherit"):
            err(f'jail: {module}: unknown value "{value}"')
            raise Exit(1)
        result[module] = value
    return result


# ------------------------------------------------------------------ the jail's own view

def _view(k, name, j, params):
    view = default_kernel()
    release = j.get("osrelease") or k.get("release", "14.3-RELEASE")
    view.update(hostname=j.get("hostname", name), release=release,
                jail={"name": name, "jid": j["jid"], "vnet": bool(j.get("vnet"))})
    # sysctl(8) inside a jail: security.jail.jailed 1 (sys/kern/kern_jail.c
    # sysctl_jail_jailed), security.jail.vnet 1 in a VNET jail (kern_jail.c
    # sysctl_jail_vnet), kern.osrelease the jail's osrelease parameter (jail(8))
    view["sysctl"] = {"security.jail.jailed": "1", "security.jail.vnet": "1" if j.get("vnet") else "0",
                      "kern.osrelease": release}
    from .net import new_iface
    lo = new_iface("lo0", "loopback", groups=["lo"])
    lo.update(up=True, mtu=16384, inet=["127.0.0.1/8"])
    view["ifaces"] = {"lo0": lo}
    if j.get("vnet"):
        net = netns.jail_network(j)
        iface = new_iface(net["ifname"], "epair")
        iface.update(up=True, inet=[net["inet"]] if net["inet"] else [])
        live = netns.ip_json("link", "show", net["ifname"], ns=netns.jail_net(name))
        if live and live[0].get("address"):
            iface["ether"] = live[0]["address"]
        view["ifaces"][net["ifname"]] = iface
        if net["defaultrouter"]:
            view["routes"] = {"default": net["defaultrouter"], "default_if": net["ifname"]}
    else:
        # without vnet the jail shares the host's stack but sees only its own addresses (jail(8) ip4.addr)
        mine = [a.split("|")[-1] for a in str(params.get("ip4.addr", "")).split(",") if a]
        ips = {str(ipaddress.ip_interface(a).ip) for a in mine}
        for ifname, i in k["ifaces"].items():
            if i["kind"] != "loopback":
                view["ifaces"][ifname] = dict(i, inet=[a for a in i["inet"] if a.split("/")[0] in ips])
        view["routes"] = dict(k["routes"])
    return view


def _install_view(k, name, j, root, params):
    d = os.path.join(VIEWS, name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    atomic_write(os.path.join(d, "kernel.json"), json.dumps(_view(k, name, j, params), indent=1, sort_keys=True)
                 + "\n", 0o644)
    # common.kernel() takes this lock for reads too, as any user
    lock = os.path.join(d, "kernel.lock")
    with open(lock, "a", encoding="utf-8"):
        pass
    os.chmod(lock, 0o666)
    target = os.path.join(root, ".standin")
    os.makedirs(target, exist_ok=True)
    if not _mounted(target):
        _mount(["--bind", d, target])


def _install_base_files(root):
    """Files of FreeBSD's base.txz a booting jail needs that the stand-in's
    releases lack: /etc/rc and /etc/rc.shutdown (exec.start and exec.stop),
    /etc/hosts (localhost, which PostgreSQL's default listen_addresses names)
    and /etc/nsswitch.conf ("hosts: files dns", so localhost resolves without
    a name server).  A jail gets the stand-in host's own files (the release's,
    as Bastille's bootstrap gives it rc.subr); files the jail already has are
    kept."""
    for path in ("/etc/rc", "/etc/rc.shutdown", "/etc/hosts", "/etc/nsswitch.conf"):
        target = os.path.join(root, path.lstrip("/"))
        if os.path.lexists(target) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            atomic_write(target, fh.read(), 0o644)
    # base.txz's /etc/ssh (FreeBSD's sshd_config, ssh_config and moduli are not modelled: the sshd double reads
    # none of them), where rc.d/sshd's keygen writes the jail's host keys
    os.makedirs(os.path.join(root, "etc", "ssh"), mode=0o755, exist_ok=True)
    # base.txz's rc.d scripts of the daemons a service jail runs (FreeBSD libexec/rc/rc.d)
    for path in ("/etc/rc.d/sshd",):
        target = os.path.join(root, path.lstrip("/"))
        if not os.path.lexists(target) and os.path.isfile(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(path, encoding="utf-8") as fh:
                atomic_write(target, fh.read(), 0o555)


# ------------------------------------------------------------------ start and stop


def _mounted(path):
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        return any(line.split()[1] == path for line in fh)


def _mount(args):
    subprocess.run(["/bin/mount"] + args, check=True, capture_output=True)


def mount_jail(root):
    """Mount the shared system directories into a jail root, its IPC namespace
    and its own view of the kernel (idempotent)."""
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
    with kernel() as k:
        name, j = find_by_path(k, root)
        if not name:
            return
        params = read_params(jail_conf_of(j), name)
        _install_view(k, name, j, root, params)
    try:
        sysv = sysv_params(params)
        netns.ensure_jail_ipc(name, sysv)
    except netns.NetnsError as exc:
        _abort_start(name, root, str(exc), 64)
    except Exit as exc:
        _abort_start(name, root, None, exc.code)
    # what jls reports for the running jail: its values at creation, whatever jail.conf says later
    with kernel(write=True) as k:
        if name in k["jails"]:
            k["jails"][name]["sysv"] = sysv
    _install_base_files(root)


def _abort_start(name, root, message, code):
    """jail -c failed before exec.start: no jail is left, as jail(8) leaves none."""
    if message:
        err(message)
    kill_and_unmount(root, name)
    with kernel(write=True) as k:
        j = k["jails"].pop(name, {})
        ep, br = j.get("host_epair"), j.get("bridge")
        if ep:
            k["ifaces"].pop(ep, None)
            if br in k["ifaces"] and ep in k["ifaces"][br]["members"]:
                k["ifaces"][br]["members"].remove(ep)
    err(f"jail: {name}: not started")
    raise Exit(code)


def _clean_env():
    """jail(8) exec.clean: HOME, SHELL, USER of the login, TERM imported, PATH /bin:/usr/bin."""
    return {"HOME": "/root", "SHELL": "/bin/sh", "USER": "root", "TERM": os.environ.get("TERM", "dumb"),
            "PATH": "/bin:/usr/bin"}


def enter_jail(name, j):
    """Enter a running jail's namespaces, then its root (the order jexec and jail -c use)."""
    if j.get("vnet"):
        path = netns.jail_net(name)
        if not netns.is_namespace(path):
            raise OSError(f"stand-in: jail {name} has no network namespace ({path})")
        netns.enter(path, "net")
    if netns.is_namespace(netns.jail_ipc(name)):
        netns.enter(netns.jail_ipc(name), "ipc")
    os.chroot(j["path"])
    os.chdir("/")


def _run_in_jail(name, j, command, timeout=None):
    """Run a jail.conf exec.* command inside the jail as root, output to exec.consolelog."""
    params = read_params(jail_conf_of(j), name)
    log = params.get("exec.consolelog")
    sink = subprocess.DEVNULL
    if isinstance(log, str) and log:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        sink = open(log, "ab")  # noqa: SIM115 - closed below, after the child ran
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], env=_clean_env(), stdin=subprocess.DEVNULL,
                                stdout=sink, stderr=sink, preexec_fn=lambda: enter_jail(name, j))
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        if sink is not subprocess.DEVNULL:
            sink.close()


def exec_start(name):
    """jail -c's last step: exec.start inside the jail (jail(8); Bastille: "/bin/sh /etc/rc")."""
    with kernel() as k:
        j = k["jails"].get(name)
    if not j or not j.get("running"):
        return None
    command = read_params(jail_conf_of(j), name).get("exec.start")
    if not isinstance(command, str) or not command:
        return None
    return _run_in_jail(name, j, command)


def jail_pids(root, name=None):
    """PIDs of the jail's processes: root directory in the jail, or inside its network namespace."""
    real = os.path.realpath(root)
    ns_ino = None
    if name and netns.is_namespace(netns.jail_net(name)):
        ns_ino = os.stat(netns.jail_net(name)).st_ino
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{entry}/root") == real or \
                    (ns_ino and os.stat(f"/proc/{entry}/ns/net").st_ino == ns_ino):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal_all(pids, sig):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def unmount_jail(root):
    """jail -r: exec.stop inside the jail (Bastille: "/bin/sh /etc/rc.shutdown"),
    SIGTERM to what is left, stop.timeout seconds, then SIGKILL (jail(8));
    then unmount what mount_jail mounted."""
    with kernel() as k:
        name, j = find_by_path(k, root)
    if name:
        params = read_params(jail_conf_of(j), name)
        command = params.get("exec.stop")
        if isinstance(command, str) and command:
            _run_in_jail(name, j, command, timeout=RCSHUTDOWN_TIMEOUT)
        try:
            timeout = int(params.get("stop.timeout", STOP_TIMEOUT))
        except ValueError:
            timeout = STOP_TIMEOUT
        if timeout:
            _signal_all(jail_pids(root, name), signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and [p for p in jail_pids(root, name) if _alive(p)]:
                time.sleep(0.1)
    kill_and_unmount(root, name)


def kill_and_unmount(root, name):
    """What the kernel does to a jail that ends without exec.stop (jail -r's
    last step, and every jail at reboot): SIGKILL to what is left, its mounts
    and its view gone."""
    _signal_all(jail_pids(root, name), signal.SIGKILL)
    real = os.path.realpath(root)
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh]
    for p in sorted((p for p in points if p == real or p.startswith(real + "/")), reverse=True):
        subprocess.run(["/bin/umount", "-l", p], check=False, capture_output=True)
    if name:
        view = os.path.join(VIEWS, name)
        for f in ("kernel.json", "kernel.lock", "calls.log"):
            if os.path.lexists(os.path.join(view, f)):
                os.unlink(os.path.join(view, f))
        if os.path.isdir(view) and not os.listdir(view):
            os.rmdir(view)


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
    try:
        enter_jail(name, j)
    except OSError as exc:
        err(f"jexec: jail_attach({j['jid']}): {exc}")
        return 1
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
    if p in ("sysvmsg", "sysvsem", "sysvshm"):
        # jailsys parameters print as disable, new or inherit (lib/libjail/jail.c)
        return j.get("sysv", {}).get(p, "disable")
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

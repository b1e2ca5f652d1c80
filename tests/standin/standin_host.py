"""The stand-in FreeBSD host: host-side lifecycle (up, run, state, exec, down).

A stand-in is a directory tree BASE/NAME (BASE defaults to
/var/tmp/warden-standin, or $WARDEN_STANDIN_BASE) with:

  layer/usr   the doubles, placed at FreeBSD command paths (read-only layer)
  upper/usr   writes to /usr inside the stand-in (pkg installs in /usr/local)
  root/       the stand-in's "/" that Ansible reaches with the
              community.general.chroot connection:
                usr   overlayfs (layer/usr over the machine's /usr, upper/usr);
                      /usr/local is opaque: the machine's /usr/local is hidden
                bin, sbin, lib, lib64 -> usr/...
                etc, var, tmp, root, home   private directories
                dev   a private tmpfs with null, zero, random, urandom, tty, ptmx and pts/
                proc  procfs (process checks of rc.subr and the doubles)
                .standin/  the simulated kernel (interfaces, PF, jails, sysctl)

Nothing outside BASE/NAME is written.  ``down`` kills every process whose
root directory lies in the stand-in, unmounts every mount under BASE/NAME
and removes it, then checks that nothing is left.
"""

import contextlib
import datetime
import glob
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(HERE, "doubles")
sys.path.insert(0, DOUBLES)

from standin_doubles import layout, netns, pfctl, postgresql, rcconf  # noqa: E402

LABEL = "stand-in FreeBSD host (a Linux chroot with command doubles, not FreeBSD)"
PY_SITE = "/usr/lib/python3.11"
ETC_COPY = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "localtime",
            "ssl", "ca-certificates", "protocols", "services", "shells", "login.defs", "pam.d",
            "security", "environment", "mime.types", "gitconfig")
FREEBSD_PATH = "/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


class StandinError(Exception):
    pass


def base_dir():
    return os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")


def paths(name):
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise StandinError(f"invalid stand-in name: {name!r}")
    b = os.path.join(base_dir(), name)
    return {"base": b, "layer": os.path.join(b, "layer"), "upper": os.path.join(b, "upper"),
            "work": os.path.join(b, "work"), "root": os.path.join(b, "root"),
            "meta": os.path.join(b, "standin.json")}


def mounts_under(path):
    real = os.path.realpath(path)
    result = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            mp = line.split()[4].replace("\\040", " ")
            if mp == real or mp.startswith(real + "/"):
                result.append(mp)
    return result


def namespaces_under(path):
    """Inodes of the namespaces kept by nsfs bind mounts under ``path`` (the
    stand-in host's and its jails' network and IPC namespaces)."""
    real = os.path.realpath(path)
    inodes = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            m = re.match(r"^(net|ipc):\[(\d+)\]$", fields[3])
            if m and (mp == real or mp.startswith(real + "/")):
                inodes.add(int(m.group(2)))
    return inodes


def _in_namespaces(pid, inodes):
    """True when process ``pid`` lives in, or holds a descriptor of, one of the namespaces."""
    for kind in ("net", "ipc"):
        try:
            if os.stat(f"/proc/{pid}/ns/{kind}").st_ino in inodes:
                return True
        except OSError:
            return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"^(net|ipc):\[(\d+)\]$", target)
        if m and int(m.group(2)) in inodes:
            return True
    return False


def processes_under(path, namespaces=None):
    """PIDs whose root, cwd or executable lies inside ``path``, or that live in
    (or hold) one of the stand-in's namespaces (``namespaces``: inodes, by
    default those mounted under ``path``)."""
    real = os.path.realpath(path)
    if namespaces is None:
        namespaces = namespaces_under(path)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for link in ("root", "cwd", "exe"):
            try:
                target = os.readlink(f"/proc/{entry}/{link}")
            except OSError:
                continue
            target = target.removesuffix(" (deleted)")
            if target == real or target.startswith(real + "/"):
                pids.append(int(entry))
                break
        else:
            if namespaces and _in_namespaces(entry, namespaces):
                pids.append(int(entry))
    return pids


def _run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StandinError("{}: {}".format(" ".join(argv), proc.stderr.strip()))


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _usr_mounted(p):
    return os.path.isdir(p["base"]) and os.path.join(os.path.realpath(p["root"]), "usr") in mounts_under(p["base"])


def host_namespaces(p):
    """The stand-in host's own network and IPC namespace files (nsfs bind mounts in its root)."""
    ns = os.path.join(p["root"], netns.NS_DIR.lstrip("/"))
    return {"net": os.path.join(ns, "host.net"), "ipc": os.path.join(ns, "host.ipc")}


def chroot_wrapper(p):
    """chroot(8) that enters the stand-in host's namespaces first: Ansible's
    community.general.chroot connection runs it (hostvar ansible_chroot_exe)."""
    return os.path.join(p["base"], "chroot")


def is_up(name):
    p = paths(name)
    if not os.path.isdir(p["base"]):
        return False
    mounts = mounts_under(p["base"])
    root = os.path.realpath(p["root"])
    return os.path.join(root, "usr") in mounts and all(
        os.path.realpath(f) in mounts for f in host_namespaces(p).values())


def _make_namespaces(p):
    """The stand-in host's own network and IPC namespaces: every process of the
    stand-in runs in them, so nothing it configures reaches the machine's."""
    files = host_namespaces(p)
    os.makedirs(os.path.dirname(files["net"]), mode=0o700, exist_ok=True)
    for f in files.values():
        _write(f, "", 0o600)
    _run([shutil.which("unshare") or "unshare", f"--net={files['net']}", f"--ipc={files['ipc']}", "true"])
    _write(chroot_wrapper(p), "#!/bin/sh\n"
           f"# {LABEL}: chroot(8) into {p['root']} inside its own network and IPC namespaces\n"
           f"exec {shutil.which('nsenter') or 'nsenter'} --net={files['net']} --ipc={files['ipc']} -- "
           f"{shutil.which('chroot') or 'chroot'} \"$@\"\n", 0o755)


def _build_layer(p):
    usr = os.path.join(p["layer"], "usr")
    libexec = os.path.join(usr, layout.DOUBLE_DIR.lstrip("/").split("/", 1)[1])
    shutil.copytree(os.path.join(DOUBLES, "standin_doubles"), os.path.join(libexec, "standin_doubles"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path, cmd in layout.COMMANDS.items():
        _write(os.path.join(p["layer"], path.lstrip("/")), layout.double_script(cmd), 0o555)
    os.makedirs(os.path.join(usr, PY_SITE.split("/usr/", 1)[1]), exist_ok=True)
    shutil.copyfile(os.path.join(DOUBLES, "sitecustomize.py"),
                    os.path.join(usr, PY_SITE.split("/usr/", 1)[1], "sitecustomize.py"))
    _place_pgvector_placeholder(usr)
    local = os.path.join(usr, "local")
    os.makedirs(local, exist_ok=True)
    # hide the machine's /usr/local: the stand-in's is its own (opaque dir)
    os.setxattr(local, "trusted.overlay.opaque", b"y")
    _build_userland(usr)


def _place_pgvector_placeholder(usr):
    """The stand-in's stand-in for pgvector's extension files (postgresql.placeholder_extension)."""
    try:
        ext_dir = postgresql.extension_dir()
    except postgresql.NoPostgres:
        return
    dst = os.path.join(usr, ext_dir.split("/usr/", 1)[1])
    os.makedirs(dst, exist_ok=True)
    for name, text in postgresql.placeholder_extension("vector", "0.8.0").items():
        _write(os.path.join(dst, name), text, 0o644)


def _place_machine_file(src, dst):
    """Hard link (same filesystem) or copy a machine file into the layer."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _build_userland(usr):
    """Only FreeBSD's command names on PATH: whiteouts over the machine's others.

    A character device 0/0 in a lower layer hides the same name of the layers
    below it (overlayfs whiteout), so layer/usr/bin/useradd hides the machine's
    /usr/bin/useradd.  layout.userland_plan() says which names go and which
    visible names need the machine file they end at (sh -> dash).  The private
    interpreter and tools (layout.PRIVATE_BIN) stay reachable off PATH.
    """
    whiteouts, links = layout.userland_plan("/usr")
    for directory in ("bin", "sbin"):
        os.makedirs(os.path.join(usr, directory), exist_ok=True)
    for rel in whiteouts:
        os.mknod(os.path.join(usr, rel), stat.S_IFCHR | 0o000, os.makedev(0, 0))
    # FreeBSD's Python has no psycopg2 until py311-psycopg2 is installed: hide the machine's, and keep
    # a copy off every path for pkg (inside jails too, which bind-mount /usr/libexec).
    dist = os.path.join(usr, "lib/python3/dist-packages")
    for found in glob.glob("/usr/lib/python3/dist-packages/psycopg2*"):
        os.makedirs(dist, exist_ok=True)
        os.mknod(os.path.join(dist, os.path.basename(found)), stat.S_IFCHR | 0o000, os.makedev(0, 0))
        if os.path.isdir(found):
            shutil.copytree(found, os.path.join(usr, layout.PKG_SOURCES.split("/usr/", 1)[1], os.path.basename(found)),
                            ignore=shutil.ignore_patterns("__pycache__"))
    for rel, real in links.items():
        _place_machine_file(real, os.path.join(usr, rel))
    private = os.path.join(usr, layout.PRIVATE_BIN.split("/usr/", 1)[1])
    for tool in layout.PRIVATE_TOOLS:
        found = shutil.which(tool, path="/usr/bin:/usr/sbin")
        if found:
            _place_machine_file(os.path.realpath(found), os.path.join(private, tool))


def _private_tools(root):
    """FreeBSD's /usr/local/bin/python3.11 and the read-only view of the machine's /usr.

    The interpreter is the layer's private one (the machine's /usr/bin/python3.11
    is hidden); layout.HOST_USR lets host_tool() reach any machine binary.
    """
    os.symlink(layout.PYTHON, os.path.join(root, "usr/local/bin/python3.11"))
    host_usr = os.path.join(root, layout.HOST_USR.lstrip("/"))
    os.makedirs(host_usr, exist_ok=True)
    _run(["mount", "--bind", "/usr", host_usr])
    _run(["mount", "-o", "remount,bind,ro", host_usr])


def _seed_etc(p, hostname):
    root = p["root"]
    etc = os.path.join(root, "etc")
    os.makedirs(etc, exist_ok=True)
    for n in ETC_COPY:
        src = os.path.join("/etc", n)
        dst = os.path.join(etc, n)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True)
        elif os.path.isfile(src):
            shutil.copy2(src, dst)
    for path, (text, mode) in layout.passwd_files().items():
        _write(os.path.join(root, path.lstrip("/")), text, mode)
    _write(os.path.join(etc, "hosts"), "::1\t\t\tlocalhost localhost.my.domain\n"
           "127.0.0.1\t\tlocalhost localhost.my.domain\n")
    resolv = "/etc/resolv.conf"
    text = "nameserver 127.0.0.1\n"
    if os.path.isfile(resolv):
        with open(resolv, encoding="utf-8") as fh:
            text = fh.read()
    _write(os.path.join(etc, "resolv.conf"), text)
    _write(os.path.join(etc, "rc.conf"), f'hostname="{hostname}"\n')
    os.makedirs(os.path.join(etc, "defaults"), exist_ok=True)
    shutil.copyfile(os.path.join(DOUBLES, "etc", "defaults.rc.conf"), os.path.join(etc, "defaults", "rc.conf"))
    shutil.copyfile(os.path.join(DOUBLES, "etc", "defaults.devfs.rules"), os.path.join(etc, "defaults", "devfs.rules"))
    shutil.copyfile(os.path.join(DOUBLES, "rc.subr"), os.path.join(etc, "rc.subr"))
    os.makedirs(os.path.join(etc, "rc.d"), exist_ok=True)
    # /etc/rc, rc.shutdown, network.subr and the base rc.d scripts
    import standin_boot
    standin_boot.seed_etc(etc)
    _write(os.path.join(etc, "STANDIN"), f"This is the {LABEL}.\n")


def _make_dev(root):
    dev = os.path.join(root, "dev")
    os.makedirs(dev, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=8m,nosuid", "standin-dev", dev])
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                               ("urandom", 1, 9), ("tty", 5, 0)):
        path = os.path.join(dev, name)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    # POSIX shared memory (shm_open(2)): FreeBSD keeps it in the kernel, not in /dev, so it is not bounded by
    # the 8 MiB above; a tmpfs of its own lets twenty PostgreSQL servers (1 MiB of dynamic shared memory each)
    # start, as they do on one FreeBSD host. tmpfs takes memory only for what is in it.
    os.makedirs(os.path.join(dev, "shm"))
    _run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=1g,nosuid,nodev", "standin-shm", os.path.join(dev, "shm")])
    # pseudo-terminals, as FreeBSD's devfs has them (pts(4): /dev/ptmx, /dev/pts/N): tmux needs one
    # per pane; a devpts instance of the stand-in's own, so the machine's terminals stay out of it
    os.makedirs(os.path.join(dev, "pts"))
    _run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "standin-pts",
          os.path.join(dev, "pts")])
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))


def up(name, ext_if="vtnet0", ext_addr="192.0.2.10/24", gateway="192.0.2.1",
       release="14.3-RELEASE", hostname=None):
    p = paths(name)
    if is_up(name):
        return p
    if os.path.exists(p["base"]):
        down(name)
    hostname = hostname or f"{name}.standin.test"
    for d in ("layer", "upper", "work", "root"):
        os.makedirs(p[d], exist_ok=True)
    os.makedirs(os.path.join(p["upper"], "usr"))
    os.makedirs(os.path.join(p["work"], "usr"))
    try:
        _build_layer(p)
        root = p["root"]
        os.makedirs(os.path.join(root, "usr"))
        _run(["mount", "-t", "overlay", "standin-usr", "-o",
              "lowerdir={}:/usr,upperdir={},workdir={}".format(
                  os.path.join(p["layer"], "usr"), os.path.join(p["upper"], "usr"), os.path.join(p["work"], "usr")),
              os.path.join(root, "usr")])
        for link in ("bin", "sbin", "lib", "lib64"):
            os.symlink("usr/" + link, os.path.join(root, link))
        for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("home", 0o755),
                        ("var/run", 0o755), ("var/log", 0o755), ("var/db/pkg", 0o755), ("var/empty", 0o555),
                        ("var/cron/tabs", 0o700), ("var/backups", 0o755), ("proc", 0o555), (".standin", 0o700),
                        ("usr/local/bin", 0o755), ("usr/local/sbin", 0o755), ("usr/local/etc/rc.d", 0o755),
                        ("usr/local/etc/cron.d", 0o755), ("usr/local/lib", 0o755), ("usr/local/libexec", 0o755),
                        ("usr/local/share", 0o755)):
            full = os.path.join(root, d)
            os.makedirs(full, exist_ok=True)
            os.chmod(full, mode)
        _seed_etc(p, hostname)
        _private_tools(root)
        # pkg is bootstrapped: the real pkg is in /usr/local/sbin (FREEBSD-NOTES: a host needs it first)
        _write(os.path.join(root, "usr/local/sbin/pkg"), layout.double_script("pkg"), 0o555)
        _write(os.path.join(root, "var/db/pkg/local.json"), json.dumps({
            "pkg": {"version": "2.1.2", "origin": "ports-mgmt/pkg", "automatic": False},
            "python311": {"version": "3.11.13", "origin": "lang/python311", "automatic": False}},
            indent=1, sort_keys=True) + "\n")
        _make_dev(root)
        _run(["mount", "-t", "proc", "standin-proc", os.path.join(root, "proc")])
        from standin_doubles.common import default_kernel
        from standin_doubles.net import new_iface
        k = default_kernel()
        k["hostname"] = hostname
        k["release"] = release
        lo = new_iface("lo0", "loopback", groups=["lo"])
        lo.update(up=True, mtu=16384, inet=["127.0.0.1/8"])
        ext = new_iface(ext_if, "ether", groups=[])
        ext.update(up=True, inet=[ext_addr])
        k["ifaces"] = {"lo0": lo, ext_if: ext}
        k["routes"] = {"default": gateway, "default_if": ext_if}
        _write(os.path.join(root, ".standin", "kernel.json"), json.dumps(k, indent=1, sort_keys=True) + "\n", 0o600)
        _make_namespaces(p)
        # the host's interfaces, addresses and default route, really, in its namespace (netns.py)
        python = getattr(layout, "PYTHON", "/usr/bin/python3")
        _run_ok(name, [python, "-c", f"import sys; sys.path.insert(0, {layout.DOUBLE_DIR!r})\n"
                       "from standin_doubles.common import kernel\n"
                       "with kernel(write=True):\n    pass\n"])
        _write(p["meta"], json.dumps({"name": name, "root": root, "hostname": hostname, "ext_if": ext_if,
                                      "created": datetime.datetime.now(datetime.UTC).isoformat(),
                                      "label": LABEL}, indent=1) + "\n")
    except BaseException:
        down(name)
        raise
    return p


def down(name, timeout=10.0):
    """Kill, unmount, remove.  Returns a report; raises if anything is left."""
    p = paths(name)
    base = p["base"]
    killed = []
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    # the namespaces are known only while their files are mounted: remember them, and
    # hold them open until the end, so that a freed inode cannot be reused meanwhile by
    # another stand-in's namespace and pass for one of ours
    namespaces = namespaces_under(base) if os.path.isdir(base) else set()
    held = _hold_namespaces(base)
    while True:
        pids = processes_under(base, namespaces)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
                if pid not in killed:
                    killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        if time.monotonic() > deadline - timeout / 2:
            sig = signal.SIGKILL
        if time.monotonic() > deadline:
            break
    for mp in sorted(mounts_under(base), key=len, reverse=True):
        if subprocess.run(["umount", mp], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    if os.path.isdir(base) and not mounts_under(base):
        shutil.rmtree(base)
    left = {"processes": processes_under(base, namespaces), "mounts": mounts_under(base),
            "exists": os.path.exists(base),
            "namespaces": sorted(n for n in namespaces if _namespace_alive(n))}
    for fd in held:
        os.close(fd)
    if left["processes"] or left["mounts"] or left["exists"] or left["namespaces"]:
        raise StandinError(f"stand-in {name} not fully removed: {json.dumps(left)}")
    with contextlib.suppress(OSError):
        os.rmdir(base_dir())
    return {"name": name, "killed": killed}


def _hold_namespaces(base):
    """Descriptors of the namespace files mounted under ``base``."""
    real = os.path.realpath(base)
    fds = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [line.split()[4] for line in fh if re.match(r"^(net|ipc):\[", line.split()[3])]
    for mp in points:
        if mp.startswith(real + "/"):
            with contextlib.suppress(OSError):
                fds.append(os.open(mp, os.O_RDONLY))
    return fds


def _namespace_alive(inode):
    """True while another process lives in or holds the namespace, or a mount keeps it
    (down holds a descriptor itself, so the inode still names the same namespace)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        if any(re.match(rf"^(net|ipc):\[{inode}\]$", line.split()[3]) for line in fh):
            return True
    return any(_in_namespaces(e, {inode}) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid())


def _chroot_env():
    return {"PATH": FREEBSD_PATH, "HOME": "/root", "USER": "root", "SHELL": "/bin/sh",
            "TERM": os.environ.get("TERM", "dumb"), "LANG": "C.UTF-8"}


def _run_ok(name, argv):
    proc = exec_in(name, argv, capture=True)
    if proc.returncode != 0:
        raise StandinError("{} in stand-in {}: {}".format(" ".join(argv), name, (proc.stderr or proc.stdout).strip()))


def exec_in(name, argv, capture=False, input_text=None):
    p = paths(name)
    if not _usr_mounted(p):
        raise StandinError(f"stand-in {name} is not up")
    root = p["root"]
    files = host_namespaces(p)

    def enter():
        # the stand-in host's namespaces first (their files are reachable before the chroot)
        netns.enter(files["net"], "net")
        netns.enter(files["ipc"], "ipc")
        os.chroot(root)
        os.chdir("/root")

    return subprocess.run(argv, env=_chroot_env(), preexec_fn=enter, capture_output=capture, text=True,
                          input=input_text, check=False)


def inventory_hosts(ansible_inventory, inventories):
    argv = [ansible_inventory]
    for inv in inventories:
        argv += ["-i", inv]
    argv.append("--list")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StandinError(f"ansible-inventory failed: {proc.stderr.strip()}")
    data = json.loads(proc.stdout)

    def hosts_of(group, seen=None):
        seen = seen or set()
        if group in seen or group not in data:
            return []
        seen.add(group)
        found = list(data[group].get("hosts", []))
        for child in data[group].get("children", []):
            found += hosts_of(child, seen)
        return found

    hosts = hosts_of("warden_hosts") or hosts_of("all")
    return sorted(set(hosts))


def run(name, argv):
    """Run an ansible command with the inventory's hosts mapped onto the stand-in."""
    p = paths(name)
    if not is_up(name):
        raise StandinError(f"stand-in {name} is not up (run: standin up {name})")
    if not argv:
        raise StandinError("nothing to run")
    inventories = []
    for i, a in enumerate(argv):
        if a in ("-i", "--inventory", "--inventory-file") and i + 1 < len(argv):
            inventories.append(argv[i + 1])
        elif a.startswith("--inventory="):
            inventories.append(a.split("=", 1)[1])
    tool_dir = os.path.dirname(shutil.which(argv[0]) or sys.executable)
    ansible_inventory = os.path.join(tool_dir, "ansible-inventory")
    if not os.path.exists(ansible_inventory):
        ansible_inventory = shutil.which("ansible-inventory") or "ansible-inventory"
    hosts = inventory_hosts(ansible_inventory, inventories) if inventories else []
    extra = os.path.join(p["base"], "inventory.standin.json")
    hostvars = {"ansible_connection": "community.general.chroot", "ansible_host": p["root"],
                "ansible_chroot_exe": chroot_wrapper(p),
                "ansible_python_interpreter": "/usr/local/bin/python3.11"}
    _write(extra, json.dumps({"standin": {"hosts": hosts or ["standin"], "vars": {}},
                              "_meta": {"hostvars": {h: dict(hostvars) for h in hosts or ["standin"]}}}, indent=1))
    script = os.path.join(p["base"], "inventory.standin.sh")
    _write(script, f"#!/bin/sh\ncat {extra}\n", 0o755)
    mapped = ", ".join(hosts) or "standin"
    sys.stderr.write(f"[stand-in] mapping {mapped} onto the {LABEL} at {p['root']}\n")
    cmd = list(argv) + ["-i", script]
    env = dict(os.environ)
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    return subprocess.run(cmd, env=env, check=False).returncode


def _chroot_out(name, argv):
    proc = exec_in(name, argv, capture=True)
    return proc.returncode, proc.stdout


def state(name):
    p = paths(name)
    if not is_up(name):
        raise StandinError(f"stand-in {name} is not up")
    root = p["root"]

    def r(path):
        return os.path.join(root, path.lstrip("/"))

    with open(r("/.standin/kernel.json"), encoding="utf-8") as fh:
        k = json.load(fh)
    result = {"standin": True, "label": LABEL, "name": name, "root": root, "hostname": k.get("hostname"),
              "release": k.get("release")}
    result["interfaces"] = {n: {"inet": i["inet"], "up": i["up"], "groups": i["groups"], "members": i["members"],
                                "private": i.get("private", [])} for n, i in k["ifaces"].items()}
    result["warden0"] = result["interfaces"].get("warden0")
    result["default_route"] = k["routes"].get("default")
    result["sysctl"] = k["sysctl"]
    # enabled, main options, per anchor: scrub, nat, rdr and rules as pfctl prints them, tables, referenced
    result["pf"] = pfctl.summary(k["pf"])
    result["rc_conf"] = rcconf.read_all(r("/etc/rc.conf"))
    # services: every rc.d script, enabled (rc.subr "enabled") and pid (onestatus)
    import standin_state  # the parts of `state` beyond the kernel file
    result["services"] = standin_state.service_table(sys.modules[__name__], name)
    users, groups = {}, {}
    base_users = {u[0] for u in layout.BASE_USERS}
    with open(r("/etc/master.passwd"), encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split(":")
            if len(f) == 10 and f[0] not in base_users:
                users[f[0]] = {"uid": int(f[2]), "gid": int(f[3]), "home": f[8], "shell": f[9], "gecos": f[7]}
    base_groups = {g[0] for g in layout.BASE_GROUPS}
    with open(r("/etc/group"), encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split(":")
            if len(f) == 4 and f[0] not in base_groups:
                groups[f[0]] = {"gid": int(f[2]), "members": [m for m in f[3].split(",") if m]}
    result["users"], result["groups"] = users, groups
    try:
        with open(r("/var/db/pkg/local.json"), encoding="utf-8") as fh:
            result["packages"] = {n: v["version"] for n, v in json.load(fh).items()}
    except FileNotFoundError:
        result["packages"] = {}
    cron = {}
    if os.path.isdir(r("/usr/local/etc/cron.d")):
        for n in sorted(os.listdir(r("/usr/local/etc/cron.d"))):
            with open(os.path.join(r("/usr/local/etc/cron.d"), n), encoding="utf-8", errors="replace") as fh:
                cron[n] = fh.read()
    result["cron_d"] = cron
    result["jails"] = _jails_state(name, r, k)
    calls = []
    try:
        with open(r("/.standin/calls.log"), encoding="utf-8") as fh:
            for line in fh:
                c = json.loads(line)
                if c["cmd"] == "bastille" and c["args"][:1] == ["create"]:
                    a = c["args"]
                    calls.append({"args": a, "gateway_flag": any(x in ("-g", "--gateway", "--defaultrouter")
                                                                 for x in a)})
    except FileNotFoundError:
        pass
    result["bastille"] = {"create_calls": calls,
                          "all_creates_passed_gateway": all(c["gateway_flag"] for c in calls)}
    result["processes"] = []
    for pid in processes_under(p["base"]):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = [x.decode(errors="replace") for x in fh.read().split(b"\0") if x]
        except OSError:
            continue
        result["processes"].append({"pid": pid, "cmdline": cmdline})
    # rc_conf merged, routes, interface kinds, process owners, jails' services
    standin_state.add(sys.modules[__name__], name, result, k)
    return result


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def _jails_state(name, r, k):
    conf = r("/usr/local/etc/bastille/bastille.conf")
    if os.path.isfile(conf):
        _ok, prefix = rcconf.sh_get([conf], "bastille_prefix", defaults=False)
        ok, jailsdir = rcconf.sh_get([conf], "bastille_jailsdir", defaults=False)
        jailsdir = jailsdir if ok and jailsdir else (prefix or "/usr/local/bastille") + "/jails"
    else:
        jailsdir = "/usr/local/bastille/jails"
    jails = {}
    if not os.path.isdir(r(jailsdir)):
        return jails
    for n in sorted(os.listdir(r(jailsdir))):
        base = os.path.join(r(jailsdir), n)
        if not os.path.isfile(os.path.join(base, "jail.conf")):
            continue
        rc = rcconf.read_all(os.path.join(base, "root", "etc", "rc.conf"))
        text = _read_text(os.path.join(base, "jail.conf"))
        m = re.search(r'osrelease = "([^"]+)"', text)
        ipm = re.search(r"inet ([0-9./]+)", rc.get("ifconfig_vnet0", ""))
        bridge = re.search(r'ifconfig (\S+) addm', text)
        kj = k["jails"].get(n) or {}
        fstab = _read_text(os.path.join(base, "fstab"))
        jails[n] = {"ip": ipm.group(1) if ipm else None, "gateway": rc.get("defaultrouter"),
                    "state": "Up" if kj.get("running") else "Down", "jid": kj.get("jid"),
                    "release": m.group(1) if m else None, "vnet": "vnet;" in text,
                    "bridge": bridge.group(1) if bridge else None,
                    "type": "thin" if ".bastille nullfs" in fstab else "thick",
                    "rc_conf": rc, "fstab": [x for x in fstab.splitlines() if x.strip()],
                    "jail_conf": text}
    return jails

"""Command doubles of the stand-in FreeBSD host (tests/standin).

Each FreeBSD command path inside the stand-in root is a tiny script that
calls :func:`dispatch` with its name.
"""

import contextlib
import importlib
import os
import stat

from .common import err, kernel, not_implemented, out, run_main


def zfs_main(args):
    """zfs(8): list -H -o FIELDS [-t TYPE] [NAME], snapshot NAME@SNAP, destroy NAME@SNAP.

    After FreeBSD cddl zfs(8) / zfs-list(8): without datasets `zfs list`
    prints "no datasets available" (stderr) and exits 0. A snapshot is
    readable, as ZFS presents it, at MOUNTPOINT/.zfs/snapshot/SNAP (zfsprops(7)
    `snapdir`: the control directory in the root of every file system): the
    double freezes a copy there and removes it with the snapshot.
    """
    if not args:
        not_implemented("zfs", args)
    verb, rest = args[0], args[1:]
    if verb == "list":
        fields, kind, names, header = ["name", "used", "avail", "refer", "mountpoint"], "filesystem", [], True
        i = 0
        while i < len(rest):
            a = rest[i]
            if a == "-H":
                header = False
            elif a == "-o" and i + 1 < len(rest):
                i += 1
                fields = rest[i].split(",")
            elif a == "-t" and i + 1 < len(rest):
                i += 1
                kind = rest[i]
            elif a.startswith("-"):
                not_implemented("zfs", args)
            else:
                names.append(a)
            i += 1
        if any(f not in ("name", "used", "avail", "refer", "mountpoint") for f in fields):
            not_implemented("zfs", args)
        with kernel() as k:
            ds = k["zfs"]["datasets"]
            snaps = k["zfs"]["snapshots"]
        items = []
        if kind in ("filesystem", "all"):
            items += [(n, ds[n]) for n in sorted(ds)]
        if kind in ("snapshot", "all"):
            items += [(s, "-") for s in snaps]
        if names:
            for n in names:
                if n not in ds and n not in snaps:
                    err(f"cannot open '{n}': dataset does not exist")
                    return 1
            items = [it for it in items if it[0] in names]
        if not items:
            err("no datasets available")
            return 0
        if header:
            out("\t".join(f.upper() for f in fields))
        for n, mp in items:
            vals = {"name": n, "used": "96K", "avail": "10G", "refer": "96K", "mountpoint": mp}
            out("\t".join(vals[f] for f in fields))
        return 0
    if verb in ("snapshot", "destroy") and len(rest) == 1 and "@" in rest[0]:
        name = rest[0]
        with kernel(write=True) as k:
            fs = name.split("@")[0]
            if fs not in k["zfs"]["datasets"]:
                err(f"cannot open '{fs}': dataset does not exist")
                return 1
            snaps = k["zfs"]["snapshots"]
            if verb == "snapshot":
                if name in snaps:
                    err(f"cannot create snapshot '{name}': dataset already exists")
                    return 1
                _freeze_snapshot(k["zfs"]["datasets"][fs], name.split("@", 1)[1])
                snaps.append(name)
            else:
                if name not in snaps:
                    err("could not find any snapshots to destroy; check snapshot names.")
                    return 1
                _drop_snapshot(k["zfs"]["datasets"][fs], name.split("@", 1)[1])
                snaps.remove(name)
        return 0
    not_implemented("zfs", args)
    return 64


def _snapshot_dir(mountpoint, snap):
    return os.path.join(mountpoint, ".zfs", "snapshot", snap)


def _freeze_snapshot(mountpoint, snap):
    """The file system as it is now, under its .zfs/snapshot/SNAP: links stay
    links, modes, owners and times are kept; .zfs itself is not in it."""
    if not os.path.isdir(mountpoint):
        return  # not mounted (a jail dataset before its first start): nothing to present
    import shutil  # only snapshots copy trees: not every double's start-up

    dest = _snapshot_dir(mountpoint, snap)

    def copy(src, dst):
        shutil.copy2(src, dst, follow_symlinks=False)
        st = os.lstat(src)
        os.lchown(dst, st.st_uid, st.st_gid)

    shutil.copytree(mountpoint, dest, symlinks=True, copy_function=copy,
                    ignore=lambda d, names: [".zfs"] if d == mountpoint else [])
    for dirpath, dirnames, _files in os.walk(dest):
        for d in dirnames:
            src = os.path.join(mountpoint, os.path.relpath(os.path.join(dirpath, d), dest))
            st = os.lstat(src)
            os.lchown(os.path.join(dirpath, d), st.st_uid, st.st_gid)
    st = os.lstat(mountpoint)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))


def _drop_snapshot(mountpoint, snap):
    """Removes the snapshot's directory; .zfs is hidden again once no snapshot is left (snapdir=hidden)."""
    import shutil

    shutil.rmtree(_snapshot_dir(mountpoint, snap), ignore_errors=True)
    for parent in (os.path.join(mountpoint, ".zfs", "snapshot"), os.path.join(mountpoint, ".zfs")):
        with contextlib.suppress(OSError):
            os.rmdir(parent)


def zpool_main(args):
    if args[:1] == ["list"]:
        err("no pools available")
        return 0
    not_implemented("zpool", args)
    return 64


def freebsd_version_main(args):
    """freebsd-version(1) [-k|-r|-u]: the stand-in reports 14.3-RELEASE."""
    if args and args[0] not in ("-k", "-r", "-u") or len(args) > 1:
        not_implemented("freebsd-version", args)
    with kernel() as k:
        out(k.get("release", "14.3-RELEASE"))
    return 0


# command -> (module of this package, its entry point).  Every call of a
# double is a process of its own: it imports only its own module, not every
# double (services.py alone pulls in http.server), which is most of a call's
# start-up time.
MAINS = {
    "sysrc": ("sysrc", "main"), "service": ("service", "main"),
    # rcnet adds the route/sysctl forms of the rc.d scripts, then hands over to net.py
    "ifconfig": ("net", "ifconfig_main"), "sysctl": ("rcnet", "sysctl_main"), "route": ("rcnet", "route_main"),
    "pfctl": ("pfctl", "main"), "rcorder": ("rcorder", "main"),
    "jls": ("jails", "jls_main"), "jexec": ("jails", "jexec_main"),
    "pkg": ("pkgpw", "pkg_main"), "pw": ("pkgpw", "pw_main"), "chpass": ("pkgpw", "chpass_main"),
    "daemon": ("procs", "daemon_main"), "lockf": ("procs", "lockf_main"), "timeout": ("procs", "timeout_main"),
    "bastille": ("bastille", "main"), "su": ("su", "main"),
    # services.py: the jails' daemons (base and packages) and devfs(8)
    "sshd": ("services", "sshd_main"), "devfs": ("services", "devfs_main"), "nginx": ("services", "nginx_main"),
    "ollama": ("services", "ollama_main"), "llama-server": ("services", "llama_server_main"),
    "pgrep": ("pgrep", "pgrep_main"), "pkill": ("pgrep", "pkill_main"), "newsyslog": ("newsyslog", "main"),
}
OWN = {"zfs": zfs_main, "zpool": zpool_main, "freebsd-version": freebsd_version_main}


def main_of(name):
    """The entry point of double ``name``, importing only the module that defines it."""
    if name in OWN:
        return OWN[name]
    module, entry = MAINS[name]
    return getattr(importlib.import_module(f".{module}", __name__), entry)


def dispatch(name, argv):
    return run_main(name, main_of(name), argv)

"""Real Linux namespaces behind the stand-in's simulated network and jails.

kernel.json says which interfaces, addresses and running jails exist; this
module makes real namespaces match it, so that packets between the stand-in
host and its VNET jails really flow (``psql -h 10.0.1.5`` connects) and a
jail's System V IPC follows its jail(8) parameters.  The machine's own
namespaces are never touched: the stand-in host has a network namespace of
its own (made by ``standin up``), every process of the stand-in runs in it,
and :func:`reconcile` refuses to act from anywhere else.

Namespace files (nsfs bind mounts, as unshare(1) --net=FILE makes them) live
in /.standin/ns of the stand-in root:

  host.net, host.ipc   the stand-in host's own (standin_host.up creates them)
  uplink.net           what lies behind the external interface: it holds the
                       default gateway's address, so the host's default route
                       has a carrier; it forwards nothing, so no packet leaves
  jail.NAME.net        a running VNET jail's network stack (jail(8) "vnet")
  jail.NAME.ipc        a running jail's System V IPC (jail(8) sysvmsg, sysvsem,
                       sysvshm; "inherit" of all three shares host.ipc instead)

FreeBSD interfaces and their Linux counterparts in host.net:
  lo0                  lo (Linux keeps the name; its address is 127.0.0.1/8 too)
  ether (vtnet0)       a veth whose peer is in uplink.net
  bridge (warden0)     a Linux bridge of the same name, same addresses and
                       up/down; if_bridge(4) "private" members are bridge ports
                       with "isolated on", which Linux defines the same way
                       (isolated ports do not forward to each other)
  a VNET jail's epair  veth: e0a_NAME in host.net, member of the jail's bridge;
                       e0b_NAME moved into jail.NAME.net and renamed there as the
                       jail's rc.conf says (ifconfig_e0b_NAME_name="vnet0",
                       Bastille 1.4.4 templates default/vnet), with the jail's
                       ifconfig_vnet0 address and defaultrouter
  epairs made by hand  (ifconfig epair create, not a jail's) are not mirrored

Interface names fit Linux's 15 characters: FreeBSD's IFNAMSIZ is 16 with the
NUL too (sys/net/if.h), and Bastille keeps e0a_NAME under 16 (create.sh).

The jail side is set up once, when the jail starts, from the jail's rc.conf
as the jail's rc would read it at boot (FreeBSD libexec/rc/rc.d/netif and
routing); editing the jail's rc.conf later changes nothing until a restart,
as on FreeBSD.  Linux errors of ``ip`` are not hidden: a failed step raises.
"""

import ipaddress
import json
import os
import subprocess

from .layout import host_tool

NS_DIR = "/.standin/ns"
HOST_NET = f"{NS_DIR}/host.net"
HOST_IPC = f"{NS_DIR}/host.ipc"
UPLINK_NET = f"{NS_DIR}/uplink.net"
# Linux ifalias of every link this module creates: links without it are not ours
MARK = "standin"


class NetnsError(Exception):
    pass


def jail_net(name):
    return f"{NS_DIR}/jail.{name}.net"


def uplink_peer(ifname):
    """Name of the far end of an external interface, in uplink.net."""
    return f"up_{ifname}"[:15]


def jail_ipc(name):
    return f"{NS_DIR}/jail.{name}.ipc"


def _run(argv, ns=None, ipc=None, check=True, input_text=None):
    if ns or ipc:
        argv = [host_tool("nsenter")] + ([f"--net={ns}"] if ns else []) + ([f"--ipc={ipc}"] if ipc else []) \
            + ["--"] + list(argv)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, input=input_text)
    if check and proc.returncode != 0:
        raise NetnsError("stand-in: {} failed: {}".format(" ".join(argv), proc.stderr.strip()))
    return proc


def ip(*args, ns=None, check=True):
    return _run([host_tool("ip")] + list(args), ns=ns, check=check)


def ip_json(*args, ns=None):
    text = ip("-j", *args, ns=ns).stdout.strip()
    return json.loads(text) if text else []


def _ns_inode(path):
    return os.stat(path).st_ino


def is_namespace(path):
    """True when ``path`` is a mounted namespace file (nsfs), not a plain file."""
    try:
        return os.path.ismount(path)
    except OSError:
        return False


def create_namespace(path, kinds=("net",)):
    """Create new namespaces of ``kinds`` kept alive by bind mounts on ``path``.kind files."""
    os.makedirs(NS_DIR, mode=0o700, exist_ok=True)
    for kind in kinds:
        target = path if len(kinds) == 1 else f"{path}.{kind}"
        with open(target, "a", encoding="utf-8"):
            pass
    if len(kinds) == 1:
        _run([host_tool("unshare"), f"--{kinds[0]}={path}", "true"])
    else:
        _run([host_tool("unshare")] + [f"--{k}={path}.{k}" for k in kinds] + ["true"])


def remove_namespace(path):
    """Drop the bind mount that keeps a namespace alive (its last process is gone)."""
    if is_namespace(path):
        _run([host_tool("umount"), path])
    if os.path.lexists(path):
        os.unlink(path)


def in_standin_host():
    """True only inside the stand-in host's own network namespace."""
    try:
        return is_namespace(HOST_NET) and _ns_inode(HOST_NET) == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


# ------------------------------------------------------------------ desired state

def _inet(addrs):
    return sorted(str(ipaddress.ip_interface(a)) for a in addrs)


def desired(k):
    """The part of kernel.json that real namespaces mirror (host side)."""
    links = {}
    members = {}
    for name, i in k["ifaces"].items():
        if i["kind"] == "bridge":
            links[name] = {"kind": "bridge", "inet": _inet(i["inet"]), "up": i["up"]}
            for m in i["members"]:
                members[m] = {"bridge": name, "isolated": m in i.get("private", [])}
        elif i["kind"] == "ether":
            links[name] = {"kind": "ether", "inet": _inet(i["inet"]), "up": i["up"]}
    jails = {}
    for name, j in k["jails"].items():
        if j.get("running"):
            jails[name] = {"vnet": bool(j.get("vnet")), "host_epair": j.get("host_epair"),
                           "bridge": j.get("bridge"), "path": j["path"]}
    return {"links": links, "members": members, "jails": jails,
            "default": k["routes"].get("default"), "default_if": k["routes"].get("default_if")}


# ------------------------------------------------------------------ reconcile

def reconcile(k):
    """Make the real namespaces match kernel state ``k`` (idempotent, acts on differences only).

    Called by common.kernel(write=True) after every change of the simulated
    kernel, and by ``standin up`` once.  Runs inside the stand-in host only.
    A step Linux refuses ends the double with its message and status 1; the
    next change of the kernel state tries the difference again.
    """
    try:
        _reconcile(k)
    except NetnsError as exc:
        from .common import Exit, err
        err(str(exc))
        raise Exit(1) from None


def _reconcile(k):
    if not is_namespace(HOST_NET):
        return  # a root without the stand-in host's namespaces: no real network to follow
    if not in_standin_host():
        raise NetnsError("stand-in: the network namespaces can only be changed from inside the stand-in "
                         "host's own network namespace (/.standin/ns/host.net)")
    want = desired(k)
    _drop_stopped_jails(want)
    live = _live()
    _sync_links(want, live)
    for name, j in want["jails"].items():
        _ensure_jail(name, j, live)
    live = _live()
    _sync_members(want, live)
    _sync_default_route(want)


def _live(ns=None):
    """Links of a namespace with their addresses and details (bridge port flags)."""
    return {link["ifname"]: link for link in ip_json("-d", "addr", "show", ns=ns)}


def _del_link(name, ns=None):
    """Delete a link; one already gone is fine (the kernel removes a veth whose
    peer's namespace it tears down, asynchronously after the last reference)."""
    proc = ip("link", "del", name, ns=ns, check=False)
    if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
        raise NetnsError(f"stand-in: ip link del {name} failed: {proc.stderr.strip()}")


def _ours(link):
    return link.get("ifalias") == MARK


def _live_inet(link):
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet")


def _sync_addresses(name, want_inet, link, ns=None):
    have = _live_inet(link) if link else []
    for a in have:
        if a not in want_inet:
            ip("addr", "del", a, "dev", name, ns=ns)
    for a in want_inet:
        if a not in have:
            ip("addr", "add", a, "dev", name, ns=ns)


def _set_up(name, up, link, ns=None):
    is_up = bool(link) and "UP" in link.get("flags", [])
    if up != is_up:
        ip("link", "set", name, "up" if up else "down", ns=ns)


def _sync_links(want, live):
    if "lo" in live:
        _set_up("lo", True, live["lo"])
    jail_epairs = {j["host_epair"] for j in want["jails"].values() if j["host_epair"]}
    for name, link in live.items():
        if _ours(link) and name not in want["links"] and name not in jail_epairs:
            _del_link(name)
    for name, spec in want["links"].items():
        link = live.get(name)
        kind = link.get("linkinfo", {}).get("info_kind") if link else None
        wanted_kind = "bridge" if spec["kind"] == "bridge" else "veth"
        if link and (kind != wanted_kind or not _ours(link)):
            _del_link(name)
            link = None
        if link is None:
            if spec["kind"] == "bridge":
                ip("link", "add", name, "type", "bridge")
            else:
                _ensure_uplink()
                ip("link", "add", name, "type", "veth", "peer", "name", uplink_peer(name), "netns", UPLINK_NET)
                ip("link", "set", uplink_peer(name), "up", ns=UPLINK_NET)
            ip("link", "set", name, "alias", MARK)
        _sync_addresses(name, spec["inet"], link)
        _set_up(name, spec["up"], link)


def _ensure_uplink():
    if not is_namespace(UPLINK_NET):
        create_namespace(UPLINK_NET)
        ip("link", "set", "lo", "up", ns=UPLINK_NET)


def _sync_default_route(want):
    gw, dev = want["default"], want["default_if"]
    routes = ip_json("route", "show", "default")
    have = routes[0].get("gateway") if routes else None
    if not gw or dev not in want["links"] or not want["links"][dev]["inet"]:
        if have:
            ip("route", "del", "default")
        return
    net = ipaddress.ip_interface(want["links"][dev]["inet"][0]).network
    if want["links"][dev]["kind"] == "ether" and ipaddress.ip_address(gw) in net:
        # the uplink peer answers for the gateway (nothing behind it forwards)
        peer = uplink_peer(dev)
        have_peer = [f"{a['local']}/{a['prefixlen']}" for link in ip_json("addr", "show", peer, ns=UPLINK_NET)
                     for a in link.get("addr_info", []) if a.get("family") == "inet"]
        if f"{gw}/{net.prefixlen}" not in have_peer:
            for a in have_peer:
                ip("addr", "del", a, "dev", peer, ns=UPLINK_NET)
            ip("addr", "add", f"{gw}/{net.prefixlen}", "dev", peer, ns=UPLINK_NET)
    if have != gw:
        ip("route", "replace", "default", "via", gw, "dev", dev, "onlink")


def _sync_members(want, live):
    for name, link in live.items():
        if link.get("master") and name not in want["members"]:
            ip("link", "set", name, "nomaster")  # ifconfig BRIDGE deletem NAME
    for name, m in want["members"].items():
        link = live.get(name)
        if not link:
            continue  # a member Linux does not have (an epair made by hand)
        if link.get("master") != m["bridge"]:
            ip("link", "set", name, "master", m["bridge"])
        isolated = link.get("linkinfo", {}).get("info_slave_data", {}).get("isolated", False)
        if isolated != m["isolated"]:
            ip("link", "set", name, "type", "bridge_slave", "isolated", "on" if m["isolated"] else "off")


# ------------------------------------------------------------------ jails

def jail_network(j):
    """Interface name, address and default router of a VNET jail, from its rc.conf."""
    from . import rcconf
    rc = rcconf.read_all(os.path.join(j["path"], "etc", "rc.conf"))
    jail_ep = "e0b" + j["host_epair"][3:]
    ifname = rc.get(f"ifconfig_{jail_ep}_name") or jail_ep
    inet = None
    words = rc.get(f"ifconfig_{ifname}", "").split()
    if "inet" in words and words.index("inet") + 1 < len(words):
        inet = str(ipaddress.ip_interface(words[words.index("inet") + 1]))
    router = rc.get("defaultrouter", "NO")
    return {"epair": jail_ep, "ifname": ifname, "inet": inet,
            "defaultrouter": None if router.upper() in ("NO", "") else router}


def _ensure_jail(name, j, live):
    if not j["vnet"]:
        return  # a jail without vnet shares the host's network stack (jail(8) "vnet" unset)
    path = jail_net(name)
    if is_namespace(path):
        return
    net = jail_network(j)
    create_namespace(path)
    ip("link", "set", "lo", "up", ns=path)
    host_ep = j["host_epair"]
    if host_ep in live:
        _del_link(host_ep)
    ip("link", "add", host_ep, "type", "veth", "peer", "name", net["epair"], "netns", path)
    ip("link", "set", host_ep, "alias", MARK)
    ip("link", "set", host_ep, "up")
    if net["ifname"] != net["epair"]:
        ip("link", "set", net["epair"], "name", net["ifname"], ns=path)
    if net["inet"]:
        ip("addr", "add", net["inet"], "dev", net["ifname"], ns=path)
    ip("link", "set", net["ifname"], "up", ns=path)
    if net["defaultrouter"]:
        ip("route", "add", "default", "via", net["defaultrouter"], "dev", net["ifname"], "onlink", ns=path)


def _drop_stopped_jails(want):
    """Release the namespaces of jails that no longer run (their processes are gone).

    The host end of a stopped jail's veth goes with its namespace; whatever is
    left of it is deleted by _sync_links as a link of ours nobody wants.
    """
    if not os.path.isdir(NS_DIR):
        return
    for entry in sorted(os.listdir(NS_DIR)):
        name, _dot, kind = entry[len("jail."):].rpartition(".")
        if entry.startswith("jail.") and kind in ("net", "ipc") and name not in want["jails"]:
            remove_namespace(os.path.join(NS_DIR, entry))


# ------------------------------------------------------------------ System V IPC

# Linux limits that make a module's calls fail inside an IPC namespace: with
# kernel.shmmni 0 shmget(2) fails with ENOSPC, kernel.sem's SEMMNI 0 makes
# semget(2) fail with ENOSPC, kernel.msgmni 0 makes msgget(2) fail with
# ENOSPC.  FreeBSD returns ENOSYS in a jail without the module
# (sys/kern/sysv_shm.c sys_shmget: "if (shm_find_prison(td->td_ucred) ==
# NULL) return (ENOSYS);", likewise sysv_sem.c and sysv_msg.c): the call
# fails at the same point, with Linux's errno ("No space left on device"
# where FreeBSD says "Function not implemented").
IPC_OFF = {"sysvshm": (("kernel/shmmni", "0"), ("kernel/shmall", "0")),
           "sysvsem": (("kernel/sem", "250 32000 32 0"),),
           "sysvmsg": (("kernel/msgmni", "0"),)}


def ensure_jail_ipc(name, params):
    """The IPC namespace a jail's processes enter, made to follow its sysv* parameters.

    ``params`` maps sysvmsg/sysvsem/sysvshm to "disable", "new" or "inherit"
    (jail(8)).  Returns the namespace file, or HOST_IPC when all three
    inherit.  One namespace holds all three modules (Linux cannot split
    them), so a mix of "inherit" with "new" or "disable" is refused.
    """
    values = set(params.values())
    if values == {"inherit"}:
        return HOST_IPC
    if "inherit" in values:
        raise NetnsError("stand-in: a jail with sysvmsg/sysvsem/sysvshm partly \"inherit\" is not implemented "
                         f"({json.dumps(params, sort_keys=True)})")
    path = jail_ipc(name)
    if not is_namespace(path):
        create_namespace(path, kinds=("ipc",))
        script = "".join(f"echo '{value}' > /proc/sys/{key}\n"
                         for module, mode in sorted(params.items()) if mode == "disable"
                         for key, value in IPC_OFF[module])
        if script:
            _run(["/bin/sh", "-e", "-c", script], ipc=path)
    return path


def drop_jail_ipc(name):
    remove_namespace(jail_ipc(name))


# ------------------------------------------------------------------ entering

_CLONE = {"net": 0x40000000, "ipc": 0x08000000}


def enter(path, kind):
    """setns(2) the calling process into the namespace file ``path``."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE[kind]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)

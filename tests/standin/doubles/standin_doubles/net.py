"""ifconfig(8), sysctl(8) and route(8) doubles over the simulated kernel.

ifconfig forms (after FreeBSD sbin/ifconfig/ifconfig.c, ifclone.c, ifbridge.c,
ifgroup.c, af_inet.c and the kernel's sys/net/if.c, if_clone.c, if_bridge.c,
netinet/in.c):
  ifconfig [-a] | -l | -g GROUP | IF       status in attach (if_index) order
  ifconfig DRIVER[N] create [WORDS...]      cloners: bridge, epair, lo, tap, pflog; prints
                                            the new name (or the final one after "name")
  ifconfig IF WORDS...                      WORDS, applied left to right:
      [inet] A[/len] [netmask M] [alias|add|-alias|delete]   (address deferred to the end)
      name NEW | destroy | up | down | mtu N | ether MAC
      addm M | deletem M | private M | -private M
      group G | -group G | description TEXT | -description
  Errors are FreeBSD's err(3) texts with exit 1; anything else is not implemented.
sysctl forms: sysctl [-n] name...; sysctl name=value... (a small known table)
  unknown: "sysctl: unknown oid 'NAME'", exit 1
route forms: route -n get [-inet] default
"""
import copy
import ipaddress
import re
import socket

from .common import err, getopt_strict, kernel, not_implemented, out

SYSCTL_DEFAULTS = {
    "net.inet.ip.forwarding": "0",
    "net.inet6.ip6.forwarding": "0",
    "net.link.bridge.pfil_member": "1",
    "net.link.bridge.pfil_bridge": "1",
    "net.link.bridge.pfil_onlyip": "1",
    "net.link.bridge.pfil_local_phys": "0",
    "security.jail.jailed": "0",
    "kern.ostype": "FreeBSD",
    "kern.osrelease": "14.3-RELEASE",
    "kern.hostname": None,
    "hw.ncpu": "2",
    "hw.machine": "amd64",
    "hw.machine_arch": "amd64",
    "hw.physmem": "4294967296",
    "hw.pagesize": "4096",
    "vm.stats.vm.v_page_count": "1048576",
    "vm.stats.vm.v_free_count": "524288",
    "kern.boottime": "{ sec = 1700000000, usec = 0 } Tue Nov 14 22:13:20 2023",
}
READ_ONLY = {"security.jail.jailed", "kern.ostype", "kern.osrelease", "hw.ncpu", "hw.machine",
             "hw.machine_arch", "hw.physmem", "hw.pagesize", "vm.stats.vm.v_page_count",
             "vm.stats.vm.v_free_count", "kern.boottime"}


# Interface drivers the stand-in knows, as if_clone(9) cloners: kind and the
# group if_clone attaches to every interface it creates (sys/net/if_clone.c
# if_clone_createif(): if_addgroup(ifp, ifc->ifc_name)).
CLONERS = {"bridge": "bridge", "epair": "epair", "lo": "loopback", "tap": "tap", "pflog": "pflog"}
# if_bridge(4) accepts Ethernet-like members only (sys/net/if_bridge.c
# bridge_ioctl_add(): IFT_ETHER, IFT_L2VLAN, IFT_GIF, else EINVAL).
BRIDGEABLE = ("ether", "epair", "tap")
IFNAMSIZ = 16  # sys/net/if.h, including the terminating NUL
# errno texts as strerror(3) prints them on FreeBSD (lib/libc/gen/errlst.c)
ENOENT = "No such file or directory"
EEXIST = "File exists"
EBUSY = "Device busy"
EINVAL = "Invalid argument"
ENAMETOOLONG = "File name too long"
EADDRNOTAVAIL = "Can't assign requested address"


def new_iface(name, kind, groups=None, cloned=False, unit=None):
    """A fresh interface record of the simulated kernel (down, no address)."""
    n = sum(ord(c) for c in name)
    return {"kind": kind, "cloned": cloned, "unit": unit or name, "up": False, "mtu": 1500, "inet": [],
            "members": [], "private": [], "description": "",
            "groups": groups if groups is not None else ([kind] if kind in ("bridge", "epair", "tap", "pflog") else []),
            "ether": f"58:9c:fc:{n % 256:02x}:{(n * 7) % 256:02x}:{len(name):02x}"}


def _ifindex(i):
    # the stand-in's first interfaces predate the counter: FreeBSD attaches the
    # NIC before lo0, so vtnet0 is index 1 and lo0 index 2
    return i.get("index") or {"ether": 1, "loopback": 2}.get(i["kind"], 3)


def by_index(ifaces):
    """Interfaces in attach order, as ifconfig -a / -l list them (if_index)."""
    return sorted(ifaces.items(), key=lambda item: (_ifindex(item[1]), item[0]))


def _fmt_iface(name, i, ifaces):
    flags = ["UP"] if i["up"] else []
    if i["kind"] == "pflog":
        # if_pflog.c: no link address, no inet6; RUNNING follows UP
        code = 41 if i["up"] else 0
        flags += ["RUNNING"] if i["up"] else []
        lines = [f"{name}: flags={code}<{','.join(flags)}> metric 0 mtu {i['mtu']}"]
        if i["description"]:
            lines.append("\tdescription: {}".format(i["description"]))
        lines.append("\tgroups: {}".format(" ".join(i["groups"])))
        return "\n".join(lines)
    if i["kind"] == "loopback":
        flags += ["LOOPBACK", "RUNNING", "MULTICAST"]
        code = 8049 if i["up"] else 8008
    else:
        flags += ["BROADCAST"] + (["RUNNING"] if i["up"] else []) + ["SIMPLEX", "MULTICAST"]
        code = 8843 if i["up"] else 8802
    lines = [f"{name}: flags={code}<{','.join(flags)}> metric 0 mtu {i['mtu']}"]
    if i["description"]:
        lines.append("\tdescription: {}".format(i["description"]))
    if i["kind"] != "loopback":
        lines.append("\tether {}".format(i["ether"]))
    for a in i["inet"]:
        iface = ipaddress.ip_interface(a)
        # af_inet.c in_status_nl(): "netmask 0x%lx", broadcast unless /0
        mask = f"0x{int(iface.network.netmask):08x}"
        if i["kind"] == "loopback" or iface.network.prefixlen == 0:
            lines.append(f"\tinet {iface.ip} netmask {mask}")
        else:
            lines.append(f"\tinet {iface.ip} netmask {mask} broadcast {iface.network.broadcast_address}")
    if i["kind"] == "bridge":
        # sbin/ifconfig/ifbridge.c bridge_status() and bridge_interfaces()
        lines.append("\tid {} priority 32768 hellotime 2 fwddelay 15".format(i["ether"]))
        lines.append("\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200")
        lines.append("\troot id {} priority 32768 ifcost 0 port 0".format(i["ether"]))
        for m in i["members"]:
            mflags = "143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>"
            if m in i["private"]:
                mflags = "163<LEARNING,DISCOVER,PRIVATE,AUTOEDGE,AUTOPTP>"
            port = _ifindex(ifaces[m]) if m in ifaces else 0
            lines.append(f"\tmember: {m} flags={mflags}")
            lines.append(f"\t        port {port} priority 128 path cost 2000")
    if i["groups"]:
        lines.append("\tgroups: {}".format(" ".join(i["groups"])))
    if i["kind"] in ("ether", "epair", "tap"):
        lines.append("\tmedia: Ethernet autoselect")
    lines.append("\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>")
    return "\n".join(lines)


class IfconfigError(Exception):
    """err(3)/errx(3) of ifconfig: the message (without "ifconfig: "), exit 1."""


def _fail(msg):
    raise IfconfigError(msg)


def bridge_of(ifaces, name):
    for bname, b in ifaces.items():
        if b["kind"] == "bridge" and name in b["members"]:
            return bname
    return None


def _next_unit(ifaces, driver):
    # if_clone(9) hands out the lowest free unit; a renamed interface keeps its
    # unit (if_dunit), so "bridge0 renamed warden0" still holds unit 0
    taken = {i.get("unit", n) for n, i in ifaces.items()}
    n = 0
    while f"{driver}{n}" in taken or f"{driver}{n}a" in taken:
        n += 1
    return n


def _clone_create(k, name):
    """SIOCIFCREATE2 for NAME (a driver, or driver+unit); returns the new name."""
    ifaces = k["ifaces"]
    m = re.match(r"^([a-z]+)([0-9]*)$", name)
    if not m or m.group(1) not in CLONERS:
        # if_clone.c if_clone_create(): no cloner matches the name
        _fail(f"SIOCIFCREATE2 ({name}): {EINVAL}")
    driver, unit = m.group(1), m.group(2)
    if unit == "":
        unit = str(_next_unit(ifaces, driver))
    elif f"{driver}{unit}" in {i.get("unit", n) for n, i in ifaces.items()} or f"{driver}{unit}" in ifaces:
        # if_clone.c ifc_name2unit()/ifc_alloc_unit(): the unit is in use
        _fail(f"SIOCIFCREATE2 ({name}): {EEXIST}")
    kind = CLONERS[driver]

    def attach(ifname, pair=None):
        index = k.get("next_ifindex", 3)
        k["next_ifindex"] = index + 1
        i = new_iface(ifname, kind, groups=[driver], cloned=True, unit=f"{driver}{unit}")
        i["index"] = index
        if pair:
            i["pair"] = pair
        if kind == "loopback":
            i["mtu"] = 16384
        if kind == "pflog":
            i["mtu"] = 33160  # sys/netpfil/pf/if_pflog.c: PFLOGMTU (32768 + MHLEN + MLEN)
        ifaces[ifname] = i

    if driver == "epair":
        # sys/net/if_epair.c: one create makes both ends, epairNa and epairNb
        attach(f"epair{unit}a", pair=f"epair{unit}")
        attach(f"epair{unit}b", pair=f"epair{unit}")
        return f"epair{unit}a"
    attach(f"{driver}{unit}")
    return f"{driver}{unit}"


def _destroy(ifaces, name):
    i = ifaces[name]
    # sys/net/if_clone.c if_clone_destroy(): only a cloner's interface can go;
    # lo0 is refused by if_loop.c lo_clone_destroy() (unit 0)
    if not i.get("cloned") or i.get("unit") == "lo0":
        _fail(f"SIOCIFDESTROY: {EINVAL}")
    gone = [n for n, x in ifaces.items() if i.get("pair") and x.get("pair") == i["pair"]] or [name]
    for n in gone:
        # bridge_ifdetach(): a member leaving the system leaves its bridge
        for other in ifaces.values():
            if n in other["members"]:
                other["members"].remove(n)
            if n in other["private"]:
                other["private"].remove(n)
        del ifaces[n]


def _rename(ifaces, name, new):
    # sys/net/if.c ifhwioctl(SIOCSIFNAME): copyinstr(..., IFNAMSIZ) and
    # if_rename(): empty name EINVAL, existing name EEXIST
    if len(new) >= IFNAMSIZ:
        _fail(f"ioctl SIOCSIFNAME (set name): {ENAMETOOLONG}")
    if new == "":
        _fail(f"ioctl SIOCSIFNAME (set name): {EINVAL}")
    if new == name:
        return name
    if new in ifaces:
        _fail(f"ioctl SIOCSIFNAME (set name): {EEXIST}")
    ifaces[new] = ifaces.pop(name)
    for other in ifaces.values():
        other["members"] = [new if m == name else m for m in other["members"]]
        other["private"] = [new if m == name else m for m in other["private"]]
    return new


def _bridge_op(ifaces, name, word, member):
    """ifbridge.c addm/deletem/private/-private against if_bridge.c's checks."""
    bridge = ifaces[name]
    if word == "addm":
        # if_bridge.c bridge_ioctl_add(); ifbridge.c setbridge_add(): err "BRDGADD %s"
        if bridge["kind"] != "bridge":
            _fail(f"BRDGADD {member}: {EINVAL}")  # not a bridge: the driver's ioctl refuses SIOCSDRVSPEC
        if member not in ifaces:
            _fail(f"BRDGADD {member}: {ENOENT}")
        owner = bridge_of(ifaces, member)
        if owner == name:
            _fail(f"BRDGADD {member}: {EEXIST}")
        if owner is not None:
            _fail(f"BRDGADD {member}: {EBUSY}")
        if ifaces[member]["kind"] not in BRIDGEABLE:
            _fail(f"BRDGADD {member}: {EINVAL}")
        # the first member defines the bridge's MTU, later ones must match it
        if not bridge["members"]:
            bridge["mtu"] = ifaces[member]["mtu"]
        elif ifaces[member]["mtu"] != bridge["mtu"]:
            _fail(f"BRDGADD {member}: {EINVAL}")
        bridge["members"].append(member)
        return
    if bridge["kind"] != "bridge" or member not in bridge["members"]:
        # bridge_lookup_member() fails: ENOENT (deletem: "BRDGDEL %s";
        # private: do_bridgeflag() "unable to get bridge flags")
        errno = ENOENT if bridge["kind"] == "bridge" else EINVAL
        _fail(f"BRDGDEL {member}: {errno}" if word == "deletem" else f"unable to get bridge flags: {errno}")
    if word == "deletem":
        bridge["members"].remove(member)
        if member in bridge["private"]:
            bridge["private"].remove(member)
    elif word == "private":
        if member not in bridge["private"]:
            bridge["private"].append(member)
    elif member in bridge["private"]:
        bridge["private"].remove(member)


def _ip(text):
    """af_inet.c in_getip(): inet_aton(3), then a host name lookup."""
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        pass
    if re.fullmatch(r"[0-9A-Fa-fx.:/]*", text):
        # numeric forms inet_aton refuses (999.0.1.1, IPv6 fe80::1) do not
        # resolve as host names either: errx(1, "%s: bad value")
        _fail(f"{text}: bad value")
    not_implemented("ifconfig", ["(host name lookup)", text])
    return None


def _addr_with_prefix(text):
    """af_inet.c in_getaddr(ADDR): "A/len" with len 0-32 (strtonum), else A."""
    if "/" not in text:
        return _ip(text), None
    addr, width = text.rsplit("/", 1)
    if not width[:1].isdigit() or not width.isdigit():
        _fail(f"{text}: bad value (width invalid)")
    if int(width) > 32:
        _fail(f"{text}: bad value (width too large)")
    return _ip(addr), int(width)


def _classful(ip):
    # af_inet.c in_setdefaultmask_nl(): the historical class A/B/C mask
    first = int(ip) >> 24
    return 8 if first < 128 else 16 if first < 192 else 24


class _Call:
    """One ifconfig invocation: the globals ifconfig.c keeps while parsing."""

    def __init__(self, name):
        self.name = name
        self.printifname = False
        self.addr = None        # in_add.addr (or in_del.addr after -alias)
        self.plen = None        # set by A/len or netmask
        self.doalias = 0        # 0 plain, 1 alias/add, -1 -alias/delete
        self.setaddr = False


NEXTARG = ("name", "description", "descr", "mtu", "group", "-group", "addm", "deletem", "private", "-private",
           "netmask", "ether", "lladdr")


def _configure(k, call, args):
    ifaces = k["ifaces"]
    rest = list(args)
    # ifconfig.c main(): an address family may follow the interface name
    if rest and rest[0] == "inet":
        rest.pop(0)
    elif rest and rest[0] in ("inet6", "link", "ether"):
        not_implemented("ifconfig", [call.name] + list(args))
    while rest:
        word = rest.pop(0)
        if word in NEXTARG:
            if not rest:
                _fail(f"'{word}' requires argument")
            value = rest.pop(0)
        if call.name not in ifaces:
            _fail(f"interface {call.name} does not exist")
        i = ifaces[call.name]
        if word == "name":
            call.name = _rename(ifaces, call.name, value)
            call.printifname = True  # setifname()
        elif word in ("destroy", "unplumb"):
            _destroy(ifaces, call.name)
        elif word in ("up", "down"):
            i["up"] = word == "up"
        elif word in ("alias", "add"):
            call.doalias = 1  # notealias(IFF_UP)
        elif word in ("-alias", "delete"):
            call.doalias = -1  # notealias(-IFF_UP): the address given so far is the one to delete
        elif word == "netmask":
            call.plen = bin(int(_ip(value))).count("1")  # in_getaddr(MASK): __bitcount32(mask)
        elif word in ("addm", "deletem", "private", "-private"):
            _bridge_op(ifaces, call.name, word, value)
        elif word == "group":
            # ifgroup.c setifgroup(); if.c if_addgroup() EEXIST
            if value[-1:].isdigit():
                _fail("setifgroup: group names may not end in a digit")
            if value in i["groups"]:
                _fail(f"SIOCAIFGROUP: {EEXIST}")
            i["groups"].append(value)
        elif word == "-group":
            if value[-1:].isdigit():
                _fail("unsetifgroup: group names may not end in a digit")
            if value not in i["groups"]:
                _fail(f"SIOCDIFGROUP: {ENOENT}")
            i["groups"].remove(value)
        elif word in ("description", "descr"):
            i["description"] = value
        elif word in ("-description", "-descr"):
            i["description"] = ""
        elif word == "mtu" and value.isdigit():
            i["mtu"] = int(value)
        elif word in ("ether", "lladdr") and re.fullmatch(r"([0-9a-fA-F]{1,2}:){5}[0-9a-fA-F]{1,2}", value):
            i["ether"] = ":".join(f"{int(x, 16):02x}" for x in value.split(":"))
        elif word not in NEXTARG and not word.startswith("-") and not call.setaddr:
            # ifconfig.c: an unknown word is the address (setifaddr)
            call.setaddr = True
            if call.doalias < 0:
                call.addr, call.plen = _ip(word), None  # RIDADDR: no "/len" parsing
            else:
                call.addr, width = _addr_with_prefix(word)
                if width is not None:
                    call.plen = width
        else:
            not_implemented("ifconfig", [call.name] + list(args))
    _apply_address(ifaces, call)


def _apply_address(ifaces, call):
    """ifconfig.c's deferred SIOCDIFADDR / SIOCAIFADDR after all words."""
    if not call.setaddr:
        if call.plen is not None:
            not_implemented("ifconfig", [call.name, "netmask without an address"])
        return
    i = ifaces[call.name]
    ip = str(call.addr)
    if call.doalias < 0:
        match = [a for a in i["inet"] if a.split("/")[0] == ip]
        if not match:
            _fail(f"ioctl (SIOCDIFADDR): {EADDRNOTAVAIL}")
        i["inet"].remove(match[0])
        return
    if call.plen is None:
        # af_inet.c in_postproc(): warn_nomask() unless loopback, then the classful mask
        if i["kind"] != "loopback":
            err("ifconfig: WARNING: setting interface address without mask is deprecated,\n"
                "default mask may not be correct.")
        call.plen = _classful(call.addr)
    if call.doalias == 0 and i["inet"]:
        # a plain "inet A" first deletes the interface's first address (clearaddr)
        i["inet"].pop(0)
    # netinet/in.c in_aifaddr_ioctl(): an address the interface already has is
    # deleted and added again, so "alias" with another prefix updates its mask
    i["inet"] = [a for a in i["inet"] if a.split("/")[0] != ip]
    i["inet"].append(f"{ip}/{call.plen}")


def interfaces_saved(k, before):
    """The one place where ifconfig's changes reach the kernel state.

    ``before`` is the interface table as it was when the call started;
    k["ifaces"] is what the call left (on failure, what it did up to the
    error, as on FreeBSD).  Anything that mirrors interfaces elsewhere hooks
    in here.
    """
    del before


def ifconfig_apply(k, args):
    """Run one ifconfig command line against kernel state ``k``.

    Returns (status, names to print); prints errors.  Used by ifconfig_main
    and by doubles that run ifconfig lines (jail.conf exec.prestart).
    """
    call = _Call(args[0])
    rest = args[1:]
    status = 0
    try:
        if rest[:1] in (["create"], ["plumb"]):
            # ifclone.c: create first, the remaining words apply to the new interface
            new = _clone_create(k, call.name)
            if new != call.name:
                call.name, call.printifname = new, True
            rest = rest[1:]
        elif call.name not in k["ifaces"]:
            _fail(f"interface {call.name} does not exist")
        _configure(k, call, rest)
    except IfconfigError as exc:
        err(f"ifconfig: {exc}")
        status = 1
    # ifconfig.c main(): atexit(printifnamemaybe) prints the name even after err()
    return status, [call.name] if call.printifname else []


def ifconfig_main(args):
    if not args or args == ["-a"]:
        with kernel() as k:
            ifaces = k["ifaces"]
            out("\n".join(_fmt_iface(n, i, ifaces) for n, i in by_index(ifaces)))
        return 0
    if args == ["-l"]:
        with kernel() as k:
            out(" ".join(n for n, _i in by_index(k["ifaces"])))
        return 0
    if len(args) == 2 and args[0] == "-g":
        with kernel() as k:
            for n, i in by_index(k["ifaces"]):
                if args[1] in i["groups"]:
                    out(n)
        return 0
    if args[0].startswith("-"):
        not_implemented("ifconfig", args)
    if len(args) == 1:
        with kernel() as k:
            if args[0] not in k["ifaces"]:
                err(f"ifconfig: interface {args[0]} does not exist")
                return 1
            out(_fmt_iface(args[0], k["ifaces"][args[0]], k["ifaces"]))
        return 0
    with kernel(write=True) as k:
        before = copy.deepcopy(k["ifaces"])
        try:
            status, names = ifconfig_apply(k, args)
        finally:
            interfaces_saved(k, before)
    for n in names:
        out(n)
    return status


def sysctl_main(args):
    # After FreeBSD sbin/sysctl/sysctl.c: -n prints values only, -e separates
    # name and value with '=' instead of ': ', -i ignores unknown names (parse()
    # returns 0 for them), -q prints nothing on a set.  A set prints
    # "name: old -> new" (show_var of the old value, then the new one).
    opts, args = getopt_strict("sysctl", args, "einq")
    flags = {flag for flag, _value in opts}
    only_value, sep = "-n" in flags, "=" if "-e" in flags else ": "
    ignore_unknown, quiet = "-i" in flags, "-q" in flags
    if not args or any(a.startswith("-") for a in args):
        not_implemented("sysctl", args)
    status = 0
    with kernel(write=any("=" in a for a in args)) as k:
        table = dict(SYSCTL_DEFAULTS)
        table["kern.hostname"] = k.get("hostname", "standin")
        table.update(k["sysctl"])
        for a in args:
            name, value = a.split("=", 1) if "=" in a else (a, None)
            if name not in table:
                if not ignore_unknown:
                    err(f"sysctl: unknown oid '{name}'")
                    status = 1
                continue
            if value is None:
                out(table[name] if only_value else f"{name}{sep}{table[name]}")
                continue
            if name in READ_ONLY:
                err(f"sysctl: oid '{name}' is read only")
                status = 1
                continue
            old = table[name]
            k["sysctl"][name] = value
            if not quiet:
                out(f"{old} -> {value}" if only_value else f"{name}{sep}{old} -> {value}")
    return status


def route_main(args):
    if args == ["-n", "get", "-inet6", "default"]:
        err("route: route has not been found")
        return 1
    if args not in (["-n", "get", "default"], ["-n", "get", "-inet", "default"]):
        not_implemented("route", args)
    with kernel() as k:
        gw = k["routes"].get("default")
        ifname = k["routes"].get("default_if", "")
    if not gw:
        err("route: route has not been found")
        return 1
    # after FreeBSD sbin/route/route.c print_getmsg()
    out("   route to: default")
    out("destination: default")
    out("       mask: default")
    out(f"    gateway: {gw}")
    out("        fib: 0")
    out(f"  interface: {ifname}")
    out("      flags: <UP,GATEWAY,DONE,STATIC>")
    out(" recvpipe  sendpipe  ssthresh  rtt,msec    mtu        weight    expire")
    out("       0         0         0         0      1500         1         0 ")
    return 0

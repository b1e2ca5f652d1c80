"""ifconfig(8), sysctl(8) and route(8) doubles over the simulated kernel.

ifconfig forms (after FreeBSD sbin/ifconfig/ifconfig.c, ifbridge.c, ifgroup.c):
  ifconfig [-a]                 every interface, FreeBSD format
  ifconfig -l                   names on one line
  ifconfig -g GROUP             members of an interface group (e.g. bridge)
  ifconfig IF                   one interface ("ifconfig: interface IF does not exist", exit 1)
  ifconfig bridge create | bridgeN create      prints the new name
  ifconfig epair create                        prints epairNa
  ifconfig IF name NEW                         prints NEW
  ifconfig IF destroy
  ifconfig IF [inet A/N [alias|-alias]] [alias A/N] [-alias A] [up|down]
               [addm M] [deletem M] [private M] [-private M] [group G] [-group G]
               [description TEXT] [mtu N]
sysctl forms: sysctl [-n] name...; sysctl name=value... (a small known table)
  unknown: "sysctl: unknown oid 'NAME'", exit 1
route forms: route -n get [-inet] default
"""

import ipaddress

from .common import Exit, err, kernel, not_implemented, out

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


def new_iface(name, kind, groups=None):
    n = sum(ord(c) for c in name)
    return {"kind": kind, "up": False, "mtu": 1500, "inet": [], "members": [], "private": [],
            "groups": groups if groups is not None else ([kind] if kind in ("bridge", "epair") else []),
            "description": "", "ether": f"58:9c:fc:{n % 256:02x}:{(n * 7) % 256:02x}:{len(name):02x}"}


def _fmt_iface(name, i):
    flags = ["UP"] if i["up"] else []
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
        mask = f"0x{int(iface.network.netmask):08x}"
        if i["kind"] == "loopback":
            lines.append(f"\tinet {iface.ip} netmask {mask}")
        else:
            lines.append(f"\tinet {iface.ip} netmask {mask} broadcast {iface.network.broadcast_address}")
    if i["kind"] == "bridge":
        lines.append("\tid {} priority 32768 hellotime 2 fwddelay 15".format(i["ether"]))
        lines.append("\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200")
        lines.append("\troot id {} priority 32768 ifcost 0 port 0".format(i["ether"]))
        for port, m in enumerate(i["members"], start=1):
            mflags = "143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>"
            if m in i["private"]:
                mflags = "163<LEARNING,DISCOVER,PRIVATE,AUTOEDGE,AUTOPTP>"
            lines.append(f"\tmember: {m} flags={mflags}")
            lines.append(f"\t        port {port} priority 128 path cost 2000")
    if i["groups"]:
        lines.append("\tgroups: {}".format(" ".join(i["groups"])))
    lines.append("\tmedia: Ethernet autoselect" if i["kind"] in ("ether", "epair") else "")
    lines.append("\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>")
    return "\n".join(x for x in lines if x)


def _next_name(ifaces, prefix):
    n = 0
    while f"{prefix}{n}" in ifaces or any(i.get("orig") == f"{prefix}{n}" for i in ifaces.values()):
        n += 1
    return f"{prefix}{n}"


def _missing(name):
    err(f"ifconfig: interface {name} does not exist")
    raise Exit(1)


def _addr(text, args):
    try:
        if "/" not in text:
            text += "/32"
        return str(ipaddress.ip_interface(text))
    except ValueError:
        err(f"ifconfig: {text}: bad value")
        raise Exit(1) from None


def ifconfig_main(args):
    if not args or args == ["-a"]:
        with kernel() as k:
            out("\n".join(_fmt_iface(n, i) for n, i in sorted(k["ifaces"].items())))
        return 0
    if args == ["-l"]:
        with kernel() as k:
            out(" ".join(sorted(k["ifaces"])))
        return 0
    if len(args) == 2 and args[0] == "-g":
        with kernel() as k:
            for n, i in sorted(k["ifaces"].items()):
                if args[1] in i["groups"]:
                    out(n)
        return 0
    if args[0].startswith("-"):
        not_implemented("ifconfig", args)
    name = args[0]
    if len(args) == 1:
        with kernel() as k:
            if name not in k["ifaces"]:
                _missing(name)
            out(_fmt_iface(name, k["ifaces"][name]))
        return 0
    with kernel(write=True) as k:
        ifaces = k["ifaces"]
        if args[1:] == ["create"]:
            if name in ("bridge", "epair"):
                new = _next_name(ifaces, name)
            elif name.startswith("bridge") and name[6:].isdigit():
                if name in ifaces:
                    err(f"ifconfig: SIOCIFCREATE2 ({name}): File exists")
                    return 1
                new = name
            else:
                not_implemented("ifconfig", args)
            if name == "epair":
                ifaces[new + "a"] = new_iface(new + "a", "epair")
                ifaces[new + "b"] = new_iface(new + "b", "epair")
                out(new + "a")
            else:
                ifaces[new] = new_iface(new, "bridge")
                ifaces[new]["orig"] = new
                out(new)
            return 0
        if name not in ifaces:
            _missing(name)
        i = ifaces[name]
        rest = args[1:]
        pending_inet = None
        while rest:
            word = rest.pop(0)
            if word == "name" and rest:
                new = rest.pop(0)
                ifaces[new] = ifaces.pop(name)
                for other in ifaces.values():
                    other["members"] = [new if m == name else m for m in other["members"]]
                name = new
                out(new)
            elif word == "destroy" and not rest:
                for other in ifaces.values():
                    if name in other["members"]:
                        other["members"].remove(name)
                del ifaces[name]
                return 0
            elif word == "inet" and rest:
                pending_inet = _addr(rest.pop(0), args)
                if rest and rest[0] in ("alias", "-alias", "delete"):
                    op = rest.pop(0)
                    if op == "alias":
                        if pending_inet not in i["inet"]:
                            i["inet"].append(pending_inet)
                    else:
                        match = [a for a in i["inet"] if a.split("/")[0] == pending_inet.split("/", maxsplit=1)[0]]
                        if not match:
                            err("ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address")
                            return 1
                        i["inet"].remove(match[0])
                else:
                    # a plain "inet A/N" replaces the primary address
                    if i["inet"]:
                        i["inet"][0] = pending_inet
                    else:
                        i["inet"].append(pending_inet)
            elif word == "alias" and rest:
                a = _addr(rest.pop(0), args)
                if a not in i["inet"]:
                    i["inet"].append(a)
            elif word == "-alias" and rest:
                a = rest.pop(0).split("/")[0]
                match = [x for x in i["inet"] if x.split("/")[0] == a]
                if not match:
                    err("ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address")
                    return 1
                i["inet"].remove(match[0])
            elif word == "up":
                i["up"] = True
            elif word == "down":
                i["up"] = False
            elif word in ("addm", "deletem", "private", "-private") and rest and i["kind"] == "bridge":
                m = rest.pop(0)
                if m not in ifaces:
                    err(f"ifconfig: {word} {m}: No such file or directory")
                    return 1
                if word == "addm":
                    if m in i["members"]:
                        err(f"ifconfig: BRDGADD {m}: File exists")
                        return 1
                    i["members"].append(m)
                elif word == "deletem":
                    if m in i["members"]:
                        i["members"].remove(m)
                elif word == "private":
                    if m not in i["private"]:
                        i["private"].append(m)
                elif m in i["private"]:
                    i["private"].remove(m)
            elif word in ("group", "-group") and rest:
                g = rest.pop(0)
                if word == "group" and g not in i["groups"]:
                    i["groups"].append(g)
                elif word == "-group" and g in i["groups"]:
                    i["groups"].remove(g)
            elif word == "description" and rest:
                i["description"] = rest.pop(0)
            elif word == "mtu" and rest and rest[0].isdigit():
                i["mtu"] = int(rest.pop(0))
            else:
                not_implemented("ifconfig", args)
    return 0


def sysctl_main(args):
    only_value = False
    if args and args[0] == "-n":
        only_value = True
        args = args[1:]
    if not args or any(a.startswith("-") for a in args):
        not_implemented("sysctl", args)
    status = 0
    with kernel(write=any("=" in a for a in args)) as k:
        table = dict(SYSCTL_DEFAULTS)
        table["kern.hostname"] = k.get("hostname", "standin")
        table.update(k["sysctl"])
        for a in args:
            if "=" in a:
                name, value = a.split("=", 1)
                if name not in table:
                    err(f"sysctl: unknown oid '{name}'")
                    status = 1
                    continue
                if name in READ_ONLY:
                    err(f"sysctl: oid '{name}' is read only")
                    status = 1
                    continue
                old = table[name]
                k["sysctl"][name] = value
                out(f"{name}: {old} -> {value}")
            else:
                if a not in table:
                    err(f"sysctl: unknown oid '{a}'")
                    status = 1
                    continue
                out(table[a] if only_value else f"{a}: {table[a]}")
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

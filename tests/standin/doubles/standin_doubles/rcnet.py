"""Forms of route(8) and sysctl(8) that FreeBSD's rc.d scripts use.

net.py models the interactive forms; this module adds the ones the boot
scripts need and hands everything else to net.py unchanged:

route (after FreeBSD sbin/route/route.c newroute() and flushroutes(), 14.x):
  route [-n] [-q] add|delete [-inet] default GATEWAY
  route [-n] [-q] add|delete [-inet] HOST|NET/N GATEWAY | -iface IF
  route [-n] [-q] flush [-inet]
  - success prints "add net default: gateway G" ("host" for a host route);
  - an existing route: "add net default: gateway G fib 0: route already in
    table", exit 1 (so rc.d/routing's loopback route, which the kernel made
    when lo0 got 127.0.0.1, prints that line at every boot, as on FreeBSD);
  - a gateway on no interface's network: "route: writing to routing socket:
    Network is unreachable" and "... fib 0: Network is unreachable", exit 1;
  - delete of a missing route: "route: writing to routing socket: No such
    process" and "... fib 0: not in table", exit 1;
  - flush removes the gateway routes (default and static), printing
    "DEST GATEWAY done" for each.
sysctl (after FreeBSD sbin/sysctl/sysctl.c parsefile()):
  sysctl [-i] -f FILE [name=value ...]
  - FILE has "name=value" lines, "#" comments and blank lines; each line is
    set as on the command line; an unknown name is "sysctl: unknown oid
    'NAME' at line N" (exit 1) unless -i, which ignores unknown names.
(ifconfig is net.py's alone: it has the pflog cloner rc.d/pflog needs.)
"""

import contextlib
import io
import ipaddress
import sys

from . import net
from .common import err, getopt_strict, kernel, not_implemented, out


def _gateway_iface(ifaces, gateway):
    """The interface whose network holds ``gateway`` (None: unreachable)."""
    try:
        ip = ipaddress.ip_address(gateway)
    except ValueError:
        return None
    for name, i in sorted(ifaces.items()):
        for a in i.get("inet", []):
            if ip in ipaddress.ip_interface(a).network:
                return name
    return None


def _route_change(args):
    opts, rest = getopt_strict("route", args, "nq")
    quiet = ("-q", "") in opts
    if not rest:
        not_implemented("route", args)
    verb, rest = rest[0], rest[1:]
    if rest[:1] == ["-inet"]:
        rest = rest[1:]
    if verb == "flush" and not rest:
        with kernel(write=True) as k:
            routes = k["routes"]
            gone = []
            if routes.get("default"):
                gone.append(("default", routes.pop("default")))
                routes.pop("default_if", None)
            for dest, r in sorted(routes.get("static", {}).items()):
                if r.get("gateway"):
                    gone.append((dest, r["gateway"]))
                    del routes["static"][dest]
        if not quiet:
            for dest, gw in gone:
                out(f"{dest:<20.20} {gw:<20.20} done")
        return 0
    if verb not in ("add", "delete") or not rest:
        not_implemented("route", args)
    dest = rest[0]
    if len(rest) == 3 and rest[1] == "-iface":
        gateway, via_iface = rest[2], True
    elif len(rest) == 2 and not rest[1].startswith("-"):
        gateway, via_iface = rest[1], False
    else:
        not_implemented("route", args)
    try:
        if dest != "default":
            ipaddress.ip_network(dest, strict=False)
    except ValueError:
        err(f"route: bad address: {dest}")
        return 1
    kind = "host" if dest != "default" and "/" not in dest else "net"
    what = f"{verb} {kind} {dest}: gateway {gateway}"
    with kernel(write=True) as k:
        routes = k["routes"]
        static = routes.setdefault("static", {})
        if via_iface:
            if gateway not in k["ifaces"]:
                err(f"route: bad address: {gateway}")
                return 1
            iface = gateway
        else:
            iface = _gateway_iface(k["ifaces"], gateway)
        # the kernel adds the loopback host route when lo0 gets 127.0.0.1;
        # rc.d/routing stop deletes it and start adds it back
        loopback = dest == "127.0.0.1" and not routes.get("loopback_deleted") and "lo0" in k["ifaces"]
        exists = (routes.get("default") is not None) if dest == "default" else (dest in static or loopback)
        if verb == "add":
            if exists:
                err(f"{what} fib 0: route already in table")
                return 1
            if iface is None:
                err("route: writing to routing socket: Network is unreachable")
                err(f"{what} fib 0: Network is unreachable")
                return 1
            if dest == "default":
                routes["default"], routes["default_if"] = gateway, iface
            elif dest == "127.0.0.1" and iface == "lo0":
                routes.pop("loopback_deleted", None)
            else:
                static[dest] = {"gateway": None if via_iface else gateway, "iface": iface}
        else:
            if not exists:
                err("route: writing to routing socket: No such process")
                err(f"{what} fib 0: not in table")
                return 1
            if dest == "default":
                routes.pop("default", None)
                routes.pop("default_if", None)
            elif dest in static:
                del static[dest]
            else:
                routes["loopback_deleted"] = True
    if not quiet:
        out(what)
    return 0


def route_main(args):
    words = [a for a in args if not a.startswith("-")]
    if words[:1] in (["add"], ["delete"], ["flush"]):
        return _route_change(args)
    return net.route_main(args)


# ------------------------------------------------------------------ sysctl

def _set_quietly(assignment):
    """Run one name=value through net.py's sysctl; (status, stderr text)."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        status = net.sysctl_main([assignment])
    return status, buf.getvalue()


def sysctl_main(args):
    if "-f" not in args:
        return net.sysctl_main(args)
    opts, rest = getopt_strict("sysctl", args, "if:")
    o = dict(opts)
    ignore_unknown = "-i" in o
    try:
        with open(o["-f"], encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        err(f"sysctl: {o['-f']}: {exc.strerror}")
        return 1
    status = 0
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if "=" not in text:
            err(f"sysctl: {o['-f']}:{number}: '{text}': no '=' (not implemented in the stand-in)")
            status = 1
            continue
        name, value = (x.strip() for x in text.split("=", 1))
        value = value.strip('"')
        code, msg = _set_quietly(f"{name}={value}")
        if code and "unknown oid" in msg:
            if ignore_unknown:
                continue
            err(f"sysctl: unknown oid '{name}' at line {number}")
            status = 1
        elif code:
            sys.stderr.write(msg)
            status = 1
    if rest:
        status = net.sysctl_main(rest) or status
    return status

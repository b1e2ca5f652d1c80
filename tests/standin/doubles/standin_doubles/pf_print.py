"""Rules as `pfctl -s rules|nat` prints them (FreeBSD 14 sbin/pfctl/pfctl_parser.c).

print_rule() prints the fields of the kernel's rule in a fixed order,
whatever order pf.conf used: action, direction, log, quick, interface,
address family, protocol, from/to (or "all"), user, group, flags,
icmp-type, state, state options, fragment, scrub options, allow-opts,
label, tag, tagged, rtable; translation rules end with "-> pool".
"""

from . import pf_names

WIDTH = {"inet": 32, "inet6": 128}


def addr_text(a):
    """print_addr(): any, address[/bits], (if[:mod]), <table>, no-route, urpf-failed."""
    t = a["type"]
    if t == "any":
        return "any"
    if t == "table":
        return f"<{a['name']}>"
    if t == "dynif":
        text = "(" + ":".join([a["ifname"]] + a.get("mods", [])) + ")"
        if a.get("bits") is not None:
            text += f"/{a['bits']}"
        return text
    if t == "noroute":
        return "no-route"
    if t == "urpf":
        return "urpf-failed"
    if a["bits"] == WIDTH[a["af"]]:
        return a["addr"]
    return f"{a['addr']}/{a['bits']}"


def port_text(p, proto):
    """print_port()/print_op(): "port = ssh", "port 1000:2000", "port 1 >< 9".

    Only = and != print the service name (getservbyport(3)); the other
    operators print numbers."""
    op, a, b = p["op"], p["a"], p.get("b")
    if op in ("><", "<>"):
        return f" port {a} {op} {b}"
    if op == ":":
        return f" port {a}:{b}"
    if op in ("=", "!="):
        return f" port {op} {pf_names.service_name(a)}"
    return f" port {op} {a}"


def ugid_text(kind, u):
    """print_ugid(): numbers, UID_MAX as "unknown" after = and !=."""
    op, a, b = u["op"], u["a"], u.get("b")
    if op in ("><", "<>"):
        return f" {kind} {a} {op} {b}"
    if a == 4294967295 and op in ("=", "!="):
        return f" {kind} {op} unknown"
    return f" {kind} {op} {a}"


def fromto_text(r):
    src, dst = r["src"], r["dst"]
    if (src["type"] == "any" and not src["neg"] and dst["type"] == "any" and not dst["neg"]
            and not r.get("src_port") and not r.get("dst_port")):
        return " all"
    text = " from " + ("! " if src["neg"] else "") + addr_text(src)
    if r.get("src_port"):
        text += port_text(r["src_port"], r.get("proto"))
    text += " to " + ("! " if dst["neg"] else "") + addr_text(dst)
    if r.get("dst_port"):
        text += port_text(r["dst_port"], r.get("proto"))
    return text


def state_opts_text(o):
    # print_rule(): options in a fixed order, comma separated, in parentheses
    parts = []
    if "max" in o:
        parts.append(f"max {o['max']}")
    if o.get("no-sync"):
        parts.append("no-sync")
    if "source-track" in o:
        parts.append("source-track " + o["source-track"])
    for key in ("max-src-states", "max-src-conn", "max-src-conn-rate", "max-src-nodes"):
        if key in o:
            parts.append(f"{key} {o[key]}")
    if "overload" in o:
        parts.append("overload " + o["overload"])
    if o.get("if-bound"):
        parts.append("if-bound")
    if o.get("floating"):
        parts.append("floating")
    if o.get("sloppy"):
        parts.append("sloppy")
    for name, secs in o.get("timeouts", {}).items():
        parts.append(f"{name} {secs}")
    return " (" + ", ".join(parts) + ")" if parts else ""


def scrub_text(o, action):
    parts = []
    if o.get("no-df"):
        parts.append("no-df")
    if o.get("random-id"):
        parts.append("random-id")
    if "min-ttl" in o:
        parts.append(f"min-ttl {o['min-ttl']}")
    if "max-mss" in o:
        parts.append(f"max-mss {o['max-mss']}")
    if o.get("reassemble-tcp"):
        parts.append("reassemble tcp")
    if action == "scrub":
        # scrub rules always reassemble fragments in FreeBSD 14
        return "".join(" " + p for p in parts) + " fragment reassemble"
    # scrub options of a match rule: " scrub (" then the options separated by
    # spaces in print_rule()'s order no-df, random-id, min-ttl, reassemble tcp, max-mss
    order = ("no-df", "random-id", "min-ttl", "reassemble tcp", "max-mss")
    ordered = sorted(parts, key=lambda p: next(i for i, o in enumerate(order) if p.startswith(o)))
    return " scrub (" + " ".join(ordered) + ")" if parts else ""


def pool_text(r):
    pool = r["redirect"]
    hosts = [addr_text(h) for h in pool]
    text = " -> " + (hosts[0] if len(hosts) == 1 else "{ " + ", ".join(hosts) + " }")
    port = r.get("redirect_port")
    if port:
        if r["action"] == "rdr":
            text += f" port {port['a']}" + (f":{port['b']}" if port.get("b") else "")
        elif r["action"] == "nat":
            b = port["b"] if port.get("b") else port["a"]
            text += f" port {port['a']}" + (f":{b}" if b != port["a"] else "")
    for o in r.get("pool_opts", []):
        text += " " + o
    return text


def block_text(r):
    """print_rule(): " drop", " return", " return-rst", " return-icmp(code[, code6])".

    return-icmp names the ICMP code sent, the default port-unr for IPv4 and
    IPv6 (parse.y returnicmpdefault/returnicmp6default)."""
    how = r["block"]
    if how in ("return-icmp", "return-icmp6"):
        if r.get("af") == "inet":
            return " return-icmp(port-unr)"
        if r.get("af") == "inet6":
            return " return-icmp6(port-unr)"
        return " return-icmp(port-unr, port-unr)"
    return " " + how


def render(r):
    action = r["action"]
    if action in ("anchor", "nat-anchor", "rdr-anchor", "binat-anchor"):
        text = f'{action} "{r["anchor"]}"'
    elif action in ("nat", "rdr", "binat") and r.get("no"):
        text = "no " + action
    else:
        text = action
    if action == "block":
        text += block_text(r)
    if r.get("pass"):
        text += " pass"
    if r.get("direction"):
        text += " " + r["direction"]
    if r.get("log"):
        text += " log"
    if r.get("quick"):
        text += " quick"
    if r.get("ifname"):
        text += " on " + ("! " if r.get("ifnot") else "") + r["ifname"]
    if r.get("af"):
        text += " " + r["af"]
    if r.get("proto"):
        text += " proto " + pf_names.protocol_name(r["proto"])
    text += fromto_text(r)
    if r.get("user"):
        text += ugid_text("user", r["user"])
    if r.get("group"):
        text += ugid_text("group", r["group"])
    if r.get("flags"):
        text += " flags " + r["flags"]
    elif action == "pass" and r.get("proto") in (None, 6) and not r.get("fragment") and r.get("state"):
        # print_rule(): a stateful pass rule that can see TCP without flags shows "flags any"
        text += " flags any"
    if r.get("icmp_type") is not None:
        names = pf_names.ICMP6_TYPE_NAMES if r["proto"] == 58 else pf_names.ICMP_TYPE_NAMES
        text += (" icmp6-type " if r["proto"] == 58 else " icmp-type ") + \
            names.get(r["icmp_type"], str(r["icmp_type"]))
    if action == "pass":
        if not r.get("state"):
            text += " no state"
        else:
            text += {"keep": " keep state", "modulate": " modulate state",
                     "synproxy": " synproxy state"}[r["state"]]
        text += state_opts_text(r.get("state_opts", {}))
    if r.get("fragment"):
        text += " fragment"
    if action in ("scrub", "match") and r.get("scrub") is not None:
        text += scrub_text(r["scrub"], action)
    if r.get("allow_opts"):
        text += " allow-opts"
    for label in r.get("labels", []):
        text += f' label "{label}"'
    if r.get("tag"):
        text += " tag " + r["tag"]
    if r.get("tagged"):
        # print_rule(): printf(" !") then printf(" tagged %s")
        text += (" !" if r["tagged"]["neg"] else "") + " tagged " + r["tagged"]["name"]
    if r.get("rtable") is not None:
        text += f" rtable {r['rtable']}"
    if action in ("nat", "rdr", "binat") and not r.get("no"):
        text += pool_text(r)
    return text

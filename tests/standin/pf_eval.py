"""Test-side PF rule evaluator over the rulesets a stand-in has loaded.

The stand-in checks and stores PF rules but passes no packets.  This module
answers, for one packet, what FreeBSD's pf would decide with the loaded
rulesets, so tests can assert isolation packet by packet:

    pf = PF.from_host(name)                      # or PF(kernel_dict)
    d = pf.filter("10.0.1.2", "10.0.2.2", proto="tcp", dport=5432,
                  iface="warden0", direction="in")   # uid=/user=, gid=: number or name
    d.action          # "pass" or "block"
    d.anchor, d.rule  # where the deciding rule lives and its pfctl text ("" / None: default)
    t = pf.translate("10.0.1.2", "198.51.100.7", proto="tcp", dport=443,
                     iface="vtnet0", direction="out")
    t.address         # translated address (None: no translation)

Semantics after pf.conf(5) "PACKET FILTERING" and sys/netpfil/pf/pf.c
pf_test_rule()/pf_step_into_anchor():
  - filter rules are evaluated in order; the last matching rule wins, a
    matching `quick` rule ends the evaluation; without a match the packet
    passes (pf's default rule is "pass all");
  - `anchor "x"` evaluates the rules of anchor x where the anchor rule
    stands (if the anchor rule's own on/from/to match); `anchor "x/*"`
    evaluates every child of x in name order; a quick match inside an anchor
    ends everything; `anchor ... quick` ends evaluation after the anchor
    when a rule in it matched;
  - `match` rules never decide pass or block;
  - tables are resolved in the rule's anchor and then in the main ruleset
    (pf_table.c pfr_attach_table(): an anchor's table falls back to the
    root table of the same name), longest prefix wins, "!" entries exclude;
  - `(if)` addresses are the interface's current addresses (":network" its
    networks); `no-route`, `urpf-failed` and `tagged` never match here:
    the stand-in has neither a routing table to ask nor tagged packets;
  - TCP packets are taken as connection openers (flags S), so `flags S/SA`
    matches; state keeping does not matter for one packet;
  - a rule with `user`/`group` matches only a packet with a known uid/gid
    (local sockets), as pf's socket lookup does;
  - packets on an interface of `set skip on` pass without evaluation.
Translation (nat and binat on outbound, rdr on inbound) uses the first
matching rule, with nat-anchor/rdr-anchor evaluated in place; `no nat` or
`no rdr` stops translation.
"""

import ipaddress
import json
import os
from dataclasses import dataclass, field

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58, "ipv6-icmp": 58, "gre": 47, "esp": 50}
TCP_FLAGS = "FSRPAUEW"


@dataclass
class Decision:
    action: str                 # "pass" or "block"
    anchor: str = ""            # "" for the main ruleset
    rule: str | None = None     # the deciding rule as pfctl prints it; None = default pass
    quick: bool = False
    matched: list = field(default_factory=list)   # (anchor, rule text) of every match, in order


@dataclass
class Translation:
    rule: str | None
    anchor: str = ""
    address: str | None = None
    port: int | None = None
    no: bool = False            # a `no nat`/`no rdr` rule matched


@dataclass
class Packet:
    src: str
    dst: str
    proto: int | None
    sport: int | None
    dport: int | None
    iface: str | None
    direction: str
    uid: int | None
    gid: int | None
    icmp_type: int | None
    tcp_flags: str

    @property
    def af(self):
        return "inet" if ipaddress.ip_address(self.src).version == 4 else "inet6"


def _port_match(spec, port):
    if spec is None:
        return True
    if port is None:
        return False
    op, a, b = spec["op"], spec["a"], spec.get("b")
    return {"=": port == a, "!=": port != a, "<": port < a, "<=": port <= a, ">": port > a,
            ">=": port >= a, ":": b is not None and a <= port <= b,
            "><": b is not None and a < port < b, "<>": b is not None and (port < a or port > b)}[op]


def _flags_bits(text):
    return {TCP_FLAGS.index(c) for c in text}


class PF:
    def __init__(self, kernel, etc=None):
        self.pf = kernel["pf"]
        self.ifaces = kernel.get("ifaces", {})
        self.etc = etc      # the host's /etc, to resolve user and group names

    @classmethod
    def from_host(cls, name):
        import standin_host
        root = standin_host.paths(name)["root"]
        with open(os.path.join(root, ".standin", "kernel.json"), encoding="utf-8") as fh:
            return cls(json.load(fh), etc=os.path.join(root, "etc"))

    def _id(self, kind, value):
        """A user/group name as the host's passwd/group files give it, or a number."""
        if value is None or isinstance(value, int):
            return value
        path = os.path.join(self.etc or "/nonexistent", "passwd" if kind == "user" else "group")
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                fields = line.split(":")
                if fields[0] == value and len(fields) > 2:
                    return int(fields[2])
        raise KeyError(f"no {kind} {value} on the host")

    # ------------------------------------------------------------ lookup helpers
    def anchor(self, path):
        return self.pf["anchors"].get(path, {})

    def children(self, path):
        prefix = f"{path}/" if path else ""
        names = set()
        for n in self.pf["anchors"]:
            if n.startswith(prefix) and n != path:
                names.add(prefix + n[len(prefix):].split("/")[0])
        return sorted(names)

    def table(self, anchor, name):
        for where in (anchor, ""):
            t = self.anchor(where).get("tables", {}).get(name)
            if t is not None:
                return t["addrs"]
        return []

    def iface_members(self, ifname):
        return [n for n, i in self.ifaces.items() if n == ifname or ifname in i.get("groups", [])]

    def _addr_match(self, spec, ip, anchor):
        t = spec["type"]
        if t == "any":
            hit = True
        elif t == "net":
            net = ipaddress.ip_network(f"{spec['addr']}/{spec['bits']}", strict=False)
            hit = ip.version == net.version and ip in net
        elif t == "table":
            best = None
            for e in self.table(anchor, spec["name"]):
                net = ipaddress.ip_network(e.lstrip("!"), strict=False)
                if ip.version == net.version and ip in net and (
                        best is None or net.prefixlen > best[0].prefixlen):
                    best = (net, e.startswith("!"))
            hit = best is not None and not best[1]
        elif t == "dynif":
            network = "network" in spec.get("mods", [])
            # "(self)" stands for every interface's addresses (pf_if.c pfi_dynaddr_setup)
            members = list(self.ifaces) if spec["ifname"] == "self" else self.iface_members(spec["ifname"])
            assigned = [ipaddress.ip_interface(a) for m in members for a in self.ifaces[m].get("inet", [])]
            hit = any(ip in i.network if network else ip == i.ip for i in assigned)
        else:       # no-route, urpf-failed: nothing to consult in the stand-in
            hit = False
        return hit != spec.get("neg", False)

    def _match(self, r, p, anchor):
        if r.get("direction") and r["direction"] != p.direction:
            return False
        if r.get("ifname"):
            on = p.iface is not None and p.iface in self.iface_members(r["ifname"])
            if on == r.get("ifnot", False):
                return False
        if r.get("af") and r["af"] != p.af:
            return False
        if r.get("proto") and r["proto"] != p.proto:
            return False
        ip_src, ip_dst = ipaddress.ip_address(p.src), ipaddress.ip_address(p.dst)
        if not self._addr_match(r["src"], ip_src, anchor) or not self._addr_match(r["dst"], ip_dst, anchor):
            return False
        if not _port_match(r.get("src_port"), p.sport) or not _port_match(r.get("dst_port"), p.dport):
            return False
        for kind, value in (("user", p.uid), ("group", p.gid)):
            spec = r.get(kind)
            if spec and (value is None or not _port_match(spec, value)):
                return False
        if r.get("flags") and p.proto == 6:
            want, mask = r["flags"].split("/")
            if (_flags_bits(p.tcp_flags) & _flags_bits(mask)) != _flags_bits(want):
                return False
        if r.get("icmp_type") is not None and r["icmp_type"] != p.icmp_type:
            return False
        tagged = r.get("tagged")
        return not (tagged and not tagged["neg"])

    # ------------------------------------------------------------ filtering
    def _eval(self, path, p, state):
        """Evaluate one ruleset; return True when a quick match ended everything."""
        for r in self.anchor(path).get("rules", []):
            if not self._match(r, p, path):
                continue
            if r["action"] == "anchor":
                name = r["anchor"]
                wildcard = name == "*" or name.endswith("/*")
                base = name[:-2] if name.endswith("/*") else ("" if name == "*" else name)
                full = base.lstrip("/") if base.startswith("/") else (
                    f"{path}/{base}" if path and base else (path or base))
                before = len(state["matched"])
                for target in (self.children(full) if wildcard else [full]):
                    if self._eval(target, p, state):
                        return True
                if r.get("quick") and len(state["matched"]) > before:
                    return True
                continue
            state["matched"].append((path, r["text"]))
            if r["action"] == "match":
                continue
            state["last"] = (path, r)
            if r.get("quick"):
                return True
        return False

    def filter(self, src, dst, proto="tcp", dport=None, sport=None, iface=None, direction="in",
               uid=None, gid=None, icmp_type=None, tcp_flags="S", user=None):
        if user is not None and uid is None:
            uid = user
        packet = Packet(src, dst, PROTOCOLS.get(proto, proto), sport, dport, iface, direction,
                        self._id("user", uid), self._id("group", gid), icmp_type, tcp_flags)
        state = {"last": None, "matched": []}
        skipped = self.anchor("").get("options", {}).get("skip", [])
        if iface is not None and any(iface in self.iface_members(s) for s in skipped):
            return Decision("pass")        # set skip on: pf does not look at the packet
        self._eval("", packet, state)
        if state["last"] is None:
            return Decision("pass", matched=state["matched"])
        path, r = state["last"]  # pylint: disable=unpacking-non-sequence  # set by _eval when a rule matched
        return Decision("block" if r["action"] == "block" else "pass", path, r["text"],
                        bool(r.get("quick")), state["matched"])

    # ------------------------------------------------------------ translation
    def _translate(self, path, kinds, p):
        for kind in kinds:
            for r in self.anchor(path).get(kind, []):
                if not self._match(r, p, path):
                    continue
                if r.get("anchor"):
                    name = r["anchor"]
                    wildcard = name == "*" or name.endswith("/*")
                    base = name[:-2] if name.endswith("/*") else ("" if name == "*" else name)
                    full = f"{path}/{base}" if path and base else (path or base)
                    for target in (self.children(full) if wildcard else [full]):
                        found = self._translate(target, kinds, p)
                        if found:
                            return found
                    continue
                if r.get("no"):
                    return Translation(r["text"], path, no=True)
                return Translation(r["text"], path, self._pool_address(r["redirect"][0], path),
                                   (r.get("redirect_port") or {}).get("a"))
        return None

    def _pool_address(self, spec, anchor):
        if spec["type"] == "net":
            return spec["addr"]
        if spec["type"] == "dynif":
            for member in self.iface_members(spec["ifname"]):
                for a in self.ifaces[member].get("inet", []):
                    return str(ipaddress.ip_interface(a).ip)
            return None
        if spec["type"] == "table":
            entries = [e for e in self.table(anchor, spec["name"]) if not e.startswith("!")]
            return entries[0].split("/")[0] if entries else None
        return None

    def translate(self, src, dst, proto="tcp", dport=None, sport=None, iface=None,
                  direction="out", uid=None, gid=None):
        packet = Packet(src, dst, PROTOCOLS.get(proto, proto), sport, dport, iface, direction,
                        uid, gid, None, "S")
        # binat is looked up for outbound packets only (its inbound half is not modelled)
        kinds = ("nat", "binat") if direction == "out" else ("rdr",)
        return self._translate("", kinds, packet) or Translation(None)

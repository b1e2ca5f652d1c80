"""pfctl(8) double with a real (if partial) pf.conf checker.

Forms (after FreeBSD sbin/pfctl/pfctl.c and pfctl(8), 14.x):
  pfctl [-q] [-v] [-n] [-a anchor] -f FILE|-   check (-n) or check and load
  pfctl [-a anchor] -s rules|-sr|nat|-sn|Anchors|-sA|info|-si
  pfctl [-a anchor] -F all|rules|nat
  pfctl -e | -d                                 "pf enabled" / "pf disabled" (stderr)
The checker (after FreeBSD sbin/pfctl/parse.y) enforces:
  - macros defined before use      -> "FILE:N: macro 'x' not defined"
  - balanced braces, parentheses and quotes -> "FILE:N: syntax error"
  - statement order options, ethernet, normalization, queueing, translation,
    filtering -> "FILE:N: Rules must be in order: options, ethernet,
    normalization, queueing, translation, filtering" (check_rulestate)
  - known statement keywords and rule words -> "FILE:N: syntax error"
A rejected file is never loaded: "pfctl: Syntax error in config file: pf
rules not loaded", exit 1, and the previously loaded ruleset stays.
"""

import ipaddress
import re
import sys

from .common import err, getopt_strict, kernel, not_implemented, out

ORDER_MSG = ("Rules must be in order: options, ethernet, normalization, queueing, "
             "translation, filtering")
ST_OPTIONS, ST_ETHER, ST_SCRUB, ST_QUEUE, ST_NAT, ST_FILTER = range(6)
VERBS = {
    "set": ST_OPTIONS, "ether": ST_ETHER, "scrub": ST_SCRUB, "scrub-anchor": ST_SCRUB,
    "altq": ST_QUEUE, "queue": ST_QUEUE,
    "nat": ST_NAT, "rdr": ST_NAT, "binat": ST_NAT, "nat-anchor": ST_NAT, "rdr-anchor": ST_NAT,
    "binat-anchor": ST_NAT, "no": ST_NAT,
    "pass": ST_FILTER, "block": ST_FILTER, "match": ST_FILTER, "anchor": ST_FILTER,
    "antispoof": ST_FILTER,
}
TRANSLATION = {"nat", "rdr", "binat", "nat-anchor", "rdr-anchor", "binat-anchor", "no"}
SET_OPTIONS = {"skip", "block-policy", "loginterface", "optimization", "limit", "timeout",
               "state-policy", "require-order", "fingerprints", "debug", "hostid",
               "ruleset-optimization", "syncookies", "keepcounters", "state-defaults", "reassemble"}
# words pf.conf rules may contain (after parse.y's keyword table), plus
# protocol, port and icmp-type names pfctl resolves through /etc files
KEYWORDS = set("""
all allow-opts altq anchor antispoof any bandwidth binat binat-anchor bitmask block block-policy
buckets cbq code counters crop debug divert-reply divert-to dnpipe dnqueue drop drop-ovl dup-to
ether fail-policy fairq fastroute file fingerprints flags floating flush for fragment from global
group hfsc hogs hostid icmp-type icmp6-type if-bound in include inet inet6 keep keepcounters label
limit linkshare load log loginterface map-e-portset match max max-mss max-src-conn max-src-conn-rate
max-src-nodes max-src-states min-ttl modulate nat nat-anchor no no-df no-route no-sync on
optimization os out overload pass port prio priority priq probability proto qlimit queue quick
random random-id rdr rdr-anchor realtime reassemble reply-to require-order return return-icmp
return-icmp6 return-rst ridentifier round-robin route route-to rtable rule ruleset-optimization
scrub set set-tos skip sloppy source-hash source-track state state-defaults state-policy static-port
sticky-address syncookies synproxy table tag tagged tbrsize timeout to tos ttl up upperlimit
urpf-failed user group persist const self adaptive.start adaptive.end interval frag states src-nodes
tables table-entries tcp.first tcp.opening tcp.established tcp.closing tcp.finwait tcp.closed
udp.first udp.single udp.multiple icmp.first icmp.error other.first other.single other.multiple
normal high-latency aggressive conservative basic none urgent misc loud yes tcp udp icmp icmp6
ipv6-icmp gre esp ah carp pfsync ospf igmp pim sctp ssh http https domain ntp smtp submission imap
imaps pop3 pop3s ftp ftp-data telnet bootps bootpc tftp snmp syslog ldap ldaps postgresql mysql
microsoft-ds netbios-ssn echoreq echorep unreach timex paramprob redir routeradv routersol S/SA
S/SAFR SA any/any
""".split())  # noqa: SIM905
IFACE_RE = re.compile(r"^!?\(?[a-z][a-z_]*[0-9]+[a-z0-9_]*(:network|:broadcast|:peer|:0)?\)?$")
NUM_RE = re.compile(r"^[0-9]+([:.<>=!-]+[0-9]*)*[kKmMgG]?$")


class PfError(Exception):
    def __init__(self, path, line, msg):
        super().__init__(f"{path}:{line}: {msg}")


def _statements(text, path):
    """Split pf.conf text into (line_no, statement) with continuations joined."""
    stmts = []
    buf, start = "", None
    depth = 0
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw
        # strip comments outside quotes
        out_chars, quoted = [], False
        for ch in line:
            if ch == '"':
                quoted = not quoted
            if ch == "#" and not quoted:
                break
            out_chars.append(ch)
        line = "".join(out_chars)
        if quoted:
            raise PfError(path, no, "syntax error")
        cont = line.rstrip().endswith("\\")
        if cont:
            line = line.rstrip()[:-1]
        if start is None and line.strip():
            start = no
        buf += " " + line
        depth += line.count("{") - line.count("}")
        if depth < 0:
            raise PfError(path, no, "syntax error")
        if cont or depth > 0:
            continue
        if buf.strip():
            stmts.append((start, buf.strip()))
        buf, start = "", None
    if buf.strip():
        raise PfError(path, start or 1, "syntax error")
    return stmts


def _tokens(stmt):
    return re.findall(r'"[^"]*"|\{|\}|\(|\)|,|[^\s{}(),"]+', stmt)


def _expand(stmt, macros, path, no):
    def repl(m):
        name = m.group(1)
        if name not in macros:
            raise PfError(path, no, f"macro '{name}' not defined")
        return macros[name]
    # macros are not expanded inside quoted strings (parse.y lexer)
    parts = re.split(r'("[^"]*")', stmt)
    return "".join(p if p.startswith('"') else re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", repl, p)
                   for p in parts)


def _word_ok(w, interfaces):
    punctuation = ("{", "}", "(", ")", ",", "!", "->", "=", "-", "<>", "><", ":", "/")
    if w.startswith('"') or w.startswith("<") or w in punctuation:
        return True
    if w in KEYWORDS or w in interfaces or NUM_RE.match(w):
        return True
    for cand in (w.lstrip("!"), w.split("/")[0]):
        try:
            ipaddress.ip_network(w.lstrip("!"), strict=False)
            return True
        except ValueError:
            try:
                ipaddress.ip_address(cand)
                return True
            except ValueError:
                pass
    if re.match(r"^[0-9]+/[0-9]+$", w) or re.match(r"^[A-Za-z0-9_.-]+=[^ ]*$", w):
        return True
    return bool(IFACE_RE.match(w))


def parse(text, path, interfaces, anchor="", depth=0):
    """Return the list of expanded statements, or raise PfError."""
    macros = {}
    state = ST_OPTIONS
    require_order = True
    result = []
    for no, stmt in _statements(text, path):
        if stmt.count("(") != stmt.count(")") or stmt.count('"') % 2:
            raise PfError(path, no, "syntax error")
        m = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$', stmt)
        if m and m.group(1) not in VERBS:
            value = _expand(m.group(2).strip(), macros, path, no)
            if value.startswith('"') and value.endswith('"'):
                value = value[1:-1]
            elif " " in value and not value.startswith("{"):
                raise PfError(path, no, "syntax error")
            macros[m.group(1)] = value
            continue
        stmt = _expand(stmt, macros, path, no)
        toks = _tokens(stmt)
        verb = toks[0]
        if verb == "include":
            if len(toks) != 2 or not toks[1].startswith('"'):
                raise PfError(path, no, "syntax error")
            inc = toks[1].strip('"')
            try:
                with open(inc, encoding="utf-8") as fh:
                    result += parse(fh.read(), inc, interfaces, anchor, depth + 1)
            except OSError:
                raise PfError(path, no, f"cannot open include file {inc}") from None
            continue
        if verb == "table":
            if len(toks) < 2 or not re.match(r"^<[A-Za-z0-9_-]+>$", toks[1]):
                raise PfError(path, no, "syntax error")
            result.append(("table", " ".join(toks)))
            continue
        if verb == "load":
            if len(toks) != 5 or toks[1] != "anchor" or toks[3] != "from":
                raise PfError(path, no, "syntax error")
            result.append(("load", " ".join(toks)))
            continue
        if verb not in VERBS:
            raise PfError(path, no, "syntax error")
        if verb == "set":
            if len(toks) < 3 or toks[1] not in SET_OPTIONS:
                raise PfError(path, no, "syntax error")
            if toks[1] == "require-order":
                require_order = toks[2] == "yes"
        if verb == "no" and (len(toks) < 2 or toks[1] not in ("nat", "rdr", "binat")):
            raise PfError(path, no, "syntax error")
        want = VERBS[verb]
        if verb in ("nat", "rdr", "binat") and "->" not in toks:
            raise PfError(path, no, "syntax error")
        if require_order and want < state:
            raise PfError(path, no, ORDER_MSG)
        state = max(state, want)
        for w in toks[1:]:
            if not _word_ok(w, interfaces):
                raise PfError(path, no, "syntax error")
        kind = "nat" if verb in TRANSLATION else ("options" if verb == "set" else
                                                  "scrub" if want == ST_SCRUB else "filter")
        result.append((kind, " ".join(t for t in toks if t != ",")))
    return result


def _load_text(path):
    if path == "-":
        return sys.stdin.read(), "-"
    with open(path, encoding="utf-8") as fh:
        return fh.read(), path


def main(args):
    opts, rest = getopt_strict("pfctl", args, "a:def:F:ns:vqP")
    if rest:
        not_implemented("pfctl", args)
    o = {}
    for k, v in opts:
        o[k] = v
    anchor = o.get("-a", "")
    actions = [k for k in ("-e", "-d", "-f", "-F", "-s") if k in o]
    if len(actions) != 1:
        not_implemented("pfctl", args)
    act = actions[0]
    quiet = "-q" in o
    if act == "-e" or act == "-d":
        if anchor or "-n" in o:
            not_implemented("pfctl", args)
        with kernel(write=True) as k:
            on = act == "-e"
            if k["pf"]["enabled"] == on:
                err("pfctl: pf already enabled" if on else "pfctl: pf not enabled")
                return 1
            k["pf"]["enabled"] = on
        if not quiet:
            err("pf enabled" if on else "pf disabled")
        return 0
    if act == "-f":
        try:
            text, path = _load_text(o["-f"])
        except OSError:
            err("pfctl: {}: No such file or directory".format(o["-f"]))
            return 1
        with kernel() as k:
            interfaces = set(k["ifaces"])
            for i in k["ifaces"].values():
                interfaces.update(i.get("groups", []))
        interfaces.add("egress")
        try:
            rules = parse(text, path, interfaces, anchor)
        except PfError as exc:
            err(str(exc))
            if "-n" not in o:
                err("pfctl: Syntax error in config file: pf rules not loaded")
            return 1
        if "-n" in o:
            return 0
        with kernel(write=True) as k:
            anchors = k["pf"]["anchors"]
            anchors[anchor] = {
                "file": path,
                "options": [r for kind, r in rules if kind == "options"],
                "tables": [r for kind, r in rules if kind == "table"],
                "scrub": [r for kind, r in rules if kind == "scrub"],
                "nat": [r for kind, r in rules if kind == "nat"],
                "rules": [r for kind, r in rules if kind == "filter"],
            }
        return 0
    if "-n" in o:
        not_implemented("pfctl", args)
    if act == "-F":
        what = o["-F"]
        if what not in ("all", "rules", "nat", "Tables"):
            not_implemented("pfctl", args)
        with kernel(write=True) as k:
            a = k["pf"]["anchors"].get(anchor)
            if a:
                if what in ("all", "rules"):
                    a["rules"], a["scrub"] = [], []
                if what in ("all", "nat"):
                    a["nat"] = []
                if what in ("all", "Tables"):
                    a["tables"] = []
                if not any(a.get(x) for x in ("rules", "scrub", "nat", "tables")) and anchor:
                    del k["pf"]["anchors"][anchor]
        if not quiet:
            if what in ("all", "rules"):
                err("rules cleared")
            if what in ("all", "nat"):
                err("nat cleared")
            if what in ("all", "Tables"):
                err("0 tables deleted.")
        return 0
    what = o["-s"]
    with kernel() as k:
        pf = k["pf"]
        a = pf["anchors"].get(anchor, {})
        if what in ("r", "rules"):
            for r in a.get("scrub", []) + a.get("rules", []):
                out(r)
        elif what in ("n", "nat"):
            for r in a.get("nat", []):
                out(r)
        elif what in ("A", "Anchors"):
            prefix = anchor + "/" if anchor else ""
            for name in sorted(pf["anchors"]):
                if name and name.startswith(prefix):
                    out("  " + name)
        elif what in ("i", "info"):
            if anchor:
                not_implemented("pfctl", args)
            out("Status: %s for 0 days 00:00:00           Debug: Urgent" %
                ("Enabled" if pf["enabled"] else "Disabled"))
            out("")
            out("State Table                          Total             Rate")
            out("  current entries                        0               ")
        else:
            not_implemented("pfctl", args)
    return 0

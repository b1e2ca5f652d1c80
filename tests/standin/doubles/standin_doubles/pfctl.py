"""pfctl(8) double: checks and loads pf.conf, shows rulesets, edits tables.

After FreeBSD 14 sbin/pfctl/pfctl.c (main(), getopt string
"a:AdD:eqf:F:ghi:k:K:mMnNOo:Pp:rRs:t:T:vx:z"), pfctl_table.c and
pfctl_parser.c.  The grammar lives in pf_parse.py, the printed form of a
rule in pf_print.py.  Forms:

  pfctl [-q] [-v] [-n] [-a anchor] -f FILE|-   check (-n) or check and load
  pfctl [-v] [-a anchor[/*]] -s rules|nat|Anchors|Tables|info|Running|labels|states|Sources|all
  pfctl [-q] [-a anchor] -F all|rules|nat|Tables|states|Sources|info|ethernet
  pfctl [-q] [-v] [-a anchor] -t TABLE -T add|delete|replace|test ADDR... | show|flush|kill
  pfctl [-q] -e | -d                          "pf enabled" / "pf disabled" (stderr)
Option letters combine as getopt(3) allows (-nf FILE, -vnf, -Fall, -Tshow,
-eq, -dq, -sr), and one call may carry several actions, done in main()'s
order: -d, -s, -F, -T, -f, -e.  Modifiers are prefix-matched
(pfctl_lookup_option(): -s r, -F a, -T s).

Kernel state (kernel()["pf"]): "enabled", "anchors": path ("" = main) ->
{file, options, tables {name: {flags, addrs}}, scrub, nat, rdr, binat,
rules} (each rule keeps its parsed fields and its printed "text") and
"referenced": the anchors the main ruleset reaches, refreshed on every change.  An anchor
exists while it has rules or tables, has a child, or is called from a loaded
rule (pf_ruleset.c pf_find_or_create_ruleset()/pf_remove_if_empty_ruleset()).
"""

import ipaddress
import os
import sys

from . import pf_parse
from .common import Exit, err, getopt_strict, kernel, not_implemented, out

SHOW_OPTS = ("ether", "nat", "queue", "rules", "Anchors", "Sources", "states", "info",
             "Interfaces", "labels", "timeouts", "memory", "Tables", "osfp", "Running", "all")
CLEAR_OPTS = ("nat", "queue", "rules", "Sources", "states", "info", "Tables", "osfp", "all",
              "ethernet")
TABLE_CMDS = ("kill", "flush", "add", "delete", "load", "replace", "show", "test", "zero",
              "expire", "reset")
RULESETS = ("scrub", "rules", "nat", "rdr", "binat")
USAGE = """usage: pfctl [-AdeghMmNnOPqRrvz] [-a anchor] [-D macro=value] [-F modifier]
\t[-f file] [-i interface] [-K host | network]
\t[-k host | network | gateway | label | id] [-o level] [-p device]
\t[-s modifier] [-t table -T command [address ...]] [-x level]"""
SYNTAX_MSG = "pfctl: Syntax error in config file: pf rules not loaded"
EX_TABLE = 255   # pfctl_table() returns -1 on error and main() exits with it


def usage():
    err(USAGE)
    raise Exit(1)


def lookup_option(cmd, choices):
    """pfctl.c pfctl_lookup_option(): the first choice that starts with cmd."""
    if cmd:
        for c in choices:
            if c.startswith(cmd):
                return c
    return None


def empty_anchor():
    return {"file": None, "options": {}, "tables": {}, "scrub": [], "nat": [], "rdr": [],
            "binat": [], "rules": []}


# ------------------------------------------------------------------ anchors

def resolve_call(path, base):
    """An anchor call is relative to the calling ruleset unless it starts with "/"."""
    if base.startswith("/"):
        return base.lstrip("/")
    return f"{path}/{base}" if path and base else (path or base)


def _calls(ruleset, path):
    """Anchor paths called from one ruleset (relative to it unless they start with /)."""
    found = []
    for kind in ("rules", "nat", "rdr", "binat"):
        for r in ruleset.get(kind, []):
            name = r.get("anchor")
            if not name:
                continue
            wildcard = name == "*" or name.endswith("/*")
            base = name[:-2] if name.endswith("/*") else ("" if name == "*" else name)
            found.append((resolve_call(path, base), wildcard))
    return found


def existing_anchors(pf):
    """Every ruleset the kernel keeps: loaded ones, their parents, called ones."""
    names = set()
    for path, a in pf["anchors"].items():
        if not path:
            continue
        if any(a.get(k) for k in RULESETS + ("tables",)):
            names.add(path)
    for path, a in pf["anchors"].items():
        for full, _wild in _calls(a, path):
            if full:
                names.add(full)
    for n in list(names):
        parts = n.split("/")
        for i in range(1, len(parts)):
            names.add("/".join(parts[:i]))
    return names


def children(pf, path):
    prefix = f"{path}/" if path else ""
    return sorted(n for n in existing_anchors(pf) if n.startswith(prefix) and "/" not in n[len(prefix):])


def referenced_anchors(pf):
    """Anchors evaluated from the main ruleset: called directly, by "x/*", or
    from an anchor that is itself evaluated (pf.c pf_step_into_anchor())."""
    anchors = pf["anchors"]
    reached, todo = set(), [""]
    while todo:
        path = todo.pop()
        for full, wildcard in _calls(anchors.get(path, {}), path):
            targets = children(pf, full) if wildcard else [full]
            for t in targets:
                if t not in reached:
                    reached.add(t)
                    todo.append(t)
    return reached


def prune(pf):
    """pf_remove_if_empty_ruleset(): drop stored anchors that no longer exist;
    then record which anchors the main ruleset reaches ("referenced")."""
    alive = existing_anchors(pf)
    for path in list(pf["anchors"]):
        if path and path not in alive:
            del pf["anchors"][path]
    pf["referenced"] = sorted(referenced_anchors(pf))


def _tables(a):
    # kernel.json written before tables were kept by name held a list: treat it as none
    return a["tables"] if isinstance(a.get("tables"), dict) else {}


def summary(pf):
    """What `standin state` shows under "pf": per existing anchor its rules as
    pfctl prints them, its tables (name -> addresses) and whether the main
    ruleset reaches it."""
    reached = set(pf["referenced"]) if "referenced" in pf else referenced_anchors(pf)
    result = {"enabled": pf["enabled"],
              "options": pf["anchors"].get("", {}).get("options", {}), "anchors": {}}
    for path in sorted(existing_anchors(pf) | {""}):
        a = pf["anchors"].get(path, empty_anchor())
        result["anchors"][path or "/"] = {
            "referenced": path == "" or path in reached,
            "file": a.get("file"),
            "options": a.get("options", {}),
            "scrub": [r["text"] for r in a.get("scrub", [])],
            "nat": [r["text"] for r in a.get("nat", [])],
            "rdr": [r["text"] for r in a.get("rdr", [])],
            "binat": [r["text"] for r in a.get("binat", [])],
            "rules": [r["text"] for r in a.get("rules", [])],
            "tables": {n: t["addrs"] for n, t in sorted(_tables(a).items())},
        }
    return result


# ------------------------------------------------------------------ load

def _context(k):
    return pf_parse.context_from_kernel(k)


def _read(path):
    if path == "-":
        return sys.stdin.read(), "stdin"    # parse.y pushfile(): "-" is named stdin
    with open(path, encoding="utf-8") as fh:
        return fh.read(), path


def parse_with_loads(ctx, text, name, anchor, dry_run):
    """Parse a file and every `load anchor` it names; return ({anchor: ruleset}, messages).

    pfctl_rules() loads each named file with a nested pfctl_rules() call
    (pfctl_load_anchors()): its own failure prints "Syntax error in config
    file" (unless -n), then the caller adds "load anchors"."""
    ruleset, errors = pf_parse.parse(text, name, ctx, anchor)
    result = {anchor: (ruleset, name)}
    if errors:
        return result, errors + ([] if dry_run else [SYNTAX_MSG])
    for load in ruleset["loads"]:
        try:
            sub_text, sub_name = _read(load["file"])
        except OSError as exc:
            sub_errors = [f"pfctl: {load['file']}: {exc.strerror}"] + ([] if dry_run else [SYNTAX_MSG])
        else:
            sub, sub_errors = parse_with_loads(ctx, sub_text, sub_name, load["anchor"], dry_run)
            result.update(sub)
        if sub_errors:
            return result, sub_errors + ["pfctl: load anchors"]
    return result, []


def store_ruleset(pf, anchor, ruleset, name, pid=0):
    old = pf["anchors"].get(anchor, empty_anchor())
    new = empty_anchor()
    new["file"] = name
    for kind in RULESETS:
        for r in ruleset[kind]:
            r["pid"] = pid       # the kernel records the loading process (cpid)
    if not anchor:
        # options are loaded for the main ruleset only (loadopt & PFCTL_FLAG_OPTION)
        new["options"] = ruleset["options"]
    for kind in RULESETS:
        new[kind] = ruleset[kind]
    # tables defined in the file replace their namesakes; persistent ones
    # created before (pfctl -T add makes them persistent) stay
    tables = {n: t for n, t in _tables(old).items() if "persist" in t["flags"]}
    tables.update(ruleset["tables"])
    new["tables"] = tables
    pf["anchors"][anchor] = new


def load(args_anchor, path, opts):
    try:
        text, name = _read(path)
    except OSError as exc:
        err(f"pfctl: {path}: {exc.strerror}")
        return 1
    with kernel() as k:
        ctx = _context(k)
    try:
        parsed, errors = parse_with_loads(ctx, text, name, args_anchor, "-n" in opts)
    except pf_parse.Unsupported as exc:
        err(f"stand-in: pfctl: {exc} is not implemented")
        raise Exit(64) from None
    if errors:
        for e in errors:
            err(e)
        return 1
    if "-v" in opts:
        for anchor, (ruleset, _n) in parsed.items():
            verbose_listing(ruleset, anchor != args_anchor)
    if "-n" in opts:
        return 0
    with kernel(write=True) as k:
        for anchor, (ruleset, name) in parsed.items():
            store_ruleset(k["pf"], anchor, ruleset, name, os.getpid())
        prune(k["pf"])
    return 0


def verbose_listing(ruleset, nested):
    """-v: what pfctl prints while parsing (macros, tables, set skip and
    block-policy), then the rules as it loads them, per ruleset in
    pfctl_load_ruleset() order (scrub, filter, nat, binat, rdr)."""
    for line in ruleset["verbose"]:
        out(line)
    for kind in ("scrub", "rules", "nat", "binat", "rdr"):
        for r in ruleset[kind]:
            out(("  " if nested else "") + r["text"])


# ------------------------------------------------------------------ show

def rule_lines(r, nr, indent, verbose, suffix=""):
    """One rule as pfctl_show_rules() prints it, with -v its counters
    (pfctl_print_rule_counters(): all 0, no packet passes the stand-in) and
    with -vv its number ("@nr ", print_rule()) and last active time."""
    prefix = f"@{nr} " if verbose > 1 else ""
    lines = [indent + prefix + r["text"] + suffix]
    if verbose:
        lines.append(f"  [ Evaluations: {0:<8}  Packets: {0:<8}  Bytes: {0:<10}  States: {0:<6}]")
        lines.append(f"  [ Inserted: uid 0 pid {r.get('pid', 0)} State Creations: {0:<6}]")
    if verbose > 1:
        lines.append("  [ Last Active Time: N/A ]")
    return lines


def show_rules(pf, anchor, recurse, verbose=0, depth=0, wildcard=False):
    """pfctl.c pfctl_show_rules(): scrub then filter rules; with recursion an
    anchor rule opens "{", its rules follow indented by two spaces per level
    (INDENT(): not under -v)."""
    lines = []
    indent = "" if verbose else "  " * depth
    if wildcard and recurse:
        for child in children(pf, anchor):
            lines.append(f'{indent}anchor "{child.rsplit("/", 1)[-1]}" all {{')
            lines += show_rules(pf, child, recurse, verbose, depth + 1)
            lines.append(indent + "}")
        return lines
    a = pf["anchors"].get(anchor, {})
    for nr, r in enumerate(a.get("scrub", [])):
        lines += rule_lines(r, nr, indent, verbose)
    for nr, r in enumerate(a.get("rules", [])):
        if r.get("anchor") and recurse:
            name = r["anchor"]
            wild = name == "*" or name.endswith("/*")
            base = name[:-2] if name.endswith("/*") else ("" if name == "*" else name)
            full = resolve_call(anchor, base)
            lines += rule_lines(r, nr, indent, verbose, " {")
            lines += show_rules(pf, full, recurse, verbose, depth + 1, wild)
            lines.append(indent + "}")
        else:
            lines += rule_lines(r, nr, indent, verbose)
    return lines


def show_nat(pf, anchor, verbose=0):
    a = pf["anchors"].get(anchor, {})
    lines = []
    for kind in ("nat", "rdr", "binat"):
        for nr, r in enumerate(a.get(kind, [])):
            lines += rule_lines(r, nr, "", verbose)
    return lines


def table_flags(pf, anchor, name, t):
    referenced = any(r.get(side, {}).get("type") == "table" and r[side].get("name") == name
                     for kind in RULESETS for r in pf["anchors"].get(anchor, {}).get(kind, [])
                     for side in ("src", "dst"))
    # pfctl_table.c print_table(): c p a i r h C
    return ("c" if "const" in t["flags"] else "-") + ("p" if "persist" in t["flags"] else "-") + \
        "a-" + ("r" if referenced else "-") + "-" + ("C" if "counters" in t["flags"] else "-")


def show_tables(pf, anchor, verbose):
    a = pf["anchors"].get(anchor, {})
    lines = []
    for name in sorted(_tables(a)):
        if verbose:
            lines.append(f"{table_flags(pf, anchor, name, a['tables'][name])}\t{name}" +
                         (f"\t{anchor}" if anchor else ""))
        else:
            lines.append(name)
    return lines


# pfvar.h FCNT_NAMES and PFRES_NAMES (FreeBSD 14): the rows of print_status()
STATE_COUNTERS = ("searches", "inserts", "removals")
REASONS = ("match", "bad-offset", "fragment", "short", "normalize", "memory", "bad-timestamp",
           "congestion", "ip-option", "proto-cksum", "state-mismatch", "state-insert",
           "state-limit", "src-limit", "synproxy", "map-failed")


def status_lines(pf):
    """pfctl_parser.c print_status(): every counter is 0 (no packet passes the
    stand-in) and the run time 0, so the rate column stays blank."""
    state = "Enabled" if pf["enabled"] else "Disabled"
    debug = {"none": "None", "urgent": "Urgent", "misc": "Misc", "loud": "Loud"}[
        pf["anchors"].get("", {}).get("options", {}).get("debug", "urgent")]
    lines = [f"{f'Status: {state} for 0 days 00:00:00':<44}{'Debug: ' + debug:>15}", "",
             f"{'State Table':<27} {'Total':>14} {'Rate':>16}",
             f"  {'current entries':<25} {0:>14} {'':>14}"]
    lines += [f"  {name:<25} {0:>14} {'':>14}" for name in STATE_COUNTERS]
    lines.append("Counters")
    lines += [f"  {name:<25} {0:>14} {'':>14}" for name in REASONS]
    return lines


def verbosity(opts):
    return opts.get("-v-count", 0)


def show(pf, what, anchor, recurse, opts):
    if anchor and anchor not in existing_anchors(pf) and what in ("rules", "nat", "Tables"):
        err("pfctl: DIOCGETRULES: Invalid argument" if what != "Tables"
            else "pfctl: Anchor does not exist.")
        return 0 if what != "Tables" else 1
    if what == "rules":
        for line in show_rules(pf, anchor, recurse, verbosity(opts)):
            out(line)
    elif what == "nat":
        for line in show_nat(pf, anchor, verbosity(opts)):
            out(line)
    elif what == "Anchors":
        if anchor and anchor not in existing_anchors(pf):
            err(f"Anchor '{anchor}' not found.")
            return 0

        def walk(path):
            for child in children(pf, path):
                out("  " + child)
                if "-v" in opts:
                    walk(child)
        walk(anchor)
    elif what == "Tables":
        for line in show_tables(pf, anchor, "-v" in opts):
            out(line)
    elif what == "info":
        for line in status_lines(pf):
            out(line)
    elif what == "Running":
        # pfctl_show_running(): prints the state, exits 0 when running
        out("Enabled" if pf["enabled"] else "Disabled")
        return 0 if pf["enabled"] else 1
    elif what == "labels":
        # pfctl_show_rules(PFCTL_SHOW_LABELS): each labelled filter rule with its
        # evaluations, packets, bytes, in/out packets and bytes and states, all 0 here
        for r in pf["anchors"].get(anchor, {}).get("rules", []):
            if r.get("labels"):
                out(" ".join(r["labels"]) + " 0 0 0 0 0 0 0 0")
    elif what in ("states", "Sources"):
        pass    # no packets pass through the stand-in, so there are no states
    elif what == "all":
        # pfctl_print_title() sections; TIMEOUTS, LIMITS and the rest are not modelled
        sections = [("TRANSLATION RULES:", show_nat(pf, anchor)),
                    ("FILTER RULES:", show_rules(pf, anchor, recurse)),
                    ("INFO:", status_lines(pf)),
                    ("TABLES:", show_tables(pf, anchor, False))]
        first = True
        for title, lines in sections:
            if not lines and title != "INFO:":
                continue
            if not first:
                out("")
            first = False
            out(title)
            for line in lines:
                out(line)
    else:
        raise NotImplementedError(what)
    return 0


# ------------------------------------------------------------------ flush

def xprintf(opts, msg):
    """pfctl_table.c xprintf(): message on stderr ending in "." unless -q.

    With -n pfctl still opens /dev/pf (PF_OPT_DUMMYACTION) and asks the
    kernel with PFR_FLAG_DUMMY, so the message ends in " (dummy)."."""
    if "-q" not in opts:
        err(msg + (" (dummy)." if "-n" in opts else "."))


def flush(what, anchor, opts):
    quiet = "-q" in opts
    with kernel(write=True) as k:
        pf = k["pf"]
        a = pf["anchors"].setdefault(anchor, empty_anchor())
        msgs = []
        if what in ("ethernet", "all"):
            msgs.append("Ethernet rules cleared")
        if what in ("rules", "all"):
            a["scrub"], a["rules"] = [], []
            msgs.append("rules cleared")
        if what in ("nat", "all"):
            a["nat"], a["rdr"], a["binat"] = [], [], []
            msgs.append("nat cleared")
        if what in ("Tables", "all"):
            n = len(a["tables"])
            a["tables"] = {}
            msgs.append(f"{n} tables deleted.")
        if what == "states" or (what == "all" and not anchor):
            msgs.append("0 states cleared")
        if what == "Sources" or (what == "all" and not anchor):
            msgs.append("source tracking entries cleared")
        if what == "info" or (what == "all" and not anchor):
            msgs.append("pf: statistics cleared")
        if what == "all" and not anchor:
            a["options"].pop("skip", None)
            msgs.append("pf: interface flags reset")
        prune(pf)
    if not quiet:
        for m in msgs:
            err(m)
    return 0


# ------------------------------------------------------------------ tables

def parse_addresses(ctx, words, test):
    """pfctl_parser.c append_addr(): "!" negation, host() resolution."""
    found = []
    parser = pf_parse.Parser(ctx)
    for w in words:
        neg = False
        while w.startswith("!"):
            neg, w = not neg, w[1:]
        hosts = parser.resolve_host(w) if w else None
        for line in parser.errors:
            err(line)
        parser.errors.clear()
        if not hosts:
            return None
        for h in hosts:
            width = 32 if h["af"] == "inet" else 128
            if test and (neg or h["bits"] != width):
                err(f"pfctl: cannot decode {w}: Invalid argument")
                return None
            if h["bits"] > width:
                # append_addr_host(): EINVAL, load_addr() warn()s
                err(f"pfctl: cannot decode {w}: Invalid argument")
                return None
            text = h["addr"] if h["bits"] == width else f"{h['addr']}/{h['bits']}"
            found.append(("!" if neg else "") + text)
    return found


def _covers(entry, addr):
    """Table lookup (pfr_match_addr): longest prefix wins, "!" entries exclude."""
    best = None
    for e in entry:
        net = ipaddress.ip_network(e.lstrip("!"), strict=False)
        ip = ipaddress.ip_address(addr)
        longer = best is None or net.prefixlen > best[0].prefixlen
        if ip.version == net.version and ip in net and longer:
            best = (net, e.startswith("!"))
    return best is not None and not best[1]


def table_command(name, cmd, words, anchor, opts):
    if len(name) >= pf_parse.PF_TABLE_NAME_SIZE:
        usage()
    with kernel() as k:
        ctx = _context(k)
    if cmd in ("show", "flush", "kill") and words:
        usage()
    addrs = []
    if cmd in ("add", "delete", "replace", "test"):
        addrs = parse_addresses(ctx, words, test=cmd == "test")
        if addrs is None:
            return EX_TABLE
    dry = "-n" in opts
    with kernel(write=not dry) as k:
        pf = k["pf"]
        a = pf["anchors"].get(anchor)
        table = _tables(a or {}).get(name)
        if cmd in ("add", "replace") and table is None:
            # CREATE_TABLE: a table made from the command line is persistent
            xprintf(opts, "1 table created")
            a = pf["anchors"].setdefault(anchor, empty_anchor())
            a["tables"] = _tables(a)
            table = a["tables"].setdefault(name, {"flags": ["persist"], "addrs": []})
            if dry:
                return 0
        if table is None:
            err("pfctl: Table does not exist.")
            return EX_TABLE
        if cmd in ("add", "delete", "replace", "flush") and "const" in table["flags"]:
            err("pfctl: Operation not permitted.")
            return EX_TABLE
        current = table["addrs"]
        if cmd == "show":
            for e in current:
                neg = e.startswith("!")
                out(f"  {'!' if neg else ' '}{e.lstrip('!')}")   # print_addrx(): "%c %c%s"
        elif cmd == "add":
            new = [x for i, x in enumerate(addrs) if x not in current and x not in addrs[:i]]
            table["addrs"] = current + new
            xprintf(opts, f"{len(new)}/{len(addrs)} addresses added")
        elif cmd == "delete":
            gone = [x for x in dict.fromkeys(addrs) if x in current]
            table["addrs"] = [x for x in current if x not in gone]
            xprintf(opts, f"{len(gone)}/{len(addrs)} addresses deleted")
        elif cmd == "replace":
            wanted = list(dict.fromkeys(addrs))
            added = [x for x in wanted if x not in current]
            deleted = [x for x in current if x not in wanted]
            table["addrs"] = wanted
            if added:
                xprintf(opts, f"{len(added)} addresses added")
            if deleted:
                xprintf(opts, f"{len(deleted)} addresses deleted")
            if not added and not deleted:
                xprintf(opts, "no changes")
        elif cmd == "flush":
            xprintf(opts, f"{len(current)} addresses deleted")
            table["addrs"] = []
        elif cmd == "kill":
            del a["tables"][name]
            xprintf(opts, "1 table deleted")
        elif cmd == "test":
            hits = [x for x in addrs if _covers(current, x)]
            xprintf(opts, f"{len(hits)}/{len(addrs)} addresses match")
            if "-v" in opts:
                for x in hits:
                    out(f"M  {x}")
            return 2 if len(hits) < len(addrs) else 0
        prune(pf)
    return 0


# ------------------------------------------------------------------ main

def main(args):
    opts, rest = getopt_strict("pfctl", args, "a:AdD:eqf:F:ghi:k:K:mMnNOo:Pp:rRs:St:T:vx:z")
    o = {}
    for flag, value in opts:
        if flag == "-v":
            o["-v-count"] = o.get("-v-count", 0) + 1     # -vv: PF_OPT_VERBOSE2
        if flag in ("-A", "-D", "-g", "-h", "-i", "-k", "-K", "-m", "-M", "-N", "-O", "-o", "-p",
                    "-P", "-r", "-R", "-S", "-x", "-z"):
            not_implemented("pfctl", args)
        o[flag] = value
    if not o:
        usage()
    show_opt = clear_opt = table_cmd = None
    if "-s" in o:
        show_opt = lookup_option(o["-s"], SHOW_OPTS)
        if show_opt is None:
            err(f"pfctl: Unknown show modifier '{o['-s']}'")
            usage()
    if "-F" in o:
        clear_opt = lookup_option(o["-F"], CLEAR_OPTS)
        if clear_opt is None:
            err(f"pfctl: Unknown flush modifier '{o['-F']}'")
            usage()
    if "-T" in o:
        table_cmd = lookup_option(o["-T"], TABLE_CMDS)
        if table_cmd is None:
            err(f"pfctl: Unknown table command '{o['-T']}'")
            usage()
    if ("-T" in o) != ("-t" in o):
        usage()
    if rest and table_cmd is None:
        err(f"pfctl: unknown command line argument: {rest[0]} ...")
        usage()
    if show_opt in ("ether", "queue", "Interfaces", "timeouts", "memory", "osfp") or \
            clear_opt in ("queue", "osfp") or table_cmd in ("load", "zero", "expire", "reset"):
        not_implemented("pfctl", args)

    anchor, recurse = o.get("-a"), False
    if anchor is not None:
        if anchor == "":
            err("pfctl: anchor name must not be empty")
            return 1
        if anchor.endswith("*"):
            # main(): a trailing "*" (or "/*") asks for recursion
            anchor = anchor[:-2] if anchor.endswith("/*") else anchor[:-1]
            recurse = True
    anchor = anchor or ""
    modifying = clear_opt or "-f" in o
    if modifying and (anchor.startswith("_") or "/_" in anchor):
        err("pfctl: anchor names beginning with '_' cannot be modified from the command line")
        return 1
    if recurse and (clear_opt or "-f" in o or table_cmd):
        not_implemented("pfctl", args)

    if "-n" in o:
        # main(): -n turns off -e, -d, -F and -s; only -f (and -T) are checked
        show_opt = clear_opt = None
        o.pop("-e", None)
        o.pop("-d", None)
    status = 0
    if "-d" in o:
        status |= enable(False, o)
    if show_opt:
        with kernel() as k:
            rc = show(k["pf"], show_opt, anchor, recurse, o)
        status = status or rc
    if clear_opt:
        status = status or flush(clear_opt, anchor, o)
    if table_cmd:
        rc = table_command(o["-t"], table_cmd, rest, anchor, o)
        if "-f" in o:
            o.pop("-f")      # main(): -f with -T names an address file (not modelled)
            not_implemented("pfctl", args)
        status = rc if rc else status
    if "-f" in o and load(anchor, o["-f"], o):
        status = 1
    if "-e" in o:
        status |= enable(True, o)
    return status


def enable(on, o):
    with kernel(write=True) as k:
        if k["pf"]["enabled"] == on:
            # pfctl_enable()/pfctl_disable(): EEXIST / ENOENT from DIOCSTART/DIOCSTOP
            err("pfctl: pf already enabled" if on else "pfctl: pf not enabled")
            raise Exit(1)
        k["pf"]["enabled"] = on
    if "-q" not in o:
        err("pf enabled" if on else "pf disabled")
    return 0

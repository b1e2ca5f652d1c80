"""rcorder(8) double: order rc.d scripts by their PROVIDE/REQUIRE/BEFORE lines.

Forms (after FreeBSD sbin/rcorder/rcorder.c and rcorder(8), 14.x):
  rcorder [-k keyword] [-s keyword] file ...
  - each file's header lines "# PROVIDE: a b", "# REQUIRE: c", "# BEFORE: d",
    "# KEYWORD: e" (each may repeat); a file is printed after every file
    providing what it REQUIRES, and before the providers of what it lists in
    BEFORE; files are taken in argument order, each one's requirements first
    (depth first), as rcorder.c's generate_ordering/do_file do;
  - -k keyword (repeatable): print only files with one of these keywords;
    -s keyword (repeatable): do not print files with this keyword (they still
    order the others);
  - a requirement nobody provides: "rcorder: requirement `X' in file `F' has
    no providers." on stderr, the file is still printed;
  - a cycle: "rcorder: Circular dependency on provision `X' in file `F'." on
    stderr, the loop is broken there, and the exit status is 1.
"""

import re

from .common import err, getopt_strict, not_implemented, out

HEADER = re.compile(r"^#\s*(PROVIDE|REQUIRE|REQUIRES|BEFORE|KEYWORD|KEYWORDS):\s*(.*)$")


def parse(path):
    """(provides, requires, befores, keywords) of one script's header."""
    heads = {"PROVIDE": [], "REQUIRE": [], "BEFORE": [], "KEYWORD": []}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = HEADER.match(line.rstrip("\n"))
                if m:
                    key = m.group(1).rstrip("S") if m.group(1) in ("REQUIRES", "KEYWORDS") else m.group(1)
                    heads[key] += m.group(2).split()
    except OSError:
        return None
    return heads["PROVIDE"], heads["REQUIRE"], heads["BEFORE"], heads["KEYWORD"]


def order(paths):
    """Ordered list of paths, plus the warnings rcorder prints; None entries skipped."""
    info = {}
    providers = {}
    for p in paths:
        parsed = parse(p)
        if parsed is None:
            continue
        info[p] = {"provide": parsed[0], "require": list(parsed[1]), "before": parsed[2],
                   "keyword": parsed[3]}
        for name in parsed[0]:
            providers.setdefault(name, []).append(p)
    # BEFORE: x in F means every provider of x requires F (rcorder.c insert_before)
    for p, i in info.items():
        for name in i["before"]:
            for q in providers.get(name, []):
                info[q].setdefault("after", []).append(p)
    done, active, result, warnings = set(), set(), [], []
    status = 0

    def visit(p):
        nonlocal status
        if p in done:
            return
        active.add(p)
        i = info[p]
        for name in i["require"]:
            provs = providers.get(name)
            if not provs:
                warnings.append(f"rcorder: requirement `{name}' in file `{p}' has no providers.")
                continue
            for q in provs:
                if q in active:
                    warnings.append(f"rcorder: Circular dependency on provision `{name}' in file `{q}'.")
                    status = 1
                    continue
                visit(q)
        for q in i.get("after", []):
            if q in active:
                warnings.append(f"rcorder: Circular dependency on file `{q}'.")
                status = 1
                continue
            visit(q)
        active.discard(p)
        done.add(p)
        result.append(p)

    for p in paths:
        if p in info:
            visit(p)
    return result, info, warnings, status


def main(args):
    opts, files = getopt_strict("rcorder", args, "k:s:")
    if not files:
        not_implemented("rcorder", args)
    keep = [v for f, v in opts if f == "-k"]
    skip = [v for f, v in opts if f == "-s"]
    result, info, warnings, status = order(files)
    for w in warnings:
        err(w)
    for p in result:
        kws = info[p]["keyword"]
        if keep and not any(k in kws for k in keep):
            continue
        if any(s in kws for s in skip):
            continue
        out(p)
    return status

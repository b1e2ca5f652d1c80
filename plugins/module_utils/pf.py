# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""PF text handling for the warden anchors: pure functions, no pfctl calls.

The collection never rewrites the operator's /etc/pf.conf. It only makes sure
the main ruleset references the warden anchors, adding each missing line once
where pf.conf's statement order (options, normalization, queueing,
translation, filtering) allows it, and leaves every other byte as it was.
"""

from __future__ import annotations

import re

ANCHOR_ROOT = "warden"

# First word of a pf.conf statement -> its section in parse.y's enforced order.
TRANSLATION_WORDS = ("nat", "rdr", "binat", "nat-anchor", "rdr-anchor", "binat-anchor", "no")
FILTER_WORDS = ("pass", "block", "match", "anchor", "antispoof")

MARK = "# warden.fleet:"


def references(anchor, path):
    """The four lines the main ruleset needs: translation anchors, filter anchor, and the anchor's file."""
    root = anchor.split("/", 1)[0]
    return {
        "nat": f'nat-anchor "{root}/*"',
        "rdr": f'rdr-anchor "{root}/*"',
        "filter": f'anchor "{root}/*"',
        "load": f'load anchor "{anchor}" from "{path}"',
    }


def _statements(text):
    """(first line index, last line index, words) of every pf.conf statement, continuation lines joined."""
    lines = text.split("\n")
    out = []
    start, parts = None, []
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if start is None:
            start = i
        stripped = code.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(stripped)
        words = " ".join(parts).split()
        if words:
            out.append((start, i, words))
        start, parts = None, []
    return out


def _has(statements, line):
    want = line.split()
    return any(statement[2] == want for statement in statements)


def _load_index(statements, anchor):
    """Line range of an existing `load anchor "ANCHOR" from ...` statement, or None."""
    for first, last, words in statements:
        if words[:3] == ["load", "anchor", f'"{anchor}"']:
            return first, last
    return None


def add_references(text, anchor, path):
    """pf.conf text with the warden references added where missing; every other line kept as it was.

    The translation anchors go before the operator's first translation or filter statement, the filter
    anchor before the operator's first filter statement, so that pf's statement order holds and the
    anchor's C(quick) rules decide before any rule of the operator can (pf's last match wins otherwise).
    C(load anchor) goes at the end: it may stand anywhere, and pfctl loads the anchor's file with the main
    ruleset, also at boot.
    """
    refs = references(anchor, path)
    statements = _statements(text)
    lines = text.split("\n")
    trailing = lines and lines[-1] == ""
    if trailing:
        lines = lines[:-1]

    first_translation = next(
        (first for first, dummy, words in statements if words[0] in TRANSLATION_WORDS + FILTER_WORDS), None
    )
    first_filter = next((first for first, dummy, words in statements if words[0] in FILTER_WORDS), None)

    inserts = {}   # line index -> lines to insert before it (None: at the end)
    for key, where in (("nat", first_translation), ("rdr", first_translation), ("filter", first_filter)):
        if not _has(statements, refs[key]):
            inserts.setdefault(where, []).append(refs[key])

    load = _load_index(statements, anchor)
    replace_load = None
    if load is None:
        inserts.setdefault(None, []).append(refs["load"])
    elif not _has(statements, refs["load"]):
        replace_load = load

    if not inserts and replace_load is None:
        return text

    out = []
    for i, line in enumerate(lines):
        if i in inserts:
            out.append(f"{MARK} the agents' anchors (see docs/network.md)")
            out.extend(inserts[i])
        if replace_load is not None and replace_load[0] <= i <= replace_load[1]:
            if i == replace_load[0]:
                out.append(refs["load"])
            continue
        out.append(line)
    if None in inserts:
        out.append(f"{MARK} the agents' anchor rules, loaded with this file (also at boot)")
        out.extend(inserts[None])
    return "\n".join(out) + "\n"


def minimal_pf_conf(anchor, path, ssh_ports):
    """The /etc/pf.conf written on a host that has none.

    It passes everything, as the host did without PF, so enabling PF cuts no one off; SSH is passed
    with C(quick) and C(flags any) so that a connection already open (the running Ansible one) gets a
    state mid-stream and survives, whatever the operator adds below later.
    """
    refs = references(anchor, path)
    ports = ", ".join(str(p) for p in ssh_ports)
    return "\n".join(
        [
            "# /etc/pf.conf written by warden.fleet because this host had none.",
            "# Edit freely: later runs only add a missing warden anchor line and keep the rest as it is.",
            "set skip on lo0",
            refs["nat"],
            refs["rdr"],
            "# The agents' isolation rules (quick) come first.",
            refs["filter"],
            "# SSH, including connections open before PF was enabled.",
            f"pass in quick proto tcp from any to any port {{ {ports} }} flags any keep state",
            "pass all flags any keep state",
            refs["load"],
            "",
        ]
    )


def loaded_references_ok(rules_text, nat_text, anchor):
    """Whether the loaded main ruleset calls the warden anchors (pfctl -sr and -sn output)."""
    root = anchor.split("/", 1)[0]
    rules = [line.split() for line in rules_text.splitlines()]
    nats = [line.split() for line in nat_text.splitlines()]
    return (
        any(w[:2] == ["anchor", f'"{root}/*"'] for w in rules)
        and any(w[:2] == ["nat-anchor", f'"{root}/*"'] for w in nats)
        and any(w[:2] == ["rdr-anchor", f'"{root}/*"'] for w in nats)
    )


TABLE_RE = re.compile(r"^table <(?P<name>[^>]+)>[^{]*\{(?P<body>[^}]*)\}")


def expected_from_dry_run(text):
    """Split `pfctl -nv -a ANCHOR -f FILE` output into (rule lines, {table: sorted entries})."""
    rules, tables = [], {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = TABLE_RE.match(line)
        if m:
            tables[m.group("name")] = sorted(e for e in m.group("body").replace(",", " ").split())
        elif line.startswith("table <"):
            tables[line[7:].split(">", 1)[0]] = []
        else:
            rules.append(line)
    return sorted(rules), tables


def loaded_rules(rules_text, nat_text):
    """Rule lines of `pfctl -a ANCHOR -sr` and `-sn`, in the same form as expected_from_dry_run's."""
    lines = [line.strip() for line in (rules_text + "\n" + nat_text).splitlines()]
    return sorted(line for line in lines if line and not line.startswith("@"))


def ruleset_has_block_without_ssh(rules_text, ssh_ports):
    """True when a loaded main ruleset blocks something and has no pass rule naming an SSH port.

    PF passes by default; a ruleset without block rules cannot cut SSH. With block rules, at least one pass
    rule must name the SSH port before the collection enables PF on a host where it is disabled.
    """
    names = {str(p) for p in ssh_ports} | ({"ssh"} if 22 in ssh_ports else set())
    lines = [line.split() for line in rules_text.splitlines()]
    if not any(w and w[0] == "block" for w in lines):
        return False
    for w in lines:
        if not w or w[0] != "pass" or "out" in w[:2]:
            continue
        if "port" not in w:
            # A pass without ports that is not limited to other protocols passes SSH too.
            if "proto" not in w or "tcp" in w:
                return False
            continue
        for i, word in enumerate(w[:-1]):
            if word == "port" and w[i + 1] in ("=",) and i + 2 < len(w) and w[i + 2] in names:
                return False
            if word == "port" and w[i + 1] in names:
                return False
    return True

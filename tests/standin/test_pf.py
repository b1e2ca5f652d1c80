"""PF on the stand-in: the pf.conf grammar of the pfctl double, its commands
and output formats, and the test-side rule evaluator (pf_eval).

Grammar and evaluator tests run in-process on the doubles package (fast,
no root); the command forms run `pfctl` inside one stand-in (root).
Every accepted form is shown as FreeBSD 14's pfctl prints it; every refused
form with pfctl's message (sbin/pfctl/parse.y, pfctl_parser.c, pfctl.c,
pfctl_table.c).
"""

import json
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "doubles"))

import pf_eval  # noqa: E402
from standin_doubles import pf_parse, pfctl  # noqa: E402

IFACES = {
    "lo0": {"inet": ["127.0.0.1/8"], "groups": ["lo"]},
    "vtnet0": {"inet": ["192.0.2.10/24"], "groups": ["egress"]},
    "warden0": {"inet": ["192.168.72.1/24", "10.0.1.1/24"], "groups": ["bridge"]},
}


def ctx(files=None):
    files = files or {}

    def read_file(path):
        if path in files:
            return files[path]
        raise FileNotFoundError(2, "No such file or directory")

    return pf_parse.Context(interfaces=IFACES, etc=os.path.join(HERE, "no-such-etc"),
                            read_file=read_file)


def parse(text, files=None):
    ruleset, errors = pf_parse.parse(text, "pf.conf", ctx(files))
    return ruleset, errors


def shown(text, files=None):
    """The ruleset as `pfctl -sn` then `pfctl -sr` would print it."""
    ruleset, errors = parse(text, files)
    assert errors == [], errors
    return [r["text"] for kind in ("nat", "rdr", "binat", "scrub", "rules") for r in ruleset[kind]]


def refused(text, files=None):
    ruleset, errors = parse(text, files)
    assert errors, f"accepted: {text!r}"
    return errors


# ------------------------------------------------------------------ accepted forms

ACCEPTED = [
    # macros, also inside { } lists, expanded by the lexer (parse.y yylex "$")
    ('ext_if = "vtnet0"\npass on $ext_if all\n', ["pass on vtnet0 all flags S/SA keep state"]),
    ('n = "{ 10.0.1.0/24 192.168.72.0/24 }"\npass from $n\n',
     ["pass inet from 10.0.1.0/24 to any flags S/SA keep state",
      "pass inet from 192.168.72.0/24 to any flags S/SA keep state"]),
    ('a = "10.0.1.2"\npass from { $a, 10.0.1.3 }\n',
     ["pass inet from 10.0.1.2 to any flags S/SA keep state",
      "pass inet from 10.0.1.3 to any flags S/SA keep state"]),
    # pass/block forms, defaults pfctl adds, block return variants
    ("pass all\n", ["pass all flags S/SA keep state"]),
    ("pass\n", ["pass all flags S/SA keep state"]),
    ("block all\n", ["block drop all"]),
    ("block all label 'policy deny'\n", ['block drop all label "policy deny"']),
    ("block return out quick on egress to <rfc6890>\n", ["block return out quick on egress from any to <rfc6890>"]),
    ("block return in quick on vtnet0 all\n", ["block return in quick on vtnet0 all"]),
    ("block return-rst in proto tcp all\n", ["block return-rst in proto tcp all"]),
    ("set block-policy return\nblock in all\n", ["block return in all"]),
    ("pass in log quick on vtnet0 inet proto tcp from any to any port ssh keep state\n",
     ["pass in log quick on vtnet0 inet proto tcp from any to any port = ssh flags S/SA keep state"]),
    ("pass in quick log on vtnet0 all no state\n", ["pass in log quick on vtnet0 all no state"]),
    ("pass out proto udp to port domain\n", ["pass out proto udp from any to any port = domain keep state"]),
    ("pass proto tcp from any to any port 22 modulate state\n",
     ["pass proto tcp from any to any port = ssh flags S/SA modulate state"]),
    ("pass proto tcp to port 443 synproxy state\n",
     ["pass proto tcp from any to any port = https flags S/SA synproxy state"]),
    ("pass proto tcp to port 22 flags any\n", ["pass proto tcp from any to any port = ssh flags any keep state"]),
    ("pass proto udp to port 53 flags any\n", ["pass proto udp from any to any port = domain keep state"]),
    ("block return-icmp in all\nblock return-icmp in inet all\nblock return-icmp6 in inet6 all\n",
     ["block return-icmp(port-unr, port-unr) in all", "block return-icmp(port-unr) in inet all",
      "block return-icmp6(port-unr) in inet6 all"]),
    ("pass proto tcp to port 22 flags S/SAFR\n",
     ["pass proto tcp from any to any port = ssh flags S/FSRA keep state"]),
    ("pass on { vtnet0, warden0 } proto { tcp udp } to port 53\n",
     ["pass on vtnet0 proto tcp from any to any port = domain flags S/SA keep state",
      "pass on vtnet0 proto udp from any to any port = domain keep state",
      "pass on warden0 proto tcp from any to any port = domain flags S/SA keep state",
      "pass on warden0 proto udp from any to any port = domain keep state"]),
    ("pass on ! vtnet0 all\n", ["pass on ! vtnet0 all flags S/SA keep state"]),
    ("pass on bridge all\n", ["pass on bridge all flags S/SA keep state"]),
    # addresses
    ("pass from ! 10.0.0.0/8 to 10.0.1.5\n", ["pass inet from ! 10.0.0.0/8 to 10.0.1.5 flags S/SA keep state"]),
    # set_ipmask() masks the address: pfctl prints 1.2.3.0/25 for 1.2.3.4/25 (tests/files/pf0019)
    ("pass to 1.2.3.4/25\n", ["pass inet from any to 1.2.3.0/25 flags S/SA keep state"]),
    ("pass from 10/8\n", ["pass inet from 10.0.0.0/8 to any flags S/SA keep state"]),
    ("pass from 10.010/16\n", ["pass inet from 10.10.0.0/16 to any flags S/SA keep state"]),
    ("pass inet6 from 2001:db8::/32 to any\n", ["pass inet6 from 2001:db8::/32 to any flags S/SA keep state"]),
    ("pass from <t> to (vtnet0)\n", ["pass from <t> to (vtnet0) flags S/SA keep state"]),
    ("pass to (warden0:network)\n", ["pass from any to (warden0:network) flags S/SA keep state"]),
    ("pass from (nosuch0)\n", ["pass from (nosuch0) to any flags S/SA keep state"]),
    ("pass from warden0\n", ["pass inet from 192.168.72.1 to any flags S/SA keep state",
                             "pass inet from 10.0.1.1 to any flags S/SA keep state"]),
    ("pass to warden0:network\n", ["pass inet from any to 192.168.72.0/24 flags S/SA keep state",
                                   "pass inet from any to 10.0.1.0/24 flags S/SA keep state"]),
    ("block from no-route to urpf-failed\n", ["block drop from no-route to urpf-failed"]),
    ("pass to self\n", ["pass inet from any to 127.0.0.1 flags S/SA keep state",
                        "pass inet from any to 192.0.2.10 flags S/SA keep state",
                        "pass inet from any to 192.168.72.1 flags S/SA keep state",
                        "pass inet from any to 10.0.1.1 flags S/SA keep state"]),
    # ports: names, numbers, operators, ranges
    ("pass proto tcp to port 0\npass proto tcp to port 65535\n",
     ["pass proto tcp from any to any port = 0 flags S/SA keep state",
      "pass proto tcp from any to any port = 65535 flags S/SA keep state"]),
    ("pass proto tcp from port >= 1024 to port != 25\n",
     ["pass proto tcp from any port >= 1024 to any port != smtp flags S/SA keep state"]),
    ("pass proto tcp to port 1000:2000\n", ["pass proto tcp from any to any port 1000:2000 flags S/SA keep state"]),
    ("pass proto tcp to port 22 flags AS/SA\n", ["pass proto tcp from any to any port = ssh flags SA/SA keep state"]),
    ("pass proto tcp to port < 1024\n", ["pass proto tcp from any to any port < 1024 flags S/SA keep state"]),
    ("pass proto tcp to port 1000 >< 2000\n",
     ["pass proto tcp from any to any port 1000 >< 2000 flags S/SA keep state"]),
    ("pass proto tcp to port 1000 <> 2000\n",
     ["pass proto tcp from any to any port 1000 <> 2000 flags S/SA keep state"]),
    ("pass proto tcp to port { http, https, 5432 }\n",
     ["pass proto tcp from any to any port = http flags S/SA keep state",
      "pass proto tcp from any to any port = https flags S/SA keep state",
      "pass proto tcp from any to any port = postgresql flags S/SA keep state"]),
    # options after from/to, in any order
    ("pass out proto tcp to port 5432 user 0 group 0 label \"db\" tag T rtable 0\n",
     ['pass out proto tcp from any to any port = postgresql user = 0 group = 0 flags S/SA keep state '
      'label "db" tag T rtable 0']),
    ("pass out proto tcp user unknown\npass out proto tcp user { < 1000, 2000 >< 3000 }\n",
     ["pass out proto tcp all user = unknown flags S/SA keep state",
      "pass out proto tcp all user < 1000 flags S/SA keep state",
      "pass out proto tcp all user 2000 >< 3000 flags S/SA keep state"]),
    ("pass in proto icmp icmp-type echoreq\n", ["pass in proto icmp all icmp-type echoreq keep state"]),
    ("pass in proto tcp to port 22 keep state (max 100, source-track rule, max-src-conn-rate 10/5,"
     " overload <bad> flush global)\n",
     ["pass in proto tcp from any to any port = ssh flags S/SA keep state (max 100, source-track rule, "
      "max-src-conn-rate 10/5, overload <bad> flush global)"]),
    ("block in all tagged T\npass in all ! tagged T\n",
     ["block drop in all tagged T", "pass in all flags S/SA keep state ! tagged T"]),
    # scrub and match ... scrub
    ("scrub in all\n", ["scrub in all fragment reassemble"]),
    ("scrub in all fragment reassemble\n", ["scrub in all fragment reassemble"]),
    ("scrub in all fragment reassemble no-df max-mss 1440\n",
     ["scrub in all no-df max-mss 1440 fragment reassemble"]),
    ("scrub on vtnet0 all max-mss 1440\n", ["scrub on vtnet0 all max-mss 1440 fragment reassemble"]),
    ("scrub out on vtnet0 all no-df random-id min-ttl 64\n",
     ["scrub out on vtnet0 all no-df random-id min-ttl 64 fragment reassemble"]),
    ("match out on vtnet0 all scrub (max-mss 1440)\n", ["match out on vtnet0 all scrub (max-mss 1440)"]),
    ("match in all scrub (max-mss 1400, no-df, random-id)\n",
     ["match in all scrub (no-df random-id max-mss 1400)"]),
    # translation
    ("nat on vtnet0 from 10.0.1.0/24 to any -> (vtnet0)\n",
     ["nat on vtnet0 inet from 10.0.1.0/24 to any -> (vtnet0) round-robin"]),
    ("nat on vtnet0 from 10.0.1.0/24 to any -> (vtnet0:0)\n",
     ["nat on vtnet0 inet from 10.0.1.0/24 to any -> (vtnet0:0)"]),
    ("nat on vtnet0 from 10.0.1.0/24 to any -> 192.0.2.10\n",
     ["nat on vtnet0 inet from 10.0.1.0/24 to any -> 192.0.2.10"]),
    ("nat on vtnet0 from 10.0.1.0/24 to any -> 192.0.2.10 static-port\n",
     ["nat on vtnet0 inet from 10.0.1.0/24 to any -> 192.0.2.10 static-port"]),
    ("nat on vtnet0 inet from 10.7.0.0/24 to any -> (vtnet0) port 1024:65535\n",
     ["nat on vtnet0 inet from 10.7.0.0/24 to any -> (vtnet0) port 1024:65535 round-robin"]),
    ("nat on vtnet0 from warden0:network to any -> (vtnet0)\n",
     ["nat on vtnet0 inet from 192.168.72.0/24 to any -> (vtnet0) round-robin",
      "nat on vtnet0 inet from 10.0.1.0/24 to any -> (vtnet0) round-robin"]),
    ("no nat on vtnet0 proto gre from any to any\n", ["no nat on vtnet0 proto gre all"]),
    ("nat pass on vtnet0 from 10.0.1.0/24 to any -> <pool>\n",
     ["nat pass on vtnet0 inet from 10.0.1.0/24 to any -> <pool> round-robin"]),
    ("no nat on vtnet0 from 10.0.1.5 to any\nnat on vtnet0 from 10.0.1.0/24 to any -> (vtnet0)\n",
     ["no nat on vtnet0 inet from 10.0.1.5 to any",
      "nat on vtnet0 inet from 10.0.1.0/24 to any -> (vtnet0) round-robin"]),
    ("rdr on vtnet0 proto tcp from any to any port 8080 -> 10.0.1.5 port 80\n",
     ["rdr on vtnet0 inet proto tcp from any to any port = http-alt -> 10.0.1.5 port 80"]),
    ("rdr pass on vtnet0 proto tcp to port 2222 -> 10.0.1.5 port ssh\n",
     ["rdr pass on vtnet0 inet proto tcp from any to any port = 2222 -> 10.0.1.5 port 22"]),
    ("binat on vtnet0 from 10.0.1.5 to any -> 192.0.2.11\n",
     ["binat on vtnet0 inet from 10.0.1.5 to any -> 192.0.2.11"]),
    # anchors: quoted, bare, wildcard, with conditions
    ('nat-anchor "warden/*"\nrdr-anchor "warden/*"\nanchor "warden/*"\n',
     ['nat-anchor "warden/*" all', 'rdr-anchor "warden/*" all', 'anchor "warden/*" all']),
    ("anchor warden\n", ['anchor "warden" all']),
    ('anchor "warden/atlas" in on warden0 from 10.0.1.0/24\n',
     ['anchor "warden/atlas" in on warden0 inet from 10.0.1.0/24 to any']),
    ('anchor "x" quick\n', ['anchor "x" quick all']),
    # include (after the order of its own statements)
    ('include "/etc/pf.inc"\npass all\n', ["block drop all", "pass all flags S/SA keep state"]),
]


@pytest.mark.parametrize("text,expected", ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_grammar_accepts_and_prints_as_pfctl(text, expected):
    assert shown(text, files={"/etc/pf.inc": "block all\n"}) == expected


def test_options_and_tables_are_kept():
    ruleset, errors = parse(
        "set skip on lo0\nset skip on { lo0 bridge }\nset block-policy return\nset state-policy if-bound\n"
        "set optimization aggressive\nset ruleset-optimization basic\nset loginterface vtnet0\n"
        "set debug urgent\nset hostid 1\nset limit states 20000\nset limit { frags 100, src-nodes 50 }\n"
        "set timeout tcp.established 3600\nset timeout { udp.first 30 udp.single 20 }\n"
        "set reassemble yes no-df\nset keepcounters\nset require-order yes\n"
        "table <warden_net> persist { 10.0.1.0/24, 192.168.72.0/24 }\n"
        "table <c> const counters { 10.0.1.5 !10.0.1.6 }\ntable <empty> persist { }\n"
        "table <masked> { 10.0.4.7/24 }\n"
        'table <f> file "/etc/hosts.pf"\n',
        files={"/etc/hosts.pf": "10.0.2.0/24 # comment\n10.0.3.1\n"})
    assert errors == []
    assert ruleset["options"] == {
        "skip": ["lo0", "bridge"], "block-policy": "return", "state-policy": "if-bound",
        "optimization": "aggressive", "ruleset-optimization": "basic", "loginterface": "vtnet0",
        "debug": "urgent", "hostid": 1, "limit": {"states": 20000, "frags": 100, "src-nodes": 50},
        "timeout": {"tcp.established": 3600, "udp.first": 30, "udp.single": 20},
        "reassemble": "yes no-df", "keepcounters": True, "require-order": "yes"}
    assert ruleset["tables"] == {
        "warden_net": {"flags": ["persist"], "addrs": ["10.0.1.0/24", "192.168.72.0/24"]},
        "c": {"flags": ["const", "counters"], "addrs": ["10.0.1.5", "!10.0.1.6"]},
        "empty": {"flags": ["persist"], "addrs": []},
        "masked": {"flags": [], "addrs": ["10.0.4.0/24"]},
        "f": {"flags": [], "addrs": ["10.0.2.0/24", "10.0.3.1"]}}
    # -v lines in print_tabledef() form (sbin/pfctl/tests/files/pf0048.ok)
    assert [v for v in ruleset["verbose"] if v.startswith("table")] == [
        "table <warden_net> persist { 10.0.1.0/24 192.168.72.0/24 }",
        "table <c> const counters { 10.0.1.5 !10.0.1.6 }", "table <empty> persist { }",
        "table <masked> { 10.0.4.0/24 }", 'table <f> file "/etc/hosts.pf"']
    assert ruleset["verbose"][:2] == ["set skip on { lo0 }", "set skip on { lo0 bridge }"]


def test_load_anchor_and_require_order_no():
    ruleset, errors = parse('anchor "w"\nload anchor w from "/etc/w.conf"\n')
    assert errors == [] and ruleset["loads"] == [{"anchor": "w", "file": "/etc/w.conf"}]
    # with require-order no, statements may come in any order (parse.y check_rulestate)
    assert shown("set require-order no\npass all\nnat on vtnet0 from any to any -> (vtnet0)\n") == [
        "nat on vtnet0 all -> (vtnet0) round-robin", "pass all flags S/SA keep state"]


# ------------------------------------------------------------------ refused forms

REFUSED = [
    # the examples the previous checker let through
    ("nat on vtnet0 from 10.0.1.0/24 to any ->\n", ["pf.conf:1: syntax error"]),
    ("nat on vtnet0 from 10.0.1.0/24 to any\n", ["pf.conf:1: translation rule requires '-> address'"]),
    ("rdr on vtnet0 proto tcp to port 80\n", ["pf.conf:1: translation rule requires '-> address'"]),
    ("pass out keep state from any\n", ["pf.conf:1: syntax error"]),
    ("pass from 10.0.1.0/33\n", ["netmask 33 invalid for IPv4 address", "pf.conf:1: skipping rule due to errors",
                                 "pf.conf:1: rule expands to no valid combination"]),
    ("pass to 10.0.1.300\n", ["no IP address found for 10.0.1.300",
                              "pf.conf:1: could not parse host specification"]),
    ("block pass all\n", ["pf.conf:1: syntax error"]),
    # order of the rule parts
    ("pass quick in all\n", ["pf.conf:1: syntax error"]),
    ("pass inet on vtnet0 all\n", ["pf.conf:1: syntax error"]),
    ("pass proto tcp on vtnet0 all\n", ["pf.conf:1: syntax error"]),
    ("pass to any from any\n", ["pf.conf:1: syntax error"]),
    ("pass all from any\n", ["pf.conf:1: syntax error"]),
    ("pass label x quick all\n", ["pf.conf:1: syntax error"]),
    # words and values
    ("pass quick on vtnet0 all kep state\n", ["pf.conf:1: syntax error"]),
    ("allow all\n", ["pf.conf:1: syntax error"]),
    ("pass in on (vtnet0) all\n", ["pf.conf:1: syntax error"]),
    ("pass on $nosuch all\n", ["pf.conf:1: macro 'nosuch' not defined", "pf.conf:1: syntax error"]),
    ('pass on $ext_if all\next_if = "vtnet0"\n', ["pf.conf:1: macro 'ext_if' not defined",
                                                  "pf.conf:1: syntax error"]),
    ("pass all label \"oops\n", ["pf.conf:1: reached end of file while parsing quoted string",
                                 "pf.conf:1: syntax error"]),
    ("pass from { 10.0.0.0/8 to any\n", ["pf.conf:1: syntax error"]),
    ("pass proto tcp to port 65536\n", ["pf.conf:1: illegal port value 65536"]),
    ("pass proto tcp to port nosuchservice\n", ["pf.conf:1: unknown port nosuchservice"]),
    ("pass in to port 22\n", ["pf.conf:1: port only applies to tcp/udp", "pf.conf:1: skipping rule due to errors",
                              "pf.conf:1: rule expands to no valid combination"]),
    ("pass proto nosuch all\n", ["pf.conf:1: unknown protocol nosuch"]),
    ("pass proto 256 all\n", ["pf.conf:1: protocol outside range"]),
    ("pass proto udp all flags S/SA\n", ["pf.conf:1: flags only apply to tcp",
                                         "pf.conf:1: skipping rule due to errors",
                                         "pf.conf:1: rule expands to no valid combination"]),
    ("pass proto tcp all flags X/SA\n", ["pf.conf:1: bogus flags X"]),
    ("pass proto tcp all icmp-type echoreq\n", ["pf.conf:1: icmp-type mismatch",
                                                "pf.conf:1: skipping rule due to errors",
                                                "pf.conf:1: rule expands to no valid combination"]),
    ("pass proto icmp all icmp-type nosuch\n", ["pf.conf:1: unknown icmp-type nosuch"]),
    ("pass from 10.0.0.1/129\n", ["invalid netmask '/129'", "pf.conf:1: could not parse host specification"]),
    ("pass from (vtnet0:bogus)\n", ["pf.conf:1: interface vtnet0:bogus has bad modifier"]),
    ("pass from (0bad)\n", ["pf.conf:1: invalid interface name '0bad'"]),
    ("pass from ::1 to 10.0.0.2\n", ["pf.conf:1: rule expands to no valid combination"]),
    ("pass user nosuchuser\n", ["pf.conf:1: unknown user nosuchuser"]),
    ("pass all rtable 1\n", ["pf.conf:1: invalid rtable id"]),
    ("pass all keep state no state\n", ["pf.conf:1: multiple state options"]),
    ("anchor _x\n", ["pf.conf:1: anchor names beginning with '_' are reserved for internal use"]),
    ("anchor warden/*\n", ["pf.conf:1: syntax error"]),
    ("no nat on vtnet0 all -> 192.0.2.10\n", ["pf.conf:1: translation rule with 'no' does not need '->'"]),
    ("nat on vtnet0 all -> 192.0.2.10 port 1024:2048 static-port\n",
     ["pf.conf:1: the 'static-port' option can't be used when specifying a port range"]),
    ("rdr on vtnet0 proto tcp all -> 10.0.1.5 static-port\n",
     ["pf.conf:1: the 'static-port' option is only valid with nat rules"]),
    ("pass all scrub (max-mss 1440)\n", ["pf.conf:1: scrub options require match"]),
    # statement order (parse.y check_rulestate)
    ("pass all\nnat on vtnet0 from any to any -> (vtnet0)\n", [f"pf.conf:2: {pf_parse.ORDER_MSG}"]),
    ("pass all\nscrub in all\n", [f"pf.conf:2: {pf_parse.ORDER_MSG}"]),
    ("nat on vtnet0 all -> (vtnet0)\nset skip on lo0\n", [f"pf.conf:2: {pf_parse.ORDER_MSG}"]),
    ('anchor "w"\nnat-anchor "w"\n', [f"pf.conf:2: {pf_parse.ORDER_MSG}"]),
    # set and table
    ("set block-policy maybe\n", ["pf.conf:1: syntax error"]),
    ("set require-order maybe\n", ["pf.conf:1: invalid value 'maybe', expected 'yes' or 'no'"]),
    ("set nosuchoption 1\n", ["pf.conf:1: syntax error"]),
    ("set limit nosuch 5\n", ["pfctl: Bad pool name.", "pf.conf:1: unable to set limit nosuch"]),
    ("set debug verbose\n", ['pfctl: unknown debug level "verbose"', "pf.conf:1: error setting debug"]),
    ("table <t> { 10.0.1.0/33 }\n", ["pf.conf:1: cannot create address buffer: Invalid argument"]),
    ("table <t> { 10.0.1.300 }\n", ["no IP address found for 10.0.1.300",
                                    "pf.conf:1: could not parse host specification"]),
    ("table t { 10.0.1.0/24 }\n", ["pf.conf:1: syntax error"]),
    ("table <t> { 10.0.0.1 }\ntable <t> { 10.0.0.2 }\n", ["pf.conf:2: table <t> redefined"]),
    ('table <t> file "/nonexistent"\n', ['pf.conf:1: cannot load "/nonexistent"']),
    ('include "/nonexistent"\n', ["pfctl: /nonexistent: No such file or directory",
                                  "pf.conf:1: failed to include file /nonexistent"]),
    # every bad line is reported (parse.y `grammar error '\n'` goes on)
    ("pass quick in all\npass all\nblock pass all\n", ["pf.conf:1: syntax error", "pf.conf:3: syntax error"]),
]


@pytest.mark.parametrize("text,messages", REFUSED, ids=[case[0] for case in REFUSED])
def test_grammar_refuses_with_pfctl_messages(text, messages):
    assert refused(text) == messages


@pytest.mark.parametrize("text", [
    "antispoof for vtnet0\n", "altq on vtnet0 cbq queue { a }\n", "pass log (all) all\n",
    "pass out route-to (vtnet0 192.0.2.1) all\n", "pass all probability 50%\n", 'anchor "x" {\npass all\n}\n',
    "scrub in all fragment crop\n", "set state-defaults pflow\n", "pass proto tcp from any os openbsd\n",
])
def test_grammar_outside_the_subset_is_unsupported(text):
    with pytest.raises(pf_parse.Unsupported):
        parse(text)


# ------------------------------------------------------------------ evaluator (in-process)

def kernel_with(**anchors):
    """A kernel dict as the pfctl double stores it, from pf.conf texts per anchor."""
    k = {"pf": {"enabled": True, "anchors": {}}, "ifaces": IFACES}
    for name, text in anchors.items():
        path = "" if name == "main" else name.replace("__", "/")
        ruleset, errors = pf_parse.parse(text, name, ctx(), path)
        assert errors == [], errors
        pfctl.store_ruleset(k["pf"], path, ruleset, name)
    return k


HOST_RULES = """\
table <warden_net> persist { 10.0.1.0/24 10.0.2.0/24 }
nat on vtnet0 from <warden_net> to any -> (vtnet0)
rdr-anchor "warden/*"
nat-anchor "warden/*"
block all
pass in quick on vtnet0 proto tcp to port ssh
anchor "warden/*"
pass quick on warden0 inet from <warden_net> to any
"""


def test_evaluator_last_match_wins_and_default_pass():
    pf = pf_eval.PF(kernel_with(main="block all\npass proto tcp to port 22\n"))
    d = pf.filter("198.51.100.1", "192.0.2.10", proto="tcp", dport=22, iface="vtnet0")
    assert (d.action, d.rule) == ("pass", "pass proto tcp from any to any port = ssh flags S/SA keep state")
    d = pf.filter("198.51.100.1", "192.0.2.10", proto="tcp", dport=80, iface="vtnet0")
    assert (d.action, d.rule, d.anchor) == ("block", "block drop all", "")
    d = pf_eval.PF(kernel_with(main="pass proto tcp to port 22\n")).filter(
        "198.51.100.1", "192.0.2.10", proto="udp", dport=53, iface="vtnet0")
    assert (d.action, d.rule) == ("pass", None)        # nothing matched: pf's default pass


def test_evaluator_dynamic_self():
    pf = pf_eval.PF(kernel_with(main="block all\npass in proto tcp to (self) port 22\n"))
    assert pf.filter("198.51.100.1", "192.0.2.10", proto="tcp", dport=22, iface="vtnet0").action == "pass"
    assert pf.filter("198.51.100.1", "10.0.1.1", proto="tcp", dport=22, iface="warden0").action == "pass"
    assert pf.filter("198.51.100.1", "10.0.1.7", proto="tcp", dport=22, iface="warden0").action == "block"


def test_evaluator_set_skip():
    pf = pf_eval.PF(kernel_with(main="set skip on lo\nblock all\n"))
    assert pf.filter("127.0.0.1", "127.0.0.1", proto="tcp", dport=5432, iface="lo0").rule is None
    assert pf.filter("127.0.0.1", "127.0.0.1", proto="tcp", dport=5432, iface="lo0").action == "pass"
    assert pf.filter("10.0.1.2", "10.0.1.1", proto="tcp", dport=5432, iface="warden0").action == "block"


def test_evaluator_quick_stops():
    pf = pf_eval.PF(kernel_with(main="block quick proto tcp to port 23\npass all\n"))
    d = pf.filter("198.51.100.1", "192.0.2.10", proto="tcp", dport=23, iface="vtnet0")
    assert (d.action, d.quick) == ("block", True)
    assert d.matched == [("", "block drop quick proto tcp from any to any port = telnet")]


def test_evaluator_anchors_tables_and_negation():
    k = kernel_with(
        main=HOST_RULES,
        warden__atlas="block quick from 10.0.1.0/24 to ! 10.0.1.0/24\npass in quick proto tcp to port 8080\n",
        warden__boreal="block quick from 10.0.2.0/24 to 10.0.1.0/24\n")
    pf = pf_eval.PF(k)
    # atlas may not leave its subnet: its own anchor decides, before the main pass quick
    d = pf.filter("10.0.1.2", "10.0.2.2", proto="tcp", dport=5432, iface="warden0")
    assert (d.action, d.anchor) == ("block", "warden/atlas")
    assert d.rule == "block drop quick inet from 10.0.1.0/24 to ! 10.0.1.0/24"
    # boreal may not reach atlas
    d = pf.filter("10.0.2.5", "10.0.1.7", proto="tcp", dport=22, iface="warden0")
    assert (d.action, d.anchor) == ("block", "warden/boreal")
    # boreal to the outside: the main ruleset's pass quick with the table decides
    d = pf.filter("10.0.2.5", "198.51.100.9", proto="tcp", dport=443, iface="warden0", direction="in")
    assert (d.action, d.anchor) == ("pass", "")
    assert d.rule == "pass quick on warden0 inet from <warden_net> to any flags S/SA keep state"
    # an address outside the table falls through to block all
    d = pf.filter("10.0.9.5", "198.51.100.9", proto="tcp", dport=443, iface="warden0")
    assert (d.action, d.rule) == ("block", "block drop all")
    # ssh from outside on the uplink
    d = pf.filter("198.51.100.9", "192.0.2.10", proto="tcp", dport=22, iface="vtnet0")
    assert d.action == "pass" and d.quick
    # order matters: a pass quick placed before the anchor decides before the anchor is reached
    k["pf"]["anchors"][""] = kernel_with(main=HOST_RULES.replace(
        'anchor "warden/*"\npass quick on warden0 inet from <warden_net> to any\n',
        'pass quick on warden0 inet from <warden_net> to any\nanchor "warden/*"\n'))["pf"]["anchors"][""]
    d = pf_eval.PF(k).filter("10.0.1.2", "10.0.2.2", proto="tcp", dport=5432, iface="warden0")
    assert (d.action, d.anchor) == ("pass", "")


def test_evaluator_table_negation_and_longest_prefix():
    pf = pf_eval.PF(kernel_with(main="table <t> { 10.0.0.0/8 !10.0.1.0/24 10.0.1.5 }\n"
                                     "block all\npass from <t>\n"))
    assert pf.filter("10.9.9.9", "192.0.2.10", proto="udp", dport=53).action == "pass"
    assert pf.filter("10.0.1.9", "192.0.2.10", proto="udp", dport=53).action == "block"
    assert pf.filter("10.0.1.5", "192.0.2.10", proto="udp", dport=53).action == "pass"


def test_evaluator_user_interface_direction_and_dynamic_addresses():
    pf = pf_eval.PF(kernel_with(main="block out on warden0 all\n"
                                     "pass out quick on warden0 proto tcp to (warden0:network) port 5432 user 1001\n"))
    args = {"proto": "tcp", "dport": 5432, "iface": "warden0", "direction": "out"}
    assert pf.filter("10.0.1.1", "10.0.1.5", uid=1001, **args).action == "pass"
    assert pf.filter("10.0.1.1", "10.0.1.5", uid=1002, **args).action == "block"
    assert pf.filter("10.0.1.1", "10.0.1.5", **args).action == "block"        # no socket: no user match
    assert pf.filter("10.0.1.1", "10.0.9.5", uid=1001, **args).action == "block"
    assert pf.filter("10.0.1.1", "10.0.1.5", uid=1001, proto="tcp", dport=5432, iface="warden0",
                     direction="in").action == "pass"                           # rule is "out" only


def test_evaluator_anchor_quick_and_translation():
    k = kernel_with(main='nat-anchor "warden/*"\nrdr-anchor "warden/*"\n'
                         "nat on vtnet0 from 10.0.0.0/8 to any -> (vtnet0)\n"
                         'block all\nanchor "warden/*" quick\npass all\n',
                    warden__atlas="no nat on vtnet0 from 10.0.1.9 to any\n"
                                  "rdr on vtnet0 proto tcp to port 8080 -> 10.0.1.5 port 80\n"
                                  "pass in proto tcp to port 80\n")
    pf = pf_eval.PF(k)
    # anchor ... quick: a match inside ends the evaluation, "pass all" after it is not reached
    d = pf.filter("198.51.100.9", "10.0.1.5", proto="tcp", dport=80, iface="vtnet0")
    assert (d.action, d.anchor, d.rule) == ("pass", "warden/atlas",
                                            "pass in proto tcp from any to any port = http flags S/SA keep state")
    t = pf.translate("10.0.1.5", "198.51.100.9", proto="tcp", dport=443, iface="vtnet0")
    assert (t.address, t.anchor) == ("192.0.2.10", "")
    assert t.rule == "nat on vtnet0 inet from 10.0.0.0/8 to any -> (vtnet0) round-robin"
    t = pf.translate("10.0.1.9", "198.51.100.9", proto="tcp", dport=443, iface="vtnet0")
    assert (t.no, t.address, t.anchor) == (True, None, "warden/atlas")
    t = pf.translate("198.51.100.9", "192.0.2.10", proto="tcp", dport=8080, iface="vtnet0", direction="in")
    assert (t.address, t.port) == ("10.0.1.5", 80)
    assert pf.translate("198.51.100.9", "192.0.2.10", proto="tcp", dport=22, iface="vtnet0",
                        direction="in").rule is None


def test_referenced_anchors():
    k = kernel_with(main='anchor "warden/*"\nanchor "solo"\n', warden__atlas="pass all\n",
                    warden__atlas__inner="pass all\n", other="pass all\n", solo='anchor "sub"\n',
                    solo__sub="pass all\n")
    assert pfctl.referenced_anchors(k["pf"]) == {"warden/atlas", "solo", "solo/sub"}
    summary = pfctl.summary(k["pf"])
    assert {a: v["referenced"] for a, v in summary["anchors"].items()} == {
        "/": True, "other": False, "solo": True, "solo/sub": True, "warden": False,
        "warden/atlas": True, "warden/atlas/inner": False}


# ------------------------------------------------------------------ pfctl inside a stand-in

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")


@pytest.fixture(scope="module")
def host():
    import standin_host as H
    name = "pytest-pf-" + uuid.uuid4().hex[:8]
    H.up(name)
    yield name
    H.down(name)


def sh(host, script, input_text=None):
    import standin_host as H
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True, input_text=input_text)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def kernel_json(host):
    import standin_host as H
    with open(os.path.join(H.paths(host)["root"], ".standin", "kernel.json"), encoding="utf-8") as fh:
        return json.load(fh)


def write(host, path, text):
    ok(host, f"cat > {path} <<'EOF'\n{text}EOF")


GOOD_PF = """\
ext_if = "vtnet0"
warden_net = "{ 10.0.1.0/24 192.168.72.0/24 }"
set skip on lo0
scrub in all
nat on $ext_if from $warden_net to any -> ($ext_if)
nat-anchor "warden/*"
rdr-anchor "warden/*"
pass in quick on $ext_if proto tcp to port ssh keep state
pass quick on warden0 inet from $warden_net to any keep state
anchor "warden/*"
"""

BROKEN = {
    "undefined macro": ("pass quick on $nosuch all\n", "macro 'nosuch' not defined"),
    "macro used before definition": ("pass on $ext_if all\next_if = \"vtnet0\"\n", "macro 'ext_if' not defined"),
    "unbalanced brace": ("t = \"{ 10.0.0.0/8\"\npass from { 10.0.0.0/8 to any\n", "syntax error"),
    "unbalanced quote": ("pass all label \"oops\n", "syntax error"),
    "order": ("pass all\nnat on vtnet0 from any to any -> (vtnet0)\n", "Rules must be in order"),
    "unknown keyword": ("pass quick on vtnet0 all kep state\n", "syntax error"),
    "unknown statement": ("allow all\n", "syntax error"),
    "nat without target": ("nat on vtnet0 from 10.0.1.0/24 to any ->\n", "syntax error"),
    "options before addresses": ("pass out keep state from any\n", "syntax error"),
    "prefix too long": ("pass from 10.0.1.0/33\n", "rule expands to no valid combination"),
    "bad address": ("pass to 10.0.1.300\n", "could not parse host specification"),
    "two actions": ("block pass all\n", "syntax error"),
}


@needs_root
def test_pfctl_loads_a_good_ruleset(host):
    write(host, "/etc/pf.conf", GOOD_PF)
    ok(host, "pfctl -nf /etc/pf.conf")
    ok(host, "pfctl -f /etc/pf.conf")
    rules = ok(host, "pfctl -sr")
    # pfctl expands the { } list into one rule per address and adds the defaults
    assert rules.splitlines() == [
        "scrub in all fragment reassemble",
        "pass in quick on vtnet0 proto tcp from any to any port = ssh flags S/SA keep state",
        "pass quick on warden0 inet from 10.0.1.0/24 to any flags S/SA keep state",
        "pass quick on warden0 inet from 192.168.72.0/24 to any flags S/SA keep state",
        'anchor "warden/*" all']
    # -v adds pfctl_print_rule_counters() lines, -vv rule numbers and the last active time
    verbose = ok(host, "pfctl -v -sr").splitlines()
    assert verbose[:3] == ["scrub in all fragment reassemble",
                           "  [ Evaluations: 0         Packets: 0         Bytes: 0           States: 0     ]",
                           verbose[2]]
    assert verbose[2].startswith("  [ Inserted: uid 0 pid ") and verbose[2].endswith(" State Creations: 0     ]")
    assert ok(host, "pfctl -vv -sr").splitlines()[4] == (
        "@0 pass in quick on vtnet0 proto tcp from any to any port = ssh flags S/SA keep state")
    assert ok(host, "pfctl -sn").splitlines() == [
        "nat on vtnet0 inet from 10.0.1.0/24 to any -> (vtnet0) round-robin",
        "nat on vtnet0 inet from 192.168.72.0/24 to any -> (vtnet0) round-robin",
        'nat-anchor "warden/*" all',
        'rdr-anchor "warden/*" all']


@needs_root
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_pfctl_rejects_broken_rulesets_and_keeps_the_loaded_one(host, case):
    write(host, "/etc/pf.conf", GOOD_PF)
    ok(host, "pfctl -f /etc/pf.conf")
    before = ok(host, "pfctl -sr")
    text, message = BROKEN[case]
    write(host, "/tmp/broken.conf", text)
    rc, _o, err = sh(host, "pfctl -nf /tmp/broken.conf")
    assert rc == 1 and message in err and "/tmp/broken.conf:" in err
    assert "pf rules not loaded" not in err        # -n only checks
    rc, _o, err = sh(host, "pfctl -f /tmp/broken.conf")
    assert rc == 1 and "pfctl: Syntax error in config file: pf rules not loaded" in err
    assert ok(host, "pfctl -sr") == before


@needs_root
def test_pfctl_anchors_enable_disable(host):
    ok(host, "printf 'pass quick on warden0 from 10.0.1.0/24 to any keep state\\n' > /tmp/a.conf")
    ok(host, "pfctl -a warden/atlas -f /tmp/a.conf")
    assert "from 10.0.1.0/24" in ok(host, "pfctl -a warden/atlas -sr")
    assert "warden/atlas" in ok(host, "pfctl -a warden -sA")
    rc, _o, err = sh(host, "pfctl -a warden/atlas -F all")
    assert rc == 0 and "rules cleared" in err
    assert ok(host, "pfctl -a warden/atlas -sr") == ""
    sh(host, "pfctl -d")
    rc, _o, err = sh(host, "pfctl -e")
    assert rc == 0 and "pf enabled" in err
    rc, _o, err = sh(host, "pfctl -e")
    assert rc == 1 and "pf already enabled" in err
    assert "Status: Enabled" in ok(host, "pfctl -s info")


@needs_root
def test_pfctl_stdin_and_the_forms_rc_d_pf_uses(host):
    write(host, "/etc/pf.conf", GOOD_PF)
    rc, out, err = sh(host, "pfctl -F all")
    assert rc == 0 and err.splitlines() == [
        "Ethernet rules cleared", "rules cleared", "nat cleared", "0 tables deleted.", "0 states cleared",
        "source tracking entries cleared", "pf: statistics cleared", "pf: interface flags reset"]
    for form in ("-Fall", "-Fa", "-F a"):
        rc, _o, err = sh(host, f"pfctl {form}")
        assert rc == 0 and "rules cleared" in err
    assert sh(host, "pfctl -q -F all") == (0, "", "")
    sh(host, "pfctl -dq")
    assert sh(host, "pfctl -s Running") == (1, "Disabled\n", "")
    ok(host, "pfctl -f /etc/pf.conf")
    assert sh(host, "pfctl -eq") == (0, "", "")
    assert sh(host, "pfctl -s Running") == (0, "Enabled\n", "")
    info = ok(host, "pfctl -s info").splitlines()
    assert info[:4] == ["Status: Enabled for 0 days 00:00:00           Debug: Urgent", "",
                        "State Table                          Total             Rate",
                        "  current entries                        0               "]
    assert "Counters" in info and info[-1].split() == ["map-failed", "0"]
    assert sh(host, "pfctl -dq") == (0, "", "")
    rc, _o, err = sh(host, "pfctl -d")
    assert rc == 1 and err == "pfctl: pf not enabled\n"
    # rc.d/pf's fallback pipes its rules in: errors name the file "stdin"
    rc, _o, err = sh(host, "echo 'pass al' | pfctl -f -")
    assert rc == 1 and "stdin:1: syntax error" in err
    assert sh(host, "echo 'block all' | pfctl -f -")[0] == 0
    assert ok(host, "pfctl -sr") == "block drop all\n"
    assert sh(host, "echo 'pass all' | pfctl -qf -") == (0, "", "")
    ok(host, "printf 'block all label \"deny\"\\npass out all label \"out\"\\n' | pfctl -f -")
    assert ok(host, "pfctl -s labels") == "deny 0 0 0 0 0 0 0 0\nout 0 0 0 0 0 0 0 0\n"
    # -v prints what it loads; -n turns off -e and -s
    out = ok(host, "pfctl -vnf /etc/pf.conf")
    assert out.splitlines()[:3] == ['ext_if = "vtnet0"', 'warden_net = "{ 10.0.1.0/24 192.168.72.0/24 }"',
                                    "set skip on { lo0 }"]
    assert "pass quick on warden0 inet from 10.0.1.0/24 to any flags S/SA keep state" in out
    assert sh(host, "pfctl -n -e -f /etc/pf.conf")[0] == 0
    assert sh(host, "pfctl -s Running")[1] == "Disabled\n"


@needs_root
def test_pfctl_tables(host):
    write(host, "/etc/pf.conf", "table <warden_net> persist { 10.0.1.0/24 }\ntable <c> const { 10.0.9.0/24 }\n"
                                "pass from <warden_net>\n")
    ok(host, "pfctl -f /etc/pf.conf")
    assert ok(host, "pfctl -s Tables") == "c\nwarden_net\n"
    assert ok(host, "pfctl -sT") == "c\nwarden_net\n"
    assert ok(host, "pfctl -s labels") == ""
    assert ok(host, "pfctl -v -s Tables") == "c-a----\tc\n-pa-r--\twarden_net\n"
    assert sh(host, "pfctl -t warden_net -T show") == (0, "   10.0.1.0/24\n", "")
    assert sh(host, "pfctl -t warden_net -T add 10.0.2.0/24 10.0.1.0/24") == (0, "", "1/2 addresses added.\n")
    assert sh(host, "pfctl -t warden_net -Tshow")[1] == "   10.0.1.0/24\n   10.0.2.0/24\n"
    assert sh(host, "pfctl -t warden_net -T test 10.0.2.7") == (0, "", "1/1 addresses match.\n")
    assert sh(host, "pfctl -t warden_net -T test 10.0.3.7 10.0.1.1") == (2, "", "1/2 addresses match.\n")
    assert sh(host, "pfctl -t warden_net -T delete 10.0.1.0/24") == (0, "", "1/1 addresses deleted.\n")
    assert sh(host, "pfctl -t warden_net -T replace 10.0.5.0/24 10.0.2.0/24") == (
        0, "", "1 addresses added.\n")
    assert sh(host, "pfctl -t warden_net -T replace 10.0.5.0/24 10.0.2.0/24") == (0, "", "no changes.\n")
    # a new table made from the command line (pfctl_table.c CREATE_TABLE), in an anchor
    assert sh(host, "pfctl -a warden/atlas -t atlas_net -T add 10.0.1.0/24") == (
        0, "", "1 table created.\n1/1 addresses added.\n")
    assert ok(host, "pfctl -a warden/atlas -s Tables") == "atlas_net\n"
    assert sh(host, "pfctl -t atlas_net -T show") == (255, "", "pfctl: Table does not exist.\n")
    assert sh(host, "pfctl -n -a warden/atlas -t atlas_net -T add 10.0.8.0/24") == (
        0, "", "1/1 addresses added (dummy).\n")
    assert ok(host, "pfctl -a warden/atlas -t atlas_net -T show") == "   10.0.1.0/24\n"
    assert sh(host, "pfctl -a warden/atlas -t atlas_net -T flush") == (0, "", "1 addresses deleted.\n")
    assert sh(host, "pfctl -a warden/atlas -t atlas_net -T kill") == (0, "", "1 table deleted.\n")
    # the address is masked with its prefix (set_ipmask()), so 10.0.1.5/24 is 10.0.1.0/24
    assert sh(host, "pfctl -t warden_net -T add 10.0.1.5/24") == (0, "", "1/1 addresses added.\n")
    assert "   10.0.1.0/24\n" in ok(host, "pfctl -t warden_net -T show")
    # refused: a prefix too long, a bad address, a const table, no -T with -t
    assert sh(host, "pfctl -t warden_net -T add 10.0.1.0/33") == (
        255, "", "pfctl: cannot decode 10.0.1.0/33: Invalid argument\n")
    rc, _o, err = sh(host, "pfctl -t warden_net -T add 10.0.1.300")
    assert rc == 255 and err == "no IP address found for 10.0.1.300\n"
    assert sh(host, "pfctl -t c -T add 10.0.8.1") == (255, "", "pfctl: Operation not permitted.\n")
    rc, _o, err = sh(host, "pfctl -t warden_net")
    assert rc == 1 and err.startswith("usage: pfctl")
    rc, _o, err = sh(host, "pfctl -t warden_net -T frobnicate")
    assert rc == 1 and "pfctl: Unknown table command 'frobnicate'" in err
    # a reload keeps tables made persistent from the command line and replaces the file's
    ok(host, "pfctl -t extra -T add 10.0.7.1")
    ok(host, "pfctl -f /etc/pf.conf")
    assert ok(host, "pfctl -s Tables") == "c\nextra\nwarden_net\n"
    assert ok(host, "pfctl -t warden_net -T show") == "   10.0.1.0/24\n"
    rc, _o, err = sh(host, "pfctl -F Tables")
    assert rc == 0 and err == "3 tables deleted.\n"


@needs_root
def test_pfctl_anchor_recursion_load_anchor_and_show_all(host):
    write(host, "/etc/atlas.conf", "table <mine> { 10.0.1.0/24 }\npass in quick from <mine>\n")
    write(host, "/etc/pf.conf", 'nat-anchor "warden/*"\nanchor "warden/*"\n'
                                'load anchor "warden/atlas" from "/etc/atlas.conf"\n')
    ok(host, "pfctl -F all")
    ok(host, "pfctl -f /etc/pf.conf")
    ok(host, "printf 'block quick from 10.0.2.0/24\\n' | pfctl -a warden/boreal -f -")
    assert ok(host, "pfctl -sA") == "  warden\n"
    assert ok(host, "pfctl -a warden -sA") == "  warden/atlas\n  warden/boreal\n"
    assert ok(host, "pfctl -v -sA") == "  warden\n  warden/atlas\n  warden/boreal\n"
    assert ok(host, "pfctl -a '*' -sr").splitlines() == [
        'anchor "warden/*" all {',
        '  anchor "atlas" all {',
        "    pass in quick from <mine> to any flags S/SA keep state",
        "  }",
        '  anchor "boreal" all {',
        "    block drop quick inet from 10.0.2.0/24 to any",
        "  }",
        "}"]
    # "x/*" with -s rules shows x's own rules (pfctl_show_rules() is called with
    # wildcard 0); anchor "warden" has none, its children are reached from main
    assert ok(host, "pfctl -a 'warden/*' -sr") == ""
    assert ok(host, "pfctl -a warden/atlas -t mine -T show") == "   10.0.1.0/24\n"
    out = ok(host, "pfctl -s all")
    assert out.startswith('TRANSLATION RULES:\nnat-anchor "warden/*" all\n\nFILTER RULES:\nanchor "warden/*" all\n')
    assert "\nINFO:\nStatus: " in out
    # a failing `load anchor` file rejects the whole load
    write(host, "/etc/atlas.conf", "pass from 10.0.1.0/33\n")
    rc, _o, err = sh(host, "pfctl -f /etc/pf.conf")
    assert rc == 1 and err.splitlines()[-2:] == ["pfctl: Syntax error in config file: pf rules not loaded",
                                                 "pfctl: load anchors"]
    assert ok(host, "pfctl -a warden/atlas -sr") == "pass in quick from <mine> to any flags S/SA keep state\n"
    # state: per anchor, referenced from main or not, tables by name
    import standin_host as H
    ok(host, "printf 'pass all\\n' | pfctl -a loose -f -")
    pf = H.state(host)["pf"]
    assert pf["anchors"]["warden/atlas"]["referenced"] and pf["anchors"]["warden/boreal"]["referenced"]
    assert pf["anchors"]["loose"]["referenced"] is False
    assert kernel_json(host)["pf"]["referenced"] == ["warden/atlas", "warden/boreal"]
    assert pf["anchors"]["warden/atlas"]["tables"] == {"mine": ["10.0.1.0/24"]}
    assert pf["anchors"]["/"]["rules"] == ['anchor "warden/*" all']
    # the evaluator reads the same kernel state; user names come from the host's passwd
    ev = pf_eval.PF.from_host(host)
    assert ev._id("user", "root") == 0
    d = ev.filter("10.0.2.3", "10.0.1.3", proto="tcp", dport=22, iface="warden0")
    assert (d.action, d.anchor) == ("block", "warden/boreal")
    assert ev.filter("10.0.1.3", "10.0.2.3", proto="tcp", dport=22, iface="warden0").anchor == "warden/atlas"


@needs_root
@pytest.mark.parametrize("cmd,rc,message", [
    ("pfctl -s tables", 1, "pfctl: Unknown show modifier 'tables'"),
    ("pfctl -F bogus", 1, "pfctl: Unknown flush modifier 'bogus'"),
    ("pfctl -s rules extra", 1, "pfctl: unknown command line argument: extra ..."),
    ("pfctl -f /nonexistent", 1, "pfctl: /nonexistent: No such file or directory"),
    ("pfctl -a _x -F all", 1, "pfctl: anchor names beginning with '_' cannot be modified from the command line"),
    ("pfctl -s memory", 64, "stand-in: pfctl -s memory is not implemented"),
    ("pfctl -k 10.0.0.1", 64, "stand-in: pfctl -k 10.0.0.1 is not implemented"),
    ("echo 'antispoof for vtnet0' | pfctl -nf -", 64, "is not implemented"),
])
def test_pfctl_refused_and_unsupported_command_forms(host, cmd, rc, message):
    got_rc, _o, err = sh(host, cmd)
    assert got_rc == rc and message in err, (got_rc, err)


def test_kernel_state_is_plain_json():
    k = kernel_with(main=HOST_RULES)
    assert json.loads(json.dumps(k)) == k

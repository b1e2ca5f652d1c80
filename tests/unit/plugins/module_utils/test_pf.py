"""The warden PF references in an operator's pf.conf, and the loaded-rules comparisons."""

from __future__ import annotations

from ansible_collections.warden.fleet.plugins.module_utils.pf import (
    add_references,
    expected_from_dry_run,
    loaded_references_ok,
    loaded_rules,
    minimal_pf_conf,
    ruleset_has_block_without_ssh,
)

ANCHOR, PATH = "warden/fleet", "/etc/pf.warden.conf"

OPERATOR = """\
# operator's own pf.conf
ext_if = "vtnet0"
table <bruteforce> persist
set skip on lo0
scrub in all

nat on $ext_if from 172.16.0.0/12 to any -> ($ext_if)
rdr on $ext_if proto tcp to port 2222 -> 172.16.0.2 port 22

block in all
pass out all keep state
pass in on $ext_if proto tcp to port { 22 \\
    443 } keep state   # ssh and https
"""


def test_references_go_in_statement_order_and_keep_the_rest():
    out = add_references(OPERATOR, ANCHOR, PATH)
    lines = out.splitlines()
    assert lines.index('nat-anchor "warden/*"') < lines.index("nat on $ext_if from 172.16.0.0/12 to any -> ($ext_if)")
    assert lines.index('rdr-anchor "warden/*"') > lines.index("scrub in all")
    assert lines.index('anchor "warden/*"') < lines.index("block in all")
    assert lines.index('anchor "warden/*"') > lines.index("rdr on $ext_if proto tcp to port 2222 -> 172.16.0.2 port 22")
    assert lines[-1] == f'load anchor "{ANCHOR}" from "{PATH}"'
    # Every line of the operator's file is still there, in order, byte for byte.
    kept = [line for line in lines if line not in set(lines) - set(OPERATOR.splitlines())]
    assert kept == OPERATOR.splitlines()


def test_references_are_added_once():
    once = add_references(OPERATOR, ANCHOR, PATH)
    assert add_references(once, ANCHOR, PATH) == once


def test_a_moved_anchor_file_rewrites_only_the_load_line():
    once = add_references(OPERATOR, ANCHOR, PATH)
    moved = add_references(once, ANCHOR, "/etc/pf.other.conf")
    assert moved.replace('"/etc/pf.other.conf"', f'"{PATH}"') == once


def test_a_file_without_rules_gets_the_references_at_the_end():
    out = add_references("set skip on lo0", ANCHOR, PATH)
    assert out.startswith("set skip on lo0\n")
    assert 'anchor "warden/*"' in out.splitlines()


def test_commented_references_do_not_count():
    text = '# anchor "warden/*"\npass all\n'
    assert 'anchor "warden/*"\npass all' in add_references(text, ANCHOR, PATH)


def test_minimal_pf_conf_passes_ssh_first():
    text = minimal_pf_conf(ANCHOR, PATH, [22, 2222])
    lines = text.splitlines()
    assert "pass in quick proto tcp from any to any port { 22, 2222 } flags any keep state" in lines
    assert add_references(text, ANCHOR, PATH) == text


def test_loaded_comparison():
    dry = (
        "table <warden_net> persist { 10.0.1.0/24 192.168.72.0/24 }\n"
        "pass in quick on warden0 inet from <warden_net> to any flags S/SA keep state\n"
        "nat on vtnet0 inet from <warden_net> to any -> (vtnet0) round-robin\n"
    )
    rules, tables = expected_from_dry_run(dry)
    assert tables == {"warden_net": ["10.0.1.0/24", "192.168.72.0/24"]}
    assert rules == loaded_rules(
        "pass in quick on warden0 inet from <warden_net> to any flags S/SA keep state\n",
        "nat on vtnet0 inet from <warden_net> to any -> (vtnet0) round-robin\n",
    )
    nats = 'nat-anchor "warden/*" all\nrdr-anchor "warden/*" all\n'
    assert loaded_references_ok('anchor "warden/*" all\n', nats, ANCHOR)
    assert not loaded_references_ok("pass all\n", 'nat-anchor "warden/*" all\n', ANCHOR)


def test_enabling_check_wants_ssh_passed_when_something_is_blocked():
    assert not ruleset_has_block_without_ssh("pass all flags S/SA keep state\n", [22])
    assert ruleset_has_block_without_ssh("block drop in all\npass out all keep state\n", [22])
    assert not ruleset_has_block_without_ssh(
        "block drop in all\npass in on vtnet0 proto tcp from any to any port = ssh flags S/SA keep state\n", [22]
    )
    assert ruleset_has_block_without_ssh(
        "block drop in all\npass in proto udp from any to any port = domain keep state\n", [22]
    )

"""The pf role on a stand-in of its own, with an operator's pf.conf already in place.

Runs preflight + the pf role (tests/pf_play.yml next to this file) with the example inventory on a second
stand-in host, so that changing pf.conf, a rejected ruleset and a reboot leave the converged host of
test_default.py alone. PF decisions come from tests/standin/pf_eval.py over what the stand-in loaded.
"""

import json
import os
import subprocess
import sys

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NAME = "molecule-pf"
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
ROOT = os.path.join(BASE, NAME, "root")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")
PLAY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pf_play.yml")
INVENTORY = os.path.join(PROJECT, "inventories", "example", "hosts.yml")
BIN = os.path.dirname(sys.executable)

sys.path.insert(0, os.path.join(PROJECT, "tests", "standin"))
from pf_eval import PF  # noqa: E402

OPERATOR = """\
# the operator's own rules
ext_if = "vtnet0"
set skip on lo0
scrub in all
block in all
pass out all keep state
pass in on $ext_if proto tcp to port 22 keep state   # ssh
pass in on $ext_if proto tcp from 198.51.100.0/24 to port 443 keep state
"""


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


def standin(*args):
    return sh(STANDIN, *args)


def play(*extra, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}",
               ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"))
    out = subprocess.run(
        [STANDIN, "run", NAME, "--", "ansible-playbook", "-i", INVENTORY, PLAY, *extra],
        capture_output=True, text=True, cwd=PROJECT, env=env, check=False,
    )
    if check:
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return out


def recap_changed(out):
    line = next(line for line in out.stdout.splitlines() if "changed=" in line and "ok=" in line)
    return int(line.split("changed=")[1].split()[0])


def read(path):
    with open(os.path.join(ROOT, path.lstrip("/")), encoding="utf-8") as fh:
        return fh.read()


def pf_state():
    return json.loads(standin("state", NAME).stdout)["pf"]


@pytest.fixture(scope="module")
def host():
    sh(STANDIN, "down", NAME, check=False)
    standin("up", NAME)
    # The bridge and gateways the network role makes, so that (self) and `on warden0` have something to match.
    standin("exec", NAME, "--", "/bin/sh", "-c",
            "b=$(ifconfig bridge create) && ifconfig $b name warden0 && ifconfig warden0 up && "
            "ifconfig warden0 inet 10.0.1.1/24 alias && ifconfig warden0 inet 192.168.72.1/24 alias && "
            "e=$(ifconfig epair create) && ifconfig warden0 addm $e")
    with open(os.path.join(ROOT, "etc", "pf.conf"), "w", encoding="utf-8") as fh:
        fh.write(OPERATOR)
    first = play("--diff")
    yield first
    sh(STANDIN, "down", NAME, check=False)


def agents():
    import yaml
    with open(INVENTORY, encoding="utf-8") as fh:
        inv = yaml.safe_load(fh)
    hostvars = next(iter(inv["warden_hosts"]["hosts"].values()))
    return sorted(hostvars["warden_agents"].items(), key=lambda kv: str(kv[1]["subnet"]))


def test_pf_keeps_the_operators_rules_byte_for_byte(host):
    text = read("/etc/pf.conf")
    added = [line for line in text.splitlines() if line not in OPERATOR.splitlines()]
    assert [line for line in text.splitlines() if line not in added] == OPERATOR.splitlines()
    assert 'anchor "warden/*"' in added and 'nat-anchor "warden/*"' in added
    assert 'load anchor "warden/fleet" from "/etc/pf.warden.conf"' in added


def test_pf_isolates_agents_and_keeps_ssh_open(host):
    (a_name, a), (b_name, b) = agents()[:2]
    a_jail, b_jail = f"{a['subnet']}.2", f"{b['subnet']}.3"
    pf = PF.from_host(NAME)
    assert pf_state()["enabled"] is True

    def verdict(src, dst, proto="tcp", dport=None, iface="warden0", **kw):
        return pf.filter(src, dst, proto=proto, dport=dport, iface=iface, direction="in", **kw).action

    assert verdict(a_jail, "198.51.100.7", dport=443) == "pass"                 # the internet
    assert pf.translate(a_jail, "198.51.100.7", proto="tcp", dport=443, iface="vtnet0",
                        direction="out").address == "192.0.2.10"                 # NATed
    assert verdict(a_jail, f"{a['subnet']}.1", "udp", 53) == "pass"             # its own gateway's DNS
    assert verdict(a_jail, f"{a['subnet']}.1", "icmp", icmp_type=8) == "pass"   # and ping
    assert verdict(a_jail, f"{a['subnet']}.5", dport=5432) == "pass"            # its own db jail
    assert verdict(a_jail, b_jail, dport=80) == "block", (a_name, b_name)       # another agent's jail
    assert verdict(a_jail, b_jail, dport=80, iface="epair0a") == "block"        # also on the bridge member
    assert verdict(a_jail, f"{b['subnet']}.1", "udp", 53) == "block"            # another agent's gateway
    assert verdict(a_jail, f"{a['subnet']}.1", dport=22) == "block"             # the host's own services
    assert verdict(a_jail, "192.0.2.10", dport=22) == "block"
    for src in ("203.0.113.9", "198.51.100.20"):
        assert verdict(src, "192.0.2.10", dport=22, iface="vtnet0") == "pass"    # SSH from anywhere
    assert verdict("203.0.113.9", "192.0.2.10", dport=443, iface="vtnet0") == "block"   # the operator's rule


def test_pf_redirects_only_the_exposed_port(host):
    """The example exposes the host's 8443 to atlas's cms jail, port 443 (expose: in the inventory)."""
    pf = PF.from_host(NAME)
    rdr = pf.translate("203.0.113.9", "192.0.2.10", proto="tcp", dport=8443, iface="vtnet0", direction="in")
    assert (rdr.address, rdr.port, rdr.anchor) == ("10.0.1.3", 443, "warden/fleet")
    assert pf.filter("203.0.113.9", "10.0.1.3", dport=443, iface="vtnet0", direction="in").action == "pass"
    for port in (8444, 443, 5432):
        assert pf.translate("203.0.113.9", "192.0.2.10", proto="tcp", dport=port, iface="vtnet0",
                            direction="in").address is None
    # behind the redirect, only the exposed jail and port: not the db jail, not another port of the cms jail
    assert pf.filter("203.0.113.9", "10.0.1.5", dport=5432, iface="vtnet0", direction="in").action == "block"
    assert pf.filter("203.0.113.9", "10.0.1.3", dport=80, iface="vtnet0", direction="in").action == "block"


def test_pf_second_run_and_check_mode_change_nothing(host):
    assert recap_changed(host) > 0
    before = (read("/etc/pf.conf"), read("/etc/pf.warden.conf"), pf_state())
    assert recap_changed(play()) == 0
    assert recap_changed(play("--check", "--diff")) == 0
    assert (read("/etc/pf.conf"), read("/etc/pf.warden.conf"), pf_state()) == before


def test_pf_rejected_ruleset_is_never_loaded(host):
    before = (read("/etc/pf.conf"), read("/etc/pf.warden.conf"), pf_state())
    out = play("-e", '{"warden_pf_gateway_services": [{"proto": "tcp", "port": 70000}]}', check=False)
    assert out.returncode != 0
    assert "pfctl rejects" in out.stdout and "nothing was changed" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert (read("/etc/pf.conf"), read("/etc/pf.warden.conf"), pf_state()) == before


def test_pf_comes_back_after_reboot(host):
    before = pf_state()
    standin("reboot", NAME)
    after = pf_state()
    assert after["enabled"] is True
    assert after["anchors"]["warden/fleet"]["rules"] == before["anchors"]["warden/fleet"]["rules"]
    assert after["anchors"]["warden/fleet"]["nat"] == before["anchors"]["warden/fleet"]["nat"]
    assert after["anchors"]["/"]["rules"] == before["anchors"]["/"]["rules"]

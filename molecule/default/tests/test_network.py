"""The network role on a stand-in host of its own: check mode, a reboot, adding and removing an agent.

The stand-in (tests/standin) is a Linux chroot with doubles of FreeBSD's commands, not FreeBSD.
Its network.subr and rc.d/netif boot the host from rc.conf as FreeBSD's do, so `standin reboot`
shows what a reboot brings back without a run. This host has an operator's bridge0 of its own
(in rc.conf and in the kernel) that the role must leave alone.
"""

import json
import os
import re
import subprocess

import pytest
import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NAME = "molecule-network"
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")
GATEWAYS = ["10.0.1.1/24", "192.168.72.1/24"]
ZEUS = {"subnet": "10.0.3", "jails": ["git"], "command": "/usr/local/bin/agent-runtime", "port": 18830}


def standin(*args, check=True):
    return subprocess.run([STANDIN, *args], capture_output=True, text=True, check=check)


def sh(*argv):
    return standin("exec", NAME, "--", *argv).stdout


def state():
    return json.loads(standin("state", NAME).stdout)


def warden0():
    ifconfig = sh("ifconfig", "warden0")
    return sorted(f"{ip}/{bin(int(mask, 16)).count('1')}"
                  for ip, mask in re.findall(r"inet (\S+) netmask 0x([0-9a-f]+)", ifconfig))


def rc(name):
    return sh("sysrc", "-n", name).strip()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("network")
    (tmp / "network.yml").write_text(yaml.safe_dump([
        {"name": "Preflight", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.preflight"}]},
        {"name": "Network", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.network"}]},
    ]))
    with open(os.path.join(PROJECT, "inventories", "example", "hosts.yml"), encoding="utf-8") as fh:
        inventory = yaml.safe_load(fh)
    standin("down", NAME, check=False)
    standin("up", NAME)
    # the operator's own bridge, persisted the usual way
    sh("ifconfig", "bridge0", "create")
    sh("sysrc", "cloned_interfaces=bridge0", "ifconfig_bridge0=up")
    try:
        yield tmp, inventory
    finally:
        standin("down", NAME)


def play(host, agents=None, *extra):
    tmp, inventory = host
    hostname, hostvars = next(iter(inventory["warden_hosts"]["hosts"].items()))
    if agents is not None:
        hostvars = dict(hostvars, warden_agents=agents)
    inv = tmp / "hosts.yml"
    inv.write_text(yaml.safe_dump({"warden_hosts": {"hosts": {hostname: hostvars}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    run = subprocess.run([STANDIN, "run", NAME, "--", "ansible-playbook", "-i", str(inv), str(tmp / "network.yml"),
                          *extra], capture_output=True, text=True, check=False, env=env, cwd=PROJECT)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def changed(stdout):
    sections = re.split(r"^TASK \[(.+?)\](?: \*+)?$", stdout, flags=re.M)
    tasks = zip(sections[1::2], sections[2::2], strict=True)
    return [name for name, body in tasks if re.search(r"^changed: ", body, re.M)]


def example_agents(host):
    return dict(next(iter(host[1]["warden_hosts"]["hosts"].values()))["warden_agents"])


def test_network_check_mode_shows_the_changes_and_makes_none(host):
    before = state()
    out = play(host, None, "--check", "--diff")
    assert "+inet 10.0.1.1/24" in out and "+inet 192.168.72.1/24" in out
    assert '+ifconfig_warden0_aliases="inet 10.0.1.1/24 inet 192.168.72.1/24"' in out
    after = state()
    assert after["interfaces"] == before["interfaces"] and after["rc_conf"] == before["rc_conf"]
    assert "warden0" not in sh("ifconfig", "-l").split()


def test_network_converges_next_to_the_operators_bridge0(host):
    play(host)
    assert warden0() == GATEWAYS
    assert "bridge" in sh("ifconfig", "warden0")
    # bridge0 is the operator's: still there under its name, and the boot clones the next unit for warden0
    assert "bridge0" in sh("ifconfig", "-l").split()
    assert rc("cloned_interfaces") == "bridge0 bridge1"
    assert rc("ifconfig_bridge1_name") == "warden0"
    assert rc("ifconfig_warden0") == "up"
    assert rc("ifconfig_warden0_aliases") == "inet 10.0.1.1/24 inet 192.168.72.1/24"
    assert rc("gateway_enable") == "YES"
    assert sh("sysctl", "-n", "net.link.bridge.pfil_member", "net.link.bridge.pfil_bridge",
              "net.inet.ip.forwarding").split() == ["1", "1", "1"]


def test_network_comes_back_after_a_reboot_without_a_run(host):
    standin("reboot", NAME)
    assert warden0() == GATEWAYS
    assert {"bridge0", "warden0"} <= set(sh("ifconfig", "-l").split())
    assert sh("sysctl", "-n", "net.link.bridge.pfil_member", "net.link.bridge.pfil_bridge",
              "net.inet.ip.forwarding").split() == ["1", "1", "1"]
    # nothing left for a run to do (this is also the second run after the converge above)
    assert changed(play(host)) == []


def test_network_adding_and_removing_an_agent_changes_only_its_gateway(host):
    agents = example_agents(host)
    out = play(host, dict(agents, zeus=ZEUS))
    assert changed(out) == [
        "warden.fleet.network : Bring up the agents' bridge with every agent's gateway",
        "warden.fleet.network : Rename it to the bridge's name, bring it up with the gateways, and forward",
    ]
    assert warden0() == sorted([*GATEWAYS, "10.0.3.1/24"])
    assert rc("ifconfig_warden0_aliases") == "inet 10.0.1.1/24 inet 10.0.3.1/24 inet 192.168.72.1/24"

    # an inventory that does not list zeus leaves its gateway alone: only state: absent removes it
    assert changed(play(host, agents)) == []
    assert "10.0.3.1/24" in warden0()

    play(host, dict(agents, zeus=dict(ZEUS, state="absent")))
    assert warden0() == GATEWAYS
    assert rc("ifconfig_warden0_aliases") == "inet 10.0.1.1/24 inet 192.168.72.1/24"
    assert rc("cloned_interfaces") == "bridge0 bridge1"

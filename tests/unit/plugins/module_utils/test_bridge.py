"""The bridge module's core: ifconfig(8) and sysrc(8) outputs as FreeBSD prints them, the rc.conf plan, one converge."""

from __future__ import annotations

import pytest

from ansible_collections.warden.fleet.plugins.module_utils.bridge import (
    IFCONFIG,
    SYSCTL,
    SYSRC,
    BridgeError,
    converge,
    parse_ifconfig,
    parse_sysrc,
    plan_rc_conf,
)

# Recorded from the stand-in's ifconfig double, which prints sbin/ifconfig's format (af_inet.c, ifbridge.c).
WARDEN0 = """\
warden0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tether 58:9c:fc:9e:52:07
\tinet 10.0.1.1 netmask 0xffffff00 broadcast 10.0.1.255
\tinet 192.168.72.1 netmask 0xffffff00 broadcast 192.168.72.255
\tid 58:9c:fc:9e:52:07 priority 32768 hellotime 2 fwddelay 15
\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200
\troot id 58:9c:fc:9e:52:07 priority 32768 ifcost 0 port 0
\tgroups: bridge
\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>
"""
BRIDGE_DOWN = """\
warden0: flags=8802<BROADCAST,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tether 58:9c:fc:9d:4b:07
\tid 58:9c:fc:9d:4b:07 priority 32768 hellotime 2 fwddelay 15
\tmaxage 20 holdcnt 6 proto rstp maxaddr 2000 timeout 1200
\troot id 58:9c:fc:9d:4b:07 priority 32768 ifcost 0 port 0
\tgroups: bridge
\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>
"""
VTNET_AS_WARDEN0 = """\
warden0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500
\tether 58:9c:fc:61:a7:06
\tinet 192.0.2.10 netmask 0xffffff00 broadcast 192.0.2.255
\tmedia: Ethernet autoselect
\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>
"""


def test_parse_ifconfig_reads_flags_addresses_and_groups():
    info = parse_ifconfig(WARDEN0)
    assert info["name"] == "warden0"
    assert "UP" in info["flags"]
    assert info["addresses"] == ["10.0.1.1/24", "192.168.72.1/24"]
    assert info["groups"] == ["bridge"]
    assert parse_ifconfig(BRIDGE_DOWN)["addresses"] == []
    assert "UP" not in parse_ifconfig(BRIDGE_DOWN)["flags"]


def test_parse_sysrc_keeps_known_variables_and_empty_values():
    out = 'cloned_interfaces: bridge0 lagg0\nifconfig_warden0: up\ngateway_enable: \n'
    assert parse_sysrc(out) == {"cloned_interfaces": "bridge0 lagg0", "ifconfig_warden0": "up", "gateway_enable": ""}


def test_rc_plan_takes_a_free_unit_and_never_renames_the_operators_bridge0():
    current = {"cloned_interfaces": "bridge0", "ifconfig_bridge0_name": ""}
    clone, rc = plan_rc_conf("warden0", current, ["vtnet0", "lo0", "bridge0", "warden0"], ["10.0.1.1/24"], [])
    assert clone == "bridge1"
    assert rc == {
        "ifconfig_bridge1_name": "warden0",
        "ifconfig_warden0": "up",
        "ifconfig_warden0_aliases": "inet 10.0.1.1/24",
    }


def test_rc_plan_keeps_its_unit_and_orders_aliases_numerically():
    current = {
        "cloned_interfaces": "bridge0 bridge3:sticky",
        "ifconfig_bridge3_name": "warden0",
        "ifconfig_warden0": "inet 172.16.0.1/24",
        "ifconfig_warden0_aliases": "inet 10.0.9.1/24 inet 10.9.9.9/32",
    }
    desired = ["192.168.72.1/24", "10.0.2.1/24", "10.0.1.1/24"]
    clone, rc = plan_rc_conf("warden0", current, [], desired, ["10.0.9.1"])
    assert clone == "bridge3"
    assert rc["ifconfig_warden0"] == "inet 172.16.0.1/24 up"
    # the operator's 10.9.9.9/32 stays; the absent agent's 10.0.9.1 goes; all in numerical order
    assert rc["ifconfig_warden0_aliases"] == "inet 10.0.1.1/24 inet 10.0.2.1/24 inet 10.9.9.9/32 inet 192.168.72.1/24"


class FakeHost:
    """Answers the module's argv calls like the recorded host; records every call."""

    def __init__(self, interfaces, rc_conf=None, sysctl=None):
        self.interfaces = interfaces  # name -> ifconfig text
        self.rc_conf = rc_conf or {"cloned_interfaces": ""}
        self.sysctl = sysctl or {"net.link.bridge.pfil_member": "0", "net.link.bridge.pfil_bridge": "1"}
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[0] == IFCONFIG:
            return self._ifconfig(argv[1:])
        if argv[0] == SYSRC:
            return 1, "".join(f"{n}: {self.rc_conf[n]}\n" for n in argv[2:] if n in self.rc_conf), ""
        if argv[0] == SYSCTL and argv[1] == "-n":
            return 0, "".join(f"{self.sysctl[n]}\n" for n in argv[2:]), ""
        if argv[0] == SYSCTL:
            self.sysctl.update(a.split("=", 1) for a in argv[1:])
            return 0, "", ""
        raise AssertionError(argv)

    def _ifconfig(self, args):
        if args == ["-l"]:
            return 0, " ".join(["vtnet0", "lo0"] + list(self.interfaces)) + "\n", ""
        if args == ["bridge", "create", "name", "warden0", "up"]:
            self.interfaces["warden0"] = BRIDGE_DOWN.replace("8802<BROADCAST", "8843<UP,BROADCAST,RUNNING")
            return 0, "warden0\n", ""
        name = args[0]
        if name not in self.interfaces:
            return 1, "", f"ifconfig: interface {name} does not exist\n"
        if len(args) == 1:
            return 0, self.interfaces[name], ""
        text = self.interfaces[name]
        if args[1:] == ["up"]:
            self.interfaces[name] = text.replace("8802<BROADCAST", "8843<UP,BROADCAST,RUNNING")
            return 0, "", ""
        if args[1:2] == ["inet"] and args[-1] == "alias":
            ip, prefix = args[2].split("/")
            mask = f"{(0xffffffff << (32 - int(prefix))) & 0xffffffff:08x}"
            line = f"\tinet {ip} netmask 0x{mask} broadcast x\n"
            head, rest = text.split("\n", 1)
            self.interfaces[name] = head + "\n" + line + rest
            return 0, "", ""
        if args[1:2] == ["inet"] and args[-1] == "-alias":
            self.interfaces[name] = "".join(line for line in text.splitlines(True) if f"inet {args[2]} " not in line)
            return 0, "", ""
        raise AssertionError(args)


def mutations(host):
    return [c for c in host.calls if c[0] == IFCONFIG and len(c) > 2 or c[0] == SYSCTL and c[1] != "-n"]


SYSCTLS = {"net.link.bridge.pfil_member": 1, "net.link.bridge.pfil_bridge": 1}


def test_creates_the_bridge_with_create_name_and_adds_every_gateway():
    host = FakeHost({})
    result = converge(host, "warden0", ["192.168.72.1/24", "10.0.1.1/24"], [], SYSCTLS, False)
    assert mutations(host) == [
        [IFCONFIG, "bridge", "create", "name", "warden0", "up"],
        [IFCONFIG, "warden0", "inet", "10.0.1.1/24", "alias"],
        [IFCONFIG, "warden0", "inet", "192.168.72.1/24", "alias"],
        [SYSCTL, "net.link.bridge.pfil_member=1"],
    ]
    assert result["changed"] and result["created"]
    assert result["clone"] == "bridge0"
    assert result["rc_conf"]["ifconfig_warden0_aliases"] == "inet 10.0.1.1/24 inet 192.168.72.1/24"
    again = converge(host, "warden0", ["10.0.1.1/24", "192.168.72.1/24"], [], SYSCTLS, False)
    assert not again["changed"]


def test_check_mode_reports_and_changes_nothing():
    host = FakeHost({"warden0": WARDEN0})
    result = converge(host, "warden0", ["10.0.1.1/24", "10.0.2.1/24"], ["192.168.72.1"], SYSCTLS, True)
    assert result["changed"]
    assert result["added"] == ["10.0.2.1/24"] and result["removed"] == ["192.168.72.1/24"]
    assert mutations(host) == []
    assert "+inet 10.0.2.1/24" not in result["diff"][0]["before"]
    assert "inet 10.0.2.1/24" in result["diff"][0]["after"]


def test_removes_only_the_absent_gateway_and_leaves_unknown_addresses():
    host = FakeHost({"warden0": WARDEN0}, sysctl={k: "1" for k in SYSCTLS})
    result = converge(host, "warden0", ["10.0.1.1/24"], ["10.0.2.1/24"], SYSCTLS, False)
    # 192.168.72.1 is neither wanted nor absent: it may be the operator's, it stays
    assert not result["changed"] and mutations(host) == []
    result = converge(host, "warden0", ["10.0.1.1/24"], ["192.168.72.1/24"], SYSCTLS, False)
    assert mutations(host) == [[IFCONFIG, "warden0", "inet", "192.168.72.1", "-alias"]]
    assert result["addresses"] == ["10.0.1.1/24"]


def test_a_non_bridge_with_the_name_fails_before_any_change():
    host = FakeHost({"warden0": VTNET_AS_WARDEN0})
    with pytest.raises(BridgeError, match="warden0 exists and is not a bridge"):
        converge(host, "warden0", ["10.0.1.1/24"], [], SYSCTLS, False)
    assert mutations(host) == []


def test_a_down_bridge_is_brought_up():
    host = FakeHost({"warden0": BRIDGE_DOWN}, sysctl={k: "1" for k in SYSCTLS})
    result = converge(host, "warden0", ["10.0.1.1/24"], [], SYSCTLS, False)
    assert mutations(host) == [[IFCONFIG, "warden0", "up"], [IFCONFIG, "warden0", "inet", "10.0.1.1/24", "alias"]]
    assert result["changed"] and not result["created"]


def test_an_end_state_that_is_not_the_wanted_one_fails():
    host = FakeHost({"warden0": WARDEN0})
    real = host._ifconfig
    # an ifconfig that exits 0 and changes nothing: the read-back catches it
    host._ifconfig = lambda args: (0, "", "") if args[-1] == "alias" else real(args)
    with pytest.raises(BridgeError, match="missing 10.0.2.1/24"):
        converge(host, "warden0", ["10.0.2.1/24"], [], {}, False)


def test_wrong_prefix_and_contradictions_are_clear_errors():
    host = FakeHost({"warden0": WARDEN0})
    with pytest.raises(BridgeError, match="has 10.0.1.1/24, not 10.0.1.1/16"):
        converge(host, "warden0", ["10.0.1.1/16"], [], {}, False)
    with pytest.raises(BridgeError, match="both wanted"):
        converge(host, "warden0", ["10.0.1.1/24"], ["10.0.1.1"], {}, False)
    with pytest.raises(BridgeError, match="not an IPv4 address"):
        converge(host, "warden0", ["10.0.1.300/24"], [], {}, False)
    assert mutations(host) == []

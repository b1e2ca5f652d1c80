"""The stand-in's ifconfig(8): FreeBSD's interface kernel checks and output.

Every rule is checked with a form FreeBSD accepts and one it refuses; the
texts are err(3) messages of sbin/ifconfig (ifconfig.c, ifclone.c,
ifbridge.c, af_inet.c) over the kernel's errno (sys/net/if.c, if_clone.c,
if_bridge.c, netinet/in.c).  Needs root (chroot, mounts).
"""

import json
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")


@pytest.fixture(scope="module")
def host():
    name = "pytest-if-" + uuid.uuid4().hex[:8]
    H.up(name)
    yield name
    H.down(name)


def sh(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def refused(host, script, message):
    rc, out, err = sh(host, script)
    assert rc == 1 and message in err, (script, rc, out, err)
    return out


def ifaces(host):
    return H.state(host)["interfaces"]


def test_bridge_and_aliases(host):
    assert ok(host, "ifconfig bridge create").strip() == "bridge0"
    ok(host, "ifconfig bridge0 name warden0 && ifconfig warden0 inet 192.168.72.1/24 up")
    ok(host, "ifconfig warden0 inet 10.0.1.1/24 alias")
    out = ok(host, "ifconfig warden0")
    assert "inet 192.168.72.1 netmask 0xffffff00 broadcast 192.168.72.255" in out
    assert "inet 10.0.1.1 netmask 0xffffff00" in out and "groups: bridge" in out
    assert ok(host, "ifconfig -g bridge").split() == ["warden0"]
    ok(host, "ifconfig warden0 inet 10.0.1.1 -alias")
    assert "10.0.1.1" not in ok(host, "ifconfig warden0")
    rc, _o, err = sh(host, "ifconfig nosuch0")
    assert rc == 1 and "interface nosuch0 does not exist" in err
    ok(host, "ifconfig warden0 inet 10.0.1.1/24 alias")


def test_rename_onto_an_existing_name_fails_and_changes_nothing(host):
    ok(host, "ifconfig bridge create name rnm0 && ifconfig rnm0 inet 10.7.0.1/24")
    before = ifaces(host)["rnm0"]
    # warden0 and rnm0 hold units 0 and 1 (a renamed bridge keeps its unit)
    assert ok(host, "ifconfig bridge create").strip() == "bridge2"
    out = refused(host, "ifconfig bridge2 name rnm0", "ifconfig: ioctl SIOCSIFNAME (set name): File exists")
    assert out == ""  # printifname is set only after a successful rename
    assert ifaces(host)["rnm0"] == before and "bridge2" in ifaces(host)
    assert ok(host, "ifconfig bridge2 name rnm1").strip() == "rnm1"
    refused(host, "ifconfig rnm1 name abcdefghijklmnop", "SIOCSIFNAME (set name): File name too long")


def test_create_and_name_in_one_call(host):
    assert ok(host, "ifconfig bridge create name one0 up").strip() == "one0"
    assert "one0" in ok(host, "ifconfig -g bridge").split()
    # the clone exists before the rename fails: its auto name is printed (atexit)
    out = refused(host, "ifconfig bridge create name one0", "SIOCSIFNAME (set name): File exists")
    leaked = out.strip()
    assert leaked.startswith("bridge") and leaked in ifaces(host)
    ok(host, f"ifconfig {leaked} destroy")
    refused(host, "ifconfig warden0 create", "ifconfig: SIOCIFCREATE2 (warden0): Invalid argument")
    refused(host, "ifconfig vtnet0 create", "ifconfig: SIOCIFCREATE2 (vtnet0): Invalid argument")


def test_member_of_one_bridge_only(host):
    ok(host, "ifconfig bridge create name mb0 && ifconfig bridge create name mb1")
    ok(host, "ifconfig mb0 addm vtnet0")
    refused(host, "ifconfig mb1 addm vtnet0", "ifconfig: BRDGADD vtnet0: Device busy")
    refused(host, "ifconfig mb0 addm vtnet0", "ifconfig: BRDGADD vtnet0: File exists")
    refused(host, "ifconfig mb1 addm nosuch0", "ifconfig: BRDGADD nosuch0: No such file or directory")
    refused(host, "ifconfig mb1 addm lo0", "ifconfig: BRDGADD lo0: Invalid argument")
    refused(host, "ifconfig mb1 addm mb0", "ifconfig: BRDGADD mb0: Invalid argument")
    refused(host, "ifconfig mb1 deletem vtnet0", "ifconfig: BRDGDEL vtnet0: No such file or directory")
    refused(host, "ifconfig mb1 private vtnet0", "ifconfig: unable to get bridge flags")
    ok(host, "ifconfig mb0 private vtnet0")
    out = ok(host, "ifconfig mb0")
    assert "\tmember: vtnet0 flags=163<LEARNING,DISCOVER,PRIVATE,AUTOEDGE,AUTOPTP>\n" in out
    assert "\t        port 1 priority 128 path cost 2000\n" in out
    ok(host, "ifconfig mb0 -private vtnet0")
    assert "\tmember: vtnet0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n" in ok(host, "ifconfig mb0")
    ok(host, "ifconfig mb0 deletem vtnet0 && ifconfig mb1 addm vtnet0 && ifconfig mb1 deletem vtnet0")
    assert ifaces(host)["mb1"]["members"] == []


def test_only_cloned_interfaces_can_be_destroyed(host):
    refused(host, "ifconfig vtnet0 destroy", "ifconfig: SIOCIFDESTROY: Invalid argument")
    refused(host, "ifconfig lo0 destroy", "ifconfig: SIOCIFDESTROY: Invalid argument")
    assert {"vtnet0", "lo0"} <= set(ifaces(host))
    assert ok(host, "ifconfig epair create").strip() == "epair0a"
    ok(host, "ifconfig bridge create name ds0 && ifconfig ds0 addm epair0a")
    ok(host, "ifconfig epair0b destroy")  # one end destroys the pair, and it leaves its bridge
    st = ifaces(host)
    assert "epair0a" not in st and "epair0b" not in st and st["ds0"]["members"] == []
    assert ok(host, "ifconfig lo create").strip() == "lo1"
    ok(host, "ifconfig lo1 destroy && ifconfig ds0 destroy")
    refused(host, "ifconfig ds0 destroy", "interface ds0 does not exist")


def test_address_forms(host):
    ok(host, "ifconfig bridge create name ad0")
    ok(host, "ifconfig ad0 inet 10.1.0.1 netmask 255.255.255.0")
    ok(host, "ifconfig ad0 inet 10.1.1.1 netmask 0xffff0000 alias")
    ok(host, "ifconfig ad0 10.1.2.1/28 alias")
    assert ifaces(host)["ad0"]["inet"] == ["10.1.0.1/24", "10.1.1.1/16", "10.1.2.1/28"]
    out = ok(host, "ifconfig ad0")
    assert "\tinet 10.1.1.1 netmask 0xffff0000 broadcast 10.1.255.255\n" in out
    assert "\tinet 10.1.2.1 netmask 0xfffffff0 broadcast 10.1.2.15\n" in out
    # re-adding an address with another prefix updates it (in_aifaddr_ioctl)
    ok(host, "ifconfig ad0 inet 10.1.1.1/24 alias")
    assert ifaces(host)["ad0"]["inet"] == ["10.1.0.1/24", "10.1.2.1/28", "10.1.1.1/24"]
    # a plain inet replaces the first address
    ok(host, "ifconfig ad0 inet 10.1.3.1/24")
    assert ifaces(host)["ad0"]["inet"] == ["10.1.2.1/28", "10.1.1.1/24", "10.1.3.1/24"]
    # no mask: the classful default and FreeBSD's warning
    rc, _o, err = sh(host, "ifconfig ad0 inet 172.16.5.1 alias")
    assert rc == 0 and "WARNING: setting interface address without mask is deprecated" in err
    assert "172.16.5.1/16" in ifaces(host)["ad0"]["inet"]
    refused(host, "ifconfig ad0 inet 10.1.9.9 -alias", "ifconfig: ioctl (SIOCDIFADDR): Can't assign requested address")
    refused(host, "ifconfig ad0 -alias 10.1.1.1/24", "ifconfig: 10.1.1.1/24: bad value")
    ok(host, "ifconfig ad0 -alias 10.1.1.1")
    # IPv6 given to inet: the width is checked first (0-32), then inet_aton
    refused(host, "ifconfig ad0 inet fe80::1/64 alias", "ifconfig: fe80::1/64: bad value (width too large)")
    refused(host, "ifconfig ad0 inet fe80::1 alias", "ifconfig: fe80::1: bad value")
    refused(host, "ifconfig ad0 inet 10.0.1.300/24 alias", "ifconfig: 10.0.1.300: bad value")
    refused(host, "ifconfig ad0 inet 999.0.1.1/24 alias", "ifconfig: 999.0.1.1: bad value")
    refused(host, "ifconfig ad0 inet 10.1.4.1/33 alias", "ifconfig: 10.1.4.1/33: bad value (width too large)")
    refused(host, "ifconfig ad0 inet 10.1.4.1/x alias", "ifconfig: 10.1.4.1/x: bad value (width invalid)")
    assert "10.1.1.1/24" not in ifaces(host)["ad0"]["inet"]


def test_groups_descriptions_and_kinds_kept(host):
    ok(host, "ifconfig bridge create name gd0")
    ok(host, "ifconfig gd0 group wardens description 'agent bridge'")
    refused(host, "ifconfig gd0 group wardens", "ifconfig: SIOCAIFGROUP: File exists")
    refused(host, "ifconfig gd0 group agents1", "setifgroup: group names may not end in a digit")
    refused(host, "ifconfig gd0 -group nosuch", "ifconfig: SIOCDIFGROUP: No such file or directory")
    out = ok(host, "ifconfig gd0")
    assert out.splitlines()[1] == "\tdescription: agent bridge"
    assert "\tgroups: bridge wardens\n" in out
    with open(os.path.join(H.paths(host)["root"], ".standin/kernel.json"), encoding="utf-8") as fh:
        k = json.load(fh)
    assert k["ifaces"]["gd0"]["kind"] == "bridge" and k["ifaces"]["gd0"]["cloned"] is True
    assert k["ifaces"]["gd0"]["description"] == "agent bridge"
    assert not k["ifaces"]["vtnet0"].get("cloned")


def test_listing_in_attach_order(host):
    names = ok(host, "ifconfig -l").split()
    assert names[:2] == ["vtnet0", "lo0"]
    assert names.index("warden0") < names.index("gd0")
    assert ok(host, "ifconfig -a").startswith("vtnet0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST>")


def test_pflog_is_a_cloner(host):
    refused(host, "ifconfig pflog0", "ifconfig: interface pflog0 does not exist")
    ok(host, "ifconfig pflog0 create && ifconfig pflog0 up")
    assert ok(host, "ifconfig pflog0") == "pflog0: flags=41<UP,RUNNING> metric 0 mtu 33160\n\tgroups: pflog\n"
    refused(host, "ifconfig pflog0 create", "ifconfig: SIOCIFCREATE2 (pflog0): File exists")
    refused(host, "ifconfig warden0 addm pflog0", "BRDGADD pflog0: Invalid argument")
    ok(host, "ifconfig pflog0 destroy")

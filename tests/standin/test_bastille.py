"""The stand-in's Bastille 1.4.4: its input checks, the files it writes and its output.

After BastilleBSD/bastille 1.4.4 usr/local/share/bastille/{common,create,
config,start,stop,restart,list}.sh and templates/default/{vnet,base}.  Each
rule is checked with a form Bastille accepts and one it refuses.  Needs root.
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

JAILS = "/usr/local/bastille/jails"
REL = "/usr/local/bastille/releases/14.3-RELEASE"


@pytest.fixture(scope="module")
def host():
    name = "pytest-bs-" + uuid.uuid4().hex[:8]
    H.up(name)
    ok(name, "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null")
    ok(name, "ifconfig bridge create name warden0 >/dev/null && ifconfig warden0 inet 10.0.1.1/24 up")
    ok(name, "bastille bootstrap 14.3-RELEASE >/dev/null")
    yield name
    H.down(name)


def sh(host, script, input_text=None):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True, input_text=input_text)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def refused(host, script, message):
    rc, out, err = sh(host, script)
    assert rc == 1 and message in err, (script, rc, out, err)
    return out, err


def read(host, path):
    with open(os.path.join(H.paths(host)["root"], path.lstrip("/")), encoding="utf-8") as fh:
        return fh.read()


def kernel(host):
    """The simulated kernel as the doubles left it (faster than H.state)."""
    return json.loads(read(host, "/.standin/kernel.json"))


def interfaces(host):
    return kernel(host)["ifaces"]


def state_of(host, jail):
    j = kernel(host)["jails"].get(jail)
    return "Up" if j and j.get("running") else "Down"


def exists(host, path):
    return os.path.exists(os.path.join(H.paths(host)["root"], path.lstrip("/")))


# ------------------------------------------------------------------ create: input

def test_invalid_gateway_exits_1_without_a_word(host):
    # create.sh: validate_ip's error_exit runs with all output sent to /dev/null
    rc, out, err = sh(host, "bastille create -B -g 999.0.1.1 gw1 14.3-RELEASE 10.0.1.9/24 warden0")
    assert (rc, out, err) == (1, "", "")
    assert not exists(host, f"{JAILS}/gw1")


@pytest.mark.parametrize("ip, message", [
    ("10.0.1.300/24", "[ERROR]: Invalid IP: 10.0.1.300/24"),
    ("10.0.1.5/33", "[ERROR]: Invalid subnet: /33"),
    ("10.0.1.5/0", "[ERROR]: Invalid subnet: /0"),
    ("10.0.1.5/x", "[ERROR]: Invalid subnet: /x"),
    ("999.0.1.5", "[ERROR]: Invalid IP: 999.0.1.5/24"),
])
def test_invalid_vnet_addresses_are_refused(host, ip, message):
    refused(host, f"bastille create -B -g 10.0.1.1 bad1 14.3-RELEASE {ip} warden0", message)
    assert not exists(host, f"{JAILS}/bad1")


def test_option_and_name_checks(host):
    refused(host, "bastille create -B -V -g 10.0.1.1 x1 14.3-RELEASE 10.0.1.9 warden0",
            "[ERROR]: Only one of [-V|--vnet], [-B|--bridge] or [-P|--passthrough] can be selected.")
    refused(host, "bastille create -BQ x1 14.3-RELEASE 10.0.1.9 warden0", '[ERROR]: Unknown Option: "-BQ"')
    refused(host, "bastille create -p high x1 14.3-RELEASE 10.0.1.9 warden0", 'Not a valid priority value: "high"')
    refused(host, "bastille create -B x1 14.3-RELEASE", "Usage: bastille create [option(s)] NAME RELEASE IP")
    refused(host, "bastille create -B -g 10.0.1.1 x_1 14.3-RELEASE 10.0.1.9 warden0",
            "[ERROR]: VNET jail names may not contain (-|_) characters.")
    refused(host, "bastille create -B -g 10.0.1.1 x1 14.3-RELEASE 10.0.1.9 vtnet0",
            "[ERROR]: Interface is not a bridge: vtnet0")
    refused(host, "bastille create -V -g 10.0.1.1 x1 14.3-RELEASE 10.0.1.9 warden0",
            "[ERROR]: Interface is a bridge: warden0")
    refused(host, "bastille create -B -g 10.0.1.1 x1 15.9-RELEASE 10.0.1.9 warden0",
            "[ERROR]: Release must be bootstrapped first.")
    refused(host, "bastille create x1 14.3-RELEASE 10.0.2.9 nosuch0", "[ERROR]: Invalid interface: nosuch0")
    refused(host, "bastille create x1 14.3-RELEASE DHCP vtnet0",
            "[ERROR]: Unsupported IP option for non-VNET jail: DHCP")
    assert not exists(host, f"{JAILS}/x1")


# ------------------------------------------------------------------ create: files

def test_vnet_bridge_jail_files_as_bastille_writes_them(host):
    rc, _out, err = sh(host, "bastille create -B -g 10.0.1.1 web1 14.3-RELEASE 10.0.1.5 warden0")
    assert rc == 0, err
    assert "Valid IP: 10.0.1.5/24" in err and "Valid interface: warden0" in err
    assert read(host, f"{JAILS}/web1/jail.conf") == f"""\
web1 {{
  enforce_statfs = 2;
  devfs_ruleset = 13;
  exec.clean;
  exec.consolelog = /var/log/bastille/web1_console.log;
  exec.start = '/bin/sh /etc/rc';
  exec.stop = '/bin/sh /etc/rc.shutdown';
  host.hostname = web1;
  mount.devfs;
  mount.fstab = {JAILS}/web1/fstab;
  path = {JAILS}/web1/root;
  securelevel = 2;
  osrelease = "14.3-RELEASE";

  vnet;
  vnet.interface = e0b_web1;
  exec.prestart += "epair0=\\$(ifconfig epair create) && ifconfig \\${{epair0}} up name e0a_web1 && ifconfig \\${{epair0%a}}b up name e0b_web1";
  exec.prestart += "ifconfig warden0 addm e0a_web1";
  exec.prestart += "ifconfig e0a_web1 description \\"vnet0 host interface for Bastille jail web1\\"";
  exec.poststop += "ifconfig e0a_web1 destroy";
}}
"""  # noqa: E501
    assert read(host, f"{JAILS}/web1/fstab") == f"{REL} {JAILS}/web1/root/.bastille nullfs ro 0 0\n"
    assert read(host, f"{JAILS}/web1/settings.conf") == 'boot="on"\ndepend=""\npriority="99"\n'
    assert read(host, f"{JAILS}/web1/root/etc/rc.conf") == """\
ifconfig_e0b_web1_name="vnet0"
ifconfig_vnet0="inet 10.0.1.5/24"
ifconfig_vnet0_descr="jail interface for warden0"
ifconfig_vnet0_ipv6=""
defaultrouter="10.0.1.1"
ipv6_defaultrouter="NO"
syslogd_flags="-ss"
sendmail_enable="NO"
sendmail_submit_enable="NO"
sendmail_outbound_enable="NO"
sendmail_msp_queue_enable="NO"
cron_flags="-J 60"
"""
    assert state_of(host, "web1") == "Up"
    w = interfaces(host)
    assert "e0a_web1" in w["warden0"]["members"] and "e0b_web1" not in w  # moved into the jail
    assert "description: vnet0 host interface for Bastille jail web1" in ok(host, "ifconfig e0a_web1")
    ok(host, "bastille stop web1")
    assert not {"e0a_web1", "e0b_web1"} & set(interfaces(host))
    assert interfaces(host)["warden0"]["members"] == []


def test_thick_and_standard_jails(host):
    ok(host, "bastille create -B -T -g 10.0.1.1 db1 14.3-RELEASE 10.0.1.6/24 warden0")
    assert read(host, f"{JAILS}/db1/fstab") == ""
    assert kernel(host)["jails"]["db1"]["running"] is True
    ok(host, "bastille create plain1 14.3-RELEASE 192.0.2.50/24 vtnet0")
    text = read(host, f"{JAILS}/plain1/jail.conf")
    # a non-VNET jail keeps the bare address, behind its interface
    assert text.endswith('  osrelease = "14.3-RELEASE";\n\n  ip4.addr = vtnet0|192.0.2.50;\n  \n  ip6 = disable;\n}\n')
    assert "  devfs_ruleset = 4;\n" in text
    assert read(host, f"{JAILS}/plain1/root/etc/rc.conf").startswith('syslogd_flags="-ss"\n')


def test_a_jail_that_cannot_start_is_not_created(host):
    ok(host, "ifconfig epair create name e0a_dup >/dev/null")
    rc, _out, err = sh(host, "bastille create -B -g 10.0.1.1 dup 14.3-RELEASE 10.0.1.7 warden0")
    assert rc == 1 and "[ERROR]: Failed to create jail: dup" in err
    assert "ioctl SIOCSIFNAME (set name): File exists" in err
    assert not exists(host, f"{JAILS}/dup")


def test_start_without_its_bridge_exits_0_and_leaves_the_jail_down(host):
    ok(host, "ifconfig bridge create name tmpbr0 >/dev/null && ifconfig tmpbr0 up")
    ok(host, "bastille create -B -g 10.0.3.1 lone1 14.3-RELEASE 10.0.3.5 tmpbr0")
    ok(host, "bastille stop lone1 && ifconfig tmpbr0 destroy")
    rc, _out, err = sh(host, "bastille start lone1")
    assert rc == 0 and "ifconfig: BRDGADD e0a_lone1" not in err
    assert "interface tmpbr0 does not exist" in err
    assert state_of(host, "lone1") == "Down"
    assert not {"e0a_lone1", "e0b_lone1"} & set(interfaces(host))  # exec.poststop undid the plumbing


# ------------------------------------------------------------------ config

def test_config_accepts_jail_parameters_only(host):
    before = read(host, f"{JAILS}/web1/jail.conf")
    refused(host, "bastille config web1 set bogus.prop 1", "[ERROR]: Unsupported property: bogus.prop")
    refused(host, "bastille config web1 frob sysvshm new", "[ERROR]: Only (add|set), get and remove are supported.")
    refused(host, "bastille config web1 set sysvshm 'new;x'", "[ERROR]: Value contains unsupported characters")
    assert read(host, f"{JAILS}/web1/jail.conf") == before
    rc, out, err = sh(host, "bastille config web1 set sysvshm new")
    assert rc == 0 and out == "" and "A restart is required" in err
    ok(host, "bastille config web1 set allow.raw_sockets")
    text = read(host, f"{JAILS}/web1/jail.conf")
    assert text.endswith('  exec.poststop += "ifconfig e0a_web1 destroy";\n  sysvshm = new;\n  allow.raw_sockets;\n}\n')
    ok(host, "bastille config web1 set sysvshm disable")
    assert read(host, f"{JAILS}/web1/jail.conf").count("sysvshm") == 1
    assert ok(host, "bastille config web1 get sysvshm").strip() == "disable"
    assert ok(host, "bastille config web1 get allow.raw_sockets").strip() == "enabled"
    assert ok(host, "bastille config web1 get vnet").strip() == "enabled"
    assert ok(host, "bastille config web1 get allow.mlock").strip() == "not set"
    refused(host, "bastille config web1 remove allow.mlock", "[ERROR]: Value not present in jail.conf: allow.mlock")
    ok(host, "bastille config web1 remove allow.raw_sockets")
    assert "allow.raw_sockets" not in read(host, f"{JAILS}/web1/jail.conf")


def test_boot_and_priority_live_in_settings_conf(host):
    refused(host, "bastille config web1 set boot maybe", "Boot value must be 'on' or 'off'.")
    refused(host, "bastille config web1 set priority first", "Priority value must be a number.")
    refused(host, "bastille config web1 remove boot", "[ERROR]: Cannot remove the 'boot' property.")
    assert ok(host, "bastille config web1 set boot off").strip() == "boot: on -> off"
    assert ok(host, "bastille config web1 get boot").strip() == "off"
    assert ok(host, "bastille config web1 set priority 5").strip() == "priority: 99 -> 5"
    assert read(host, f"{JAILS}/web1/settings.conf") == 'boot="off"\ndepend=""\npriority="5"\n'


# ------------------------------------------------------------------ start -b, priorities

def test_start_b_boots_jails_in_priority_order(host):
    ok(host, "bastille create -B -g 10.0.1.1 -p 30 pa 14.3-RELEASE 10.0.1.20 warden0")
    ok(host, "bastille create -B -g 10.0.1.1 -p 10 pb 14.3-RELEASE 10.0.1.21 warden0")
    ok(host, "bastille create -B -g 10.0.1.1 -p 20 --no-boot pc 14.3-RELEASE 10.0.1.22 warden0")
    ok(host, "bastille stop ALL")
    assert not any(j.get("running") for j in kernel(host)["jails"].values())
    refused(host, "bastille start -q ALL", '[ERROR]: Unknown Option: "-q"')
    refused(host, "bastille start -b", "Usage: bastille start [option(s)] TARGET")
    _rc, out, err = sh(host, "bastille start -b ALL")
    started = [line.strip("[]:") for line in err.splitlines() if line.startswith("[")]
    # priority order (ties by name); web1 (boot=off) and pc (--no-boot) are skipped
    assert started == ["pb", "pa", "db1", "lone1", "plain1"]
    assert "pb: created" in out
    assert state_of(host, "pb") == state_of(host, "pa") == "Up"
    assert state_of(host, "pc") == state_of(host, "web1") == "Down"
    ok(host, "bastille start web1")  # without -b the boot setting does not matter
    assert state_of(host, "web1") == "Up"
    # rc.d/bastille's form: --boot --delay N (seconds after each jail); a delay
    # that is not a whole number of seconds is outside the stand-in's subset
    ok(host, "bastille stop pa && bastille start --boot --delay 0 pa")
    assert state_of(host, "pa") == "Up"
    rc, _out, err = sh(host, "bastille start --delay soon pa")
    assert rc == 64 and "is not implemented" in err


# ------------------------------------------------------------------ list

def test_list_formats(host):
    out = ok(host, "bastille list")
    lines = out.splitlines()
    # widths: JID 3, Name the longest jail name (6), IP Address 10, Ports 15, Release 12
    assert lines[0] == " JID  Name    Boot  Prio  State  Type   IP Address  Published Ports  Release       Tags"
    jid = ok(host, "jls -j web1 jid").strip()
    row = [x for x in lines if " web1 " in x][0]
    assert row == f" {jid:<5}web1    off   5     Up     thin   10.0.1.5    -                14.3-RELEASE  -"
    down = [x for x in lines if " pc " in x][0]
    assert down == " -    pc      off   20    Down   thin   10.0.1.22   -                14.3-RELEASE  -"
    assert [x.split()[1] for x in lines[1:]] == ok(host, "bastille list jails").split()
    rows = json.loads(ok(host, "bastille list -j"))
    assert {r["Name"] for r in rows} == set(ok(host, "bastille list jails").split())
    web = [r for r in rows if r["Name"] == "web1"][0]
    assert web == {"JID": jid, "Name": "web1", "Boot": "off", "Prio": "5", "State": "Up", "Type": "thin",
                   "IP Address": "10.0.1.5", "Published Ports": "-", "Release": "14.3-RELEASE", "Tags": "-"}
    assert ok(host, "bastille list -j jails").split() == ok(host, "bastille list jails").split()  # never JSON
    one = ok(host, "bastille list web").splitlines()  # a prefix, as every TARGET
    assert len(one) == 2 and one[1] == row
    refused(host, "bastille list -a", '[ERROR]: "-a" is deprecated. Use "all" instead.')
    refused(host, "bastille list nosuch", 'Jail not found "nosuch"')
    head = ok(host, "bastille list all").splitlines()[0]
    assert head == " JID  Boot  Prio  State  IP Address  Published Ports  Hostname  Release       Path"
    assert ok(host, "bastille list -d jails")  # state filters apply to tables, not to names
    assert {r["Name"] for r in json.loads(ok(host, "bastille list -d -j"))} == {"pc", "lone1"}


def test_restart_stops_and_starts(host):
    ok(host, "bastille stop pc")
    _rc, _out, err = sh(host, "bastille restart pc")
    assert "Jail is already stopped." in err and state_of(host, "pc") == "Up"
    ok(host, "bastille stop pc")
    _rc, _out, err = sh(host, "bastille restart -i pc")
    assert "Jail is stopped." in err and state_of(host, "pc") == "Down"


def test_vnet_on_a_physical_interface_goes_through_jib(host):
    ok(host, "bastille create -V -g 192.0.2.1 phys1 14.3-RELEASE 192.0.2.60/24 vtnet0")
    text = read(host, f"{JAILS}/phys1/jail.conf")
    assert '  exec.prestart += "jib addm phys1 vtnet0";\n' in text and "  vnet.interface = e0b_phys1;\n" in text
    w = interfaces(host)
    # jib: the interface's own bridge "vtnet0bridge" with the NIC and the jail's epair
    assert w["vtnet0bridge"]["members"] == ["vtnet0", "e0a_phys1"] and "bridge" in w["vtnet0bridge"]["groups"]
    refused(host, "bastille create -V -g 192.0.2.1 phys2 14.3-RELEASE 192.0.2.61/24 vtnet0bridge",
            "[ERROR]: Interface is a bridge: vtnet0bridge")
    ok(host, "bastille stop phys1")
    assert "e0a_phys1" not in interfaces(host) and interfaces(host)["vtnet0bridge"]["members"] == ["vtnet0"]


def test_version_goes_to_stderr(host):
    rc, out, err = sh(host, "bastille --version")
    assert (rc, out, err) == (0, "", "1.4.4\n")


def test_depend_starts_and_stops_dependents(host):
    refused(host, "bastille config pa set depend", "[ERROR]: Adding a jail to the 'depend' property requires a TARGET.")
    refused(host, "bastille config pa set", "Usage: bastille config [option(s)] TARGET set|add PROPERTY [VALUE]")
    refused(host, "bastille config pa set depend nosuch", 'Jail not found "nosuch"')
    assert ok(host, "bastille config pa set depend pb").strip() == "depend:  -> pb"
    ok(host, "bastille start pa && bastille start pb")
    _rc, _out, err = sh(host, "bastille stop pb")
    # stop.sh: pa names pb in its settings.conf, so pa stops first
    assert err.index("[pa]:") < err.index("[pb]:")
    assert state_of(host, "pa") == state_of(host, "pb") == "Down"
    _rc, _out, err = sh(host, "bastille start pa")
    assert err.index("[pb]:") < err.index("[pa]:") and state_of(host, "pb") == "Up"
    # config.sh 1.4.4 checks "get|remove take one word" before it looks at depend,
    # so a dependency cannot be removed this way
    refused(host, "bastille config pa remove depend pb", "[ERROR]: Too many parameters for [get|remove] operation.")

"""`standin reboot NAME`: what rc.conf, sysctl.conf and pf.conf say comes back,
what was only done at runtime does not; enabled services run again, others
do not.  Needs root.
"""

import json
import os
import sys
import textwrap
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_boot  # noqa: E402
import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

SERVICE = """\
#!/bin/sh
# PROVIDE: {name}
# REQUIRE: LOGIN
# KEYWORD: shutdown
. /etc/rc.subr
name={name}
rcvar={name}_enable
load_rc_config $name
: ${{{name}_enable:=NO}}
pidfile=/var/run/{name}.pid
procname=/usr/sbin/daemon
command=/usr/sbin/daemon
command_args="-f -P $pidfile sleep {seconds}"
run_rc_command "$1"
"""


@pytest.fixture(scope="module")
def host():
    name = "pytest-boot-" + uuid.uuid4().hex[:8]
    H.up(name)
    yield name
    H.down(name)


def ok(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    assert proc.returncode == 0, (script, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def kernel(host):
    with open(os.path.join(H.paths(host)["root"], ".standin/kernel.json"), encoding="utf-8") as fh:
        return json.load(fh)


def exists(host, path):
    return os.path.exists(os.path.join(H.paths(host)["root"], path.lstrip("/")))


def running(host, needle):
    """Processes of the stand-in whose command line contains ``needle``."""
    found = []
    for pid in H.processes_under(H.paths(host)["base"]):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(pid)
    return found


def install_service(host, name, seconds):
    text = SERVICE.format(name=name, seconds=seconds)
    ok(host, f"cat > /usr/local/etc/rc.d/{name} <<'EOF'\n{text}EOF\nchmod 555 /usr/local/etc/rc.d/{name}")


def test_reboot_restores_the_configuration_and_drops_runtime_changes(host):
    ok(host, textwrap.dedent("""\
        sysrc cloned_interfaces=bridge0 ifconfig_bridge0_name=warden0 \
              ifconfig_warden0='inet 192.168.72.1/24 up' ifconfig_warden0_alias0='inet 10.0.1.1/24' \
              gateway_enable=YES defaultrouter=192.0.2.1 pf_enable=YES bootsvc_enable=YES >/dev/null
        printf 'pass quick on warden0 inet from 10.0.1.0/24 to any keep state\\n' > /etc/pf.conf
        printf 'net.link.bridge.pfil_member=0\\n' > /etc/sysctl.conf
        """))
    install_service(host, "bootsvc", 7101)
    install_service(host, "adhocsvc", 7102)
    # runtime only: a bridge, an alias, a sysctl value, a service started by hand
    ok(host, "ifconfig bridge create >/dev/null; ifconfig vtnet0 inet 198.51.100.7/24 alias; "
             "sysctl net.link.bridge.pfil_bridge=0 >/dev/null; service adhocsvc onestart; "
             "touch /var/run/stale.pid /tmp/kept.txt")
    assert running(host, "sleep 7102")
    before = kernel(host)
    assert "warden0" not in before["ifaces"] and "bridge0" in before["ifaces"]

    report = standin_boot.reboot(host)

    assert report["boot"]["rc"] == 0, report
    assert "Starting Network: lo0 warden0." in report["boot"]["output"]
    assert "Enabling pf." in report["boot"]["output"]
    k = kernel(host)
    # from rc.conf: the bridge under its new name, its address and alias
    assert k["ifaces"]["warden0"]["inet"] == ["192.168.72.1/24", "10.0.1.1/24"]
    assert k["ifaces"]["warden0"]["up"]
    # runtime only: gone
    assert "bridge0" not in k["ifaces"] and "bridge1" not in k["ifaces"]
    assert k["ifaces"]["vtnet0"]["inet"] == ["192.0.2.10/24"]
    # routing and sysctl from the files; the runtime value is back to its default
    assert k["routes"]["default"] == "192.0.2.1"
    assert ok(host, "sysctl -n net.inet.ip.forwarding net.link.bridge.pfil_member "
                    "net.link.bridge.pfil_bridge").split() == ["1", "0", "1"]
    # PF enabled with pf.conf loaded
    assert k["pf"]["enabled"]
    assert "pass quick on warden0" in ok(host, "pfctl -sr")
    # /var/run is emptied, /tmp kept (clear_tmp_enable=NO)
    assert not exists(host, "/var/run/stale.pid") and exists(host, "/tmp/kept.txt")
    # services: the enabled one runs again, the one started by hand does not
    assert running(host, "sleep 7101")
    assert not running(host, "sleep 7102")
    state = H.state(host)
    assert state["services"]["bootsvc"]["running"] and not state["services"]["adhocsvc"]["running"]
    assert any(p["user"] == "root" and p["jail"] is None and "sleep 7101" in " ".join(p["cmdline"])
               for p in state["processes"])
    assert state["interfaces"]["warden0"]["cloned"] and state["interfaces"]["warden0"]["kind"] == "bridge"
    assert state["rc_conf"]["ifconfig_bridge0_name"] == "warden0"
    # rc.shutdown stopped the enabled service before the reboot (KEYWORD shutdown)
    report = standin_boot.reboot(host)
    assert "Stopping bootsvc." in report["shutdown"]["output"]
    assert running(host, "sleep 7101")


def test_reboot_with_a_broken_pf_conf_enables_pf_without_rules(host):
    # rc.d/pf start: the load fails ("Unable to load"), PF is enabled anyway
    ok(host, "printf 'pass quick in on\\n' > /etc/pf.conf; sysrc pf_enable=YES >/dev/null")
    report = standin_boot.reboot(host)
    assert "Unable to load /etc/pf.conf." in report["boot"]["errors"]
    assert kernel(host)["pf"]["enabled"]
    assert ok(host, "pfctl -sr").strip() == ""


def test_reboot_of_a_stand_in_that_is_not_up_is_refused():
    with pytest.raises(H.StandinError, match="is not up"):
        standin_boot.reboot("pytest-boot-absent-" + uuid.uuid4().hex[:8])


JAIL_SVC = """\
#!/bin/sh
# PROVIDE: jsvc
# REQUIRE: DAEMON
. /etc/rc.subr
name=jsvc
rcvar=jsvc_enable
load_rc_config $name
: ${jsvc_enable:=NO}
pidfile=/var/run/jsvc.pid
procname=/usr/sbin/daemon
command=/usr/sbin/daemon
command_args="-f -P $pidfile sleep 7103"
run_rc_command "$1"
"""


def test_state_shows_jail_services_postgresql_and_a_reboot_stops_the_jail(host):
    ok(host, "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null && bastille bootstrap 14.3-RELEASE "
             ">/dev/null && bastille create -B -T -g 192.168.72.1 dbj 14.3-RELEASE 192.168.72.5/24 warden0 "
             ">/dev/null 2>&1 && bastille config dbj set sysvshm new >/dev/null && bastille restart dbj "
             ">/dev/null 2>&1 && bastille pkg dbj bootstrap -y >/dev/null && bastille pkg dbj install -y "
             "postgresql17-server >/dev/null")
    ok(host, f"jexec dbj /bin/sh -c 'cat > /usr/local/etc/rc.d/jsvc && chmod 555 /usr/local/etc/rc.d/jsvc' "
             f"<<'EOF'\n{JAIL_SVC}EOF")
    ok(host, "bastille sysrc dbj jsvc_enable=YES postgresql_enable=YES >/dev/null && "
             "jexec dbj service jsvc start >/dev/null && bastille service dbj postgresql initdb >/dev/null 2>&1 && "
             "bastille service dbj postgresql start >/dev/null 2>&1")
    ok(host, "jexec -U postgres dbj /usr/local/bin/psql -X -q -d postgres -c 'CREATE ROLE agent1 LOGIN' "
             "-c 'CREATE DATABASE agent1 OWNER agent1'")
    state = H.state(host)
    jail = state["jails"]["dbj"]
    assert jail["services"]["jsvc"]["enabled"] and jail["services"]["jsvc"]["running"]
    assert jail["services"]["postgresql"]["enabled"]
    assert "agent1" in jail["postgresql"]["roles"] and "postgres" in jail["postgresql"]["roles"]
    assert "agent1" in jail["postgresql"]["databases"] and "template0" not in jail["postgresql"]["databases"]
    sleeper = [p for p in state["processes"] if "sleep 7103" in " ".join(p["cmdline"])]
    assert sleeper and sleeper[0]["jail"] == "dbj" and sleeper[0]["user"] == "root"
    assert any(p["jail"] == "dbj" and p["user"] == "postgres" for p in state["processes"])
    # a host jail without a server: postgresql is null
    assert all(j["postgresql"] is None for n, j in state["jails"].items() if n != "dbj")
    # bastille_enable is NO: after the reboot the jail stays down and its processes are gone
    report = standin_boot.reboot(host)
    assert "dbj" in report["cleared"]["jails_stopped"]
    state = H.state(host)
    assert state["jails"]["dbj"]["state"] == "Down" and state["jails"]["dbj"]["services"] == {}
    assert not running(host, "sleep 7103")


def test_boot_jails_come_back_with_their_services_after_a_reboot(host):
    # rc.d/bastille (1.4.4) at boot: "bastille start --boot --delay N JAIL" by priority;
    # the jail's own /etc/rc then starts what its rc.conf enables
    ok(host, "sysrc bastille_enable=YES >/dev/null && bastille start dbj >/dev/null 2>&1 && "
             "jexec dbj /bin/sh -c \"echo listen_addresses = \\\\'192.168.72.5\\\\' "
             ">> /var/db/postgres/data17/postgresql.conf"
             " && echo 'host all agent1 192.168.72.0/24 trust' >> /var/db/postgres/data17/pg_hba.conf\" && "
             "env ASSUME_ALWAYS_YES=yes pkg install -y postgresql17-client >/dev/null")
    report = standin_boot.reboot(host)
    assert report["boot"]["rc"] == 0, report
    state = H.state(host)
    assert state["jails"]["dbj"]["state"] == "Up"
    assert state["jails"]["dbj"]["services"]["jsvc"]["running"]
    assert running(host, "sleep 7103")
    assert ok(host, "/usr/local/bin/psql -X -At -h 192.168.72.5 -U agent1 -d agent1 -c 'SELECT 1'").strip() == "1"
    # a jail whose boot setting is off stays down after the next reboot
    ok(host, "bastille config dbj set boot off >/dev/null")
    standin_boot.reboot(host)
    assert H.state(host)["jails"]["dbj"]["state"] == "Down"
    assert not running(host, "sleep 7103")

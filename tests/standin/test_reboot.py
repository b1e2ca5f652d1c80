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

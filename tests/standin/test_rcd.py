"""rc.d in the stand-in FreeBSD host: rc.subr, the base scripts (netif,
routing, pf, sysctl, pflog, jail), rcorder(8), daemon(8) and su(1) -m.

Each rule has a form FreeBSD accepts and one it refuses.  Needs root.
"""

import os
import re
import sys
import textwrap
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")


@pytest.fixture(scope="module")
def host():
    name = "pytest-rcd-" + uuid.uuid4().hex[:8]
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


def root_file(host, path):
    with open(os.path.join(H.paths(host)["root"], path.lstrip("/")), encoding="utf-8") as fh:
        return fh.read()


def read(host, path):
    """A file of the stand-in, or "" while it does not exist yet."""
    try:
        return root_file(host, path)
    except FileNotFoundError:
        return ""


def wait_for(predicate, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def install_script(host, name, body):
    text = textwrap.dedent(body)
    ok(host, f"cat > /usr/local/etc/rc.d/{name} <<'EOF'\n{text}EOF\nchmod 555 /usr/local/etc/rc.d/{name}")


def kernel(host):
    import json
    return json.loads(root_file(host, "/.standin/kernel.json"))


# ------------------------------------------------------------------ rc.subr

TRAPPER = """\
#!/bin/sh
# PROVIDE: trapper
. /etc/rc.subr
name=trapper
rcvar=trapper_enable
load_rc_config $name
: ${trapper_enable:=NO}
pidfile=/var/run/trapper.child.pid
procname=/bin/sh
command=/usr/sbin/daemon
command_args="-f -p ${pidfile} /bin/sh -c 'trap \\"echo hup >> /tmp/trapper.log\\" HUP; while :; do sleep 0.1; done'"
extra_commands="reload hello"
hello_cmd="echo hello from \\$name:"
run_rc_command "$@"
"""


def test_startmsg_default_reload_and_extra_commands(host):
    install_script(host, "trapper", TRAPPER)
    # quiet (as at boot) with rc_startmsgs=NO: rc.subr's startmsg stays silent
    ok(host, "sysrc trapper_enable=YES rc_startmsgs=NO >/dev/null")
    assert "Starting trapper." not in ok(host, "service trapper quietstart")
    ok(host, "sysrc rc_startmsgs=YES >/dev/null")
    assert wait_for(lambda: read(host, "/var/run/trapper.child.pid").strip())
    pid = read(host, "/var/run/trapper.child.pid").strip()
    assert ok(host, "service trapper status").strip() == f"trapper is running as pid {pid}."
    # reload is in extra_commands: sig_reload's default, SIGHUP, goes to the pid
    assert ok(host, "service trapper reload") == ""
    assert wait_for(lambda: "hup" in read(host, "/tmp/trapper.log"))
    # an extra command with its own _cmd, arguments passed on
    assert ok(host, "service trapper hello a b").strip() == "hello from trapper: a b"
    assert ok(host, "service trapper extracommands").strip() == "reload hello"
    # refused: a command that is neither standard nor in extra_commands
    rc, _out, err = sh(host, "service trapper frobnicate")
    assert rc == 1 and "unknown directive 'frobnicate'" in err and "|reload|hello|" in err
    assert "Stopping trapper." in ok(host, "service trapper stop")
    # refused: reload of a stopped service
    rc, _out, err = sh(host, "service trapper reload")
    assert rc == 1 and "trapper not running? (check /var/run/trapper.child.pid)." in err
    ok(host, "sysrc -x trapper_enable")


def test_reload_is_not_a_default_command(host):
    install_script(host, "plain", """\
        #!/bin/sh
        . /etc/rc.subr
        name=plain
        rcvar=plain_enable
        command=/bin/true
        load_rc_config $name
        run_rc_command "$1"
        """)
    rc, _out, err = sh(host, "service plain onereload")
    assert rc == 1 and "unknown directive 'reload'" in err


USERSVC = """\
#!/bin/sh
# PROVIDE: usersvc
. /etc/rc.subr
name=usersvc
rcvar=usersvc_enable
load_rc_config $name
: ${usersvc_enable:=NO}
: ${usersvc_user:=svcuser}
command=/tmp/usersvc.sh
required_files=/tmp/usersvc.required
start_precmd=usersvc_prestart
usersvc_prestart() { [ ! -e /tmp/usersvc.fail ]; }
run_rc_command "$1"
"""


def test_user_env_chdir_flags_and_required_files(host):
    ok(host, "pw useradd svcuser -d /nonexistent -s /usr/sbin/nologin")
    ok(host, "printf '#!/bin/sh\\nid -un > /tmp/usersvc.out\\npwd >> /tmp/usersvc.out\\n"
             "echo \"$GREETING $*\" >> /tmp/usersvc.out\\n' > /tmp/usersvc.sh; chmod 755 /tmp/usersvc.sh")
    install_script(host, "usersvc", USERSVC)
    # refused: required_files missing -> rc.subr's warning, nothing runs
    rc, _out, err = sh(host, "service usersvc onestart")
    assert rc == 1 and "/tmp/usersvc.required is not readable." in err
    ok(host, "touch /tmp/usersvc.required /tmp/usersvc.fail")
    # refused: a failing start_precmd
    rc, _out, err = sh(host, "service usersvc onestart")
    assert rc == 1 and "failed precmd routine for usersvc" in err
    ok(host, "rm /tmp/usersvc.fail")
    ok(host, "sysrc usersvc_env='GREETING=hi' usersvc_chdir=/var usersvc_flags=flagged >/dev/null")
    out = ok(host, "service usersvc onestart")
    assert "Starting usersvc." in out
    # su -m USER -c 'sh -c "..."': runs although svcuser's shell is nologin
    assert read(host, "/tmp/usersvc.out").split("\n")[:3] == ["svcuser", "/var", "hi flagged"]
    # refused: an unknown ${name}_user
    rc, _out, err = sh(host, "sysrc usersvc_user=nobodyhere >/dev/null; service usersvc onestart")
    assert rc == 1 and "su: unknown login: nobodyhere" in err and "failed to start usersvc" in err
    ok(host, "sysrc -x usersvc_user usersvc_env usersvc_chdir usersvc_flags")


def test_stop_postcmd_and_rc_debug(host):
    install_script(host, "sleeper", """\
        #!/bin/sh
        . /etc/rc.subr
        name=sleeper
        rcvar=sleeper_enable
        load_rc_config $name
        pidfile=/var/run/sleeper.pid
        procname=/usr/sbin/daemon
        command=/usr/sbin/daemon
        command_args="-f -P $pidfile sleep 4711"
        stop_postcmd="echo postcmd ran"
        run_rc_command "$1"
        """)
    ok(host, "service sleeper onestart")
    assert wait_for(lambda: "4711" in ok(host, "cat /proc/*/cmdline 2>/dev/null | tr '\\000' ' '"))
    out = ok(host, "service sleeper onestop")
    assert "Stopping sleeper." in out and "postcmd ran" in out
    # refused: stop when not running (rc.subr's message, exit 1)
    rc, _out, err = sh(host, "service sleeper onestop")
    assert rc == 1 and "sleeper not running? (check /var/run/sleeper.pid)." in err
    _rc, _out, err = sh(host, "sysrc rc_debug=YES >/dev/null; service sleeper onestart; "
                              "service sleeper onestop; sysrc rc_debug=NO >/dev/null")
    assert "DEBUG: run_rc_command: doit:" in err


# ------------------------------------------------------------------ su -m

def test_su_m_runs_the_callers_shell(host):
    ok(host, "pw useradd nologinuser -d /nonexistent -s /usr/sbin/nologin")
    # accepted: with -m the caller's shell (root's /bin/sh) runs the command
    assert ok(host, "su -m nologinuser -c 'id -un'").strip() == "nologinuser"
    # without -m the target's shell is nologin: refused as FreeBSD refuses it
    rc, _out, _err = sh(host, "su nologinuser -c 'id -un'")
    assert rc != 0
    rc, _out, err = sh(host, "su -m nosuchuser -c true")
    assert rc == 1 and "su: unknown login: nosuchuser" in err


# ------------------------------------------------------------------ daemon(8)

def test_daemon_syslog_tag_and_output_mask(host):
    ok(host, "daemon -S -T rcdtag sh -c 'echo to-syslog'")
    assert wait_for(lambda: "rcdtag[" in read(host, "/var/log/messages"))
    line = [x for x in root_file(host, "/var/log/messages").splitlines() if "rcdtag[" in x][0]
    assert re.match(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ rcdtag\[\d+\]: to-syslog$", line), line
    ok(host, "daemon -m 2 -o /tmp/mask2.log sh -c 'echo OUT; echo ERR >&2'")
    ok(host, "daemon -m 1 -o /tmp/mask1.log sh -c 'echo OUT; echo ERR >&2'")
    assert wait_for(lambda: "OUT" in read(host, "/tmp/mask1.log"))
    assert wait_for(lambda: "ERR" in read(host, "/tmp/mask2.log"))
    time.sleep(0.3)
    assert root_file(host, "/tmp/mask2.log") == "ERR\n"
    assert root_file(host, "/tmp/mask1.log") == "OUT\n"


@pytest.mark.parametrize("args,code,message", [
    ("-m 4", 6, "daemon: unrecognized listening mask"),
    ("-R 0", 6, "daemon: invalid restart delay"),
    ("-l nofacility", 5, "daemon: unrecognized syslog facility"),
    ("-s nopriority", 4, "daemon: unrecognized syslog priority"),
])
def test_daemon_refuses_bad_values(host, args, code, message):
    rc, _out, err = sh(host, f"daemon {args} true")
    assert rc == code and message in err


def test_daemon_reports_an_unknown_user_after_detaching(host):
    # daemon(3) detaches first: the caller gets 0, the child says why it failed
    rc, _out, err = sh(host, "daemon -u nosuchuser true")
    assert rc == 0 and "daemon: unknown user: nosuchuser" in err
    rc, _out, err = sh(host, "daemon -u nobody /bin/sh -c 'id -un > /tmp/daemon-user.out'")
    assert rc == 0 and err == ""
    assert wait_for(lambda: read(host, "/tmp/daemon-user.out").strip() == "nobody")


def test_daemon_restarts_after_the_delay_and_child_pidfile_lock(host):
    ok(host, "daemon -f -R 1 -P /var/run/rst.pid -p /var/run/rst.child.pid sh -c 'echo x >> /tmp/rst.count'")
    assert wait_for(lambda: read(host, "/tmp/rst.count").count("x") >= 2, seconds=6)
    # accepted facility/priority forms; refused: a second daemon on the locked child pidfile
    rc, _out, err = sh(host, "daemon -l local3 -s info -p /var/run/rst.child.pid true")
    assert rc == 3 and "process already running, pid: " in err
    sup = root_file(host, "/var/run/rst.pid").strip()
    ok(host, f"kill {sup}")
    assert wait_for(lambda: not os.path.exists(os.path.join(H.paths(host)["root"], "var/run/rst.pid")))


# ------------------------------------------------------------------ rcorder

def test_rcorder_orders_by_require_and_before(host):
    ok(host, textwrap.dedent("""\
        mkdir -p /tmp/ro && cd /tmp/ro
        printf '# PROVIDE: a\\n# REQUIRE: b\\n' > a
        printf '# PROVIDE: b\\n# KEYWORD: shutdown\\n' > b
        printf '# PROVIDE: c\\n# BEFORE: b\\n# REQUIRE: nothere\\n' > c
        """))
    rc, out, err = sh(host, "rcorder /tmp/ro/a /tmp/ro/b /tmp/ro/c")
    assert rc == 0 and out.split() == ["/tmp/ro/c", "/tmp/ro/b", "/tmp/ro/a"]
    assert "requirement `nothere' in file `/tmp/ro/c' has no providers." in err
    assert ok(host, "rcorder -k shutdown /tmp/ro/* 2>/dev/null").split() == ["/tmp/ro/b"]
    assert ok(host, "rcorder -s shutdown /tmp/ro/* 2>/dev/null").split() == ["/tmp/ro/c", "/tmp/ro/a"]
    ok(host, "printf '# PROVIDE: b\\n# REQUIRE: a\\n' > /tmp/ro/b")
    rc, _out, err = sh(host, "rcorder /tmp/ro/a /tmp/ro/b")
    assert rc == 1 and "Circular dependency" in err
    rc, _out, err = sh(host, "rcorder -x /tmp/ro/a")
    assert rc == 64 and "is not implemented" in err


def test_base_scripts_boot_order(host):
    order = [os.path.basename(x) for x in ok(host, "rcorder -s nostart /etc/rc.d/* 2>/dev/null").split()]
    for before, after in (("sysctl", "netif"), ("hostname", "netif"), ("netif", "routing"), ("pflog", "pf"),
                          ("routing", "pf"),
                          ("netif", "NETWORKING"), ("LOGIN", "jail")):
        assert order.index(before) < order.index(after), (before, after, order)


# ------------------------------------------------------------------ netif, routing

def test_netif_cloneup_rename_aliases_and_clonedown(host):
    ok(host, "sysrc cloned_interfaces=bridge0 ifconfig_bridge0_name=testbr0 "
             "ifconfig_testbr0='inet 10.77.0.1/24 up' ifconfig_testbr0_descr='test bridge' "
             "ifconfig_testbr0_alias10='inet 10.77.10.1/24' ifconfig_testbr0_alias2='inet 10.77.2.1/24' "
             "ifconfig_testbr0_alias0='inet 10.77.1.1/24' >/dev/null")
    out = ok(host, "service netif cloneup")
    assert out.strip() == "Created clone interfaces: bridge0."
    assert "bridge0" in kernel(host)["ifaces"]
    # the whole start: clone (exists: skipped), rename, address, aliases sorted by N
    out = ok(host, "service netif start")
    assert "Starting Network: lo0 testbr0." in out
    br = kernel(host)["ifaces"]["testbr0"]
    assert br["inet"] == ["10.77.0.1/24", "10.77.1.1/24", "10.77.2.1/24", "10.77.10.1/24"]
    assert br["up"] and br["description"] == "test bridge"
    # a set but empty aliasN ends the list (network.subr ifalias_af_common)
    ok(host, "sysrc ifconfig_testbr0_alias1='' >/dev/null; ifconfig testbr0 destroy; service netif start")
    assert kernel(host)["ifaces"]["testbr0"]["inet"] == ["10.77.0.1/24", "10.77.1.1/24"]
    # clonedown finds bridge0 under its cloned name only: the renamed one stays
    assert ok(host, "service netif clonedown").strip() == ""
    assert "testbr0" in kernel(host)["ifaces"]
    ok(host, "ifconfig testbr0 destroy; sysrc -x ifconfig_bridge0_name; service netif cloneup")
    assert ok(host, "service netif clonedown").strip() == "Destroyed clone interfaces: bridge0."
    assert "bridge0" not in kernel(host)["ifaces"]
    # refused: DHCP needs dhclient, which the stand-in does not have
    ok(host, "ifconfig testbr0 destroy 2>/dev/null; sysrc ifconfig_bridge0_name=testbr0 ifconfig_testbr0=DHCP "
             ">/dev/null")
    _rc, _out, err = sh(host, "service netif start")
    assert "stand-in: ifconfig_testbr0=\"DHCP\" (DHCP) is not implemented" in err
    # ifconfig_IF is refused; its aliases still come (ifn_start runs ipv4_up regardless)
    assert kernel(host)["ifaces"]["testbr0"]["inet"] == ["10.77.1.1/24"]
    ok(host, "ifconfig testbr0 destroy; sysrc -x cloned_interfaces ifconfig_bridge0_name ifconfig_testbr0 "
             "ifconfig_testbr0_descr ifconfig_testbr0_alias0 ifconfig_testbr0_alias1 ifconfig_testbr0_alias2 "
             "ifconfig_testbr0_alias10")


def test_routing_restart_sets_default_route_and_forwarding(host):
    ok(host, "sysrc defaultrouter=192.0.2.254 gateway_enable=YES >/dev/null")
    out = ok(host, "service routing restart")
    assert "add net default: gateway 192.0.2.254" in out and "gateway=YES" in out
    k = kernel(host)
    assert k["routes"]["default"] == "192.0.2.254" and k["routes"]["default_if"] == "vtnet0"
    assert ok(host, "sysctl -n net.inet.ip.forwarding").strip() == "1"
    assert {"destination": "default", "gateway": "192.0.2.254", "flags": "UGS",
            "interface": "vtnet0"} in H.state(host)["routes"]
    # refused: a default router on no attached network
    ok(host, "sysrc defaultrouter=203.0.113.1 gateway_enable=NO >/dev/null")
    rc, _out, err = sh(host, "service routing restart")
    assert rc == 1 and "Network is unreachable" in err
    assert "default" not in kernel(host)["routes"]
    assert ok(host, "sysctl -n net.inet.ip.forwarding").strip() == "0"
    ok(host, "sysrc defaultrouter=192.0.2.1 >/dev/null; service routing start >/dev/null 2>&1")


# ------------------------------------------------------------------ pf

def test_pf_start_reload_refuses_a_broken_file_and_keeps_the_rules(host):
    rc, _out, err = sh(host, "rm -f /etc/pf.conf; service pf onestart")
    assert rc == 1 and "/etc/pf.conf is not readable." in err
    ok(host, "printf 'pass quick on vtnet0 all\\n' > /etc/pf.conf; sysrc pf_enable=YES >/dev/null")
    out = ok(host, "service pf start")
    assert "Enabling pf." in out
    rules = ok(host, "pfctl -sr")
    assert "pass quick on vtnet0" in rules and kernel(host)["pf"]["enabled"]
    ok(host, "printf 'pass quick on vtnet0 all\\nthis is not pf\\n' > /etc/pf.conf")
    rc, out, err = sh(host, "service pf reload")
    assert rc == 1 and "Reloading pf rules." in out and "syntax error" in err
    assert ok(host, "pfctl -sr") == rules
    rc, _out, _err = sh(host, "service pf check")
    assert rc == 1
    ok(host, "printf 'block all\\n' > /etc/pf.conf")
    assert ok(host, "service pf check").strip() == "Checking pf rules."
    ok(host, "service pf reload")
    assert "block" in ok(host, "pfctl -sr")
    assert "Enabled" in ok(host, "service pf status")
    assert "Disabling pf." in ok(host, "service pf stop")
    assert not kernel(host)["pf"]["enabled"]
    ok(host, "sysrc pf_enable=NO >/dev/null")


def test_pflog_creates_pflog0(host):
    rc, out, _err = sh(host, "service pflog start")
    assert rc == 0 and "Cannot 'start' pflog. Set pflog_enable to YES" in out
    ok(host, "service pflog onestart")
    assert kernel(host)["ifaces"]["pflog0"]["up"]
    rc, _out, err = sh(host, "ifconfig pflog0 create")
    assert rc == 1 and "File exists" in err
    ok(host, "service pflog onestop; ifconfig pflog0 destroy")


# ------------------------------------------------------------------ sysctl, jail, service -e

def test_sysctl_conf_applied_with_unknown_names(host):
    ok(host, "printf '# comment\\nnet.link.bridge.pfil_member=0\\n\\nno.such.oid=1\\n' > /etc/sysctl.conf")
    ok(host, "service sysctl start")  # -i: the unknown name is ignored
    assert ok(host, "sysctl -n net.link.bridge.pfil_member").strip() == "0"
    rc, _out, err = sh(host, "sysctl -f /etc/sysctl.conf")
    assert rc == 1 and "sysctl: unknown oid 'no.such.oid' at line 4" in err
    ok(host, "rm /etc/sysctl.conf; sysctl net.link.bridge.pfil_member=1")


def test_sysctl_flags_as_sysctl_8_prints_them(host):
    # -e: '=' between name and value; -n: values only; -q: silent set; -i: unknown names ignored
    forwarding = ok(host, "sysctl -n net.inet.ip.forwarding").strip()
    assert ok(host, "sysctl -e net.inet.ip.forwarding").strip() == f"net.inet.ip.forwarding={forwarding}"
    assert ok(host, "sysctl -e -n net.link.bridge.pfil_member").strip() == "1"
    assert ok(host, "sysctl -e net.link.bridge.pfil_member=0").strip() == "net.link.bridge.pfil_member=1 -> 0"
    assert ok(host, "sysctl -q net.link.bridge.pfil_member=1") == ""
    assert ok(host, "sysctl -i no.such.oid net.link.bridge.pfil_member").strip() == "net.link.bridge.pfil_member: 1"
    rc, _out, err = sh(host, "sysctl -e no.such.oid")
    assert rc == 1 and "sysctl: unknown oid 'no.such.oid'" in err
    rc, _out, err = sh(host, "sysctl -W net.inet.ip.forwarding")
    assert rc == 64 and "not implemented" in err


def test_hostname_from_rc_conf(host):
    before = ok(host, "hostname").strip()
    ok(host, "sysrc hostname=renamed.standin.test >/dev/null")
    assert ok(host, "service hostname start").strip() == "Setting hostname: renamed.standin.test."
    assert ok(host, "hostname").strip() == "renamed.standin.test"
    # refused: no hostname in rc.conf (rc.d/hostname's warning, the name stays)
    _rc, _out, err = sh(host, "sysrc hostname='' >/dev/null; service hostname start")
    assert "Hostname is not set -- see rc.conf(5)." in err
    assert ok(host, "hostname").strip() == "renamed.standin.test"
    ok(host, f"sysrc hostname={before} >/dev/null; service hostname start")


def test_jail_script_says_what_it_does_not_do(host):
    rc, out, _err = sh(host, "service jail start")
    assert rc == 0 and "Cannot 'start' jail. Set jail_enable to YES" in out
    # rc.subr's _run_rc_doit turns the command's failure into status 1
    rc, _out, err = sh(host, "service jail onestart")
    assert rc == 1 and "stand-in: service jail start" in err and "is not implemented" in err


def test_service_e_lists_enabled_scripts_with_rcvar_in_boot_order(host):
    listed = ok(host, "service -e").split()
    assert "/etc/rc.d/netif" in listed  # netif_enable=YES in defaults/rc.conf
    assert "/etc/rc.d/routing" not in listed  # no rcvar line: never listed (service.sh)
    assert "/etc/rc.d/pf" not in listed  # pf_enable=NO

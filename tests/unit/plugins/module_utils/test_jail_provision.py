"""jail_provision's core against a fake host whose jails answer pkg, sysrc, service and jls as FreeBSD prints them."""

from __future__ import annotations

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import jail_provision as jp
from ansible_collections.warden.fleet.plugins.module_utils.backup import runner


@pytest.fixture(autouse=True)
def _freebsd_paths(monkeypatch):
    paths = {"timeout": "/usr/bin/timeout", "jls": "/usr/sbin/jls", "pkg": "/usr/sbin/pkg", "sysrc": "/usr/sbin/sysrc",
             "service": "/usr/sbin/service"}
    monkeypatch.setattr(runner, "find_command", paths.get)


class FakeHost:
    """Running jails with their packages, rc.conf and running services; records every argv it is given."""

    def __init__(self, jails, broken_start=()):
        self.jails = jails
        self.broken_start = set(broken_start)
        self.calls = []

    def __call__(self, argv, environ_update=None):
        foreground = argv[1:2] == ["-f"]
        if foreground:
            argv = argv[:1] + argv[2:]
        assert argv[:4] == ["/usr/bin/timeout", "-k", "30s", argv[3]] and argv[3].endswith("s")
        cmd = argv[4:]
        # only a service start leaves a daemon behind: it alone runs without timeout's reaper
        assert foreground == (cmd[0].endswith("/service") and cmd[-1] == "start"), argv
        self.calls.append((cmd, dict(environ_update or {})))
        tool, args = cmd[0].rsplit("/", 1)[1], cmd[1:]
        if tool == "jls":
            return (0, "12\n", "") if args[1] in self.jails else (1, "", f"jls: jail \"{args[1]}\" not found\n")
        jail = self.jails[args[1]]
        args = args[2:]
        if tool == "pkg" and args == ["query", "-a", "%n"]:
            return 0, "".join(f"{p}\n" for p in sorted(jail["packages"])), ""
        if tool == "pkg" and args[:2] == ["install", "-y"]:
            assert environ_update == {"ASSUME_ALWAYS_YES": "yes"}
            jail["packages"] |= set(args[2:])
            return 0, "".join(f"[1/1] Installing {p}-1.0...\n" for p in args[2:]), ""
        if tool == "sysrc" and args[:2] == ["-i", "-e"]:
            # an unset variable: no message with -i, but exit 1
            rc = 0 if all(v in jail["rc"] for v in args[2:]) else 1
            return rc, "".join(f'{v}="{jail["rc"][v]}"\n' for v in args[2:] if v in jail["rc"]), ""
        if tool == "sysrc":
            for assignment in args:
                var, value = assignment.split("=", 1)
                jail["rc"][var] = value
            return 0, "", ""
        if tool == "service" and args[1] == "status":
            up = args[0] in jail["running"]
            return (0, f"{args[0]} is running as pid 123.\n", "") if up else (1, f"{args[0]} is not running.\n", "")
        if tool == "service" and args[1] == "start":
            if args[0] not in self.broken_start:
                jail["running"].add(args[0])
            # rc.subr returns 0 although the daemon died at once: only the status read back tells
            return 0, f"Starting {args[0]}.\n", ""
        raise AssertionError(f"unexpected command {cmd}")

    def tools(self):
        return [c[0][0].rsplit("/", 1)[1] + " " + " ".join(c[0][3:]) for c in self.calls]


CMS = {"name": "atlascms", "packages": ["nginx"], "rc_conf": {"nginx_enable": "YES"}, "services": ["nginx"]}
DB = {"name": "atlasdb", "packages": ["postgresql17-server", "pgvector"], "rc_conf": {"postgresql_enable": "YES"},
      "services": []}


def fresh():
    return {"packages": set(), "rc": {"sendmail_enable": "NO"}, "running": set()}


def test_fresh_jails_get_packages_then_rc_conf_then_services_and_are_read_back():
    host = FakeHost({"atlascms": fresh(), "atlasdb": fresh()})
    results, diff = jp.provision(jp.Runner(host), [CMS, DB], check_mode=False)
    assert results["atlascms"] == {"changed": True, "installed": ["nginx"], "rc_conf": {"nginx_enable": "YES"},
                                   "started": ["nginx"]}
    assert results["atlasdb"]["installed"] == ["postgresql17-server", "pgvector"]
    assert results["atlasdb"]["started"] == []
    assert host.jails["atlascms"]["running"] == {"nginx"}
    assert host.jails["atlasdb"]["rc"]["postgresql_enable"] == "YES"
    order = [t.split()[0] + " " + t.split()[1] for t in host.tools()]
    assert order[:7] == ["jls jid", "pkg query", "sysrc -i", "service nginx", "pkg install", "sysrc nginx_enable=YES",
                         "service nginx"]
    assert diff["before"]["atlascms"] == {"packages": [], "rc_conf": {}, "running": []}
    assert diff["after"]["atlascms"] == {
        "packages": ["nginx"], "rc_conf": {"nginx_enable": "YES"}, "running": ["nginx"]}


def test_a_provisioned_jail_is_only_read():
    host = FakeHost({"atlascms": {"packages": {"nginx", "pkg"}, "rc": {"nginx_enable": "YES"}, "running": {"nginx"}}})
    results, diff = jp.provision(jp.Runner(host), [CMS], check_mode=False)
    assert results["atlascms"]["changed"] is False
    assert diff == {"before": {}, "after": {}}
    assert all(not t.startswith(("pkg install", "service nginx start")) for t in host.tools())
    assert len(host.calls) == 4  # jls, pkg query, sysrc read, service status


def test_only_the_difference_is_applied():
    host = FakeHost({"atlasdb": {"packages": {"postgresql17-server"}, "rc": {"postgresql_enable": "NO"},
                                 "running": set()}})
    results, _diff = jp.provision(jp.Runner(host), [DB], check_mode=False)
    assert results["atlasdb"]["installed"] == ["pgvector"]
    assert results["atlasdb"]["rc_conf"] == {"postgresql_enable": "YES"}
    installs = [c[0] for c in host.calls if c[0][3:5] == ["install", "-y"]]
    assert installs == [["/usr/sbin/pkg", "-j", "atlasdb", "install", "-y", "pgvector"]]


def test_check_mode_reports_and_changes_nothing_even_before_the_jail_exists():
    host = FakeHost({"atlascms": fresh()})
    results, diff = jp.provision(jp.Runner(host), [CMS, DB], check_mode=True)
    assert results["atlascms"]["changed"] and results["atlasdb"]["changed"]
    assert results["atlasdb"]["installed"] == ["postgresql17-server", "pgvector"]
    assert host.jails["atlascms"] == fresh()
    assert not [t for t in host.tools() if " install " in f" {t} " or t.endswith(" start") or "=" in t]
    assert diff["after"]["atlasdb"]["rc_conf"] == {"postgresql_enable": "YES"}


def test_a_sysrc_error_message_fails_the_read():
    host = FakeHost({"atlascms": fresh()})
    real = host.__call__

    def jexec_fails(argv, environ_update=None):
        if argv[4].endswith("/sysrc"):
            return 1, "", 'jexec: jail "atlascms" not found\n'
        return real(argv, environ_update)

    with pytest.raises(jp.ProvisionError, match="atlascms: sysrc -j atlascms failed .*not found"):
        jp.provision(jp.Runner(jexec_fails), [CMS], check_mode=False)


def test_a_jail_that_does_not_run_fails_outside_check_mode():
    with pytest.raises(jp.ProvisionError, match="atlasdb: the jail is not running"):
        jp.provision(jp.Runner(FakeHost({})), [DB], check_mode=False)


def test_a_service_that_dies_after_start_fails_the_read_back():
    host = FakeHost({"atlascms": fresh()}, broken_start={"nginx"})
    with pytest.raises(jp.ProvisionError, match="atlascms: still not as wanted.*services nginx not running"):
        jp.provision(jp.Runner(host), [CMS], check_mode=False)


@pytest.mark.parametrize(
    ("jail", "message"),
    [
        ({"name": "atlas-cms"}, "is not a VNET jail name"),
        ({"name": "atlascms", "packages": ["-f"]}, "'-f' is not a package name"),
        ({"name": "atlascms", "rc_conf": {"a b": "1"}}, "'a b' is not an rc.conf variable"),
        ({"name": "atlascms", "rc_conf": {"x_flags": '"; reboot'}}, "value of x_flags has a quote"),
        ({"name": "atlascms", "services": ["../x"]}, "is not an rc.d script name"),
    ],
)
def test_bad_input_fails_before_any_command(jail, message):
    host = FakeHost({})
    spec = {"packages": [], "rc_conf": {}, "services": [], **jail}
    with pytest.raises(jp.ProvisionError, match=message):
        jp.provision(jp.Runner(host), [spec], check_mode=False)
    assert host.calls == []

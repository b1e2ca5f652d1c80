"""jail_provision's core against a fake host whose jails answer pkg, sysrc, service and jls as FreeBSD prints them."""

from __future__ import annotations

import os
import pwd

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import jail_provision as jp
from ansible_collections.warden.fleet.plugins.module_utils.backup import runner


@pytest.fixture(autouse=True)
def _freebsd_paths(monkeypatch):
    paths = {"timeout": "/usr/bin/timeout", "jls": "/usr/sbin/jls", "pkg": "/usr/sbin/pkg", "sysrc": "/usr/sbin/sysrc",
             "service": "/usr/sbin/service", "jexec": "/usr/sbin/jexec"}
    monkeypatch.setattr(runner, "find_command", paths.get)


class FakeHost:
    """Running jails with their packages, rc.conf and running services; records every argv it is given."""

    def __init__(self, jails, broken_start=()):
        self.jails = jails
        self.broken_start = set(broken_start)
        self.calls = []

    def __call__(self, argv, environ_update=None, data=None, binary_data=False):
        foreground = argv[1:2] == ["-f"]
        if foreground:
            argv = argv[:1] + argv[2:]
        assert argv[:4] == ["/usr/bin/timeout", "-k", "30s", argv[3]] and argv[3].endswith("s")
        cmd = argv[4:]
        # only a service start leaves a daemon behind: it alone runs without timeout's reaper
        assert foreground == (cmd[0].endswith("/service") and cmd[-1] == "start"), argv
        self.calls.append((cmd, dict(environ_update or {})))
        tool, args = cmd[0].rsplit("/", 1)[1], cmd[1:]
        if cmd[:3] == ["/bin/sh", "-c", jp.READ]:
            # pkg -j JAIL query -a %n, a marker with its status, then SURVEY in the jail as root
            assert args[2:4] == ["sh", args[3]] and args[5] == jp.SURVEY
            name, mark = args[3], args[4]
            if name not in self.jails:
                return 1, f"{mark} pkg 1\n", f'pkg: jail "{name}" not found\njexec: jail "{name}" not found\n'
            packages = "".join(f"{p}\n" for p in sorted(self.jails[name]["packages"]))
            return 0, f"{packages}{mark} pkg 0\n" + self.survey(self.jails[name], mark, args[6:]), ""
        if tool == "jexec":
            assert args[:2] == ["-l", "-U"], args
            return self.jexec(args[2], args[3], args[4:], data, binary_data)
        if tool == "jls":
            # jls name: the name parameter of every running jail, one a line (usr.sbin/jls/jls.c)
            assert args == ["name"], args
            return 0, "".join(f"{name}\n" for name in sorted(self.jails)) + "atlascmsold\n", ""
        jail = self.jails[args[1]]
        args = args[2:]
        if tool == "pkg" and args[:2] == ["install", "-y"]:
            assert environ_update == {"ASSUME_ALWAYS_YES": "yes"}
            jail["packages"] |= set(args[2:])
            return 0, "".join(f"[1/1] Installing {p}-1.0...\n" for p in args[2:]), ""
        if tool == "sysrc":
            for assignment in args:
                var, value = assignment.split("=", 1)
                jail["rc"][var] = value
            return 0, "", ""
        if tool == "service" and args[1] == "start":
            if args[0] not in self.broken_start:
                jail["running"].add(args[0])
            # rc.subr returns 0 although the daemon died at once: only the status read back tells
            return 0, f"Starting {args[0]}.\n", ""
        raise AssertionError(f"unexpected command {cmd}")

    def jexec(self, user, jail_name, argv, data, binary_data):
        """pw, ls, cat, git init and the authorized_keys writer inside a jail, as its user."""
        jail = self.jails[jail_name]
        users = jail.setdefault("users", {})
        files = jail.setdefault("files", {})
        if argv[:2] == ["pw", "useradd"]:
            assert user == "root"
            rest = [a for a in argv[2:] if a != "-m"]
            o = dict(zip(rest[::2], rest[1::2], strict=True))
            assert "-m" in argv and o["-w"] == "no"
            users[o["-n"]] = {"home": o["-d"], "shell": o["-s"], "comment": o["-c"]}
            return 0, "", ""
        assert user in users, f"jexec -U {user}: no such user in {jail_name}"
        home = users[user]["home"]
        if argv[:3] == ["/bin/sh", "-c", jp.ACCOUNT_READ]:
            # ls -1 HOME, a marker line with its status, cat HOME/.ssh/authorized_keys, a marker with its status
            mark, path = argv[4], argv[5]
            assert argv[3] == "sh" and path == home
            listing = "".join(f"{p.rsplit('/', 1)[1]}\n" for p in files if p.rsplit("/", 1)[0] == path)
            keys = files.get(f"{path}/.ssh/authorized_keys")
            return 0, f"{listing}\n{mark} 0\n{keys or ''}\n{mark} {0 if keys else 1}\n", ""
        if argv[:4] == ["git", "init", "--bare", "-q"]:
            files[argv[4]] = "(bare repository)"
            return 0, "", ""
        if argv[:2] == ["/bin/sh", "-c"] and argv[3:] == ["sh", home]:
            assert binary_data and data.endswith("\n") and not data.endswith("\n\n")
            files[f"{home}/.ssh/authorized_keys"] = data
            return 0, "", ""
        raise AssertionError(f"unexpected jexec {argv}")

    def survey(self, jail, mark, args):
        """What jail_provision.SURVEY prints: sysrc -i -e, each service's status, each account's passwd entry."""
        count = int(args[0])
        variables, args = args[1:1 + count], args[1 + count:]
        count = int(args[0])
        services, accounts = args[1:1 + count], args[1 + count:]
        lines = []
        if variables:
            lines += [f'{v}="{jail["rc"][v]}"' for v in variables if v in jail["rc"]]
            # an unset variable: no message with -i, but exit 1
            lines.append(f"{mark} sysrc {0 if all(v in jail['rc'] for v in variables) else 1}")
        lines += [f"{mark} service {0 if s in jail['running'] else 1} {s}" for s in services]
        for name in accounts:
            u = jail.get("users", {}).get(name)
            if u:
                lines.append(f"{name}:*:1001:1001::0:0:{u['comment']}:{u['home']}:{u['shell']}")
            lines.append(f"{mark} user {0 if u else 67} {name}")
        return "".join(f"{line}\n" for line in lines)

    def tools(self):
        """Each call in short: "read JAIL" for jail_provision.READ, else the tool and its arguments after the jail."""
        return [f"read {cmd[4]}" if cmd[:3] == ["/bin/sh", "-c", jp.READ]
                else cmd[0].rsplit("/", 1)[1] + " " + " ".join(cmd[4 if cmd[0].endswith("jexec") else 3:])
                for cmd, _env in self.calls]


CMS = {"name": "atlascms", "packages": ["nginx"], "rc_conf": {"nginx_enable": "YES"}, "services": ["nginx"]}
DB = {"name": "atlasdb", "packages": ["postgresql17-server", "pgvector"], "rc_conf": {"postgresql_enable": "YES"},
      "services": []}


def fresh():
    return {"packages": set(), "rc": {"sendmail_enable": "NO"}, "running": set()}


def test_fresh_jails_get_packages_then_rc_conf_then_services_and_are_read_back():
    host = FakeHost({"atlascms": fresh(), "atlasdb": fresh()})
    results, diff = jp.provision(jp.Runner(host), [CMS, DB], check_mode=False)
    assert results["atlascms"] == {"changed": True, "installed": ["nginx"], "rc_conf": {"nginx_enable": "YES"},
                                   "started": ["nginx"], "accounts": {}, "warnings": []}
    assert results["atlasdb"]["installed"] == ["postgresql17-server", "pgvector"]
    assert results["atlasdb"]["started"] == []
    assert host.jails["atlascms"]["running"] == {"nginx"}
    assert host.jails["atlasdb"]["rc"]["postgresql_enable"] == "YES"
    cms = [t for t, (argv, _env) in zip(host.tools(), host.calls, strict=True) if "atlascms" in argv]
    # read (packages, rc.conf and services in one command), change, read back
    assert cms == ["read atlascms", "pkg install -y nginx", "sysrc nginx_enable=YES", "service nginx start",
                   "read atlascms"]
    # every jail is read before anything changes (the reads run in parallel)
    tools = host.tools()
    first_change = tools.index(next(t for t in tools if t.startswith("pkg install")))
    assert [c[0][1:] for c in host.calls if c[0][0].endswith("/jls")] == [["name"]]  # once, for the host, first
    assert host.calls[0][0] == ["/usr/sbin/jls", "name"]
    assert sum(t.startswith("read ") for t in tools[:first_change]) == 2
    assert diff["before"]["atlascms"] == {"packages": [], "rc_conf": {}, "running": []}
    assert diff["after"]["atlascms"] == {
        "packages": ["nginx"], "rc_conf": {"nginx_enable": "YES"}, "running": ["nginx"]}


def test_a_provisioned_jail_is_only_read():
    host = FakeHost({"atlascms": {"packages": {"nginx", "pkg"}, "rc": {"nginx_enable": "YES"}, "running": {"nginx"}}})
    results, diff = jp.provision(jp.Runner(host), [CMS], check_mode=False)
    assert results["atlascms"]["changed"] is False
    assert diff == {"before": {}, "after": {}}
    assert all(not t.startswith(("pkg install", "service nginx start")) for t in host.tools())
    assert host.tools() == ["jls ", "read atlascms"]  # jls name once for the host, one read for the jail


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
    assert host.tools() == ["jls ", "read atlascms"]
    assert diff["after"]["atlasdb"]["rc_conf"] == {"postgresql_enable": "YES"}


def read_fails(host, rc, out, err):
    """host, except that READ answers (rc, out with its marker, err)."""

    def run(argv, environ_update=None, data=None, binary_data=False):
        if jp.READ in argv:
            mark = argv[argv.index(jp.READ) + 3]
            return rc, out.replace("MARK", mark), err
        return host(argv, environ_update, data, binary_data)

    return run


@pytest.mark.parametrize(
    ("rc", "out", "err", "message"),
    [
        (1, "MARK pkg 3\n", "pkg: jail_attach: Operation not permitted\n",
         r"atlascms: pkg -j atlascms query failed \(rc=3\): pkg: jail_attach"),
        (1, "", "timeout: sh: Cannot allocate memory\n", r"atlascms: pkg -j atlascms query failed \(rc=1\)"),
        (1, "MARK pkg 0\n", 'jexec: jail "atlascms" not found\n', r"atlascms: reading the jail failed \(rc=1\): jexec"),
        # sysrc exits 1 for an unset variable (silently with -i): a message makes it an error
        (0, "MARK pkg 0\nMARK sysrc 1\nMARK service 0 nginx\n", "sysrc: /etc/rc.conf: Permission denied\n",
         r"atlascms: sysrc -i -e failed \(rc=1\): sysrc: /etc/rc.conf: Permission denied"),
        (0, "MARK pkg 0\nMARK sysrc 2\nMARK service 0 nginx\n", "", r"sysrc -i -e failed \(rc=2\)"),
        # a script cut short: a service without its status is not taken as stopped
        (0, 'MARK pkg 0\nnginx_enable="YES"\nMARK sysrc 0\n', "", "reading the jail gave an incomplete answer"),
    ],
)
def test_a_failed_or_partial_read_fails(rc, out, err, message):
    host = FakeHost({"atlascms": fresh()})
    with pytest.raises(jp.ProvisionError, match=message):
        jp.provision(jp.Runner(read_fails(host, rc, out, err)), [CMS], check_mode=False)
    assert not [t for t in host.tools() if t.startswith(("pkg install", "sysrc", "service"))]


def test_output_that_imitates_a_marker_is_not_taken_for_one():
    """The marker is random per call: a value printing a fake status line is just a line."""
    host = FakeHost({"atlascms": {"packages": {"nginx"}, "rc": {"nginx_enable": "YES"}, "running": set()}})
    out = 'nginx\nMARK pkg 0\nnginx_enable="YES"\nMARK sysrc 0\n0000 service 0 nginx\nMARK service 1 nginx\n'
    results, _diff = jp.provision(jp.Runner(read_fails(host, 0, out, "")), [CMS], check_mode=True)
    assert results["atlascms"]["started"] == ["nginx"] and results["atlascms"]["rc_conf"] == {}


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


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3x4fQv0e5Jc8k0Zy8Pj1D6d3nq7pYw2r9b9bqvVh7e atlas@bsd1"


@pytest.fixture
def agent_key(tmp_path):
    home = tmp_path / "agents" / "atlas"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519.pub").write_text(KEY + "\n")
    return home / ".ssh" / "id_ed25519.pub"


def git_jail(key_file):
    return {"name": "atlasgit", "packages": ["git"], "rc_conf": {"sshd_enable": "YES"}, "services": ["sshd"],
            "accounts": [{"name": "git", "home": "/srv/git", "shell": "/usr/local/bin/git-shell",
                          "comment": "git repositories of atlas", "repositories": ["atlas.git"],
                          "authorized_key": {"file": str(key_file), "owner": "atlas", "from": "10.0.1.1"}}]}


def me(_name):
    return pwd.getpwuid(os.getuid())


def test_the_git_account_gets_its_repository_and_the_agents_key_from_its_gateway_only(agent_key, monkeypatch):
    monkeypatch.setattr(jp.pwd, "getpwnam", me)
    host = FakeHost({"atlasgit": fresh()})
    results, _diff = jp.provision(jp.Runner(host), [git_jail(agent_key)], check_mode=False)
    assert results["atlasgit"]["accounts"] == {"git": {"created": True, "repositories": ["atlas.git"],
                                                       "authorized_key": True}}
    jail = host.jails["atlasgit"]
    assert jail["users"]["git"] == {"home": "/srv/git", "shell": "/usr/local/bin/git-shell",
                                    "comment": "git repositories of atlas"}
    assert jail["files"]["/srv/git/.ssh/authorized_keys"] == (
        'from="10.0.1.1",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty ' + KEY + "\n")
    # the account before sshd: sshd starts last
    order = [t for t in host.tools() if t.startswith(("jexec atlasgit pw useradd", "service sshd start"))]
    assert [t.split()[-1] if t.startswith("service") else "useradd" for t in order] == ["useradd", "start"]
    again, _diff = jp.provision(jp.Runner(host), [git_jail(agent_key)], check_mode=False)
    assert again["atlasgit"]["changed"] is False


def test_a_key_that_is_a_symlink_is_not_read(agent_key, tmp_path, monkeypatch):
    monkeypatch.setattr(jp.pwd, "getpwnam", me)
    secret = tmp_path / "master.passwd"
    secret.write_text("root:$6$secret:0:0::0:0:Charlie &:/root:/bin/sh\n")
    agent_key.unlink()
    agent_key.symlink_to(secret)
    host = FakeHost({"atlasgit": fresh()})
    results, _diff = jp.provision(jp.Runner(host), [git_jail(agent_key)], check_mode=False)
    assert results["atlasgit"]["accounts"]["git"]["authorized_key"] is False
    assert "is not a plain file" in results["atlasgit"]["warnings"][0]
    assert "/srv/git/.ssh/authorized_keys" not in host.jails["atlasgit"]["files"]


@pytest.mark.parametrize(
    ("content", "why"),
    [("not a key\n", "does not hold one SSH public key"), (KEY + "\n" + KEY + "\n", "does not hold one"),
     ('ssh-ed25519 AAAA" command="/bin/sh\n', "does not hold one")],
)
def test_only_one_plain_public_key_is_taken(agent_key, monkeypatch, content, why):
    monkeypatch.setattr(jp.pwd, "getpwnam", me)
    agent_key.write_text(content)
    key, reason = jp.read_public_key(str(agent_key), "atlas")
    assert key is None and why in reason


def test_a_missing_key_or_agent_is_waited_for(agent_key, monkeypatch):
    def nobody(name):
        raise KeyError(name)

    monkeypatch.setattr(jp.pwd, "getpwnam", nobody)
    assert jp.read_public_key(str(agent_key), "atlas") == (None, "the user atlas does not exist yet")
    monkeypatch.setattr(jp.pwd, "getpwnam", me)
    agent_key.unlink()
    assert jp.read_public_key(str(agent_key), "atlas")[1].endswith("does not exist")


class FakeServices:
    """service -j JAIL SVC ACTION for jail_service: initdb, start, restart, reload, status, as rc.subr answers."""

    def __init__(self, dead_after_start=()):
        self.clusters, self.running, self.calls = set(), set(), []
        self.dead_after_start = set(dead_after_start)

    def __call__(self, argv, environ_update=None):
        foreground = argv[1:2] == ["-f"]
        argv = argv[:1] + argv[2:] if foreground else argv
        assert argv[:3] == ["/usr/bin/timeout", "-k", "30s"] and argv[4:6] == ["/usr/sbin/service", "-j"], argv
        jail, service, action = argv[6:]
        assert foreground == (action in ("start", "restart")), argv
        self.calls.append(f"{jail} {action}")
        if action == "status":
            return (0, "running\n", "") if jail in self.running else (1, f"{service} is not running.\n", "")
        if action == "initdb":
            if jail in self.clusters:
                return 1, "", "initdb: error: directory exists but is not empty\n"
            self.clusters.add(jail)
            return 0, "Success.\n", ""
        if action in ("start", "restart"):
            if jail not in self.clusters:
                return 1, "", "pg_ctl: directory does not exist\n"
            if jail not in self.dead_after_start:
                self.running.add(jail)
            return 0, f"{'Starting' if action == 'start' else 'Restarting'} {service}.\n", ""
        if action == "reload":
            return (0, "", "") if jail in self.running else (1, "", "pg_ctl: PID file does not exist\n")
        raise AssertionError(f"unexpected {argv}")


def pg(jail, action):
    return {"jail": jail, "service": "postgresql", "action": action}


def test_service_actions_run_in_order_and_the_running_state_is_read_back():
    host = FakeServices()
    done = jp.service_actions(jp.Runner(host), [pg("atlasdb", "initdb"), pg("atlasdb", "start"),
                                                pg("atlasdb", "reload")], check_mode=False)
    assert done == ["atlasdb: service postgresql initdb", "atlasdb: service postgresql start",
                    "atlasdb: service postgresql reload"]
    assert host.calls == ["atlasdb initdb", "atlasdb start", "atlasdb status", "atlasdb reload", "atlasdb status"]
    assert host.running == {"atlasdb"}


def test_service_actions_in_check_mode_report_every_action_and_run_nothing():
    host = FakeServices()
    done = jp.service_actions(jp.Runner(host), [pg("atlasdb", "initdb"), pg("boltdb", "start")], check_mode=True)
    assert done == ["atlasdb: service postgresql initdb", "boltdb: service postgresql start"]
    assert host.calls == []


def test_a_start_that_exits_0_without_a_running_service_fails():
    host = FakeServices(dead_after_start={"atlasdb"})
    host.clusters.add("atlasdb")
    with pytest.raises(jp.ProvisionError, match="atlasdb: service postgresql start exited 0 but postgresql does not"):
        jp.service_actions(jp.Runner(host), [pg("atlasdb", "start")], check_mode=False)


def test_a_failing_action_stops_the_list_and_names_the_jail():
    host = FakeServices()
    with pytest.raises(jp.ProvisionError, match=r"boltdb: service postgresql start failed \(rc=1\): pg_ctl: directory"):
        jp.service_actions(jp.Runner(host), [pg("boltdb", "start"), pg("atlasdb", "initdb")], check_mode=False)
    assert host.calls == ["boltdb start"]


def test_bad_actions_are_all_named_before_anything_runs():
    host = FakeServices()
    bad = [{"jail": "atlas-db", "service": "postgresql", "action": "start"},
           {"jail": "atlasdb", "service": "pg;rm", "action": "start"},
           {"jail": "atlasdb", "service": "postgresql", "action": "onestart"}]
    with pytest.raises(jp.ProvisionError) as err:
        jp.service_actions(jp.Runner(host), bad, check_mode=False)
    assert "'atlas-db' is not a VNET jail name" in str(err.value)
    assert "'pg;rm' is not an rc.d script name" in str(err.value)
    assert "'onestart' is not one of initdb, start, stop, restart, reload" in str(err.value)
    assert host.calls == []

"""The stand-in's FreeBSD userland: only FreeBSD's command names on PATH, and
doubles that take FreeBSD's options and refuse GNU's (sed, stat, date,
install, find, xargs, uname, hostname).

Needs root (chroot, mounts).  Run: .venv/bin/pytest tests/standin/test_userland.py
"""

import os
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")
CLI = os.path.join(HERE, "standin_cli.py")


@pytest.fixture(scope="module")
def host():
    name = "pytest-ul-" + uuid.uuid4().hex[:8]
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


def cli_exec(host, *argv):
    return subprocess.run([sys.executable, CLI, "exec", host, "--", *argv], capture_output=True, text=True,
                          check=False)


# ------------------------------------------------------------- what is on PATH

@pytest.mark.parametrize("cmd", ["useradd", "ip", "apt", "apt-get", "systemctl", "ss", "bash", "python3",
                                 "perl", "curl", "dpkg", "runuser", "journalctl", "reboot", "netstat"])
def test_gnu_linux_commands_are_absent(host, cmd):
    rc, _out, err = sh(host, f"{cmd} --version")
    assert rc == 127
    assert f"{cmd}: not found" in err
    assert not os.path.lexists(os.path.join(H.paths(host)["root"], "usr/bin", cmd))


@pytest.mark.parametrize("cmd", ["jail", "kldload", "sockstat", "crontab", "useradd"])
def test_standin_exec_of_a_missing_command_is_sh_not_found(host, cmd):
    proc = cli_exec(host, cmd, "-x")
    assert proc.returncode == 127
    assert proc.stderr == f"sh: {cmd}: not found\n"
    assert "Traceback" not in proc.stderr


def test_standin_exec_of_a_missing_path_is_not_found(host):
    proc = cli_exec(host, "/usr/sbin/kldload", "pf")
    assert (proc.returncode, proc.stderr) == (127, "sh: /usr/sbin/kldload: not found\n")
    proc = cli_exec(host, "uname", "-s")
    assert (proc.returncode, proc.stdout) == (0, "FreeBSD\n")


BASE = " ".join((
    "sh cat cp mv rm ln mkdir chmod chown chgrp ls find xargs sed awk grep sort head tail wc tr cut env id",
    "install mktemp readlink realpath stat date touch tar gzip xz zstd openssl cmp diff tee printf test expr",
    "basename dirname sleep kill ps pgrep pkill uname hostname logger dd lockf timeout su sysrc service pkg pw",
    "daemon"))


def test_freebsd_base_commands_stay(host):
    out = ok(host, f"for c in {BASE}; do command -v $c || echo MISSING $c; done")
    assert "MISSING" not in out
    assert len(out.split()) == len(BASE.split())
    assert ok(host, "echo b a | tr ' ' '\\n' | sort | head -1 | awk '{print $1}'") == "a\n"


def test_private_interpreter_and_host_tools(host):
    # Ansible's interpreter is FreeBSD's path; it still finds its stdlib and the sitecustomize
    out = ok(host, "/usr/local/bin/python3.11 -c 'import sys, platform; print(sys.prefix, platform.system())'")
    assert out == "/usr FreeBSD\n"
    # the doubles start without site (-S); the daemons keep it, rc.subr knows them by argv[1] (their script)
    assert ok(host, "head -1 /usr/sbin/sysrc") == "#!/usr/libexec/standin/bin/python3.11 -S\n"
    assert ok(host, "head -1 /usr/sbin/daemon") == "#!/usr/libexec/standin/bin/python3.11\n"
    # host_tool() reaches machine binaries that are hidden from PATH
    out = ok(host, "/usr/local/bin/python3.11 -c 'import sys; sys.path.insert(0, \"/usr/libexec/standin\"); "
                   "from standin_doubles.layout import host_tool; print(host_tool(\"ip\")); "
                   "print(host_tool(\"awk\"))'")
    ip_path, awk_path = out.split()
    assert ip_path.startswith(("/usr/libexec/standin/bin/", "/.standin/host-usr/"))
    assert awk_path.startswith("/.standin/host-usr/")
    assert ok(host, f"{ip_path} -V").startswith("ip ")


def test_pkg_links_point_at_reachable_binaries(host):
    ok(host, "env ASSUME_ALWAYS_YES=yes pkg install -y git tmux rsync >/dev/null")
    assert ok(host, "git --version").startswith("git version ")
    assert ok(host, "rsync --version").startswith("rsync ")
    assert ok(host, "readlink /usr/local/bin/git") == "/usr/libexec/standin/bin/git\n"


# --------------------------------------------------------------------- uname

def test_uname_is_freebsd(host):
    assert ok(host, "uname") == "FreeBSD\n"
    hostname = ok(host, "hostname").strip()
    assert ok(host, "uname -a") == (f"FreeBSD {hostname} 14.3-RELEASE FreeBSD 14.3-RELEASE "
                                    "releng/14.3-n271432-8c9ce319fef7 GENERIC amd64\n")
    assert ok(host, "uname -rms") == "FreeBSD 14.3-RELEASE amd64\n"
    assert ok(host, "uname -p -i -K -U") == "amd64 GENERIC 1403000 1403000\n"
    assert ok(host, "uname -o") == "FreeBSD\n"
    assert ok(host, "UNAME_r=15.0-CURRENT uname -r") == "15.0-CURRENT\n"


@pytest.mark.parametrize("cmd", ["uname --all", "uname -x", "uname -a extra"])
def test_uname_refuses_gnu_forms(host, cmd):
    rc, _out, err = sh(host, cmd)
    assert rc == 1
    assert err.endswith("usage: uname [-abiKmnoprsUv]\n")


def test_hostname_reads_and_sets_the_simulated_kernel(host):
    before = ok(host, "hostname").strip()
    assert ok(host, "hostname -s") == before.split(".")[0] + "\n"
    assert ok(host, "hostname -d") == before.split(".", 1)[1] + "\n"
    ok(host, "hostname renamed.example.org")
    try:
        assert ok(host, "hostname; uname -n") == "renamed.example.org\n" * 2
        assert os.uname().nodename != "renamed.example.org"  # the machine's own name is untouched
    finally:
        ok(host, f"hostname {before}")
    for cmd in ("hostname -i", "hostname --fqdn", "hostname -s -d"):
        rc, _out, err = sh(host, cmd)
        assert rc == 1 and "usage: hostname [-f] [-s | -d] [name-of-host]" in err


# ----------------------------------------------------------------------- sed

def test_sed_in_place_freebsd_forms(host):
    out = ok(host, "cd /tmp && printf 'abc\\n' > s1 && sed -i '' 's/a/X/' s1 && cat s1 && "
                   "sed -i .bak 's/b/Y/' s1 && cat s1 s1.bak && sed -I '' -e 's/c/Z/' s1 && cat s1 && "
                   "sed -E 's/(X)(Y)/\\2\\1/' s1 && sed -r 's/Z$/!/' s1 && sed -n '$p' s1")
    assert out == "Xbc\nXYc\nXbc\nXYZ\nYXZ\nXY!\nXYZ\n"


def test_sed_refuses_gnu_forms(host):
    ok(host, "cd /tmp && printf 'abc\\n' > f2 && cp f2 s2")
    # GNU's -i without an extension: FreeBSD takes the script as the extension and the file as the script
    rc, _out, err = sh(host, "cd /tmp && sed -i 's/a/b/' f2")
    assert (rc, err) == (1, 'sed: 1: "f2": invalid command code f\n')
    assert ok(host, "cat /tmp/f2") == "abc\n"
    rc, _out, err = sh(host, "cd /tmp && sed -i 's/a/b/' s2")  # "s2": an s command with delimiter 2
    assert rc == 1 and "unterminated" in err
    assert ok(host, "cat /tmp/s2") == "abc\n"
    rc, _out, err = sh(host, "sed --in-place 's/a/b/' /tmp/s2")
    assert rc == 1 and err.startswith("sed: illegal option -- -\nusage: sed script")
    rc, _out, err = sh(host, "sed -s 's/a/b/' /tmp/s2")
    assert rc == 1 and err.startswith("sed: illegal option -- s\n")
    rc, _out, err = sh(host, "echo x | sed -i '' p")
    assert (rc, err) == (1, "sed: -I or -i may not be used with stdin\n")
    rc, _out, err = sh(host, "sed -n p /nosuch")
    assert (rc, err) == (1, "sed: /nosuch: No such file or directory\n")


# ---------------------------------------------------------------------- stat

def test_stat_freebsd_formats(host):
    ok(host, "cd /tmp && printf 'hello\\n' > st1 && chmod 640 st1 && chown root:wheel st1 && ln -sf st1 st2")
    out = ok(host, "stat -f '%N %p %Op %Lp %Mp %Hp %u %g %Su %Sg %z %Sp %HT%T' /tmp/st1")
    assert out == "/tmp/st1 100640 100640 640 0 10 0 0 root wheel 6 -rw-r----- Regular File\n"
    assert ok(host, "stat -f '%N%SY %Y %HT' /tmp/st2") == "/tmp/st2 -> st1 st1 Symbolic Link\n"
    assert ok(host, "stat -L -f '%HT %z' /tmp/st2") == "Regular File 6\n"
    assert ok(host, "stat -f '%#o %#x %5z|%-5z|%05z' /tmp/st1".replace("%#o", "%#Op").replace("%#x", "%#Xz")) \
        == "0100640 0x6     6|6    |00006\n"
    shell = ok(host, "stat -s /tmp/st1")
    assert shell.startswith("st_dev=") and " st_mode=0100640 st_nlink=1 st_uid=0 st_gid=0 " in shell
    assert shell.rstrip().endswith(" st_flags=0")
    linux = ok(host, "stat -x /tmp/st1").splitlines()
    assert linux[0] == '  File: "/tmp/st1"'
    assert linux[1] == "  Size: 6            FileType: Regular File"
    assert linux[2] == "  Mode: (0640/-rw-r-----)         Uid: (    0/    root)  Gid: (    0/   wheel)"
    mtime = ok(host, "stat -f %m /tmp/st1").strip()
    assert mtime.isdigit()
    assert ok(host, "stat -t %s -f %Sm /tmp/st1") == mtime + "\n"
    assert ok(host, "stat -n -f %z /tmp/st1") == "6"
    default = ok(host, "stat /tmp/st1")
    assert default.startswith(tuple("0123456789")) and " -rw-r----- 1 root wheel 0 6 \"" in default
    assert default.endswith(" /tmp/st1\n")


def test_stat_refuses_gnu_forms(host):
    for cmd in ("stat -c %a /tmp/st1", "stat --format=%a /tmp/st1", "stat --printf=%a /tmp/st1"):
        rc, out, err = sh(host, cmd)
        assert rc == 1 and out == ""
        assert err.endswith("usage: stat [-FLnq] [-f format | -l | -r | -s | -x] [-t timefmt] [file|handle ...]\n")
    rc, _out, err = sh(host, "stat -f %Q /tmp/st1")
    assert (rc, err) == (1, "stat: %Q: bad format\n")
    rc, _out, err = sh(host, "stat -s -x /tmp/st1")
    assert (rc, err) == (1, "stat: can't use format 's' with 'x'\n")
    rc, _out, err = sh(host, "stat /nosuch")
    assert (rc, err) == (1, "stat: /nosuch: stat: No such file or directory\n")
    assert sh(host, "stat -q /nosuch")[1:] == ("", "")


# ---------------------------------------------------------------------- date

def test_date_freebsd_forms(host):
    assert ok(host, "date -u -r 0") == "Thu Jan  1 00:00:00 UTC 1970\n"
    assert ok(host, "date -u -r 86400 '+%F %T'") == "1970-01-02 00:00:00\n"
    assert ok(host, "date -u -r 0x10 +%s") == "16\n"
    assert ok(host, "date -u -j -f '%Y-%m-%d %H:%M:%S' '2026-01-31 10:00:00' +%s") == "1769853600\n"
    # vary.c: -v-1m/+1m keeps the day inside the month
    assert ok(host, "date -u -j -v+1m -f '%Y-%m-%d %H' '2026-01-31 00' +%F") == "2026-02-28\n"
    assert ok(host, "date -u -j -v-1d -v+2H -r 0 '+%F %T'") == "1969-12-31 02:00:00\n"
    assert ok(host, "date -u -j -v+fri -r 0 +%A%F") == "Friday1970-01-02\n"
    assert ok(host, "date -u -j -v1d -v12m -r 0 +%F") == "1970-12-01\n"
    assert ok(host, "date -u -j 2001021230.15 '+%F %T'") == "2020-01-02 12:30:15\n"
    assert ok(host, "date -u -Iseconds -r 0") == "1970-01-01T00:00:00+00:00\n"
    assert ok(host, "date -u -I -r 0") == "1970-01-01\n"
    assert ok(host, "date -u -R -r 0") == "Thu, 01 Jan 1970 00:00:00 +0000\n"
    # fields the input format does not set keep the current time's values (setthetime())
    year = ok(host, "date +%Y").strip()
    assert ok(host, "date -j -f %m-%d 07-04 +%Y-%m-%d") == f"{year}-07-04\n"


def test_date_refuses_gnu_forms_and_never_sets_the_clock(host):
    for cmd in ("date -d yesterday", "date --date=now", "date -u -d @0"):
        rc, out, err = sh(host, cmd)
        assert rc == 1 and out == ""
        assert err.endswith("[[[[[[cc]yy]mm]dd]HH]MM[.SS] | new_date] [+output_fmt]\n")
    rc, _out, err = sh(host, "date -j -f %Y 20x6")
    assert rc == 1 and "Failed conversion of ``20x6'' using format ``%Y''" in err
    rc, _out, err = sh(host, "date -j 99999")
    assert rc == 1 and err.startswith("date: illegal time format\n")
    rc, _out, err = sh(host, "date -u -j -v+3q -r 0")
    assert rc == 1 and err.startswith("+3q: Cannot apply date adjustment\n")
    rc, _out, err = sh(host, "date -I -R")
    assert (rc, err) == (1, "date: multiple output formats specified\n")
    rc, _out, err = sh(host, "date 202601010000")
    assert rc == 64 and "stand-in: date 202601010000 is not implemented" in err


# ------------------------------------------------------------------- install

def test_install_freebsd_forms(host):
    ok(host, "pw useradd inst1 -d /home/inst1 -s /usr/sbin/nologin")
    ok(host, "install -d -o inst1 -g wheel -m 0750 /tmp/i1/a /tmp/i1/b")
    out = ok(host, "stat -f '%N %Sp %Su %Sg' /tmp/i1 /tmp/i1/a /tmp/i1/b")
    assert out == ("/tmp/i1 drwxr-xr-x root wheel\n/tmp/i1/a drwxr-x--- inst1 wheel\n"
                   "/tmp/i1/b drwxr-x--- inst1 wheel\n")
    out = ok(host, "cd /tmp && echo one > src && install -v -m 0640 -o inst1 src /tmp/i1/a/f && "
                   "stat -f '%Sp %Su %Sg %z' /tmp/i1/a/f")
    assert out == "install: src -> /tmp/i1/a/f\n-rw-r----- inst1 wheel 4\n"
    out = ok(host, "cd /tmp && install -m u=rw,go=r src /tmp/i1/b && stat -f '%Sp' /tmp/i1/b/src")
    assert out == "-rw-r--r--\n"
    out = ok(host, "cd /tmp && echo two > src && install -b -m 600 src /tmp/i1/a/f && cat /tmp/i1/a/f /tmp/i1/a/f.old")
    assert out == "two\none\n"
    assert ok(host, "install -d /tmp/i1/dflt && stat -f %Lp /tmp/i1/dflt") == "755\n"


def test_install_refuses_gnu_forms(host):
    ok(host, "echo x > /tmp/src2")
    for cmd in ("install -D /tmp/src2 /tmp/deep/x", "install --mode=0644 /tmp/src2 /tmp/y",
                "install -t /tmp /tmp/src2", "install /tmp/src2"):
        rc, out, err = sh(host, cmd)
        assert rc == 64 and out == ""
        assert "usage: install [-bCcpSsUv]" in err, (cmd, err)
    assert not os.path.exists(os.path.join(H.paths(host)["root"], "tmp/deep"))
    rc, _out, err = sh(host, "install -o nosuchuser /tmp/src2 /tmp/z")
    assert (rc, err) == (1, "install: unknown user nosuchuser\n")
    rc, _out, err = sh(host, "install -m 0999 /tmp/src2 /tmp/z")
    assert (rc, err) == (64, "install: invalid file mode: 0999\n")


# ---------------------------------------------------------------------- find

def test_find_freebsd_forms(host):
    ok(host, "mkdir -p /tmp/f1/b /tmp/f1/a && touch /tmp/f1/a/x.conf /tmp/f1/b/y.txt /tmp/f1/z.conf")
    assert ok(host, "find -s /tmp/f1") == (
        "/tmp/f1\n/tmp/f1/a\n/tmp/f1/a/x.conf\n/tmp/f1/b\n/tmp/f1/b/y.txt\n/tmp/f1/z.conf\n")
    assert ok(host, "find -s /tmp/f1 -name '*.conf'") == "/tmp/f1/a/x.conf\n/tmp/f1/z.conf\n"
    assert ok(host, "find -E /tmp/f1 -regex '.*/(x|y)\\.(conf|txt)' | sort") == "/tmp/f1/a/x.conf\n/tmp/f1/b/y.txt\n"
    assert ok(host, "find /tmp/f1 -regex '.*/[xy]\\.conf'") == "/tmp/f1/a/x.conf\n"
    assert ok(host, "find -x /tmp/f1 -maxdepth 1 -type f") == "/tmp/f1/z.conf\n"
    # -f path: getopt(3) goes on after it, so the expression follows "--"
    assert ok(host, "find -f /tmp/f1/a -- -type f -exec echo found {} \\;") == "found /tmp/f1/a/x.conf\n"
    assert ok(host, "find /tmp/f1 -type f -perm +0200 -newer /tmp/f1/a/x.conf -name z.conf") in (
        "/tmp/f1/z.conf\n", "")
    assert ok(host, "find /tmp/f1/b -type f -print0") == "/tmp/f1/b/y.txt\0"


def test_find_refuses_gnu_forms(host):
    for cmd, message in (("find /tmp -printf %p", "find: -printf: unknown primary or operator\n"),
                         ("find /tmp -executable", "find: -executable: unknown primary or operator\n"),
                         ("find /tmp -type f,d", "find: -type: f,d: unknown type\n"),
                         ("find /tmp -name", "find: -name: requires additional arguments\n"),
                         ("find /tmp -exec echo {}", "find: -exec: no terminating \";\" or \"+\"\n")):
        rc, out, err = sh(host, cmd)
        assert (rc, out, err) == (1, "", message), cmd
    for cmd in ("find", "find -regextype posix-extended /tmp", "find -name x"):
        rc, out, err = sh(host, cmd)
        assert rc == 1 and "usage: find [-H | -L | -P] [-EXdsx] [-f path] path ... [expression]" in err, cmd
    rc, _out, err = sh(host, "find /tmp -flags uchg")
    assert rc == 64 and "is not implemented" in err


# --------------------------------------------------------------------- xargs

def test_xargs_freebsd_forms(host):
    assert ok(host, "printf 'a b\\nc\\n' | xargs -n 2 echo X") == "X a b\nX c\n"
    # FreeBSD runs nothing on empty input (-r is accepted for GNU compatibility)
    assert ok(host, "printf '' | xargs echo EMPTY") == ""
    assert ok(host, "printf '' | xargs -r echo EMPTY") == ""
    assert ok(host, "printf 'a\\0b\\0' | xargs -0 -J % echo [ % ]") == "[ a b ]\n"
    assert ok(host, "printf '1\\n2\\n' | xargs -I {} echo '<{}>'") == "<1>\n<2>\n"
    assert ok(host, "printf 'p q\\n' | xargs -L 1 -P 2 -t echo 2>/dev/null") == "p q\n"
    rc, _out, _err = sh(host, "echo x | xargs false")
    assert rc == 1


def test_xargs_refuses_gnu_forms(host):
    for cmd in ("echo a | xargs -d , echo", "echo a | xargs --null echo", "echo a | xargs -a /etc/rc.conf echo",
                "echo a | xargs -i echo {}"):
        rc, out, err = sh(host, cmd)
        assert rc == 1 and out == ""
        assert "usage: xargs [-0opt] [-E eofstr]" in err, (cmd, err)


# ------------------------------------------------------------- md5, sha256

def test_digest_commands_freebsd_forms(host):
    ok(host, "printf abc > /tmp/d1")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert ok(host, "sha256 /tmp/d1") == f"SHA256 (/tmp/d1) = {sha}\n"
    assert ok(host, "sha256 -q /tmp/d1") == f"{sha}\n"
    assert ok(host, "sha256 -r /tmp/d1") == f"{sha} /tmp/d1\n"
    assert ok(host, "sha256 /tmp/d1 --quiet") == f"{sha}\n"  # getopt_long permutes
    assert ok(host, "md5 /tmp/d1") == "MD5 (/tmp/d1) = 900150983cd24fb0d6963f7d28e17f72\n"
    assert ok(host, "printf abc | sha256") == f"{sha}\n"
    assert ok(host, "printf abc | md5 -p") == "abc900150983cd24fb0d6963f7d28e17f72\n"
    assert ok(host, f"sha256 -c {sha} /tmp/d1") == f"SHA256 (/tmp/d1) = {sha}\n"
    rc, out, _err = sh(host, "sha256 -c 00 /tmp/d1")
    assert (rc, out) == (2, f"SHA256 (/tmp/d1) = {sha} [ Failed ]\n")
    rc, _out, err = sh(host, "sha256 /nosuch")
    assert (rc, err) == (1, "sha256: /nosuch: No such file or directory\n")


def test_digest_commands_refuse_gnu_forms(host):
    for cmd, first in (("sha256 --tag /tmp/d1", "sha256: unknown option -- tag\n"),
                       ("sha256 -z /tmp/d1", "sha256: illegal option -- z\n"),
                       ("md5 --check", "md5: option requires an argument -- check\n")):
        rc, out, err = sh(host, cmd)
        assert (rc, out) == (1, ""), cmd
        assert err.startswith(first) and err.endswith("[-pqrtx] [-c string] [-s string] [files ...]\n"), err

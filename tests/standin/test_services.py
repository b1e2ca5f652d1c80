"""The stand-in's service doubles in a VNET jail (sshd, nginx, ollama, llama-server), devfs(8) and its
rc.d script, pkg's /usr/local/sbin/pkg and `pkg -j` into a jail without pkg of its own.

Each server is started the FreeBSD way (the package's or base's rc.d script through `service -j`) and
must answer at the jail's address from the host; each double refuses a form it does not implement.
Needs root.
"""

import os
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

JAIL, IP = "svc1", "10.0.1.3"
PROBE = (
    "import socket, sys, urllib.request\n"
    "ip, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
    "if path == 'banner':\n"
    "    print(socket.create_connection((ip, port), timeout=5).recv(64).decode())\n"
    "else:\n"
    "    print(urllib.request.urlopen(f'http://{ip}:{port}{path}', timeout=5).read().decode())\n"
)


@pytest.fixture(scope="module")
def host():
    name = "pytest-svc-" + uuid.uuid4().hex[:8]
    H.up(name)
    ok(name, "env ASSUME_ALWAYS_YES=yes pkg install -y bastille >/dev/null")
    ok(name, "ifconfig bridge create name warden0 >/dev/null && ifconfig warden0 inet 10.0.1.1/24 up")
    ok(name, "bastille bootstrap 14.3-RELEASE >/dev/null")
    ok(name, f"bastille create -B -g 10.0.1.1 {JAIL} 14.3-RELEASE {IP}/24 warden0 >/dev/null 2>&1")
    yield name
    H.down(name)


def sh(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def probe(host, port, path):
    return sh(host, f"/usr/local/bin/python3.11 -c \"$PROBE\" {IP} {port} {path}".replace("$PROBE", PROBE))


def probe_until_served(host, port, path, within=15.0):
    """probe() until it answers: a server under daemon(8) binds its port after `service start` has returned."""
    deadline = time.monotonic() + within
    while True:
        rc, out, err = probe(host, port, path)
        if rc == 0 or time.monotonic() > deadline:
            return rc, out, err
        time.sleep(0.2)


def refused(host, script):
    rc, _out, err = sh(host, script)
    assert rc == 64 and "is not implemented" in err, (script, rc, err)


def test_pkg_is_bootstrapped_in_usr_local_and_pkg_j_needs_no_pkg_in_the_jail(host):
    assert ok(host, "test -x /usr/local/sbin/pkg && echo yes").strip() == "yes"
    # pkg(7) attaches the host's pkg to the jail: the jail has no pkg of its own and still answers
    assert ok(host, f"pkg -j {JAIL} query -a %n") == ""
    ok(host, f"pkg -j {JAIL} install -y nginx ollama llama-cpp >/dev/null")
    assert ok(host, f"pkg -j {JAIL} query -a %n").split() == ["llama-cpp", "nginx", "ollama"]
    rc, _out, _err = sh(host, f"test -e /usr/local/bastille/jails/{JAIL}/root/usr/local/sbin/pkg")
    assert rc == 1


def test_devfs_rulesets_load_from_the_files_of_devfs_rulesets(host):
    ok(host, "printf '[bastille_vnet=13]\\nadd include $devfsrules_jail_vnet\\nadd path '\"'\"'bpf*'\"'\"' unhide\\n'"
             " > /etc/devfs.rules")
    ok(host, "service devfs restart")
    assert ok(host, "devfs rule showsets").split() == ["1", "2", "3", "4", "5", "13"]
    assert ok(host, "devfs rule -s 13 show") == "100 include 5\n200 path bpf* unhide\n"
    assert ok(host, "devfs rule -s 4 show").splitlines()[:3] == ["100 include 1", "200 include 2", "300 include 3"]
    rc, _out, err = sh(host, "devfs rule -s 20 add include 42")
    assert rc == 1 and "ruleset 42 does not exist" in err
    refused(host, "devfs rule -s 20 add unhide-everything")
    refused(host, "devfs ruleset 13")


def test_nginx_starts_from_its_rc_script_and_serves_at_the_jail_address(host):
    refused(host, f"jexec {JAIL} /usr/local/sbin/nginx -V")
    assert "test is successful" in sh(host, f"jexec {JAIL} /usr/local/sbin/nginx -t")[2]
    ok(host, f"sysrc -j {JAIL} nginx_enable=YES")
    ok(host, f"service -j {JAIL} nginx start")
    assert "is running as pid" in ok(host, f"service -j {JAIL} nginx status")
    rc, out, err = probe(host, 80, "/")
    assert rc == 0 and "Welcome to nginx!" in out, err
    ok(host, f"service -j {JAIL} nginx stop")
    assert sh(host, f"service -j {JAIL} nginx status")[0] == 1
    assert probe(host, 80, "/")[0] != 0


def test_ollama_listens_on_ollama_host_from_rc_conf(host):
    refused(host, f"jexec {JAIL} /usr/local/bin/ollama run llama3")
    assert ok(host, f"jexec {JAIL} /usr/local/bin/ollama --version").strip() == "ollama version is 0.9.6"
    ok(host, f"sysrc -j {JAIL} ollama_enable=YES ollama_env=OLLAMA_HOST={IP}:11434")
    ok(host, f"service -j {JAIL} ollama start")
    assert "is running as pid" in ok(host, f"service -j {JAIL} ollama status")
    rc, out, err = probe_until_served(host, 11434, "/api/version")
    assert rc == 0 and '"version": "0.9.6"' in out, err
    ok(host, f"service -j {JAIL} ollama stop")


def test_llama_server_needs_its_model_file(host):
    ok(host, f"sysrc -j {JAIL} llama_server_enable=YES llama_server_model=/var/db/llama-server/model.gguf"
             f" llama_server_args='--host {IP} --port 8080'")
    rc, out, _err = sh(host, f"service -j {JAIL} llama-server start")
    assert rc == 1 and "llama_server_model isn't a file" in out
    ok(host, f"jexec {JAIL} mkdir -p /var/db/llama-server && jexec {JAIL} touch /var/db/llama-server/model.gguf")
    # as the port's default user nobody, daemon(8) cannot write its pidfile in /var/run (the port's
    # "install -o ${llama_server_user} /dev/null ${llama_server_pidfile}" is commented out)
    rc, _out, err = sh(host, f"service -j {JAIL} llama-server start")
    assert rc == 1 and "Permission denied: '/var/run/llama_server.pid'" in err
    ok(host, f"jexec {JAIL} install -d -o nobody /var/run/llama-server")
    ok(host, f"sysrc -j {JAIL} llama_server_pidfile=/var/run/llama-server/llama_server.pid")
    ok(host, f"service -j {JAIL} llama-server start")
    rc, out, err = probe_until_served(host, 8080, "/health")
    assert rc == 0 and '"status": "ok"' in out, err
    refused(host, f"jexec {JAIL} /usr/local/bin/llama-server --model")


def test_sshd_of_the_jails_base_greets_at_the_jail_address(host):
    refused(host, f"jexec {JAIL} /usr/sbin/sshd -D -e")
    # sshd_enable is NO by default: rc.subr says so and exits 0 without starting it
    rc, out, _err = sh(host, f"service -j {JAIL} sshd start")
    assert rc == 0 and "Cannot 'start' sshd. Set sshd_enable to YES" in out
    assert probe(host, 22, "banner")[0] != 0
    started = ok(host, f"sysrc -j {JAIL} sshd_enable=YES && service -j {JAIL} sshd start")
    rc, out, err = probe(host, 22, "banner")
    assert rc == 0 and out.startswith("SSH-2.0-OpenSSH_"), err
    ok(host, f"service -j {JAIL} sshd stop")
    assert probe(host, 22, "banner")[0] != 0
    # rc.d/sshd's keygen before the first start: the host keys sshd_*_enable asks for (dsa is off by default)
    assert [line for line in started.splitlines() if line.startswith("Generating")] == [
        "Generating RSA host key.", "Generating ECDSA host key.", "Generating ED25519 host key."]
    keys = sorted(ok(host, f"jexec {JAIL} ls /etc/ssh").split())
    assert keys == sorted(f"ssh_host_{alg}_key{ext}" for alg in ("rsa", "ecdsa", "ed25519") for ext in ("", ".pub"))
    assert ok(host, f"jexec {JAIL} stat -f '%Su %Lp' /etc/ssh/ssh_host_ed25519_key").split() == ["root", "600"]
    public = ok(host, f"jexec {JAIL} cat /etc/ssh/ssh_host_ed25519_key.pub")
    assert public.startswith("ssh-ed25519 ")
    # a later start keeps them; keygen alone says so
    again = ok(host, f"service -j {JAIL} sshd start")
    assert "Generating" not in again and ok(host, f"jexec {JAIL} cat /etc/ssh/ssh_host_ed25519_key.pub") == public
    ok(host, f"service -j {JAIL} sshd stop")
    assert "Generating" not in ok(host, f"service -j {JAIL} sshd keygen")

"""Removing an agent (state: absent) with site.yml on a stand-in host of its own: nothing of it is left but its backups.

Runs site.yml (and parts of it) with ansible-playbook against the stand-in (a Linux chroot with doubles of FreeBSD's
commands, not FreeBSD). Three agents converge with the test runtime: atlas stays; hermes (a git jail) is removed in
one run, the normal way; clawdie (git and db jails, a soul) first meets a live process and a damaged backup, which
both keep everything of it, then loses its jails in one run and the rest in a later one, after a file was added to
its workspace. Its home holds links the agent planted to root's files outside; they go, the files stay. Needs root.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

STANDIN = os.path.join(HERE, "standin")
SCENARIO = os.path.join(PROJECT, "molecule", "default")
ANSIBLE_PLAYBOOK = os.path.join(PROJECT, ".venv", "bin", "ansible-playbook")
HOST = "bsd1.example.net"
COMMAND = "/usr/local/bin/agent-runtime"
AGENTS = "/usr/local/warden/agents"
# the removed agents' uids, read while they exist
UIDS = {}
# the database passwords on the controller: the test's own, not the ones other tests of this host name use
CREDENTIALS = f"/tmp/warden-removal-credentials-{uuid.uuid4().hex[:8]}"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")


def inventory(clawdie="present", hermes="present"):
    with open(os.path.join(PROJECT, "inventories", "example", "hosts.yml"), encoding="utf-8") as fh:
        example = yaml.safe_load(fh)["warden_hosts"]["hosts"][HOST]["warden_agents"]
    return {"warden_hosts": {"hosts": {HOST: {
        "ansible_python_interpreter": "/usr/local/bin/python3.11", "warden_ext_if": "vtnet0",
        "warden_credentials_dir": CREDENTIALS,
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "jails": ["git"], "command": COMMAND, "port": 18800},
            # the example's soul, served inside the stand-in by molecule/default/tests/soul_repos.py
            "clawdie": {"subnet": "192.168.72", "jails": ["git", "db"], "command": COMMAND, "port": 18790,
                        "soul": example["clawdie"]["soul"], "state": clawdie},
            "hermes": {"subnet": "10.0.2", "jails": ["git"], "command": COMMAND, "port": 18810, "state": hermes},
        }}}}}


def playbook(*roles):
    return [
        {"name": "Preflight", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet.preflight"}]},
        {"name": "Part of site.yml", "hosts": "warden_hosts", "gather_facts": False,
         "roles": [{"role": "warden.fleet." + role} for role in roles]},
    ]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agent-removal")
    name = "pytest-arm-" + uuid.uuid4().hex[:6]
    (tmp / "remove_only.yml").write_text(yaml.safe_dump(playbook("agent_remove")))
    (tmp / "stop_and_remove.yml").write_text(yaml.safe_dump(playbook("agent_service", "agent_remove")))
    (tmp / "jails.yml").write_text(yaml.safe_dump(playbook("network", "bastille", "agent_service", "jails")))
    (tmp / "backup.yml").write_text(yaml.safe_dump(playbook("backup")))
    standin("down", name, check=False)
    root = H.up(name)["root"]
    try:
        subprocess.run([sys.executable, os.path.join(SCENARIO, "tests", "soul_repos.py"), root], check=True)
        shutil.copyfile(os.path.join(SCENARIO, "files", "agent-runtime"), os.path.join(root, COMMAND.lstrip("/")))
        os.chmod(os.path.join(root, COMMAND.lstrip("/")), 0o755)
        run = play(name, tmp, os.path.join(PROJECT, "site.yml"), inventory())
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-3000:]
        yield name, tmp
    finally:
        standin("down", name)
        shutil.rmtree(CREDENTIALS, ignore_errors=True)


def standin(*args, check=True):
    return subprocess.run([STANDIN, *args], capture_output=True, text=True, check=check)


def sh(name, script, check=True):
    run = standin("exec", name, "--", "/bin/sh", "-c", script, check=False)
    assert run.returncode == 0 or not check, (script, run.stdout, run.stderr)
    return run


def play(name, tmp, book, inv, *extra):
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inv))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    book = book if os.path.isabs(book) else str(tmp / book)
    return subprocess.run([STANDIN, "run", name, "--", ANSIBLE_PLAYBOOK, "-i", str(tmp / "hosts.yml"), book, *extra],
                          capture_output=True, text=True, check=False, env=env, cwd=PROJECT)


def state(name):
    return json.loads(standin("state", name).stdout)


def exists(name, path):
    return sh(name, f"test -e {path} || test -L {path}", check=False).returncode == 0


def left_of(name, agent):
    """Every trace of the agent on the host that removal takes away (its backups are not one)."""
    st = state(name)
    paths = [f"{AGENTS}/{agent}", f"/usr/local/warden/souls/{agent}", f"/usr/local/etc/warden/{agent}.env",
             f"/usr/local/etc/rc.d/{agent}", f"/var/log/{agent}.log", f"/var/run/{agent}.pid"]
    found = [p for p in paths if exists(name, p)]
    found += [f"user {agent}"] if agent in st["users"] else []
    found += [f"group {agent}"] if agent in st["groups"] else []
    found += [f"service {agent}"] if agent in st["services"] else []
    found += [f"jail {j}" for j in st["jails"] if j.startswith(agent)]
    return found


def archives(name, agent):
    out = sh(name, f"ls /var/backups/warden/{agent}", check=False).stdout.split()
    return sorted(n for n in out if re.match(rf"^{agent}_\d{{8}}T\d{{6}}Z\.tar\.(zst|xz|gz)$", n))


def newest_manifest(name, agent):
    newest = archives(name, agent)[-1]
    text = sh(name, f"cat /var/backups/warden/{agent}/{newest}.manifest.json").stdout
    return newest, json.loads(text)


def task_results(stdout, task):
    """The result lines (ok, changed, skipping, failed) the task printed."""
    section = stdout.split(task, 1)[1].split("\nTASK [", 1)[0]
    return re.findall(r"^(ok|changed|skipping|failed|fatal):", section, re.M)


def running(name, agent):
    return bool(state(name)["services"].get(agent, {}).get("running"))


def recap_changed(stdout):
    found = re.search(rf"{re.escape(HOST)}\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", stdout)
    assert found, stdout[-3000:]
    return int(found.group(1)), int(found.group(2))


def test_everything_of_the_three_agents_is_there_first(host):
    name, _tmp = host
    for agent in ("atlas", "clawdie", "hermes"):
        assert running(name, agent)
    assert "clawdiedb" in state(name)["jails"]
    assert exists(name, "/usr/local/warden/souls/clawdie/.git")
    assert os.path.isfile(f"{CREDENTIALS}/{HOST}/clawdie.db")
    for agent in ("clawdie", "hermes"):
        UIDS[agent] = state(name)["users"][agent]["uid"]
        assert exists(name, f"/tmp/tmux-{UIDS[agent]}"), agent
    # the agent plants links to root's files outside its home: removal must not follow them
    sh(name, f"su -m clawdie -c 'ln -s /etc/master.passwd {AGENTS}/clawdie/workspace/passwd && "
             f"ln -s /etc {AGENTS}/clawdie/state/etc && echo clawdie remembers > {AGENTS}/clawdie/workspace/notes.md'")
    sh(name, f"su -m hermes -c 'ln -s /etc/group {AGENTS}/hermes/workspace/group'")


def test_a_removed_agent_whose_process_still_runs_keeps_everything(host):
    name, tmp = host
    before = left_of(name, "clawdie")
    # agent_remove alone: nothing stopped clawdie's service
    run = play(name, tmp, "remove_only.yml", inventory(clawdie="absent"))
    assert run.returncode != 0
    assert re.search(r"clawdie: not removed, processes of clawdie still run: \d+", run.stdout), run.stdout[-4000:]
    assert task_results(run.stdout, "Remove the removed agents' env files") == ["ok"]
    assert left_of(name, "clawdie") == before
    assert running(name, "clawdie")
    assert os.path.isfile(f"{CREDENTIALS}/{HOST}/clawdie.db")


def test_a_damaged_backup_keeps_everything_of_the_agent(host):
    name, tmp = host
    run = play(name, tmp, "backup.yml", inventory())
    assert run.returncode == 0, run.stdout[-4000:]
    [archive] = archives(name, "clawdie")
    path = f"/var/backups/warden/clawdie/{archive}"
    # the archive rots after it was made; the service is stopped below, the workspace stays as the archive has it
    sh(name, "/usr/local/bin/python3.11 -c \"import sys; p = sys.argv[1]; d = bytearray(open(p, 'rb').read()); "
             f"d[len(d) // 2] ^= 1; open(p, 'wb').write(bytes(d))\" {path}")
    run = play(name, tmp, "stop_and_remove.yml", inventory(clawdie="absent"))
    assert run.returncode != 0
    assert "clawdie: not removing them, their backups need a look first" in run.stdout, run.stdout[-4000:]
    assert "Remove the removed agents' env files" not in run.stdout
    assert not running(name, "clawdie")
    left = left_of(name, "clawdie")
    for trace in (f"{AGENTS}/clawdie", "/usr/local/warden/souls/clawdie", "/usr/local/etc/warden/clawdie.env",
                  "user clawdie", "group clawdie", "jail clawdiedb"):
        assert trace in left
    assert exists(name, f"{AGENTS}/clawdie/workspace/notes.md")
    assert os.path.isfile(f"{CREDENTIALS}/{HOST}/clawdie.db")
    # kept aside for a look, never deleted
    assert exists(name, f"/var/backups/warden/clawdie/damaged/{archive}")


def test_check_mode_shows_what_would_go_and_removes_nothing(host):
    name, tmp = host
    before = left_of(name, "clawdie"), left_of(name, "hermes")
    run = play(name, tmp, os.path.join(PROJECT, "site.yml"), inventory(clawdie="absent", hermes="absent"),
               "--check", "--diff")
    assert run.returncode == 0, run.stdout[-6000:]
    assert "--- before: agent hermes" in run.stdout, run.stdout[-6000:]
    for path in (f"-{AGENTS}/hermes", "-/usr/local/etc/warden/hermes.env", f"-{AGENTS}/clawdie",
                 "-/usr/local/warden/souls/clawdie"):
        assert path + "\n" in run.stdout, path
    assert (left_of(name, "clawdie"), left_of(name, "hermes")) == before
    assert running(name, "hermes")


def test_an_agent_whose_jails_went_in_an_earlier_run_is_backed_up_again_before_its_files_go(host):
    name, tmp = host
    # a run that ends after the jails: clawdie's jails go after a verified backup, its files stay
    run = play(name, tmp, "jails.yml", inventory(clawdie="absent"))
    assert run.returncode == 0, run.stdout[-6000:]
    assert not [j for j in state(name)["jails"] if j.startswith("clawdie")]
    with_dbs = archives(name, "clawdie")
    assert newest_manifest(name, "clawdie")[1]["databases"]
    # the workspace changes after that backup
    sh(name, f"echo written after the last backup > {AGENTS}/clawdie/workspace/late.md")
    run = play(name, tmp, os.path.join(PROJECT, "site.yml"), inventory(clawdie="absent", hermes="absent"))
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert left_of(name, "clawdie") == []
    newest, manifest = newest_manifest(name, "clawdie")
    # a new archive holds the workspace as it was removed, links as links; the earlier ones, with the dumps, stay
    assert newest not in with_dbs and set(with_dbs) <= set(archives(name, "clawdie"))
    files = {f["path"]: f for f in manifest["files"]}
    assert files["workspace/late.md"]["type"] == "f"
    assert files["workspace/notes.md"]["type"] == "f"
    assert files["workspace/passwd"] == dict(files["workspace/passwd"], type="l", target="/etc/master.passwd")
    assert files["state/etc"]["target"] == "/etc"
    # its database password left the controller with it; atlas has no database, hermes neither
    assert not os.path.exists(f"{CREDENTIALS}/{HOST}/clawdie.db")
    verify = sh(name, "warden verify clawdie", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_removing_an_agent_leaves_only_its_backups_and_the_others_untouched(host):
    name, _tmp = host
    assert left_of(name, "hermes") == []
    assert left_of(name, "clawdie") == []
    st = state(name)
    assert running(name, "atlas") and "atlasgit" in st["jails"] and "atlas" in st["users"]
    # hermes went in one run: stopped before the jails role's backup, which holds its workspace as removed
    [archive] = archives(name, "hermes")
    files = {f["path"]: f for f in newest_manifest(name, "hermes")[1]["files"]}
    assert files["workspace/group"]["target"] == "/etc/group"
    assert sh(name, "warden verify hermes", check=False).returncode == 0
    # the links the agents planted went, the files they pointed at did not
    for path in ("/etc/master.passwd", "/etc/group", "/etc/rc.conf"):
        assert exists(name, path)
    assert "root:" in sh(name, "head -c 4096 /etc/master.passwd").stdout
    # their tmux socket directories went with them
    for agent, uid in UIDS.items():
        assert not exists(name, f"/tmp/tmux-{uid}"), agent
    assert [p for p in st["processes"] if p["uid"] in UIDS.values() and not p["jail"]] == []


def test_a_second_run_changes_nothing(host):
    name, tmp = host
    kept = archives(name, "clawdie"), archives(name, "hermes")
    run = play(name, tmp, os.path.join(PROJECT, "site.yml"), inventory(clawdie="absent", hermes="absent"))
    assert run.returncode == 0, run.stdout[-6000:]
    assert recap_changed(run.stdout) == (0, 0), run.stdout[-6000:]
    # one look for the host, no task per removed agent
    assert task_results(run.stdout, "Find what is left of the removed agents") == ["ok"]
    for task in ("Back up the removed agents whose files", "Remove the removed agents' env files",
                 "Remove the removed agents' users", "Remove the removed agents' groups",
                 "Remove the removed agents' database passwords"):
        assert task_results(run.stdout, task) == ["skipping"], task
    assert (archives(name, "clawdie"), archives(name, "hermes")) == kept

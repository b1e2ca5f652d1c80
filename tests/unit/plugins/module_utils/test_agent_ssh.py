"""The agent's SSH key pair: real ssh-keygen under real timeout, real files, a throwaway uid, a hostile agent."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import agent_runtime, agent_ssh
from ansible_collections.warden.fleet.plugins.module_utils.agent_runtime import ensure_workspace, workspace_layout
from ansible_collections.warden.fleet.plugins.module_utils.fleet_model import plan_or_raise

UID = GID = 64000


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_runtime, "owner_ids", lambda user, group: (UID, GID))
    hostvars = {
        "warden_ext_if": "vtnet0",
        "warden_root": str(tmp_path / "warden"),
        "warden_etc_dir": str(tmp_path / "etc"),
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "command": "/bin/a"},
            "bob": {"subnet": "10.0.2", "command": "/bin/b", "jails": ["git"]},
        },
    }
    return plan_or_raise("bsd1.example.net", hostvars)


class Recorder:
    """Runs commands for real and remembers them."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def __call__(self, argv):
        self.calls.append(argv)
        if self.fail is not None:
            return self.fail
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


def _home(plan, name="atlas"):
    agent = plan["agents"][name]
    ensure_workspace(agent, workspace_layout(agent, plan, [], [], []), False)
    return agent


def _owner_mode(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def _derived(private):
    return subprocess.run(["ssh-keygen", "-y", "-f", private], capture_output=True, text=True, check=True).stdout


def test_the_first_run_makes_the_pair_once_and_a_rerun_keeps_it(plan):
    agent = _home(plan)
    key = agent["ssh_key"]
    run = Recorder()
    report = agent_ssh.ensure_key(agent, run, check=False)
    assert report == {"created": [key["dir"], key["private"], key["public"]], "fixed": [], "left_alone": [],
                      "changed": True}
    # root's directory the agent can read but not change; the pair is the agent's, as ssh(1) wants it
    assert _owner_mode(key["dir"]) == (0, GID, 0o750)
    assert _owner_mode(key["private"]) == (UID, GID, 0o600)
    assert _owner_mode(key["public"]) == (UID, GID, 0o644)
    assert sorted(os.listdir(key["dir"])) == ["id_ed25519", "id_ed25519.pub"]  # the private directory is gone
    assert os.stat(key["private"]).st_nlink == 1
    public = _read(key["public"]).decode()
    assert public.startswith("ssh-ed25519 ") and public.rstrip().endswith(" atlas@bsd1.example.net")
    assert _derived(key["private"]).split()[:2] == public.split()[:2]
    assert agent_ssh.public_key(agent) == public.strip()
    # FreeBSD base's ssh-keygen, bounded by timeout(1), no passphrase, the plan's comment
    assert run.calls == [["/usr/bin/timeout", "-k", "5", "60", "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                          "-C", "atlas@bsd1.example.net", "-f", run.calls[0][-1]]]
    assert os.path.dirname(os.path.dirname(run.calls[0][-1])) == key["dir"]
    # a re-run reads only: same key, no command
    private = _read(key["private"])
    again = Recorder()
    nothing = {"created": [], "fixed": [], "left_alone": [], "changed": False}
    assert agent_ssh.ensure_key(agent, again, check=False) == nothing
    assert again.calls == [] and _read(key["private"]) == private


def test_check_mode_reports_the_key_it_would_make_and_makes_nothing(plan):
    agent = plan["agents"]["atlas"]
    key = agent["ssh_key"]
    # a new host: not even the home yet
    report = agent_ssh.ensure_key(agent, Recorder(), check=True)
    assert report["changed"] and report["created"] == [key["dir"], key["private"], key["public"]]
    assert not os.path.exists(agent["paths"]["home"])
    _home(plan)
    run = Recorder()
    assert agent_ssh.ensure_key(agent, run, check=True)["created"] == [key["dir"], key["private"], key["public"]]
    assert run.calls == [] and not os.path.exists(key["dir"])
    assert agent_ssh.public_key(agent) is None


def test_an_existing_key_is_never_replaced_only_its_owner_and_mode_set(plan, tmp_path):
    agent = _home(plan)
    key = agent["ssh_key"]
    # the former manual handoff: an operator made the agent's key as root in an agent-owned .ssh
    os.mkdir(key["dir"], 0o700)
    os.chown(key["dir"], UID, GID)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "by hand", "-f", key["private"]], check=True)
    os.chmod(key["public"], 0o600)
    before = (_read(key["private"]), _read(key["public"]))
    run = Recorder()
    report = agent_ssh.ensure_key(agent, run, check=True)
    assert report["fixed"] == [key["dir"], key["private"], key["public"]] and not report["created"]
    assert _owner_mode(key["private"])[0] == 0  # check mode changed nothing
    report = agent_ssh.ensure_key(agent, run, check=False)
    assert report == {"created": [], "fixed": [key["dir"], key["private"], key["public"]], "left_alone": [],
                      "changed": True}
    assert run.calls == []
    assert (_read(key["private"]), _read(key["public"])) == before
    assert _owner_mode(key["dir"]) == (0, GID, 0o750)
    assert _owner_mode(key["private"]) == (UID, GID, 0o600)
    assert _owner_mode(key["public"]) == (UID, GID, 0o644)


def test_a_private_key_without_its_public_half_gets_it_back(plan):
    agent = _home(plan)
    key = agent["ssh_key"]
    agent_ssh.ensure_key(agent, Recorder(), check=False)
    public = _read(key["public"])
    private = _read(key["private"])
    os.unlink(key["public"])  # a run stopped between the two links
    run = Recorder()
    report = agent_ssh.ensure_key(agent, run, check=False)
    assert report["created"] == [key["public"]] and report["changed"]
    assert [argv[4:7] for argv in run.calls] == [["/usr/bin/ssh-keygen", "-y", "-f"]]
    assert _read(key["public"]).split()[:2] == public.split()[:2]
    assert _read(key["private"]) == private
    assert _owner_mode(key["public"]) == (UID, GID, 0o644)


def test_a_hard_link_or_symlink_the_agent_planted_earlier_is_left_alone(plan, tmp_path):
    agent = _home(plan)
    key = agent["ssh_key"]
    secret = tmp_path / "master.passwd"
    secret.write_text("root:$6$secret\n")
    os.chmod(secret, 0o600)
    # while .ssh was the agent's: a hard link to a root file as the key, a symlink as its public half
    os.mkdir(key["dir"], 0o700)
    os.chown(key["dir"], UID, GID)
    os.link(secret, key["private"])
    os.symlink(str(secret), key["public"])
    run = Recorder()
    report = agent_ssh.ensure_key(agent, run, check=False)
    assert report["left_alone"] == sorted([key["private"], key["public"]]) and report["fixed"] == [key["dir"]]
    assert run.calls == [] and not report["created"]
    assert _owner_mode(str(secret)) == (0, 0, 0o600)  # never handed to the agent
    assert agent_ssh.public_key(agent) is None


def test_a_symlink_where_ssh_belongs_fails_and_is_not_followed(plan, tmp_path):
    agent = _home(plan)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(str(elsewhere), agent["ssh_key"]["dir"])
    with pytest.raises(agent_runtime.UnsafePath):
        agent_ssh.ensure_key(agent, Recorder(), check=False)
    assert os.listdir(elsewhere) == [] and _owner_mode(str(elsewhere))[0] == 0


def test_a_failed_or_timed_out_keygen_fails_and_leaves_no_key(plan):
    agent = _home(plan)
    key = agent["ssh_key"]
    with pytest.raises(agent_ssh.KeygenError, match="rc=124, timed out"):
        agent_ssh.ensure_key(agent, Recorder(fail=(124, "", "")), check=False)
    assert os.listdir(key["dir"]) == []
    # the next run makes it
    assert agent_ssh.ensure_key(agent, Recorder(), check=False)["created"][-2:] == [key["private"], key["public"]]


def test_the_user_must_exist_outside_check_mode(plan, monkeypatch):
    agent = _home(plan)
    monkeypatch.setattr(agent_runtime, "owner_ids", lambda user, group: None)
    with pytest.raises(ValueError, match="does not exist"):
        agent_ssh.ensure_key(agent, Recorder(), check=False)
    assert agent_ssh.ensure_key(agent, Recorder(), check=True)["changed"]


# --- known_hosts and ssh config -----------------------------------------------------------------------------------

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7n7r8+JtupnxeAlL+fhHCFwqorvmlCg3enfpU/F/4m"


def test_the_host_key_is_read_through_jexec_under_timeout_and_its_comment_dropped(plan):
    [host] = plan["agents"]["atlas"]["ssh_key"]["hosts"]
    run = Recorder(fail=(0, f"{HOST_KEY} root@atlasgit\n", ""))
    assert agent_ssh.read_host_key(run, host) == (HOST_KEY, None)
    assert run.calls == [["/usr/bin/timeout", "-k", "5", "60", "/usr/sbin/jexec", "-U", "root", "atlasgit",
                          "/bin/cat", "/etc/ssh/ssh_host_ed25519_key.pub"]]
    key, why = agent_ssh.read_host_key(Recorder(fail=(1, "", "cat: No such file or directory")), host)
    assert key is None and "atlasgit: no /etc/ssh/ssh_host_ed25519_key.pub (cat: No such file" in why
    for out in ("not a key\n", f"{HOST_KEY}\n{HOST_KEY}\n", "ssh-dss AAAAB3 x\n"):
        assert agent_ssh.read_host_key(Recorder(fail=(0, out, "")), host)[0] is None, out


def test_known_hosts_and_config_are_root_s_the_agent_reads_them_ssh_accepts_them(plan):
    agent = _home(plan)
    agent_ssh.ensure_key(agent, Recorder(), check=False)
    key = agent["ssh_key"]
    texts = agent_ssh.ssh_texts(agent, {"atlasgit": HOST_KEY})
    assert texts[key["known_hosts"]].splitlines()[1:] == [f"10.0.1.2 {HOST_KEY}"]
    check = agent_ssh.ensure_ssh_files(agent, texts, check=True)
    assert check["written"] == [key["known_hosts"], key["config"]] and not os.path.exists(key["config"])
    assert check["diff"][0]["after"] == texts[key["known_hosts"]] and check["diff"][0]["before"] == ""
    report = agent_ssh.ensure_ssh_files(agent, texts, check=False)
    assert report["changed"] and report["written"] == [key["known_hosts"], key["config"]]
    for path in (key["known_hosts"], key["config"]):
        assert _owner_mode(path) == (0, GID, 0o640)
        assert _read(path).decode() == texts[path]
    assert sorted(os.listdir(key["dir"])) == ["config", "id_ed25519", "id_ed25519.pub", "known_hosts"]
    # ssh(1) itself reads the config and resolves the git host from it
    resolved = subprocess.run(["ssh", "-G", "-F", key["config"], "git"], capture_output=True, text=True, check=True)
    options = dict(line.split(" ", 1) for line in resolved.stdout.splitlines())
    assert (options["hostname"], options["user"], options["stricthostkeychecking"]) == ("10.0.1.2", "git", "true")
    assert options["identityfile"] == key["private"] and options["userknownhostsfile"] == key["known_hosts"]
    found = subprocess.run(["ssh-keygen", "-F", "10.0.1.2", "-f", key["known_hosts"]], capture_output=True,
                           text=True, check=True)
    assert HOST_KEY in found.stdout
    # nothing to do the second time; a changed host key (the jail was made again) is written
    assert agent_ssh.ensure_ssh_files(agent, texts, check=False) == {"changed": False, "written": [], "diff": []}
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPqyvf/aWJIajJe3uzmCyUQYot7sMQ6XPJNDWlWgrImA"
    again = agent_ssh.ensure_ssh_files(agent, agent_ssh.ssh_texts(agent, {"atlasgit": other}), check=False)
    assert again["written"] == [key["known_hosts"]] and HOST_KEY in again["diff"][0]["before"]
    assert other in _read(key["known_hosts"]).decode()


def test_ssh_files_are_never_written_into_an_ssh_dir_the_agent_owns(plan):
    agent = _home(plan)
    key = agent["ssh_key"]
    os.mkdir(key["dir"], 0o700)
    os.chown(key["dir"], UID, GID)
    with pytest.raises(agent_runtime.UnsafePath):
        agent_ssh.ensure_ssh_files(agent, agent_ssh.ssh_texts(agent, {"atlasgit": HOST_KEY}), check=False)
    assert os.listdir(key["dir"]) == []
    os.rmdir(key["dir"])
    with pytest.raises(ValueError, match="does not exist"):
        agent_ssh.ensure_ssh_files(agent, agent_ssh.ssh_texts(agent, {"atlasgit": HOST_KEY}), check=False)

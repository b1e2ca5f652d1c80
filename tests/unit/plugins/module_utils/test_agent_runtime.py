"""Agent homes, workspaces and env files: real files, a throwaway uid, an agent that plants symlinks."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import agent_runtime
from ansible_collections.warden.fleet.plugins.module_utils.agent_runtime import (
    UnsafePath,
    ensure_env_file,
    ensure_workspace,
    env_values,
    parse_env,
    workspace_layout,
)
from ansible_collections.warden.fleet.plugins.module_utils.fleet_model import plan_or_raise

UID = GID = 64000
DIRS = ["memory", "skills"]
FILES = ["SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md", "TOOLS.md", "MEMORY.md"]
SOUL_FILES = ["SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md"]


@pytest.fixture
def plan(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_runtime, "owner_ids", lambda user, group: (UID, GID))
    hostvars = {
        "warden_ext_if": "vtnet0",
        "warden_root": str(tmp_path / "warden"),
        "warden_etc_dir": str(tmp_path / "etc"),
        "warden_shared_files": {"src": "/srv/shared"},
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "command": "/bin/a", "soul": {"repo": "/srv/atlas.git", "version": "v1"}},
            "bob": {"subnet": "10.0.2", "command": "/bin/b", "jails": ["git"]},
        },
    }
    return plan_or_raise("h", hostvars)


def _mode(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def _converge(plan, name, check=False):
    agent = plan["agents"][name]
    return ensure_workspace(agent, workspace_layout(agent, plan, DIRS, FILES, SOUL_FILES), check)


def test_workspace_layout_owners_and_modes_then_nothing_to_do(plan):
    report = _converge(plan, "atlas")
    paths = plan["agents"]["atlas"]["paths"]
    assert report["changed"] and not report["fixed"] and not report["left_alone"]
    assert _mode(paths["home"]) == (0, GID, 0o750)
    for key in ("workspace", "state", "logs"):
        assert _mode(paths[key]) == (UID, GID, 0o700)
    ws = paths["workspace"]
    assert _mode(f"{ws}/memory") == _mode(f"{ws}/skills") == (UID, GID, 0o700)
    # atlas has a soul: SOUL.md and friends come from it, not from here
    assert sorted(os.listdir(ws)) == ["MEMORY.md", "TOOLS.md", "memory", "shared", "skills"]
    assert _mode(f"{ws}/MEMORY.md") == (UID, GID, 0o600)
    assert os.readlink(f"{ws}/shared") == plan["shared_files"]["dir"]
    assert _converge(plan, "atlas") == {"created": [], "fixed": [], "left_alone": [], "changed": False}
    # bob has no soul: every file of the layout is there
    _converge(plan, "bob")
    assert set(FILES) <= set(os.listdir(plan["agents"]["bob"]["paths"]["workspace"]))


def test_check_mode_reports_and_writes_nothing(plan):
    report = _converge(plan, "atlas", check=True)
    assert report["changed"] and plan["agents"]["atlas"]["paths"]["workspace"] in report["created"]
    assert not os.path.exists(plan["agents"]["atlas"]["paths"]["home"])


def test_agent_content_and_planted_symlinks_are_left_alone(plan, tmp_path):
    _converge(plan, "atlas")
    ws = plan["agents"]["atlas"]["paths"]["workspace"]
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    os.chmod(victim, 0o644)
    with open(f"{ws}/MEMORY.md", "w", encoding="utf-8") as handle:
        handle.write("remember this\n")
    os.chmod(f"{ws}/memory", 0o755)
    os.rmdir(f"{ws}/skills")
    os.symlink(str(tmp_path), f"{ws}/skills")
    os.unlink(f"{ws}/TOOLS.md")
    os.symlink(str(victim), f"{ws}/TOOLS.md")
    os.unlink(f"{ws}/shared")
    os.mkdir(f"{ws}/shared")

    report = _converge(plan, "atlas")
    assert not report["changed"]
    assert sorted(report["left_alone"]) == sorted([f"{ws}/skills", f"{ws}/TOOLS.md", f"{ws}/shared"])
    assert pathlib.Path(f"{ws}/MEMORY.md").read_text() == "remember this\n"
    assert stat.S_IMODE(os.stat(f"{ws}/memory").st_mode) == 0o755, "the agent's own directory keeps its mode"
    assert _mode(victim) == (0, 0, 0o644) and victim.read_text() == "root's file\n"
    assert _mode(tmp_path) == (0, 0, stat.S_IMODE(os.stat(tmp_path).st_mode))


def test_a_symlink_where_the_workspace_belongs_fails_and_is_not_followed(plan, tmp_path):
    _converge(plan, "atlas")
    paths = plan["agents"]["atlas"]["paths"]
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    os.rename(paths["state"], str(tmp_path / "old-state"))
    os.symlink(str(target), paths["state"])
    with pytest.raises(UnsafePath, match="expected a directory, found a symlink"):
        _converge(plan, "atlas")
    assert _mode(target)[:2] == (0, 0)


def test_owner_and_mode_of_the_home_and_private_dirs_are_set_again(plan):
    _converge(plan, "atlas")
    paths = plan["agents"]["atlas"]["paths"]
    os.chmod(paths["home"], 0o777)
    os.chown(paths["logs"], 0, 0)
    report = _converge(plan, "atlas")
    assert sorted(report["fixed"]) == sorted([paths["home"], paths["logs"]])
    assert _mode(paths["home"]) == (0, GID, 0o750) and _mode(paths["logs"]) == (UID, GID, 0o700)


def _sh_value(path, name):
    script = f'set -a; . "{path}"; printf %s "${name}"'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


def test_env_file_content_owner_mode_and_redacted_diff(plan):
    agent = plan["agents"]["atlas"]
    secrets = {"GATEWAY_TOKEN": "tok'en $HOME `x`", "API_KEY": "k-1"}
    values, secret_names = env_values(agent, "pw-atlas", secrets)
    assert secret_names == ["WARDEN_DB_PASSWORD", "API_KEY", "GATEWAY_TOKEN"]
    first = ensure_env_file(agent, values, check=False)
    path = agent["paths"]["env_file"]
    assert first["changed"] and _mode(path) == (UID, GID, 0o600)
    assert _sh_value(path, "GATEWAY_TOKEN") == "tok'en $HOME `x`"
    assert _sh_value(path, "WARDEN_DB_PASSWORD") == "pw-atlas"
    assert _sh_value(path, "WARDEN_DB_USER") == "atlas"
    assert parse_env(pathlib.Path(path).read_text()) == values
    for text in (first["diff"]["before"], first["diff"]["after"]):
        assert "pw-atlas" not in text and "tok'en" not in text and "k-1" not in text
    assert "WARDEN_DB_PASSWORD=<redacted, changed>" in first["diff"]["after"]
    assert "AGENT_NAME='atlas'" in first["diff"]["after"]
    assert ensure_env_file(agent, values, check=False) == {"changed": False, "diff": None}

    values, _names = env_values(agent, "pw-atlas", dict(secrets, API_KEY="k-2"))
    check = ensure_env_file(agent, values, check=True)
    assert check["changed"] and _sh_value(path, "API_KEY") == "k-1", "check mode writes nothing"
    assert "API_KEY=<redacted, changed>" in check["diff"]["after"]
    assert "GATEWAY_TOKEN=<redacted>" in check["diff"]["after"]
    assert "k-1" not in repr(check) and "k-2" not in repr(check)
    assert ensure_env_file(agent, values, check=False)["changed"] and _sh_value(path, "API_KEY") == "k-2"
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]
    assert leftovers == []


def test_env_file_owner_and_mode_are_set_again(plan):
    agent = plan["agents"]["atlas"]
    values, _names = env_values(agent, "pw", {})
    ensure_env_file(agent, values, check=False)
    os.chmod(agent["paths"]["env_file"], 0o644)
    assert ensure_env_file(agent, values, check=False)["changed"]
    assert _mode(agent["paths"]["env_file"]) == (UID, GID, 0o600)


@pytest.mark.parametrize(
    ("password", "secrets", "message"),
    [
        (None, {}, "no database password"),
        ("pw", {"AGENT_NAME": "x"}, "would replace a value the plan sets"),
        ("pw", {"TOKEN": "a\nb"}, "not a single line"),
        ("pw", {"1X": "a"}, "not an environment variable name"),
    ],
)
def test_env_values_refuse(plan, password, secrets, message):
    with pytest.raises(ValueError, match=message):
        env_values(plan["agents"]["atlas"], password, secrets)


def test_agent_without_db_needs_no_password(plan):
    values, names = env_values(plan["agents"]["bob"], None, {})
    assert "WARDEN_DB_PASSWORD" not in values and names == []

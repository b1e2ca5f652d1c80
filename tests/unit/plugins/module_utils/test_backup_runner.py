"""The backup package's command runner, from the table in test_backup_runner.yml.

Each case names a command of commands.py, the arguments in order and their
values, the argv expected and, when the case runs the command, the result
the command is recorded to give (rc/out/err, or a timeout) and what the
caller gets back (returns) or the error it raises.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest
import yaml

from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError, commands, runner

CASES = yaml.safe_load((pathlib.Path(__file__).parent / "test_backup_runner.yml").read_text())


class Recorded:
    """subprocess.run stand-in: checks the argv and gives the recorded result."""

    def __init__(self, case):
        self.case = case
        self.calls = []

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        assert argv == self.case["argv"]
        result = self.case["result"]
        if result.get("timeout"):
            raise subprocess.TimeoutExpired(argv, kwargs["timeout"])
        return subprocess.CompletedProcess(
            argv, result["rc"], result.get("out", "").encode("utf-8"), result.get("err", "").encode("utf-8")
        )


@pytest.fixture(autouse=True)
def usr_bin(monkeypatch):
    monkeypatch.setattr(runner, "find_command", lambda name: "/usr/bin/" + name)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_command(case, monkeypatch):
    cmd = getattr(commands, case["command"])
    values = case.get("values") or {}
    if "result" not in case:
        if "error" in case:
            with pytest.raises(ValueError, match=case["error"]):
                cmd.argv(case["args"], **values)
        else:
            assert cmd.argv(case["args"], **values) == case["argv"]
        return
    recorded = Recorded(case)
    monkeypatch.setattr(runner.subprocess, "run", recorded)
    if "error" in case:
        with pytest.raises(BackupError, match=case["error"]):
            cmd.run(case["args"], check=case.get("check", True), **values)
    else:
        assert list(cmd.run(case["args"], check=case.get("check", True), **values)) == case["returns"]
    assert len(recorded.calls) == 1


def test_every_command_has_a_case():
    runners = {name for name, value in vars(commands).items() if isinstance(value, runner.CommandRunner)}
    assert runners == {c["command"] for c in CASES}


def test_a_missing_command_is_named(monkeypatch):
    monkeypatch.setattr(runner, "find_command", lambda name: None)
    assert commands.ZFS.available() is None
    with pytest.raises(BackupError, match="required command 'zfs' not found"):
        commands.ZFS.argv("list_filesystems")

"""warden.fleet.bastille_jail replayed from the table in test_bastille_jail.yml.

In the style of community.general's UTHelper: each test case gives the module's input, the
flags (check, diff), the files Bastille had written under the prefix before the run, every
command the module runs with the output recorded for it (and what the command did to those
files), and the output expected. A command the case does not list, or one listed but not run,
fails the test. ``list_formats`` holds ``bastille list`` outputs of 1.4.4 and master with the
jails they describe. ``@PREFIX@`` stands for the test's Bastille prefix.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.warden.fleet.plugins.module_utils import bastille
from ansible_collections.warden.fleet.plugins.module_utils.backup import runner
from ansible_collections.warden.fleet.plugins.modules import bastille_jail

SPEC = yaml.safe_load((pathlib.Path(__file__).parent / "test_bastille_jail.yml").read_text())
CASES = SPEC["test_cases"]
# where FreeBSD keeps these commands (bastille from pkg)
FREEBSD_PATHS = {"bastille": "/usr/local/bin/bastille", "jls": "/usr/sbin/jls", "timeout": "/usr/bin/timeout"}


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def substitute(value, prefix):
    if isinstance(value, str):
        return value.replace("@PREFIX@", prefix)
    if isinstance(value, list):
        return [substitute(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, prefix) for k, v in value.items()}
    return value


def write_files(prefix, files):
    for rel, text in (files or {}).items():
        path = os.path.join(prefix, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(substitute(text, prefix))


def snapshot(prefix):
    found = {}
    for dirpath, _dirs, files in os.walk(prefix):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            with open(path, encoding="utf-8") as handle:
                found[os.path.relpath(path, prefix)] = handle.read()
    return found


class RecordedCommands:
    """AnsibleModule.run_command replaying the case's calls in order."""

    def __init__(self, case, prefix):
        self.calls = list(substitute(case.get("mocks", {}).get("run_command", []), prefix))
        self.prefix = prefix
        self.ran = []

    def __call__(self, module, argv, environ_update=None, **_kwargs):
        self.ran.append(argv)
        assert self.calls, f"unexpected command (the case lists no more): {argv}"
        call = self.calls.pop(0)
        assert argv == call["command"], f"command {len(self.ran)}: ran {argv}, recorded {call['command']}"
        assert environ_update == call.get("environ", SPEC["anchors"]["environ"])
        # what the recorded command did to Bastille's files
        for rel in call.get("removes") or []:
            shutil.rmtree(os.path.join(self.prefix, rel))
        write_files(self.prefix, call.get("writes"))
        for rel, text in (call.get("appends") or {}).items():
            with open(os.path.join(self.prefix, rel), "a", encoding="utf-8") as handle:
                handle.write(text)
        return call["rc"], call.get("out", ""), call.get("err", "")


@pytest.fixture
def prefix(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "find_command", FREEBSD_PATHS.get)
    monkeypatch.setattr(bastille, "BASTILLE_CONF", str(tmp_path / "bastille.conf"))
    return str(tmp_path / "bastille")


def run_module(case, prefix, monkeypatch):
    missing = case.get("missing_commands") or []
    monkeypatch.setattr(runner, "find_command", lambda name: None if name in missing else FREEBSD_PATHS.get(name))
    args = substitute(dict(case["input"]), prefix)
    args.setdefault("prefix", prefix)
    flags = case.get("flags") or {}
    args["_ansible_check_mode"] = bool(flags.get("check"))
    args["_ansible_diff"] = bool(flags.get("diff"))
    recorded = RecordedCommands(case, prefix)

    def run_command(module, argv, **kwargs):
        # a plain function, so that AnsibleModule binds it as a method
        return recorded(module, argv, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)

    def leave(_module, **result):
        raise ModuleExit(result)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", leave)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", lambda m, **r: leave(m, failed=True, **r))
    with patch_module_args(args), pytest.raises(ModuleExit) as done:
        bastille_jail.main()
    assert not recorded.calls, f"recorded commands that were not run: {[c['command'] for c in recorded.calls]}"
    return done.value.result


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_module(case, prefix, monkeypatch):
    os.makedirs(os.path.join(prefix, "jails"), exist_ok=True)
    if "bastille_conf" in case:
        pathlib.Path(bastille.BASTILLE_CONF).write_text(substitute(case["bastille_conf"], prefix))
    write_files(prefix, case.get("files"))
    for rel, target in (case.get("symlinks") or {}).items():
        os.makedirs(os.path.dirname(os.path.join(prefix, rel)), exist_ok=True)
        os.symlink(target, os.path.join(prefix, rel))
    before = snapshot(prefix)
    result = run_module(case, prefix, monkeypatch)
    expected = substitute(case["output"], prefix)
    for key, value in expected.items():
        if key == "msg_contains":
            for part in value if isinstance(value, list) else [value]:
                assert part in result["msg"], result["msg"]
        elif key == "drift_contains":
            assert any(value in d for d in result["drift"]), result["drift"]
        else:
            assert result.get(key, False if key == "failed" else None) == value, (key, json.dumps(result, indent=1))
    if (case.get("flags") or {}).get("check"):
        # check mode touches nothing
        assert snapshot(prefix) == before
    for rel in case.get("files_after_exist") or []:
        assert os.path.isfile(os.path.join(prefix, rel)), rel
    for rel in case.get("files_after_gone") or []:
        assert not os.path.exists(os.path.join(prefix, rel)), rel


LISTS = SPEC["list_formats"]


@pytest.mark.parametrize("case", LISTS, ids=[c["id"] for c in LISTS])
def test_list_formats(case):
    parsed = bastille.parse_list(case["out"])
    assert {
        name: {"ips": row["ips"], "state": row["state"], "type": row["type"]} for name, row in parsed.items()
    } == case["jails"]


def test_every_case_has_a_unique_id():
    ids = [c["id"] for c in CASES + LISTS]
    assert len(ids) == len(set(ids))


def test_every_bastille_format_is_used_by_a_case():
    """Each argument format of the runner appears in some recorded command."""
    ran = [word for case in CASES for call in case.get("mocks", {}).get("run_command", []) for word in call["command"]]
    for word in ("create", "-B", "-g", "-T", "-p", "--no-boot", "config", "set", "restart", "start", "stop", "mount"):
        assert word in ran, word
    for word in ("destroy", "-a", "-f", "-y", "list", "-j", "nullfs"):
        assert word in ran, word

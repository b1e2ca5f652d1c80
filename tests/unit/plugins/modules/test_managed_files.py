"""warden.fleet.managed_files with real files in a temporary directory."""

from __future__ import annotations

import grp
import json
import os
import pwd

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.warden.fleet.plugins.modules import managed_files

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def run(monkeypatch, files, check=False, diff=False):
    def exit_json(_self, **kwargs):
        raise ModuleExit(dict(kwargs, failed=False))

    def fail_json(_self, **kwargs):
        raise ModuleExit(dict(kwargs, failed=True))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    args = {"files": [dict({"owner": OWNER, "group": GROUP}, **f) for f in files],
            "_ansible_check_mode": check, "_ansible_diff": diff}
    with patch_module_args(args), pytest.raises(ModuleExit) as exc:
        managed_files.main()
    return exc.value.result


def test_writes_every_file_then_changes_nothing(monkeypatch, tmp_path):
    files = [{"path": str(tmp_path / "rc.d" / "atlas"), "content": "#!/bin/sh\n", "mode": "0555"},
             {"path": str(tmp_path / "conf.d" / "warden-atlas.conf"), "content": "line\n"}]
    result = run(monkeypatch, files)
    assert not result["failed"] and result["changed"]
    assert result["changed_files"] == [f["path"] for f in files]
    assert (tmp_path / "rc.d" / "atlas").read_text() == "#!/bin/sh\n"
    assert oct((tmp_path / "rc.d" / "atlas").stat().st_mode & 0o777) == "0o555"
    assert oct((tmp_path / "conf.d" / "warden-atlas.conf").stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path / "rc.d")) == ["atlas"]          # no temporary file left
    again = run(monkeypatch, files)
    assert (again["changed"], again["changed_files"]) == (False, [])


def test_check_mode_reports_and_writes_nothing_with_a_diff(monkeypatch, tmp_path):
    target = tmp_path / "atlas"
    target.write_text("old\n")
    target.chmod(0o555)
    result = run(monkeypatch, [{"path": str(target), "content": "new\n", "mode": "0555"}], check=True, diff=True)
    assert result["changed"] and result["changed_files"] == [str(target)]
    assert result["diff"] == [{"before_header": str(target), "after_header": str(target),
                               "before": "old\n", "after": "new\n"}]
    assert target.read_text() == "old\n"


def test_a_mode_change_alone_is_a_change(monkeypatch, tmp_path):
    target = tmp_path / "atlas"
    target.write_text("same\n")
    target.chmod(0o644)
    result = run(monkeypatch, [{"path": str(target), "content": "same\n", "mode": "0555"}])
    assert result["changed"]
    assert target.stat().st_mode & 0o777 == 0o555


def test_refuses_a_link_at_the_file_or_in_the_path(monkeypatch, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "link").symlink_to(victim)
    result = run(monkeypatch, [{"path": str(tmp_path / "link"), "content": "x\n"}])
    assert result["failed"] and "link" in result["msg"]
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    (tmp_path / "dirlink").symlink_to(real_dir)
    result = run(monkeypatch, [{"path": str(tmp_path / "dirlink" / "f"), "content": "x\n"}])
    assert result["failed"] and "dirlink" in result["msg"]
    assert victim.read_text() == "keep\n"
    assert os.listdir(real_dir) == []


def test_absent_removes_only_what_exists(monkeypatch, tmp_path):
    gone = tmp_path / "hermes"
    gone.write_text("x\n")
    result = run(monkeypatch, [{"path": str(gone), "state": "absent"},
                               {"path": str(tmp_path / "never"), "state": "absent"}])
    assert result["changed_files"] == [str(gone)] and not gone.exists()


def test_refuses_duplicates_and_relative_paths(monkeypatch, tmp_path):
    path = str(tmp_path / "a")
    result = run(monkeypatch, [{"path": path, "content": "1"}, {"path": path, "content": "2"}])
    assert result["failed"] and path in result["msg"]
    assert not os.path.exists(path)
    result = run(monkeypatch, [{"path": "relative/file", "content": "1"}])
    assert result["failed"] and "absolute" in result["msg"]


def test_documentation_parses():
    import yaml

    for block in (managed_files.DOCUMENTATION, managed_files.EXAMPLES, managed_files.RETURN):
        assert yaml.safe_load(block)
    json.dumps(yaml.safe_load(managed_files.RETURN))

"""The per-agent stat summary: the fast unchanged check and its fallbacks."""

from __future__ import annotations

import datetime
import json
import os

from backup_helpers import populate

from ansible_collections.warden.fleet.plugins.module_utils import backup

UTC = datetime.UTC


def at(day):
    return datetime.datetime(2025, 1, 1, 3, 17, tzinfo=UTC) + datetime.timedelta(days=day)


def status(fleet, day):
    return backup.backup_fleet(fleet.plan, now=at(day))["agents"]["atlas"]["status"]


def test_summary_skips_the_index_and_falls_back_to_it(make_fleet, monkeypatch):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    assert status(fleet, 0) == "created"
    agent_dir = fleet.paths("atlas")["backup_dir"]
    summary_path = agent_dir / backup.SUMMARY_NAME
    summary = json.loads(summary_path.read_text())
    assert summary["archive"] == backup.good_archives(str(agent_dir), "atlas")[0]["name"]
    assert summary["digest"] == backup.good_archives(str(agent_dir), "atlas")[0]["manifest"]["content_digest"]

    # nothing changed: decided from the summary, the per-file index is not read
    loaded = []
    real_load = backup._load_index

    def spy(directory, name=backup.INDEX_NAME):
        loaded.append(name)
        return real_load(directory, name)

    monkeypatch.setattr(backup.job, "_load_index", spy)
    assert status(fleet, 1) == "unchanged"
    assert loaded == [backup.SUMMARY_NAME]

    # a lost or corrupt summary: the index decides, and the summary is written again
    summary_path.unlink()
    assert status(fleet, 2) == "unchanged"
    assert json.loads(summary_path.read_text())["tree"] == summary["tree"]
    summary_path.write_text("{not json")
    assert status(fleet, 3) == "unchanged"
    # a summary naming a digest that is not the archive's is not trusted
    summary_path.write_text(json.dumps(dict(summary, digest="0" * 64)))
    loaded.clear()
    assert status(fleet, 4) == "unchanged"
    assert backup.INDEX_NAME in loaded
    monkeypatch.setattr(backup.job, "_load_index", real_load)

    # same size, same mtime, other content: the inode change time still differs
    target = ws / "AGENTS.md"
    before = target.stat()
    target.write_bytes(bytes(b ^ 0x01 for b in target.read_bytes()))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    assert status(fleet, 5) == "created"
    assert status(fleet, 6) == "unchanged"


def test_check_mode_uses_the_summary(make_fleet):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    assert status(fleet, 0) == "created"
    res = backup.backup_fleet(fleet.plan, check_mode=True, now=at(1))
    assert res["agents"]["atlas"]["status"] == "unchanged" and res["changed"] is False
    (ws / "new.md").write_text("new\n")
    res = backup.backup_fleet(fleet.plan, check_mode=True, now=at(1))
    assert res["agents"]["atlas"]["status"] == "would_create"

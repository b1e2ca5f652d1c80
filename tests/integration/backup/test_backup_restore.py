"""Backup and restore with real files, real tar and zstd."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from backup_helpers import EXCLUDED, populate, tree

from ansible_collections.warden.fleet.plugins.module_utils import backup
from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError

UTC = datetime.UTC
STATE_EXCLUDED = {"agent.pid"}


def at(day, hour=3, minute=17):
    return datetime.datetime(2025, 1, 1, hour, minute, tzinfo=UTC) + datetime.timedelta(days=day)


def good(fleet, agent):
    return [a["name"] for a in backup.good_archives(str(fleet.paths(agent)["backup_dir"]), agent)]


def start_service(fleet, agent):
    subprocess.run(
        ["service", fleet.plan["agents"][agent]["service"]["name"], "start"], check=True, capture_output=True
    )
    fleet.forget_calls()


def home_listing(fleet, agent):
    return sorted(os.listdir(fleet.paths(agent)["home"]))


def test_backup_then_restore_is_byte_identical(make_fleet):
    fleet = make_fleet("atlas", "hermes")
    for agent in ("atlas", "hermes"):
        populate(fleet.paths(agent)["workspace"], fleet.paths(agent)["state"], seed=agent)
    ws, st = fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"]
    before_ws, before_st = tree(ws), tree(st, STATE_EXCLUDED)

    result = backup.backup_fleet(fleet.plan)
    assert result["failed_agents"] == []
    assert {n: r["status"] for n, r in result["agents"].items()} == {"atlas": "created", "hermes": "created"}
    archive = pathlib.Path(result["agents"]["atlas"]["archive"])
    assert archive.name.startswith("atlas_") and archive.name.endswith(".tar.zst")
    assert archive.parent == fleet.paths("atlas")["backup_dir"]
    manifest = json.loads(pathlib.Path(str(archive) + ".manifest.json").read_text())
    assert manifest["agent"] == "atlas" and manifest["host"] == "bsd1.example.net"
    assert manifest["archive_sha256"] == backup.sha256_file(str(archive))
    assert manifest["collection_version"] == backup.__version__
    assert manifest["consistency"] == "best-effort"
    paths = {f["path"] for f in manifest["files"]}
    assert "workspace/notes/2025-01-01.md" in paths and "state/session.json" in paths
    assert not {p for p in paths if ".cache" in p or p.endswith((".lock", ".pid"))}, "excludes apply"
    assert all(len(f["sha256"]) == 64 for f in manifest["files"] if f["type"] == "f")
    # the zstd archive is a plain tar inside
    out = subprocess.run(["zstd", "-d", "-c", str(archive)], check=True, capture_output=True).stdout
    assert b"day one" in out

    # the agent keeps working, then we restore while it runs
    (ws / "notes/2025-01-02.md").write_text("overwritten\n")
    (ws / "new-file.md").write_text("created after the backup\n")
    (ws / "AGENTS.md").unlink()
    start_service(fleet, "atlas")
    res = backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before_ws
    assert tree(st, STATE_EXCLUDED) == before_st
    assert (ws / "readonly.md").stat().st_mode & 0o777 == 0o444
    assert os.readlink(ws / "today") == "notes/2025-01-02.md"
    # the previous workspace is kept, next to it
    prev = pathlib.Path(res["previous"]["workspace"])
    assert prev.parent == ws.parent and prev.name.startswith("workspace.prev-")
    assert (prev / "new-file.md").read_text() == "created after the backup\n"
    # stopped before the swap, started after (it was running)
    assert fleet.calls_made() == ["service atlas stop", "service atlas start"]
    assert res["service"] == {"was_running": True, "stop_rc": 0, "started": True}
    # no staging leftovers
    assert not [n for n in home_listing(fleet, "atlas") if "restore" in n]


def test_flipped_byte_is_refused_and_nothing_changes(make_fleet):
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    archive = pathlib.Path(backup.backup_fleet(fleet.plan)["created"][0])
    ws = fleet.paths("atlas")["workspace"]
    (ws / "AGENTS.md").write_text("changed since\n")
    start_service(fleet, "atlas")
    before, listing = tree(ws), home_listing(fleet, "atlas")

    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))

    with pytest.raises(BackupError, match="sha256"):
        backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before
    assert home_listing(fleet, "atlas") == listing
    assert fleet.calls_made() == [], "the service is not touched"
    with pytest.raises(BackupError):
        backup.verify_archive(str(archive))
    info = backup.agent_info(fleet.plan, "atlas", verify=True)
    assert info["backup"]["verified"] is False


def test_member_checksum_mismatch_is_refused_before_the_swap(make_fleet):
    """Archive checksum intact, one member differs from the manifest: refused, nothing changes."""
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    archive = backup.backup_fleet(fleet.plan)["created"][0]
    mpath = pathlib.Path(archive + ".manifest.json")
    manifest = json.loads(mpath.read_text())
    victim = next(f for f in manifest["files"] if f["path"] == "workspace/notes/2025-01-01.md")
    victim["sha256"] = "0" * 64
    mpath.write_text(json.dumps(manifest))
    ws = fleet.paths("atlas")["workspace"]
    (ws / "AGENTS.md").write_text("changed since\n")
    before, listing = tree(ws), home_listing(fleet, "atlas")

    with pytest.raises(BackupError, match="2025-01-01.md"):
        backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before
    assert home_listing(fleet, "atlas") == listing
    assert fleet.calls_made() == []


def test_restore_at_time_under_another_name(make_fleet):
    fleet = make_fleet("atlas", "hermes")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"], seed="one")
    backup.backup_fleet(fleet.plan, ["atlas"], now=at(0))
    first = tree(ws)
    (ws / "notes/2025-01-02.md").write_text("second version\n")
    backup.backup_fleet(fleet.plan, ["atlas"], now=at(1))
    second = tree(ws)
    assert first != second
    assert len(good(fleet, "atlas")) == 2

    # newest at or before a time
    res = backup.restore_agent(fleet.plan, "atlas", at="2025-01-01T12:00:00Z")
    assert res["archive"].endswith("atlas_20250101T031700Z.tar.zst")
    assert tree(ws) == first
    with pytest.raises(BackupError, match="no good archive"):
        backup.restore_agent(fleet.plan, "atlas", at="2024-12-31")

    # atlas' newest archive restored as hermes (hermes has no workspace yet: a fresh host)
    hermes_ws = fleet.paths("hermes")["workspace"]
    assert not hermes_ws.exists()
    res = backup.restore_agent(fleet.plan, "atlas", target_agent="hermes")
    assert res["target_agent"] == "hermes" and res["previous"]["workspace"] is None
    assert tree(hermes_ws) == second
    assert fleet.calls_made()[-1] == "service hermes stop"  # not running: stop tolerated, not started


def test_restore_from_a_copied_archive_on_another_host(make_fleet, tmp_path):
    """Copy archive + manifest anywhere, restore from that path."""
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    before = tree(ws)
    archive = pathlib.Path(backup.backup_fleet(fleet.plan)["created"][0])
    elsewhere = tmp_path / "usb"
    elsewhere.mkdir()
    for src in (archive, pathlib.Path(str(archive) + ".manifest.json")):
        (elsewhere / src.name).write_bytes(src.read_bytes())
    import shutil

    shutil.rmtree(fleet.paths("atlas")["home"])
    shutil.rmtree(fleet.paths("atlas")["backup_dir"])
    res = backup.restore_agent(fleet.plan, None, archive=str(elsewhere / archive.name))
    assert res["agent"] == "atlas"
    assert tree(ws) == before


def test_unchanged_agents_are_skipped_without_reading_files(make_fleet, monkeypatch):
    fleet = make_fleet("atlas", "hermes")
    for agent in ("atlas", "hermes"):
        populate(fleet.paths(agent)["workspace"], fleet.paths(agent)["state"], seed=agent)
    first = backup.backup_fleet(fleet.plan, now=at(0))
    assert sorted(first["created"]) == sorted(first["created"]) and len(first["created"]) == 2

    opened = []
    real_open = os.open

    def spy(path, flags, *args, **kwargs):
        # directories are opened for the walk (without following links); files must not be
        if str(fleet.tmp / "root") in str(path) and not flags & os.O_DIRECTORY:
            opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    second = backup.backup_fleet(fleet.plan, now=at(1))
    monkeypatch.setattr(os, "open", real_open)
    assert {n: r["status"] for n, r in second["agents"].items()} == {"atlas": "unchanged", "hermes": "unchanged"}
    assert second["created"] == [] and second["changed"] is False
    assert opened == [], "no workspace file was read"
    assert len(good(fleet, "atlas")) == 1

    # touched but identical content: still unchanged, no archive
    ws = fleet.paths("atlas")["workspace"]
    os.utime(ws / "AGENTS.md")
    third = backup.backup_fleet(fleet.plan, now=at(2))
    assert third["agents"]["atlas"]["status"] == "unchanged"
    assert len(good(fleet, "atlas")) == 1
    assert not [n for n in os.listdir(fleet.paths("atlas")["backup_dir"]) if n.endswith(".partial")]

    # a real change: new archive for atlas only
    (ws / "AGENTS.md").write_text("new content\n")
    fourth = backup.backup_fleet(fleet.plan, now=at(3))
    assert {n: r["status"] for n, r in fourth["agents"].items()} == {"atlas": "created", "hermes": "unchanged"}
    # a mode change is a change
    (ws / "tool.sh").chmod(0o700)
    assert backup.backup_fleet(fleet.plan, ["atlas"], now=at(4))["agents"]["atlas"]["status"] == "created"
    # a removed file is a change
    (ws / "notes/2025-01-01.md").unlink()
    assert backup.backup_fleet(fleet.plan, ["atlas"], now=at(5))["agents"]["atlas"]["status"] == "created"


def test_a_new_soul_commit_is_a_change(make_fleet):
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    soul = fleet.paths("atlas")["soul"]
    soul.mkdir(parents=True)
    git = ["git", "-C", str(soul), "-c", "user.email=t@example.net", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (soul / "SOUL.md").write_text("v1\n")
    subprocess.run([*git, "add", "SOUL.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "v1"], check=True)
    head1 = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    first = backup.backup_fleet(fleet.plan, now=at(0))
    manifest = json.loads(pathlib.Path(first["created"][0] + ".manifest.json").read_text())
    assert manifest["soul_commit"] == head1
    assert backup.backup_fleet(fleet.plan, now=at(1))["agents"]["atlas"]["status"] == "unchanged"
    (soul / "SOUL.md").write_text("v2\n")
    subprocess.run([*git, "commit", "-q", "-am", "v2"], check=True)
    assert backup.backup_fleet(fleet.plan, now=at(2))["agents"]["atlas"]["status"] == "created"


def _big_tree(ws, mb=96):
    ws.mkdir(parents=True, exist_ok=True)
    for i in range(mb // 8):
        (ws / f"big{i:02d}.bin").write_bytes(os.urandom(8 * 1024 * 1024))


def test_killed_backup_leaves_no_good_archive_and_keeps_the_previous(make_fleet):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    previous = backup.backup_fleet(fleet.plan, now=at(0))["created"][0]
    prev_sha = backup.sha256_file(previous)
    _big_tree(ws)
    plan_file = fleet.tmp / "plan.json"
    plan_file.write_text(json.dumps(fleet.plan))
    agent_dir = fleet.paths("atlas")["backup_dir"]
    code = (
        "import json, sys; from ansible_collections.warden.fleet.plugins.module_utils import backup as b; "
        f"b.backup_fleet(json.load(open({str(plan_file)!r})))"
    )
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(backup.__file__).parents[6]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    deadline = time.time() + 60
    partial = None
    while time.time() < deadline and partial is None:
        for name in os.listdir(agent_dir):
            if name.endswith(".tar.zst.partial") and (agent_dir / name).stat().st_size > 1024 * 1024:
                partial = agent_dir / name
        time.sleep(0.01)
    assert partial is not None, "the backup wrote a partial archive"
    os.killpg(proc.pid, signal.SIGKILL)  # the backup and its zstd
    proc.wait()

    # nothing new is taken as good: listing, restore and retention see only the previous archive
    assert partial.exists(), "the interrupted archive is still a partial"
    assert good(fleet, "atlas") == [os.path.basename(previous)]
    info = backup.agent_info(fleet.plan, "atlas", verify=True)
    assert info["backup"]["archive"] == previous and info["backup"]["verified"] is True
    assert backup.select_archive(str(agent_dir), "atlas")["path"] == previous
    assert backup.sha256_file(previous) == prev_sha
    backup.verify_archive(previous)

    # the next run cleans up and makes a good archive
    res = backup.backup_fleet(fleet.plan, now=at(1))
    assert res["agents"]["atlas"]["status"] == "created"
    assert str(partial) in res["agents"]["atlas"]["removed_leftovers"]
    assert not [n for n in os.listdir(agent_dir) if n.endswith(".partial")]
    assert len(good(fleet, "atlas")) == 2
    backup.verify_archive(res["created"][0])


def test_a_failure_midway_leaves_nothing_behind(make_fleet, monkeypatch):
    fleet = make_fleet("atlas", "hermes")
    for agent in ("atlas", "hermes"):
        populate(fleet.paths(agent)["workspace"], fleet.paths(agent)["state"], seed=agent)
    previous = backup.backup_fleet(fleet.plan, now=at(0))["created"]
    for agent in ("atlas", "hermes"):
        (fleet.paths(agent)["workspace"] / "AGENTS.md").write_text("changed\n")
    real_add = backup.ArchiveWriter.add_entry
    count = {"n": 0}

    def failing_add(self, entry):
        count["n"] += 1
        if "atlas" in self.path and count["n"] > 5:
            raise OSError(5, "Input/output error")
        return real_add(self, entry)

    monkeypatch.setattr(backup.ArchiveWriter, "add_entry", failing_add)
    res = backup.backup_fleet(fleet.plan, now=at(1))
    assert res["agents"]["atlas"]["status"] == "failed"
    assert "Input/output error" in res["agents"]["atlas"]["msg"]
    assert res["agents"]["hermes"]["status"] == "created", "one agent's failure does not stop the others"
    assert res["failed_agents"] == ["atlas"] and "FAILED: atlas" in res["summary"]
    agent_dir = fleet.paths("atlas")["backup_dir"]
    assert sorted(n for n in os.listdir(agent_dir) if not n.startswith(".")) == sorted(
        [os.path.basename(p) for p in previous if "/atlas/" in p]
        + [os.path.basename(p) + ".manifest.json" for p in previous if "/atlas/" in p]
    )
    assert not [n for n in os.listdir(agent_dir) if n.endswith(".partial")]


def test_retention_keeps_what_it_promises(make_fleet):
    fleet = make_fleet("atlas", backup={"keep_last": 2, "keep_daily": 3, "keep_weekly": 2, "keep_monthly": 2})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    # two archives a day for 20 days, content changing every time
    for day in range(20):
        for hour in (3, 15):
            (ws / "AGENTS.md").write_text(f"{day} {hour}\n")
            res = backup.backup_fleet(fleet.plan, now=at(day, hour, 0))
            assert res["agents"]["atlas"]["status"] == "created"
    kept = sorted(good(fleet, "atlas"))
    expected = sorted(
        [
            "atlas_20250120T150000Z.tar.zst",  # last, daily, weekly (2025-W04), monthly (2025-01)
            "atlas_20250120T030000Z.tar.zst",  # last
            "atlas_20250119T150000Z.tar.zst",  # daily, weekly (2025-W03)
            "atlas_20250118T150000Z.tar.zst",  # daily
        ]
    )
    assert kept == expected
    # no manifest without archive or archive without manifest remains
    names = [n for n in os.listdir(fleet.paths("atlas")["backup_dir"]) if not n.startswith(".")]
    assert sorted(names) == sorted(kept + [k + ".manifest.json" for k in kept])


def test_retention_never_deletes_the_newest_verified_archive(make_fleet):
    fleet = make_fleet("atlas", backup={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    first = backup.backup_fleet(fleet.plan, now=at(0))["created"][0]
    (ws / "AGENTS.md").write_text("second\n")
    res = backup.backup_fleet(fleet.plan, now=at(1))
    second = res["created"][0]
    assert res["agents"]["atlas"]["pruned"] == [first]
    (ws / "AGENTS.md").write_text("third\n")
    # the newest archive rots on disk; the next run's newest fails too (zstd refuses a corrupt stream)
    data = bytearray(pathlib.Path(second).read_bytes())
    data[-10] ^= 0xFF
    pathlib.Path(second).write_bytes(bytes(data))
    res = backup.backup_fleet(fleet.plan, now=at(2))
    third = res["created"][0]
    # keep_last=1 keeps the third; the second is pruned (corrupt, not the newest verified)
    assert good(fleet, "atlas") == [os.path.basename(third)]
    # now corrupt the newest while an older verified one exists: nothing verified newer -> keep the older
    (ws / "AGENTS.md").write_text("fourth\n")
    fourth = backup.backup_fleet(fleet.plan, now=at(3))["created"][0]
    assert good(fleet, "atlas") == [os.path.basename(fourth)]
    (ws / "AGENTS.md").write_text("fifth\n")
    real_finish = backup.ArchiveWriter.finish

    def rotten_finish(self):
        sha, size = real_finish(self)
        return "f" * 64, size  # recorded checksum will not match the file

    import pytest as _pytest

    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(backup.ArchiveWriter, "finish", rotten_finish)
        res = backup.backup_fleet(fleet.plan, now=at(4))
    # the read-back check refuses to call it good; the fourth stays
    assert res["agents"]["atlas"]["status"] == "failed" and "read-back" in res["agents"]["atlas"]["msg"]
    assert good(fleet, "atlas") == [os.path.basename(fourth)]


def test_pruning_keeps_an_older_verified_archive_when_the_newest_is_corrupt(make_fleet):
    fleet = make_fleet("atlas", backup={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    # two archives kept by a wider policy first
    wide = dict(fleet.plan["backup"], keep_last=5)
    plan_wide = dict(fleet.plan, backup=wide)
    older = backup.backup_fleet(plan_wide, now=at(0))["created"][0]
    (ws / "AGENTS.md").write_text("newer\n")
    newest = backup.backup_fleet(plan_wide, now=at(1))["created"][0]
    before = os.stat(newest)
    data = bytearray(pathlib.Path(newest).read_bytes())
    data[len(data) // 2] ^= 0x01
    pathlib.Path(newest).write_bytes(bytes(data))
    # rot the size and mtime check cannot see (mtime put back), a day before the scheduled full check
    os.utime(newest, ns=(before.st_atime_ns, before.st_mtime_ns))
    # keep_last=1 would prune the older one, but the newest does not verify: the older is protected
    res = backup.backup_fleet(fleet.plan, now=at(2))
    assert res["agents"]["atlas"]["status"] == "unchanged"
    assert res["agents"]["atlas"]["pruned"] == []
    assert sorted(good(fleet, "atlas")) == sorted([os.path.basename(older), os.path.basename(newest)])


def test_check_mode_reports_without_writing(make_fleet):
    fleet = make_fleet("atlas", backup={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    res = backup.backup_fleet(fleet.plan, check_mode=True, now=at(0))
    assert res["agents"]["atlas"]["status"] == "would_create" and res["changed"] is True
    assert not fleet.paths("atlas")["backup_dir"].exists()
    first = backup.backup_fleet(fleet.plan, now=at(0))["created"][0]
    res = backup.backup_fleet(fleet.plan, check_mode=True, now=at(1))
    assert res["agents"]["atlas"]["status"] == "unchanged" and res["changed"] is False
    (ws / "AGENTS.md").write_text("changed\n")
    listing = sorted(os.listdir(fleet.paths("atlas")["backup_dir"]))
    res = backup.backup_fleet(fleet.plan, check_mode=True, now=at(1))
    assert res["agents"]["atlas"]["status"] == "would_create"
    assert res["agents"]["atlas"]["pruned"] == [os.path.basename(first)]
    assert sorted(os.listdir(fleet.paths("atlas")["backup_dir"])) == listing
    # check-mode restore verifies and reports, changes nothing
    before = tree(ws)
    res = backup.restore_agent(fleet.plan, "atlas", check_mode=True)
    assert res["would_restore"]["workspace"] == str(ws)
    assert tree(ws) == before and fleet.calls_made() == []


def test_orphans_and_listing(make_fleet):
    fleet = make_fleet("atlas", "hermes")  # the stand-in runs atlasgit, not hermesgit
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    orphan = fleet.tmp / "root" / "agents" / "oldbot" / "workspace"
    orphan.mkdir(parents=True)
    (orphan / "x.md").write_text("left behind\n")
    res = backup.backup_fleet(fleet.plan, now=datetime.datetime.now(UTC).replace(microsecond=0))
    assert res["orphans"] == [str(fleet.tmp / "root" / "agents" / "oldbot")]
    assert "orphaned workspaces" in res["summary"]
    assert res["agents"]["hermes"]["status"] == "missing"
    start_service(fleet, "atlas")
    info = backup.fleet_info(fleet.plan)
    rows = {r["agent"]: r for r in info["agents"]}
    assert rows["atlas"]["exists"] and rows["atlas"]["size"] > 0
    assert rows["atlas"]["backup"]["verified"] is True and rows["atlas"]["backup"]["age"] < 60
    assert rows["atlas"]["service"]["running"] is True and rows["hermes"]["service"]["running"] is False
    assert rows["atlas"]["jails"] == [{"name": "atlasgit", "slot": "git", "running": True}]
    assert rows["hermes"]["backup"] is None and rows["hermes"]["exists"] is False
    assert info["orphans"][0]["path"].endswith("oldbot")
    table = info["table"].splitlines()
    assert table[1].split()[:3] == ["AGENT", "STATE", "WORKSPACE"]
    atlas_line = next(line for line in table if line.startswith("atlas "))
    assert "running" in atlas_line and "1/1 up" in atlas_line and "yes" in atlas_line
    hermes_line = next(line for line in table if line.startswith("hermes "))
    assert "never" in hermes_line and "(missing)" in hermes_line
    assert any("orphaned workspace" in line and "oldbot" in line for line in table)


def test_env_file_is_only_archived_encrypted(make_fleet, tmp_path):
    fleet = make_fleet("atlas", backup={"include_env": True, "env_passphrase_file": str(tmp_path / "pass")})
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    env_file = fleet.paths("atlas")["env_file"]
    env_file.parent.mkdir(parents=True)
    secret = "GATEWAY_TOKEN=s3cr3t-t0ken-value\n"
    env_file.write_text(secret)
    # no passphrase file on disk: refused
    res = backup.backup_fleet(fleet.plan)
    assert res["agents"]["atlas"]["status"] == "failed" and "env_passphrase_file" in res["agents"]["atlas"]["msg"]
    passfile = tmp_path / "pass"
    passfile.write_text("correct horse battery staple\n")
    passfile.chmod(0o644)
    res = backup.backup_fleet(fleet.plan)
    assert "readable by group or others" in res["agents"]["atlas"]["msg"]
    passfile.chmod(0o600)
    res = backup.backup_fleet(fleet.plan)
    archive = res["created"][0]
    raw = subprocess.run(["zstd", "-d", "-c", archive], check=True, capture_output=True).stdout
    assert b"s3cr3t-t0ken-value" not in raw
    with _open_zst(archive) as tar:
        names = tar.getnames()
    assert "env/atlas.env.enc" in names
    manifest = json.loads(pathlib.Path(archive + ".manifest.json").read_text())
    assert manifest["env"]["included"] and manifest["env"]["encrypted"] == "aes-256-cbc-pbkdf2"
    assert "s3cr3t" not in json.dumps(manifest)
    env_file.write_text("GATEWAY_TOKEN=rotated\n")
    res = backup.restore_agent(fleet.plan, "atlas", restore_env=True, env_passphrase_file=str(passfile))
    assert res["env_restored"] is True
    assert env_file.read_text() == secret
    assert env_file.stat().st_mode & 0o777 == 0o600


def _open_zst(archive):
    data = subprocess.run(["zstd", "-d", "-c", archive], check=True, capture_output=True).stdout
    import io

    return tarfile.open(fileobj=io.BytesIO(data), mode="r:")


def test_stdlib_compression_fallback(make_fleet):
    fleet = make_fleet("atlas", backup={"compression": "gzip"})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    before = tree(ws)
    archive = backup.backup_fleet(fleet.plan)["created"][0]
    assert archive.endswith(".tar.gz")
    backup.verify_archive(archive)
    (ws / "AGENTS.md").write_text("changed\n")
    backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before


def test_zfs_dataset_is_read_from_a_snapshot(make_fleet, monkeypatch):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    fleet.host.add_dataset("zroot/warden/atlas/workspace", ws)
    before = tree(ws)
    res = backup.backup_fleet(fleet.plan, now=at(0))
    assert res["agents"]["atlas"]["consistency"] == "zfs-snapshot"
    snap = "zroot/warden/atlas/workspace@warden-backup-20250101T031700Z"
    calls = fleet.calls_made("zfs")
    assert f"zfs snapshot {snap}" in calls and f"zfs destroy {snap}" in calls
    assert calls.index(f"zfs snapshot {snap}") < calls.index(f"zfs destroy {snap}")
    assert not (ws / ".zfs").exists(), "the snapshot is destroyed after the backup"
    manifest = json.loads(pathlib.Path(res["created"][0] + ".manifest.json").read_text())
    assert manifest["snapshots"] == [snap]
    (ws / "AGENTS.md").write_text("changed\n")
    backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before


def test_host_command(make_fleet, tmp_path):
    """The `warden` entry script from the host_tools role with the module_utils package as its library."""
    repo = pathlib.Path(backup.__file__).resolve().parents[3]
    prefix = tmp_path / "usr_local"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "warden").mkdir(parents=True)
    script = prefix / "bin" / "warden"
    script.write_text((repo / "roles/host_tools/files/warden").read_text())
    script.chmod(0o755)
    shutil.copytree(pathlib.Path(backup.__file__).parent, prefix / "lib/warden/warden_backup")
    fleet = make_fleet("atlas", "hermes")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(fleet.plan))

    def warden(*args):
        return subprocess.run(
            [sys.executable, str(script), "--plan", str(plan_file), *args], capture_output=True, text=True, check=False
        )

    out = warden("backup")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("warden backup bsd1.example.net: 1 created, 1 missing")
    out = warden("list")
    assert out.returncode == 0 and "atlas" in out.stdout and "hermes" in out.stdout
    data = json.loads(warden("list", "--json").stdout)
    assert [a["agent"] for a in data["agents"]] == ["atlas", "hermes"]
    assert data["agents"][0]["backup"]["verified"] is True
    ws = fleet.paths("atlas")["workspace"]
    before = tree(ws)
    (ws / "AGENTS.md").write_text("changed\n")
    out = warden("restore", "atlas")
    assert out.returncode == 0, out.stderr
    assert tree(ws) == before
    out = warden("verify", "atlas")
    assert out.returncode == 0 and "verified" in out.stdout
    out = warden("restore", "nobody")
    assert out.returncode == 1 and "not in the plan" in out.stderr
    assert EXCLUDED  # the excluded paths are not restored (compared by tree())

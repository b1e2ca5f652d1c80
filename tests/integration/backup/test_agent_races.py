"""An agent owns its workspace and can race anything root does in it: the
restore cannot be redirected, the backup neither reads outside the tree nor
hangs, one lock serialises backup, restore and retention, and the smaller
promises (missing workspace, CLI errors, sparse files, hard links, leftovers
of an interrupted restore) hold.

Each race is reproduced at the exact moment by wrapping the step just before
it; the agent's moves are limited to what an unprivileged owner of its home
can do (rename and replace entries of directories it owns)."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import signal
import stat
import subprocess
import sys
import threading

import pytest
from backup_helpers import populate, tree

from ansible_collections.warden.fleet.plugins.module_utils import backup
from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError

AGENT_UID = AGENT_GID = 65534  # nobody: the agent's user in these tests
STATE_EXCLUDED = {"agent.pid"}


def at(day):
    return datetime.datetime(2025, 1, 1, 3, 17, tzinfo=datetime.UTC) + datetime.timedelta(days=day)


def start_service(fleet, agent):
    subprocess.run(
        ["service", fleet.plan["agents"][agent]["service"]["name"], "start"], check=True, capture_output=True
    )
    fleet.forget_calls()


def agent_owned(fleet, agent, monkeypatch):
    """Hand the agent's home to an unprivileged user, as on a real host, and
    make the restore chown to that user."""
    home = fleet.paths(agent)["home"]
    for dirpath, dirnames, filenames in os.walk(home):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), AGENT_UID, AGENT_GID)
    os.chown(home, AGENT_UID, AGENT_GID)
    monkeypatch.setattr(backup.restore, "_owner_ids", lambda target: (AGENT_UID, AGENT_GID))
    return home


def root_only_dir(path, files):
    path.mkdir(mode=0o700)
    for name, text in files.items():
        (path / name).write_text(text)
        (path / name).chmod(0o600)
    return {p.name: (p.stat().st_uid, p.read_text()) for p in path.iterdir()}


def archived_bytes(agent_dir):
    """Everything in every archive of an agent, decompressed."""
    out = b""
    for archive in sorted(agent_dir.glob("*.tar.zst")):
        out += subprocess.run(["zstd", "-d", "-c", str(archive)], check=True, capture_output=True).stdout
    return out


# -- finding 1: the restore cannot be redirected by the agent


def test_restore_staging_is_out_of_the_agents_reach(make_fleet, monkeypatch, tmp_path):
    fleet = make_fleet("atlas")
    ws, st = fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"]
    populate(ws, st)
    backup.backup_fleet(fleet.plan, now=at(0))
    before_ws, before_st = tree(ws), tree(st, STATE_EXCLUDED)
    (ws / "AGENTS.md").write_text("changed since\n")
    home = agent_owned(fleet, "atlas", monkeypatch)
    victim = tmp_path / "etc-like"
    victim_before = root_only_dir(victim, {"root-file": "root's\n"})
    start_service(fleet, "atlas")
    listing = set(os.listdir(home))
    real_extract = backup.extract_archive
    staged = []

    def agent_moves_staging(path, manifest, dest_for):
        # the agent, once the staging exists: whatever new appeared in its home
        # is renamed and a symlink to a root-only directory put in its place
        for name in set(os.listdir(home)) - listing:
            os.rename(home / name, home / (name + ".moved"))
            os.symlink(victim, home / name)
            staged.append(name)
        # and the root-only staging directory really is: root's, 0700, not in the home
        for entry in (home.parent).iterdir():
            if entry.name.startswith(".warden-restore-"):
                st_ = entry.lstat()
                assert (st_.st_uid, stat.S_IMODE(st_.st_mode)) == (0, 0o700)
                staged.append(entry.name)
        return real_extract(path, manifest, dest_for)

    monkeypatch.setattr(backup.restore, "extract_archive", agent_moves_staging)
    res = backup.restore_agent(fleet.plan, "atlas")
    assert staged, "the staging directory was seen"
    assert {p.name: (p.stat().st_uid, p.read_text()) for p in victim.iterdir()} == victim_before
    assert victim.stat().st_uid == 0
    assert ws.is_dir() and not ws.is_symlink() and not st.is_symlink()
    assert tree(ws) == before_ws and tree(st, STATE_EXCLUDED) == before_st
    # owned by the agent, down to the symlinks
    assert {os.lstat(os.path.join(d, n)).st_uid for d, ds, fs in os.walk(ws) for n in ds + fs} == {AGENT_UID}
    assert ws.stat().st_uid == AGENT_UID
    assert fleet.calls_made() == ["service atlas stop", "service atlas start"]
    assert res["previous"]["workspace"].startswith(str(ws) + ".prev-")
    assert not [n for n in os.listdir(home.parent) if n.startswith(".warden-restore-")], "no staging left"


def test_restore_into_a_mountpoint_is_not_redirected(make_fleet, monkeypatch, tmp_path):
    """A workspace that is its own file system is swapped by its contents; the
    staging directory is then inside it, where the agent can rename it: every
    write goes through descriptors, so a symlink put in its place is never
    followed."""
    fleet = make_fleet("atlas")
    ws, st = fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"]
    ws.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(ws)], check=True)
    try:
        populate(ws, st)
        backup.backup_fleet(fleet.plan, now=at(0))
        before = tree(ws)
        (ws / "AGENTS.md").write_text("changed since\n")
        agent_owned(fleet, "atlas", monkeypatch)
        victim = tmp_path / "etc-like"
        victim_before = root_only_dir(victim, {"root-file": "root's\n"})
        real_extract = backup.extract_archive
        moved = []

        def agent_moves_staging(path, manifest, dest_for):
            for entry in ws.iterdir():
                if "restore" in entry.name:
                    os.rename(entry, ws / "moved-away")
                    os.symlink(victim, entry)
                    moved.append(entry.name)
            return real_extract(path, manifest, dest_for)

        monkeypatch.setattr(backup.restore, "extract_archive", agent_moves_staging)
        res = backup.restore_agent(fleet.plan, "atlas")
        assert moved, "the agent found the staging directory in its workspace"
        assert {p.name: (p.stat().st_uid, p.read_text()) for p in victim.iterdir()} == victim_before
        prev = pathlib.Path(res["previous"]["workspace"])
        assert prev.parent == ws and prev.name.startswith(".warden-prev-")
        current = {k: v for k, v in tree(ws).items() if not k.startswith((".warden-prev-", moved[0]))}
        assert current == before
        assert (prev / "AGENTS.md").read_text() == "changed since\n"
        # the link the agent left under the staging directory's name does not block the next restore
        assert (ws / moved[0]).is_symlink()
        monkeypatch.setattr(backup.restore, "extract_archive", real_extract)
        backup.restore_agent(fleet.plan, "atlas", now=at(5))
        assert {p.name: (p.stat().st_uid, p.read_text()) for p in victim.iterdir()} == victim_before
        assert tree(ws)["AGENTS.md"] == before["AGENTS.md"]
    finally:
        subprocess.run(["umount", "-l", str(ws)], check=False)


# -- findings 3 and 4: the backup neither hangs on a FIFO nor reads through a swapped directory


def test_a_fifo_swapped_in_after_the_walk_does_not_hang_the_backup(make_fleet, monkeypatch):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    agent_owned(fleet, "atlas", monkeypatch)
    fifo = ws / "notes/2025-01-01.md"
    real_sources = backup.AgentBackup.sources

    def walk_then_swap(self, roots=None):
        listed = real_sources(self, roots)
        if not fifo.is_fifo():
            fifo.unlink()
            os.mkfifo(fifo)  # the agent, between the walk and the read
        return listed

    monkeypatch.setattr(backup.AgentBackup, "sources", walk_then_swap)
    out = {}
    worker = threading.Thread(target=lambda: out.update(backup.backup_fleet(fleet.plan, now=at(0))), daemon=True)
    worker.start()
    worker.join(60)
    if worker.is_alive():  # release the reader so the test process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("the backup blocked opening a FIFO")
    res = out["agents"]["atlas"]
    assert res["status"] == "failed" and "2025-01-01.md was replaced" in res["msg"]
    agent_dir = fleet.paths("atlas")["backup_dir"]
    with backup.AgentLock(str(agent_dir), "test"):
        pass  # released
    assert not [n for n in os.listdir(agent_dir) if n.endswith(".partial")]
    monkeypatch.setattr(backup.AgentBackup, "sources", real_sources)
    fifo.unlink()
    fifo.write_text("day one again\n")
    assert backup.backup_fleet(fleet.plan, now=at(1))["agents"]["atlas"]["status"] == "created"


def test_a_directory_swapped_for_a_link_during_the_walk_is_not_read(make_fleet, monkeypatch, tmp_path):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    agent_owned(fleet, "atlas", monkeypatch)
    secret = tmp_path / "secret"
    root_only_dir(secret, {"shadow": "root-only secret line\n"})
    real_is_excluded = backup.is_excluded
    swapped = []

    def swap_when_listed(relpath, is_dir, rules, name=None):
        # the walk has listed notes/ as a directory and is about to enter it
        if is_dir and relpath == "notes" and not swapped:
            os.rename(ws / "notes", ws / "notes.away")
            os.symlink(secret, ws / "notes")
            swapped.append(relpath)
        return real_is_excluded(relpath, is_dir, rules, name)

    monkeypatch.setattr(backup.scan, "is_excluded", swap_when_listed)
    res = backup.backup_fleet(fleet.plan, now=at(0))["agents"]["atlas"]
    assert swapped
    agent_dir = fleet.paths("atlas")["backup_dir"]
    assert b"root-only secret" not in archived_bytes(agent_dir)
    assert res["status"] == "failed" and "notes" in res["msg"], res
    # the next run archives the link as a link, never what it points to
    monkeypatch.setattr(backup.scan, "is_excluded", real_is_excluded)
    again = backup.backup_fleet(fleet.plan, now=at(1))["agents"]["atlas"]
    assert again["status"] == "created"
    assert b"root-only secret" not in archived_bytes(agent_dir)
    manifest = json.loads(pathlib.Path(again["manifest"]).read_text())
    assert {"path": "workspace/notes", "target": str(secret)}.items() <= next(
        f for f in manifest["files"] if f["path"] == "workspace/notes"
    ).items()


def test_a_file_swapped_for_a_link_after_the_walk_is_not_read(make_fleet, monkeypatch, tmp_path):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    agent_owned(fleet, "atlas", monkeypatch)
    secret = tmp_path / "secret"
    root_only_dir(secret, {"2025-01-01.md": "root-only secret line\n"})
    real_sources = backup.AgentBackup.sources

    def walk_then_swap(self, roots=None):
        listed = real_sources(self, roots)
        if not (ws / "notes").is_symlink():
            os.rename(ws / "notes", ws / "notes.away")
            os.symlink(secret, ws / "notes")
        return listed

    monkeypatch.setattr(backup.AgentBackup, "sources", walk_then_swap)
    res = backup.backup_fleet(fleet.plan, now=at(0))["agents"]["atlas"]
    assert res["status"] == "failed" and "notes" in res["msg"]
    assert b"root-only secret" not in archived_bytes(fleet.paths("atlas")["backup_dir"])


# -- finding 5: one lock per agent for backup, restore and retention


def test_restore_holds_the_agent_lock(make_fleet, monkeypatch):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    backup.backup_fleet(fleet.plan, now=at(0))
    before = tree(ws)
    (ws / "AGENTS.md").write_text("changed since\n")
    real_extract = backup.extract_archive
    seen = {}

    def meanwhile(path, manifest, dest_for):
        if dest_for is not None and not seen:
            seen["restore"] = "no error"
            try:
                backup.restore_agent(fleet.plan, "atlas", now=at(9))
            except BackupError as exc:
                seen["restore"] = str(exc)
            seen["backup"] = backup.backup_fleet(fleet.plan, now=at(1))["agents"]["atlas"]
        return real_extract(path, manifest, dest_for)

    monkeypatch.setattr(backup.restore, "extract_archive", meanwhile)
    res = backup.restore_agent(fleet.plan, "atlas", now=at(9))
    holder = f"pid {os.getpid()}, restore since "
    assert "restore not started" in seen["restore"] and holder in seen["restore"], seen
    assert seen["backup"]["status"] == "failed" and holder in seen["backup"]["msg"]
    assert tree(ws) == before
    assert (pathlib.Path(res["previous"]["workspace"]) / "AGENTS.md").read_text() == "changed since\n"


def test_a_second_operation_waits_for_the_lock_or_names_the_holder(make_fleet):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    backup.backup_fleet(fleet.plan, now=at(0))
    agent_dir = str(fleet.paths("atlas")["backup_dir"])
    held, release = threading.Event(), threading.Event()

    def hold():
        with backup.AgentLock(agent_dir, "backup"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        held_by = rf"restore not started: .*\.lock is held \(pid {os.getpid()}, backup since "
        with pytest.raises(BackupError, match=held_by):
            backup.restore_agent(fleet.plan, "atlas", lock_timeout=0)
        threading.Timer(1.0, release.set).start()
        res = backup.restore_agent(fleet.plan, "atlas", lock_timeout=30)
        assert res["changed"] is True
    finally:
        release.set()
        holder.join()


# -- finding 9: the smaller ones


def test_a_missing_workspace_fails_clearly(make_fleet):
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    first = backup.backup_fleet(fleet.plan, now=at(0))["created"]
    fleet.paths("atlas")["workspace"].rename(fleet.paths("atlas")["home"] / "elsewhere")
    res = backup.backup_fleet(fleet.plan, now=at(1))
    assert res["agents"]["atlas"]["status"] == "failed"
    assert "workspace" in res["agents"]["atlas"]["msg"] and "missing" in res["agents"]["atlas"]["msg"]
    assert "FAILED: atlas" in res["summary"]
    assert [a["path"] for a in backup.good_archives(str(fleet.paths("atlas")["backup_dir"]), "atlas")] == first


def test_cli_os_errors_are_one_line(make_fleet, tmp_path, capsys):
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    archive = pathlib.Path(backup.backup_fleet(fleet.plan, now=at(0))["created"][0])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(fleet.plan))
    # an "archive" that is a directory, with a valid manifest naming it
    bogus = tmp_path / archive.name
    bogus.mkdir()
    manifest = json.loads(pathlib.Path(str(archive) + ".manifest.json").read_text())
    manifest["archive_size"] = bogus.stat().st_size
    pathlib.Path(str(bogus) + ".manifest.json").write_text(json.dumps(manifest))
    rc = backup.cli(["--plan", str(plan_file), "verify", "atlas", "--archive", str(bogus)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("warden: verify failed: ") and str(bogus) in err


def test_sparse_files_stay_sparse(make_fleet, monkeypatch):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    sparse = ws / "disk.img"
    with open(sparse, "wb") as handle:
        handle.write(b"head")
        handle.seek(32 * 1024 * 1024)
        handle.write(b"middle")
        handle.truncate(64 * 1024 * 1024)
    if sparse.stat().st_blocks * 512 > 1024 * 1024:
        pytest.skip("this file system does not keep holes")
    before = tree(ws)
    read = []
    real_read = os.read

    def counting_read(fd, count):
        data = real_read(fd, count)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    backup.backup_fleet(fleet.plan, now=at(0))
    monkeypatch.setattr(os, "read", real_read)
    assert sum(read) < 8 * 1024 * 1024, "the holes were not read (SEEK_DATA)"
    sparse.write_bytes(b"overwritten")
    backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before
    assert sparse.stat().st_size == 64 * 1024 * 1024
    assert sparse.stat().st_blocks * 512 < 1024 * 1024, "restored with its holes"


def test_hard_links_come_back_as_hard_links(make_fleet, monkeypatch, tmp_path):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    os.link(ws / "notes/2025-01-01.md", ws / "memories/same-day.md")
    os.link(ws / "notes/2025-01-01.md", ws / "zz-third.md")
    agent_owned(fleet, "atlas", monkeypatch)
    # a hard link the agent made to a root-only file elsewhere on the file system
    outside = tmp_path / "root-only.txt"
    outside.write_text("root-only secret line\n")
    outside.chmod(0o600)
    os.link(outside, ws / "looks-harmless.md")
    before = {k: v for k, v in tree(ws).items() if k != "looks-harmless.md"}
    res = backup.backup_fleet(fleet.plan, now=at(0))["agents"]["atlas"]
    manifest = json.loads(pathlib.Path(res["manifest"]).read_text())
    kinds = {f["path"]: (f["type"], f.get("target")) for f in manifest["files"]}
    assert kinds["workspace/memories/same-day.md"] == ("f", None), "the first path in archive order holds the data"
    assert kinds["workspace/notes/2025-01-01.md"] == ("h", "workspace/memories/same-day.md")
    assert kinds["workspace/zz-third.md"] == ("h", "workspace/memories/same-day.md")
    assert "workspace/looks-harmless.md" in manifest["skipped"]
    assert b"root-only secret" not in archived_bytes(fleet.paths("atlas")["backup_dir"])
    backup.verify_archive(res["archive"])
    (ws / "zz-third.md").unlink()
    (ws / "zz-third.md").write_text("no longer a link\n")
    backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before
    inodes = {(ws / p).stat().st_ino for p in ("notes/2025-01-01.md", "memories/same-day.md", "zz-third.md")}
    assert len(inodes) == 1 and (ws / "zz-third.md").stat().st_nlink == 3
    assert (ws / "zz-third.md").stat().st_uid == AGENT_UID


def test_an_interrupted_restore_leaves_nothing_behind_after_the_next_run(make_fleet, monkeypatch, tmp_path):
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    backup.backup_fleet(fleet.plan, now=at(0))
    before = tree(ws)
    (ws / "AGENTS.md").write_text("changed since\n")
    agent_owned(fleet, "atlas", monkeypatch)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(fleet.plan))
    code = (
        "import json, os, signal; from ansible_collections.warden.fleet.plugins.module_utils import backup as b\n"
        "real = b.extract_archive\n"
        "def killed_after_staging(path, manifest, dest_for):\n"
        "    out = real(path, manifest, dest_for)\n"
        "    if dest_for is not None:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return out\n"
        "b.restore.extract_archive = killed_after_staging\n"
        f"b.restore_agent(json.load(open({str(plan_file)!r})), 'atlas')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(backup.__file__).parents[6]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    home, agent_dir = fleet.paths("atlas")["home"], fleet.paths("atlas")["backup_dir"]

    def leftovers():
        found = [p for p in home.parent.rglob("*") if "restore" in p.name]
        return found + [p for p in agent_dir.iterdir() if p.name.startswith(".restore-")]

    assert leftovers(), "the killed restore left its staging"
    assert backup.orphan_workspaces(fleet.plan) == [], "a staging directory is not an orphaned workspace"
    assert (ws / "AGENTS.md").read_text() == "changed since\n", "nothing was swapped"
    res = backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before
    assert leftovers() == []
    assert res["removed_leftovers"]


# -- the same races with a real unprivileged process, in a bounded loop

AGENT_LOOP = r"""
import os, sys, time
home, secret, victim = sys.argv[1:4]
fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
os.fchdir(fd)
end, n = time.monotonic() + 60, 0
while time.monotonic() < end:
    n += 1
    for name in os.listdir("."):
        if "warden-restore" in name and not name.endswith(".moved") and not os.path.islink(name):
            try:  # whatever staging appears in the home is moved and replaced by a link
                os.rename(name, name + ".moved")
                os.symlink(victim, name)
            except OSError:
                pass
    for here, there in (("workspace/notes", secret), ("workspace", victim)):
        try:
            os.rename(here, f"{here}.away{n}")
            os.symlink(there, here)
            time.sleep(0.0005)
            os.unlink(here)
            os.rename(f"{here}.away{n}", here)
        except OSError:
            pass
"""


def test_an_unprivileged_agent_racing_backups_and_restores(make_fleet, monkeypatch, tmp_path):
    """Bounded stress: the agent's own process keeps swapping notes/ for a link
    to a root-only directory and its workspace for a link to another one, and
    replaces any staging directory appearing in its home by a link, while
    backups and restores run. Whatever each run ends with, nothing outside the
    tree is read, written or handed to the agent."""
    fleet = make_fleet("atlas")
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    backup.backup_fleet(fleet.plan, now=at(0))
    home = agent_owned(fleet, "atlas", monkeypatch)
    secret, victim = tmp_path / "secret", tmp_path / "etc-like"
    root_only_dir(secret, {"2025-01-01.md": "root-only secret line\n"})
    victim_before = root_only_dir(victim, {"root-file": "root's\n"})
    agent = subprocess.Popen([sys.executable, "-c", AGENT_LOOP, str(home), str(secret), str(victim)])
    outcomes = []
    try:
        for day in range(1, 7):
            res = backup.backup_fleet(fleet.plan, now=at(day))["agents"]["atlas"]
            outcomes.append(res["status"])
            try:
                backup.restore_agent(fleet.plan, "atlas", now=at(day))
                outcomes.append("restored")
            except BackupError as exc:
                outcomes.append(f"restore failed: {exc}")
    finally:
        agent.kill()
        agent.wait()
    assert b"root-only secret" not in archived_bytes(fleet.paths("atlas")["backup_dir"]), outcomes
    assert {p.name: (p.stat().st_uid, p.read_text()) for p in victim.iterdir()} == victim_before, outcomes
    assert victim.stat().st_uid == 0 and secret.stat().st_uid == 0
    assert (secret / "2025-01-01.md").stat().st_uid == 0
    assert not [p for p in home.parent.iterdir() if p.name.startswith(".warden-restore-")], outcomes


def test_a_workspace_swapped_for_a_link_to_another_dataset_is_not_snapshotted(make_fleet, monkeypatch, tmp_path):
    """With ZFS, a link to another dataset's mountpoint put in place of the
    workspace just before the snapshot must not get that dataset archived."""
    fleet = make_fleet("atlas")
    ws, st = fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"]
    populate(ws, st)
    agent_owned(fleet, "atlas", monkeypatch)
    other = tmp_path / "other-dataset"
    root_only_dir(other, {"shadow": "root-only secret line\n"})
    fleet.host.add_dataset("zroot/warden/atlas/state", st)
    fleet.host.add_dataset("zroot/other", other)
    real_source = backup.Snapshots.source

    def swap_then_snapshot(self, path):
        if path == str(ws) and not ws.is_symlink():
            os.rename(ws, ws.parent / "workspace.away")
            os.symlink(other, ws)
        return real_source(self, path)

    monkeypatch.setattr(backup.Snapshots, "source", swap_then_snapshot)
    res = backup.backup_fleet(fleet.plan, now=at(0))["agents"]["atlas"]
    assert "zfs snapshot zroot/other@warden-backup-20250101T031700Z" not in fleet.calls_made("zfs")
    assert b"root-only secret" not in archived_bytes(fleet.paths("atlas")["backup_dir"])
    assert res["status"] == "failed" and "workspace" in res["msg"], res
    assert not (st / ".zfs").exists(), "the state's snapshot was destroyed"

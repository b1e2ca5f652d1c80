"""Bounded child processes, archives that stay verified, manifests that are
repaired instead of deleted, and the encrypted env file: regression tests
for a full disk, stalled children, rotten archives, damaged manifests and
the env restore."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import pathlib
import pwd
import signal
import subprocess
import sys

import pytest
from backup_helpers import PG_BIN, populate, psql, tree

from ansible_collections.warden.fleet.plugins.module_utils import backup
from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError

UTC = datetime.UTC
ONE_SHOT = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


def at(day, hour=3):
    return datetime.datetime(2025, 1, 1, hour, 17, tzinfo=UTC) + datetime.timedelta(days=day)


def good(fleet, agent="atlas"):
    return [a["name"] for a in backup.good_archives(str(fleet.paths(agent)["backup_dir"]), agent)]


def lock_is_free(agent_dir):
    fd = os.open(os.path.join(agent_dir, backup.LOCK_NAME), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def backup_in_child(fleet, timeout=60, setup=""):
    """backup_fleet in its own process group, killed (and the test failed)
    when it does not finish in time: a hang must fail the test, not block it."""
    plan_file = fleet.tmp / "plan.json"
    plan_file.write_text(json.dumps(fleet.plan))
    code = (
        "import json, sys\n"
        "from ansible_collections.warden.fleet.plugins.module_utils import backup as b\n"
        f"{setup}\n"
        "res = b.backup_fleet(json.load(open(sys.argv[1])))\n"
        "print(json.dumps(res, default=str))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(backup.__file__).parents[6]))
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(plan_file)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the backup did not finish within {timeout} s (hung with the agent's lock held)")
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs for the backup directory: a full disk, for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fake_commands(tmp_path, monkeypatch, **scripts):
    """Put shell scripts first on PATH (e.g. a zstd or jexec that stalls)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = bindir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


# --------------------------------------------------------------------------
# 2. a full disk or a stalled child never hangs the backup with the lock held


@pytest.mark.parametrize("compression", ["zstd", "xz", "gzip"])
def test_full_disk_fails_the_agent_cleanly_naming_the_cause(make_fleet, small_disk, compression):
    fleet = make_fleet("atlas", backup={"dir": str(small_disk), "compression": compression})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    (ws / "random.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    agent_dir = fleet.paths("atlas")["backup_dir"]

    res = backup_in_child(fleet)

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "failed"
    assert f"No space left on device on {agent_dir}/" in atlas["msg"], atlas["msg"]
    assert "FAILED: atlas" in res["summary"]
    # the archive in progress is gone, nothing is taken as good, the lock is free
    assert sorted(n for n in os.listdir(agent_dir) if not n.startswith(".lock")) == []
    assert lock_is_free(agent_dir)
    # with room again, the next run backs the agent up
    (ws / "random.bin").unlink()
    res = backup.backup_fleet(fleet.plan)
    assert res["agents"]["atlas"]["status"] == "created"
    backup.verify_archive(res["created"][0])


def test_full_disk_while_dumping_a_database(make_fleet, small_disk, postgres):
    fleet = make_fleet("atlas", db=("atlas",), backup={"dir": str(small_disk)})
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    db = fleet.plan["agents"]["atlas"]["db"]
    for name in db["databases"].values():
        psql(postgres, f"DROP DATABASE IF EXISTS {name}")
        psql(postgres, f"CREATE DATABASE {name}")
    ops = db["databases"]["ops"]
    # ~3 MB of dump that compresses badly: more than the disk and than a pipe's buffer
    psql(
        postgres,
        "CREATE TABLE noise AS SELECT g, md5(random()::text) || md5(random()::text) AS t "
        "FROM generate_series(1, 60000) g",
        db=ops,
    )
    agent_dir = fleet.paths("atlas")["backup_dir"]

    res = backup_in_child(fleet)

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "failed"
    assert f"No space left on device on {agent_dir}/" in atlas["msg"], atlas["msg"]
    assert [n for n in os.listdir(agent_dir) if n != backup.LOCK_NAME] == []
    assert lock_is_free(agent_dir)
    assert PG_BIN.exists()


def test_a_stalled_database_dump_is_killed(make_fleet, tmp_path, monkeypatch):
    fleet = make_fleet("atlas", db=("atlas",))
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    # pg_dump waiting forever (a lock held in the database, a hung jail)
    fake_commands(tmp_path, monkeypatch, jexec="exec sleep 600")
    agent_dir = fleet.paths("atlas")["backup_dir"]

    res = backup_in_child(fleet, setup="b.archive.CHILD_IDLE_TIMEOUT = b.dumps.CHILD_IDLE_TIMEOUT = 1")

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "failed"
    assert "produced no output for 1 s and was killed" in atlas["msg"], atlas["msg"]
    assert [n for n in os.listdir(agent_dir) if n != backup.LOCK_NAME] == []
    assert lock_is_free(agent_dir)


def test_a_stalled_compressor_is_killed(make_fleet, tmp_path, monkeypatch):
    fleet = make_fleet("atlas", backup={"compression": "zstd"})
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    (ws / "random.bin").write_bytes(os.urandom(1024 * 1024))
    # a zstd that reads nothing: the tar writer blocks on the full pipe
    fake_commands(tmp_path, monkeypatch, zstd="exec sleep 600")
    agent_dir = fleet.paths("atlas")["backup_dir"]

    res = backup_in_child(fleet, setup="b.archive.CHILD_IDLE_TIMEOUT = b.dumps.CHILD_IDLE_TIMEOUT = 1")

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "failed"
    assert "zstd made no progress for 1 s and was killed" in atlas["msg"], atlas["msg"]
    assert [n for n in os.listdir(agent_dir) if n != backup.LOCK_NAME] == []
    assert lock_is_free(agent_dir)


def test_no_manifest_written_no_archive_left(make_fleet, monkeypatch):
    """The disk fills up between the archive and its manifest: the archive of that run goes too."""
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    agent_dir = fleet.paths("atlas")["backup_dir"]
    real = backup.atomic_write

    def full(path, data, mode=0o600, durable=True):
        if path.endswith(".manifest.json"):
            raise backup.io_error(OSError(28, "No space left on device"), path)
        return real(path, data, mode, durable)

    monkeypatch.setattr(backup.job, "atomic_write", full)
    res = backup.backup_fleet(fleet.plan, now=at(0))
    assert res["agents"]["atlas"]["status"] == "failed"
    assert "No space left on device on " in res["agents"]["atlas"]["msg"]
    assert [n for n in os.listdir(agent_dir) if not n.startswith(".")] == []
    assert lock_is_free(agent_dir)


def test_a_command_that_does_not_finish_is_killed():
    with pytest.raises(BackupError, match="did not finish within 1 s"):
        backup.run(["sleep", "30"], timeout=1)


# --------------------------------------------------------------------------
# 6. the unchanged check proves the newest archive intact


def test_a_rotten_newest_archive_is_moved_aside_and_a_new_one_made(make_fleet):
    fleet = make_fleet("atlas", backup=ONE_SHOT)
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    before = tree(ws)
    first = pathlib.Path(backup.backup_fleet(fleet.plan, now=at(0))["created"][0])
    assert backup.backup_fleet(fleet.plan, now=at(1))["agents"]["atlas"]["status"] == "unchanged"
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x01
    first.write_bytes(bytes(data))

    res = backup.backup_fleet(fleet.plan, now=at(2))

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "created", "a damaged newest archive is not reported as unchanged"
    [damaged] = atlas["damaged"]
    assert damaged["archive"] == str(first) and "sha256" in damaged["error"]
    kept = pathlib.Path(damaged["moved_to"])
    assert kept.parent == fleet.paths("atlas")["backup_dir"] / "damaged"
    assert kept.read_bytes() == bytes(data), "kept for inspection, not deleted"
    assert (kept.parent / (first.name + ".manifest.json")).exists()
    assert "DAMAGED: atlas" in res["summary"] and res["damaged_agents"] == ["atlas"]
    # the only archive (keep_last 1) is a new, complete one
    assert good(fleet) == [os.path.basename(atlas["archive"])]
    backup.verify_archive(atlas["archive"])
    (ws / "AGENTS.md").write_text("changed\n")
    backup.restore_agent(fleet.plan, "atlas")
    assert tree(ws) == before
    # and the next run is quiet again
    res = backup.backup_fleet(fleet.plan, now=at(3))
    assert res["agents"]["atlas"]["damaged"] == [] and res["damaged_agents"] == []


def test_rot_that_keeps_size_and_mtime_is_found_by_the_scheduled_full_check(make_fleet):
    fleet = make_fleet("atlas")  # verify_every: 7 by default
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    archive = pathlib.Path(backup.backup_fleet(fleet.plan, now=at(0))["created"][0])
    st = archive.stat()
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x10
    archive.write_bytes(bytes(data))
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))

    # within the week only size and mtime are compared: nothing to see, nothing read
    assert backup.backup_fleet(fleet.plan, now=at(6))["agents"]["atlas"]["status"] == "unchanged"
    # a week after the last full check the sha256 is checked again
    res = backup.backup_fleet(fleet.plan, now=at(7))
    assert res["agents"]["atlas"]["status"] == "created"
    assert res["agents"]["atlas"]["damaged"][0]["archive"] == str(archive)


def test_verify_every_zero_hashes_the_newest_archive_every_run(make_fleet, monkeypatch):
    fleet = make_fleet("atlas", backup={"verify_every": 0})
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    archive = backup.backup_fleet(fleet.plan, now=at(0))["created"][0]
    hashed = []
    real = backup.sha256_file
    for user in (backup.job, backup.manifest, backup.extract):
        monkeypatch.setattr(user, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert backup.backup_fleet(fleet.plan, now=at(0, 4))["agents"]["atlas"]["status"] == "unchanged"
    assert hashed == [archive]


def test_listing_shows_the_last_full_verification_and_a_damaged_archive(make_fleet, tmp_path, capsys):
    fleet = make_fleet("atlas")
    populate(fleet.paths("atlas")["workspace"], fleet.paths("atlas")["state"])
    archive = pathlib.Path(backup.backup_fleet(fleet.plan, now=at(0))["created"][0])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(fleet.plan))

    info = backup.agent_info(fleet.plan, "atlas")
    assert info["backup"]["verified"] is True
    assert info["backup"]["last_full_verification"] == "2025-01-01T03:17:00Z"
    assert backup.cli(["--plan", str(plan_file), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert " yes " in next(row for row in lines if row.startswith("atlas "))
    assert "atlas: newest archive last verified in full (sha256) 2025-01-01T03:17:00Z" in lines

    # `warden verify` records its full check too
    assert backup.cli(["--plan", str(plan_file), "verify", "atlas"]) == 0
    today = datetime.datetime.now(UTC).strftime("%Y-%m-%d")
    assert backup.agent_info(fleet.plan, "atlas")["backup"]["last_full_verification"].startswith(today)
    capsys.readouterr()

    data = bytearray(archive.read_bytes())
    data[-20] ^= 0x01
    archive.write_bytes(bytes(data))
    info = backup.agent_info(fleet.plan, "atlas")
    assert info["backup"]["verified"] is False and "last full verification" in info["backup"]["error"]
    assert backup.cli(["--plan", str(plan_file), "list"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("atlas "))
    assert " NO " in line
    # check mode reports the damage and moves nothing
    res = backup.backup_fleet(fleet.plan, check_mode=True, now=at(1))
    assert res["agents"]["atlas"]["status"] == "would_create"
    assert res["agents"]["atlas"]["damaged"][0]["moved_to"] is None and archive.exists()
    # the host command exits non-zero when it found a damaged archive
    assert backup.cli(["--plan", str(plan_file), "backup"]) == 1
    assert "DAMAGED: atlas" in capsys.readouterr().out
    assert not archive.exists()


# --------------------------------------------------------------------------
# 7. a damaged manifest is never a reason to delete an archive


def _two_archives(fleet):
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    older = backup.backup_fleet(fleet.plan, now=at(0))["created"][0]
    first_tree = tree(ws)
    (ws / "AGENTS.md").write_text("second\n")
    newer = backup.backup_fleet(fleet.plan, now=at(1))["created"][0]
    return older, newer, first_tree


def test_a_damaged_manifest_is_rebuilt_from_the_archive(make_fleet):
    fleet = make_fleet("atlas")
    older, _newer, first_tree = _two_archives(fleet)
    mpath = pathlib.Path(older + ".manifest.json")
    damaged_text = mpath.read_text()[:200]
    mpath.write_text(damaged_text)  # truncated: does not parse
    sha = backup.sha256_file(older)

    res = backup.backup_fleet(fleet.plan, now=at(2))

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "unchanged"
    assert older not in atlas["removed_leftovers"] and os.path.exists(older)
    assert atlas["rebuilt_manifests"] == [older]
    assert backup.sha256_file(older) == sha
    manifest = json.loads(mpath.read_text())
    assert manifest["rebuilt"]["reason"] == "manifest damaged" and manifest["archive_sha256"] == sha
    kept = fleet.paths("atlas")["backup_dir"] / "damaged" / mpath.name
    assert kept.read_text() == damaged_text, "the damaged manifest is kept for inspection"
    assert os.path.basename(older) in good(fleet)
    backup.verify_archive(older, members=True)
    ws = fleet.paths("atlas")["workspace"]
    backup.restore_agent(fleet.plan, "atlas", archive=older)
    assert tree(ws) == first_tree


def test_an_archive_without_manifest_is_rebuilt_not_deleted(make_fleet, postgres):
    """The crash window between the archive's rename and its manifest: the data was verified already."""
    fleet = make_fleet("atlas", db=("atlas",))
    db = fleet.plan["agents"]["atlas"]["db"]
    for name in db["databases"].values():
        psql(postgres, f"DROP DATABASE IF EXISTS {name}")
        psql(postgres, f"CREATE DATABASE {name}")
    psql(postgres, "CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", db=db["databases"]["ops"])
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    os.link(ws / "AGENTS.md", ws / "AGENTS-hardlink.md")
    archive = backup.backup_fleet(fleet.plan, now=at(0))["created"][0]
    original = json.loads(pathlib.Path(archive + ".manifest.json").read_text())
    assert [f["path"] for f in original["files"] if f["type"] == "h"] == ["workspace/AGENTS.md"]
    os.unlink(archive + ".manifest.json")

    res = backup.backup_fleet(fleet.plan, now=at(1))

    atlas = res["agents"]["atlas"]
    assert atlas["rebuilt_manifests"] == [archive] and os.path.exists(archive)
    rebuilt = json.loads(pathlib.Path(archive + ".manifest.json").read_text())
    assert rebuilt["rebuilt"]["reason"] == "manifest missing"
    assert sorted(rebuilt["files"], key=lambda f: f["path"]) == sorted(original["files"], key=lambda f: f["path"])
    assert [(d["key"], d["sha256"], d["content_sha256"]) for d in rebuilt["databases"]] == [
        (d["key"], d["sha256"], d["content_sha256"]) for d in original["databases"]
    ]
    assert rebuilt["archive_sha256"] == original["archive_sha256"]
    # no content digest: this run made a fresh archive rather than trust it for "unchanged"
    assert atlas["status"] == "created"


def test_a_manifest_of_another_format_version_is_left_alone(make_fleet):
    fleet = make_fleet("atlas", backup=ONE_SHOT)
    older, _newer, _first = _two_archives(fleet)
    # keep_last 1 pruned the older one; put a newer-format backup in its place
    wide = dict(fleet.plan, backup=dict(fleet.plan["backup"], keep_last=5))
    ws = fleet.paths("atlas")["workspace"]
    (ws / "AGENTS.md").write_text("third\n")
    third = backup.backup_fleet(wide, now=at(2))["created"][0]
    mpath = pathlib.Path(third + ".manifest.json")
    manifest = json.loads(mpath.read_text())
    manifest["format"] = "warden-backup/2"
    mpath.write_text(json.dumps(manifest))
    text = mpath.read_text()

    (ws / "AGENTS.md").write_text("fourth\n")
    res = backup.backup_fleet(fleet.plan, now=at(3))

    atlas = res["agents"]["atlas"]
    assert atlas["status"] == "created"
    assert atlas["unknown_format"] == [third]
    assert os.path.exists(third) and mpath.read_text() == text, "neither deleted nor rewritten"
    assert third not in atlas["removed_leftovers"] and third not in atlas["pruned"]
    assert "another format" in res["summary"]


def test_an_archive_that_does_not_match_its_manifest_size_is_moved_aside(make_fleet):
    fleet = make_fleet("atlas")
    older, _newer, _first = _two_archives(fleet)
    with open(older, "ab") as handle:
        handle.write(b"appended")
    res = backup.backup_fleet(fleet.plan, now=at(2))
    atlas = res["agents"]["atlas"]
    [damaged] = atlas["damaged"]
    assert damaged["archive"] == older and "size" in damaged["error"]
    assert pathlib.Path(damaged["moved_to"]).read_bytes().endswith(b"appended")
    assert older not in atlas["removed_leftovers"]


def test_an_unreadable_archive_without_manifest_is_moved_aside(make_fleet):
    fleet = make_fleet("atlas")
    older, _newer, _first = _two_archives(fleet)
    os.unlink(older + ".manifest.json")
    with open(older, "r+b") as handle:
        handle.truncate(os.path.getsize(older) // 2)
    res = backup.backup_fleet(fleet.plan, now=at(2))
    [damaged] = res["agents"]["atlas"]["damaged"]
    assert damaged["archive"] == older and "does not verify" in damaged["error"]
    assert os.path.exists(damaged["moved_to"])
    assert res["agents"]["atlas"]["rebuilt_manifests"] == []


# --------------------------------------------------------------------------
# 8. the encrypted env file


def _env_fleet(make_fleet, tmp_path, user=None):
    passfile = tmp_path / "pass"
    passfile.write_text("correct horse battery staple\n")
    passfile.chmod(0o600)
    fleet = make_fleet("atlas", backup={"include_env": True, "env_passphrase_file": str(passfile)})
    if user:
        fleet.plan["agents"]["atlas"]["user"].update(name=user.pw_name, group=None)
    ws = fleet.paths("atlas")["workspace"]
    populate(ws, fleet.paths("atlas")["state"])
    env_file = fleet.paths("atlas")["env_file"]
    env_file.parent.mkdir(parents=True)
    env_file.write_text("GATEWAY_TOKEN=s3cr3t-t0ken-value\n")
    env_file.chmod(0o600)
    return fleet, passfile, env_file


def test_env_restore_never_writes_plaintext_wider_than_0600(make_fleet, tmp_path, monkeypatch):
    fleet, passfile, env_file = _env_fleet(make_fleet, tmp_path)
    backup.backup_fleet(fleet.plan)
    # an openssl that, once the real one is done, notes every file of the env directory and its mode
    real = backup.require_command("openssl")
    modes = tmp_path / "modes.log"
    fake_commands(
        tmp_path,
        monkeypatch,
        openssl=f'"{real}" "$@"; rc=$?\nfor f in "{env_file.parent}"/* "{env_file.parent}"/.[!.]*; do\n'
        f'  [ -f "$f" ] && stat -c "%a %n" "$f" >> "{modes}"\ndone\nexit $rc',
    )
    old_umask = os.umask(0o022)
    try:
        env_file.write_text("GATEWAY_TOKEN=rotated\n")
        res = backup.restore_agent(fleet.plan, "atlas", restore_env=True, env_passphrase_file=str(passfile))
    finally:
        os.umask(old_umask)
    assert res["env_restored"] is True
    assert env_file.read_text() == "GATEWAY_TOKEN=s3cr3t-t0ken-value\n"
    assert env_file.stat().st_mode & 0o777 == 0o600
    seen = modes.read_text().split("\n") if modes.exists() else []
    wider = [line for line in seen if line and int(line.split()[0], 8) & 0o077]
    assert wider == [], "no file of the env directory was readable by others"
    assert [n for n in os.listdir(env_file.parent) if n != env_file.name] == []


def test_a_wrong_passphrase_stops_the_restore_before_anything_is_swapped(make_fleet, tmp_path):
    fleet, passfile, env_file = _env_fleet(make_fleet, tmp_path)
    backup.backup_fleet(fleet.plan)
    ws = fleet.paths("atlas")["workspace"]
    (ws / "AGENTS.md").write_text("work since the backup\n")
    env_file.write_text("GATEWAY_TOKEN=rotated\n")
    subprocess.run(["service", "atlas", "start"], check=True, capture_output=True)
    fleet.forget_calls()
    before, home = tree(ws), sorted(os.listdir(fleet.paths("atlas")["home"]))
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)

    with pytest.raises(BackupError, match="wrong passphrase"):
        backup.restore_agent(fleet.plan, "atlas", restore_env=True, env_passphrase_file=str(wrong))

    assert tree(ws) == before, "the workspace was not swapped"
    assert sorted(os.listdir(fleet.paths("atlas")["home"])) == home
    assert fleet.calls_made() == [], "the service was not stopped"
    assert env_file.read_text() == "GATEWAY_TOKEN=rotated\n"
    assert [n for n in os.listdir(env_file.parent) if n != env_file.name] == [], "no partial file is left"


def test_a_wrong_passphrase_that_openssl_accepts_is_still_refused(make_fleet, tmp_path):
    """openssl's padding check lets about one wrong key in 256 through; the recorded HMAC does not."""
    fleet, passfile, env_file = _env_fleet(make_fleet, tmp_path)
    archive = backup.backup_fleet(fleet.plan)["created"][0]
    scratch = tmp_path / "x"
    scratch.mkdir()
    subprocess.run(["tar", "-C", str(scratch), "--zstd", "-xf", archive, "env/atlas.env.enc"], check=True)
    enc = scratch / "env" / "atlas.env.enc"
    wrong = tmp_path / "lucky"
    for attempt in range(3000):
        wrong.write_text(f"wrong {attempt}\n")
        proc = subprocess.run(
            ["openssl", "enc", "-d", "-aes-256-cbc", "-pbkdf2", "-in", str(enc), "-pass", f"file:{wrong}"],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            break
    else:
        pytest.skip("no wrong passphrase with valid padding found")
    wrong.chmod(0o600)
    with pytest.raises(BackupError, match="wrong passphrase"):
        backup.restore_agent(fleet.plan, "atlas", restore_env=True, env_passphrase_file=str(wrong))
    assert env_file.read_text() == "GATEWAY_TOKEN=s3cr3t-t0ken-value\n"


def test_the_restored_env_file_belongs_to_the_agent(make_fleet, tmp_path):
    agent_user = pwd.getpwnam("nobody")
    fleet, passfile, env_file = _env_fleet(make_fleet, tmp_path, user=agent_user)
    backup.backup_fleet(fleet.plan)
    env_file.write_text("GATEWAY_TOKEN=rotated\n")
    backup.restore_agent(fleet.plan, "atlas", restore_env=True, env_passphrase_file=str(passfile))
    st = env_file.stat()
    assert (st.st_uid, st.st_gid) == (agent_user.pw_uid, agent_user.pw_gid)
    assert st.st_mode & 0o777 == 0o600


def test_a_passphrase_file_not_owned_by_root_is_refused(make_fleet, tmp_path):
    fleet, passfile, env_file = _env_fleet(make_fleet, tmp_path)
    archive = backup.backup_fleet(fleet.plan)["created"][0]
    nobody = pwd.getpwnam("nobody")
    os.chown(passfile, nobody.pw_uid, nobody.pw_gid)
    env_file.write_text("GATEWAY_TOKEN=rotated\n")
    res = backup.backup_fleet(fleet.plan)
    assert res["agents"]["atlas"]["status"] == "failed"
    assert "not root" in res["agents"]["atlas"]["msg"]
    with pytest.raises(BackupError, match="not root"):
        backup.restore_agent(fleet.plan, "atlas", archive=archive, restore_env=True, env_passphrase_file=str(passfile))
    # a symlink to a good passphrase file is refused as well
    os.chown(passfile, 0, 0)
    link = tmp_path / "pass-link"
    link.symlink_to(passfile)
    with pytest.raises(BackupError, match="symlink"):
        backup.restore_agent(fleet.plan, "atlas", archive=archive, restore_env=True, env_passphrase_file=str(link))


def test_an_env_file_swapped_for_a_symlink_is_not_read(make_fleet, tmp_path):
    fleet, passfile, env_file = _env_fleet(make_fleet, tmp_path)
    secret = tmp_path / "root-only"
    secret.write_text("root:$6$hash\n")
    secret.chmod(0o600)
    env_file.unlink()
    env_file.symlink_to(secret)
    res = backup.backup_fleet(fleet.plan)
    assert res["agents"]["atlas"]["status"] == "failed"
    assert "is a symlink" in res["agents"]["atlas"]["msg"]
    assert res["created"] == []


def test_a_failed_env_write_leaves_no_partial_file(tmp_path, monkeypatch):
    dest = tmp_path / "etc" / "atlas.env"
    dest.parent.mkdir()
    dest.write_text("OLD=1\n")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(BackupError, match=f"No space left on device on {dest}"):
        backup.write_private_file(str(dest), b"NEW=1\n")
    monkeypatch.undo()
    assert os.listdir(dest.parent) == ["atlas.env"] and dest.read_text() == "OLD=1\n"

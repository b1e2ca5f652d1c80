"""What is left of a removed agent, whether a verified backup holds its files, and removing it without following links.

Real files in a temporary directory and real archives made by the backup core (gzip, no databases).
"""

from __future__ import annotations

import os
import shutil

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import agent_remove as ar
from ansible_collections.warden.fleet.plugins.module_utils.agent_runtime import UnsafePath
from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError, backup_fleet


@pytest.fixture
def plan(tmp_path):
    home = tmp_path / "agents" / "hermes"
    (home / "workspace" / "notes").mkdir(parents=True)
    (home / "state").mkdir()
    (home / "logs").mkdir()
    (home / "workspace" / "notes" / "a.md").write_text("hermes remembers\n")
    for d in ("souls/hermes/.git", "etc", "run", "log"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "etc" / "hermes.env").write_text("AGENT_NAME='hermes'\n")
    return {
        "host": "bsd1.example.net",
        "root": str(tmp_path),
        "backup": {"dir": str(tmp_path / "backups"), "keep_last": 7, "keep_daily": 7, "keep_weekly": 4,
                   "keep_monthly": 6, "verify_every": 7, "include_env": False, "compression": "gzip",
                   "exclude": ["*.lock", ".cache/"]},
        "agents": {"hermes": {
            "name": "hermes", "state": "absent", "user": {"name": "warden-test-nobody", "group": "warden-test-nobody"},
            "paths": {"home": str(home), "workspace": str(home / "workspace"), "state": str(home / "state"),
                      "logs": str(home / "logs"), "soul": str(tmp_path / "souls" / "hermes"),
                      "env_file": str(tmp_path / "etc" / "hermes.env"),
                      "backup_dir": str(tmp_path / "backups" / "hermes")},
            "service": {"name": "hermes", "pidfile": str(tmp_path / "run" / "hermes.pid"),
                        "child_pidfile": str(tmp_path / "run" / "hermes.child.pid"),
                        "log": str(tmp_path / "log" / "hermes.log")},
        }},
    }


def workspace(plan):
    return plan["agents"]["hermes"]["paths"]["workspace"]


def back_up(plan):
    result = backup_fleet(plan, agents=["hermes"])
    assert result["failed_agents"] == [], result["summary"]
    return result["agents"]["hermes"]["archive"]


def test_nothing_on_disk_needs_no_backup(plan):
    shutil.rmtree(plan["agents"]["hermes"]["paths"]["home"])
    assert ar.backup_coverage(plan, "hermes")["status"] == "nothing"


def test_without_an_archive_a_backup_is_needed(plan):
    assert ar.backup_coverage(plan, "hermes") == {"status": "needed", "archive": None, "reason": "it has no backup"}


def test_the_newest_archive_covers_the_files_as_they_are(plan):
    os.symlink("/etc/passwd", os.path.join(workspace(plan), "passwd"))
    archive = back_up(plan)
    assert ar.backup_coverage(plan, "hermes") == {"status": "covered", "archive": archive, "reason": ""}
    # what the backup leaves out by its exclusions is not asked for
    with open(os.path.join(workspace(plan), "agent.lock"), "w") as fh:
        fh.write("4242\n")
    assert ar.backup_coverage(plan, "hermes")["status"] == "covered"


@pytest.mark.parametrize("change", ["content", "new file", "removed file", "link target", "file for link"])
def test_any_change_since_the_archive_needs_a_new_backup(plan, change):
    link = os.path.join(workspace(plan), "passwd")
    os.symlink("/etc/passwd", link)
    note = os.path.join(workspace(plan), "notes", "a.md")
    back_up(plan)
    if change == "content":
        with open(note, "w") as fh:
            fh.write("hermes forgot\n")  # same size or not, the sha256 tells
    elif change == "new file":
        with open(os.path.join(workspace(plan), "late.md"), "w") as fh:
            fh.write("late\n")
    elif change == "removed file":
        os.unlink(note)
    elif change == "link target":
        os.unlink(link)
        os.symlink("/etc/group", link)
    else:
        os.unlink(link)
        with open(link, "w") as fh:
            fh.write("root:*:0:0::0:0:Charlie &:/root:/bin/sh\n")
    coverage = ar.backup_coverage(plan, "hermes")
    assert coverage["status"] == "needed"
    assert "lacks workspace/" in coverage["reason"]


def test_an_archive_that_does_not_verify_does_not_cover(plan):
    archive = back_up(plan)
    with open(archive, "r+b") as fh:
        fh.seek(os.path.getsize(archive) // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 1]))
    coverage = ar.backup_coverage(plan, "hermes")
    assert coverage["status"] == "needed"
    assert "does not verify" in coverage["reason"] and "sha256" in coverage["reason"]


def test_leftovers_name_every_path_of_the_plan_that_exists_and_the_rotated_logs(plan, tmp_path):
    for name in ("hermes.log", "hermes.log.0.bz2", "hermes.log.1", "hermes.log.old", "hermesx.log.0"):
        (tmp_path / "log" / name).write_text("x\n")
    (tmp_path / "run" / "hermes.pid").write_text("1\n")
    found = ar.leftovers(plan["agents"]["hermes"])
    assert found["user"] is False
    assert found["paths"] == [
        str(tmp_path / "etc" / "hermes.env"),
        str(tmp_path / "run" / "hermes.pid"),
        str(tmp_path / "log" / "hermes.log"),
        str(tmp_path / "log" / "hermes.log.0.bz2"),
        str(tmp_path / "log" / "hermes.log.1"),
        str(tmp_path / "souls" / "hermes"),
        plan["agents"]["hermes"]["paths"]["home"],
    ]


def test_removing_the_home_never_follows_the_agents_links(plan, tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "master.passwd").write_text("root:secret\n")
    (outside / "sub" / "kept").write_text("kept\n")
    home = plan["agents"]["hermes"]["paths"]["home"]
    os.symlink(str(outside / "master.passwd"), os.path.join(workspace(plan), "passwd"))
    os.symlink(str(outside), os.path.join(home, "state", "etc"))
    os.symlink(str(outside / "sub"), os.path.join(workspace(plan), "notes", "deep"))
    assert ar.remove_path(home) is True
    assert not os.path.lexists(home)
    assert not os.path.lexists(os.path.join(os.path.dirname(home), ".warden-removing-hermes"))
    assert (outside / "master.passwd").read_text() == "root:secret\n"
    assert (outside / "sub" / "kept").read_text() == "kept\n"
    assert ar.remove_path(home) is False


def test_a_link_in_place_of_a_removed_path_is_removed_not_followed(plan, tmp_path):
    target = tmp_path / "etc" / "rc.conf"
    target.write_text("sshd_enable=YES\n")
    env = plan["agents"]["hermes"]["paths"]["env_file"]
    os.unlink(env)
    os.symlink(str(target), env)
    assert ar.remove_path(env) is True
    assert not os.path.lexists(env) and target.read_text() == "sshd_enable=YES\n"


def test_a_removal_stopped_half_way_is_finished(plan):
    home = plan["agents"]["hermes"]["paths"]["home"]
    staging = os.path.join(os.path.dirname(home), ".warden-removing-hermes")
    os.rename(home, staging)
    assert ar.leftovers(plan["agents"]["hermes"])["paths"][-1] == staging
    assert ar.remove_path(staging) is True
    assert not os.path.lexists(staging)


def test_a_parent_that_is_a_link_is_refused(plan, tmp_path):
    os.symlink(str(tmp_path / "agents"), str(tmp_path / "agents-link"))
    with pytest.raises(UnsafePath):
        ar.remove_path(str(tmp_path / "agents-link" / "hermes"))
    assert os.path.isdir(plan["agents"]["hermes"]["paths"]["home"])


def test_processes_reads_pgrep():
    calls = []

    def runner(answer):
        def run_command(argv):
            calls.append(argv)
            return answer
        return run_command

    assert ar.processes(runner((0, "4242 4243\n", "")), "hermes") == ["4242", "4243"]
    assert calls[-1] == ["/usr/bin/pgrep", "-d", " ", "-U", "hermes", "-j", "none"]
    assert ar.processes(runner((1, "", "")), "hermes") == []
    with pytest.raises(BackupError, match="pgrep -U hermes failed"):
        ar.processes(runner((2, "", "pgrep: unknown user\n")), "hermes")

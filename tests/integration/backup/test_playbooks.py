"""playbooks/backup.yml, list.yml, restore.yml and the backup_schedule role, run with ansible-playbook
against the session's stand-in FreeBSD host (`standin run`: the chroot connection, its Python and its
doubles), with warden_root, the etc dir and the backup dir in a temp dir mounted at the same path inside."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from backup_helpers import COMMAND, populate, tree

from ansible_collections.warden.fleet.plugins.module_utils import backup

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
STANDIN_CLI = ROOT / "tests" / "standin" / "standin_cli.py"
HOST = "bsd1.example.net"
# FreeBSD's Python, which the stand-in's chroot connection runs modules with
HOST_PYTHON = "/usr/local/bin/python3.11"


@pytest.fixture
def stand_in(tmp_path, freebsd):
    hostvars = {
        "warden_ext_if": "vtnet0",
        "warden_root": str(tmp_path / "root"),
        "warden_etc_dir": str(tmp_path / "etc"),
        "warden_backup": {
            "dir": str(tmp_path / "backups"),
            "copy_to": str(tmp_path / "offsite"),
            "schedule": {"minute": "5", "hour": "2", "weekday": "*"},
        },
        "warden_agents": {
            "atlas": {"subnet": "10.0.1", "command": COMMAND, "jails": ["git"]},
            "hermes": {"subnet": "10.0.2", "command": COMMAND, "jails": ["git"]},
        },
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"warden_hosts": {"hosts": {HOST: hostvars}}}))
    for agent in ("atlas", "hermes"):
        home = tmp_path / "root" / "agents" / agent
        populate(home / "workspace", home / "state", seed=agent)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )

    def play(playbook, *extra):
        # the stand-in runs the jail atlasgit, not hermesgit
        return subprocess.run(
            [sys.executable, str(STANDIN_CLI), "run", freebsd.name, "--"]
            + [str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    play.tmp = tmp_path
    play.host = freebsd
    return play


def ws(tmp, agent):
    return tmp / "root" / "agents" / agent / "workspace"


def test_backup_list_restore_playbooks(stand_in):
    tmp = stand_in.tmp
    result = stand_in("playbooks/backup.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warden backup {HOST}: 2 created; pruned 0" in result.stdout
    archives = {a: backup.good_archives(str(tmp / "backups" / a), a) for a in ("atlas", "hermes")}
    assert all(len(v) == 1 for v in archives.values())
    # copied off the host, checksum verified
    for agent, found in archives.items():
        copy = tmp / "offsite" / HOST / agent / found[0]["name"]
        assert backup.sha256_file(str(copy)) == found[0]["manifest"]["archive_sha256"]
        assert (copy.parent / (found[0]["name"] + ".manifest.json")).exists()

    # second run: nothing changed
    result = stand_in("playbooks/backup.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warden backup {HOST}: 2 unchanged; pruned 0" in result.stdout

    out = tmp / "list.json"
    result = stand_in("playbooks/list.yml", "-e", f"warden_list_json={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    # the table, as printed (the YAML callback folds long lines: compare with whitespace collapsed)
    flat = " ".join(result.stdout.split())
    assert "AGENT STATE WORKSPACE SIZE MODIFIED BACKUP AGE BACKUP SIZE VERIFIED SERVICE JAILS" in flat
    for agent, jails in (("atlas", "1/1 up"), ("hermes", "0/1 up")):
        row = flat[flat.index(f"- {agent} present {ws(tmp, agent)}") :].split(" - ", maxsplit=1)[0]
        row = row.split(" PLAY ", maxsplit=1)[0]
        assert row.endswith(f"yes stopped {jails}"), row
        assert " ago " in row and "never" not in row
    listing = json.loads(out.read_text())
    rows = {a["agent"]: a for a in listing[HOST]["agents"]}
    assert sorted(rows) == ["atlas", "hermes"]
    assert rows["atlas"]["backup"]["verified"] is True and rows["atlas"]["backup"]["age"] < 600
    assert rows["atlas"]["jails"] == [{"name": "atlasgit", "slot": "git", "running": True}]

    # a corrupted archive is refused and nothing changes
    before = tree(ws(tmp, "atlas"))
    (ws(tmp, "atlas") / "AGENTS.md").write_text("changed after the backup\n")
    changed = tree(ws(tmp, "atlas"))
    archive = pathlib.Path(archives["atlas"][0]["path"])
    pristine = archive.read_bytes()
    data = bytearray(pristine)
    data[len(data) // 3] ^= 0x40
    archive.write_bytes(bytes(data))
    result = stand_in("playbooks/restore.yml", "-e", "warden_restore_agent=atlas")
    assert result.returncode != 0
    assert "sha256" in result.stdout
    assert tree(ws(tmp, "atlas")) == changed

    # restore from the off-host copy (as on a new host)
    offsite = tmp / "offsite" / HOST / "atlas" / archive.name
    result = stand_in("playbooks/restore.yml", "-e", f"warden_restore_from={offsite}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree(ws(tmp, "atlas")) == before
    assert archive.read_bytes() == pristine, "the good copy replaced the corrupted archive"


def test_backup_before_remove_fails_when_the_backup_cannot_be_verified(stand_in, tmp_path):
    playbook = tmp_path / "remove.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Remove an agent",
                    "hosts": "warden_hosts",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Plan",
                            "ansible.builtin.import_role": {"name": "warden.fleet.preflight"},
                            "vars": {"warden_preflight_use_facts": False},
                        },
                        {
                            "name": "Backup before removal",
                            "ansible.builtin.include_role": {
                                "name": "warden.fleet.backup",
                                "tasks_from": "before_remove",
                            },
                            "vars": {"warden_backup_remove_agent": "atlas"},
                        },
                        {"name": "Destroy", "ansible.builtin.debug": {"msg": "DESTROYING atlas"}},
                    ],
                }
            ]
        )
    )
    result = stand_in(playbook)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified archive" in result.stdout and "DESTROYING atlas" in result.stdout
    # the archive rots; the workspace is unchanged, so no new archive: verification must fail and stop the play
    agent_dir = tmp_path / "backups" / "atlas"
    archive = next(agent_dir.glob("atlas_*.tar.zst"))
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    result = stand_in(playbook)
    assert result.returncode != 0
    assert "DESTROYING atlas" not in result.stdout
    assert "sha256" in result.stdout


def test_backup_schedule_role_installs_cron_and_the_host_command(stand_in, tmp_path):
    prefix = tmp_path / "usr_local"
    cron = tmp_path / "cron.d" / "warden-backup"
    playbook = tmp_path / "schedule.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Schedule",
                    "hosts": "warden_hosts",
                    "gather_facts": False,
                    "vars": {
                        "warden_host_tools_prefix": str(prefix),
                        "warden_host_tools_python": HOST_PYTHON,
                        "warden_backup_schedule_cron_file": str(cron),
                    },
                    "tasks": [
                        {
                            "name": "Plan",
                            "ansible.builtin.import_role": {"name": "warden.fleet.preflight"},
                            "vars": {"warden_preflight_use_facts": False},
                        },
                        {"name": "Schedule", "ansible.builtin.import_role": {"name": "warden.fleet.backup_schedule"}},
                    ],
                }
            ]
        )
    )
    result = stand_in(playbook)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in cron.read_text().splitlines() if line and not line.startswith(("#", "SHELL", "PATH"))]
    assert lines == [
        f"5 2 * * * root /usr/bin/lockf -k -t 0 /var/run/warden-backup.lock {prefix}/bin/warden "
        f"--plan {tmp_path}/etc/plan.json backup >> /var/log/warden-backup.log 2>&1"
    ]
    assert cron.stat().st_mode & 0o777 == 0o644
    plan_file = tmp_path / "etc" / "plan.json"
    assert plan_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(plan_file.read_text())["agents"]["atlas"]["paths"]["workspace"] == str(ws(tmp_path, "atlas"))
    library = prefix / "lib" / "warden" / "warden_backup"
    package = pathlib.Path(backup.__file__).parent
    assert sorted(p.name for p in library.iterdir()) == sorted(p.name for p in package.glob("*.py"))
    for source in package.glob("*.py"):
        assert (library / source.name).read_bytes() == source.read_bytes(), "one source, copied as is"
    command = prefix / "bin" / "warden"
    assert command.read_text().splitlines()[0] == f"#!{HOST_PYTHON}"
    # the installed command works from the plan the role wrote, on the host
    out = stand_in.host.sh(f"{command} --plan {plan_file} backup", check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"warden backup {HOST}: 2 created; pruned 0"
    out = stand_in.host.sh(f"{command} --plan {plan_file} list", check=False)
    assert out.returncode == 0 and "atlas" in out.stdout and "hermes" in out.stdout
    # idempotent
    result = stand_in(playbook)
    assert result.returncode == 0 and "changed=0" in result.stdout, result.stdout


def test_backup_playbook_replaces_a_damaged_archive_and_fails(stand_in):
    tmp = stand_in.tmp
    result = stand_in("playbooks/backup.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    archive = pathlib.Path(backup.good_archives(str(tmp / "backups" / "atlas"), "atlas")[0]["path"])
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))

    result = stand_in("playbooks/backup.yml")

    assert result.returncode != 0, "a damaged archive fails the play"
    assert "DAMAGED: atlas" in result.stdout
    assert (tmp / "backups" / "atlas" / "damaged" / archive.name).read_bytes() == bytes(data)
    [new] = backup.good_archives(str(tmp / "backups" / "atlas"), "atlas")
    backup.verify_archive(new["path"])
    copy = tmp / "offsite" / HOST / "atlas" / new["name"]
    assert backup.sha256_file(str(copy)) == new["manifest"]["archive_sha256"], "the new archive was copied off"

"""Verify backup, listing and restore end to end on the stand-in FreeBSD host.

The stand-in (tests/standin) is a Linux chroot with doubles of FreeBSD's
commands, not FreeBSD. prepare left each agent's db jail running PostgreSQL
with the agent's three databases, and each agent's workspace and state;
converge ran site.yml and playbooks/backup.yml (twice, with idempotence).
These tests run playbooks/list.yml, backup.yml and restore.yml through the
stand-in's mapping (`standin run`) and read the results from the stand-in's
root directory and through `standin exec`.

Order matters: the listing and the second backup come before the restore,
which changes a workspace and a database first (fixtures chain them).
"""

import fnmatch
import glob
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NAME = os.environ.get("WARDEN_STANDIN_NAME", "molecule-backup")
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
ROOT = os.path.join(BASE, NAME, "root")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")
BIN = os.path.dirname(sys.executable)
INVENTORY = os.path.join(PROJECT, "inventories", "example", "hosts.yml")


def r(path):
    """A path of the stand-in, seen from the machine."""
    return os.path.join(ROOT, path.lstrip("/"))


def env():
    e = dict(os.environ)
    e["ANSIBLE_CONFIG"] = os.path.join(PROJECT, "ansible.cfg")
    e["PATH"] = BIN + os.pathsep + e.get("PATH", "")
    e["ANSIBLE_NOCOLOR"] = "1"
    e["ANSIBLE_FORCE_COLOR"] = "0"
    e["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"  # one line per table row
    return e


def playbook(name, *extra):
    """Run a playbook of the collection with the example inventory, mapped onto the stand-in."""
    argv = [STANDIN, "run", NAME, "--", os.path.join(BIN, "ansible-playbook"), "-i", INVENTORY,
            os.path.join(PROJECT, "playbooks", name), *extra]
    return subprocess.run(argv, capture_output=True, text=True, cwd=PROJECT, env=env(), check=False)


def recap(run):
    m = re.search(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", run.stdout, re.M)
    assert m, run.stdout
    return {"changed": int(m.group(1)), "unreachable": int(m.group(2)), "failed": int(m.group(3))}


def in_standin(*argv):
    proc = subprocess.run([STANDIN, "exec", NAME, "--", *argv], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc.stdout


def rows(jail, dbname):
    out = in_standin("jexec", "-l", "-U", "postgres", jail, "/usr/local/bin/psql", "-X", "-At", "-d", dbname,
                     "-c", "SELECT id, body FROM notes ORDER BY id")
    return out.splitlines()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(path, with_times=False):
    """Every entry under path: type, mode, owner, content sha256 or link target (and mtime)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for n in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            if os.path.islink(full):
                entry = ["link", os.readlink(full)]
            elif os.path.isdir(full):
                entry = ["dir", oct(st.st_mode & 0o7777)]
            else:
                entry = ["file", oct(st.st_mode & 0o7777), sha256(full)]
            entry += [st.st_uid, st.st_gid]
            if with_times:
                entry.append(st.st_mtime_ns)
            result[rel] = entry
    return result


def backed_up(entries, excludes):
    """The entries of tree() that a backup keeps: without the plan's exclude patterns
    ("dir/" a directory anywhere and what is under it, "*.ext" a base name)."""
    def excluded(rel):
        for pat in excludes:
            if pat.endswith("/"):
                if f"/{pat}" in f"/{rel}/":
                    return True
            elif fnmatch.fnmatch(os.path.basename(rel), pat):
                return True
        return False

    return {rel: e for rel, e in entries.items() if not excluded(rel)}


def agent_archives(agent):
    d = r(agent["paths"]["backup_dir"])
    return sorted(n for n in os.listdir(d) if not n.startswith(".") and not n.endswith(".manifest.json"))


def backup_dirs(plan):
    return {n: sorted(os.listdir(r(a["paths"]["backup_dir"]))) for n, a in plan["agents"].items()}


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", INVENTORY,
                           os.path.join(PROJECT, "playbooks", "validate.yml"), "-e", f"warden_plan_out={out}"],
                          capture_output=True, text=True, cwd=PROJECT, env=env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plans = json.loads(out.read_text())
    assert len(plans) == 1
    p = next(iter(plans.values()))
    p["agents"] = {n: a for n, a in p["agents"].items() if a["state"] == "present"}
    assert len(p["agents"]) >= 2, "the example inventory needs two agents to show the other one is untouched"
    assert all(a["db"] for a in p["agents"].values()), "every example agent has a db jail"
    return p


@pytest.fixture(scope="module")
def listing(plan, tmp_path_factory):
    out = tmp_path_factory.mktemp("list") / "list.json"
    run = playbook("list.yml", "-e", f"warden_list_json={out}")
    assert run.returncode == 0, run.stdout + run.stderr
    return {"run": run, "data": json.loads(out.read_text())}


@pytest.fixture(scope="module")
def second_backup(plan, listing):
    before = backup_dirs(plan)
    run = playbook("backup.yml")
    return {"run": run, "before": before, "after": backup_dirs(plan)}


@pytest.fixture(scope="module")
def restored(plan, listing, second_backup):
    """Change one agent's workspace and databases, then restore it with playbooks/restore.yml."""
    agent = plan["agents"][sorted(plan["agents"])[0]]
    others = [a for n, a in sorted(plan["agents"].items()) if n != agent["name"]]
    ws, state = r(agent["paths"]["workspace"]), r(agent["paths"]["state"])
    db = agent["db"]
    before = {
        "workspace": tree(ws),
        "state": tree(state),
        "rows": {k: rows(db["jail"], name) for k, name in db["databases"].items()},
        "others": {o["name"]: {"workspace": tree(r(o["paths"]["workspace"]), with_times=True),
                               "state": tree(r(o["paths"]["state"]), with_times=True),
                               "rows": {k: rows(o["db"]["jail"], name) for k, name in o["db"]["databases"].items()}}
                   for o in others},
        "backups": backup_dirs(plan),
    }
    # the agent works on: a file changes, one appears, one goes; a row changes, one is deleted
    with open(os.path.join(ws, "MEMORY.md"), "w", encoding="utf-8") as fh:
        fh.write("# overwritten after the backup\n")
    with open(os.path.join(ws, "notes", "after-backup.md"), "w", encoding="utf-8") as fh:
        fh.write("written after the backup\n")
    os.unlink(os.path.join(ws, "notes", "2026-01-01.md"))
    ops, brain = db["databases"]["ops"], db["databases"]["brain"]
    in_standin("jexec", "-l", "-U", "postgres", db["jail"], "/usr/local/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-d", ops, "-c", "UPDATE notes SET body = 'changed after the backup' WHERE id = 1")
    in_standin("jexec", "-l", "-U", "postgres", db["jail"], "/usr/local/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
               "-d", brain, "-c", "DELETE FROM notes WHERE id = 2")
    assert rows(db["jail"], ops) != before["rows"]["ops"]
    changed = tree(ws)
    run = playbook("restore.yml", "-l", plan["host"], "-e", f"warden_restore_agent={agent['name']}")
    return {"agent": agent, "others": others, "before": before, "changed": changed, "run": run,
            "excludes": plan["backup"]["exclude"]}


# ------------------------------------------------------------------ listing

def test_list_shows_every_agent_with_backup_age(plan, listing):
    data = listing["data"]
    assert list(data) == [plan["host"]]
    host = data[plan["host"]]
    assert host["host"] == plan["host"]
    assert [a["agent"] for a in host["agents"]] == sorted(plan["agents"])
    for a in host["agents"]:
        agent = plan["agents"][a["agent"]]
        assert a["workspace"] == agent["paths"]["workspace"] and a["exists"] is True
        b = a["backup"]
        assert b is not None, a
        assert isinstance(b["age"], int) and 0 <= b["age"] < 3600, b
        assert b["verified"] is True and b["error"] is None, b
        assert os.path.dirname(b["archive"]) == agent["paths"]["backup_dir"]
        assert a["backups"] == 1 and a["incomplete_backups"] == 0
        # every jail of the agent runs: prepare started the db jail, site.yml created and started the others
        assert {j["name"]: j["running"] for j in a["jails"]} == {j["name"]: True for j in agent["jails"]}
    assert host["orphans"] == []
    # the readable table names every agent with its backup age
    lines = [json.loads(x.strip().rstrip(",")) for x in listing["run"].stdout.splitlines()
             if re.match(r'^\s+"(AGENT|\w+\s+present)\s', x)]
    head = re.split(r"\s{2,}", lines[0])
    assert head[:8] == ["AGENT", "STATE", "WORKSPACE", "SIZE", "MODIFIED", "BACKUP AGE", "BACKUP SIZE", "VERIFIED"]
    table = {row[0]: dict(zip(head, row, strict=True)) for row in (re.split(r"\s{2,}", x) for x in lines[1:])}
    assert sorted(table) == sorted(plan["agents"])
    for row in table.values():
        assert re.match(r"^\d+[smhd]", row["BACKUP AGE"]) and row["VERIFIED"] == "yes", row


# ------------------------------------------------------------------ archives

def test_archives_and_manifests_match(plan):
    for name, agent in plan["agents"].items():
        d = r(agent["paths"]["backup_dir"])
        archives = agent_archives(agent)
        assert len(archives) == 1 and re.match(rf"^{name}_\d{{8}}T\d{{6}}Z\.tar\.zst$", archives[0]), archives
        path = os.path.join(d, archives[0])
        with open(path + ".manifest.json", encoding="utf-8") as fh:
            manifest = json.load(fh)
        assert manifest["agent"] == name and manifest["host"] == plan["host"]
        assert manifest["archive"] == archives[0]
        assert manifest["archive_size"] == os.path.getsize(path)
        assert manifest["archive_sha256"] == sha256(path)
        assert not [n for n in os.listdir(d) if n.endswith(".partial")]


def test_each_archive_holds_dumps_of_the_agents_databases_taken_in_its_db_jail(plan):
    pg_restore = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_restore"))
    assert pg_restore, "the machine's PostgreSQL is needed to read the dumps"
    for name, agent in plan["agents"].items():
        path = os.path.join(r(agent["paths"]["backup_dir"]), agent_archives(agent)[0])
        with open(path + ".manifest.json", encoding="utf-8") as fh:
            manifest = json.load(fh)
        raw = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        dbs = {d["key"]: d for d in manifest["databases"]}
        assert sorted(dbs) == sorted(agent["db"]["databases"]) == ["brain", "ops", "skills"]
        for key, dbname in agent["db"]["databases"].items():
            assert dbs[key]["name"] == dbname and dbs[key]["jail"] == agent["db"]["jail"]
            dump = members[f"dbs/{key}.dump"]
            assert dump[:5] == b"PGDMP"
            assert hashlib.sha256(dump).hexdigest() == dbs[key]["sha256"]
            text = subprocess.run([pg_restore[-1], "--data-only", "-f", "-"], input=dump, capture_output=True,
                                  check=True).stdout.decode()
            assert f"1\t{name} {key} first\n2\t{name} {key} second\n" in text, text
        # every workspace and state file of the manifest is in the archive, with its sha256
        files = [f for f in manifest["files"] if f.get("sha256")]
        assert {f["path"] for f in files} >= {"workspace/MEMORY.md", "workspace/projects/site/blob.bin",
                                              "state/sessions/current.json"}
        for f in files:
            assert hashlib.sha256(members[f["path"]]).hexdigest() == f["sha256"], f["path"]
        # caches and lock files are excluded
        assert not [m for m in members if "/.cache/" in m or m.endswith(".lock")]


# ------------------------------------------------------------------ second backup

def test_a_second_backup_reports_every_agent_unchanged_and_creates_nothing(plan, second_backup):
    run = second_backup["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run) == {"changed": 0, "unreachable": 0, "failed": 0}
    summary = re.search(r"warden backup \S+: [^'\"\n]*", run.stdout).group(0)
    assert summary.startswith(f"warden backup {plan['host']}: {len(plan['agents'])} unchanged"), summary
    assert "created" not in summary, summary
    assert second_backup["after"] == second_backup["before"]


# ------------------------------------------------------------------ restore

def test_restore_runs_through_the_playbook(restored):
    run = restored["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run)["failed"] == 0 and recap(run)["changed"] >= 1
    assert f"restored {restored['agent']['name']} archive" in run.stdout


def test_restore_puts_the_workspace_and_state_back_byte_identical(restored):
    agent, before = restored["agent"], restored["before"]
    excludes = restored["excludes"]
    assert restored["changed"] != before["workspace"]  # the change was real
    # what was backed up comes back exactly (content, modes, owners, links); caches and locks were never archived
    assert tree(r(agent["paths"]["workspace"])) == backed_up(before["workspace"], excludes)
    assert tree(r(agent["paths"]["state"])) == backed_up(before["state"], excludes)
    assert ".cache" in before["workspace"] and "agent.lock" in before["state"]


def test_restore_puts_the_database_rows_back(restored):
    agent, before = restored["agent"], restored["before"]
    for key, dbname in agent["db"]["databases"].items():
        assert rows(agent["db"]["jail"], dbname) == before["rows"][key], key


def test_restore_keeps_the_previous_workspace(restored):
    agent = restored["agent"]
    home = r(agent["paths"]["home"])
    prev = sorted(n for n in os.listdir(home) if n.startswith("workspace.prev-"))
    assert len(prev) == 1, os.listdir(home)
    assert tree(os.path.join(home, prev[0])) == restored["changed"]
    with open(os.path.join(home, prev[0], "MEMORY.md"), encoding="utf-8") as fh:
        assert fh.read() == "# overwritten after the backup\n"


def test_restore_leaves_the_other_agents_and_the_backups_untouched(plan, restored):
    for other in restored["others"]:
        was = restored["before"]["others"][other["name"]]
        assert tree(r(other["paths"]["workspace"]), with_times=True) == was["workspace"]
        assert tree(r(other["paths"]["state"]), with_times=True) == was["state"]
        for key, dbname in other["db"]["databases"].items():
            assert rows(other["db"]["jail"], dbname) == was["rows"][key]
        home = r(other["paths"]["home"])
        assert not [n for n in os.listdir(home) if ".prev-" in n or "warden-restore" in n]
    assert backup_dirs(plan) == restored["before"]["backups"]

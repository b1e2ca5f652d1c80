"""Database dumps and restores against PostgreSQL in the db jails of the stand-in FreeBSD host, through its jexec."""

from __future__ import annotations

import datetime
import json
import pathlib

import pytest
from backup_helpers import populate, psql

from ansible_collections.warden.fleet.plugins.module_utils import backup
from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError

UTC = datetime.UTC


def at(day):
    return datetime.datetime(2025, 2, 1, 3, 17, tzinfo=UTC) + datetime.timedelta(days=day)


def create_agent_databases(pg, plan, agent):
    db = plan["agents"][agent]["db"]
    role, jail = db["role"], db["jail"]
    exists = psql(pg, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'", jail=jail)
    if not exists:
        psql(pg, f"CREATE ROLE {role} LOGIN", jail=jail)
    for name in db["databases"].values():
        psql(pg, f"DROP DATABASE IF EXISTS {name}", jail=jail)
        psql(pg, f"CREATE DATABASE {name} OWNER {role}", jail=jail)
    ops = db["databases"]["ops"]
    psql(pg, f"SET ROLE {role}; CREATE TABLE tasks (id int PRIMARY KEY, title text)", db=ops, jail=jail)
    psql(pg, "INSERT INTO tasks SELECT g, 'task ' || g FROM generate_series(1, 500) g", db=ops, jail=jail)
    brain = db["databases"]["brain"]
    psql(pg, f"SET ROLE {role}; CREATE TABLE memories (id serial PRIMARY KEY, body text)", db=brain, jail=jail)
    psql(pg, "INSERT INTO memories (body) VALUES ('the user prefers short answers')", db=brain, jail=jail)


@pytest.fixture
def db_fleet(make_fleet, postgres):
    fleet = make_fleet("atlas", "hermes", db=("atlas", "hermes"))
    for agent in ("atlas", "hermes"):
        populate(fleet.paths(agent)["workspace"], fleet.paths(agent)["state"], seed=agent)
        create_agent_databases(postgres, fleet.plan, agent)
    return fleet


def test_dump_checksum_is_stable_and_follows_the_data(db_fleet, postgres):
    """The custom-format header carries the dump time; the content checksum skips it."""
    a = backup.dump_database("atlasdb", "atlas_ops")
    b = backup.dump_database("atlasdb", "atlas_ops")
    assert a["content_sha256"] == b["content_sha256"]
    psql(postgres, "UPDATE tasks SET title = 'changed' WHERE id = 7", db="atlas_ops")
    c = backup.dump_database("atlasdb", "atlas_ops")
    assert c["content_sha256"] != a["content_sha256"]
    calls = db_fleet.calls_made("jexec")
    assert calls and all(
        c.startswith("jexec -l -U postgres atlasdb /usr/local/bin/pg_dump -Fc atlas_ops") for c in calls
    )


def test_dump_in_the_wrong_jail_fails(db_fleet):
    with pytest.raises(BackupError, match="pg_dump of atlas_ops in jail nosuchdb failed"):
        backup.dump_database("nosuchdb", "atlas_ops")


def test_databases_are_backed_up_skipped_when_unchanged_and_restored(db_fleet, postgres):
    plan = db_fleet.plan
    first = backup.backup_fleet(plan, ["atlas"], now=at(0))
    assert first["agents"]["atlas"]["status"] == "created", first["agents"]["atlas"]["msg"]
    manifest = json.loads(pathlib.Path(first["created"][0] + ".manifest.json").read_text())
    assert [(d["key"], d["name"], d["jail"], d["member"]) for d in manifest["databases"]] == [
        ("brain", "atlas_brain", "atlasdb", "dbs/brain.dump"),
        ("ops", "atlas_ops", "atlasdb", "dbs/ops.dump"),
        ("skills", "atlas_skills", "atlasdb", "dbs/skills.dump"),
    ]
    backup.verify_archive(first["created"][0])

    # nothing changed anywhere: no new archive even though the dumps were retaken
    second = backup.backup_fleet(plan, ["atlas"], now=at(1))
    assert second["agents"]["atlas"]["status"] == "unchanged"

    # a database change alone is a change
    psql(postgres, "DELETE FROM tasks WHERE id > 100", db="atlas_ops")
    third = backup.backup_fleet(plan, ["atlas"], now=at(2))
    assert third["agents"]["atlas"]["status"] == "created"
    assert psql(postgres, "SELECT count(*) FROM tasks", db="atlas_ops") == "100"

    # restore the first archive: 500 rows again, the memory intact, owned by the agent's role
    psql(postgres, "UPDATE memories SET body = 'forgotten'", db="atlas_brain")
    res = backup.restore_agent(plan, "atlas", at="2025-02-01T12:00:00Z")
    assert res["archive"] == first["created"][0]
    assert res["databases"] == ["atlas_brain", "atlas_ops", "atlas_skills"]
    assert psql(postgres, "SELECT count(*) FROM tasks", db="atlas_ops") == "500"
    assert psql(postgres, "SELECT body FROM memories", db="atlas_brain") == "the user prefers short answers"
    assert psql(postgres, "SELECT tableowner FROM pg_tables WHERE tablename = 'tasks'", db="atlas_ops") == "atlas"
    restores = [c for c in db_fleet.calls_made("jexec") if "pg_restore" in c]
    assert restores[0] == (
        "jexec -l -U postgres atlasdb /usr/local/bin/pg_restore --clean --if-exists --single-transaction "
        "--exit-on-error -d atlas_brain"
    )


def test_restore_under_another_agent_name_uses_its_databases_and_role(db_fleet, postgres):
    plan = db_fleet.plan
    archive = backup.backup_fleet(plan, ["atlas"], now=at(0))["created"][0]
    psql(postgres, "DELETE FROM tasks", db="hermes_ops", jail="hermesdb")
    res = backup.restore_agent(plan, "atlas", target_agent="hermes")
    assert res["archive"] == archive and res["target_agent"] == "hermes"
    assert res["databases"] == ["hermes_brain", "hermes_ops", "hermes_skills"]
    assert psql(postgres, "SELECT count(*) FROM tasks", db="hermes_ops", jail="hermesdb") == "500"
    assert (
        psql(postgres, "SELECT tableowner FROM pg_tables WHERE tablename = 'tasks'", db="hermes_ops", jail="hermesdb")
        == "hermes"
    )
    assert psql(postgres, "SELECT count(*) FROM tasks", db="atlas_ops") == "500", "the source is untouched"
    restores = [c for c in db_fleet.calls_made("jexec") if "pg_restore" in c]
    assert all(" hermesdb " in c and "--no-owner --no-acl --role=hermes" in c for c in restores)


def test_a_failing_database_restore_is_reported_and_the_service_left_stopped(db_fleet, postgres):
    plan = db_fleet.plan
    backup.backup_fleet(plan, ["atlas"], now=at(0))
    psql(postgres, "DROP DATABASE atlas_skills")
    with pytest.raises(BackupError, match="database atlas_skills") as err:
        backup.restore_agent(plan, "atlas", start_service="always")
    assert "service left stopped" in str(err.value)
    assert "service atlas start" not in db_fleet.calls_made()
    psql(postgres, "CREATE DATABASE atlas_skills OWNER atlas")

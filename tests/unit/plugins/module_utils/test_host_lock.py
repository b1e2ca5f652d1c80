"""The host lock's record: take, wait, take over only the named dead holder, release only our own."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import host_lock
from ansible_collections.warden.fleet.plugins.module_utils.host_lock import LockError, acquire, describe, release

HOLDER = {"user": "ops", "controller": "ctl", "pid": 4242, "pid_start": "Tue Dec  1 10:00:00 2026",
          "started": "2026-12-01T10:00:00Z", "playbook": "/srv/fleet/site.yml"}


@pytest.fixture
def lock(tmp_path):
    return str(tmp_path / "run" / "warden" / "fleet.lock")


def test_take_hold_and_release(lock, tmp_path):
    status, record = acquire(lock, "A", HOLDER, now=1000.0)
    assert status == "acquired" and record["run_id"] == "A" and record["user"] == "ops"
    assert (tmp_path / "run" / "warden").stat().st_mode & 0o777 == 0o700
    with open(lock, encoding="utf-8") as fh:
        assert json.load(fh)["playbook"] == "/srv/fleet/site.yml"
    assert acquire(lock, "A", HOLDER)[0] == "held"
    assert release(lock, "A")[0] is True
    assert release(lock, "A") == (False, None)


def test_a_second_run_is_busy_and_sees_the_holder_with_its_age(lock):
    acquire(lock, "A", HOLDER, now=1000.0)
    status, record = acquire(lock, "B", dict(HOLDER, user="eve"), now=1030.0)
    assert status == "busy" and record["run_id"] == "A" and record["age"] == 30
    text = describe(record)
    for part in ("ops@ctl", "pid 4242", "2026-12-01T10:00:00Z", "/srv/fleet/site.yml", "30s"):
        assert part in text


def test_takeover_replaces_only_the_named_holder(lock):
    acquire(lock, "A", HOLDER)
    assert acquire(lock, "B", HOLDER, takeover="X")[0] == "busy"
    status, record = acquire(lock, "B", HOLDER, takeover="A")
    assert status == "taken_over" and record["took_over"]["run_id"] == "A"
    # a third run that judged A dead too finds B now, and does not take B's lock
    assert acquire(lock, "C", HOLDER, takeover="A")[0] == "busy"


def test_release_leaves_another_runs_lock(lock):
    acquire(lock, "A", HOLDER)
    released, record = release(lock, "B")
    assert released is False and record["run_id"] == "A"
    assert acquire(lock, "B", HOLDER)[0] == "busy"


def test_a_damaged_record_is_reported_not_taken(lock):
    acquire(lock, "A", HOLDER)
    with open(lock, "w", encoding="utf-8") as fh:
        fh.write("{half")
    with pytest.raises(LockError, match="not a lock record"):
        acquire(lock, "B", HOLDER)


def _race(lock, run_id, queue):
    queue.put((run_id, acquire(lock, run_id, HOLDER)[0]))


def test_concurrent_takers_get_exactly_one_lock(lock):
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_race, args=(lock, f"R{i}", queue)) for i in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    results = [queue.get(timeout=5) for proc in procs]
    assert sorted(status for run_id, status in results) == ["acquired"] + ["busy"] * 7


STALE = [
    # same controller: judged by the holder's process
    ({"controller": "ctl", "pid": 10, "pid_start": "T1", "age": 99999}, "T1", True, False),
    ({"controller": "ctl", "pid": 10, "pid_start": "T1", "age": 1}, None, True, True),
    ({"controller": "ctl", "pid": 10, "pid_start": "T1", "age": 1}, "T2", True, True),
    # another controller: judged by age only
    ({"controller": "other", "pid": 10, "pid_start": "T1", "age": 100}, None, False, False),
    ({"controller": "other", "pid": 10, "pid_start": "T1", "age": 7201}, None, False, True),
]


@pytest.mark.parametrize(("record", "start", "asks", "stale"), STALE)
def test_stale_decision(record, start, asks, stale):
    asked = []

    def pid_start(pid):
        asked.append(pid)
        return start

    assert host_lock.is_stale(dict(record, run_id="A"), "ctl", pid_start, 7200)[0] is stale
    assert bool(asked) is asks


def test_stale_after_zero_never_takes_over_another_controllers_lock():
    record = {"run_id": "A", "controller": "other", "pid": 1, "age": 10**9}
    assert host_lock.is_stale(record, "ctl", lambda pid: None, 0)[0] is False

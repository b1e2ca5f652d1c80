"""The controller side of the host lock: who we are, waiting, and taking over a dead run's lock."""

from __future__ import annotations

import os
import socket
from unittest import mock

import pytest
from ansible.plugins.action import ActionBase

from ansible_collections.warden.fleet.plugins.action import host_lock as action


def make(args, answers):
    task = mock.MagicMock()
    task.args = args
    plugin = action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), None, None, None)
    calls = []

    def execute(module_name, module_args, task_vars):
        calls.append(dict(module_args))
        return answers.pop(0)

    plugin._execute_module = execute  # pylint: disable=protected-access
    return plugin, calls


@pytest.fixture(autouse=True)
def no_base_run():
    with mock.patch.object(ActionBase, "run", return_value={}):
        yield


def test_our_holder_names_this_controller_and_the_playbook_process():
    run_id, holder = action.run_holder()
    assert holder["controller"] == socket.gethostname() and holder["pid"] == os.getppid()
    assert holder["pid_start"] == action.process_start(os.getppid()) and run_id.endswith(holder["pid_start"])


def test_process_start_of_a_missing_process_is_none():
    assert action.process_start(2**22 + 12345) is None


def test_a_dead_holder_on_this_controller_is_taken_over():
    dead = {"run_id": "old", "controller": socket.gethostname(), "pid": 2**22 + 12345, "pid_start": "T", "age": 5}
    plugin, calls = make({"timeout": 10}, [
        {"status": "busy", "holder": dead},
        {"status": "taken_over", "holder": {"run_id": "new", "took_over": {"run_id": "old"}}},
    ])
    result = plugin.run(task_vars={"inventory_hostname": "h"})
    assert result["status"] == "taken_over" and "is gone" in result["took_over"]["reason"]
    assert "takeover" not in calls[0] and calls[1]["takeover"] == "old"


def test_a_live_holder_makes_the_run_wait_then_fail_naming_it():
    live = {"run_id": "other", "controller": socket.gethostname(), "pid": os.getpid(),
            "pid_start": action.process_start(os.getpid()), "user": "eve", "started": "2026-12-01T10:00:00Z",
            "playbook": "/srv/site.yml", "age": 3}
    plugin, calls = make({"timeout": 0}, [{"status": "busy", "holder": live}])
    result = plugin.run(task_vars={"inventory_hostname": "h"})
    assert result["failed"] and len(calls) == 1
    for part in (f"eve@{socket.gethostname()}", f"pid {os.getpid()}", "/srv/site.yml", "2026-12-01T10:00:00Z"):
        assert part in result["msg"]


def test_another_controllers_lock_is_taken_over_only_when_older_than_stale_after():
    old = {"run_id": "far", "controller": "elsewhere", "pid": 1, "age": 50}
    plugin, calls = make({"timeout": 0, "stale_after": 60}, [{"status": "busy", "holder": old}])
    assert plugin.run(task_vars={})["failed"]
    plugin, calls = make({"timeout": 0, "stale_after": 40}, [
        {"status": "busy", "holder": old}, {"status": "taken_over", "holder": {"run_id": "me"}}])
    assert plugin.run(task_vars={})["status"] == "taken_over" and calls[1]["takeover"] == "far"


def test_bad_timeout_is_a_clear_error():
    plugin, calls = make({"timeout": "soon"}, [])
    result = plugin.run(task_vars={})
    assert result["failed"] and "timeout must be a number" in result["msg"] and not calls

"""warden.fleet.agent_services against a recorded service(8): status first, then only the differences."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.warden.fleet.plugins.modules import agent_services

RUNNING = "{0} is running as pid 42.\n{0}: agent pid 43 (timeout, the reaper), tmux session {0}."
STOPPED = "{0} is not running."


class ModuleExit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


class FakeService:
    """service(8) over a dict of running services; records every call."""

    def __init__(self, running, broken=()):
        self.running, self.broken, self.calls = set(running), set(broken), []

    def __call__(self, argv, **_kwargs):
        assert argv[0] == "/usr/sbin/service"
        name, verb = argv[1], argv[2]
        self.calls.append((name, verb))
        if verb == "status":
            if name in self.running:
                return 0, RUNNING.format(name) + "\n", ""
            return 1, STOPPED.format(name) + "\n", ""
        if verb in ("start", "restart"):
            if name not in self.broken:
                self.running.add(name)
            return 0, f"Starting {name}.\n", ""          # rc 0 even when it did not start: status tells
        if verb == "onestop":
            self.running.discard(name)
            return 0, f"Stopping {name}.\n{name}: killed 1 leftover processes\n", ""
        raise AssertionError(argv)


def run(monkeypatch, services, fake, check=False):
    def exit_json(_self, **kwargs):
        raise ModuleExit(dict(kwargs, failed=False))

    def fail_json(_self, **kwargs):
        raise ModuleExit(dict(kwargs, failed=True))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda _module, argv, **kw: fake(argv, **kw))
    with patch_module_args({"services": services, "settle": 0, "_ansible_check_mode": check}), \
            pytest.raises(ModuleExit) as exc:
        agent_services.main()
    return exc.value.result


def test_no_op_asks_status_once_per_service_and_changes_nothing(monkeypatch):
    fake = FakeService(running={"atlas", "clawdie"})
    result = run(monkeypatch, [{"name": "atlas"}, {"name": "clawdie"}], fake)
    assert not result["changed"]
    assert sorted(fake.calls) == [("atlas", "status"), ("clawdie", "status")]
    assert result["status"]["atlas"] == RUNNING.format("atlas")


def test_starts_restarts_and_stops_only_what_differs_then_verifies(monkeypatch):
    fake = FakeService(running={"atlas", "clawdie", "hermes"})
    result = run(monkeypatch, [{"name": "atlas"}, {"name": "clawdie", "restart": True},
                               {"name": "new"}, {"name": "hermes", "state": "stopped"}], fake)
    assert result["changed"] and not result["failed"]
    assert (result["started"], result["restarted"], result["stopped"]) == (["new"], ["clawdie"], ["hermes"])
    assert fake.calls[4:7] == [("clawdie", "restart"), ("new", "start"), ("hermes", "onestop")]
    assert sorted(fake.calls[7:]) == [("clawdie", "status"), ("hermes", "status"), ("new", "status")]


def test_restart_of_a_stopped_service_is_a_start(monkeypatch):
    fake = FakeService(running=set())
    result = run(monkeypatch, [{"name": "atlas", "restart": True}], fake)
    assert result["started"] == ["atlas"] and result["restarted"] == []


def test_check_mode_only_asks(monkeypatch):
    fake = FakeService(running={"clawdie"})
    result = run(monkeypatch, [{"name": "atlas"}, {"name": "clawdie", "restart": True}], fake, check=True)
    assert result["changed"] and result["started"] == ["atlas"] and result["restarted"] == ["clawdie"]
    assert all(verb == "status" for _name, verb in fake.calls)


def test_a_start_that_exits_0_but_does_not_run_fails(monkeypatch):
    fake = FakeService(running=set(), broken={"atlas"})
    result = run(monkeypatch, [{"name": "atlas"}], fake)
    assert result["failed"]
    assert result["msg"] == ("atlas: 'service atlas start' exited 0 (Starting atlas.) "
                             "but status says: atlas is not running.")

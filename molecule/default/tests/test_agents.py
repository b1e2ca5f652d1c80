"""The agents' runtime: users, workspaces, souls, shared files and env files.

Two stand-ins. The converged host of the scenario (molecule-default, site.yml with the example
inventory; create.yml serves the example's souls from bare repositories inside it) is only read.
A stand-in of its own (molecule-agents) runs preflight and the runtime roles (agents_play.yml)
again and again: idempotence without per-agent work, a new soul version for one agent, a changed
secret in check mode, and no secret in a -vvv log.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
import testinfra
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BASE = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
STANDIN = os.path.join(PROJECT, "tests", "standin", "standin")
INVENTORY = os.path.join(PROJECT, "inventories", "example", "hosts.yml")
SHARED_SRC = os.path.join(PROJECT, "inventories", "example", "shared")
PLAY = os.path.join(HERE, "agents_play.yml")
CONVERGED = os.environ.get("WARDEN_STANDIN_NAME", "molecule-default")
OWN = "molecule-agents"
BIN = os.path.dirname(sys.executable)
DB_PASSWORDS = {"atlas": "molecule-pw-atlas-7d1f", "clawdie": "molecule-pw-clawdie-93ac"}

sys.path.insert(0, HERE)
import soul_repos  # noqa: E402


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


def as_agent(name, host, command):
    """Run ``command`` with sh as the agent's user (su -m: its login shell is nologin)."""
    return sh(STANDIN, "exec", host, "--", "su", "-m", name, "-c", command, check=False)


def example():
    with open(INVENTORY, encoding="utf-8") as handle:
        return next(iter(yaml.safe_load(handle)["warden_hosts"]["hosts"].values()))


def plan_of(hostvars):
    sys.path.insert(0, os.path.join(PROJECT, "plugins", "module_utils"))
    import fleet_model  # noqa: PLC0415 - the model is a plain module on the controller side

    return fleet_model.plan_or_raise("bsd1.example.net", hostvars)


@pytest.fixture(scope="module")
def converged():
    return testinfra.get_host(os.path.join(BASE, CONVERGED, "root"), connection="chroot")


@pytest.fixture(scope="module")
def plan():
    hostvars = dict(example(), warden_shared_files={"src": SHARED_SRC})
    return plan_of(hostvars)


# --- the converged host ---------------------------------------------------------------------------------------


def test_every_agent_has_its_user_and_group(plan):
    state = json.loads(sh(STANDIN, "state", CONVERGED).stdout)
    for name, agent in plan["agents"].items():
        user = state["users"][agent["user"]["name"]]
        assert user["home"] == agent["paths"]["home"] and user["shell"] == "/usr/sbin/nologin"
        assert user["gid"] == state["groups"][agent["user"]["group"]]["gid"]
        assert user["uid"] not in (0, *[state["users"][o]["uid"] for o in plan["agents"] if o != name])


def test_workspaces_have_the_layout_owners_and_modes(converged, plan):
    for agent in plan["agents"].values():
        user, group, paths = agent["user"]["name"], agent["user"]["group"], agent["paths"]
        home = converged.file(paths["home"])
        assert (home.user, home.group, home.mode) == ("root", group, 0o750)
        for key in ("workspace", "state", "logs"):
            directory = converged.file(paths[key])
            assert directory.is_directory and (directory.user, directory.group, directory.mode) == (user, group, 0o700)
        ws = paths["workspace"]
        for name in ("SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md", "TOOLS.md", "MEMORY.md"):
            assert converged.file(f"{ws}/{name}").is_file and converged.file(f"{ws}/{name}").user == user
        for name in ("memory", "skills"):
            assert converged.file(f"{ws}/{name}").is_directory
        assert (
            os.readlink(os.path.join(BASE, CONVERGED, "root", ws.lstrip("/"), "shared")) == plan["shared_files"]["dir"]
        )


def test_each_soul_is_installed_at_its_pinned_commit(converged, plan):
    commits = soul_repos.build(os.path.join(BASE, CONVERGED, "root"))  # already built by create.yml: reads tags
    for name, agent in plan["agents"].items():
        head = converged.run(f"git -C {agent['soul']['dest']} rev-parse HEAD")
        assert head.rc == 0 and head.stdout.strip() == commits[name]
        soul = converged.file(f"{agent['paths']['workspace']}/SOUL.md").content_string
        assert soul == soul_repos.soul_files(name, agent["soul"]["version"])["SOUL.md"]


def test_env_files_are_private_and_hold_the_connection_and_secrets(converged, plan):
    hostvars = example()
    for name, agent in plan["agents"].items():
        env = converged.file(agent["paths"]["env_file"])
        assert (env.user, env.group, env.mode) == (agent["user"]["name"], agent["user"]["group"], 0o600)
        values = {}
        for var in (
            "AGENT_NAME",
            "WARDEN_DB_HOST",
            "WARDEN_DB_USER",
            "WARDEN_DB_OPS",
            "WARDEN_DB_PASSWORD",
            "GATEWAY_TOKEN",
        ):
            out = converged.run(f"sh -c 'set -a; . {agent['paths']['env_file']}; printf %s \"${var}\"'")
            values[var] = out.stdout
        assert values["AGENT_NAME"] == name
        assert values["WARDEN_DB_HOST"] == agent["db"]["host"] and values["WARDEN_DB_USER"] == agent["db"]["role"]
        assert values["WARDEN_DB_OPS"] == agent["db"]["databases"]["ops"]
        assert len(values["WARDEN_DB_PASSWORD"]) >= 12, "the database password is in the env file"
        assert values["GATEWAY_TOKEN"] == hostvars["warden_agents"][name]["secrets"]["GATEWAY_TOKEN"]


def test_shared_files_are_read_only_for_every_agent(converged, plan):
    shared = plan["shared_files"]["dir"]
    assert converged.file(f"{shared}/TOOLS.md").content_string == pathlib.Path(SHARED_SRC, "TOOLS.md").read_text()
    for name, agent in plan["agents"].items():
        link = f"{agent['paths']['workspace']}/shared"
        assert as_agent(name, CONVERGED, f"cat {link}/AGENTS.md").returncode == 0
        for attempt in (
            f"echo changed >> {link}/TOOLS.md",
            f"echo new > {shared}/NEW.md",
            f"rm -f {link}/AGENTS.md",
            f"mkdir {shared}/skills/mine",
        ):
            out = as_agent(name, CONVERGED, attempt)
            assert out.returncode != 0, f"{name} could run {attempt!r}"
    assert converged.file(f"{shared}/TOOLS.md").content_string == pathlib.Path(SHARED_SRC, "TOOLS.md").read_text()
    assert not converged.file(f"{shared}/NEW.md").exists


def test_agents_cannot_read_each_other(plan):
    atlas, clawdie = plan["agents"]["atlas"], plan["agents"]["clawdie"]
    for command in (
        f"ls {clawdie['paths']['workspace']}",
        f"cat {clawdie['paths']['env_file']}",
        f"ls {clawdie['paths']['home']}",
    ):
        assert as_agent("atlas", CONVERGED, command).returncode != 0, command
    assert as_agent("atlas", CONVERGED, f"ls {atlas['paths']['workspace']}").returncode == 0


# --- a stand-in of its own: re-runs, a new soul version, a changed secret ------------------------------------------


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    sh(STANDIN, "down", OWN, check=False)
    sh(STANDIN, "up", OWN)
    root = os.path.join(BASE, OWN, "root")
    soul_repos.build(root)
    vars_dir = tmp_path_factory.mktemp("agents")
    yield {"root": root, "vars": vars_dir}
    sh(STANDIN, "down", OWN, check=False)


def play(own, *extra, agents=None, label="run"):
    """agents_play.yml with the example inventory; ``agents`` replaces warden_agents. Returns the JSON results."""
    extra_vars = {"warden_db_passwords": DB_PASSWORDS, "warden_shared_files": {"src": SHARED_SRC}}
    if agents is not None:
        extra_vars["warden_agents"] = agents
    path = own["vars"] / f"{label}.json"
    path.write_text(json.dumps(extra_vars))
    env = dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_FORCE_COLOR="0",
    )
    out = subprocess.run(
        [STANDIN, "run", OWN, "--", "ansible-playbook", "-i", INVENTORY, PLAY, "-e", f"@{path}", *extra],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    return out


def results(out):
    """{task name: result of the host} of a json-callback run."""
    data, _end = json.JSONDecoder().raw_decode(out.stdout[out.stdout.index("{") :])
    found = {}
    for run_play in data["plays"]:
        for task in run_play["tasks"]:
            # "ROLE : name" or "name", depending on the callback's version
            found[task["task"]["name"].split(" : ")[-1]] = next(iter(task["hosts"].values()))
    return found, next(iter(data["stats"].values()))


def executions(result):
    """Module executions of one task result: its loop items that ran, or 1 unless skipped."""
    if "results" in result:
        return sum(1 for item in result["results"] if not item.get("skipped"))
    return 0 if result.get("skipped") else 1


def tree_digest(root, path):
    digests = {}
    base = os.path.join(root, path.lstrip("/"))
    for directory, _dirs, files in os.walk(base):
        for name in files:
            full = os.path.join(directory, name)
            if os.path.islink(full):  # the shared link points into the stand-in, not into this machine
                digests[os.path.relpath(full, base)] = "-> " + os.readlink(full)
                continue
            with open(full, "rb") as handle:
                digests[os.path.relpath(full, base)] = hashlib.sha256(handle.read()).hexdigest()
    return digests


def test_rerun_changes_nothing_and_runs_nothing_per_agent(own):
    play(own, label="first")
    found, stats = results(play(own, label="second"))
    assert stats["changed"] == 0
    for task in ("Create the agents' missing groups", "Create or correct the agents' users"):
        assert executions(found[task]) == 0, f"{task} ran for an agent on a no-op run"
    assert found["Note which agents' services need a restart"]["ansible_facts"]["warden_agent_changed"] == {
        "atlas": False,
        "clawdie": False,
    }


def test_a_new_soul_version_changes_only_that_agent_and_keeps_its_memory(own):
    plan = plan_of(dict(example(), warden_shared_files={"src": SHARED_SRC}))
    atlas_ws, clawdie_ws = (
        plan["agents"]["atlas"]["paths"]["workspace"],
        plan["agents"]["clawdie"]["paths"]["workspace"],
    )
    ws_root = os.path.join(own["root"], atlas_ws.lstrip("/"))
    with open(os.path.join(ws_root, "MEMORY.md"), "w", encoding="utf-8") as handle:
        handle.write("Atlas remembers the operator prefers short answers.\n")
    with open(os.path.join(ws_root, "memory", "2026-12-01.md"), "w", encoding="utf-8") as handle:
        handle.write("- talked about the backup schedule\n")
    memory_before = {
        k: v for k, v in tree_digest(own["root"], atlas_ws).items() if k == "MEMORY.md" or k.startswith("memory/")
    }
    clawdie_before = tree_digest(own["root"], clawdie_ws)

    files = soul_repos.soul_files("atlas", "v1.3.0")
    files["SOUL.md"] = "# Atlas\n\nA calmer Atlas, version v1.3.0.\n"
    commit = soul_repos.add_version(own["root"], "atlas", "v1.3.0", files)
    agents = example()["warden_agents"]
    agents["atlas"]["soul"]["version"] = "v1.3.0"
    found, stats = results(play(own, agents=agents, label="v1.3.0"))

    souls = found["Install every agent's soul at its pinned version"]
    assert souls["changed_agents"] == ["atlas"] and souls["souls"]["atlas"]["commit"] == commit
    assert "SOUL.md" in souls["souls"]["atlas"]["changed_files"] and not souls["souls"]["clawdie"]["changed"]
    assert found["Note which agents' services need a restart"]["ansible_facts"]["warden_agent_changed"] == {
        "atlas": True,
        "clawdie": False,
    }
    assert stats["changed"] == 1, "only the soul task changed"
    after = tree_digest(own["root"], atlas_ws)
    assert {k: after[k] for k in memory_before} == memory_before, "MEMORY.md and memory/ are byte-identical"
    with open(os.path.join(ws_root, "SOUL.md"), encoding="utf-8") as handle:
        assert handle.read() == files["SOUL.md"]
    assert tree_digest(own["root"], clawdie_ws) == clawdie_before


def test_a_changed_secret_shows_only_redacted_in_check_mode_and_nothing_leaks_at_vvv(own):
    agents = example()["warden_agents"]
    agents["atlas"]["soul"]["version"] = "v1.3.0"  # as the previous test left it
    env_file = os.path.join(own["root"], "usr/local/etc/warden/atlas.env")
    with open(env_file, encoding="utf-8") as handle:
        before = handle.read()
    agents["atlas"]["secrets"]["GATEWAY_TOKEN"] = "molecule-rotated-token-5e2b"
    found, stats = results(play(own, "--check", "--diff", agents=agents, label="rotated"))
    env = found["Write every agent's environment file"]
    assert env["changed_agents"] == ["atlas"] and stats["changed"] == 1
    (diff,) = env["diff"]
    assert "GATEWAY_TOKEN=<redacted, changed>" in diff["after"] and "WARDEN_DB_PASSWORD=<redacted>" in diff["after"]
    assert "AGENT_NAME='atlas'" in diff["after"]
    with open(env_file, encoding="utf-8") as handle:
        assert handle.read() == before, "check mode wrote nothing"

    verbose = play(own, "-vvv", agents=agents, label="vvv")
    text = verbose.stdout + verbose.stderr
    secrets = [
        *DB_PASSWORDS.values(),
        "molecule-rotated-token-5e2b",
        *(a["secrets"]["GATEWAY_TOKEN"] for a in example()["warden_agents"].values()),
    ]
    assert [s for s in secrets if s in text] == []
    with open(env_file, encoding="utf-8") as handle:
        assert "GATEWAY_TOKEN='molecule-rotated-token-5e2b'" in handle.read()

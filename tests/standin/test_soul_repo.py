"""warden.fleet.soul_repo on a stand-in: the plan's soul entries, real git, agents that act as themselves.

Two agents with soul repositories at /srv/*.git in the stand-in; the agents' homes and workspaces are
theirs, as the runtime roles make them. Needs root (chroot, mounts).
Run: .venv/bin/pytest tests/standin/test_soul_repo.py
"""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

PROJECT = os.path.dirname(os.path.dirname(HERE))
PLAYBOOK = os.path.join(HERE, "soul", "converge.yml")
STANDIN = os.path.join(HERE, "standin")
ANSIBLE_PLAYBOOK = os.path.join(PROJECT, ".venv", "bin", "ansible-playbook")
HOST = "soul1.test"
AGENTS = ("atlas", "hermes")


def sh(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


def git(*args, cwd=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.net", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.net")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def converge(host, tmp_path, versions):
    agents = {name: {"subnet": f"10.0.{i + 1}", "jails": [], "command": "/usr/local/bin/agent-runtime",
                     "soul": {"repo": f"/srv/{name}.git", "version": versions[name]}}
              for i, name in enumerate(AGENTS)}
    inventory = tmp_path / "hosts.yml"
    hostvars = {"warden_ext_if": "vtnet0", "warden_agents": agents}
    inventory.write_text(yaml.safe_dump({"warden_hosts": {"hosts": {HOST: hostvars}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"))
    proc = subprocess.run([STANDIN, "run", host, "--", ANSIBLE_PLAYBOOK, "-i", str(inventory), PLAYBOOK],
                          capture_output=True, text=True, check=False, cwd=PROJECT, env=env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    recap = re.search(rf"{re.escape(HOST)}\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert recap, proc.stdout[-3000:]
    result = json.loads(ok(host, "cat /var/tmp/soul_result.json"))
    return int(recap.group(1)), result


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    name = "pytest-soul-" + uuid.uuid4().hex[:8]
    H.up(name)
    ok(name, "env ASSUME_ALWAYS_YES=yes pkg install -y git >/dev/null")
    root = H.paths(name)["root"]
    work = tmp_path_factory.mktemp("souls")
    for agent in AGENTS:
        # Test setup: the upstream repositories, placed in the stand-in as if served from the host itself.
        bare = os.path.join(root, "srv", f"{agent}.git")
        git("init", "-q", "--bare", bare)
        clone = work / agent
        git("init", "-q", str(clone))
        for version in ("v1", "v2"):
            for core in ("SOUL.md", "USER.md", "IDENTITY.md", "AGENTS.md"):
                (clone / core).write_text(f"{agent} {core} {version}\n")
            (clone / "manifest.json").write_text(json.dumps({"schema_version": 1, "agent_id": agent}))
            git("add", "-A", cwd=clone)
            git("commit", "-q", "-m", version, cwd=clone)
            git("tag", "-a", "-m", version, version, cwd=clone)
        git("push", "-q", bare, "v1", "v2", cwd=clone)
    yield name
    H.down(name)


def test_souls_from_the_plan_install_as_the_agents_files_and_a_second_run_changes_nothing(host, tmp_path):
    changed, result = converge(host, tmp_path, {"atlas": "v1", "hermes": "v1"})
    assert changed == 1 and result["changed_agents"] == ["atlas", "hermes"]
    for agent in AGENTS:
        workspace = f"/usr/local/warden/agents/{agent}/workspace"
        assert ok(host, f"cat {workspace}/SOUL.md") == f"{agent} SOUL.md v1\n"
        assert ok(host, f"stat -f '%Su:%Sg %Lp' {workspace}/SOUL.md").strip() == f"{agent}:{agent} 640"
        assert ok(host, f"stat -f '%Su %Lp' /usr/local/warden/souls/{agent}").strip() == "root 700"
    # The agent can neither read nor change root's checkout.
    rc, _out, _err = sh(host, "su -m atlas -c 'ls /usr/local/warden/souls/atlas'")
    assert rc != 0
    changed, result = converge(host, tmp_path, {"atlas": "v1", "hermes": "v1"})
    assert changed == 0 and result["changed_agents"] == []


def test_a_new_version_for_one_agent_leaves_its_memories_and_the_other_agent_alone(host, tmp_path):
    converge(host, tmp_path, {"atlas": "v1", "hermes": "v1"})
    workspace = "/usr/local/warden/agents/atlas/workspace"
    # The agent, as itself: its memories, and a symlink where a soul file goes, aimed at root's file.
    ok(host, f"su -m atlas -c 'cd {workspace} && printf \"met the operator\\n\" > MEMORY.md && mkdir -p memory "
             "&& printf \"day one\\n\" > memory/2026-12-01.md && rm -f USER.md && ln -s /etc/master.passwd USER.md'")
    memories = ok(host, f"cd {workspace} && sha256 -q MEMORY.md memory/2026-12-01.md && stat -f '%i %m' MEMORY.md")
    passwd = ok(host, "sha256 -q /etc/master.passwd && stat -f '%Su %Lp' /etc/master.passwd")
    hermes = ok(host, "cd /usr/local/warden/agents/hermes/workspace && sha256 -q *.md && stat -f '%i %m' *.md")

    changed, result = converge(host, tmp_path, {"atlas": "v2", "hermes": "v1"})

    assert changed == 1 and result["changed_agents"] == ["atlas"]
    assert sorted(result["souls"]["atlas"]["changed_files"]) == ["AGENTS.md", "IDENTITY.md", "SOUL.md", "USER.md"]
    assert ok(host, f"cat {workspace}/SOUL.md") == "atlas SOUL.md v2\n"
    assert ok(host, f"test ! -L {workspace}/USER.md && cat {workspace}/USER.md") == "atlas USER.md v2\n"
    assert ok(host, f"cd {workspace} && sha256 -q MEMORY.md memory/2026-12-01.md && stat -f '%i %m' MEMORY.md") \
        == memories
    assert ok(host, "sha256 -q /etc/master.passwd && stat -f '%Su %Lp' /etc/master.passwd") == passwd
    assert ok(host, "cd /usr/local/warden/agents/hermes/workspace && sha256 -q *.md && stat -f '%i %m' *.md") \
        == hermes

"""Helpers for the backup integration tests (imported by conftest and the tests)."""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import stat
import subprocess

from ansible_collections.warden.fleet.plugins.module_utils import fleet_model

PG_BIN = pathlib.Path(os.environ.get("WARDEN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
COMMAND = "/usr/local/bin/agent-runtime"


def psql(pg, sql, db="postgres", jail="atlasdb"):
    """Run SQL as postgres on the server of a db jail of the stand-in (through its unix socket)."""
    proc = subprocess.run(
        [
            str(PG_BIN / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            pg["sockets"][jail],
            "-p",
            pg["port"],
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip()


@functools.cache
def session_plan():
    """The plan of the agents every test may use, with their db jails: the
    names the stand-in of the session is set up with."""
    plan, problems = fleet_model.build_plan(
        "bsd1.example.net",
        {"warden_ext_if": "vtnet0", "warden_agents": agents_spec("atlas", "hermes", db=("atlas", "hermes"))},
    )
    assert not problems, [str(p) for p in problems]
    return plan


class Fleet:
    """A host's plan (from the fleet model) pointing into a temp dir; its
    FreeBSD commands are those of the stand-in `host`."""

    def __init__(self, tmp, agents, backup=None, host=None):
        self.tmp = tmp
        self.host = host
        self.calls_seen = len(host.calls()) if host else 0
        hostvars = {
            "warden_ext_if": "vtnet0",
            "warden_root": str(tmp / "root"),
            "warden_etc_dir": str(tmp / "etc"),
            "warden_backup": {"dir": str(tmp / "backups"), **(backup or {})},
            "warden_agents": agents,
        }
        plan, problems = fleet_model.build_plan("bsd1.example.net", hostvars)
        assert not problems, [str(p) for p in problems]
        if host:
            for agent in plan["agents"].values():
                # the service runs on the stand-in: its pidfile as seen from here
                agent["service"]["pidfile"] = str(host.outside(agent["service"]["pidfile"]))
        self.plan = plan

    def paths(self, agent):
        return {k: pathlib.Path(v) for k, v in self.plan["agents"][agent]["paths"].items()}

    def calls_made(self, command="service"):
        """Calls of one FreeBSD command (default: service) on the stand-in since
        the fleet was made or forget_calls(), in order."""
        lines = self.host.calls()[self.calls_seen :]
        return [line for line in lines if command is None or line.split()[0] == command]

    def forget_calls(self):
        self.calls_seen = len(self.host.calls())


def agents_spec(*names, db=()):
    spec = {}
    for i, name in enumerate(names):
        spec[name] = {"subnet": f"10.0.{i + 1}", "command": COMMAND, "jails": ["git", "db"] if name in db else ["git"]}
    return spec


LONG_NAME = "deeply/" * 12 + "a-file-name-that-makes-the-path-longer-than-one-hundred-characters.md"


def populate(workspace, state=None, seed="a"):
    """A realistic small workspace: markdown, nested dirs, a binary file, a
    symlink, an empty dir, unicode and long names, plus excluded clutter."""
    ws = pathlib.Path(workspace)
    files = {
        "AGENTS.md": f"# agents {seed}\n",
        "notes/2025-01-01.md": "day one\n" * 50,
        "notes/2025-01-02.md": f"day two {seed}\n",
        "memories/curated/core.md": "remember this\n",
        "skills/search/SKILL.md": "---\nname: search\n---\n",
        "naïve-ünïcode.md": "unicode name\n",
        LONG_NAME: "long path\n",
    }
    for rel, text in files.items():
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (ws / "blob.bin").write_bytes(hashlib.sha256(seed.encode()).digest() * 4096)
    (ws / "empty-dir").mkdir(exist_ok=True)
    (ws / "readonly.md").write_text("ro\n")
    (ws / "readonly.md").chmod(0o444)
    (ws / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (ws / "tool.sh").chmod(0o750)
    if not (ws / "today").is_symlink():
        (ws / "today").symlink_to("notes/2025-01-02.md")
    # excluded by the default patterns
    (ws / ".cache").mkdir(exist_ok=True)
    (ws / ".cache" / "big").write_bytes(b"x" * 1000)
    (ws / "agent.lock").write_text("locked")
    (ws / "web/node_modules/.cache").mkdir(parents=True, exist_ok=True)
    (ws / "web/node_modules/.cache/c").write_text("c")
    (ws / "web/node_modules/pkg.js").write_text("module.exports = 1\n")
    if state:
        st = pathlib.Path(state)
        st.mkdir(parents=True, exist_ok=True)
        (st / "session.json").write_text('{"turn": 1}\n')
        (st / "agent.pid").write_text("123\n")


EXCLUDED = frozenset({".cache", "agent.lock", "web/node_modules/.cache"})


def tree(root, excluded=EXCLUDED):
    """path -> (type, mode, content digest or link target) of a tree, minus excluded paths."""
    root = pathlib.Path(root)
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames) + filenames:
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in excluded or any(rel.startswith(e + "/") for e in excluded):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), hashlib.sha256(pathlib.Path(full).read_bytes()).hexdigest())
    return out

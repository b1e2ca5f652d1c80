"""warden.fleet.soul_repo against real git repositories: pinned versions, refusals, a hostile workspace."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import soul
from ansible_collections.warden.fleet.plugins.module_utils.soul import Git, SoulError, SoulInstaller

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by another uid: run as root")

AGENT_UID = 64000
AGENT_GID = 64000
GIT = shutil.which("git")
CORE = {
    "SOUL.md": "# Atlas\nCalm, exact, kind.\n",
    "USER.md": "The operator prefers short answers.\n",
    "IDENTITY.md": "Atlas, research assistant.\n",
    "AGENTS.md": "Work in the workspace only.\n",
    "TOOLS.md": "git, rg.\n",
    ".gitignore": "*.swp\n",
}


def _git(*args, cwd=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.net", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.net")
    return subprocess.run([GIT, *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


class SoulRepo:
    """A bare upstream repository and a clone to commit, tag and push from."""

    def __init__(self, root, agent):
        self.bare = root / f"{agent}.git"
        self.work = root / f"{agent}-work"
        self.agent = agent
        _git("init", "-q", "--bare", str(self.bare))
        _git("init", "-q", str(self.work))

    def commit(self, files=None, remove=(), manifest=True, message="soul"):
        files = dict(CORE, **(files or {}))
        if manifest:
            files.setdefault("manifest.json", json.dumps({"schema_version": 1, "agent_id": self.agent}))
        for path, content in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.write_bytes(content if isinstance(content, bytes) else content.encode())
        for path in remove:
            (self.work / path).unlink()
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name, force=False, annotated=True):
        args = ["tag"] + (["-f"] if force else []) + (["-a", "-m", name] if annotated else []) + [name]
        _git(*args, cwd=self.work)

    def push(self, *refs, force=False):
        _git("push", "-q", *(["--force"] if force else []), str(self.bare), *refs, cwd=self.work)


@pytest.fixture
def host(tmp_path):
    class Host:
        root = tmp_path

        def repo(self, agent="atlas"):
            return SoulRepo(tmp_path, agent)

        def entry(self, agent, repo, version, **extra):
            workspace = tmp_path / "agents" / agent / "workspace"
            if not workspace.exists():
                workspace.mkdir(parents=True)
                os.chown(workspace, AGENT_UID, AGENT_GID)
                workspace.chmod(0o750)
            return dict({"agent": agent, "repo": str(repo), "version": version, "dest": str(tmp_path / "souls" / agent),
                         "workspace": str(workspace), "owner": str(AGENT_UID), "group": str(AGENT_GID),
                         "key_file": None}, **extra)

        @staticmethod
        def run(entries, check_mode=False, **options):
            return SoulInstaller(Git(GIT, timeout=60), check_mode=check_mode, **options).run(entries)

    return Host()


def _tree(path):
    """{relative path: (bytes, inode, mtime_ns, mode)} of every file under path, not following symlinks."""
    result = {}
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = pathlib.Path(dirpath) / name
            st = full.lstat()
            result[str(full.relative_to(path))] = (
                full.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(full), st.st_ino, st.st_mtime_ns,
                st.st_mode)
    return result


def _problems(excinfo):
    return "\n".join(excinfo.value.problems)


# --- installing, verifying, no-op --------------------------------------------------------------------------


def test_a_tag_is_installed_into_the_workspace_owned_by_the_agent(host):
    repo = host.repo()
    repo.commit({"skills/search/SKILL.md": "search well\n", "bin/hello": "#!/bin/sh\necho hi\n"})
    _git("update-index", "--chmod=+x", "bin/hello", cwd=repo.work)
    _git("commit", "-q", "-m", "exec", cwd=repo.work)
    commit = _git("rev-parse", "HEAD", cwd=repo.work)
    repo.tag("v1.0.0")
    repo.push("HEAD:refs/heads/main", "v1.0.0")
    entry = host.entry("atlas", repo.bare, "v1.0.0")

    outcome = host.run([entry])

    result = outcome.results["atlas"]
    assert result["commit"] == commit and result["previous_commit"] is None and result["changed"]
    assert result["fetched"] is True and result["moved_tag"] is None
    assert outcome.changed_agents == ["atlas"]
    assert sorted(result["changed_files"]) == sorted(
        ["AGENTS.md", "IDENTITY.md", "SOUL.md", "TOOLS.md", "USER.md", "manifest.json", "skills/search/SKILL.md",
         "bin/hello"])
    workspace = pathlib.Path(entry["workspace"])
    assert (workspace / "SOUL.md").read_text() == CORE["SOUL.md"]
    assert not (workspace / ".gitignore").exists()
    for path in result["changed_files"]:
        st = (workspace / path).lstat()
        assert (st.st_uid, st.st_gid) == (AGENT_UID, AGENT_GID)
        assert stat.S_IMODE(st.st_mode) == (0o750 if path == "bin/hello" else 0o640), path
    skills = (workspace / "skills").stat()
    assert (skills.st_uid, stat.S_IMODE(skills.st_mode)) == (AGENT_UID, 0o750)
    dest = pathlib.Path(entry["dest"]).stat()
    assert (dest.st_uid, stat.S_IMODE(dest.st_mode)) == (0, 0o700)
    assert _git("rev-parse", "HEAD", cwd=entry["dest"]) == commit
    assert not [name for name in os.listdir(workspace) if name.startswith(".warden-soul-")]


def test_a_second_call_changes_nothing_and_a_commit_pin_needs_no_network(host):
    repo = host.repo()
    commit = repo.commit()
    repo.tag("v1")
    repo.push("HEAD:refs/heads/main", "v1")
    by_tag = host.entry("atlas", repo.bare, "v1")
    host.run([by_tag])

    again = host.run([by_tag]).results["atlas"]
    assert again["changed"] is False and again["changed_files"] == [] and again["fetched"] is False

    by_commit = dict(by_tag, version=commit)
    assert host.run([by_commit]).results["atlas"]["changed"] is False
    # With the repository gone, a commit pin that is already installed still succeeds: nothing was asked of it.
    repo.bare.rename(repo.bare.with_suffix(".away"))
    outcome = host.run([by_commit])
    assert outcome.changed_agents == [] and outcome.results["atlas"]["fetched"] is False
    # A tag is asked upstream on every call (the moved-tag check), so the same soul by tag fails loudly.
    with pytest.raises(SoulError, match="atlas: .*git ls-remote failed"):
        host.run([by_tag])


def test_file_urls_and_commit_pins_install_the_exact_commit(host):
    repo = host.repo()
    first = repo.commit({"SOUL.md": "first\n"})
    repo.commit({"SOUL.md": "second\n"})
    repo.push("HEAD:refs/heads/main")
    entry = host.entry("atlas", f"file://{repo.bare}", first)
    result = host.run([entry]).results["atlas"]
    assert result["commit"] == first
    assert (pathlib.Path(entry["workspace"]) / "SOUL.md").read_text() == "first\n"


def test_two_agents_in_one_call_and_a_version_change_touches_only_its_agent(host):
    atlas, hermes = host.repo("atlas"), host.repo("hermes")
    for repo in (atlas, hermes):
        repo.commit({"SOUL.md": f"{repo.agent} v1\n"})
        repo.tag("v1")
        repo.commit({"SOUL.md": f"{repo.agent} v2\n"})
        repo.tag("v2")
        repo.push("HEAD:refs/heads/main", "v1", "v2")
    entries = [host.entry("atlas", atlas.bare, "v1"), host.entry("hermes", hermes.bare, "v1")]
    assert host.run(entries).changed_agents == ["atlas", "hermes"]
    hermes_before = _tree(entries[1]["workspace"])

    entries[0]["version"] = "v2"
    outcome = host.run(entries)

    assert outcome.changed_agents == ["atlas"]
    assert outcome.results["atlas"]["changed_files"] == ["SOUL.md"]
    assert (pathlib.Path(entries[0]["workspace"]) / "SOUL.md").read_text() == "atlas v2\n"
    assert _tree(entries[1]["workspace"]) == hermes_before
    assert host.run(entries).changed_agents == []


def test_the_agents_own_files_stay_byte_for_byte(host):
    repo = host.repo()
    repo.commit({"SOUL.md": "v1\n"})
    repo.tag("v1")
    repo.commit({"SOUL.md": "v2\n", "memories/curated/first.md": "remember\n"})
    repo.tag("v2")
    repo.push("HEAD:refs/heads/main", "v1", "v2")
    entry = host.entry("atlas", repo.bare, "v1")
    host.run([entry])
    workspace = pathlib.Path(entry["workspace"])
    (workspace / "MEMORY.md").write_text("I met the operator.\n")
    (workspace / "memory").mkdir()
    (workspace / "memory" / "2026-12-01.md").write_bytes(b"\x00binary\xff notes\n")
    (workspace / "notes.txt").write_text("mine\n")
    for path in ("MEMORY.md", "memory", "memory/2026-12-01.md", "notes.txt"):
        os.chown(workspace / path, AGENT_UID, AGENT_GID)
    theirs = {p: v for p, v in _tree(workspace).items() if p in ("MEMORY.md", "memory/2026-12-01.md", "notes.txt")}

    outcome = host.run([dict(entry, version="v2")])

    assert sorted(outcome.results["atlas"]["changed_files"]) == ["SOUL.md", "memories/curated/first.md"]
    after = _tree(workspace)
    assert {p: after[p] for p in theirs} == theirs


def test_an_edit_by_the_agent_is_installed_again_and_reported(host):
    repo = host.repo()
    repo.commit()
    repo.tag("v1")
    repo.push("v1")
    entry = host.entry("atlas", repo.bare, "v1")
    host.run([entry])
    soul_md = pathlib.Path(entry["workspace"]) / "SOUL.md"
    soul_md.write_text("I am someone else now.\n")
    (pathlib.Path(entry["workspace"]) / "USER.md").unlink()
    soul_md.chmod(0o666)

    outcome = host.run([entry], check_mode=True)
    assert outcome.results["atlas"]["changed_files"] == ["SOUL.md", "USER.md"]
    assert soul_md.read_text() == "I am someone else now.\n"
    diff = next(d for d in outcome.diffs if d["before_header"] == "atlas: SOUL.md")
    assert diff["before"] == "I am someone else now.\n" and diff["after"] == CORE["SOUL.md"]

    outcome = host.run([entry])
    assert outcome.results["atlas"]["changed_files"] == ["SOUL.md", "USER.md"]
    assert soul_md.read_text() == CORE["SOUL.md"] and stat.S_IMODE(soul_md.stat().st_mode) == 0o640


def test_a_file_dropped_by_the_new_version_is_removed_only_when_the_agent_left_it_alone(host):
    repo = host.repo()
    repo.commit({"skills/a/SKILL.md": "a\n", "skills/b/SKILL.md": "b\n"})
    repo.tag("v1")
    repo.commit(remove=["skills/a/SKILL.md", "skills/b/SKILL.md"])
    repo.tag("v2")
    repo.push("v1", "v2")
    entry = host.entry("atlas", repo.bare, "v1")
    host.run([entry])
    skills = pathlib.Path(entry["workspace"]) / "skills"
    (skills / "b" / "SKILL.md").write_text("b, improved by the agent\n")

    result = host.run([dict(entry, version="v2")]).results["atlas"]

    assert result["removed_files"] == ["skills/a/SKILL.md"] and result["changed_files"] == []
    assert not (skills / "a" / "SKILL.md").exists()
    assert (skills / "b" / "SKILL.md").read_text() == "b, improved by the agent\n"


# --- pinned means pinned ------------------------------------------------------------------------------------


def test_a_tag_moved_upstream_is_refused_naming_both_commits(host):
    repo = host.repo()
    old = repo.commit({"SOUL.md": "old\n"})
    repo.tag("v1")
    repo.push("HEAD:refs/heads/main", "v1")
    entry = host.entry("atlas", repo.bare, "v1")
    host.run([entry])
    new = repo.commit({"SOUL.md": "new\n"})
    repo.tag("v1", force=True)
    repo.push("HEAD:refs/heads/main", "v1", force=True)

    with pytest.raises(SoulError) as excinfo:
        host.run([entry])
    assert f"tag v1 moved upstream from {old} to {new}" in _problems(excinfo)
    assert excinfo.value.results["atlas"]["moved_tag"] == {"old": old, "new": new}
    assert (pathlib.Path(entry["workspace"]) / "SOUL.md").read_text() == "old\n"

    outcome = host.run([entry], moved_tag="warn")
    assert outcome.results["atlas"]["commit"] == old and outcome.results["atlas"]["changed"] is False
    assert outcome.results["atlas"]["moved_tag"] == {"old": old, "new": new}
    assert old in outcome.warnings[0] and new in outcome.warnings[0]
    assert (pathlib.Path(entry["workspace"]) / "SOUL.md").read_text() == "old\n"

    # Following it on purpose: pin the new commit.
    assert host.run([dict(entry, version=new)]).results["atlas"]["changed_files"] == ["SOUL.md"]


def test_a_lightweight_tag_is_pinned_too(host):
    repo = host.repo()
    old = repo.commit({"SOUL.md": "old\n"})
    repo.tag("v1", annotated=False)
    repo.push("v1")
    entry = host.entry("atlas", repo.bare, "v1")
    assert host.run([entry]).results["atlas"]["commit"] == old
    repo.commit({"SOUL.md": "new\n"})
    repo.tag("v1", force=True, annotated=False)
    repo.push("v1", force=True)
    with pytest.raises(SoulError, match=f"moved upstream from {old}"):
        host.run([entry])


def test_a_branch_is_not_a_pinned_version(host):
    repo = host.repo()
    repo.commit()
    repo.push("HEAD:refs/heads/release")
    with pytest.raises(SoulError, match="version release is a branch in .*not a pinned version"):
        host.run([host.entry("atlas", repo.bare, "release")])
    with pytest.raises(SoulError, match="version v9 is not a tag"):
        host.run([host.entry("atlas", repo.bare, "v9")])


def test_a_force_pushed_branch_does_not_move_a_commit_pin(host):
    repo = host.repo()
    pinned = repo.commit({"SOUL.md": "pinned\n"})
    repo.push("HEAD:refs/heads/main")
    entry = host.entry("atlas", repo.bare, pinned)
    host.run([entry])
    # Rewrite main: an unrelated history, force-pushed, and the old commit pruned upstream.
    _git("checkout", "-q", "--orphan", "rewritten", cwd=repo.work)
    repo.commit({"SOUL.md": "rewritten\n"})
    repo.push("+HEAD:refs/heads/main", force=True)
    _git("reflog", "expire", "--expire=now", "--all", cwd=repo.bare)
    _git("gc", "-q", "--prune=now", cwd=repo.bare)

    result = host.run([entry]).results["atlas"]
    assert result["commit"] == pinned and result["changed"] is False
    assert (pathlib.Path(entry["workspace"]) / "SOUL.md").read_text() == "pinned\n"
    # A host that never had it cannot get it any more, and says so.
    with pytest.raises(SoulError, match=f"hermes: commit {pinned} could not be fetched"):
        host.run([host.entry("hermes", repo.bare, pinned)])


# --- refusals --------------------------------------------------------------------------------------------

# Fakes, assembled at run time so that no scanner takes this file for a leak.
BEGIN = "-----BEGIN "
FAKE = {
    "ssh": "b3BlbnNzaC1rZXktdjEAAAAA",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "ghp": "ghp" + "_0123456789abcdefghijABCDEFGHIJ012345",
    "pat": "github" + "_pat_11ABCDEFG0123456789_abcdefghijklmnop",
    "openai": "sk-" + "proj-Abcdefghijklmnopqrstuvwx12",
    "slack": "xox" + "b-123456789012-abcdefABCDEF",
}
SECRETS = [
    ("keys/deploy", f"{BEGIN}OPENSSH PRIVATE KEY-----\n{FAKE['ssh']}\n-----END OPENSSH PRIVATE KEY-----\n", 1,
     FAKE["ssh"]),
    ("SOUL.md", f"# Atlas\n\nold key {BEGIN}RSA PRIVATE KEY----- here\n", 3, None),
    ("TOOLS.md", f"aws:\n  id: {FAKE['aws']}\n", 2, FAKE["aws"]),
    ("USER.md", f"gh {FAKE['ghp']} ok\n", 1, FAKE["ghp"]),
    ("USER.md", f"a\nb\n{FAKE['pat']}\n", 3, FAKE["pat"]),
    ("AGENTS.md", f"use {FAKE['openai']} for openai\n", 1, FAKE["openai"]),
    ("AGENTS.md", f"slack: {FAKE['slack']}\n", 1, FAKE["slack"]),
    ("config/app.yml", "db:\n  password: \"hunter2hunter2\"\n", 2, "hunter2hunter2"),
    ("config/app.ini", "[x]\napi_key = 9f8e7d6c5b4a39281706f5e4d3c2b1a0\n", 2, "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("skills/x/SKILL.md", "SECRET='s3cr3t-value'\n", 1, "s3cr3t-value"),
    (".env", "NOTHING_SECRET_LOOKING=1\n", None, None),
    ("deploy/prod.env", "X=1\n", None, None),
]


@pytest.mark.parametrize(("path", "content", "line", "value"), SECRETS, ids=[f"{s[0]}:{s[2]}" for s in SECRETS])
def test_a_soul_carrying_a_secret_is_refused_naming_file_and_line_never_the_value(host, path, content, line, value):
    repo = host.repo()
    commit = repo.commit({path: content})
    repo.push("HEAD:refs/heads/main")
    entry = host.entry("atlas", repo.bare, commit)

    with pytest.raises(SoulError) as excinfo:
        host.run([entry])

    text = _problems(excinfo) + str(excinfo.value) + json.dumps(excinfo.value.results)
    where = f"{path} line {line}" if line else path
    assert f"atlas: secret in {where} (" in text
    if value:
        assert value not in text
    assert os.listdir(entry["workspace"]) == []


def test_placeholders_and_prose_are_not_secrets(host):
    repo = host.repo()
    commit = repo.commit({"config/app.yml": "password: \"${DB_PASSWORD}\"\ntoken: '<your token>'\n",
                          "AGENTS.md": "Never print a token: ask the operator for the secret instead.\n"
                                       "password = \"********\"\n"})
    repo.push("HEAD:refs/heads/main")
    assert host.run([host.entry("atlas", repo.bare, commit)]).results["atlas"]["commit"] == commit


@pytest.mark.parametrize(("files", "message"), [
    ({"manifest.json": None}, "the core file manifest.json is missing"),
    ({"manifest.json": '{"schema_version": 1, "agent_id": "hermes"}'},
     "manifest.json: agent_id 'hermes' is not the agent's name"),
    ({"manifest.json": '{"schema_version": 2, "agent_id": "atlas"}'},
     "manifest.json: schema_version 2 is not supported (supported: 1)"),
    ({"manifest.json": '{"agent_id": "atlas"}'}, "manifest.json: schema_version None is not supported"),
    ({"manifest.json": "{not json"}, "manifest.json is not valid JSON"),
    ({"manifest.json": "[1]"}, "manifest.json must be a JSON object"),
    ({"IDENTITY.md": None}, "the core file IDENTITY.md is missing"),
    ({"MEMORY.md": "seeded memories\n"}, "the soul tracks MEMORY.md, which the agent owns at runtime"),
    ({"memory/today.md": "x\n"}, "the soul tracks memory/today.md, which the agent owns at runtime"),
])
def test_a_wrong_manifest_or_missing_core_file_is_refused_by_name(host, files, message):
    repo = host.repo()
    files = dict(files)
    manifest = files.pop("manifest.json", "keep")
    commit = repo.commit(files, manifest=False)
    if manifest != "keep":
        (repo.work / "manifest.json").unlink(missing_ok=True)
        if manifest is not None:
            (repo.work / "manifest.json").write_text(manifest)
    else:
        (repo.work / "manifest.json").write_text(json.dumps({"schema_version": 1, "agent_id": "atlas"}))
    _git("add", "-A", cwd=repo.work)
    _git("commit", "-q", "--allow-empty", "-m", "manifest", cwd=repo.work)
    commit = _git("rev-parse", "HEAD", cwd=repo.work)
    repo.push("HEAD:refs/heads/main")
    entry = host.entry("atlas", repo.bare, commit)
    with pytest.raises(SoulError) as excinfo:
        host.run([entry])
    assert f"atlas: {message}" in _problems(excinfo)
    assert os.listdir(entry["workspace"]) == []


def test_a_symlink_in_the_soul_is_refused(host):
    repo = host.repo()
    repo.commit()
    os.symlink("/etc/master.passwd", repo.work / "TOOLS.md.link")
    _git("add", "-A", cwd=repo.work)
    _git("commit", "-q", "-m", "link", cwd=repo.work)
    repo.push("HEAD:refs/heads/main")
    with pytest.raises(SoulError, match="TOOLS.md.link is a symlink: a soul holds regular files only"):
        host.run([host.entry("atlas", repo.bare, _git("rev-parse", "HEAD", cwd=repo.work))])


def test_one_refused_soul_stops_every_workspace_write(host):
    good, bad = host.repo("atlas"), host.repo("hermes")
    good_commit = good.commit()
    good.push("HEAD:refs/heads/main")
    bad_commit = bad.commit({"SOUL.md": FAKE["aws"] + "\n"})
    bad.push("HEAD:refs/heads/main")
    entries = [host.entry("atlas", good.bare, good_commit), host.entry("hermes", bad.bare, bad_commit)]
    with pytest.raises(SoulError, match="hermes: secret in SOUL.md line 1"):
        host.run(entries)
    assert os.listdir(entries[0]["workspace"]) == []


# --- a hostile workspace -------------------------------------------------------------------------------------


def _installed(host, files=None):
    repo = host.repo()
    commit = repo.commit(files)
    repo.push("HEAD:refs/heads/main")
    return host.entry("atlas", repo.bare, commit)


def test_a_symlink_planted_where_a_soul_file_goes_is_replaced_not_followed(host):
    entry = _installed(host, {"skills/search/SKILL.md": "search\n"})
    victim = host.root / "victim"
    victim.write_text("root's file\n")
    victim.chmod(0o600)
    outside = host.root / "outside"
    outside.mkdir()
    workspace = pathlib.Path(entry["workspace"])
    os.symlink(victim, workspace / "SOUL.md")
    os.symlink(outside, workspace / "skills")
    for link in ("SOUL.md", "skills"):
        os.lchown(workspace / link, AGENT_UID, AGENT_GID)

    outcome = host.run([entry])

    assert victim.read_text() == "root's file\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert victim.stat().st_uid == 0 and os.listdir(outside) == []
    assert not (workspace / "SOUL.md").is_symlink() and (workspace / "SOUL.md").read_text() == CORE["SOUL.md"]
    assert not (workspace / "skills").is_symlink() and (workspace / "skills/search/SKILL.md").read_text() == "search\n"
    diff = next(d for d in outcome.diffs if d["before_header"] == "atlas: SOUL.md")
    assert "symlink planted" in diff["before"] and "root's file" not in json.dumps(outcome.diffs)


def test_a_hard_link_or_fifo_planted_in_the_workspace_is_neither_read_nor_changed(host):
    entry = _installed(host)
    secret = host.root / "shadow"
    secret.write_text("root:$6$hash:0:0::\n")
    secret.chmod(0o600)
    workspace = pathlib.Path(entry["workspace"])
    os.link(secret, workspace / "USER.md")
    os.mkfifo(workspace / "IDENTITY.md")

    outcome = host.run([entry])

    st = secret.stat()
    assert secret.read_text() == "root:$6$hash:0:0::\n" and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert st.st_nlink == 1
    assert (workspace / "USER.md").read_text() == CORE["USER.md"]
    assert stat.S_ISREG((workspace / "IDENTITY.md").lstat().st_mode)
    assert "$6$hash" not in json.dumps(outcome.diffs)


def test_a_directory_where_a_soul_file_goes_is_reported(host):
    entry = _installed(host)
    (pathlib.Path(entry["workspace"]) / "SOUL.md").mkdir()
    with pytest.raises(SoulError, match="atlas: workspace .*SOUL.md: is a directory where the soul has a file"):
        host.run([entry])


def test_a_workspace_reached_through_a_symlink_is_not_followed(host):
    entry = _installed(host)
    real = pathlib.Path(entry["workspace"])
    moved = real.with_name("elsewhere")
    real.rename(moved)
    os.symlink(moved, real)
    with pytest.raises(SoulError, match="a component is a symlink or not a directory"):
        host.run([entry])
    assert os.listdir(moved) == []


def test_a_checkout_the_agent_could_reach_is_refused(host):
    entry = _installed(host)
    reachable = host.root / "agents" / "atlas" / "soul"
    os.chown(reachable.parent, AGENT_UID, AGENT_GID)
    with pytest.raises(SoulError, match=f"dest {reachable}: .*owned by uid {AGENT_UID}, not root"):
        host.run([dict(entry, dest=str(reachable))])
    assert not reachable.exists()


# --- check mode ----------------------------------------------------------------------------------------------


def test_check_mode_writes_nothing_and_reports_the_real_changes(host):
    repo = host.repo()
    repo.commit({"SOUL.md": "v1\n"})
    repo.tag("v1")
    repo.commit({"SOUL.md": "v2\n"})
    repo.tag("v2")
    repo.push("v1", "v2")
    entry = host.entry("atlas", repo.bare, "v1")

    first = host.run([entry], check_mode=True)
    assert first.changed_agents == ["atlas"] and "SOUL.md" in first.results["atlas"]["changed_files"]
    assert not pathlib.Path(entry["dest"]).exists() and os.listdir(entry["workspace"]) == []

    host.run([entry])
    dest_before, workspace_before = _tree(entry["dest"]), _tree(entry["workspace"])
    update = host.run([dict(entry, version="v2")], check_mode=True)
    assert update.results["atlas"]["changed_files"] == ["SOUL.md"]
    assert [(d["before"], d["after"]) for d in update.diffs] == [("v1\n", "v2\n")]
    assert _tree(entry["dest"]) == dest_before and _tree(entry["workspace"]) == workspace_before


def test_check_mode_for_an_agent_whose_workspace_is_not_created_yet(host):
    entry = _installed(host)
    entry["workspace"] = str(host.root / "agents" / "newcomer" / "workspace")
    entry["owner"] = entry["group"] = "nosuchuser-warden"
    result = host.run([entry], check_mode=True).results["atlas"]
    assert "SOUL.md" in result["changed_files"]
    with pytest.raises(SoulError, match="owner 'nosuchuser-warden' or group 'nosuchuser-warden' does not exist"):
        host.run([entry])


# --- git, bounded and strict -----------------------------------------------------------------------------


def test_ssh_is_strict_about_host_keys_and_deploy_keys(host, tmp_path):
    env = Git(GIT, known_hosts="/usr/local/etc/warden/ssh_known_hosts").environment("/root/keys/atlas")
    ssh = env["GIT_SSH_COMMAND"]
    for option in ("StrictHostKeyChecking=yes", "UserKnownHostsFile=/usr/local/etc/warden/ssh_known_hosts",
                   "BatchMode=yes", "IdentitiesOnly=yes", "-i /root/keys/atlas", "-F /dev/null"):
        assert option in ssh
    assert env["GIT_TERMINAL_PROMPT"] == "0"

    entry = host.entry("atlas", "git@git.example.net:souls/atlas.git", "v1", key_file=str(tmp_path / "key"))
    (tmp_path / "key").write_text("not checked here\n")
    (tmp_path / "key").chmod(0o644)
    with pytest.raises(SoulError, match="must be a regular file owned by root, mode 0600"):
        host.run([entry])
    (tmp_path / "key").chmod(0o600)
    installer = SoulInstaller(Git(GIT, known_hosts=str(tmp_path / "missing_known_hosts")))
    with pytest.raises(SoulError, match="known_hosts .*missing_known_hosts is missing"):
        installer.run([entry])


def test_a_hanging_git_is_killed_at_the_timeout(tmp_path):
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\nsleep 30 &\nwait\n")
    fake.chmod(0o755)
    with pytest.raises(soul.GitError, match="did not finish within 1s"):
        Git(str(fake), timeout=1).run(["ls-remote", "x"])


def test_credentials_in_a_url_never_reach_a_message(host):
    entry = host.entry("atlas", "https://deploy:hunter2secret@127.0.0.1:9/souls/atlas.git", "v1")
    with pytest.raises(SoulError) as excinfo:
        host.run([entry])
    assert "hunter2secret" not in _problems(excinfo) and "***@127.0.0.1" in _problems(excinfo)


def test_two_entries_for_one_checkout_are_refused(host):
    entry = _installed(host)
    with pytest.raises(SoulError, match="dest .* is also atlas's"):
        host.run([entry, dict(entry, agent="hermes", workspace=str(host.root / "w2"))])


def test_a_noop_call_runs_a_few_local_git_commands_per_agent_and_no_fetch(host, monkeypatch):
    repos = [host.repo(name) for name in ("atlas", "hermes", "pi")]
    entries = []
    for repo in repos:
        entries.append(host.entry(repo.agent, repo.bare, repo.commit()))
        repo.push("HEAD:refs/heads/main")
    host.run(entries)
    calls = []
    real_run = Git.run

    def counting_run(self, args, *rest, **kwargs):
        calls.append(args[0])
        return real_run(self, args, *rest, **kwargs)

    monkeypatch.setattr(Git, "run", counting_run)
    assert host.run(entries).changed_agents == []
    assert not {"fetch", "ls-remote", "checkout", "init"} & set(calls)
    # HEAD, the origin URL, the tree, the blobs.
    assert len(calls) == 4 * len(entries)


def test_a_tag_recreated_on_the_same_commit_has_not_moved(host):
    repo = host.repo()
    commit = repo.commit()
    repo.tag("v1")
    repo.push("v1")
    entry = host.entry("atlas", repo.bare, "v1")
    host.run([entry])
    _git("tag", "-f", "-a", "-m", "same commit, new message", "v1", commit, cwd=repo.work)
    repo.push("v1", force=True)
    result = host.run([entry]).results["atlas"]
    assert result["moved_tag"] is None and result["changed"] is False and result["commit"] == commit


def test_a_workspace_owned_by_someone_else_is_refused(host):
    entry = _installed(host)
    os.chown(entry["workspace"], AGENT_UID + 1, AGENT_GID)
    with pytest.raises(SoulError, match=f"is owned by uid {AGENT_UID + 1}, not {AGENT_UID}"):
        host.run([entry])
    assert os.listdir(entry["workspace"]) == []


def test_a_refused_tag_is_not_pinned_so_fixing_it_upstream_is_not_a_moved_tag(host):
    repo = host.repo()
    repo.commit({"USER.md": FAKE["ghp"] + "\n"})
    repo.tag("v1")
    repo.push("v1")
    entry = host.entry("atlas", repo.bare, "v1")
    with pytest.raises(SoulError, match="secret in USER.md line 1"):
        host.run([entry])
    fixed = repo.commit()
    repo.tag("v1", force=True)
    repo.push("v1", force=True)
    result = host.run([entry]).results["atlas"]
    assert result["commit"] == fixed and result["moved_tag"] is None
    assert _git("rev-parse", "refs/tags/v1^{commit}", cwd=entry["dest"]) == fixed
    assert _git("for-each-ref", "refs/warden/", cwd=entry["dest"]) == ""


def test_an_ssh_repository_is_fetched_through_ssh_with_the_deploy_key_and_strict_host_keys(host, tmp_path,
                                                                                           monkeypatch):
    # ssh here is a stand-in for OpenSSH's client: it logs its arguments and runs the remote command (git's
    # upload-pack on the repository path) locally, as sshd would on the server.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ssh.log"
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nfor last; do :; done\nexec sh -c "$last"\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    repo = host.repo()
    commit = repo.commit()
    repo.tag("v1")
    repo.push("v1")
    key = tmp_path / "atlas_deploy_key"
    key.write_text("deploy key (the ssh stand-in does not read it)\n")
    key.chmod(0o600)
    known_hosts = tmp_path / "ssh_known_hosts"
    known_hosts.write_text("soul.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBf0cvVZ0oE9q6G5xQ0NbQ1xjQ9dJ7W\n")
    entry = host.entry("atlas", f"git@soul.example.net:{repo.bare}", "v1", key_file=str(key))

    outcome = SoulInstaller(Git(GIT, known_hosts=str(known_hosts))).run([entry])

    assert outcome.results["atlas"]["commit"] == commit
    calls = log.read_text().splitlines()
    assert len(calls) == 2  # ls-remote, then the fetch of the tag
    for call in calls:
        for part in ("-F /dev/null", "BatchMode=yes", "StrictHostKeyChecking=yes",
                     f"UserKnownHostsFile={known_hosts}", "GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes",
                     f"-i {key}", "git@soul.example.net", f"git-upload-pack '{repo.bare}'"):
            assert part in call, (part, call)


def test_a_hand_made_tree_reaching_out_of_the_workspace_is_refused(host):
    repo = host.repo()
    repo.commit()
    # git mktree accepts a '..' entry that git checkout would refuse; the soul is read from git objects.
    inner = _git("write-tree", cwd=repo.work)
    listing = _git("ls-tree", inner, cwd=repo.work)
    evil = subprocess.run([GIT, "mktree"], cwd=repo.work, input=f"{listing}\n040000 tree {inner}\t..\n", text=True,
                          capture_output=True, check=True).stdout.strip()
    commit = _git("commit-tree", evil, "-m", "escape", cwd=repo.work)
    _git("push", "-q", str(repo.bare), f"{commit}:refs/heads/evil", cwd=repo.work)
    entry = host.entry("atlas", repo.bare, commit)
    before = sorted(os.listdir(pathlib.Path(entry["workspace"]).parent))
    with pytest.raises(SoulError, match=r"'\.\./SOUL\.md' has a '\.', '\.\.', '\.git' or empty component"):
        host.run([entry])
    assert sorted(os.listdir(pathlib.Path(entry["workspace"]).parent)) == before
    assert os.listdir(entry["workspace"]) == []


def test_a_server_that_serves_only_its_refs_still_gives_a_commit_pin_one_of_them_holds(host, monkeypatch):
    repo = host.repo()
    pinned = repo.commit({"SOUL.md": "pinned\n"})
    repo.commit({"SOUL.md": "later\n"})
    repo.push("HEAD:refs/heads/main")
    real_run = Git.run
    refused = []

    def refusing_run(self, args, *rest, **kwargs):
        if args[0] == "fetch" and args[-1] == pinned:
            refused.append(args)
            raise soul.GitError("git fetch failed: fatal: remote error: upload-pack: not our ref " + pinned)
        return real_run(self, args, *rest, **kwargs)

    monkeypatch.setattr(Git, "run", refusing_run)
    entry = host.entry("atlas", repo.bare, pinned)
    assert host.run([entry]).results["atlas"]["commit"] == pinned and refused
    assert (pathlib.Path(entry["workspace"]) / "SOUL.md").read_text() == "pinned\n"
    with pytest.raises(SoulError, match="no branch or tag there holds it"):
        host.run([host.entry("hermes", repo.bare, "0" * 40)])

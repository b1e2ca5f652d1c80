"""Soul repositories for the example inventory, inside a stand-in host.

The example inventory's souls are https URLs of git.example.net, which cannot
be reached from here. This builds a bare repository per agent of the example
inventory inside the stand-in (``/var/tmp/souls/NAME.git``), tagged at the
inventory's pinned version, and points root's git there with
``url.<base>.insteadOf`` in the stand-in's ``/root/.gitconfig``: the inventory
and the soul_repo module run unchanged, git fetches the local copy.

    python soul_repos.py STANDIN_ROOT
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
INVENTORY = os.path.join(PROJECT, "inventories", "example", "hosts.yml")
SOULS = "/var/tmp/souls"
GIT_ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="Soul Author",
    GIT_AUTHOR_EMAIL="souls@example.net",
    GIT_COMMITTER_NAME="Soul Author",
    GIT_COMMITTER_EMAIL="souls@example.net",
    GIT_CONFIG_NOSYSTEM="1",
    HOME="/nonexistent",
)


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True).stdout


def example_souls():
    with open(INVENTORY, encoding="utf-8") as handle:
        hosts = yaml.safe_load(handle)["warden_hosts"]["hosts"]
    hostvars = next(iter(hosts.values()))
    return {name: agent["soul"] for name, agent in hostvars["warden_agents"].items() if agent.get("soul")}


def soul_files(name, version):
    return {
        "manifest.json": json.dumps({"schema_version": 1, "agent_id": name, "provenance": "molecule"}) + "\n",
        "SOUL.md": f"# {name.capitalize()}\n\nSoul of {name} at {version}.\n",
        "USER.md": f"# The operator of {name}\n",
        "IDENTITY.md": f"# {name}\n\nRuns on the warden host; version {version}.\n",
        "AGENTS.md": f"# Rules of {name}\n",
        "skills/notes/SKILL.md": "# Skill: notes\n",
    }


def add_version(root, name, version, files=None):
    """Commit ``files`` (default: the soul of ``name`` at ``version``) and tag it ``version``; returns the commit."""
    bare = os.path.join(root, SOULS.lstrip("/"), f"{name}.git")
    tagged = subprocess.run(
        ["git", "-C", bare, "rev-parse", f"refs/tags/{version}^{{commit}}"],
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    if tagged.returncode == 0:
        return tagged.stdout.strip()
    if not os.path.isdir(bare):
        os.makedirs(os.path.dirname(bare), exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", bare)
    with tempfile.TemporaryDirectory() as work:
        git("clone", "-q", bare, work)
        for rel, text in (files or soul_files(name, version)).items():
            path = os.path.join(work, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"{name} {version}", cwd=work)
        git("tag", version, cwd=work)
        git("push", "-q", "origin", "HEAD:refs/heads/main", f"refs/tags/{version}", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()


def build(root):
    """Every example soul at its pinned version, and root's git pointed at them. Returns {agent: commit}."""
    commits = {}
    bases = set()
    for name, soul in example_souls().items():
        bases.add(soul["repo"].rsplit("/", 1)[0] + "/")
        commits[name] = add_version(root, name, soul["version"])
    config = "".join(f'[url "file://{SOULS}/"]\n\tinsteadOf = {base}\n' for base in sorted(bases))
    with open(os.path.join(root, "root", ".gitconfig"), "w", encoding="utf-8") as handle:
        handle.write(config)
    return commits


if __name__ == "__main__":
    print(json.dumps(build(sys.argv[1])))

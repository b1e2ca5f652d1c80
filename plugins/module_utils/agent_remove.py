# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""What is left of a removed agent on its host, whether a verified backup holds its files, and removing it.

An agent is hostile to root, also on its way out: its home tree is its own and may hold symlinks to anything
(``workspace/passwd -> /etc/master.passwd``).  Removal never follows one:

- the directory above each path (root's: ``/usr/local/warden/agents``, ``/var/log``...) is opened from ``/`` down
  without following symlinks (``agent_runtime.open_dir``) and everything after is relative to that descriptor;
- a tree is removed with ``shutil.rmtree(name, dir_fd=...)``, which on a platform with the ``*at`` functions
  (FreeBSD, Linux: ``shutil.rmtree.avoids_symlink_attacks``) opens every directory with ``O_NOFOLLOW`` relative to
  its parent's descriptor and unlinks a symlink instead of entering it; on any other platform nothing is removed;
- the home is first renamed, in its root-owned parent, to ``.warden-removing-NAME``: a removal that stops half way
  never leaves a half workspace where the next backup would take it for the agent's files.

Nothing of an agent is removed while a process of its user runs, nor before the newest good archive of its backups
verifies completely (its sha256 and every member's) and holds the workspace and state exactly as they are on disk
(every directory, file by sha256, link by target; the backup's own exclusions apply).

Standard library only: runs on the FreeBSD host.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pwd
import shutil
import stat

from .agent_runtime import UnsafePath, lstat_at, open_dir
from .backup.common import CHUNK, SECTIONS, BackupError
from .backup.extract import verify_archive
from .backup.manifest import good_archives, load_manifest
from .backup.plan import agent_backup_dir
from .backup.scan import _READ_FLAGS, compile_excludes, scan_tree

PGREP = "/usr/bin/pgrep"
# tmux(1): without TMUX_TMPDIR the server's sockets are in /tmp/tmux-UID/ (the agent's service runs tmux -L SESSION)
TMUX_DIR = "/tmp/tmux-{uid}"
STAGING = ".warden-removing-{name}"
# newsyslog(8) keeps rotated logs as LOG.N, compressed LOG.N.bz2 (J), .gz (Z), .xz (X) or .zst (Y)
ROTATED_SUFFIXES = ("", ".bz2", ".gz", ".xz", ".zst")
# how many differing paths a refusal names
SHOWN = 5


def _exists(path):
    """lstat of path, its parent opened without following symlinks; None when it does not exist."""
    parent, name = os.path.split(path)
    try:
        fd = open_dir(parent)
    except FileNotFoundError:
        return None
    try:
        return lstat_at(fd, name)
    finally:
        os.close(fd)


def _rotated_logs(log):
    """The log's rotated copies newsyslog left (LOG.0, LOG.1.bz2, ...)."""
    parent, base = os.path.split(log)
    try:
        fd = open_dir(parent)
    except FileNotFoundError:
        return []
    try:
        names = os.listdir(fd)
    finally:
        os.close(fd)
    found = []
    for name in names:
        rest = name[len(base) + 1:] if name.startswith(base + ".") else ""
        number, _dot, suffix = rest.partition(".")
        if number.isdigit() and ("." + suffix if suffix else "") in ROTATED_SUFFIXES:
            found.append(os.path.join(parent, name))
    return sorted(found)


def agent_paths(agent):
    """Every path of the agent's that removal deletes, from the plan, in the order they go (the home last)."""
    paths, service = agent.get("paths") or {}, agent.get("service") or {}
    found = [paths.get("env_file"), service.get("pidfile"), service.get("child_pidfile")]
    if service.get("log"):
        found += [service["log"]] + _rotated_logs(service["log"])
    for tree in (paths.get("soul"), paths.get("home")):
        if tree:
            parent, name = os.path.split(tree)
            found += [os.path.join(parent, STAGING.format(name=name)), tree]
    return [p for p in found if p]


def user_entry(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def leftovers(agent):
    """What is left of the agent: {"paths": [...], "user": bool, "group": bool, "uid": int or None}."""
    user = (agent.get("user") or {}).get("name")
    entry = user_entry(user) if user else None
    paths = [p for p in agent_paths(agent) if _exists(p) is not None]
    if entry is not None:
        tmux = TMUX_DIR.format(uid=entry.pw_uid)
        st = _exists(tmux)
        # only the agent's own socket directory: a uid reused since is not ours to judge here
        if st is not None and st.st_uid == entry.pw_uid:
            paths.append(tmux)
    return {"paths": paths, "user": entry is not None, "uid": entry.pw_uid if entry else None}


def processes(run_command, user):
    """Pids of the user's processes on the host (not in a jail), by pgrep(1): exit 0 found, 1 none."""
    rc, out, err = run_command([PGREP, "-d", " ", "-U", user, "-j", "none"])
    if rc == 1:
        return []
    if rc != 0:
        raise BackupError(f"pgrep -U {user} failed (rc={rc}): {(err or out).strip()}")
    return out.split()


def _sha256_nofollow(path):
    digest = hashlib.sha256()
    fd = os.open(path, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        while True:
            block = os.read(fd, CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)
    finally:
        os.close(fd)


def tree_differences(entries, manifest):
    """Paths where the workspace and state on disk differ from the archive's manifest."""
    expected = {f["path"]: f for f in manifest.get("files") or [] if f["path"].split("/", 1)[0] in SECTIONS}
    differ = []
    for e in entries:
        if not _same(e, expected.pop(e.path, None)):
            differ.append(e.path)
    return differ + sorted(expected)


def _same(entry, want):
    """Whether the manifest's entry ``want`` is the entry on disk: its type, a file's content, a link's target."""
    if want is None or want.get("type") != entry.kind:
        return False
    if entry.kind == "f":
        return want.get("size") == entry.size and want.get("sha256") == _sha256_nofollow(entry.src)
    if entry.kind in ("l", "h"):
        return want.get("target") == entry.target
    return True


def backup_coverage(plan, name, verify=True):
    """Whether a verified backup holds the agent's workspace and state as they are now.

    {"status": "covered" | "needed" | "nothing", "archive": path or None, "reason": str}. "nothing": neither
    directory exists, there is nothing to lose.
    """
    agent = plan["agents"][name]
    paths = agent.get("paths") or {}
    rules = compile_excludes((plan.get("backup") or {}).get("exclude") or [])
    entries = []
    for section in SECTIONS:
        if paths.get(section):
            entries.extend(scan_tree(paths[section], section, rules, [], links={}))
    if not entries:
        return {"status": "nothing", "archive": None, "reason": "no workspace or state on disk"}
    archives = good_archives(agent_backup_dir(plan, name), name)
    if not archives:
        return {"status": "needed", "archive": None, "reason": "it has no backup"}
    newest = max(archives, key=lambda a: a["time"])["path"]
    manifest = load_manifest(newest)
    differ = tree_differences(entries, manifest)
    if differ:
        shown = ", ".join(differ[:SHOWN]) + (f" and {len(differ) - SHOWN} more" if len(differ) > SHOWN else "")
        return {"status": "needed", "archive": newest, "reason": f"its newest backup {newest} lacks {shown}"}
    if verify:
        try:
            verify_archive(newest, manifest)
        except BackupError as exc:
            return {"status": "needed", "archive": newest, "reason": f"its newest backup does not verify: {exc}"}
    return {"status": "covered", "archive": newest, "reason": ""}


def remove_path(path):
    """Remove path (a tree, a file or a link) without following any symlink; the home goes through its staging
    name first. True when something was removed."""
    if not shutil.rmtree.avoids_symlink_attacks:
        raise UnsafePath("this platform's shutil.rmtree can follow symlinks: nothing removed")
    parent, name = os.path.split(path)
    try:
        fd = open_dir(parent)
    except FileNotFoundError:
        return False
    try:
        st = lstat_at(fd, name)
        if st is None:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=fd)
            return True
        if not name.startswith(".warden-removing-"):
            staging = STAGING.format(name=name)
            if lstat_at(fd, staging) is not None:
                shutil.rmtree(staging, dir_fd=fd)
            os.rename(name, staging, src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
            name = staging
        shutil.rmtree(name, dir_fd=fd)
        os.fsync(fd)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    finally:
        os.close(fd)

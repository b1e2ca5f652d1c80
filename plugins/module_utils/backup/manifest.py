# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Manifests, the verification records and archives moved aside as damaged."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import socket
import tarfile
import threading
import zlib

from .common import (
    CHUNK,
    DAMAGED_DIR,
    FORMAT,
    MANIFEST_SUFFIX,
    SECTIONS,
    UTC,
    VERIFIED_NAME,
    BackupError,
    __version__,
    atomic_write,
    format_stamp,
    fsync_dir,
    makedirs_private,
    parse_archive_name,
    sha256_file,
    utcnow,
)
from .dumps import _content_start
from .lock import AgentLock
from .tarstream import _finish_stream, _kill_stream, _safe_member, open_tar_stream


def manifest_path(archive_path):
    return archive_path + MANIFEST_SUFFIX


class _ManifestCache:
    """Parsed manifests, kept only while one agent's backup run holds its lock
    (nothing else rewrites a manifest then); per thread, as agents are backed
    up concurrently."""

    local = threading.local()

    def __enter__(self):
        _ManifestCache.local.entries = {}
        return self

    def __exit__(self, *exc):
        _ManifestCache.local.entries = None


def load_manifest(archive_path):
    """The manifest of archive_path if it is valid for that archive, else None."""
    path = manifest_path(archive_path)
    cache = getattr(_ManifestCache.local, "entries", None)
    if cache is not None and path in cache:
        return cache[path]
    try:
        with open(path, "rb") as handle:
            data = _valid_manifest(archive_path, json.loads(handle.read().decode("utf-8")))
    except (OSError, ValueError):
        data = None
    if cache is not None:
        cache[path] = data
    return data


def _valid_manifest(archive_path, data):
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if data.get("archive") != os.path.basename(archive_path):
        return None
    if not re.match(r"^[0-9a-f]{64}$", str(data.get("archive_sha256", ""))):
        return None
    if not isinstance(data.get("files"), list):
        return None
    return data


def list_archives(agent_dir, agent):
    """Archives of an agent, newest first: dicts with name, path, time, size,
    state ("good", "incomplete": no valid manifest, "size-mismatch")."""
    result = []
    try:
        names = os.listdir(agent_dir)
    except OSError:
        return result
    for name in names:
        parsed = parse_archive_name(name, agent)
        if not parsed:
            continue
        path = os.path.join(agent_dir, name)
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        manifest = load_manifest(path)
        state = "good"
        if manifest is None:
            state = "incomplete"
        elif manifest.get("archive_size") != size:
            state = "size-mismatch"
        result.append(
            {
                "name": name,
                "path": path,
                "time": parsed[1],
                "compression": parsed[2],
                "size": size,
                "state": state,
                "manifest": manifest,
            }
        )
    result.sort(key=lambda a: (a["time"], a["name"]), reverse=True)
    return result


def good_archives(agent_dir, agent):
    return [a for a in list_archives(agent_dir, agent) if a["state"] == "good"]


def iso_time(when):
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_verified(agent_dir):
    """Per archive name, what its last full verification found: {"size",
    "mtime_ns", "verified" (UTC time), "sha256"}. Empty when the record is
    missing or unreadable (then the next run hashes the newest archive in full)."""
    try:
        with open(os.path.join(agent_dir, VERIFIED_NAME), "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    archives = data.get("archives") if isinstance(data, dict) and data.get("format") == FORMAT else None
    return archives if isinstance(archives, dict) else {}


def save_verified(agent_dir, records):
    """Write the verification record, keeping only archives that still exist.
    Call only while holding the agent lock."""
    kept = {n: r for n, r in records.items() if os.path.exists(os.path.join(agent_dir, n))}
    data = json.dumps({"format": FORMAT, "archives": kept}, sort_keys=True).encode("utf-8")
    atomic_write(os.path.join(agent_dir, VERIFIED_NAME), data)


def note_verified(agent_dir, path, sha, now=None):
    """Record a full verification made outside a backup run (`warden verify`)
    for the listing, when the archive is one of the agent's and its lock is
    free (otherwise the record is left to the run holding it)."""
    if os.path.dirname(os.path.abspath(path)) != os.path.abspath(agent_dir):
        return False
    try:
        with AgentLock(agent_dir, "verify"):
            records = load_verified(agent_dir)
            st = os.stat(path)
            records[os.path.basename(path)] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "verified": iso_time(now or utcnow()),
                "sha256": sha,
            }
            save_verified(agent_dir, records)
    except (BackupError, OSError):
        return False
    return True


def record_matches(record, st):
    """The archive still has the size and mtime it had when it was last verified in full."""
    return bool(record) and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def verification_due(record, st, now, every_days):
    """A full sha256 check is due: no record, size or mtime changed since it,
    or it is `every_days` days old (0: every run)."""
    if not record_matches(record, st):
        return True
    try:
        last = datetime.datetime.strptime(record.get("verified") or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return True
    return (now - last).total_seconds() >= float(every_days) * 86400


def move_aside(agent_dir, paths):
    """Move files into <agent_dir>/damaged/ (0700) for inspection; never
    overwrites an earlier one there. Returns the new paths."""
    target = os.path.join(agent_dir, DAMAGED_DIR)
    makedirs_private(target)
    moved = []
    for path in paths:
        if not os.path.lexists(path):
            continue
        base = os.path.basename(path)
        dest, count = os.path.join(target, base), 0
        while os.path.lexists(dest):
            count += 1
            dest = os.path.join(target, f"{base}.{count}")
        os.rename(path, dest)
        moved.append(dest)
    fsync_dir(target)
    fsync_dir(agent_dir)
    cache = getattr(_ManifestCache.local, "entries", None)
    if cache:
        for path in paths:
            cache.pop(path, None)
            cache.pop(manifest_path(path), None)
    return moved


def read_manifest_raw(archive_path):
    """The manifest file as JSON (None when missing, "unreadable" when it does not parse)."""
    try:
        with open(manifest_path(archive_path), "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unreadable"


def rebuild_manifest(path, agent, agent_entry=None, host=None, reason="", now=None):
    """A manifest for an archive whose own is missing or damaged, built by
    reading the archive through (the compressor's and tar's own checks catch
    a truncated or corrupt stream): every member's type, mode, mtime, size and
    sha256, the databases and the env member. It has no content digest, so the
    next backup of the agent writes a new archive. Raises BackupError when
    the archive does not read back cleanly or holds members the backup never writes."""
    parsed = parse_archive_name(os.path.basename(path), agent)
    if not parsed:
        raise BackupError(f"{path} is not named like an archive of {agent}")
    agent_entry = agent_entry or {}
    plan_db = agent_entry.get("db") or {}
    files, dbs, env = [], [], {"included": False}
    tar, closer = open_tar_stream(path, parsed[2])
    try:
        for info in tar:
            name = info.name
            if not _safe_member(name):
                raise BackupError(f"{path}: member {name!r} is not a safe relative path")
            head, _sep, rest = name.partition("/")
            mode, mtime = info.mode & 0o7777, int(info.mtime)
            if head in SECTIONS and info.isdir():
                files.append({"mode": mode, "mtime": mtime, "path": name, "type": "d"})
            elif head in SECTIONS and info.issym():
                files.append({"mode": mode, "mtime": mtime, "path": name, "target": info.linkname, "type": "l"})
            elif head in SECTIONS and info.islnk():  # a hard link to an earlier member
                files.append({"mode": mode, "mtime": mtime, "path": name, "target": info.linkname, "type": "h"})
            elif info.isreg() and (head in SECTIONS or (head == "dbs" and rest.endswith(".dump")) or head == "env"):
                digest, content, start = hashlib.sha256(), hashlib.sha256(), b""
                source = tar.extractfile(info)
                while True:
                    block = source.read(CHUNK)
                    if not block:
                        break
                    digest.update(block)
                    if head == "dbs":
                        if start is not None and len(start) < 4096:
                            start += block
                            if len(start) >= 4096:
                                _content_start(content, start)
                                start = None
                        else:
                            content.update(block)
                if head == "dbs" and start is not None:
                    _content_start(content, start)
                sha = digest.hexdigest()
                if head in SECTIONS:
                    files.append(
                        {"mode": mode, "mtime": mtime, "path": name, "sha256": sha, "size": info.size, "type": "f"}
                    )
                elif head == "dbs":
                    key = rest[: -len(".dump")]
                    dbs.append(
                        {
                            "key": key,
                            "name": (plan_db.get("databases") or {}).get(key, key),
                            "jail": plan_db.get("jail"),
                            "member": name,
                            "format": "pg_dump-custom",
                            "size": info.size,
                            "sha256": sha,
                            "content_sha256": content.hexdigest(),
                        }
                    )
                else:
                    env = {
                        "included": True,
                        "encrypted": "aes-256-cbc-pbkdf2",
                        "member": name,
                        "sha256": sha,
                        "size": info.size,
                        "source": (agent_entry.get("paths") or {}).get("env_file"),
                    }
            else:
                raise BackupError(f"{path}: member {name!r} is not one a backup writes")
        _finish_stream(closer)
    except BackupError:
        _kill_stream(closer)
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as exc:
        _kill_stream(closer)
        raise BackupError(f"{path}: cannot read archive: {exc}") from exc
    if not files:
        raise BackupError(f"{path}: the archive holds no workspace or state")
    paths = agent_entry.get("paths") or {}
    return {
        "format": FORMAT,
        "agent": agent,
        "host": host or socket.gethostname(),
        "created": iso_time(parsed[1]),
        "stamp": format_stamp(parsed[1]),
        "collection_version": __version__,
        "archive": os.path.basename(path),
        "compression": parsed[2],
        "archive_sha256": sha256_file(path),
        "archive_size": os.path.getsize(path),
        "soul_commit": None,
        "consistency": "unknown",
        "snapshots": [],
        "sources": dict((s, paths.get(s)) for s in SECTIONS),
        "excludes": [],
        "skipped": [],
        "databases": dbs,
        "env": env,
        "content_digest": None,
        "rebuilt": {"at": iso_time(now or utcnow()), "reason": reason},
        "files": files,
    }

# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Constants, the error type, time stamps, archive names and small file helpers shared by every part."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re

__version__ = "0.1.0"

FORMAT = "warden-backup/1"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
EXTENSIONS = {"zstd": ".tar.zst", "xz": ".tar.xz", "gzip": ".tar.gz"}
EXT_TO_COMPRESSION = dict((v, k) for k, v in EXTENSIONS.items())
MANIFEST_SUFFIX = ".manifest.json"
INDEX_NAME = ".index.json"
SUMMARY_NAME = ".summary.json"
LOCK_NAME = ".lock"
PARTIAL_SUFFIX = ".partial"
SECTIONS = ("workspace", "state")
# Never archived: restore leftovers of our own.
BUILTIN_EXCLUDES = (".warden-restore-*/", ".warden-prev-*/")
CHUNK = 1024 * 1024
EXTRA_PATH = ("/sbin", "/bin", "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")
PG_BIN = "/usr/local/bin"
UTC = datetime.timezone.utc  # noqa: UP017 - the host tool also runs on Python < 3.11
DEFAULT_PLAN_PATH = "/usr/local/etc/warden/plan.json"
# Integrity of the archives on disk: <agent dir>/.verified.json records, per
# archive, the size and mtime it had when its sha256 was last checked in full,
# and when; archives that fail a check are moved into <agent dir>/damaged/.
VERIFIED_NAME = ".verified.json"
DAMAGED_DIR = "damaged"
VERIFY_EVERY_DAYS = 7
# Every child process is bounded: a stream that makes no progress for this
# long is killed (pg_dump waiting on a lock, a stuck compressor), other
# commands get a total time limit.
CHILD_IDLE_TIMEOUT = 600
COMMAND_TIMEOUT = 600
DB_RESTORE_TIMEOUT = 4 * 3600
ENV_MAX_SIZE = 1024 * 1024

_NAME_RE = re.compile(r"^(?P<agent>.+)_(?P<stamp>\d{8}T\d{6}Z)(?P<ext>\.tar\.(?:zst|xz|gz))$")


class BackupError(Exception):
    """A backup, verification or restore step failed; nothing was taken as good."""


def utcnow():
    return datetime.datetime.now(UTC).replace(microsecond=0)


def format_stamp(when):
    return when.astimezone(UTC).strftime(STAMP_FORMAT)


def parse_stamp(text):
    return datetime.datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)


def parse_time(text):
    """Parse an operator-given time; naive times are UTC; a bare date means the end of that day."""
    text = text.strip()
    if re.match(r"^\d{8}T\d{6}Z$", text):
        return parse_stamp(text)
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        day = datetime.datetime.strptime(text, "%Y-%m-%d")
        return (day + datetime.timedelta(days=1, seconds=-1)).replace(tzinfo=UTC)
    norm = text.replace(" ", "T")
    if norm.endswith("Z"):
        norm = norm[:-1] + "+00:00"
    try:
        when = datetime.datetime.fromisoformat(norm)
    except ValueError:
        raise BackupError(
            f"cannot parse time {text!r} (use YYYY-mm-ddTHH:MM[:SS][Z|+HH:MM], YYYY-mm-dd or YYYYmmddTHHMMSSZ)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def archive_name(agent, stamp, compression):
    return f"{agent}_{stamp}{EXTENSIONS[compression]}"


def parse_archive_name(name, agent=None):
    """Return (agent, datetime, compression) for an archive file name, or None."""
    match = _NAME_RE.match(name)
    if not match:
        return None
    if agent is not None and match.group("agent") != agent:
        return None
    try:
        when = parse_stamp(match.group("stamp"))
    except ValueError:
        return None
    return match.group("agent"), when, EXT_TO_COMPRESSION[match.group("ext")]


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o600, durable=True):
    """Write bytes to path through a temporary name, fsync, rename, fsync the directory
    (durable=False skips the fsyncs, for caches that may be lost)."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, "." + os.path.basename(path) + PARTIAL_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise io_error(exc, path) from exc
    if durable:
        fsync_dir(directory)


def io_error(exc, path):
    """A BackupError naming the cause and the file: `No space left on device on /var/backups/...`."""
    return BackupError(f"{exc.strerror or exc} on {path}")


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def human_size(num):
    num = float(num)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(num) < 1024 or unit == "T":
            return f"{int(num)}{unit}" if unit == "B" else f"{num:.1f}{unit}"
        num /= 1024.0
    return f"{int(num)}B"


def human_age(seconds):
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def makedirs_private(path):
    if not os.path.isdir(path):
        os.makedirs(path, 0o700)


RESTORE_PREFIX = ".warden-restore-"

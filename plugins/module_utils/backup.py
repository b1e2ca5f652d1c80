# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Workspace backup, verification, retention, restore and fleet listing.

Python standard library only: the same file is the core of the
warden.fleet.workspace_backup / workspace_restore / workspace_info modules
and, installed as /usr/local/lib/warden/warden_backup.py, of the `warden`
command on the FreeBSD host (see cli()).

Everything reads names and paths from the plan built by the fleet model
(plan["agents"][NAME]["paths"], ["service"], ["db"], ["jails"], plan["backup"]).

Archive layout (one per agent per run):
    <backup_dir>/<agent>/<agent>_<YYYYmmddTHHMMSSZ>.tar.zst      (or .tar.xz / .tar.gz)
    <backup_dir>/<agent>/<agent>_<YYYYmmddTHHMMSSZ>.tar.zst.manifest.json
Members: workspace/..., state/..., dbs/<key>.dump, env/<agent>.env.enc
An archive is good only when its manifest exists, parses, names it and
records its size; the manifest is written last.
"""

import concurrent.futures
import contextlib
import datetime
import errno
import fcntl
import fnmatch
import grp
import hashlib
import hmac
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib

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


# --------------------------------------------------------------------------
# small helpers


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


def find_command(name):
    """Locate a command on PATH plus the usual FreeBSD locations."""
    path = os.environ.get("PATH", "")
    dirs = [d for d in path.split(os.pathsep) if d] + [d for d in EXTRA_PATH if d not in path.split(os.pathsep)]
    return shutil.which(name, path=os.pathsep.join(dirs))


def require_command(name):
    found = find_command(name)
    if not found:
        raise BackupError(f"required command {name!r} not found")
    return found


def run(argv, check=True, stdin=None, timeout=COMMAND_TIMEOUT):
    """Run a command to completion, at most `timeout` seconds (it is killed then)."""
    try:
        proc = subprocess.run(
            argv,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{' '.join(argv)} did not finish within {timeout} s and was killed") from None
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise BackupError(f"{' '.join(argv)} failed (rc={proc.returncode}): {(err or out).strip()}")
    return proc.returncode, out, err


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


# --------------------------------------------------------------------------
# plan access


def agent_plan(plan, name):
    agents = plan.get("agents") or {}
    if name not in agents:
        raise BackupError("agent {!r} is not in the plan of host {}".format(name, plan.get("host", "?")))
    return agents[name]


def agent_backup_dir(plan, name):
    agents = plan.get("agents") or {}
    if name in agents and agents[name].get("paths", {}).get("backup_dir"):
        return agents[name]["paths"]["backup_dir"]
    return os.path.join(plan["backup"]["dir"], name)


def selected_agents(plan, names=None):
    agents = plan.get("agents") or {}
    if names:
        missing = [n for n in names if n not in agents]
        if missing:
            raise BackupError("not in the plan: {}".format(", ".join(sorted(missing))))
        return sorted(names)
    return sorted(n for n, a in agents.items() if a.get("state", "present") == "present")


def orphan_workspaces(plan):
    """Directories under <root>/agents/ that no agent of the plan owns."""
    base = os.path.join(plan["root"], "agents")
    known = set((plan.get("agents") or {}).keys())
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [
        os.path.join(base, n)
        for n in names
        if n not in known
        and not n.startswith(RESTORE_PREFIX)  # a restore's root-only staging
        and os.path.isdir(os.path.join(base, n))
        and not os.path.islink(os.path.join(base, n))
    ]


# --------------------------------------------------------------------------
# excludes and tree scanning


def compile_excludes(patterns):
    """Exclude patterns as regular expressions: {is_dir: (base name regex,
    relative path regex)}, either None when no pattern applies."""
    base = {False: [], True: []}
    path = {False: [], True: []}
    for pattern in list(patterns or []) + list(BUILTIN_EXCLUDES):
        if not pattern:
            continue
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        anchored = pat.startswith("/")
        pat = pat.lstrip("/")
        if anchored:
            target, regex = path, fnmatch.translate(pat)
        elif "/" in pat:
            # a path suffix starting at a component boundary
            target, regex = path, "(?s:.*/)?" + fnmatch.translate(pat)
        else:
            target, regex = base, fnmatch.translate(pat)
        for is_dir in (True,) if dir_only else (False, True):
            target[is_dir].append(regex)

    def combined(regexes):
        return re.compile("|".join(f"(?:{r})" for r in regexes)).match if regexes else None

    return dict((k, (combined(base[k]), combined(path[k]))) for k in (False, True))


def is_excluded(relpath, is_dir, rules, name=None):
    """relpath is relative to the source root ("a/b.md"); name, if given, its base name.

    "name" or "*.lock" matches a base name at any depth; "a/b/" matches that
    path suffix at any depth; "/a" is anchored at the root; a trailing "/"
    restricts a pattern to directories.
    """
    base_match, path_match = rules[bool(is_dir)]
    if base_match is not None and base_match(name if name is not None else relpath.rsplit("/", 1)[-1]):
        return True
    return path_match is not None and path_match(relpath) is not None


class Entry:
    __slots__ = ("path", "src", "kind", "size", "mode", "mtime_ns", "ctime_ns", "ino", "uid", "gid", "target", "sha256")

    def key(self):
        return [self.kind, self.size, self.mode, self.mtime_ns, self.ctime_ns, self.ino, self.target]


def _entry(path, src, st, kind, target=None):
    e = Entry()
    e.path, e.src, e.kind = path, src, kind
    e.size = st.st_size if kind == "f" else 0
    e.mode = stat.S_IMODE(st.st_mode)
    e.mtime_ns, e.ctime_ns, e.ino = st.st_mtime_ns, st.st_ctime_ns, st.st_ino
    e.uid, e.gid, e.target, e.sha256 = st.st_uid, st.st_gid, target, None
    return e


# Directories are opened one component at a time, relative to the directory
# above, never following a symlink (the agent owns the tree and may swap a
# directory for a link at any moment); O_NONBLOCK so that a FIFO swapped in
# cannot block an open.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def open_dir(name, dir_fd=None, expect=None, label=None):
    """Open the directory `name` (relative to dir_fd) without following a
    symlink; `expect` (a stat result) must be the same inode. Raises
    BackupError naming `label` when it is not a directory (any more)."""
    label = label or name
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # Linux: ELOOP or ENOTDIR for a symlink; FreeBSD: EMLINK
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            raise BackupError(f"{label} is not a directory any more (replaced by a link or file?)") from None
        raise
    if expect is not None:
        st = os.fstat(fd)
        if st.st_ino != expect.st_ino or st.st_dev != expect.st_dev:
            os.close(fd)
            raise BackupError(f"{label} was replaced while it was read")
    return fd


def scan_tree(root, prefix, rules, skipped=None, links=None):
    """Stat-only walk of root; returns entries (dirs, files, symlinks) in
    archive order: depth first, names sorted, a directory before its contents
    (the order of sorting the paths by their components). Every directory is
    opened relative to its parent without following links. With `links` (a
    dict), a file whose inode was already listed becomes a hard link ("h")
    to that first path, and a file with several links that is not owned by
    the owner of root is skipped (a hard link the agent made to a file
    elsewhere on the file system, e.g. one only root may read)."""
    entries = []
    try:
        st = os.lstat(root)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return entries
        raise
    if not stat.S_ISDIR(st.st_mode):
        raise BackupError(f"{root} is not a directory")
    fd = open_dir(root, expect=st)
    try:
        entries.append(_entry(prefix, root, st, "d"))
        if links is not None:
            links[None] = st.st_uid
        _scan_dir(fd, root, "", prefix + "/", rules, entries, skipped, links)
    finally:
        os.close(fd)
    return entries


def _scan_dir(fd, directory, rel, prefix, rules, entries, skipped, links=None):
    try:
        with os.scandir(fd) as it:
            items = sorted(it, key=lambda d: d.name)
    except OSError as exc:
        raise BackupError(f"cannot read {directory}: {exc}") from exc
    file_base, file_path = rules[False]
    for item in items:
        name = item.name
        relpath = rel + "/" + name if rel else name
        src = directory + "/" + name
        st = item.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            if is_excluded(relpath, True, rules, name):
                continue
            entries.append(_entry(prefix + relpath, src, st, "d"))
            sub = open_dir(name, fd, expect=st, label=src)
            try:
                _scan_dir(sub, src, relpath, prefix, rules, entries, skipped, links)
            finally:
                os.close(sub)
            continue
        if (file_base is not None and file_base(name)) or (file_path is not None and file_path(relpath)):
            continue
        if stat.S_ISREG(mode):
            first = None
            if links is not None and st.st_nlink > 1:
                if st.st_uid != links.get(None, st.st_uid):
                    if skipped is not None:
                        skipped.append(prefix + relpath)
                    continue
                first = links.setdefault((st.st_dev, st.st_ino), prefix + relpath)
            if first is not None and first != prefix + relpath:
                entries.append(_entry(prefix + relpath, src, st, "h", first))
            else:
                entries.append(_entry(prefix + relpath, src, st, "f"))
        elif stat.S_ISLNK(mode):
            entries.append(_entry(prefix + relpath, src, st, "l", os.readlink(name, dir_fd=fd)))
        elif skipped is not None:
            skipped.append(prefix + relpath)


def tree_stats(root):
    """Size (bytes of regular files), file count and newest mtime of a tree, without excludes."""
    total, count, newest = 0, 0, None
    try:
        entries = scan_tree(root, "x", {False: (None, None), True: (None, None)})
    except (OSError, BackupError):
        return None
    for e in entries:
        if e.kind == "f":
            total += e.size
            count += 1
        mt = e.mtime_ns / 1e9
        if newest is None or mt > newest:
            newest = mt
    return {"size": total, "files": count, "last_modified": newest}


# --------------------------------------------------------------------------
# PostgreSQL custom-format dumps


def _read_int(buf, pos, int_size):
    sign = buf[pos]
    value = 0
    for i in range(int_size):
        value |= buf[pos + 1 + i] << (8 * i)
    return (-value if sign else value), pos + 1 + int_size


def pgdump_header_length(buf):
    """Length of a pg_dump custom-format header (magic, versions, timestamp,
    database and version strings), or None if buf is not one we understand.

    Everything after it (table of contents and data) is a deterministic
    function of the database contents; the header carries the dump time.
    """
    try:
        if buf[:5] != b"PGDMP":
            return None
        vmaj, vmin = buf[5], buf[6]
        int_size, fmt = buf[8], buf[10]
        pos = 11
        if fmt != 1 or vmaj != 1 or vmin < 10 or vmin > 16 or int_size > 8:
            return None
        if vmin >= 15:
            pos += 1
        else:
            _value, pos = _read_int(buf, pos, int_size)
        for _field in range(7):
            _value, pos = _read_int(buf, pos, int_size)
        for _field in range(3):
            length, pos = _read_int(buf, pos, int_size)
            if length > 0:
                pos += length
        if pos > len(buf):
            return None
        return pos
    except IndexError:
        return None


def dump_database(jail, dbname, dest=None):
    """pg_dump -Fc inside the db jail, streamed to dest (or only hashed).

    Returns {"sha256", "content_sha256", "size"}.
    """
    argv = [require_command("jexec"), "-l", "-U", "postgres", jail, PG_BIN + "/pg_dump", "-Fc", dbname]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    errbuf = []
    err_thread = threading.Thread(target=lambda: errbuf.append(proc.stderr.read()))
    err_thread.start()
    watchdog = _Watchdog(proc, CHILD_IDLE_TIMEOUT)
    full, content = hashlib.sha256(), hashlib.sha256()
    head, header_done, size = b"", False, 0
    out = None
    try:
        if dest:
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        src = proc.stdout.fileno()
        while True:
            block = os.read(src, CHUNK)
            if not block:
                break
            watchdog.touch()
            size += len(block)
            full.update(block)
            if out is not None:
                _write_fd(out, block, dest)
            if header_done:
                content.update(block)
            else:
                head += block
                if len(head) >= 4096:
                    header_done = True
                    _content_start(content, head)
        if not header_done:
            _content_start(content, head)
        if out is not None:
            try:
                os.fsync(out)
            except OSError as exc:
                raise io_error(exc, dest) from exc
    except BaseException:
        # a write error (a full disk) or an interruption: end pg_dump now, it
        # would block on the pipe nobody reads any more
        with contextlib.suppress(OSError):
            proc.kill()
        raise
    finally:
        if out is not None:
            os.close(out)
        rc = proc.wait()
        watchdog.stop()
        err_thread.join()
        proc.stdout.close()
        proc.stderr.close()
    if watchdog.fired:
        raise BackupError(
            f"pg_dump of {dbname} in jail {jail} produced no output for {CHILD_IDLE_TIMEOUT} s and was killed"
        )
    if rc != 0 or size == 0:
        err = b"".join(errbuf).decode("utf-8", "replace").strip()
        raise BackupError(f"pg_dump of {dbname} in jail {jail} failed (rc={rc}): {err}")
    return {"sha256": full.hexdigest(), "content_sha256": content.hexdigest(), "size": size}


class _Watchdog:
    """Kills a child process that makes no progress (no touch()) for
    `timeout` seconds; `fired` says whether it did."""

    def __init__(self, proc, timeout):
        self.proc, self.timeout = proc, timeout
        self.last = time.monotonic()
        self.fired = False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def touch(self):
        self.last = time.monotonic()

    def _watch(self):
        while not self.done.wait(min(1.0, self.timeout)):
            if time.monotonic() - self.last > self.timeout and self.proc.poll() is None:
                self.fired = True
                with contextlib.suppress(OSError):
                    self.proc.kill()
                return

    def stop(self):
        self.done.set()
        self.thread.join()


def _write_fd(fd, data, path):
    """Write all of data to fd; an error names the file (`No space left on device on PATH`)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise io_error(exc, path) from exc


def _content_start(digest, head):
    skip = pgdump_header_length(head)
    if skip is None:
        # unknown layout: hash it all, so an unchanged database only costs a new archive
        skip = 0
    digest.update(head[skip:])


def restore_database(jail, dbname, dump_path, role=None, foreign=False):
    argv = [
        require_command("jexec"),
        "-l",
        "-U",
        "postgres",
        jail,
        PG_BIN + "/pg_restore",
        "--clean",
        "--if-exists",
        "--single-transaction",
        "--exit-on-error",
    ]
    if foreign:
        argv += ["--no-owner", "--no-acl"]
        if role:
            argv.append("--role=" + role)
    argv += ["-d", dbname]
    with open(dump_path, "rb") as handle:
        run(argv, stdin=handle, timeout=DB_RESTORE_TIMEOUT)


# --------------------------------------------------------------------------
# soul, env, zfs


def soul_commit(path):
    if not path or not os.path.exists(os.path.join(path, ".git")):
        return None
    git = find_command("git")
    if not git:
        return None
    rc, out, _err = run([git, "-c", "safe.directory=" + path, "-C", path, "rev-parse", "HEAD"], check=False)
    return out.strip() if rc == 0 and out.strip() else None


def open_passphrase_file(path):
    """The passphrase file, opened without following a symlink and checked on
    the descriptor: a non-empty regular file owned by root (the user running
    the backup) and readable by no one else. Returns the descriptor."""
    if not path:
        raise BackupError(
            "include_env is true but no env_passphrase_file is set: refusing to archive the env file unencrypted"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise BackupError(f"env_passphrase_file {path} does not exist") from None
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a symlink: Linux ELOOP, FreeBSD EMLINK
            raise BackupError(f"env_passphrase_file {path} is a symlink (point the setting at the file)") from None
        raise BackupError(f"env_passphrase_file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            raise BackupError(f"env_passphrase_file {path} is not a non-empty regular file")
        if st.st_uid not in (0, os.geteuid()):
            raise BackupError(f"env_passphrase_file {path} is owned by uid {st.st_uid}, not root (chown root it)")
        if st.st_mode & 0o077:
            raise BackupError(f"env_passphrase_file {path} is readable by group or others (chmod 600 it)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_passphrase_file(path):
    os.close(open_passphrase_file(path))


def openssl_cipher(data, passphrase_file, decrypt=False):
    """Encrypt (decrypt=False) or decrypt bytes with `openssl enc -aes-256-cbc
    -pbkdf2`, through pipes: the plaintext is never written to a file. The
    passphrase file is handed to openssl as the descriptor that was checked
    (`-pass fd:N`). Returns (output, check): check is an HMAC-SHA256 of the
    plaintext keyed with the passphrase file, recorded in the manifest so
    that a wrong passphrase is always recognised (openssl's padding check
    misses one in 256)."""
    fd = open_passphrase_file(passphrase_file)
    try:
        argv = [require_command("openssl"), "enc", "-aes-256-cbc", "-pbkdf2", "-salt"]
        if decrypt:
            argv.append("-d")
        argv += ["-pass", f"fd:{fd}"]
        try:
            proc = subprocess.run(
                argv, input=data, capture_output=True, check=False, timeout=COMMAND_TIMEOUT, pass_fds=(fd,)
            )
        except subprocess.TimeoutExpired:
            raise BackupError(f"openssl did not finish within {COMMAND_TIMEOUT} s and was killed") from None
        key = hashlib.sha256(os.pread(fd, 65536, 0)).digest()
    finally:
        os.close(fd)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        if decrypt:
            raise BackupError(
                f"cannot decrypt the env file with {passphrase_file}: wrong passphrase or damaged data "
                f"(openssl rc={proc.returncode}: {err[0] if err else ''})"
            )
        raise BackupError(f"openssl could not encrypt the env file (rc={proc.returncode}): {' '.join(err)}")
    plain = proc.stdout if decrypt else data
    return proc.stdout, hmac.new(key, plain, hashlib.sha256).hexdigest()


def decrypt_env_member(path, env, passphrase_file):
    """The plaintext of an archive's encrypted env member (extracted to path),
    in memory. The member's sha256 is checked again, and the passphrase
    against the HMAC the backup recorded (archives written before it was
    recorded rely on openssl's padding check)."""
    data = read_private_file(path, limit=2 * ENV_MAX_SIZE)
    if env.get("sha256") and hashlib.sha256(data).hexdigest() != env["sha256"]:
        raise BackupError(f"{path}: the encrypted env file differs from the manifest")
    plain, check = openssl_cipher(data, passphrase_file, decrypt=True)
    recorded = env.get("plaintext_hmac_sha256")
    if recorded and not hmac.compare_digest(recorded, check):
        raise BackupError(f"cannot decrypt the env file with {passphrase_file}: wrong passphrase")
    return plain


def read_private_file(path, limit=ENV_MAX_SIZE):
    """Contents of a small regular file, opened without following a symlink
    and without blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise BackupError(f"{path} is a symlink: refusing to read through it") from None
        raise io_error(exc, path) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BackupError(f"{path} is not a regular file")
        if st.st_size > limit:
            raise BackupError(f"{path} is larger than {limit} bytes")
        chunks = []
        while True:
            block = os.read(fd, CHUNK)
            if not block:
                break
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_private_file(dest, data, ids=None):
    """Atomically replace dest with data, mode 0600 from the moment it is
    created (O_EXCL, never a wider mode), owned by ids (uid, gid) when given
    (fchown on the descriptor), every step relative to the directory's
    descriptor and never following a symlink. A failure removes the partial file."""
    directory, base = os.path.split(dest)
    try:
        dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise io_error(exc, directory) from exc
    tmp = f".{base}.{os.getpid()}{PARTIAL_SUFFIX}"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        try:
            try:
                os.fchmod(fd, 0o600)
                if ids:
                    os.fchown(fd, ids[0], ids[1])
                _write_fd(fd, data, dest)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, base, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    except OSError as exc:
        raise io_error(exc, dest) from exc
    finally:
        os.close(dfd)


def zfs_dataset(path):
    """Name of the ZFS dataset mounted exactly at path, or None."""
    zfs = find_command("zfs")
    if not zfs:
        return None
    rc, out, _err = run([zfs, "list", "-H", "-o", "name,mountpoint", "-t", "filesystem"], check=False)
    if rc != 0:
        return None
    real = os.path.realpath(path)
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) == 2 and fields[1] == real:
            # path itself must be that mountpoint (which cannot be renamed), not
            # a symlink the agent put in place of its workspace pointing to
            # another dataset, whose snapshot would then be archived
            try:
                fd = open_dir(path)
            except (OSError, BackupError):
                return None
            try:
                here, mounted = os.fstat(fd), os.stat(real)
            finally:
                os.close(fd)
            return fields[0] if os.path.samestat(here, mounted) else None
    return None


class Snapshots:
    """ZFS snapshots taken for one agent's backup; destroyed on close."""

    def __init__(self, name):
        self.name = name
        self.taken = []

    def source(self, path):
        dataset = zfs_dataset(path)
        if not dataset:
            return path, None
        run([require_command("zfs"), "snapshot", f"{dataset}@{self.name}"])
        self.taken.append(dataset)
        return os.path.join(os.path.realpath(path), ".zfs", "snapshot", self.name), f"{dataset}@{self.name}"

    def close(self):
        errors = []
        for dataset in self.taken:
            rc, out, err = run([require_command("zfs"), "destroy", f"{dataset}@{self.name}"], check=False)
            if rc != 0:
                errors.append((err or out).strip())
        self.taken = []
        if errors:
            raise BackupError("could not destroy snapshot(s): {}".format("; ".join(errors)))


# --------------------------------------------------------------------------
# archive writing


class _CountingWriter:
    def __init__(self, raw):
        self.raw = raw
        self.pos = 0

    def write(self, data):
        self.raw.write(data)
        self.pos += len(data)
        return len(data)

    def tell(self):
        return self.pos

    def flush(self):
        pass


BATCH = 256 * 1024
ZSTD_THREADS_FROM = 32 * 1024 * 1024


class _BatchSink:
    """Collects the tar stream in one buffer and hands it on in large pieces:
    one pipe write (or compressor call) per BATCH bytes instead of a few
    per archived file."""

    def __init__(self, put):
        self.put = put
        self.buf = bytearray()

    def write(self, data):
        self.buf += data
        if len(self.buf) >= BATCH:
            self.flush()
        return len(data)

    def flush(self):
        if self.buf:
            self.put(self.buf)
            self.buf = bytearray()


def _write_all(fd):
    """A writer for a pipe's file descriptor that writes everything it is given."""

    def put(data):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return put


class _HashingWriter:
    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()


class _HashingReader:
    def __init__(self, raw, size, name):
        self.raw, self.remaining, self.name = raw, size, name
        self.digest = hashlib.sha256()

    def read(self, n=-1):
        if self.remaining <= 0:
            return b""
        if n is None or n < 0 or n > self.remaining:
            n = self.remaining
        block = self.raw.read(n)
        if not block:
            raise BackupError(f"{self.name} shrank while it was archived (best-effort source; rerun the backup)")
        self.remaining -= len(block)
        self.digest.update(block)
        return block


def _read_exactly(fd, size, name):
    chunks, left = [], size
    while left > 0:
        block = os.read(fd, left)
        if not block:
            raise BackupError(f"{name} shrank while it was archived (best-effort source; rerun the backup)")
        chunks.append(block)
        left -= len(block)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_or_hole(fd, pos, want, holes, name):
    """`want` bytes of fd at pos (its offset): zeros without reading when pos
    is in a hole (holes=True), else read. Returns (block, holes) with holes
    False once the file system cannot tell."""
    if holes:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no SEEK_DATA here: read everything
                os.lseek(fd, pos, os.SEEK_SET)
                return _read_exactly(fd, want, name), False
            data = pos + want  # a hole up to the end
        if data > pos:
            count = min(want, data - pos)
            os.lseek(fd, pos + count, os.SEEK_SET)
            return _ZERO_CHUNK[:count], True
    return _read_exactly(fd, want, name), holes


_USTAR_TYPES = {"f": b"0", "d": b"5", "l": b"2", "h": b"1"}
BLOCKSIZE = tarfile.BLOCKSIZE
_ZEROS = bytes(BLOCKSIZE)
_ZERO_CHUNK = bytes(CHUNK)


def ustar_header(name, kind, size, mode, mtime, uid, gid, uname, gname, linkname=""):
    """A POSIX ustar header block, or None when the entry needs a pax header
    (names over 100 bytes or not ASCII, numbers too large)."""
    if kind == "d" and not name.endswith("/"):
        name += "/"
    try:
        bname, blink = name.encode("ascii"), linkname.encode("ascii")
        buname, bgname = uname.encode("ascii"), gname.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(bname) > 100 or len(blink) > 100 or len(buname) > 32 or len(bgname) > 32:
        return None
    if not (0 <= uid < 0o7777777 and 0 <= gid < 0o7777777 and 0 <= size < 0o77777777777 and 0 <= mtime < 0o77777777777):
        return None
    header = b"".join(
        (
            bname.ljust(100, b"\0"),
            b"%07o\0" % mode,
            b"%07o\0" % uid,
            b"%07o\0" % gid,
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            b"        ",
            _USTAR_TYPES[kind],
            blink.ljust(100, b"\0"),
            b"ustar\x0000",
            buname.ljust(32, b"\0"),
            bgname.ljust(32, b"\0"),
            b"\0" * 16,  # devmajor, devminor: empty, as tarfile writes them
            b"\0" * 167,
        )
    )
    chksum = b"%06o\0 " % _byte_sum(header)
    return header[:148] + chksum + header[156:]


def _byte_sum(block):
    """Sum of the bytes of a 512-byte block (the tar header checksum).

    Adler-32's low half is 1 + the byte sum modulo 65521; a 256-byte half
    sums to at most 65280, so each half's sum is exact (and far cheaper than
    summing the bytes in Python)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


class _SourceDirs:
    """The open directories leading to the entry being archived, each opened
    relative to the one above without following a symlink and checked to be
    the inode the walk listed. A directory or file the agent swaps for a
    symlink (or a FIFO) after the walk fails the backup; nothing outside the
    tree is read and no open blocks."""

    def __init__(self):
        self.stack = []  # [(archive path, fd)], the section root first

    def _unwind(self, parent, label):
        while self.stack and self.stack[-1][0] != parent:
            os.close(self.stack.pop()[1])
        if parent and not self.stack:
            raise BackupError(f"{label}: its directory was not opened")

    def enter(self, e):
        parent, _sep, name = e.path.rpartition("/")
        self._unwind(parent, e.src)
        # a section root is opened by its path (the plan's, or a snapshot's)
        fd = open_dir(name, self.stack[-1][1], label=e.src) if parent else open_dir(e.src)
        if os.fstat(fd).st_ino != e.ino:
            os.close(fd)
            raise BackupError(f"{e.src} was replaced while it was archived")
        self.stack.append((e.path, fd))

    def open_file(self, e):
        parent, _sep, name = e.path.rpartition("/")
        self._unwind(parent, e.src)
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self.stack[-1][1])
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENOENT, errno.ENXIO):
                raise BackupError(f"{e.src} was replaced while it was archived") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != e.ino:
            os.close(fd)
            raise BackupError(f"{e.src} was replaced while it was archived")
        return fd

    def close(self):
        while self.stack:
            os.close(self.stack.pop()[1])


class ArchiveWriter:
    """A tar stream compressed by a `zstd` child (`-T0`; `--single-thread`
    when size_hint says the stream is small) or lzma/gzip in process into
    a partial file, hashing the compressed bytes as they are written."""

    def __init__(self, path, compression, level=None, size_hint=None):
        self.path, self.compression = path, compression
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self.out = os.fdopen(self.fd, "wb", buffering=CHUNK)
        self.hashing = _HashingWriter(self.out)
        self.proc = self.thread = self.compressor = self.watchdog = None
        self.reader_error = []
        if compression == "zstd":
            # zstd -T0 compresses jobs of several MB on its worker threads; a stream
            # smaller than a few jobs gains nothing from them and pays for the threads
            threads = "--single-thread" if size_hint is not None and size_hint < ZSTD_THREADS_FROM else "-T0"
            argv = [require_command("zstd"), f"-{level or 3}", threads, "-q", "-c"]
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=CHUNK)
            self.watchdog = _Watchdog(self.proc, CHILD_IDLE_TIMEOUT)
            self.thread = threading.Thread(target=self._pump)
            self.thread.start()
            sink = _BatchSink(self._guard(_write_all(self.proc.stdin.fileno())))
        elif compression == "xz":
            import lzma

            self.compressor = lzma.LZMAFile(self.hashing, "wb", preset=level or 6)  # noqa: SIM115 - finish()
            sink = _BatchSink(self._guard(self.compressor.write))
        elif compression == "gzip":
            import gzip

            self.compressor = gzip.GzipFile(fileobj=self.hashing, mode="wb", compresslevel=level or 6, mtime=0)
            sink = _BatchSink(self._guard(self.compressor.write))
        else:
            raise BackupError(f"unknown compression {compression!r}")
        self.sink = sink
        self.tar = tarfile.TarFile(fileobj=_CountingWriter(sink), mode="w", format=tarfile.PAX_FORMAT)
        self.tar.copybufsize = CHUNK
        self._names = {}

    def _pump(self):
        """zstd's output into the partial file: read into one reused buffer,
        hashed and written as it comes (the compressed stream's sha256)."""
        try:
            src, dst, digest = self.proc.stdout.fileno(), self.fd, self.hashing.digest
            view = memoryview(bytearray(CHUNK))
            while True:
                count = os.readv(src, [view])
                if not count:
                    break
                self.watchdog.touch()
                block = view[:count]
                digest.update(block)
                while block:
                    block = block[os.write(dst, block) :]
                self.hashing.size += count
        except Exception as exc:  # reported by the next write or finish()
            self.reader_error.append(exc)
            # end the pipeline now: zstd would block on the pipe nobody reads
            # and the tar writer on zstd's input, with the agent's lock held
            with contextlib.suppress(OSError):
                self.proc.kill()

    def _guard(self, put):
        """put() for the tar stream that fails at once, naming the cause, when
        the partial file cannot be written (ENOSPC, EIO) or zstd died."""

        def guarded(data):
            if self.reader_error:
                raise self._failure()
            if self.watchdog is not None:
                self.watchdog.touch()
            try:
                put(data)
            except OSError as exc:
                raise self._failure(exc) from exc

        return guarded

    def _failure(self, exc=None):
        if self.reader_error:
            exc = self.reader_error[0]
        if self.watchdog is not None and self.watchdog.fired:
            return BackupError(f"zstd made no progress for {CHILD_IDLE_TIMEOUT} s and was killed (writing {self.path})")
        if isinstance(exc, BackupError):
            return exc
        if exc is None:
            return BackupError(f"zstd failed while writing {self.path}")
        return io_error(exc, self.path)

    def _info(self, name, kind, size=0, mode=0o644, mtime=0, uid=0, gid=0, target=None):
        info = tarfile.TarInfo(name)
        info.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE}[kind]
        info.size = size if kind == "f" else 0
        info.mode = mode
        info.mtime = int(mtime)
        info.uid, info.gid = uid, gid
        info.uname, info.gname = self._user(uid), self._group(gid)
        if target is not None:
            info.linkname = target
        return info

    def _name(self, lookup, number):
        """User or group name of a number for the tar header, looked up once per archive."""
        key = (lookup, number)
        if key not in self._names:
            try:
                self._names[key] = lookup(number)[0]
            except KeyError:
                self._names[key] = ""
        return self._names[key]

    def _user(self, uid):
        return self._name(pwd.getpwuid, uid)

    def _group(self, gid):
        return self._name(grp.getgrgid, gid)

    def add_entry(self, e):
        """Archive one entry of the walk; entries come in the walk's order
        (a directory before its contents), files are opened through the
        directories above them (see _SourceDirs)."""
        if not hasattr(self, "sources"):
            self.sources = _SourceDirs()
        if e.kind == "d":
            self.sources.enter(e)
        mtime = e.mtime_ns // 1000000000
        header = ustar_header(
            e.path, e.kind, e.size, e.mode, mtime, e.uid, e.gid, self._user(e.uid), self._group(e.gid), e.target or ""
        )
        if header is None:  # long or non-ASCII names: tarfile writes the pax header
            self._add_entry_tarfile(e)
            return
        sink, size = self.sink, e.size
        if e.kind != "f":
            sink.write(header)
            self.tar.offset += BLOCKSIZE
            return
        fd = self.sources.open_file(e)
        try:
            pad = -size % BLOCKSIZE
            if size <= CHUNK:
                # the common small file: header, data and padding go into the batch buffer
                data = os.read(fd, size)
                if len(data) != size:
                    data += _read_exactly(fd, size - len(data), e.src)
                e.sha256 = hashlib.sha256(data).hexdigest()
                buf = sink.buf
                buf += header
                buf += data
                if pad:
                    buf += _ZEROS[:pad]
                if len(buf) >= BATCH:
                    sink.flush()
            else:
                digest = hashlib.sha256()
                sink.write(header)
                sink.flush()
                remaining, pos = size, 0
                # a sparse file: its holes (SEEK_DATA) are archived as zeros without reading them
                holes = os.fstat(fd).st_blocks * 512 < size and hasattr(os, "SEEK_DATA")
                while remaining > 0:
                    block, holes = _read_or_hole(fd, pos, min(CHUNK, remaining), holes, e.src)
                    digest.update(block)
                    sink.put(block)
                    remaining -= len(block)
                    pos += len(block)
                if pad:
                    sink.write(_ZEROS[:pad])
                e.sha256 = digest.hexdigest()
        finally:
            os.close(fd)
        self.tar.offset += BLOCKSIZE + size + pad

    def _add_entry_tarfile(self, e):
        info = self._info(e.path, e.kind, e.size, e.mode, e.mtime_ns // 1000000000, e.uid, e.gid, e.target)
        if e.kind != "f":
            self.tar.addfile(info)
            return
        fd = self.sources.open_file(e)
        with os.fdopen(fd, "rb", buffering=0) as handle:
            reader = _HashingReader(handle, e.size, e.src)
            self.tar.addfile(info, reader)
        e.sha256 = reader.digest.hexdigest()

    def add_file(self, name, src, mode=0o600):
        size = os.path.getsize(src)
        info = self._info(name, "f", size, mode, time.time())
        with open(src, "rb") as handle:
            reader = _HashingReader(handle, size, src)
            self.tar.addfile(info, reader)
        return reader.digest.hexdigest(), size

    def finish(self):
        """Close the stream, fsync; returns (sha256, size) of the compressed file."""
        if hasattr(self, "sources"):
            self.sources.close()
        try:
            self.tar.close()
            self.sink.flush()
            if self.proc:
                self.proc.stdin.close()
                self.thread.join()
                rc = self.proc.wait()
                self.watchdog.stop()
                if self.reader_error or self.watchdog.fired:
                    raise self._failure()
                if rc != 0:
                    raise BackupError(f"zstd failed (rc={rc}) writing {self.path}")
            else:
                self.compressor.close()
            self.out.flush()
            os.fsync(self.out.fileno())
            self.out.close()
        except OSError as exc:
            raise self._failure(exc) from exc
        return self.hashing.digest.hexdigest(), self.hashing.size

    def abort(self):
        if hasattr(self, "sources"):
            self.sources.close()
        for closer in (
            lambda: self.proc and self.proc.kill(),
            lambda: self.proc and self.proc.stdin.close(),
            lambda: self.thread and self.thread.join(),
            lambda: self.proc and self.proc.wait(),
            lambda: self.watchdog and self.watchdog.stop(),
            self.out.close,
        ):
            with contextlib.suppress(Exception):  # best effort cleanup of a failed archive
                closer()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def pick_compression(preference="auto"):
    if preference in (None, "", "auto"):
        return "zstd" if find_command("zstd") else "xz"
    if preference == "zstd" and not find_command("zstd"):
        raise BackupError("compression zstd requested but the zstd command is not installed")
    if preference not in EXTENSIONS:
        raise BackupError(f"unknown compression {preference!r} (auto, zstd, xz, gzip)")
    return preference


# --------------------------------------------------------------------------
# manifests, archive listing, verification


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


def open_tar_stream(path, compression):
    """Return (tarfile, closer) reading the archive as a stream."""
    if compression == "zstd":
        proc = subprocess.Popen(
            [require_command("zstd"), "-d", "-q", "-c", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=CHUNK,
        )
        try:
            tar = tarfile.open(fileobj=proc.stdout, mode="r|")  # noqa: SIM115 - closed by close()
        except BaseException:
            _end_child(proc)
            raise

        def close(abort=False):
            """Finish reading (the rest of the stream is returned), or with
            abort=True end zstd at once: a reader that stopped early never
            leaves it blocked on a full pipe."""
            if abort:
                _end_child(proc)
                return b""
            tar.close()
            rest = proc.stdout.read()
            err = proc.stderr.read()
            rc = proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            if rc != 0:
                raise BackupError(f"zstd -d failed (rc={rc}): {err.decode('utf-8', 'replace').strip()}")
            return rest

        return tar, close
    mode = {"xz": "r|xz", "gzip": "r|gz"}[compression]
    handle = open(path, "rb")  # noqa: SIM115 - closed by close_plain()
    try:
        tar = tarfile.open(fileobj=handle, mode=mode)  # noqa: SIM115 - closed by close_plain()
    except BaseException:
        handle.close()
        raise

    def close_plain(abort=False):
        tar.close()
        handle.close()

    return tar, close_plain


def _end_child(proc):
    """Kill a child reading for us and reap it, closing its pipes."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _kill_stream(closer):
    with contextlib.suppress(Exception):  # the error that got us here is the one reported
        closer(abort=True)


def manifest_index(manifest):
    """path -> expected entry for every member of the archive (files, dbs, env)."""
    expected = {}
    for f in manifest["files"]:
        expected[f["path"]] = f
    for db in manifest.get("databases") or []:
        expected[db["member"]] = {"path": db["member"], "type": "f", "size": db["size"], "sha256": db["sha256"]}
    env = manifest.get("env") or {}
    if env.get("member"):
        expected[env["member"]] = {"path": env["member"], "type": "f", "size": env["size"], "sha256": env["sha256"]}
    return expected


def verify_archive(path, manifest=None, members=True):
    """Check the archive's sha256 and (members=True) every member's sha256
    against its manifest. Raises BackupError on any mismatch."""
    if manifest is None:
        manifest = load_manifest(path)
        if manifest is None:
            raise BackupError(f"{path} has no valid manifest")
    size = os.path.getsize(path)
    if size != manifest["archive_size"]:
        raise BackupError(f"{path}: size {size} differs from the manifest's {manifest['archive_size']}")
    actual = sha256_file(path)
    if actual != manifest["archive_sha256"]:
        raise BackupError(f"{path}: sha256 {actual} differs from the manifest's {manifest['archive_sha256']}")
    if members:
        extract_archive(path, manifest, None)
    return manifest


def _safe_member(name):
    if not name or name.startswith("/") or "\\" in name:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def extract_archive(path, manifest, dest_for):
    """Stream the archive, checking every member against the manifest.

    dest_for(member_path) -> a filesystem path (root's own scratch space),
    (_StagedTree, relative path) or None (skip writing). With dest_for None
    nothing is written (verification only). Symlinks are created last, file
    writes never follow links, runs of zeros become holes (sparse files stay
    sparse), hard links to an earlier member are made as hard links.
    Returns the entries.
    """
    expected = manifest_index(manifest)
    seen = set()
    links, dirs = [], []
    tar, closer = open_tar_stream(path, manifest["compression"])
    try:
        for info in tar:
            name = info.name
            exp = expected.get(name)
            if exp is None or not _safe_member(name):
                raise BackupError(f"{path}: member {name!r} is not in the manifest")
            if name in seen:
                raise BackupError(f"{path}: member {name!r} appears twice")
            seen.add(name)
            target = dest_for(name) if dest_for else None
            if info.isreg():
                if exp["type"] != "f" or info.size != exp["size"]:
                    raise BackupError(f"{path}: member {name!r} differs from the manifest (size)")
                digest = hashlib.sha256()
                source = tar.extractfile(info)
                out_fd = None
                if target:
                    out_fd = _target_create(target)
                sparse = info.size >= SPARSE_BLOCK
                try:
                    while True:
                        block = source.read(CHUNK)
                        if not block:
                            break
                        digest.update(block)
                        if out_fd is not None:
                            _write_out(out_fd, block, sparse)
                    if out_fd is not None:
                        if sparse:
                            os.ftruncate(out_fd, info.size)  # a trailing hole
                        os.fchmod(out_fd, exp.get("mode", 0o600) & 0o1777)
                        os.utime(out_fd, (exp.get("mtime", info.mtime), exp.get("mtime", info.mtime)))
                finally:
                    if out_fd is not None:
                        os.close(out_fd)
                if digest.hexdigest() != exp["sha256"]:
                    raise BackupError(f"{path}: member {name!r} sha256 differs from the manifest")
            elif info.islnk():
                source_exp = expected.get(info.linkname) or {}
                if (
                    exp["type"] != "h"
                    or info.linkname != exp.get("target")
                    or source_exp.get("type") != "f"
                    or info.linkname not in seen
                ):
                    raise BackupError(f"{path}: member {name!r} differs from the manifest (hard link)")
                if target:
                    _target_hardlink(dest_for(info.linkname), target)
            elif info.isdir():
                if exp["type"] != "d":
                    raise BackupError(f"{path}: member {name!r} differs from the manifest (type)")
                if target:
                    _target_mkdir(target)
                    dirs.append((target, exp))
            elif info.issym():
                if exp["type"] != "l" or info.linkname != exp.get("target"):
                    raise BackupError(f"{path}: member {name!r} differs from the manifest (link)")
                if target:
                    links.append((target, info.linkname))
            else:
                raise BackupError(f"{path}: member {name!r} has an unsupported type")
        _finish_stream(closer)
    except BackupError:
        _kill_stream(closer)
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        _kill_stream(closer)
        raise BackupError(f"{path}: cannot read archive: {exc}") from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{path}: {len(missing)} member(s) of the manifest are missing, e.g. {missing[0]}")
    for target, link in links:
        _target_symlink(link, target)
    for target, exp in sorted(dirs, key=lambda d: _target_depth(d[0]), reverse=True):
        _target_finish_dir(target, exp.get("mode", 0o755) & 0o1777, exp.get("mtime", 0))
    return seen


def _finish_stream(closer):
    rest = closer()
    if rest and rest.strip(b"\0"):
        raise BackupError("trailing data after the end of the archive")


# --------------------------------------------------------------------------
# retention


def retention(archives, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0, protect=None):
    """Select archives to keep.

    archives: iterable of (name, datetime). For each rule, walking from the
    newest: keep_last keeps the N newest; keep_daily/weekly/monthly keep the
    newest archive of each of the N most recent days/ISO weeks/months that
    have one. `protect` (the newest verified archive) is always kept.
    Returns (keep: {name: [reasons]}, prune: [names], newest first).
    """
    ordered = sorted(archives, key=lambda a: (a[1], a[0]), reverse=True)
    rules = [
        ("last", keep_last or 0, lambda t, n: n),
        ("daily", keep_daily or 0, lambda t, n: t.strftime("%Y-%m-%d")),
        ("weekly", keep_weekly or 0, lambda t, n: "{:d}-{:02d}".format(*t.isocalendar()[:2])),
        ("monthly", keep_monthly or 0, lambda t, n: t.strftime("%Y-%m")),
    ]
    keep = {}
    for rule, count, keyfn in rules:
        last_key, left = None, count
        for name, when in ordered:
            if left <= 0:
                break
            key = keyfn(when, name)
            if key != last_key:
                keep.setdefault(name, []).append(rule)
                last_key = key
                left -= 1
    if protect:
        keep.setdefault(protect, []).append("newest-verified")
    prune = [name for name, _when in ordered if name not in keep]
    return keep, prune


# --------------------------------------------------------------------------
# locking


class AgentLock:
    """The one lock of an agent: its backup, retention and any restore into
    it hold it (flock on <backup dir>/.lock, released by the kernel when the
    holder dies). The holder writes its pid, operation and start time into
    the file; a second operation waits up to `timeout` seconds, then fails
    naming the holder."""

    def __init__(self, agent_dir, operation="backup", timeout=0):
        self.path = os.path.join(agent_dir, LOCK_NAME)
        self.operation, self.timeout = operation, timeout or 0
        self.fd = None

    def holder(self):
        """'pid N, <operation> since <time>' of the current holder, as it wrote it."""
        try:
            with open(self.path, "rb") as handle:
                data = json.loads(handle.read(4096).decode("utf-8"))
            return "pid {}, {} since {}".format(data["pid"], data["operation"], data["started"])
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise BackupError(
                        f"{self.operation} not started: {self.path} is held ({self.holder()})"
                        + (f"; waited {self.timeout}s" if self.timeout else "")
                    ) from None
                time.sleep(0.2)
        self.fd = fd
        started = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        note = json.dumps({"pid": os.getpid(), "operation": self.operation, "started": started})
        with contextlib.suppress(OSError):  # the note is informative only
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode("utf-8") + b"\n", 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def stale_leftovers(agent_dir, agent):
    """Partial files (archives, scratch directories and records being
    written). Only call while holding the agent lock: then no run is writing
    them. Archives are never leftovers: one without a valid manifest is
    repaired or moved aside by AgentBackup._repair_archives()."""
    found = []
    try:
        names = os.listdir(agent_dir)
    except OSError:
        return found
    for name in sorted(names):
        if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
            found.append(os.path.join(agent_dir, name))
    return found


# --------------------------------------------------------------------------
# backup


def _load_index(agent_dir, name=INDEX_NAME):
    try:
        with open(os.path.join(agent_dir, name), "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return data
    except (OSError, ValueError):
        pass
    return None


def _file_line(e):
    return f"{e.kind}\0{e.path}\0{e.size}\0{e.mode:o}\0{e.sha256 or ''}\0{e.target or ''}\n"


def _extra_lines(dbs, soul, env_key):
    lines = ["db\0{}\0{}\0{}\n".format(db["key"], db["name"], db["content_sha256"]) for db in dbs]
    lines.append("soul\0%s\n" % (soul or ""))
    lines.append(f"env\0{json.dumps(env_key)}\n")
    return "".join(lines).encode("utf-8")


def content_digest(entries, dbs, soul, env_key):
    digest = hashlib.sha256()
    digest.update("".join(_file_line(e) for e in entries).encode("utf-8", "surrogateescape"))
    digest.update(_extra_lines(dbs, soul, env_key))
    return digest.hexdigest()


def stat_digest(entries, dbs, soul, env_key):
    """Digest of everything the unchanged check compares: every entry's path
    and stat key (kind, size, mode, mtime, ctime, inode, link target), the
    database content checksums, the soul commit and the env file's stat."""
    digest = hashlib.sha256()
    digest.update(
        "".join(
            f"{e.kind}\0{e.path}\0{e.size}\0{e.mode}\0{e.mtime_ns}\0{e.ctime_ns}\0{e.ino}\0{e.target or ''}\n"
            for e in entries
        ).encode("utf-8", "surrogateescape")
    )
    digest.update(_extra_lines(dbs, soul, env_key))
    return digest.hexdigest()


_json_str = json.encoder.encode_basestring_ascii


def _manifest_line(e):
    """One entry of the manifest's file list, exactly as json.dumps(..., sort_keys=True) writes it."""
    if e.kind == "f":
        return (
            f'{{"mode": {e.mode}, "mtime": {e.mtime_ns // 1000000000}, "path": {_json_str(e.path)}, '
            f'"sha256": "{e.sha256}", "size": {e.size}, "type": "f"}}'
        )
    if e.kind in ("l", "h"):  # a symlink, or a hard link to an earlier file of the archive
        return (
            f'{{"mode": {e.mode}, "mtime": {e.mtime_ns // 1000000000}, "path": {_json_str(e.path)}, '
            f'"target": {_json_str(e.target)}, "type": "{e.kind}"}}'
        )
    return f'{{"mode": {e.mode}, "mtime": {e.mtime_ns // 1000000000}, "path": {_json_str(e.path)}, "type": "{e.kind}"}}'


def _index_line(e):
    """One member of the index's file map: path -> [stat key, sha256], as compact JSON."""
    target = "null" if e.target is None else _json_str(e.target)
    sha = "null" if e.sha256 is None else f'"{e.sha256}"'
    return f'{_json_str(e.path)}:[["{e.kind}",{e.size},{e.mode},{e.mtime_ns},{e.ctime_ns},{e.ino},{target}],{sha}]'


def _json_with_files(data, files, compact=False):
    """json.dumps of `data` whose "files" value is the already encoded text
    `files` (the file list is written as strings, once per entry, rather than
    built as a dict per entry and encoded again)."""
    data = dict(data, files=None)
    if compact:
        text, placeholder = json.dumps(data, separators=(",", ":")), '"files":null'
    else:
        text, placeholder = json.dumps(data, sort_keys=True), '"files": null'
    head, found, tail = text.partition(placeholder)
    if not found:
        raise BackupError("cannot encode the file list")
    return "".join((head, placeholder[:-4], files, tail))


def _report_unchanged(res, archive, entries):
    """An agent whose content matches its last good archive: no new archive, that one is reported."""
    res.update(
        status="unchanged",
        archive=archive,
        manifest=manifest_path(archive),
        files=sum(1 for e in entries if e.kind == "f"),
    )


class AgentBackup:
    """One agent's backup run. Use run()."""

    def __init__(self, plan, name, check_mode=False, env_passphrase_file=None, now=None, log=None):
        self.plan, self.name, self.check_mode = plan, name, check_mode
        self.agent = agent_plan(plan, name)
        self.settings = plan.get("backup") or {}
        self.agent_dir = agent_backup_dir(plan, name)
        self.env_passphrase_file = env_passphrase_file or self.settings.get("env_passphrase_file")
        self.now = now
        self.log = log or (lambda msg: None)
        # verification record (.verified.json), loaded on first use; archives checked in this run
        self._verified, self._verified_dirty, self._checked = None, False, {}
        self.result = {
            "agent": name,
            "status": None,
            "archive": None,
            "manifest": None,
            "size": None,
            "files": None,
            "pruned": [],
            "removed_leftovers": [],
            "damaged": [],
            "rebuilt_manifests": [],
            "unknown_format": [],
            "consistency": None,
            "databases": [],
            "msg": "",
        }

    # -- sources
    def sources(self, roots=None):
        paths = self.agent.get("paths") or {}
        rules = compile_excludes(self.settings.get("exclude") or [])
        entries, skipped = [], []
        for section in SECTIONS:
            root = (roots or {}).get(section) or paths.get(section)
            if root:
                entries.extend(scan_tree(root, section, rules, skipped, links={}))
        return entries, skipped

    def env_key(self):
        env_file = (self.agent.get("paths") or {}).get("env_file")
        if not self.settings.get("include_env") or not env_file:
            return None
        try:
            st = os.stat(env_file)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def databases(self, workdir):
        db = self.agent.get("db")
        if not db:
            return []
        out = []
        for key in sorted(db.get("databases") or {}):
            dbname = db["databases"][key]
            dest = os.path.join(workdir, f"db-{key}") if workdir else None
            info = dump_database(db["jail"], dbname, dest)
            info.update({"key": key, "name": dbname, "jail": db["jail"], "member": f"dbs/{key}.dump", "tmp": dest})
            out.append(info)
        return out

    def unchanged_by_stat(self, entries, index, dbs, soul, env_key):
        """Fill sha256 of entries whose stat key matches the index; True when
        nothing at all changed since the last good archive."""
        if not index:
            return False
        known = index.get("files") or {}
        same = len(known) == len(entries)
        for e in entries:
            prev = known.get(e.path)
            if prev and prev[0] == e.key():
                e.sha256 = prev[1]
            else:
                same = False
        if not same:
            return False
        return content_digest(entries, dbs, soul, env_key) == index.get("digest")

    def unchanged_by_summary(self, summary, tree):
        """The last good archive when the summary of the run that made (or
        confirmed) it has this stat digest: nothing changed, and the per-file
        index need not be read."""
        if not summary or not tree or summary.get("tree") != tree:
            return None
        return self.last_good(summary)

    def last_good(self, index):
        if not index or not index.get("archive"):
            return None
        path = os.path.join(self.agent_dir, index["archive"])
        manifest = load_manifest(path)
        if manifest is None or manifest.get("content_digest") != index.get("digest"):
            return None
        try:
            if os.path.getsize(path) != manifest.get("archive_size"):
                return None
        except OSError:
            return None
        if self.result["damaged"] or not self._intact(path):
            # a damaged archive was found: this run makes a new full archive
            return None
        return path

    # -- integrity of the archives on disk
    def _records(self):
        if self._verified is None:
            self._verified = load_verified(self.agent_dir)
        return self._verified

    def _intact(self, path):
        """Whether the archive is still what its manifest says: its size and
        mtime against the ones recorded at its last full verification, and a
        full sha256 check when there is no record, either differs, or the
        last one is `verify_every` days old. A damaged archive is reported
        and moved aside (not deleted); False is returned."""
        if path in self._checked:
            return self._checked[path]
        name = os.path.basename(path)
        manifest = load_manifest(path)
        try:
            st = os.stat(path)
        except OSError:
            return False
        now = self.now or utcnow()
        record = self._records().get(name)
        every = self.settings.get("verify_every", VERIFY_EVERY_DAYS)
        ok = True
        if manifest is None:
            ok = False
        elif verification_due(record, st, now, every) or record.get("sha256") != manifest["archive_sha256"]:
            try:
                verify_archive(path, manifest, members=False)
            except BackupError as exc:
                self._damaged(path, str(exc))
                ok = False
            else:
                self._record(name, st, now, manifest["archive_sha256"])
        self._checked[path] = ok
        return ok

    def _record(self, name, st, now, sha):
        record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "verified": iso_time(now), "sha256": sha}
        self._records()[name] = record
        self._verified_dirty = True

    def _damaged(self, path, why):
        """Report a damaged archive and, outside check mode, move it and its
        manifest into damaged/ for inspection."""
        entry = {"archive": path, "error": why, "moved_to": None}
        if not self.check_mode:
            moved = move_aside(self.agent_dir, [path, manifest_path(path)])
            entry["moved_to"] = moved[0] if moved else None
            self._records().pop(os.path.basename(path), None)
            self._verified_dirty = True
        self.result["damaged"].append(entry)
        self.log(
            "{}: {} is damaged ({}){}".format(
                self.name, path, why, f"; moved to {entry['moved_to']} for inspection" if entry["moved_to"] else ""
            )
        )

    def _check_newest(self):
        """The newest archive is the one a restore takes: prove it intact every run."""
        good = good_archives(self.agent_dir, self.name)
        if good:
            self._intact(good[0]["path"])

    def _repair_archives(self):
        """Archives whose manifest is missing, damaged or names another
        archive are read through; an intact one gets a manifest rebuilt from
        its contents (the damaged manifest is kept in damaged/), one that does
        not read back is moved to damaged/. A manifest of another format
        version is left as it is and reported. No archive is deleted here."""
        res = self.result
        for arch in list_archives(self.agent_dir, self.name):
            if arch["state"] == "good":
                continue
            path = arch["path"]
            raw = read_manifest_raw(path)
            fmt = raw.get("format") if isinstance(raw, dict) else None
            if isinstance(fmt, str) and fmt.startswith("warden-backup/") and fmt != FORMAT:
                res["unknown_format"].append(path)
                self.log(f"{self.name}: {path} has a manifest of format {fmt}, not {FORMAT}: left as it is")
                continue
            if self.check_mode:
                res["rebuilt_manifests"].append(path)
                continue
            if arch["state"] == "size-mismatch":
                self._damaged(path, "size {} differs from the manifest's {}".format(arch["size"], raw["archive_size"]))
                continue
            reason = "manifest missing" if raw is None else "manifest damaged"
            try:
                manifest = rebuild_manifest(
                    path, self.name, self.agent, host=self.plan.get("host"), reason=reason, now=self.now
                )
                recorded = raw.get("archive_sha256") if isinstance(raw, dict) else None
                sha = manifest["archive_sha256"]
                if isinstance(recorded, str) and re.match(r"^[0-9a-f]{64}$", recorded) and recorded != sha:
                    raise BackupError(f"sha256 {sha} differs from the manifest's {recorded}")
            except BackupError as exc:
                self._damaged(path, f"{reason} and the archive does not verify: {exc}")
                continue
            if raw is not None:
                move_aside(self.agent_dir, [manifest_path(path)])
            atomic_write(manifest_path(path), json.dumps(manifest, sort_keys=True).encode("utf-8"))
            cache = getattr(_ManifestCache.local, "entries", None)
            if cache:
                cache.pop(manifest_path(path), None)
            st = os.stat(path)
            self._record(arch["name"], st, self.now or utcnow(), manifest["archive_sha256"])
            res["rebuilt_manifests"].append(path)
            self.log(f"{self.name}: {path}: {reason}; rebuilt from the archive, which reads back intact")

    def run(self):
        start = time.time()
        res = self.result
        paths = self.agent.get("paths") or {}
        if not os.path.isdir(paths.get("workspace") or "") and not os.path.isdir(paths.get("state") or ""):
            res["status"] = "missing"
            res["msg"] = "no workspace on disk at {}".format(paths.get("workspace"))
            return res
        if paths.get("workspace") and not os.path.isdir(paths["workspace"]):
            # state without a workspace: an unmounted dataset or a moved
            # directory; an archive without it would soon be the only one kept
            raise BackupError(
                "workspace {} is missing while {} exists: not backed up (previous archives kept)".format(
                    paths["workspace"], paths.get("state")
                )
            )
        if self.settings.get("include_env") and self.env_key() is not None:
            check_passphrase_file(self.env_passphrase_file)
        if self.check_mode:
            return self._run_check(start)
        makedirs_private(self.agent_dir)
        with AgentLock(self.agent_dir, "backup", self.settings.get("lock_timeout", 0)), _ManifestCache():
            for leftover in stale_leftovers(self.agent_dir, self.name):
                if os.path.isdir(leftover) and not os.path.islink(leftover):
                    shutil.rmtree(leftover)
                else:
                    os.unlink(leftover)
                res["removed_leftovers"].append(leftover)
            res["removed_leftovers"].extend(remove_restore_leftovers(self.plan, self.name))
            try:
                self._repair_archives()
                self._check_newest()
                self._run_locked()
                self._prune()
            finally:
                if self._verified_dirty:
                    save_verified(self.agent_dir, self._records())
        if res["damaged"]:
            res["msg"] = "; ".join(
                "damaged archive {} ({}), moved to {}".format(d["archive"], d["error"], d["moved_to"])
                for d in res["damaged"]
            )
        res["duration"] = round(time.time() - start, 3)
        return res

    def _run_check(self, start):
        res = self.result
        self._check_newest()
        soul = soul_commit((self.agent.get("paths") or {}).get("soul"))
        dbs = self.databases(None)
        entries, _skipped = self.sources()
        env_key = self.env_key()
        res["databases"] = [{"key": d["key"], "name": d["name"], "content_sha256": d["content_sha256"]} for d in dbs]
        res["files"] = sum(1 for e in entries if e.kind == "f")
        res["size"] = sum(e.size for e in entries)
        previous = self.unchanged_by_summary(
            _load_index(self.agent_dir, SUMMARY_NAME), stat_digest(entries, dbs, soul, env_key)
        )
        if not previous:
            index = _load_index(self.agent_dir)
            if self.last_good(index) and self.unchanged_by_stat(entries, index, dbs, soul, env_key):
                previous = self.last_good(index)
        if previous:
            res["status"] = "unchanged"
            res["archive"] = previous
            planned_new = None
        else:
            res["status"] = "would_create"
            planned_new = archive_name(
                self.name, format_stamp(self.now or utcnow()), pick_compression(self.settings.get("compression"))
            )
        res["removed_leftovers"] = stale_leftovers(self.agent_dir, self.name)
        self._repair_archives()
        res["pruned"] = self._retention_plan(planned_new)[1]
        res["duration"] = round(time.time() - start, 3)
        return res

    def _run_locked(self):
        res = self.result
        summary = _load_index(self.agent_dir, SUMMARY_NAME)
        soul = soul_commit((self.agent.get("paths") or {}).get("soul"))
        env_key = self.env_key()
        # scratch space for database dumps and the encrypted env file only
        workdir = None
        if self.agent.get("db") or env_key is not None:
            workdir = tempfile.mkdtemp(prefix=".work-", suffix=PARTIAL_SUFFIX, dir=self.agent_dir)
        snaps = None
        writer = None
        try:
            dbs = self.databases(workdir)
            res["databases"] = [
                {"key": d["key"], "name": d["name"], "size": d["size"], "content_sha256": d["content_sha256"]}
                for d in dbs
            ]
            entries, skipped = self.sources()
            tree = stat_digest(entries, dbs, soul, env_key)
            previous = self.unchanged_by_summary(summary, tree)
            if previous:
                # the common case: the stat digest alone, no per-file index
                _report_unchanged(res, previous, entries)
                return
            index = _load_index(self.agent_dir)
            previous = self.last_good(index)
            if previous and self.unchanged_by_stat(entries, index, dbs, soul, env_key):
                self._write_index(index["archive"], index["digest"], entries, env_key, tree)
                _report_unchanged(res, previous, entries)
                return
            when = self.now or utcnow()
            while True:
                stamp = format_stamp(when)
                compression = pick_compression(self.settings.get("compression"))
                name = archive_name(self.name, stamp, compression)
                final = os.path.join(self.agent_dir, name)
                if not os.path.exists(final) and not os.path.exists(manifest_path(final)):
                    break
                when = when + datetime.timedelta(seconds=1)
            # consistent source: a ZFS snapshot where the section is its own dataset
            snaps = Snapshots(f"warden-backup-{stamp}")
            roots, snapshot_names = {}, []
            for section in SECTIONS:
                src = (self.agent.get("paths") or {}).get(section)
                if src and os.path.isdir(src):
                    roots[section], snap = snaps.source(src)
                    if snap:
                        snapshot_names.append(snap)
            if snapshot_names:
                entries, skipped = self.sources(roots)
                tree = stat_digest(entries, dbs, soul, env_key)
            res["consistency"] = "zfs-snapshot" if snapshot_names else "best-effort"
            partial = os.path.join(self.agent_dir, "." + name + PARTIAL_SUFFIX)
            size_hint = sum(e.size for e in entries) + sum(d["size"] for d in dbs)
            writer = ArchiveWriter(partial, compression, size_hint=size_hint)
            for e in entries:
                writer.add_entry(e)
            for db in dbs:
                writer.add_file(db["member"], db["tmp"])
            env = {"included": False}
            if env_key is not None:
                enc = os.path.join(workdir, "env.enc")
                # encrypted through pipes: the plaintext never reaches a file
                ciphertext, check = openssl_cipher(
                    read_private_file(self.agent["paths"]["env_file"]), self.env_passphrase_file
                )
                write_private_file(enc, ciphertext)
                member = f"env/{self.name}.env.enc"
                sha, size = writer.add_file(member, enc)
                env = {
                    "included": True,
                    "encrypted": "aes-256-cbc-pbkdf2",
                    "member": member,
                    "sha256": sha,
                    "size": size,
                    "source": self.agent["paths"]["env_file"],
                    "plaintext_hmac_sha256": check,
                }
            digest = content_digest(entries, dbs, soul, env_key)
            if previous and index and digest == index.get("digest"):
                # touched but identical: not a new backup
                writer.abort()
                writer = None
                self._write_index(index["archive"], digest, entries, env_key, tree)
                _report_unchanged(res, previous, entries)
                return
            sha, size = writer.finish()
            writer = None
            if sha256_file(partial) != sha:
                raise BackupError(f"{partial}: read-back checksum differs from what was written")
            # The archive's data is on disk (fsynced by finish()); the manifest is
            # written after the rename and the one directory fsync of
            # atomic_write() makes both renames durable. Whichever rename a
            # crash loses, no archive with a valid manifest naming it appears.
            os.rename(partial, final)
            manifest = {
                "format": FORMAT,
                "agent": self.name,
                "host": self.plan.get("host") or socket.gethostname(),
                "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "stamp": stamp,
                "collection_version": __version__,
                "archive": name,
                "compression": compression,
                "archive_sha256": sha,
                "archive_size": size,
                "soul_commit": soul,
                "consistency": res["consistency"],
                "snapshots": snapshot_names,
                "sources": dict((s, (self.agent.get("paths") or {}).get(s)) for s in SECTIONS),
                "excludes": list(self.settings.get("exclude") or []),
                "skipped": skipped,
                "databases": [
                    {
                        "key": d["key"],
                        "name": d["name"],
                        "jail": d["jail"],
                        "member": d["member"],
                        "format": "pg_dump-custom",
                        "size": d["size"],
                        "sha256": d["sha256"],
                        "content_sha256": d["content_sha256"],
                    }
                    for d in dbs
                ],
                "env": env,
                "content_digest": digest,
            }
            files = "[" + ", ".join(map(_manifest_line, entries)) + "]"
            try:
                atomic_write(manifest_path(final), _json_with_files(manifest, files).encode("utf-8"))
            except BaseException:
                # no manifest (e.g. the disk filled up): the archive of this run is removed
                with contextlib.suppress(OSError):
                    os.unlink(final)
                raise
            # read back and compared above: this is its first full verification
            self._record(name, os.stat(final), self.now or utcnow(), sha)
            self._write_index(name, digest, entries, env_key, tree)
            res.update(
                status="created",
                archive=final,
                manifest=manifest_path(final),
                size=size,
                sha256=sha,
                files=sum(1 for e in entries if e.kind == "f"),
            )
        finally:
            if writer is not None:
                writer.abort()
            if snaps is not None:
                snaps.close()
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    def _write_index(self, archive, digest, entries, env_key, tree):
        """The per-file index (stat key and sha256 of every file) and the
        summary (the stat digest of the whole source) for `archive`, whose
        content digest is `digest`. Both are caches: losing them only means
        the next run reads every file again."""
        data = {"format": FORMAT, "archive": archive, "digest": digest, "env": env_key}
        files = "{" + ",".join(map(_index_line, entries)) + "}"
        index = _json_with_files(data, files, compact=True).encode("utf-8")
        atomic_write(os.path.join(self.agent_dir, INDEX_NAME), index, durable=False)
        summary = {"format": FORMAT, "archive": archive, "digest": digest, "tree": tree}
        atomic_write(os.path.join(self.agent_dir, SUMMARY_NAME), json.dumps(summary).encode("utf-8"), durable=False)

    def _retention_plan(self, extra=None):
        archives = [(a["name"], a["time"]) for a in good_archives(self.agent_dir, self.name)]
        if extra:
            parsed = parse_archive_name(extra, self.name)
            archives.append((extra, parsed[1]))
        s = self.settings
        newest = max(archives, key=lambda a: (a[1], a[0]))[0] if archives else None
        return retention(
            archives,
            s.get("keep_last", 7),
            s.get("keep_daily", 7),
            s.get("keep_weekly", 4),
            s.get("keep_monthly", 6),
            protect=newest if extra else None,
        )

    def _prune(self):
        keep, prune = self._retention_plan()
        if not prune:
            return
        # never delete the newest verified archive: verify from the newest down
        protected = None
        for arch in good_archives(self.agent_dir, self.name):
            try:
                verify_archive(arch["path"], arch["manifest"], members=False)
                protected = arch["name"]
                break
            except BackupError as exc:
                self.log(f"{self.name}: {exc}")
        if protected is None:
            raise BackupError(f"no archive of {self.name} verifies: not pruning anything")
        for name in prune:
            if name == protected:
                continue
            path = os.path.join(self.agent_dir, name)
            os.unlink(manifest_path(path))
            os.unlink(path)
            self.result["pruned"].append(path)
        fsync_dir(self.agent_dir)


def backup_workers(count):
    """Agents backed up at the same time: one per CPU (file I/O, hashing and
    the zstd child processes run outside the interpreter lock)."""
    return max(1, min(count, os.cpu_count() or 1))


def backup_fleet(plan, agents=None, check_mode=False, env_passphrase_file=None, now=None, log=None, workers=None):
    """Back up the selected agents (default: every present agent), up to
    `workers` (default: the CPU count) at a time. One agent's failure does
    not stop the others. Returns a result dict."""
    names = selected_agents(plan, agents)

    def one(name):
        job = AgentBackup(plan, name, check_mode=check_mode, env_passphrase_file=env_passphrase_file, now=now, log=log)
        try:
            return job.run()
        except (BackupError, OSError, subprocess.SubprocessError) as exc:
            job.result.update(status="failed", msg=str(exc))
            return job.result

    workers = backup_workers(len(names)) if workers is None else max(1, workers)
    if workers == 1 or len(names) < 2:
        results = dict((name, one(name)) for name in names)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict((res["agent"], res) for res in pool.map(one, names))
    counts = {}
    for res in results.values():
        counts[res["status"]] = counts.get(res["status"], 0) + 1
    pruned = sum(len(r["pruned"]) for r in results.values())
    failed = sorted(n for n, r in results.items() if r["status"] == "failed")
    orphans = orphan_workspaces(plan)
    summary = "warden backup {}: {}; pruned {}".format(
        plan.get("host", socket.gethostname()),
        ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "no agents",
        pruned,
    )
    if orphans:
        summary += "; orphaned workspaces: " + ", ".join(orphans)
    if failed:
        summary += "; FAILED: " + ", ".join("{} ({})".format(n, results[n]["msg"]) for n in failed)
    damaged = sorted(n for n, r in results.items() if r.get("damaged"))
    if damaged:
        summary += "; DAMAGED: " + ", ".join(
            "{} ({})".format(n, ", ".join(d["moved_to"] or d["archive"] for d in results[n]["damaged"]))
            for n in damaged
        )
    rebuilt = sorted(n for n, r in results.items() if r.get("rebuilt_manifests"))
    if rebuilt:
        summary += "; manifests rebuilt: " + ", ".join(rebuilt)
    foreign = sorted(n for n, r in results.items() if r.get("unknown_format"))
    if foreign:
        summary += "; manifests of another format left alone: " + ", ".join(foreign)
    touched = [
        r["pruned"] or r["removed_leftovers"] or r.get("damaged") or r.get("rebuilt_manifests")
        for r in results.values()
    ]
    changed = any(r["status"] == "created" for r in results.values()) or any(touched)
    if check_mode:
        changed = any(r["status"] == "would_create" for r in results.values()) or any(touched)
    return {
        "agents": results,
        "orphans": orphans,
        "failed_agents": failed,
        "damaged_agents": damaged,
        "summary": summary,
        "changed": changed,
        "created": sorted(r["archive"] for r in results.values() if r["status"] == "created"),
    }


# --------------------------------------------------------------------------
# restore


def pid_alive(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def service_running(service):
    if not service:
        return False
    return pid_alive(service.get("pidfile") or "/var/run/{}.pid".format(service["name"]))


def select_archive(agent_dir, agent, at=None):
    """Newest good archive at or before `at` (a datetime), or the newest."""
    for arch in good_archives(agent_dir, agent):
        if at is None or arch["time"] <= at:
            return arch
    raise BackupError(
        "no good archive of {} in {}{}".format(
            agent, agent_dir, (" at or before {}".format(at.strftime("%Y-%m-%dT%H:%M:%SZ"))) if at else ""
        )
    )


def _owner_ids(target):
    if os.geteuid() != 0:
        return None
    user = (target.get("user") or {}).get("name")
    group = (target.get("user") or {}).get("group")
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid if group else pwd.getpwnam(user).pw_gid
    except (KeyError, TypeError):
        return None
    return uid, gid


RESTORE_PREFIX = ".warden-restore-"


class _StagedTree:
    """A directory a restore fills, written only through descriptors: every
    path component is opened relative to the directory above it without
    following a symlink, files are created O_EXCL|O_NOFOLLOW, and ownership,
    modes and times are set on the descriptors. Owns fd."""

    def __init__(self, fd, ids=None):
        self.fd, self.ids = fd, ids
        self.cached = None  # (relative directory, fd) of the last parent used

    def _open(self, reldir):
        """A new descriptor of reldir ("" is the root); the caller closes it unless it is self.fd."""
        fd = self.fd
        try:
            for part in reldir.split("/") if reldir else ():
                sub = open_dir(part, fd)
                if fd != self.fd:
                    os.close(fd)
                fd = sub
        except BaseException:
            if fd != self.fd:
                os.close(fd)
            raise
        return fd

    def _release(self, fd):
        if fd != self.fd:
            os.close(fd)

    def parent(self, rel):
        head, _sep, name = rel.rpartition("/")
        if not head:
            return self.fd, name
        if self.cached is None or self.cached[0] != head:
            fd = self._open(head)
            self._drop_cache()
            self.cached = (head, fd)
        return self.cached[1], name

    def _drop_cache(self):
        if self.cached is not None:
            os.close(self.cached[1])
            self.cached = None

    def create_file(self, rel):
        dfd, name = self.parent(rel)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        if self.ids:
            os.fchown(fd, *self.ids)
        return fd

    def mkdir(self, rel):
        if rel:
            dfd, name = self.parent(rel)
            os.mkdir(name, 0o700, dir_fd=dfd)
        if self.ids:
            fd = self._open(rel)
            try:
                os.fchown(fd, *self.ids)
            finally:
                self._release(fd)

    def symlink(self, link, rel):
        dfd, name = self.parent(rel)
        os.symlink(link, name, dir_fd=dfd)
        if self.ids:
            os.chown(name, *self.ids, dir_fd=dfd, follow_symlinks=False)

    def hardlink(self, src_rel, rel):
        shead, _sep, sname = src_rel.rpartition("/")
        sfd = self._open(shead)
        try:
            dfd, name = self.parent(rel)
            os.link(sname, name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            self._release(sfd)

    def finish_dir(self, rel, mode, mtime):
        fd = self._open(rel)
        try:
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        finally:
            self._release(fd)

    def close(self):
        self._drop_cache()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# What extract_archive writes to: a path (only for root's own scratch
# directories) or (a _StagedTree, path relative to it).


def _target_create(target):
    if isinstance(target, tuple):
        return target[0].create_file(target[1])
    return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)


def _target_mkdir(target):
    if isinstance(target, tuple):
        target[0].mkdir(target[1])
    elif not os.path.isdir(target):
        os.mkdir(target, 0o700)


def _target_symlink(link, target):
    if isinstance(target, tuple):
        target[0].symlink(link, target[1])
    else:
        os.symlink(link, target)


def _target_hardlink(src, target):
    if isinstance(target, tuple) and isinstance(src, tuple) and src[0] is target[0]:
        target[0].hardlink(src[1], target[1])
    elif isinstance(target, tuple) or isinstance(src, tuple):
        raise BackupError("a hard link across sections of the archive")
    else:
        os.link(src, target, follow_symlinks=False)


def _target_finish_dir(target, mode, mtime):
    if isinstance(target, tuple):
        target[0].finish_dir(target[1], mode, mtime)
    else:
        os.chmod(target, mode)
        os.utime(target, (mtime, mtime))


def _target_depth(target):
    return target[1].count("/") + 1 if isinstance(target, tuple) else target.count("/")


SPARSE_BLOCK = 64 * 1024
_ZERO_BLOCK = bytes(SPARSE_BLOCK)


def _write_out(fd, block, sparse=False):
    """Write block at fd's offset; with sparse, runs of SPARSE_BLOCK zero
    bytes are skipped (a hole; the caller sets the final size)."""
    if not sparse or len(block) < SPARSE_BLOCK:
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view) :]
        return
    for start in range(0, len(block), SPARSE_BLOCK):
        piece = block[start : start + SPARSE_BLOCK]
        if piece == (_ZERO_BLOCK if len(piece) == SPARSE_BLOCK else bytes(len(piece))):
            os.lseek(fd, len(piece), os.SEEK_CUR)
        else:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]


def _private_dir(start_fd, start_path, name):
    """A directory `name` only root can enter (created 0700 by us), on the
    file system of start_path (held as start_fd): in the nearest of
    start_path and its parents that only root can write, so that the agent
    cannot even rename it, else in start_path itself (the agent may rename
    it there but cannot enter it; it is only used through its descriptor).
    Returns (fd of the directory it is in, fd of it)."""
    euid = os.geteuid()
    dev = os.fstat(start_fd).st_dev
    base, cur = None, start_path.rstrip("/") or "/"
    while True:
        try:
            st = os.lstat(cur)
        except OSError:
            break
        if st.st_dev != dev or not stat.S_ISDIR(st.st_mode):
            break
        if st.st_uid == euid and not st.st_mode & 0o022:
            base = cur
            break
        up = os.path.dirname(cur)
        if up == cur:
            break
        cur = up
    base_fd = os.dup(start_fd) if base is None or base == start_path.rstrip("/") else open_dir(base)
    try:
        if os.fstat(base_fd).st_dev != dev:
            raise BackupError(f"{base} is not on the file system of {start_path}")
        label = os.path.join(base or start_path, name)
        for attempt in (1, 2):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=base_fd)
            try:
                fd = open_dir(name, base_fd, label=label)
            except BackupError:
                fd = None  # something else than a directory under our name
            if fd is not None:
                st = os.fstat(fd)
                if st.st_uid == euid and st.st_dev == dev:
                    os.fchmod(fd, 0o700)
                    return base_fd, fd
                os.close(fd)
            if base is not None or attempt == 2:
                raise BackupError(f"{label} is not ours: remove it and retry")
            # in the agent's own directory: what it put under our name is moved aside
            os.rename(name, _free_name(base_fd, name + ".moved"), src_dir_fd=base_fd, dst_dir_fd=base_fd)
        raise BackupError(f"{label} is not ours: remove it and retry")
    except BaseException:
        os.close(base_fd)
        raise


def _rmtree_at(dir_fd, name):
    """Remove name (a tree) in the directory held as dir_fd, never following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _lexists_at(dir_fd, name):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def restore_leftovers(plan, name):
    """Staging directories an interrupted restore into agent `name` left
    (root-only <dir>/.warden-restore-<agent>/ next to its workspace and
    state), and old-style ones in its home. Call while holding its lock."""
    found = []
    paths = (agent_plan(plan, name).get("paths") or {}) if name in (plan.get("agents") or {}) else {}
    euid = os.geteuid()
    for section in SECTIONS:
        live = (paths.get(section) or "").rstrip("/")
        if not live:
            continue
        parent = os.path.dirname(live)
        candidates, cur = [live], parent
        while True:  # the places _private_dir may have used: live, its parent and their parents
            candidates.append(cur)
            up = os.path.dirname(cur)
            if up == cur:
                break
            cur = up
        for directory in candidates:
            candidate = os.path.join(directory, RESTORE_PREFIX + name)
            try:
                st = os.lstat(candidate)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == euid and candidate not in found:
                found.append(candidate)
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(parent)):
                if re.match(r"^\.(workspace|state)\.warden-restore-\d{8}T\d{6}Z$", entry):
                    found.append(os.path.join(parent, entry))
    agent_dir = agent_backup_dir(plan, name)
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(agent_dir)):
            if entry.startswith(".restore-") and entry.endswith(PARTIAL_SUFFIX):
                found.append(os.path.join(agent_dir, entry))  # a restore's scratch directory
    return found


def remove_restore_leftovers(plan, name):
    removed = []
    for path in restore_leftovers(plan, name):
        try:
            dir_fd = open_dir(os.path.dirname(path))
        except (OSError, BackupError):
            continue
        try:
            _rmtree_at(dir_fd, os.path.basename(path))
            removed.append(path)
        finally:
            os.close(dir_fd)
    return removed


def restore_agent(
    plan,
    agent,
    archive=None,
    at=None,
    target_agent=None,
    restore_databases=True,
    restore_env=False,
    env_passphrase_file=None,
    start_service="auto",
    check_mode=False,
    now=None,
    lock_timeout=0,
):
    """Restore (see _restore_locked) holding the lock of the target agent,
    and of the archive's agent when that is another one, throughout: no
    backup, retention or other restore of either runs meanwhile; one that
    holds a lock makes this wait up to lock_timeout seconds, then fail
    naming it."""
    source = agent
    if archive and not source:
        manifest = load_manifest(archive)
        if manifest is None:
            raise BackupError(f"{archive} has no valid manifest ({manifest_path(archive)})")
        source = manifest.get("agent")
    target_name = target_agent or source
    if target_name:
        agent_plan(plan, target_name)  # fail early on a name the plan does not know
    with contextlib.ExitStack() as locks:
        for directory in sorted(set(agent_backup_dir(plan, n) for n in (source, target_name) if n)):
            if not os.path.isdir(directory):
                if check_mode or directory != agent_backup_dir(plan, target_name):
                    continue
                makedirs_private(directory)
            locks.enter_context(AgentLock(directory, "restore", lock_timeout))
        return _restore_locked(
            plan,
            agent,
            archive=archive,
            at=at,
            target_agent=target_agent,
            restore_databases=restore_databases,
            restore_env=restore_env,
            env_passphrase_file=env_passphrase_file,
            start_service=start_service,
            check_mode=check_mode,
            now=now,
        )


def _restore_locked(
    plan,
    agent,
    archive=None,
    at=None,
    target_agent=None,
    restore_databases=True,
    restore_env=False,
    env_passphrase_file=None,
    start_service="auto",
    check_mode=False,
    now=None,
):
    """Verify an archive completely, stage it, stop the service, swap the
    workspace and state (the previous ones are kept as <dir>.prev-<ts>),
    restore the databases, restart the service. Nothing is touched unless
    the archive verifies."""
    if target_agent or agent:
        agent_plan(plan, target_agent or agent)  # fail early on a name the plan does not know
    if archive:
        manifest = load_manifest(archive)
        if manifest is None:
            raise BackupError(f"{archive} has no valid manifest ({manifest_path(archive)})")
        if agent and manifest.get("agent") != agent:
            raise BackupError("{} is a backup of {}, not {}".format(archive, manifest.get("agent"), agent))
        agent = manifest["agent"]
        path = archive
    else:
        if isinstance(at, str):
            at = parse_time(at)
        chosen = select_archive(agent_backup_dir(plan, agent), agent, at)
        path, manifest = chosen["path"], chosen["manifest"]
    target_name = target_agent or agent
    target = agent_plan(plan, target_name)
    foreign = target_name != agent
    result = {
        "agent": agent,
        "target_agent": target_name,
        "archive": path,
        "created": manifest.get("created"),
        "soul_commit": manifest.get("soul_commit"),
        "databases": [],
        "previous": {},
        "service": {},
        "env_restored": False,
        "changed": False,
    }
    # 1. verify everything before touching anything
    verify_archive(path, manifest, members=check_mode)
    dbs = manifest.get("databases") or []
    tdb = target.get("db")
    if dbs and restore_databases:
        if not tdb:
            raise BackupError(
                f"the archive has databases but {target_name} has no db in the plan "
                "(pass restore_databases=false to skip them)"
            )
        missing = [d["key"] for d in dbs if d["key"] not in (tdb.get("databases") or {})]
        if missing:
            raise BackupError("{} has no database for {}".format(target_name, ", ".join(missing)))
    env = manifest.get("env") or {}
    if restore_env:
        if not env.get("member"):
            raise BackupError("the archive has no env file")
        check_passphrase_file(env_passphrase_file)
    sections = [s for s in SECTIONS if any(f["path"] == s for f in manifest["files"])]
    tpaths = target.get("paths") or {}
    stamp = format_stamp(now or utcnow())
    if check_mode:
        result.update(
            would_restore=dict((s, tpaths[s]) for s in sections),
            databases=[d["name"] for d in dbs] if restore_databases else [],
            service={"running": service_running(target.get("service"))},
        )
        result["changed"] = True
        return result
    # 2. stage outside the agent's reach: in a directory only root can enter
    # on the file system of each live directory (see _private_dir), written
    # through descriptors only, owned by the target agent from the start;
    # databases and the env file in root's scratch directory in the backup dir
    ids = _owner_ids(target)
    places, trees = {}, {}
    scratch = None
    try:
        result["removed_leftovers"] = remove_restore_leftovers(plan, target_name)
        for s in sections:
            places[s] = _stage_place(tpaths[s], s, RESTORE_PREFIX + target_name)
            trees[s] = _StagedTree(open_dir(s, places[s]["priv_fd"]), ids)
        scratch = tempfile.mkdtemp(prefix=".restore-", suffix=PARTIAL_SUFFIX, dir=agent_backup_dir(plan, target_name))

        def dest_for(member):
            head, _sep, rest = member.partition("/")
            if head in trees:
                return (trees[head], rest)
            if head in ("dbs", "env"):
                return os.path.join(scratch, member.replace("/", "_"))
            raise BackupError(f"unexpected member {member}")

        extract_archive(path, manifest, dest_for)
        env_plain = None
        if restore_env:
            # decrypted now, into memory only: a wrong passphrase stops the
            # restore here, before the service is stopped or anything swapped
            env_plain = decrypt_env_member(dest_for(env["member"]), env, env_passphrase_file)
        for tree in trees.values():
            tree.close()
        os.sync()
    except BaseException:
        _drop_staging(places, trees)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    # 3. stop the service
    service = target.get("service") or {}
    was_running = service_running(service)
    result["service"]["was_running"] = was_running
    try:
        if service.get("name"):
            svc = require_command("service")
            rc, out, err = run([svc, service["name"], "stop"], check=False)
            result["service"]["stop_rc"] = rc
            deadline = time.time() + 30
            while service_running(service) and time.time() < deadline:
                time.sleep(0.2)
            if service_running(service):
                raise BackupError(f"service {service['name']} did not stop (rc={rc}): {(err or out).strip()}")
        # 4. swap: renames relative to the directories held since staging
        for s in sections:
            result["previous"][s] = _swap_in(places[s], tpaths[s], s, stamp)
        result["changed"] = True
        # 5. databases
        if dbs and restore_databases:
            role = tdb.get("role")
            for d in dbs:
                dbname = tdb["databases"][d["key"]]
                dump = os.path.join(scratch, d["member"].replace("/", "_"))
                try:
                    restore_database(tdb["jail"], dbname, dump, role=role, foreign=foreign)
                except BackupError as exc:
                    raise BackupError(
                        "database {}: {} (restored before it: {}; files restored, previous "
                        "workspace kept at {}; service left stopped)".format(
                            dbname, exc, ", ".join(result["databases"]) or "none", result["previous"]
                        )
                    ) from exc
                result["databases"].append(dbname)
        # 6. env file
        if restore_env:
            # 0600 from creation, owned by the target agent, atomic
            write_private_file(tpaths["env_file"], env_plain, _owner_ids(target))
            result["env_restored"] = True
        # 7. start
        if service.get("name") and (start_service == "always" or (start_service == "auto" and was_running)):
            run([require_command("service"), service["name"], "start"])
            result["service"]["started"] = True
        else:
            result["service"]["started"] = False
    finally:
        _drop_staging(places, trees)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def _stage_place(live, section, private_name):
    """Where a section is staged: holds the live directory's parent (and the
    live directory itself when it is a mountpoint, whose contents are then
    swapped) and the root-only private directory with the empty staging
    directory `section` in it."""
    live = live.rstrip("/")
    parent = os.path.dirname(live)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
    place = {"name": os.path.basename(live), "private": private_name, "live_fd": None}
    place["parent_fd"] = open_dir(parent)
    try:
        try:
            live_fd = open_dir(place["name"], place["parent_fd"], label=live)
        except (BackupError, FileNotFoundError):
            live_fd = None  # missing, or not a directory: renamed aside by the swap
        if live_fd is not None:
            if os.fstat(live_fd).st_dev != os.fstat(place["parent_fd"]).st_dev:
                place["live_fd"] = live_fd  # its own file system (a dataset's mountpoint)
            else:
                os.close(live_fd)
        start_fd, start = (place["live_fd"], live) if place["live_fd"] is not None else (place["parent_fd"], parent)
        place["base_fd"], place["priv_fd"] = _private_dir(start_fd, start, private_name)
        _rmtree_at(place["priv_fd"], section)
        os.mkdir(section, 0o700, dir_fd=place["priv_fd"])
    except BaseException:
        _close_place(place)
        raise
    return place


def _close_place(place):
    for key in ("priv_fd", "base_fd", "live_fd", "parent_fd"):
        if place.get(key) is not None:
            os.close(place[key])
            place[key] = None


def _drop_staging(places, trees):
    """Remove what is left of the staging directories (all of it after a
    failure, the emptied private directories after a swap) and close them."""
    for tree in trees.values():
        with contextlib.suppress(OSError):
            tree.close()
    for place in places.values():
        base, priv = place.get("base_fd"), place.get("priv_fd")
        if base is not None and priv is not None:
            with contextlib.suppress(OSError):
                here = os.stat(place["private"], dir_fd=base, follow_symlinks=False)
                if os.path.samestat(here, os.fstat(priv)):
                    _rmtree_at(base, place["private"])
        _close_place(place)


def _free_name(dir_fd, name):
    """name, or name-1, name-2, ... : the first that does not exist in dir_fd."""
    candidate, n = name, 0
    while _lexists_at(dir_fd, candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _swap_in(place, live, section, stamp):
    """Put the staged `section` in place of the live directory; returns where
    the previous one went (None if there was none). The service is stopped;
    every rename is relative to a directory held since staging, so a link
    the agent put anywhere is moved aside, never followed."""
    live = live.rstrip("/")
    if place["live_fd"] is not None:
        return _swap_contents(place, live, section, stamp)
    parent_fd, name = place["parent_fd"], place["name"]
    prev_name = _free_name(parent_fd, f"{name}.prev-{stamp}")
    prev = None
    try:
        os.rename(name, prev_name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        prev = os.path.join(os.path.dirname(live), prev_name)
    except FileNotFoundError:
        pass  # there was none (or something else just moved it away)
    except OSError as exc:
        raise BackupError(f"cannot move {live} aside to {prev_name}: {exc.strerror}") from None
    try:
        os.rename(section, name, src_dir_fd=place["priv_fd"], dst_dir_fd=parent_fd)
    except OSError as exc:
        raise BackupError(
            f"cannot move the restored {section} into place at {live}: {exc.strerror} "
            f"(something recreated it during the swap); the previous one is at {prev}"
        ) from None
    os.fsync(parent_fd)
    return prev


def _swap_contents(place, live, section, stamp):
    """Swap for a directory that is a mountpoint (its own dataset): move the
    live entries into <live>/.warden-prev-<ts>/ and the staged ones up, all
    relative to descriptors held since staging."""
    live_fd = place["live_fd"]
    prev_name = _free_name(live_fd, f".warden-prev-{stamp}")
    os.mkdir(prev_name, 0o700, dir_fd=live_fd)
    prev_fd = open_dir(prev_name, live_fd)
    staged_fd = None
    try:
        staged_fd = open_dir(section, place["priv_fd"])
        for name in os.listdir(live_fd):
            if name not in (prev_name, place["private"]) and not name.startswith(".warden-prev-"):
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    os.rename(name, name, src_dir_fd=live_fd, dst_dir_fd=prev_fd)
        for name in os.listdir(staged_fd):
            try:
                os.rename(name, name, src_dir_fd=staged_fd, dst_dir_fd=live_fd)
            except OSError as exc:
                raise BackupError(
                    f"cannot move the restored {name} into {live}: {exc.strerror} (something created it during "
                    f"the swap); the previous content is in {os.path.join(live, prev_name)}"
                ) from None
        os.fchmod(live_fd, stat.S_IMODE(os.fstat(staged_fd).st_mode))
        os.fsync(live_fd)
    finally:
        os.close(prev_fd)
        if staged_fd is not None:
            os.close(staged_fd)
    return os.path.join(live, prev_name)


# --------------------------------------------------------------------------
# listing


def jail_running(name):
    jls = find_command("jls")
    if not jls:
        return None
    rc, _out, _err = run([jls, "-j", name, "jid"], check=False)
    return rc == 0


def agent_info(plan, name, now=None, verify=False):
    agent = agent_plan(plan, name)
    now = now or utcnow()
    paths = agent.get("paths") or {}
    ws = paths.get("workspace")
    stats = tree_stats(ws) if ws and os.path.isdir(ws) else None
    info = {
        "agent": name,
        "state": agent.get("state", "present"),
        "workspace": ws,
        "exists": stats is not None,
        "size": stats["size"] if stats else None,
        "files": stats["files"] if stats else None,
        "last_modified": None,
        "last_modified_age": None,
        "backup": None,
        "backups": 0,
    }
    if stats and stats["last_modified"] is not None:
        mod = datetime.datetime.fromtimestamp(int(stats["last_modified"]), UTC)
        info["last_modified"] = mod.strftime("%Y-%m-%dT%H:%M:%SZ")
        info["last_modified_age"] = max(0, int((now - mod).total_seconds()))
    archives = list_archives(agent_backup_dir(plan, name), name)
    good = [a for a in archives if a["state"] == "good"]
    info["backups"] = len(good)
    info["incomplete_backups"] = len(archives) - len(good)
    if good:
        newest = good[0]
        record = load_verified(agent_backup_dir(plan, name)).get(newest["name"])
        last_full = record.get("verified") if record else None
        error = None
        if verify:
            verified = True
            try:
                verify_archive(newest["path"], newest["manifest"], members=False)
                last_full = iso_time(now)
            except BackupError as exc:
                verified, error = False, str(exc)
        elif not record:
            # made before verification records were kept, or copied in: the next backup run checks it in full
            verified = None
        else:
            try:
                verified = record_matches(record, os.stat(newest["path"]))
            except OSError:
                verified = False
            if not verified:
                error = f"size or mtime changed since its last full verification ({last_full})"
        info["backup"] = {
            "archive": newest["path"],
            "created": newest["manifest"].get("created"),
            "age": max(0, int((now - newest["time"]).total_seconds())),
            "size": newest["size"],
            "verified": verified,
            "checked": "sha256" if verify else "size+mtime",
            "last_full_verification": last_full,
            "error": error,
        }
    service = agent.get("service") or {}
    info["service"] = {"name": service.get("name"), "running": service_running(service) if service else False}
    info["jails"] = [
        {"name": j["name"], "slot": j.get("slot"), "running": jail_running(j["name"])} for j in agent.get("jails") or []
    ]
    return info


def fleet_info(plan, agents=None, now=None, verify=False):
    now = now or utcnow()
    names = sorted(agents) if agents else sorted((plan.get("agents") or {}).keys())
    rows = [agent_info(plan, n, now=now, verify=verify) for n in names]
    orphans = []
    for path in orphan_workspaces(plan):
        stats = tree_stats(path) or {}
        orphans.append({"path": path, "size": stats.get("size"), "files": stats.get("files")})
    data = {
        "host": plan.get("host"),
        "generated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "agents": rows,
        "orphans": orphans,
    }
    data["table"] = format_table(data)
    return data


def _verified_text(b):
    """VERIFIED column: `yes` (size and mtime as at its last full sha256
    check, or --verify passed), `NO`, or `unknown` (never checked in full)."""
    if b.get("verified") is None:
        return "unknown"
    return "yes" if b["verified"] else "NO"


def format_table(data):
    head = [
        "AGENT",
        "STATE",
        "WORKSPACE",
        "SIZE",
        "MODIFIED",
        "BACKUP AGE",
        "BACKUP SIZE",
        "VERIFIED",
        "SERVICE",
        "JAILS",
    ]
    rows = [head]
    for a in data["agents"]:
        b = a.get("backup") or {}
        jails = a.get("jails") or []
        up = sum(1 for j in jails if j["running"])
        jail_text = f"{up}/{len(jails)} up" if jails else "-"
        if jails and any(j["running"] is None for j in jails):
            jail_text = "unknown"
        rows.append(
            [
                a["agent"],
                a["state"],
                a["workspace"] if a["exists"] else "{} (missing)".format(a["workspace"]),
                human_size(a["size"]) if a["size"] is not None else "-",
                (human_age(a["last_modified_age"]) + " ago") if a["last_modified_age"] is not None else "-",
                human_age(b.get("age")) if b else "never",
                human_size(b["size"]) if b else "-",
                _verified_text(b) if b else "-",
                "running" if (a.get("service") or {}).get("running") else "stopped",
                jail_text,
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(0, "host %s" % (data.get("host") or "?"))
    for a in data["agents"]:
        b = a.get("backup") or {}
        if b:
            lines.append(
                "{}: newest archive last verified in full (sha256) {}{}".format(
                    a["agent"], b.get("last_full_verification") or "never", f"; {b['error']}" if b.get("error") else ""
                )
            )
    for o in data.get("orphans") or []:
        lines.append("orphaned workspace: {} ({})".format(o["path"], human_size(o["size"] or 0)))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the `warden` host command


def load_plan(path):
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def _say(text):
    sys.stdout.write(text + "\n")


def cli(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="warden", description="warden.fleet host tool: list, back up and restore agent workspaces"
    )
    parser.add_argument(
        "--plan",
        default=os.environ.get("WARDEN_PLAN", DEFAULT_PLAN_PATH),
        help="plan file written by the warden.fleet.host_tools role (default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command")
    p_list = sub.add_parser("list", help="workspaces, sizes, last backup, service and jails")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.add_argument("--verify", action="store_true", help="check the newest archive's sha256")
    p_backup = sub.add_parser("backup", help="back up all agents (or the named ones)")
    p_backup.add_argument("agents", nargs="*")
    p_backup.add_argument("--check", action="store_true", help="report what would be archived and pruned")
    p_backup.add_argument("--json", action="store_true")
    p_restore = sub.add_parser("restore", help="restore an agent from its newest (or an older) archive")
    p_restore.add_argument("agent")
    group = p_restore.add_mutually_exclusive_group()
    group.add_argument("--at", help="newest archive at or before this time (UTC unless an offset is given)")
    group.add_argument("--archive", help="archive file to restore")
    p_restore.add_argument("--as", dest="target", help="restore under this agent of the plan")
    p_restore.add_argument("--no-databases", action="store_true")
    p_restore.add_argument("--check", action="store_true", help="verify the archive and report only")
    p_restore.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait this long for a backup or restore of the agent that holds its lock (default: fail at once)",
    )
    p_verify = sub.add_parser("verify", help="verify an agent's newest archive (or --archive) completely")
    p_verify.add_argument("agent")
    p_verify.add_argument("--archive")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        plan = load_plan(args.plan)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"warden: cannot read plan {args.plan}: {exc}\n")
        return 2
    try:
        if args.command == "list":
            data = fleet_info(plan, verify=args.verify)
            if args.json:
                data.pop("table")
                _say(json.dumps(data, indent=2, sort_keys=True))
            else:
                _say(data["table"])
            return 0
        if args.command == "backup":
            res = backup_fleet(
                plan, args.agents or None, check_mode=args.check, log=lambda m: sys.stderr.write(m + "\n")
            )
            if args.json:
                _say(json.dumps(res, indent=2, sort_keys=True, default=str))
            for name in sorted(res["agents"]):
                r = res["agents"][name]
                note = (" " + r["msg"]) if r["msg"] else ""
                _say(f"{name:<16} {r['status']:<12} {r['archive'] or ''}{note}")
            _say(res["summary"])
            # a damaged archive was moved aside (and a new one made): worth a non-zero exit and cron mail
            return 1 if res["failed_agents"] or res["damaged_agents"] else 0
        if args.command == "restore":
            res = restore_agent(
                plan,
                args.agent,
                archive=args.archive,
                at=args.at,
                target_agent=args.target,
                restore_databases=not args.no_databases,
                check_mode=args.check,
                lock_timeout=args.wait,
            )
            _say(json.dumps(res, indent=2, sort_keys=True, default=str))
            return 0
        if args.command == "verify":
            path = args.archive or select_archive(agent_backup_dir(plan, args.agent), args.agent)["path"]
            manifest = verify_archive(path, members=True)
            note_verified(agent_backup_dir(plan, args.agent), path, manifest["archive_sha256"])
            _say(f"{path}: verified")
            return 0
    except BackupError as exc:
        sys.stderr.write(f"warden: {exc}\n")
        return 1
    except (OSError, subprocess.SubprocessError) as exc:
        # one line naming the file, not a traceback
        sys.stderr.write(f"warden: {args.command} failed: {exc}\n")
        return 1
    return 2

# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""PostgreSQL dumps through jexec, and the agent's soul commit."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading

from .commands import GIT, JEXEC
from .common import CHILD_IDLE_TIMEOUT, CHUNK, DB_RESTORE_TIMEOUT, BackupError, io_error
from .runner import Watchdog, write_fd


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
    proc = JEXEC.popen("login user jail pg_dump database", user="postgres", jail=jail, database=dbname)
    errbuf = []
    err_thread = threading.Thread(target=lambda: errbuf.append(proc.stderr.read()))
    err_thread.start()
    watchdog = Watchdog(proc, CHILD_IDLE_TIMEOUT)
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
                write_fd(out, block, dest)
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


def _content_start(digest, head):
    skip = pgdump_header_length(head)
    if skip is None:
        # unknown layout: hash it all, so an unchanged database only costs a new archive
        skip = 0
    digest.update(head[skip:])


def restore_database(jail, dbname, dump_path, role=None, foreign=False):
    # a dump from another host's roles is restored without its owners and
    # grants, its objects owned by the agent's role
    with open(dump_path, "rb") as handle:
        JEXEC.run(
            "login user jail pg_restore foreign role into",
            stdin=handle,
            timeout=DB_RESTORE_TIMEOUT,
            user="postgres",
            jail=jail,
            foreign=foreign,
            role=role if foreign and role else None,
            into=dbname,
        )


def soul_commit(path):
    if not path or not os.path.exists(os.path.join(path, ".git")):
        return None
    if not GIT.available():
        return None
    rc, out, _err = GIT.run("safe_directory repo head", check=False, safe_directory=path, repo=path)
    return out.strip() if rc == 0 and out.strip() else None

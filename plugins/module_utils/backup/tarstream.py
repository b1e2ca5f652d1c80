# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Reading an archive back as a tar stream through its decompressor."""

from __future__ import annotations

import contextlib
import tarfile

from .commands import ZSTD
from .common import CHUNK, BackupError


def open_tar_stream(path, compression):
    """Return (tarfile, closer) reading the archive as a stream."""
    if compression == "zstd":
        proc = ZSTD.popen("decompress quiet stdout path", path=path, bufsize=CHUNK)
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


def _safe_member(name):
    if not name or name.startswith("/") or "\\" in name:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def _finish_stream(closer):
    rest = closer()
    if rest and rest.strip(b"\0"):
        raise BackupError("trailing data after the end of the archive")

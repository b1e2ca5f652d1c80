# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Writing an archive: ustar headers, the compressor pipeline, hashing as it goes."""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import os
import pwd
import stat
import subprocess
import tarfile
import threading
import time
import zlib

from .commands import ZSTD
from .common import CHILD_IDLE_TIMEOUT, CHUNK, EXTENSIONS, BackupError, io_error
from .runner import Watchdog
from .scan import _READ_FLAGS, open_dir


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
            threads = size_hint is None or size_hint >= ZSTD_THREADS_FROM
            self.proc = ZSTD.popen(
                "level threads quiet stdout",
                level=level or 3,
                threads=threads,
                stdin=subprocess.PIPE,
                stderr=None,
                bufsize=CHUNK,
            )
            self.watchdog = Watchdog(self.proc, CHILD_IDLE_TIMEOUT)
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
        return "zstd" if ZSTD.available() else "xz"
    if preference == "zstd" and not ZSTD.available():
        raise BackupError("compression zstd requested but the zstd command is not installed")
    if preference not in EXTENSIONS:
        raise BackupError(f"unknown compression {preference!r} (auto, zstd, xz, gzip)")
    return preference

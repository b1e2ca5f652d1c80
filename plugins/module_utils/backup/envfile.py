# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""The agent's env file: passphrase file checks, openssl encryption, private reads and writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import stat

from .commands import OPENSSL
from .common import CHUNK, ENV_MAX_SIZE, PARTIAL_SUFFIX, BackupError, io_error
from .runner import write_fd


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
        rc, out, err = OPENSSL.run(
            "encrypt decrypt pass_fd", check=False, data=data, pass_fds=(fd,), decrypt=decrypt, pass_fd=fd, text=False
        )
        key = hashlib.sha256(os.pread(fd, 65536, 0)).digest()
    finally:
        os.close(fd)
    if rc != 0:
        lines = err.strip().splitlines()
        if decrypt:
            raise BackupError(
                f"cannot decrypt the env file with {passphrase_file}: wrong passphrase or damaged data "
                f"(openssl rc={rc}: {lines[0] if lines else ''})"
            )
        raise BackupError(f"openssl could not encrypt the env file (rc={rc}): {' '.join(lines)}")
    plain = out if decrypt else data
    return out, hmac.new(key, plain, hashlib.sha256).hexdigest()


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
                write_fd(fd, data, dest)
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

# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Verifying an archive against its manifest and extracting it without following links."""

from __future__ import annotations

import hashlib
import os
import tarfile

from .common import CHUNK, BackupError, sha256_file
from .manifest import load_manifest
from .tarstream import _finish_stream, _kill_stream, _safe_member, open_tar_stream


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

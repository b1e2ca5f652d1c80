# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Walking a workspace without following the agent's links: exclusion rules, entries, sizes."""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat

from .common import BUILTIN_EXCLUDES, BackupError


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

# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""ZFS datasets and the snapshots a backup reads from."""

from __future__ import annotations

import os

from .commands import ZFS
from .common import BackupError
from .scan import open_dir


def zfs_dataset(path):
    """Name of the ZFS dataset mounted exactly at path, or None."""
    zfs = ZFS.available()
    if not zfs:
        return None
    rc, out, _err = ZFS.run("list_filesystems", check=False)
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
        ZFS.run("snapshot", snapshot=f"{dataset}@{self.name}")
        self.taken.append(dataset)
        return os.path.join(os.path.realpath(path), ".zfs", "snapshot", self.name), f"{dataset}@{self.name}"

    def close(self):
        errors = []
        for dataset in self.taken:
            rc, out, err = ZFS.run("destroy", check=False, destroy=f"{dataset}@{self.name}")
            if rc != 0:
                errors.append((err or out).strip())
        self.taken = []
        if errors:
            raise BackupError("could not destroy snapshot(s): {}".format("; ".join(errors)))

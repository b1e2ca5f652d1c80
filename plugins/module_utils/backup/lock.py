# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""One lock per agent for backup, restore and retention."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import time

from .common import LOCK_NAME, UTC, BackupError


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

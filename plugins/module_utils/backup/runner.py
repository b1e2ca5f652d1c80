# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""External commands: where they are found and how they run, bounded in time.

Every command the backup runs goes through a CommandRunner: the command's
arguments are named once, each with its format (how a value becomes argv
words), and a call names the arguments it uses in order with their values,
as community.general's cmd_runner does. The commands themselves and their
formats are listed in commands.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time

from .common import COMMAND_TIMEOUT, EXTRA_PATH, BackupError, io_error


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


def run(argv, check=True, stdin=None, timeout=COMMAND_TIMEOUT, data=None, pass_fds=(), text=True):
    """Run a command to completion, at most `timeout` seconds (it is killed then).

    stdin is a file to read from, or data the bytes to feed it; pass_fds are
    descriptors the command inherits (a passphrase file as `fd:N`).
    text=False returns the output as bytes (openssl's ciphertext)."""
    kwargs = {"input": data} if data is not None else {"stdin": stdin if stdin is not None else subprocess.DEVNULL}
    try:
        proc = subprocess.run(argv, capture_output=True, check=False, timeout=timeout, pass_fds=pass_fds, **kwargs)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{' '.join(argv)} did not finish within {timeout} s and was killed") from None
    out = proc.stdout.decode("utf-8", "replace") if text else proc.stdout
    err = proc.stderr.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise BackupError(f"{' '.join(argv)} failed (rc={proc.returncode}): {(err or str(out)).strip()}")
    return proc.returncode, out, err


class Watchdog:
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


def write_fd(fd, data, path):
    """Write all of data to fd; an error names the file (`No space left on device on PATH`)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise io_error(exc, path) from exc


# -- argument formats: each turns one named value into argv words


def as_fixed(*words):
    """Always these words; the value is ignored."""
    return lambda value: list(words)


def as_flag(*words):
    """These words when the value is true, nothing otherwise."""
    return lambda value: list(words) if value else []


def as_value(template="{}"):
    """The value itself (formatted by template)."""
    return lambda value: [template.format(value)]


def as_opt_val(option, template="{}"):
    """The option and then the value as the next word; nothing when the value is None."""
    return lambda value: [] if value is None else [option, template.format(value)]


def as_opt_eq_val(option):
    """option=value as one word; nothing when the value is None."""
    return lambda value: [] if value is None else [f"{option}={value}"]


def as_map(mapping):
    """The words mapping gives for the value."""
    return lambda value: list(mapping[value])


class CommandRunner:
    """One external command and the formats of its named arguments.

    runner.argv("level threads quiet", level=3, threads=True) gives the argv;
    run() runs it to completion (bounded, see run()), popen() starts it for
    a stream the caller bounds with a Watchdog."""

    def __init__(self, command, formats):
        self.command = command
        self.formats = dict(formats)

    def available(self):
        """The command's path, or None when the host does not have it."""
        return find_command(self.command)

    def argv(self, order, **values):
        names = order.split()
        unknown = [n for n in list(names) + list(values) if n not in self.formats]
        if unknown:
            raise ValueError(f"{self.command}: no argument format for {', '.join(sorted(set(unknown)))}")
        unused = set(values) - set(names)
        if unused:
            raise ValueError(f"{self.command}: values for arguments not in the order: {', '.join(sorted(unused))}")
        argv = [require_command(self.command)]
        for name in names:
            argv += self.formats[name](values.get(name))
        return argv

    def run(self, order, check=True, stdin=None, timeout=COMMAND_TIMEOUT, data=None, pass_fds=(), text=True, **values):
        """Run to completion; (rc, out, err). check=True makes a non-zero exit a BackupError."""
        argv = self.argv(order, **values)
        return run(argv, check=check, stdin=stdin, timeout=timeout, data=data, pass_fds=pass_fds, text=text)

    def popen(
        self, order, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=-1, **values
    ):
        """Start the command for a stream: the caller reads or writes its pipes and bounds it."""
        return subprocess.Popen(self.argv(order, **values), stdin=stdin, stdout=stdout, stderr=stderr, bufsize=bufsize)

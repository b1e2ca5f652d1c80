# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""The external commands the backup runs and the format of each of their arguments.

Named once here; the rest of the package says which arguments a call uses
(for example ZFS.run("snapshot", snapshot="tank/ws@warden-...")). Paths and
flags are FreeBSD's: jexec(8), zfs(8), service(8), jls(8), zstd(1),
openssl-enc(1), pg_dump/pg_restore from the postgresql package.
"""

from __future__ import annotations

from .common import PG_BIN
from .runner import CommandRunner, as_fixed, as_flag, as_map, as_opt_eq_val, as_opt_val, as_value

ZSTD = CommandRunner(
    "zstd",
    {
        "level": as_value("-{}"),
        # -T0 uses every core; a stream smaller than a few of zstd's jobs gains nothing from the threads
        "threads": as_map({True: ["-T0"], False: ["--single-thread"]}),
        "decompress": as_fixed("-d"),
        "quiet": as_fixed("-q"),
        "stdout": as_fixed("-c"),
        "path": as_value(),
    },
)

OPENSSL = CommandRunner(
    "openssl",
    {
        "encrypt": as_fixed("enc", "-aes-256-cbc", "-pbkdf2", "-salt"),
        "decrypt": as_flag("-d"),
        # the passphrase file as the descriptor that was checked, never its path
        "pass_fd": as_opt_val("-pass", "fd:{}"),
    },
)

JEXEC = CommandRunner(
    "jexec",
    {
        "login": as_fixed("-l"),
        "user": as_opt_val("-U"),
        "jail": as_value(),
        "pg_dump": as_fixed(PG_BIN + "/pg_dump", "-Fc"),
        "pg_restore": as_fixed(
            PG_BIN + "/pg_restore", "--clean", "--if-exists", "--single-transaction", "--exit-on-error"
        ),
        "foreign": as_flag("--no-owner", "--no-acl"),
        "role": as_opt_eq_val("--role"),
        "database": as_value(),
        "into": as_opt_val("-d"),
    },
)

ZFS = CommandRunner(
    "zfs",
    {
        "list_filesystems": as_fixed("list", "-H", "-o", "name,mountpoint", "-t", "filesystem"),
        "snapshot": as_opt_val("snapshot"),
        "destroy": as_opt_val("destroy"),
    },
)

SERVICE = CommandRunner("service", {"name": as_value(), "action": as_value()})

JLS = CommandRunner("jls", {"jail": as_opt_val("-j"), "jid": as_fixed("jid")})

GIT = CommandRunner(
    "git",
    {
        # root reads an agent-owned repository: git refuses it unless named safe
        "safe_directory": as_opt_val("-c", "safe.directory={}"),
        "repo": as_opt_val("-C"),
        "head": as_fixed("rev-parse", "HEAD"),
    },
)

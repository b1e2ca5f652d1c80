# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Workspace backup, verification, retention, restore and fleet listing.

Python standard library only: this package is the core of the
warden.fleet.workspace_backup / workspace_restore / workspace_info modules
and, installed as /usr/local/lib/warden/warden_backup/, of the `warden`
command on the FreeBSD host (see cli.cli()).

Everything reads names and paths from the plan built by the fleet model
(plan["agents"][NAME]["paths"], ["service"], ["db"], ["jails"], plan["backup"]).

Archive layout (one per agent per run):
    <backup_dir>/<agent>/<agent>_<YYYYmmddTHHMMSSZ>.tar.zst      (or .tar.xz / .tar.gz)
    <backup_dir>/<agent>/<agent>_<YYYYmmddTHHMMSSZ>.tar.zst.manifest.json
Members: workspace/..., state/..., dbs/<key>.dump, env/<agent>.env.enc
An archive is good only when its manifest exists, parses, names it and
records its size; the manifest is written last.

One module per concern, each importing only from the ones before it:
common, runner, commands, plan, scan, dumps, envfile, zfs, archive, lock,
tarstream, manifest, extract, retention, restore, job, listing, cli (see
"Code layout" in docs/backup.md). This file re-exports their names for the
modules, the `warden` command, the tests and the benchmark.
"""

from __future__ import annotations

from .archive import (  # noqa: F401
    _USTAR_TYPES,
    _ZERO_CHUNK,
    _ZEROS,
    BATCH,
    BLOCKSIZE,
    ZSTD_THREADS_FROM,
    ArchiveWriter,
    _BatchSink,
    _byte_sum,
    _CountingWriter,
    _HashingReader,
    _HashingWriter,
    _read_exactly,
    _read_or_hole,
    _SourceDirs,
    _write_all,
    pick_compression,
    ustar_header,
)
from .cli import (  # noqa: F401
    _say,
    cli,
    load_plan,
)
from .commands import GIT, JEXEC, JLS, OPENSSL, SERVICE, ZFS, ZSTD  # noqa: F401
from .common import (  # noqa: F401
    _NAME_RE,
    BUILTIN_EXCLUDES,
    CHILD_IDLE_TIMEOUT,
    CHUNK,
    COMMAND_TIMEOUT,
    DAMAGED_DIR,
    DB_RESTORE_TIMEOUT,
    DEFAULT_PLAN_PATH,
    ENV_MAX_SIZE,
    EXT_TO_COMPRESSION,
    EXTENSIONS,
    EXTRA_PATH,
    FORMAT,
    INDEX_NAME,
    LOCK_NAME,
    MANIFEST_SUFFIX,
    PARTIAL_SUFFIX,
    PG_BIN,
    RESTORE_PREFIX,
    SECTIONS,
    STAMP_FORMAT,
    SUMMARY_NAME,
    UTC,
    VERIFIED_NAME,
    VERIFY_EVERY_DAYS,
    BackupError,
    __version__,
    archive_name,
    atomic_write,
    format_stamp,
    fsync_dir,
    human_age,
    human_size,
    io_error,
    makedirs_private,
    parse_archive_name,
    parse_stamp,
    parse_time,
    sha256_file,
    utcnow,
)
from .dumps import (  # noqa: F401
    _content_start,
    _read_int,
    dump_database,
    pgdump_header_length,
    restore_database,
    soul_commit,
)
from .envfile import (  # noqa: F401
    check_passphrase_file,
    decrypt_env_member,
    open_passphrase_file,
    openssl_cipher,
    read_private_file,
    write_private_file,
)
from .extract import (  # noqa: F401
    _ZERO_BLOCK,
    SPARSE_BLOCK,
    _target_create,
    _target_depth,
    _target_finish_dir,
    _target_hardlink,
    _target_mkdir,
    _target_symlink,
    _write_out,
    extract_archive,
    manifest_index,
    verify_archive,
)
from .job import (  # noqa: F401
    AgentBackup,
    _extra_lines,
    _file_line,
    _index_line,
    _json_str,
    _json_with_files,
    _load_index,
    _manifest_line,
    _report_unchanged,
    backup_fleet,
    backup_workers,
    content_digest,
    stale_leftovers,
    stat_digest,
)
from .listing import (  # noqa: F401
    _verified_text,
    agent_info,
    fleet_info,
    format_table,
    jail_running,
)
from .lock import (  # noqa: F401
    AgentLock,
)
from .manifest import (  # noqa: F401
    _ManifestCache,
    _valid_manifest,
    good_archives,
    iso_time,
    list_archives,
    load_manifest,
    load_verified,
    manifest_path,
    move_aside,
    note_verified,
    read_manifest_raw,
    rebuild_manifest,
    record_matches,
    save_verified,
    verification_due,
)
from .plan import (  # noqa: F401
    agent_backup_dir,
    agent_plan,
    orphan_workspaces,
    selected_agents,
)
from .restore import (  # noqa: F401
    _close_place,
    _drop_staging,
    _free_name,
    _lexists_at,
    _owner_ids,
    _private_dir,
    _restore_locked,
    _rmtree_at,
    _stage_place,
    _StagedTree,
    _swap_contents,
    _swap_in,
    pid_alive,
    remove_restore_leftovers,
    restore_agent,
    restore_leftovers,
    select_archive,
    service_running,
)
from .retention import (  # noqa: F401
    retention,
)
from .runner import (  # noqa: F401
    Watchdog,
    find_command,
    require_command,
    run,
    write_fd,
)
from .scan import (  # noqa: F401
    _DIR_FLAGS,
    _READ_FLAGS,
    Entry,
    _entry,
    _scan_dir,
    compile_excludes,
    is_excluded,
    open_dir,
    scan_tree,
    tree_stats,
)
from .tarstream import (  # noqa: F401
    _end_child,
    _finish_stream,
    _kill_stream,
    _safe_member,
    open_tar_stream,
)
from .zfs import (  # noqa: F401
    Snapshots,
    zfs_dataset,
)

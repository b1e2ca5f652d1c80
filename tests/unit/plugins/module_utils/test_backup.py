"""Pure functions of the backup core: names, times, excludes, retention, dump headers."""

from __future__ import annotations

import datetime
import pathlib
import struct
import tarfile

import pytest
import yaml

from ansible_collections.warden.fleet.plugins.module_utils import backup
from ansible_collections.warden.fleet.plugins.module_utils.backup import (
    BackupError,
    compile_excludes,
    is_excluded,
    parse_archive_name,
    parse_time,
    pgdump_header_length,
    retention,
)

UTC = datetime.UTC
T0 = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
ROOT = pathlib.Path(__file__).resolve().parents[4]


def test_version_matches_galaxy():
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert backup.__version__ == galaxy["version"]


@pytest.mark.parametrize(
    ("name", "agent", "expected"),
    [
        ("atlas_20250102T030405Z.tar.zst", "atlas", ("atlas", T0, "zstd")),
        ("atlas_20250102T030405Z.tar.xz", None, ("atlas", T0, "xz")),
        ("atlas_20250102T030405Z.tar.gz", "atlas", ("atlas", T0, "gzip")),
        ("atlas_20250102T030405Z.tar.zst", "hermes", None),
        (".atlas_20250102T030405Z.tar.zst.partial", "atlas", None),
        ("atlas_20250102T030405Z.tar.zst.manifest.json", "atlas", None),
        ("atlas_20251302T030405Z.tar.zst", "atlas", None),  # month 13
        ("atlas_2025-01-02.tar.zst", "atlas", None),
    ],
)
def test_parse_archive_name(name, agent, expected):
    assert parse_archive_name(name, agent) == expected


def test_archive_name_round_trip():
    when = datetime.datetime(2025, 6, 7, 8, 9, 10, tzinfo=UTC)
    name = backup.archive_name("atlas", backup.format_stamp(when), "zstd")
    assert name == "atlas_20250607T080910Z.tar.zst"
    assert parse_archive_name(name, "atlas")[1] == when


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20250102T030405Z", datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02T03:04:05Z", datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02 03:04", datetime.datetime(2025, 1, 2, 3, 4, tzinfo=UTC)),
        ("2025-01-02T05:04:05+02:00", datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-02", datetime.datetime(2025, 1, 2, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


def test_parse_time_rejects_garbage():
    with pytest.raises(BackupError, match="cannot parse time"):
        parse_time("yesterday")


DEFAULT_EXCLUDES = [".cache/", "*.lock", "*.pid", "node_modules/.cache/"]


@pytest.mark.parametrize(
    ("path", "is_dir", "excluded"),
    [
        (".cache", True, True),
        ("a/b/.cache", True, True),
        (".cache", False, False),  # a file named .cache is not the cache directory
        ("x.lock", False, True),
        ("deep/er/x.lock", False, True),
        ("x.lock.md", False, False),
        ("agent.pid", False, True),
        ("node_modules/.cache", True, True),
        ("web/node_modules/.cache", True, True),
        ("node_modules", True, False),
        ("node_modules/pkg/index.js", False, False),
        ("notes/today.md", False, False),
        (".warden-prev-20250101T000000Z", True, True),
        (".warden-restore-20250101T000000Z", True, True),
    ],
)
def test_default_excludes(path, is_dir, excluded):
    assert is_excluded(path, is_dir, compile_excludes(DEFAULT_EXCLUDES)) is excluded


def test_anchored_exclude_only_matches_at_the_root():
    rules = compile_excludes(["/tmp/"])
    assert is_excluded("tmp", True, rules)
    assert not is_excluded("notes/tmp", True, rules)


def _t(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def _series(*texts):
    return [(f"a{i}", _t(t)) for i, t in enumerate(texts)]


# Table: archives (name = position), rule counts, expected kept names.
RETENTION_CASES = [
    {
        "id": "keep-last-only",
        "archives": ["2025-01-01 01:00", "2025-01-01 02:00", "2025-01-01 03:00", "2025-01-01 04:00"],
        "keep": {"keep_last": 2},
        "kept": ["a3", "a2"],
    },
    {
        "id": "daily-keeps-newest-of-each-day",
        "archives": [
            "2025-01-01 01:00",
            "2025-01-01 23:00",
            "2025-01-02 05:00",
            "2025-01-02 06:00",
            "2025-01-03 00:10",
        ],
        "keep": {"keep_daily": 3},
        "kept": ["a4", "a3", "a1"],
    },
    {
        "id": "daily-counts-days-that-have-archives",
        "archives": ["2025-01-01 01:00", "2025-01-05 01:00", "2025-01-09 01:00"],
        "keep": {"keep_daily": 2},
        "kept": ["a2", "a1"],
    },
    {
        "id": "weekly-uses-iso-weeks",
        # 2024-12-30 is Monday of ISO week 2025-01; 2024-12-29 is Sunday of 2024-52
        "archives": ["2024-12-28 10:00", "2024-12-29 10:00", "2024-12-30 10:00", "2025-01-05 10:00"],
        "keep": {"keep_weekly": 2},
        "kept": ["a3", "a1"],
    },
    {
        "id": "monthly",
        "archives": [
            "2025-01-10 00:00",
            "2025-01-31 00:00",
            "2025-02-01 00:00",
            "2025-03-15 00:00",
            "2025-03-16 00:00",
        ],
        "keep": {"keep_monthly": 2},
        "kept": ["a4", "a2"],
    },
    {
        "id": "rules-combine",
        "archives": [
            "2025-01-01 01:00",
            "2025-01-15 01:00",
            "2025-02-01 01:00",
            "2025-02-02 01:00",
            "2025-02-02 02:00",
        ],
        "keep": {"keep_last": 1, "keep_daily": 2, "keep_monthly": 2},
        "kept": ["a4", "a2", "a1"],
    },
    {
        "id": "nothing-kept-without-rules",
        "archives": ["2025-01-01 01:00", "2025-01-02 01:00"],
        "keep": {},
        "kept": [],
    },
    {
        "id": "empty",
        "archives": [],
        "keep": {"keep_last": 3},
        "kept": [],
    },
]


@pytest.mark.parametrize("case", RETENTION_CASES, ids=[c["id"] for c in RETENTION_CASES])
def test_retention_table(case):
    archives = _series(*case["archives"])
    keep, prune = retention(archives, **case["keep"])
    assert sorted(keep) == sorted(case["kept"])
    order = dict(archives)
    assert sorted(prune) == sorted(set(order) - set(case["kept"]))
    # prune is newest first and never overlaps keep
    assert not set(prune) & set(keep)
    assert [order[n] for n in prune] == sorted((order[n] for n in prune), reverse=True)


def test_retention_never_prunes_the_protected_archive():
    archives = _series("2025-01-01 01:00", "2025-01-02 01:00", "2025-01-03 01:00")
    keep, prune = retention(archives, keep_last=1, protect="a1")
    assert "a1" in keep and keep["a1"] == ["newest-verified"]
    assert prune == ["a0"]


def test_retention_reasons_name_every_rule():
    archives = _series("2025-01-01 01:00")
    keep = retention(archives, keep_last=1, keep_daily=1, keep_weekly=1, keep_monthly=1)[0]
    assert keep == {"a0": ["last", "daily", "weekly", "monthly"]}


def _pg_header(vmin, dbname=b"atlas_ops", int_size=4, stamp=(1, 2, 3, 4, 5, 125, 0)):
    def pg_int(value):
        return bytes([1 if value < 0 else 0]) + struct.pack("<I", abs(value))[:int_size]

    def pg_str(value):
        return pg_int(len(value)) + value

    head = b"PGDMP" + bytes([1, vmin, 0, int_size, 8, 1])
    head += bytes([1]) if vmin >= 15 else pg_int(-1)
    for field in stamp:
        head += pg_int(field)
    head += pg_str(dbname) + pg_str(b"15.8") + pg_str(b"15.8")
    return head


@pytest.mark.parametrize("vmin", [14, 15, 16])
def test_pgdump_header_length_skips_the_timestamp(vmin):
    a = _pg_header(vmin) + b"TOC..."
    b = _pg_header(vmin, stamp=(9, 9, 9, 9, 9, 126, 1)) + b"TOC..."
    assert pgdump_header_length(a) == len(_pg_header(vmin))
    assert a[pgdump_header_length(a) :] == b[pgdump_header_length(b) :] == b"TOC..."


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"PGDMP",
        b"NOTADUMP" * 10,
        b"PGDMP" + bytes([1, 99, 0, 4, 8, 1]) + b"\0" * 100,
        b"PGDMP" + bytes([1, 14, 0, 4, 8, 3]) + b"\0" * 100,
    ],
    ids=["empty", "truncated", "not-a-dump", "unknown-version", "not-custom-format"],
)
def test_pgdump_header_length_refuses_what_it_does_not_know(data):
    assert pgdump_header_length(data) is None


def test_human_formats():
    assert backup.human_size(512) == "512B"
    assert backup.human_size(2048) == "2.0K"
    assert backup.human_age(59) == "59s"
    assert backup.human_age(3 * 3600) == "3h"
    assert backup.human_age(3 * 86400) == "3d"
    assert backup.human_age(None) == "-"


def test_safe_member_names():
    assert backup._safe_member("workspace/a/b.md")
    for bad in ("/etc/passwd", "workspace/../../etc", "workspace//x", "./x", ""):
        assert not backup._safe_member(bad)


@pytest.mark.parametrize(
    ("kind", "tartype", "size", "link"),
    [("f", tarfile.REGTYPE, 5, ""), ("d", tarfile.DIRTYPE, 0, ""), ("l", tarfile.SYMTYPE, 0, "notes/x.md")],
)
def test_ustar_header_is_what_tarfile_writes(kind, tartype, size, link):
    ours = backup.ustar_header("workspace/a", kind, size, 0o755, 1700000000, 1001, 1002, "atlas", "atlas", link)
    info = tarfile.TarInfo("workspace/a")
    info.type, info.size, info.mode, info.mtime = tartype, size, 0o755, 1700000000
    info.uid, info.gid, info.uname, info.gname, info.linkname = 1001, 1002, "atlas", "atlas", link
    assert ours == info.tobuf(tarfile.PAX_FORMAT)


def test_ustar_header_leaves_long_and_non_ascii_names_to_pax():
    assert backup.ustar_header("w/" + "x" * 120, "f", 1, 0o644, 0, 0, 0, "root", "root") is None
    assert backup.ustar_header("w/naïve.md", "f", 1, 0o644, 0, 0, 0, "root", "root") is None


class _Stat:
    def __init__(self, size, mtime_ns):
        self.st_size, self.st_mtime_ns = size, mtime_ns


RECORD = {"size": 100, "mtime_ns": 5, "verified": "2025-01-02T03:04:05Z", "sha256": "0" * 64}


@pytest.mark.parametrize(
    ("record", "st", "days_later", "every", "due"),
    [
        (RECORD, _Stat(100, 5), 1, 7, False),  # as recorded, checked a day ago
        (RECORD, _Stat(100, 5), 7, 7, True),  # a week old: the scheduled full check
        (RECORD, _Stat(100, 5), 0, 0, True),  # verify_every 0: every run
        (RECORD, _Stat(101, 5), 0, 7, True),  # size changed
        (RECORD, _Stat(100, 6), 0, 7, True),  # mtime changed
        (None, _Stat(100, 5), 0, 7, True),  # never checked in full
        (dict(RECORD, verified="garbage"), _Stat(100, 5), 0, 7, True),
    ],
)
def test_verification_due(record, st, days_later, every, due):
    now = T0 + datetime.timedelta(days=days_later)
    assert backup.verification_due(record, st, now, every) is due


def test_verified_column():
    assert backup._verified_text({"verified": True, "last_full_verification": "2025-01-02T03:04:05Z"}) == "yes"
    assert backup._verified_text({"verified": False}) == "NO"
    assert backup._verified_text({"verified": None}) == "unknown"

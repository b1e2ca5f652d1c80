# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""One agent's backup run and the fleet's backup (a worker pool over agents)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from .archive import ArchiveWriter, pick_compression
from .common import (
    FORMAT,
    INDEX_NAME,
    PARTIAL_SUFFIX,
    SECTIONS,
    SUMMARY_NAME,
    VERIFY_EVERY_DAYS,
    BackupError,
    __version__,
    archive_name,
    atomic_write,
    format_stamp,
    fsync_dir,
    makedirs_private,
    parse_archive_name,
    sha256_file,
    utcnow,
)
from .dumps import dump_database, soul_commit
from .envfile import check_passphrase_file, openssl_cipher, read_private_file, write_private_file
from .extract import verify_archive
from .lock import AgentLock
from .manifest import (
    _ManifestCache,
    good_archives,
    iso_time,
    list_archives,
    load_manifest,
    load_verified,
    manifest_path,
    move_aside,
    read_manifest_raw,
    rebuild_manifest,
    save_verified,
    verification_due,
)
from .plan import agent_backup_dir, agent_plan, orphan_workspaces, selected_agents
from .restore import remove_restore_leftovers
from .retention import retention
from .scan import compile_excludes, scan_tree
from .zfs import Snapshots


def stale_leftovers(agent_dir, agent):
    """Partial files (archives, scratch directories and records being
    written). Only call while holding the agent lock: then no run is writing
    them. Archives are never leftovers: one without a valid manifest is
    repaired or moved aside by AgentBackup._repair_archives()."""
    found = []
    try:
        names = os.listdir(agent_dir)
    except OSError:
        return found
    for name in sorted(names):
        if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
            found.append(os.path.join(agent_dir, name))
    return found


def _load_index(agent_dir, name=INDEX_NAME):
    try:
        with open(os.path.join(agent_dir, name), "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return data
    except (OSError, ValueError):
        pass
    return None


def _file_line(e):
    return f"{e.kind}\0{e.path}\0{e.size}\0{e.mode:o}\0{e.sha256 or ''}\0{e.target or ''}\n"


def _extra_lines(dbs, soul, env_key):
    lines = ["db\0{}\0{}\0{}\n".format(db["key"], db["name"], db["content_sha256"]) for db in dbs]
    lines.append("soul\0%s\n" % (soul or ""))
    lines.append(f"env\0{json.dumps(env_key)}\n")
    return "".join(lines).encode("utf-8")


def content_digest(entries, dbs, soul, env_key):
    digest = hashlib.sha256()
    digest.update("".join(_file_line(e) for e in entries).encode("utf-8", "surrogateescape"))
    digest.update(_extra_lines(dbs, soul, env_key))
    return digest.hexdigest()


def stat_digest(entries, dbs, soul, env_key):
    """Digest of everything the unchanged check compares: every entry's path
    and stat key (kind, size, mode, mtime, ctime, inode, link target), the
    database content checksums, the soul commit and the env file's stat."""
    digest = hashlib.sha256()
    digest.update(
        "".join(
            f"{e.kind}\0{e.path}\0{e.size}\0{e.mode}\0{e.mtime_ns}\0{e.ctime_ns}\0{e.ino}\0{e.target or ''}\n"
            for e in entries
        ).encode("utf-8", "surrogateescape")
    )
    digest.update(_extra_lines(dbs, soul, env_key))
    return digest.hexdigest()


_json_str = json.encoder.encode_basestring_ascii


def _manifest_line(e):
    """One entry of the manifest's file list, exactly as json.dumps(..., sort_keys=True) writes it."""
    if e.kind == "f":
        return (
            f'{{"mode": {e.mode}, "mtime": {e.mtime_ns // 1000000000}, "path": {_json_str(e.path)}, '
            f'"sha256": "{e.sha256}", "size": {e.size}, "type": "f"}}'
        )
    if e.kind in ("l", "h"):  # a symlink, or a hard link to an earlier file of the archive
        return (
            f'{{"mode": {e.mode}, "mtime": {e.mtime_ns // 1000000000}, "path": {_json_str(e.path)}, '
            f'"target": {_json_str(e.target)}, "type": "{e.kind}"}}'
        )
    return f'{{"mode": {e.mode}, "mtime": {e.mtime_ns // 1000000000}, "path": {_json_str(e.path)}, "type": "{e.kind}"}}'


def _index_line(e):
    """One member of the index's file map: path -> [stat key, sha256], as compact JSON."""
    target = "null" if e.target is None else _json_str(e.target)
    sha = "null" if e.sha256 is None else f'"{e.sha256}"'
    return f'{_json_str(e.path)}:[["{e.kind}",{e.size},{e.mode},{e.mtime_ns},{e.ctime_ns},{e.ino},{target}],{sha}]'


def _json_with_files(data, files, compact=False):
    """json.dumps of `data` whose "files" value is the already encoded text
    `files` (the file list is written as strings, once per entry, rather than
    built as a dict per entry and encoded again)."""
    data = dict(data, files=None)
    if compact:
        text, placeholder = json.dumps(data, separators=(",", ":")), '"files":null'
    else:
        text, placeholder = json.dumps(data, sort_keys=True), '"files": null'
    head, found, tail = text.partition(placeholder)
    if not found:
        raise BackupError("cannot encode the file list")
    return "".join((head, placeholder[:-4], files, tail))


def _report_unchanged(res, archive, entries):
    """An agent whose content matches its last good archive: no new archive, that one is reported."""
    res.update(
        status="unchanged",
        archive=archive,
        manifest=manifest_path(archive),
        files=sum(1 for e in entries if e.kind == "f"),
    )


class AgentBackup:
    """One agent's backup run. Use run()."""

    def __init__(self, plan, name, check_mode=False, env_passphrase_file=None, now=None, log=None):
        self.plan, self.name, self.check_mode = plan, name, check_mode
        self.agent = agent_plan(plan, name)
        self.settings = plan.get("backup") or {}
        self.agent_dir = agent_backup_dir(plan, name)
        self.env_passphrase_file = env_passphrase_file or self.settings.get("env_passphrase_file")
        self.now = now
        self.log = log or (lambda msg: None)
        # verification record (.verified.json), loaded on first use; archives checked in this run
        self._verified, self._verified_dirty, self._checked = None, False, {}
        self.result = {
            "agent": name,
            "status": None,
            "archive": None,
            "manifest": None,
            "size": None,
            "files": None,
            "pruned": [],
            "removed_leftovers": [],
            "damaged": [],
            "rebuilt_manifests": [],
            "unknown_format": [],
            "consistency": None,
            "databases": [],
            "msg": "",
        }

    # -- sources
    def sources(self, roots=None):
        paths = self.agent.get("paths") or {}
        rules = compile_excludes(self.settings.get("exclude") or [])
        entries, skipped = [], []
        for section in SECTIONS:
            root = (roots or {}).get(section) or paths.get(section)
            if root:
                entries.extend(scan_tree(root, section, rules, skipped, links={}))
        return entries, skipped

    def env_key(self):
        env_file = (self.agent.get("paths") or {}).get("env_file")
        if not self.settings.get("include_env") or not env_file:
            return None
        try:
            st = os.stat(env_file)
        except OSError:
            return None
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def databases(self, workdir):
        db = self.agent.get("db")
        if not db:
            return []
        out = []
        for key in sorted(db.get("databases") or {}):
            dbname = db["databases"][key]
            dest = os.path.join(workdir, f"db-{key}") if workdir else None
            info = dump_database(db["jail"], dbname, dest)
            info.update({"key": key, "name": dbname, "jail": db["jail"], "member": f"dbs/{key}.dump", "tmp": dest})
            out.append(info)
        return out

    def unchanged_by_stat(self, entries, index, dbs, soul, env_key):
        """Fill sha256 of entries whose stat key matches the index; True when
        nothing at all changed since the last good archive."""
        if not index:
            return False
        known = index.get("files") or {}
        same = len(known) == len(entries)
        for e in entries:
            prev = known.get(e.path)
            if prev and prev[0] == e.key():
                e.sha256 = prev[1]
            else:
                same = False
        if not same:
            return False
        return content_digest(entries, dbs, soul, env_key) == index.get("digest")

    def unchanged_by_summary(self, summary, tree):
        """The last good archive when the summary of the run that made (or
        confirmed) it has this stat digest: nothing changed, and the per-file
        index need not be read."""
        if not summary or not tree or summary.get("tree") != tree:
            return None
        return self.last_good(summary)

    def last_good(self, index):
        if not index or not index.get("archive"):
            return None
        path = os.path.join(self.agent_dir, index["archive"])
        manifest = load_manifest(path)
        if manifest is None or manifest.get("content_digest") != index.get("digest"):
            return None
        try:
            if os.path.getsize(path) != manifest.get("archive_size"):
                return None
        except OSError:
            return None
        if self.result["damaged"] or not self._intact(path):
            # a damaged archive was found: this run makes a new full archive
            return None
        return path

    # -- integrity of the archives on disk
    def _records(self):
        if self._verified is None:
            self._verified = load_verified(self.agent_dir)
        return self._verified

    def _intact(self, path):
        """Whether the archive is still what its manifest says: its size and
        mtime against the ones recorded at its last full verification, and a
        full sha256 check when there is no record, either differs, or the
        last one is `verify_every` days old. A damaged archive is reported
        and moved aside (not deleted); False is returned."""
        if path in self._checked:
            return self._checked[path]
        name = os.path.basename(path)
        manifest = load_manifest(path)
        try:
            st = os.stat(path)
        except OSError:
            return False
        now = self.now or utcnow()
        record = self._records().get(name)
        every = self.settings.get("verify_every", VERIFY_EVERY_DAYS)
        ok = True
        if manifest is None:
            ok = False
        elif verification_due(record, st, now, every) or record.get("sha256") != manifest["archive_sha256"]:
            try:
                verify_archive(path, manifest, members=False)
            except BackupError as exc:
                self._damaged(path, str(exc))
                ok = False
            else:
                self._record(name, st, now, manifest["archive_sha256"])
        self._checked[path] = ok
        return ok

    def _record(self, name, st, now, sha):
        record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "verified": iso_time(now), "sha256": sha}
        self._records()[name] = record
        self._verified_dirty = True

    def _damaged(self, path, why):
        """Report a damaged archive and, outside check mode, move it and its
        manifest into damaged/ for inspection."""
        entry = {"archive": path, "error": why, "moved_to": None}
        if not self.check_mode:
            moved = move_aside(self.agent_dir, [path, manifest_path(path)])
            entry["moved_to"] = moved[0] if moved else None
            self._records().pop(os.path.basename(path), None)
            self._verified_dirty = True
        self.result["damaged"].append(entry)
        self.log(
            "{}: {} is damaged ({}){}".format(
                self.name, path, why, f"; moved to {entry['moved_to']} for inspection" if entry["moved_to"] else ""
            )
        )

    def _check_newest(self):
        """The newest archive is the one a restore takes: prove it intact every run."""
        good = good_archives(self.agent_dir, self.name)
        if good:
            self._intact(good[0]["path"])

    def _repair_archives(self):
        """Archives whose manifest is missing, damaged or names another
        archive are read through; an intact one gets a manifest rebuilt from
        its contents (the damaged manifest is kept in damaged/), one that does
        not read back is moved to damaged/. A manifest of another format
        version is left as it is and reported. No archive is deleted here."""
        res = self.result
        for arch in list_archives(self.agent_dir, self.name):
            if arch["state"] == "good":
                continue
            path = arch["path"]
            raw = read_manifest_raw(path)
            fmt = raw.get("format") if isinstance(raw, dict) else None
            if isinstance(fmt, str) and fmt.startswith("warden-backup/") and fmt != FORMAT:
                res["unknown_format"].append(path)
                self.log(f"{self.name}: {path} has a manifest of format {fmt}, not {FORMAT}: left as it is")
                continue
            if self.check_mode:
                res["rebuilt_manifests"].append(path)
                continue
            if arch["state"] == "size-mismatch":
                self._damaged(path, "size {} differs from the manifest's {}".format(arch["size"], raw["archive_size"]))
                continue
            reason = "manifest missing" if raw is None else "manifest damaged"
            try:
                manifest = rebuild_manifest(
                    path, self.name, self.agent, host=self.plan.get("host"), reason=reason, now=self.now
                )
                recorded = raw.get("archive_sha256") if isinstance(raw, dict) else None
                sha = manifest["archive_sha256"]
                if isinstance(recorded, str) and re.match(r"^[0-9a-f]{64}$", recorded) and recorded != sha:
                    raise BackupError(f"sha256 {sha} differs from the manifest's {recorded}")
            except BackupError as exc:
                self._damaged(path, f"{reason} and the archive does not verify: {exc}")
                continue
            if raw is not None:
                move_aside(self.agent_dir, [manifest_path(path)])
            atomic_write(manifest_path(path), json.dumps(manifest, sort_keys=True).encode("utf-8"))
            cache = getattr(_ManifestCache.local, "entries", None)
            if cache:
                cache.pop(manifest_path(path), None)
            st = os.stat(path)
            self._record(arch["name"], st, self.now or utcnow(), manifest["archive_sha256"])
            res["rebuilt_manifests"].append(path)
            self.log(f"{self.name}: {path}: {reason}; rebuilt from the archive, which reads back intact")

    def run(self):
        start = time.time()
        res = self.result
        paths = self.agent.get("paths") or {}
        if not os.path.isdir(paths.get("workspace") or "") and not os.path.isdir(paths.get("state") or ""):
            res["status"] = "missing"
            res["msg"] = "no workspace on disk at {}".format(paths.get("workspace"))
            return res
        if paths.get("workspace") and not os.path.isdir(paths["workspace"]):
            # state without a workspace: an unmounted dataset or a moved
            # directory; an archive without it would soon be the only one kept
            raise BackupError(
                "workspace {} is missing while {} exists: not backed up (previous archives kept)".format(
                    paths["workspace"], paths.get("state")
                )
            )
        if self.settings.get("include_env") and self.env_key() is not None:
            check_passphrase_file(self.env_passphrase_file)
        if self.check_mode:
            return self._run_check(start)
        makedirs_private(self.agent_dir)
        with AgentLock(self.agent_dir, "backup", self.settings.get("lock_timeout", 0)), _ManifestCache():
            for leftover in stale_leftovers(self.agent_dir, self.name):
                if os.path.isdir(leftover) and not os.path.islink(leftover):
                    shutil.rmtree(leftover)
                else:
                    os.unlink(leftover)
                res["removed_leftovers"].append(leftover)
            res["removed_leftovers"].extend(remove_restore_leftovers(self.plan, self.name))
            try:
                self._repair_archives()
                self._check_newest()
                self._run_locked()
                self._prune()
            finally:
                if self._verified_dirty:
                    save_verified(self.agent_dir, self._records())
        if res["damaged"]:
            res["msg"] = "; ".join(
                "damaged archive {} ({}), moved to {}".format(d["archive"], d["error"], d["moved_to"])
                for d in res["damaged"]
            )
        res["duration"] = round(time.time() - start, 3)
        return res

    def _run_check(self, start):
        res = self.result
        self._check_newest()
        soul = soul_commit((self.agent.get("paths") or {}).get("soul"))
        dbs = self.databases(None)
        entries, _skipped = self.sources()
        env_key = self.env_key()
        res["databases"] = [{"key": d["key"], "name": d["name"], "content_sha256": d["content_sha256"]} for d in dbs]
        res["files"] = sum(1 for e in entries if e.kind == "f")
        res["size"] = sum(e.size for e in entries)
        previous = self.unchanged_by_summary(
            _load_index(self.agent_dir, SUMMARY_NAME), stat_digest(entries, dbs, soul, env_key)
        )
        if not previous:
            index = _load_index(self.agent_dir)
            if self.last_good(index) and self.unchanged_by_stat(entries, index, dbs, soul, env_key):
                previous = self.last_good(index)
        if previous:
            res["status"] = "unchanged"
            res["archive"] = previous
            planned_new = None
        else:
            res["status"] = "would_create"
            planned_new = archive_name(
                self.name, format_stamp(self.now or utcnow()), pick_compression(self.settings.get("compression"))
            )
        res["removed_leftovers"] = stale_leftovers(self.agent_dir, self.name)
        self._repair_archives()
        res["pruned"] = self._retention_plan(planned_new)[1]
        res["duration"] = round(time.time() - start, 3)
        return res

    def _run_locked(self):
        res = self.result
        summary = _load_index(self.agent_dir, SUMMARY_NAME)
        soul = soul_commit((self.agent.get("paths") or {}).get("soul"))
        env_key = self.env_key()
        # scratch space for database dumps and the encrypted env file only
        workdir = None
        if self.agent.get("db") or env_key is not None:
            workdir = tempfile.mkdtemp(prefix=".work-", suffix=PARTIAL_SUFFIX, dir=self.agent_dir)
        snaps = None
        writer = None
        try:
            dbs = self.databases(workdir)
            res["databases"] = [
                {"key": d["key"], "name": d["name"], "size": d["size"], "content_sha256": d["content_sha256"]}
                for d in dbs
            ]
            entries, skipped = self.sources()
            tree = stat_digest(entries, dbs, soul, env_key)
            previous = self.unchanged_by_summary(summary, tree)
            if previous:
                # the common case: the stat digest alone, no per-file index
                _report_unchanged(res, previous, entries)
                return
            index = _load_index(self.agent_dir)
            previous = self.last_good(index)
            if previous and self.unchanged_by_stat(entries, index, dbs, soul, env_key):
                self._write_index(index["archive"], index["digest"], entries, env_key, tree)
                _report_unchanged(res, previous, entries)
                return
            when = self.now or utcnow()
            while True:
                stamp = format_stamp(when)
                compression = pick_compression(self.settings.get("compression"))
                name = archive_name(self.name, stamp, compression)
                final = os.path.join(self.agent_dir, name)
                if not os.path.exists(final) and not os.path.exists(manifest_path(final)):
                    break
                when = when + datetime.timedelta(seconds=1)
            # consistent source: a ZFS snapshot where the section is its own dataset
            snaps = Snapshots(f"warden-backup-{stamp}")
            roots, snapshot_names = {}, []
            for section in SECTIONS:
                src = (self.agent.get("paths") or {}).get(section)
                if src and os.path.isdir(src):
                    roots[section], snap = snaps.source(src)
                    if snap:
                        snapshot_names.append(snap)
            if snapshot_names:
                entries, skipped = self.sources(roots)
                tree = stat_digest(entries, dbs, soul, env_key)
            res["consistency"] = "zfs-snapshot" if snapshot_names else "best-effort"
            partial = os.path.join(self.agent_dir, "." + name + PARTIAL_SUFFIX)
            size_hint = sum(e.size for e in entries) + sum(d["size"] for d in dbs)
            writer = ArchiveWriter(partial, compression, size_hint=size_hint)
            for e in entries:
                writer.add_entry(e)
            for db in dbs:
                writer.add_file(db["member"], db["tmp"])
            env = {"included": False}
            if env_key is not None:
                enc = os.path.join(workdir, "env.enc")
                # encrypted through pipes: the plaintext never reaches a file
                ciphertext, check = openssl_cipher(
                    read_private_file(self.agent["paths"]["env_file"]), self.env_passphrase_file
                )
                write_private_file(enc, ciphertext)
                member = f"env/{self.name}.env.enc"
                sha, size = writer.add_file(member, enc)
                env = {
                    "included": True,
                    "encrypted": "aes-256-cbc-pbkdf2",
                    "member": member,
                    "sha256": sha,
                    "size": size,
                    "source": self.agent["paths"]["env_file"],
                    "plaintext_hmac_sha256": check,
                }
            digest = content_digest(entries, dbs, soul, env_key)
            if previous and index and digest == index.get("digest"):
                # touched but identical: not a new backup
                writer.abort()
                writer = None
                self._write_index(index["archive"], digest, entries, env_key, tree)
                _report_unchanged(res, previous, entries)
                return
            sha, size = writer.finish()
            writer = None
            if sha256_file(partial) != sha:
                raise BackupError(f"{partial}: read-back checksum differs from what was written")
            # The archive's data is on disk (fsynced by finish()); the manifest is
            # written after the rename and the one directory fsync of
            # atomic_write() makes both renames durable. Whichever rename a
            # crash loses, no archive with a valid manifest naming it appears.
            os.rename(partial, final)
            manifest = {
                "format": FORMAT,
                "agent": self.name,
                "host": self.plan.get("host") or socket.gethostname(),
                "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "stamp": stamp,
                "collection_version": __version__,
                "archive": name,
                "compression": compression,
                "archive_sha256": sha,
                "archive_size": size,
                "soul_commit": soul,
                "consistency": res["consistency"],
                "snapshots": snapshot_names,
                "sources": dict((s, (self.agent.get("paths") or {}).get(s)) for s in SECTIONS),
                "excludes": list(self.settings.get("exclude") or []),
                "skipped": skipped,
                "databases": [
                    {
                        "key": d["key"],
                        "name": d["name"],
                        "jail": d["jail"],
                        "member": d["member"],
                        "format": "pg_dump-custom",
                        "size": d["size"],
                        "sha256": d["sha256"],
                        "content_sha256": d["content_sha256"],
                    }
                    for d in dbs
                ],
                "env": env,
                "content_digest": digest,
            }
            files = "[" + ", ".join(map(_manifest_line, entries)) + "]"
            try:
                atomic_write(manifest_path(final), _json_with_files(manifest, files).encode("utf-8"))
            except BaseException:
                # no manifest (e.g. the disk filled up): the archive of this run is removed
                with contextlib.suppress(OSError):
                    os.unlink(final)
                raise
            # read back and compared above: this is its first full verification
            self._record(name, os.stat(final), self.now or utcnow(), sha)
            self._write_index(name, digest, entries, env_key, tree)
            res.update(
                status="created",
                archive=final,
                manifest=manifest_path(final),
                size=size,
                sha256=sha,
                files=sum(1 for e in entries if e.kind == "f"),
            )
        finally:
            if writer is not None:
                writer.abort()
            if snaps is not None:
                snaps.close()
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    def _write_index(self, archive, digest, entries, env_key, tree):
        """The per-file index (stat key and sha256 of every file) and the
        summary (the stat digest of the whole source) for `archive`, whose
        content digest is `digest`. Both are caches: losing them only means
        the next run reads every file again."""
        data = {"format": FORMAT, "archive": archive, "digest": digest, "env": env_key}
        files = "{" + ",".join(map(_index_line, entries)) + "}"
        index = _json_with_files(data, files, compact=True).encode("utf-8")
        atomic_write(os.path.join(self.agent_dir, INDEX_NAME), index, durable=False)
        summary = {"format": FORMAT, "archive": archive, "digest": digest, "tree": tree}
        atomic_write(os.path.join(self.agent_dir, SUMMARY_NAME), json.dumps(summary).encode("utf-8"), durable=False)

    def _retention_plan(self, extra=None):
        archives = [(a["name"], a["time"]) for a in good_archives(self.agent_dir, self.name)]
        if extra:
            parsed = parse_archive_name(extra, self.name)
            archives.append((extra, parsed[1]))
        s = self.settings
        newest = max(archives, key=lambda a: (a[1], a[0]))[0] if archives else None
        return retention(
            archives,
            s.get("keep_last", 7),
            s.get("keep_daily", 7),
            s.get("keep_weekly", 4),
            s.get("keep_monthly", 6),
            protect=newest if extra else None,
        )

    def _prune(self):
        keep, prune = self._retention_plan()
        if not prune:
            return
        # never delete the newest verified archive: verify from the newest down
        protected = None
        for arch in good_archives(self.agent_dir, self.name):
            try:
                verify_archive(arch["path"], arch["manifest"], members=False)
                protected = arch["name"]
                break
            except BackupError as exc:
                self.log(f"{self.name}: {exc}")
        if protected is None:
            raise BackupError(f"no archive of {self.name} verifies: not pruning anything")
        for name in prune:
            if name == protected:
                continue
            path = os.path.join(self.agent_dir, name)
            os.unlink(manifest_path(path))
            os.unlink(path)
            self.result["pruned"].append(path)
        fsync_dir(self.agent_dir)


def backup_workers(count):
    """Agents backed up at the same time: one per CPU (file I/O, hashing and
    the zstd child processes run outside the interpreter lock)."""
    return max(1, min(count, os.cpu_count() or 1))


def backup_fleet(plan, agents=None, check_mode=False, env_passphrase_file=None, now=None, log=None, workers=None):
    """Back up the selected agents (default: every present agent), up to
    `workers` (default: the CPU count) at a time. One agent's failure does
    not stop the others. Returns a result dict."""
    names = selected_agents(plan, agents)

    def one(name):
        job = AgentBackup(plan, name, check_mode=check_mode, env_passphrase_file=env_passphrase_file, now=now, log=log)
        try:
            return job.run()
        except (BackupError, OSError, subprocess.SubprocessError) as exc:
            job.result.update(status="failed", msg=str(exc))
            return job.result

    workers = backup_workers(len(names)) if workers is None else max(1, workers)
    if workers == 1 or len(names) < 2:
        results = dict((name, one(name)) for name in names)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict((res["agent"], res) for res in pool.map(one, names))
    counts = {}
    for res in results.values():
        counts[res["status"]] = counts.get(res["status"], 0) + 1
    pruned = sum(len(r["pruned"]) for r in results.values())
    failed = sorted(n for n, r in results.items() if r["status"] == "failed")
    orphans = orphan_workspaces(plan)
    summary = "warden backup {}: {}; pruned {}".format(
        plan.get("host", socket.gethostname()),
        ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "no agents",
        pruned,
    )
    if orphans:
        summary += "; orphaned workspaces: " + ", ".join(orphans)
    if failed:
        summary += "; FAILED: " + ", ".join("{} ({})".format(n, results[n]["msg"]) for n in failed)
    damaged = sorted(n for n, r in results.items() if r.get("damaged"))
    if damaged:
        summary += "; DAMAGED: " + ", ".join(
            "{} ({})".format(n, ", ".join(d["moved_to"] or d["archive"] for d in results[n]["damaged"]))
            for n in damaged
        )
    rebuilt = sorted(n for n, r in results.items() if r.get("rebuilt_manifests"))
    if rebuilt:
        summary += "; manifests rebuilt: " + ", ".join(rebuilt)
    foreign = sorted(n for n, r in results.items() if r.get("unknown_format"))
    if foreign:
        summary += "; manifests of another format left alone: " + ", ".join(foreign)
    touched = [
        r["pruned"] or r["removed_leftovers"] or r.get("damaged") or r.get("rebuilt_manifests")
        for r in results.values()
    ]
    changed = any(r["status"] == "created" for r in results.values()) or any(touched)
    if check_mode:
        changed = any(r["status"] == "would_create" for r in results.values()) or any(touched)
    return {
        "agents": results,
        "orphans": orphans,
        "failed_agents": failed,
        "damaged_agents": damaged,
        "summary": summary,
        "changed": changed,
        "created": sorted(r["archive"] for r in results.values() if r["status"] == "created"),
    }

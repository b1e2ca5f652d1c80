# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Restoring an agent: staging outside its reach, the service stopped, the swap."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import stat
import tempfile
import time

from .commands import SERVICE
from .common import (
    PARTIAL_SUFFIX,
    RESTORE_PREFIX,
    SECTIONS,
    BackupError,
    format_stamp,
    makedirs_private,
    parse_time,
    utcnow,
)
from .dumps import restore_database
from .envfile import check_passphrase_file, decrypt_env_member, write_private_file
from .extract import extract_archive, verify_archive
from .lock import AgentLock
from .manifest import good_archives, load_manifest, manifest_path
from .plan import agent_backup_dir, agent_plan
from .scan import open_dir


def pid_alive(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def service_running(service):
    if not service:
        return False
    return pid_alive(service.get("pidfile") or "/var/run/{}.pid".format(service["name"]))


def select_archive(agent_dir, agent, at=None):
    """Newest good archive at or before `at` (a datetime), or the newest."""
    for arch in good_archives(agent_dir, agent):
        if at is None or arch["time"] <= at:
            return arch
    raise BackupError(
        "no good archive of {} in {}{}".format(
            agent, agent_dir, (" at or before {}".format(at.strftime("%Y-%m-%dT%H:%M:%SZ"))) if at else ""
        )
    )


def _owner_ids(target):
    if os.geteuid() != 0:
        return None
    user = (target.get("user") or {}).get("name")
    group = (target.get("user") or {}).get("group")
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid if group else pwd.getpwnam(user).pw_gid
    except (KeyError, TypeError):
        return None
    return uid, gid


class _StagedTree:
    """A directory a restore fills, written only through descriptors: every
    path component is opened relative to the directory above it without
    following a symlink, files are created O_EXCL|O_NOFOLLOW, and ownership,
    modes and times are set on the descriptors. Owns fd."""

    def __init__(self, fd, ids=None):
        self.fd, self.ids = fd, ids
        self.cached = None  # (relative directory, fd) of the last parent used

    def _open(self, reldir):
        """A new descriptor of reldir ("" is the root); the caller closes it unless it is self.fd."""
        fd = self.fd
        try:
            for part in reldir.split("/") if reldir else ():
                sub = open_dir(part, fd)
                if fd != self.fd:
                    os.close(fd)
                fd = sub
        except BaseException:
            if fd != self.fd:
                os.close(fd)
            raise
        return fd

    def _release(self, fd):
        if fd != self.fd:
            os.close(fd)

    def parent(self, rel):
        head, _sep, name = rel.rpartition("/")
        if not head:
            return self.fd, name
        if self.cached is None or self.cached[0] != head:
            fd = self._open(head)
            self._drop_cache()
            self.cached = (head, fd)
        return self.cached[1], name

    def _drop_cache(self):
        if self.cached is not None:
            os.close(self.cached[1])
            self.cached = None

    def create_file(self, rel):
        dfd, name = self.parent(rel)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        if self.ids:
            os.fchown(fd, *self.ids)
        return fd

    def mkdir(self, rel):
        if rel:
            dfd, name = self.parent(rel)
            os.mkdir(name, 0o700, dir_fd=dfd)
        if self.ids:
            fd = self._open(rel)
            try:
                os.fchown(fd, *self.ids)
            finally:
                self._release(fd)

    def symlink(self, link, rel):
        dfd, name = self.parent(rel)
        os.symlink(link, name, dir_fd=dfd)
        if self.ids:
            os.chown(name, *self.ids, dir_fd=dfd, follow_symlinks=False)

    def hardlink(self, src_rel, rel):
        shead, _sep, sname = src_rel.rpartition("/")
        sfd = self._open(shead)
        try:
            dfd, name = self.parent(rel)
            os.link(sname, name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            self._release(sfd)

    def finish_dir(self, rel, mode, mtime):
        fd = self._open(rel)
        try:
            os.fchmod(fd, mode)
            os.utime(fd, (mtime, mtime))
        finally:
            self._release(fd)

    def close(self):
        self._drop_cache()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _private_dir(start_fd, start_path, name):
    """A directory `name` only root can enter (created 0700 by us), on the
    file system of start_path (held as start_fd): in the nearest of
    start_path and its parents that only root can write, so that the agent
    cannot even rename it, else in start_path itself (the agent may rename
    it there but cannot enter it; it is only used through its descriptor).
    Returns (fd of the directory it is in, fd of it)."""
    euid = os.geteuid()
    dev = os.fstat(start_fd).st_dev
    base, cur = None, start_path.rstrip("/") or "/"
    while True:
        try:
            st = os.lstat(cur)
        except OSError:
            break
        if st.st_dev != dev or not stat.S_ISDIR(st.st_mode):
            break
        if st.st_uid == euid and not st.st_mode & 0o022:
            base = cur
            break
        up = os.path.dirname(cur)
        if up == cur:
            break
        cur = up
    base_fd = os.dup(start_fd) if base is None or base == start_path.rstrip("/") else open_dir(base)
    try:
        if os.fstat(base_fd).st_dev != dev:
            raise BackupError(f"{base} is not on the file system of {start_path}")
        label = os.path.join(base or start_path, name)
        for attempt in (1, 2):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=base_fd)
            try:
                fd = open_dir(name, base_fd, label=label)
            except BackupError:
                fd = None  # something else than a directory under our name
            if fd is not None:
                st = os.fstat(fd)
                if st.st_uid == euid and st.st_dev == dev:
                    os.fchmod(fd, 0o700)
                    return base_fd, fd
                os.close(fd)
            if base is not None or attempt == 2:
                raise BackupError(f"{label} is not ours: remove it and retry")
            # in the agent's own directory: what it put under our name is moved aside
            os.rename(name, _free_name(base_fd, name + ".moved"), src_dir_fd=base_fd, dst_dir_fd=base_fd)
        raise BackupError(f"{label} is not ours: remove it and retry")
    except BaseException:
        os.close(base_fd)
        raise


def _rmtree_at(dir_fd, name):
    """Remove name (a tree) in the directory held as dir_fd, never following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _lexists_at(dir_fd, name):
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def restore_leftovers(plan, name):
    """Staging directories an interrupted restore into agent `name` left
    (root-only <dir>/.warden-restore-<agent>/ next to its workspace and
    state), and old-style ones in its home. Call while holding its lock."""
    found = []
    paths = (agent_plan(plan, name).get("paths") or {}) if name in (plan.get("agents") or {}) else {}
    euid = os.geteuid()
    for section in SECTIONS:
        live = (paths.get(section) or "").rstrip("/")
        if not live:
            continue
        parent = os.path.dirname(live)
        candidates, cur = [live], parent
        while True:  # the places _private_dir may have used: live, its parent and their parents
            candidates.append(cur)
            up = os.path.dirname(cur)
            if up == cur:
                break
            cur = up
        for directory in candidates:
            candidate = os.path.join(directory, RESTORE_PREFIX + name)
            try:
                st = os.lstat(candidate)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == euid and candidate not in found:
                found.append(candidate)
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(parent)):
                if re.match(r"^\.(workspace|state)\.warden-restore-\d{8}T\d{6}Z$", entry):
                    found.append(os.path.join(parent, entry))
    agent_dir = agent_backup_dir(plan, name)
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(agent_dir)):
            if entry.startswith(".restore-") and entry.endswith(PARTIAL_SUFFIX):
                found.append(os.path.join(agent_dir, entry))  # a restore's scratch directory
    return found


def remove_restore_leftovers(plan, name):
    removed = []
    for path in restore_leftovers(plan, name):
        try:
            dir_fd = open_dir(os.path.dirname(path))
        except (OSError, BackupError):
            continue
        try:
            _rmtree_at(dir_fd, os.path.basename(path))
            removed.append(path)
        finally:
            os.close(dir_fd)
    return removed


def restore_agent(
    plan,
    agent,
    archive=None,
    at=None,
    target_agent=None,
    restore_databases=True,
    restore_env=False,
    env_passphrase_file=None,
    start_service="auto",
    check_mode=False,
    now=None,
    lock_timeout=0,
):
    """Restore (see _restore_locked) holding the lock of the target agent,
    and of the archive's agent when that is another one, throughout: no
    backup, retention or other restore of either runs meanwhile; one that
    holds a lock makes this wait up to lock_timeout seconds, then fail
    naming it."""
    source = agent
    if archive and not source:
        manifest = load_manifest(archive)
        if manifest is None:
            raise BackupError(f"{archive} has no valid manifest ({manifest_path(archive)})")
        source = manifest.get("agent")
    target_name = target_agent or source
    if target_name:
        agent_plan(plan, target_name)  # fail early on a name the plan does not know
    with contextlib.ExitStack() as locks:
        for directory in sorted(set(agent_backup_dir(plan, n) for n in (source, target_name) if n)):
            if not os.path.isdir(directory):
                if check_mode or directory != agent_backup_dir(plan, target_name):
                    continue
                makedirs_private(directory)
            locks.enter_context(AgentLock(directory, "restore", lock_timeout))
        return _restore_locked(
            plan,
            agent,
            archive=archive,
            at=at,
            target_agent=target_agent,
            restore_databases=restore_databases,
            restore_env=restore_env,
            env_passphrase_file=env_passphrase_file,
            start_service=start_service,
            check_mode=check_mode,
            now=now,
        )


def _restore_locked(
    plan,
    agent,
    archive=None,
    at=None,
    target_agent=None,
    restore_databases=True,
    restore_env=False,
    env_passphrase_file=None,
    start_service="auto",
    check_mode=False,
    now=None,
):
    """Verify an archive completely, stage it, stop the service, swap the
    workspace and state (the previous ones are kept as <dir>.prev-<ts>),
    restore the databases, restart the service. Nothing is touched unless
    the archive verifies."""
    if target_agent or agent:
        agent_plan(plan, target_agent or agent)  # fail early on a name the plan does not know
    if archive:
        manifest = load_manifest(archive)
        if manifest is None:
            raise BackupError(f"{archive} has no valid manifest ({manifest_path(archive)})")
        if agent and manifest.get("agent") != agent:
            raise BackupError("{} is a backup of {}, not {}".format(archive, manifest.get("agent"), agent))
        agent = manifest["agent"]
        path = archive
    else:
        if isinstance(at, str):
            at = parse_time(at)
        chosen = select_archive(agent_backup_dir(plan, agent), agent, at)
        path, manifest = chosen["path"], chosen["manifest"]
    target_name = target_agent or agent
    target = agent_plan(plan, target_name)
    foreign = target_name != agent
    result = {
        "agent": agent,
        "target_agent": target_name,
        "archive": path,
        "created": manifest.get("created"),
        "soul_commit": manifest.get("soul_commit"),
        "databases": [],
        "previous": {},
        "service": {},
        "env_restored": False,
        "changed": False,
    }
    # 1. verify everything before touching anything
    verify_archive(path, manifest, members=check_mode)
    dbs = manifest.get("databases") or []
    tdb = target.get("db")
    if dbs and restore_databases:
        if not tdb:
            raise BackupError(
                f"the archive has databases but {target_name} has no db in the plan "
                "(pass restore_databases=false to skip them)"
            )
        missing = [d["key"] for d in dbs if d["key"] not in (tdb.get("databases") or {})]
        if missing:
            raise BackupError("{} has no database for {}".format(target_name, ", ".join(missing)))
    env = manifest.get("env") or {}
    if restore_env:
        if not env.get("member"):
            raise BackupError("the archive has no env file")
        check_passphrase_file(env_passphrase_file)
    sections = [s for s in SECTIONS if any(f["path"] == s for f in manifest["files"])]
    tpaths = target.get("paths") or {}
    stamp = format_stamp(now or utcnow())
    if check_mode:
        result.update(
            would_restore=dict((s, tpaths[s]) for s in sections),
            databases=[d["name"] for d in dbs] if restore_databases else [],
            service={"running": service_running(target.get("service"))},
        )
        result["changed"] = True
        return result
    # 2. stage outside the agent's reach: in a directory only root can enter
    # on the file system of each live directory (see _private_dir), written
    # through descriptors only, owned by the target agent from the start;
    # databases and the env file in root's scratch directory in the backup dir
    ids = _owner_ids(target)
    places, trees = {}, {}
    scratch = None
    try:
        result["removed_leftovers"] = remove_restore_leftovers(plan, target_name)
        for s in sections:
            places[s] = _stage_place(tpaths[s], s, RESTORE_PREFIX + target_name)
            trees[s] = _StagedTree(open_dir(s, places[s]["priv_fd"]), ids)
        scratch = tempfile.mkdtemp(prefix=".restore-", suffix=PARTIAL_SUFFIX, dir=agent_backup_dir(plan, target_name))

        def dest_for(member):
            head, _sep, rest = member.partition("/")
            if head in trees:
                return (trees[head], rest)
            if head in ("dbs", "env"):
                return os.path.join(scratch, member.replace("/", "_"))
            raise BackupError(f"unexpected member {member}")

        extract_archive(path, manifest, dest_for)
        env_plain = None
        if restore_env:
            # decrypted now, into memory only: a wrong passphrase stops the
            # restore here, before the service is stopped or anything swapped
            env_plain = decrypt_env_member(dest_for(env["member"]), env, env_passphrase_file)
        for tree in trees.values():
            tree.close()
        os.sync()
    except BaseException:
        _drop_staging(places, trees)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    # 3. stop the service
    service = target.get("service") or {}
    was_running = service_running(service)
    result["service"]["was_running"] = was_running
    try:
        if service.get("name"):
            rc, out, err = SERVICE.run("name action", check=False, name=service["name"], action="stop")
            result["service"]["stop_rc"] = rc
            deadline = time.time() + 30
            while service_running(service) and time.time() < deadline:
                time.sleep(0.2)
            if service_running(service):
                raise BackupError(f"service {service['name']} did not stop (rc={rc}): {(err or out).strip()}")
        # 4. swap: renames relative to the directories held since staging
        for s in sections:
            result["previous"][s] = _swap_in(places[s], tpaths[s], s, stamp)
        result["changed"] = True
        # 5. databases
        if dbs and restore_databases:
            role = tdb.get("role")
            for d in dbs:
                dbname = tdb["databases"][d["key"]]
                dump = os.path.join(scratch, d["member"].replace("/", "_"))
                try:
                    restore_database(tdb["jail"], dbname, dump, role=role, foreign=foreign)
                except BackupError as exc:
                    raise BackupError(
                        "database {}: {} (restored before it: {}; files restored, previous "
                        "workspace kept at {}; service left stopped)".format(
                            dbname, exc, ", ".join(result["databases"]) or "none", result["previous"]
                        )
                    ) from exc
                result["databases"].append(dbname)
        # 6. env file
        if restore_env:
            # 0600 from creation, owned by the target agent, atomic
            write_private_file(tpaths["env_file"], env_plain, _owner_ids(target))
            result["env_restored"] = True
        # 7. start
        if service.get("name") and (start_service == "always" or (start_service == "auto" and was_running)):
            SERVICE.run("name action", name=service["name"], action="start")
            result["service"]["started"] = True
        else:
            result["service"]["started"] = False
    finally:
        _drop_staging(places, trees)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


def _stage_place(live, section, private_name):
    """Where a section is staged: holds the live directory's parent (and the
    live directory itself when it is a mountpoint, whose contents are then
    swapped) and the root-only private directory with the empty staging
    directory `section` in it."""
    live = live.rstrip("/")
    parent = os.path.dirname(live)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
    place = {"name": os.path.basename(live), "private": private_name, "live_fd": None}
    place["parent_fd"] = open_dir(parent)
    try:
        try:
            live_fd = open_dir(place["name"], place["parent_fd"], label=live)
        except (BackupError, FileNotFoundError):
            live_fd = None  # missing, or not a directory: renamed aside by the swap
        if live_fd is not None:
            if os.fstat(live_fd).st_dev != os.fstat(place["parent_fd"]).st_dev:
                place["live_fd"] = live_fd  # its own file system (a dataset's mountpoint)
            else:
                os.close(live_fd)
        start_fd, start = (place["live_fd"], live) if place["live_fd"] is not None else (place["parent_fd"], parent)
        place["base_fd"], place["priv_fd"] = _private_dir(start_fd, start, private_name)
        _rmtree_at(place["priv_fd"], section)
        os.mkdir(section, 0o700, dir_fd=place["priv_fd"])
    except BaseException:
        _close_place(place)
        raise
    return place


def _close_place(place):
    for key in ("priv_fd", "base_fd", "live_fd", "parent_fd"):
        if place.get(key) is not None:
            os.close(place[key])
            place[key] = None


def _drop_staging(places, trees):
    """Remove what is left of the staging directories (all of it after a
    failure, the emptied private directories after a swap) and close them."""
    for tree in trees.values():
        with contextlib.suppress(OSError):
            tree.close()
    for place in places.values():
        base, priv = place.get("base_fd"), place.get("priv_fd")
        if base is not None and priv is not None:
            with contextlib.suppress(OSError):
                here = os.stat(place["private"], dir_fd=base, follow_symlinks=False)
                if os.path.samestat(here, os.fstat(priv)):
                    _rmtree_at(base, place["private"])
        _close_place(place)


def _free_name(dir_fd, name):
    """name, or name-1, name-2, ... : the first that does not exist in dir_fd."""
    candidate, n = name, 0
    while _lexists_at(dir_fd, candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _swap_in(place, live, section, stamp):
    """Put the staged `section` in place of the live directory; returns where
    the previous one went (None if there was none). The service is stopped;
    every rename is relative to a directory held since staging, so a link
    the agent put anywhere is moved aside, never followed."""
    live = live.rstrip("/")
    if place["live_fd"] is not None:
        return _swap_contents(place, live, section, stamp)
    parent_fd, name = place["parent_fd"], place["name"]
    prev_name = _free_name(parent_fd, f"{name}.prev-{stamp}")
    prev = None
    try:
        os.rename(name, prev_name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        prev = os.path.join(os.path.dirname(live), prev_name)
    except FileNotFoundError:
        pass  # there was none (or something else just moved it away)
    except OSError as exc:
        raise BackupError(f"cannot move {live} aside to {prev_name}: {exc.strerror}") from None
    try:
        os.rename(section, name, src_dir_fd=place["priv_fd"], dst_dir_fd=parent_fd)
    except OSError as exc:
        raise BackupError(
            f"cannot move the restored {section} into place at {live}: {exc.strerror} "
            f"(something recreated it during the swap); the previous one is at {prev}"
        ) from None
    os.fsync(parent_fd)
    return prev


def _swap_contents(place, live, section, stamp):
    """Swap for a directory that is a mountpoint (its own dataset): move the
    live entries into <live>/.warden-prev-<ts>/ and the staged ones up, all
    relative to descriptors held since staging."""
    live_fd = place["live_fd"]
    prev_name = _free_name(live_fd, f".warden-prev-{stamp}")
    os.mkdir(prev_name, 0o700, dir_fd=live_fd)
    prev_fd = open_dir(prev_name, live_fd)
    staged_fd = None
    try:
        staged_fd = open_dir(section, place["priv_fd"])
        for name in os.listdir(live_fd):
            if name not in (prev_name, place["private"]) and not name.startswith(".warden-prev-"):
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    os.rename(name, name, src_dir_fd=live_fd, dst_dir_fd=prev_fd)
        for name in os.listdir(staged_fd):
            try:
                os.rename(name, name, src_dir_fd=staged_fd, dst_dir_fd=live_fd)
            except OSError as exc:
                raise BackupError(
                    f"cannot move the restored {name} into {live}: {exc.strerror} (something created it during "
                    f"the swap); the previous content is in {os.path.join(live, prev_name)}"
                ) from None
        os.fchmod(live_fd, stat.S_IMODE(os.fstat(staged_fd).st_mode))
        os.fsync(live_fd)
    finally:
        os.close(prev_fd)
        if staged_fd is not None:
            os.close(staged_fd)
    return os.path.join(live, prev_name)

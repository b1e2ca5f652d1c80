# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Agent homes, workspaces and environment files, written by root where an agent may race it.

An agent is hostile to root: it owns its workspace and can plant a symlink,
a FIFO or a hard link anywhere in it at any moment.  So nothing here follows a
path the agent can change:

- directories are opened from ``/`` down, one component at a time, with
  ``O_NOFOLLOW | O_DIRECTORY``; every later step is relative to a held
  directory descriptor (``dir_fd``), so a component swapped after the check
  is never used;
- owner and mode are set on descriptors (``fchown``/``fchmod``), never by name;
- a file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (which never follows
  anything) or written to a temporary name in the same directory, synced and
  renamed over the old one (atomic: readers see the old or the new file, a
  crash leaves the old one);
- inside the agent's workspace only what is missing is created; whatever is
  there (the agent's content, or something it planted) is left alone.

Standard library only: runs on the FreeBSD host.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import re
import stat

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# FreeBSD's open(2) answers EMLINK for O_NOFOLLOW on a symlink, Linux ELOOP; ENOTDIR for a non-directory.
NOT_A_DIR = (errno.ELOOP, errno.EMLINK, errno.ENOTDIR)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REDACTED = "<redacted>"
REDACTED_CHANGED = "<redacted, changed>"
ENV_HEADER = "# Written by warden.fleet from the inventory (env_files); edits here are replaced on the next run.\n"

HOME_MODE = 0o750
PRIVATE_MODE = 0o700
FILE_MODE = 0o600


class UnsafePath(Exception):
    """A path is not what it must be (a symlink or another type where a directory belongs)."""


def owner_ids(user, group):
    """(uid, gid) of a user and group, or None when either does not exist yet (check mode on a new host)."""
    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def open_dir(path):
    """A descriptor of the absolute directory ``path``, opened without following any symlink on the way."""
    if not path.startswith("/") or any(part in (".", "..") for part in path.split("/")):
        raise UnsafePath(f"{path}: not a plain absolute path")
    fd = os.open("/", O_DIR)
    try:
        for part in (p for p in path.split("/") if p):
            child = os.open(part, O_DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as error:
        os.close(fd)
        if error.errno in NOT_A_DIR:
            raise UnsafePath(f"{path}: a component is a symlink or not a directory") from error
        raise
    return fd


def makedirs_root(path, check):
    """Create the root-owned directories above the agents (mode 0755) when missing; True if any was missing."""
    missing = not os.path.isdir(path)
    if missing and not check:
        os.makedirs(path, mode=0o755, exist_ok=True)
    return missing


def lstat_at(dir_fd, name):
    """lstat of ``name`` in the directory ``dir_fd`` (a link is not followed); None when nothing has the name."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def ensure_dir(parent_fd, name, ids, mode, check, enforce):
    """Make ``name`` under ``parent_fd`` a directory; returns (descriptor or None, action).

    action is ``created``, ``fixed`` (owner or mode set; only with ``enforce``), ``foreign`` (something else is
    there; left alone unless ``enforce``, which raises) or None.  The descriptor is None in check mode for a
    directory that does not exist yet.
    """
    st = lstat_at(parent_fd, name)
    if st is None:
        if check or ids is None:
            return None, "created"
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, O_DIR, dir_fd=parent_fd)
        os.fchown(fd, *ids)
        os.fchmod(fd, mode)
        return fd, "created"
    if not stat.S_ISDIR(st.st_mode):
        if enforce:
            raise UnsafePath(f"{name}: expected a directory, found {_kind(st)}")
        return None, "foreign"
    try:
        fd = os.open(name, O_DIR, dir_fd=parent_fd)
    except OSError as error:
        if error.errno in NOT_A_DIR:  # swapped for a symlink since the lstat
            raise UnsafePath(f"{name}: replaced by a symlink while being checked") from error
        raise
    if not enforce:
        return fd, None
    st = os.fstat(fd)
    if ids is None or ((st.st_uid, st.st_gid) == tuple(ids) and stat.S_IMODE(st.st_mode) == mode):
        return fd, None
    if not check:
        os.fchown(fd, *ids)
        os.fchmod(fd, mode)
    return fd, "fixed"


def ensure_file(dir_fd, name, ids, mode, check):
    """Create an empty file when nothing has the name; never touches what is there. Returns the action."""
    st = lstat_at(dir_fd, name)
    if st is not None:
        return None if stat.S_ISREG(st.st_mode) else "foreign"
    if check or ids is None:
        return "created"
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except FileExistsError:  # the agent was quicker: its file wins
        return None
    try:
        os.fchown(fd, *ids)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    return "created"


def ensure_symlink(dir_fd, name, target, check):
    """Create the symlink ``name -> target`` when nothing has the name. Returns the action."""
    st = lstat_at(dir_fd, name)
    if st is not None:
        if stat.S_ISLNK(st.st_mode) and os.readlink(name, dir_fd=dir_fd) == target:
            return None
        return "foreign"
    if not check:
        try:
            os.symlink(target, name, dir_fd=dir_fd)
        except FileExistsError:
            return "foreign"
    return "created"


def _kind(st):
    for test, kind in ((stat.S_ISLNK, "a symlink"), (stat.S_ISREG, "a file"), (stat.S_ISFIFO, "a FIFO")):
        if test(st.st_mode):
            return kind
    return "a special file"


def read_regular(dir_fd, name):
    """(bytes, stat) of a regular file, without following a symlink or blocking on a FIFO; (None, lstat) else."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None, None
    except OSError as error:
        if error.errno in NOT_A_DIR:
            return None, lstat_at(dir_fd, name)
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, st
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def write_atomic(dir_fd, name, data, ids, mode):
    """Replace ``name`` by ``data``: a temporary file, owned and moded on its descriptor, synced, renamed."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        try:
            os.fchown(fd, *ids)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


# --- workspaces -------------------------------------------------------------------------------------------------


def workspace_layout(agent, plan, dirs, files, soul_files):
    """What one agent's home must hold, from the plan: (path, owner, group, entries)."""
    paths = agent["paths"]
    home = paths["home"]
    owned = {"workspace": paths["workspace"], "state": paths["state"], "logs": paths["logs"]}
    for key, path in owned.items():
        if os.path.dirname(path) != home:
            raise UnsafePath(f"{agent['name']}: {key} {path} is not directly inside the home {home}")
    wanted_files = [f for f in files if not (agent.get("soul") and f in soul_files)]
    shared = (plan.get("shared_files") or {}).get("dir") if paths.get("shared") else None
    if shared is not None and os.path.dirname(paths["shared"]) != paths["workspace"]:
        raise UnsafePath(f"{agent['name']}: shared link {paths['shared']} is not inside the workspace")
    return {
        "home": home,
        "owned": [os.path.basename(path) for path in owned.values()],
        "workspace": os.path.basename(paths["workspace"]),
        "dirs": list(dirs),
        "files": wanted_files,
        "link": (os.path.basename(paths["shared"]), shared) if shared else None,
    }


def ensure_workspace(agent, layout, check):
    """Bring one agent's home to the layout. Returns {changed, created, fixed, left_alone}."""
    user = agent["user"]
    ids = owner_ids(user["name"], user["group"])
    if ids is None and not check:
        raise ValueError(f"{agent['name']}: user {user['name']} or group {user['group']} does not exist")
    root_ids = None if ids is None else (0, ids[1])
    report = {"created": [], "fixed": [], "left_alone": []}
    home = layout["home"]

    def note(action, path):
        if action == "created":
            report["created"].append(path)
        elif action == "fixed":
            report["fixed"].append(path)
        elif action == "foreign":
            report["left_alone"].append(path)

    parent = os.path.dirname(home)
    if makedirs_root(parent, check):
        report["created"].append(parent)
    fds = []
    try:
        parent_fd = None if check and not os.path.isdir(parent) else open_dir(parent)
        if parent_fd is not None:
            fds.append(parent_fd)
        # The home is root's: the agent may read it but never add, rename or remove what is in it.
        home_fd, action = (
            (None, "created")
            if parent_fd is None
            else ensure_dir(parent_fd, os.path.basename(home), root_ids, HOME_MODE, check, enforce=True)
        )
        note(action, home)
        if home_fd is not None:
            fds.append(home_fd)
        ws_fd = None
        for name in layout["owned"]:
            fd, action = (
                (None, "created")
                if home_fd is None
                else ensure_dir(home_fd, name, ids, PRIVATE_MODE, check, enforce=True)
            )
            note(action, f"{home}/{name}")
            if fd is not None:
                fds.append(fd)
                if name == layout["workspace"]:
                    ws_fd = fd
        ws = f"{home}/{layout['workspace']}"
        # Inside the workspace the agent rules: only what is missing is created, nothing is changed.
        for name in layout["dirs"]:
            if ws_fd is None:
                note("created", f"{ws}/{name}")
                continue
            fd, action = ensure_dir(ws_fd, name, ids, PRIVATE_MODE, check, enforce=False)
            note(action, f"{ws}/{name}")
            if fd is not None:
                os.close(fd)
        for name in layout["files"]:
            note("created" if ws_fd is None else ensure_file(ws_fd, name, ids, FILE_MODE, check), f"{ws}/{name}")
        if layout["link"]:
            name, target = layout["link"]
            note("created" if ws_fd is None else ensure_symlink(ws_fd, name, target, check), f"{ws}/{name}")
    finally:
        for fd in fds:
            os.close(fd)
    report["changed"] = bool(report["created"] or report["fixed"])
    return report


# --- environment files ------------------------------------------------------------------------------------------


def sh_quote(value):
    """A value as sh(1) reads it back unchanged: single quotes, a quote as '\\''."""
    return "'" + value.replace("'", "'\\''") + "'"


def parse_env(text):
    """NAME -> value of an environment file in the format env_text writes (other lines ignored)."""
    values = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or not ENV_NAME_RE.match(name):
            continue
        if len(raw) >= 2 and raw[0] == "'" and raw[-1] == "'":
            raw = raw[1:-1].replace("'\\''", "'")
        values[name] = raw
    return values


def env_values(agent, db_password, secrets):
    """The agent's whole environment: the plan's, the database password, its own secrets (in this order)."""
    values = dict(agent["environment"])
    secret_names = []
    if agent.get("db") is not None:
        if db_password is None:
            raise ValueError(f"{agent['name']}: no database password (the postgresql role sets warden_db_passwords)")
        values[agent["db"].get("password_env", "WARDEN_DB_PASSWORD")] = db_password
        secret_names.append(agent["db"].get("password_env", "WARDEN_DB_PASSWORD"))
    for name in sorted(secrets):
        if name in values:
            raise ValueError(f"{agent['name']}: secret {name} would replace a value the plan sets")
        values[name] = secrets[name]
        secret_names.append(name)
    for name, value in values.items():
        if not ENV_NAME_RE.match(name):
            raise ValueError(f"{agent['name']}: {name!r} is not an environment variable name")
        if not isinstance(value, str) or any(c in value for c in "\n\r\x00"):
            raise ValueError(f"{agent['name']}: the value of {name} is not a single line of text")
    return values, secret_names


def env_text(values):
    return ENV_HEADER + "".join(f"{name}={sh_quote(value)}\n" for name, value in values.items())


def redacted(values, plain, before=None):
    """The file's text with every value not in ``plain`` replaced; REDACTED_CHANGED where it differs from before."""
    lines = [ENV_HEADER]
    for name, value in values.items():
        if name in plain:
            lines.append(f"{name}={sh_quote(value)}\n")
        elif before is not None and before.get(name) != value:
            lines.append(f"{name}={REDACTED_CHANGED}\n")
        else:
            lines.append(f"{name}={REDACTED}\n")
    return "".join(lines)


def ensure_env_file(agent, values, check):
    """Write the agent's env file (mode 0600, the agent's) when its content, owner or mode differ.

    Returns {changed, diff}; the diff never holds a secret: every value the plan does not list is redacted.
    """
    path = agent["paths"]["env_file"]
    user = agent["user"]
    ids = owner_ids(user["name"], user["group"])
    directory, name = os.path.split(path)
    data = env_text(values).encode()
    plain = set(agent["environment"])
    created_dir = makedirs_root(directory, check)
    if created_dir and check:
        before, st = None, None
    else:
        dir_fd = open_dir(directory)
        try:
            before, st = read_regular(dir_fd, name)
            same = (
                before == data
                and ids is not None
                and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (ids[0], ids[1], FILE_MODE)
            )
            if not same and not check:
                if ids is None:
                    raise ValueError(f"{agent['name']}: user {user['name']} or group {user['group']} does not exist")
                write_atomic(dir_fd, name, data, ids, FILE_MODE)
        finally:
            os.close(dir_fd)
        if same:
            return {"changed": False, "diff": None}
    old = parse_env(before.decode(errors="replace")) if before is not None else None
    diff = {
        "before_header": path,
        "after_header": path,
        "before": redacted(old, set(old) & plain) if old is not None else "",
        "after": redacted(values, plain, old if old is not None else {}),
    }
    if before is None and st is not None:
        diff["before"] = f"({_kind(st)}, replaced)\n"
    return {"changed": True, "diff": diff}


def exit_per_agent(module, result, diffs, failures):
    """End a module that works on every agent of a host: its diffs (with --diff), then fail naming every agent
    that failed (the others' results stay in the result) or exit."""
    if module._diff:
        result["diff"] = diffs
    if failures:
        module.fail_json(msg="; ".join(failures), **result)
    module.exit_json(**result)

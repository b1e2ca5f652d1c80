# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""The agent's SSH key pair in its home: made once with FreeBSD's ssh-keygen, never replaced.

Layout (the plan's ``ssh_key``), for an agent whose home is root:AGENT 0750:

- ``HOME/.ssh`` root:AGENT 0750: the agent reads it but cannot add, rename or
  remove anything in it, so it can never plant a link where root writes;
- ``id_ed25519`` AGENT 0600 and ``id_ed25519.pub`` AGENT 0644, as ssh-keygen
  run by the agent would leave them (ssh(1) refuses a private key that
  others can read).

A key that exists is the agent's identity: it is never regenerated.  The pair
is made by root in a private directory inside ``.ssh`` (root's, mode 0700),
owned and moded on descriptors, synced, then hard-linked into place, which
never replaces anything (``link(2)`` fails when the name exists).  The private
key is published first: a run that stops between the two links leaves a
private key without its public half, which the next run derives from it
(``ssh-keygen -y``).  Every ssh-keygen runs under ``timeout(1)``.

Standard library only: runs on the FreeBSD host.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat

from ansible_collections.warden.fleet.plugins.module_utils import agent_runtime

SSH_DIR_MODE = 0o750
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
# FreeBSD base: ssh-keygen(1) and timeout(1) (-k: KILL when TERM did not end it).
SSH_KEYGEN = "/usr/bin/ssh-keygen"
TIMEOUT = "/usr/bin/timeout"
KEYGEN_SECONDS, KEYGEN_KILL_AFTER = "60", "5"
KEY_MAX = 16384


class KeygenError(Exception):
    """ssh-keygen failed or left something else than a key pair."""


def bounded(argv):
    return [TIMEOUT, "-k", KEYGEN_KILL_AFTER, KEYGEN_SECONDS, *argv]


def _open_regular(dir_fd, name, flags=os.O_RDONLY):
    """A descriptor of the regular file ``name`` (never a symlink, FIFO or device), or None."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno in agent_runtime.NOT_A_DIR:
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _set_owner(dir_fd, name, ids, mode, check):
    """Owner and mode of an existing key file, on its descriptor. Returns the action (None, fixed or foreign).

    A file with more than one link is left alone: while ``.ssh`` was the agent's (before this layout), the
    agent could have hard-linked a root file there, and chowning it would hand that file over.
    """
    fd = _open_regular(dir_fd, name)
    if fd is None:
        return "foreign"
    try:
        st = os.fstat(fd)
        if st.st_nlink != 1 or st.st_uid not in (0, ids[0]):
            return "foreign"
        if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (*ids, mode):
            return None
        if not check:
            os.fchown(fd, *ids)
            os.fchmod(fd, mode)
        return "fixed"
    finally:
        os.close(fd)


def _publish(tmp_fd, ssh_fd, name, ids, mode):
    """Own, mode and sync the file made in the private directory, then link it into ``.ssh`` (never replacing)."""
    fd = _open_regular(tmp_fd, name)
    if fd is None:
        raise KeygenError(f"ssh-keygen left no regular file {name}")
    try:
        os.fchown(fd, *ids)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(name, name, src_dir_fd=tmp_fd, dst_dir_fd=ssh_fd, follow_symlinks=False)


def _run_checked(run, argv, what):
    rc, out, err = run(bounded(argv))
    if rc != 0:
        raise KeygenError(f"{what} failed (rc={rc}{', timed out' if rc == 124 else ''}): {(err or out).strip()}")
    return out


def _make_pair(run, spec, ssh_fd, tmp_name, ids):
    private, public = os.path.basename(spec["private"]), os.path.basename(spec["public"])
    tmp_fd = agent_runtime.open_dir(f"{spec['dir']}/{tmp_name}")
    try:
        _run_checked(
            run,
            [SSH_KEYGEN, "-q", "-t", spec["type"], "-N", "", "-C", spec["comment"],
             "-f", f"{spec['dir']}/{tmp_name}/{private}"],
            "ssh-keygen",
        )
        _publish(tmp_fd, ssh_fd, private, ids, PRIVATE_MODE)
        _publish(tmp_fd, ssh_fd, public, ids, PUBLIC_MODE)
        os.fsync(ssh_fd)
    finally:
        os.close(tmp_fd)


def _derive_public(run, spec, ssh_fd, tmp_name, ids):
    """Write the public half of an existing private key (a run stopped between the two links)."""
    public = os.path.basename(spec["public"])
    out = _run_checked(run, [SSH_KEYGEN, "-y", "-f", spec["private"]], "ssh-keygen -y")
    line = out.strip()
    if not line or "\n" in line or len(line) > KEY_MAX:
        raise KeygenError(f"ssh-keygen -y printed no single public key for {spec['private']}")
    tmp_fd = agent_runtime.open_dir(f"{spec['dir']}/{tmp_name}")
    try:
        fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=tmp_fd)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        _publish(tmp_fd, ssh_fd, public, ids, PUBLIC_MODE)
        os.fsync(ssh_fd)
    finally:
        os.close(tmp_fd)


def _with_private_dir(ssh_fd, spec, work):
    """Run ``work(tmp_name)`` with a fresh root-only directory inside ``.ssh``, removed afterwards."""
    tmp_name = f".keygen.{os.getpid()}.{os.urandom(4).hex()}"
    os.mkdir(tmp_name, 0o700, dir_fd=ssh_fd)
    try:
        work(tmp_name)
    finally:
        # root's directory inside root's .ssh: nobody else can have put a link in it
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(f"{spec['dir']}/{tmp_name}")


def public_key(agent):
    """The agent's public key line, or None while it has none (check mode on a new agent)."""
    spec = agent["ssh_key"]
    try:
        dir_fd = agent_runtime.open_dir(spec["dir"])
    except (FileNotFoundError, agent_runtime.UnsafePath):
        return None
    try:
        fd = _open_regular(dir_fd, os.path.basename(spec["public"]))
    finally:
        os.close(dir_fd)
    if fd is None:
        return None
    try:
        return os.read(fd, KEY_MAX).decode("ascii", "replace").strip() or None
    finally:
        os.close(fd)


def ensure_key(agent, run, check):
    """Give one agent its SSH key pair when it has none. Returns {changed, created, fixed, left_alone}.

    ``run(argv)`` runs a command and returns (rc, stdout, stderr).  The home must be laid out first
    (warden.fleet.agent_workspace does it in the same call), except in check mode.
    """
    spec = agent["ssh_key"]
    user = agent["user"]
    home = agent["paths"]["home"]
    if (
        os.path.dirname(spec["dir"]) != home
        or os.path.dirname(spec["private"]) != spec["dir"]
        or spec["public"] != spec["private"] + ".pub"  # where ssh-keygen puts it
    ):
        raise agent_runtime.UnsafePath(f"{agent['name']}: the SSH key pair is not NAME and NAME.pub in {home}/.ssh")
    report = {"created": [], "fixed": [], "left_alone": []}
    ids = agent_runtime.owner_ids(user["name"], user["group"])
    if ids is None and not check:
        raise ValueError(f"{agent['name']}: user {user['name']} or group {user['group']} does not exist")
    if ids is None or not os.path.isdir(home):
        # check mode on a new agent: everything would be made
        report["created"] += [spec["dir"], spec["private"], spec["public"]]
        report["changed"] = True
        return report
    private, public = os.path.basename(spec["private"]), os.path.basename(spec["public"])
    home_fd = agent_runtime.open_dir(home)
    ssh_fd = None
    try:
        # root's, so the agent can never swap a name in it for a link
        ssh_fd, action = agent_runtime.ensure_dir(
            home_fd, os.path.basename(spec["dir"]), (0, ids[1]), SSH_DIR_MODE, check, enforce=True
        )
        if action:
            report[action].append(spec["dir"])
        if ssh_fd is None:  # check mode, .ssh not there yet
            report["created"] += [spec["private"], spec["public"]]
        else:
            has_private = agent_runtime.lstat_at(ssh_fd, private) is not None
            has_public = agent_runtime.lstat_at(ssh_fd, public) is not None
            if not has_private and not has_public:
                if not check:
                    _with_private_dir(ssh_fd, spec, lambda tmp: _make_pair(run, spec, ssh_fd, tmp, ids))
                report["created"] += [spec["private"], spec["public"]]
            elif has_private and not has_public:
                if _set_owner(ssh_fd, private, ids, PRIVATE_MODE, True) == "foreign":
                    report["left_alone"].append(spec["private"])
                else:
                    if not check:
                        _with_private_dir(ssh_fd, spec, lambda tmp: _derive_public(run, spec, ssh_fd, tmp, ids))
                    report["created"].append(spec["public"])
            # a key that exists is the agent's identity: only its owner and mode are set again
            for name, path, mode in ((private, spec["private"], PRIVATE_MODE), (public, spec["public"], PUBLIC_MODE)):
                if path in report["created"] or agent_runtime.lstat_at(ssh_fd, name) is None:
                    continue
                action = _set_owner(ssh_fd, name, ids, mode, check)
                if action:
                    report["fixed" if action == "fixed" else "left_alone"].append(path)
    finally:
        for fd in (ssh_fd, home_fd):
            if fd is not None:
                os.close(fd)
    report["left_alone"] = sorted(set(report["left_alone"]))
    report["changed"] = bool(report["created"] or report["fixed"])
    return report


# --- the hosts the agent reaches: known_hosts and ssh_config ------------------------------------------------------

JEXEC = "/usr/sbin/jexec"
HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) ([A-Za-z0-9+/]+={0,3})( .*)?$")
SSH_FILE_MODE = 0o640
SSH_HEADER = "# Written by warden.fleet from the plan (agent_ssh_hosts); edits here are replaced on the next run.\n"


def read_host_key(run, host):
    """The host key line (type and key, no comment) of one jail's sshd, read through jexec; (None, why) if none."""
    rc, out, err = run(bounded([JEXEC, "-U", "root", host["jail"], "/bin/cat", host["host_key"]]))
    if rc != 0:
        return None, f"{host['jail']}: no {host['host_key']} ({(err or out).strip() or f'rc={rc}'})"
    match = HOST_KEY_RE.match(out.strip())
    if not match or "\n" in out.strip():
        return None, f"{host['jail']}: {host['host_key']} does not hold one SSH public key"
    return f"{match.group(1)} {match.group(3)}", None


def ssh_texts(agent, host_keys):
    """known_hosts and config of one agent, from the plan and the host keys read ({jail: 'type key'})."""
    spec = agent["ssh_key"]
    known = "".join(f"{h['ip']} {host_keys[h['jail']]}\n" for h in spec["hosts"])
    config = "".join(
        f"Host {h['alias']}\n"
        f"\tHostName {h['ip']}\n"
        f"\tUser {h['user']}\n"
        f"\tIdentityFile {spec['private']}\n"
        "\tIdentitiesOnly yes\n"
        f"\tUserKnownHostsFile {spec['known_hosts']}\n"
        "\tStrictHostKeyChecking yes\n"
        # known_hosts is root's: ssh must not try to rewrite it
        "\tUpdateHostKeys no\n"
        for h in spec["hosts"]
    )
    return {spec["known_hosts"]: SSH_HEADER + known, spec["config"]: SSH_HEADER + config}


def ensure_ssh_files(agent, texts, check):
    """Write known_hosts and config (root's, group the agent's, 0640: ssh reads them, the agent cannot change
    them) into the agent's root-owned .ssh when content, owner or mode differ. Returns {changed, written, diff}."""
    spec = agent["ssh_key"]
    user = agent["user"]
    ids = agent_runtime.owner_ids(user["name"], user["group"])
    if ids is None and not check:
        raise ValueError(f"{agent['name']}: user {user['name']} or group {user['group']} does not exist")
    report = {"changed": False, "written": [], "diff": []}
    try:
        dir_fd = agent_runtime.open_dir(spec["dir"])
    except FileNotFoundError as error:
        if not check:
            raise ValueError(f"{agent['name']}: {spec['dir']} does not exist (agent_workspace makes it)") from error
        dir_fd = None
    try:
        if dir_fd is not None:
            st = os.fstat(dir_fd)
            if st.st_uid != 0 or st.st_mode & 0o022:
                raise agent_runtime.UnsafePath(f"{spec['dir']} is not root's (warden.fleet.agent_workspace sets it)")
        for path, text in texts.items():
            name = os.path.basename(path)
            before, st = (None, None) if dir_fd is None else agent_runtime.read_regular(dir_fd, name)
            data = text.encode()
            wanted = None if ids is None else (0, ids[1], SSH_FILE_MODE)
            if before == data and st is not None and wanted == (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)):
                continue
            if not check:
                agent_runtime.write_atomic(dir_fd, name, data, (0, ids[1]), SSH_FILE_MODE)
            report["written"].append(path)
            report["diff"].append({"before_header": path, "after_header": path,
                                   "before": before.decode(errors="replace") if before is not None else "",
                                   "after": text})
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    report["changed"] = bool(report["written"])
    return report

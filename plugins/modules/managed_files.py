#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: managed_files
short_description: Write (or remove) many root-owned files of the host in one call, atomically
version_added: 0.1.0
description:
  - Brings every file of O(files) to its wanted content, mode, owner and group in one call per host, whatever
    the number of agents (the agents' rc.d scripts, their newsyslog files, the session helper).
  - Reads each file once; writes only those that differ, each atomically - a temporary file in the same
    directory, written, owned, mode set and fsynced before it is renamed over the old one, then the directory is
    fsynced. A failure leaves the previous file in place.
  - Never follows a symbolic link - neither at the file (opened with C(O_NOFOLLOW)) nor at its directory (the
    directory is opened once, without following, and every operation is relative to that descriptor). A link
    where a file or directory should be fails the call before anything is written.
  - Meant for directories only root can write (C(/usr/local/etc/rc.d), C(/usr/local/libexec/warden),
    C(/usr/local/etc/newsyslog.conf.d)); missing directories are created 0755 root:wheel.
  - Not for secrets - the diff shows the content. Environment files have their own module.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  files:
    description: The files to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: The wanted content (text, written as UTF-8). Required unless O(files[].state=absent).
        type: str
      mode:
        description: Octal mode.
        type: str
        default: "0644"
      owner:
        description: Owner (name).
        type: str
        default: root
      group:
        description: Group (name).
        type: str
        default: wheel
      state:
        description: C(present) writes the file, C(absent) removes it if it exists.
        type: str
        choices: [present, absent]
        default: present
attributes:
  check_mode:
    support: full
    description: Reports which files would change and writes nothing.
  diff_mode:
    support: full
    description: One text diff per changed file (mode and owner changes are in RV(changed_files)).
notes:
  - Paths must be absolute and unique in O(files).
"""

EXAMPLES = r"""
- name: Install every agent's rc.d script in one call
  warden.fleet.managed_files:
    files:
      - path: /usr/local/etc/rc.d/atlas
        content: "{{ lookup('ansible.builtin.template', 'rc.d.sh.j2') }}"
        mode: "0555"
      - path: /usr/local/etc/newsyslog.conf.d/warden-atlas.conf
        content: "/var/log/atlas.log root:wheel 600 7 10240 * J /var/run/atlas.pid\n"
  register: warden_files

- name: Remove a removed agent's script
  warden.fleet.managed_files:
    files:
      - path: /usr/local/etc/rc.d/hermes
        state: absent
"""

RETURN = r"""
changed_files:
  description: Paths written or removed (or, in check mode, that would be), in the order of O(files).
  returned: always
  type: list
  elements: str
  sample: [/usr/local/etc/rc.d/atlas]
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first


class Refused(Exception):
    """A path that must not be written (a link, not absolute, a duplicate)."""


def open_dir(path, create, check_mode):
    """A descriptor of the directory ``path``, walked from / without following any link.

    Missing directories are created 0755 root:wheel when ``create`` (in check
    mode, None is returned for a directory that does not exist yet).
    """
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in [p for p in path.split("/") if p]:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create or check_mode:
                    os.close(fd)
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.fchown(nxt, 0, 0)
                os.fchmod(nxt, 0o755)
            except OSError as exc:
                raise Refused(f"{path}: {part} is not a directory (or is a link): {exc.strerror}") from exc
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_current(dir_fd, name):
    """(bytes, stat) of the file, or (None, None); refuses a link or a non-file."""
    if dir_fd is None:
        return None, None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise Refused(f"{name}: cannot be opened without following a link: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{name}: not a regular file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def write_atomically(dir_fd, name, data, mode, uid, gid):
    """Temporary file in the same directory, content, owner, mode, fsync, rename, fsync the directory."""
    tmp = f".{name}.warden-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.fsync(dir_fd)


def ids(owner, group):
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError as exc:
        raise Refused(f"unknown owner {owner}") from exc
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise Refused(f"unknown group {group}") from exc
    return uid, gid


def plan_file(spec, check_mode):
    """Return (changed, diff, action) for one file; action() applies it."""
    path = spec["path"]
    if not os.path.isabs(path):
        raise Refused(f"{path}: not an absolute path")
    directory, name = os.path.split(path)
    present = spec["state"] == "present"
    dir_fd = open_dir(directory, create=present, check_mode=check_mode)
    try:
        old, st = read_current(dir_fd, name)
    except BaseException:
        if dir_fd is not None:
            os.close(dir_fd)
        raise
    before = old.decode("utf-8", "replace") if old is not None else ""
    if not present:
        changed = old is not None
        diff = {"before_header": path, "after_header": path, "before": before, "after": ""}

        def remove():
            os.unlink(name, dir_fd=dir_fd)
            os.fsync(dir_fd)
        return changed, diff, remove, dir_fd
    if spec.get("content") is None:
        raise Refused(f"{path}: content is required")
    data = spec["content"].encode("utf-8")
    mode = int(spec["mode"], 8)
    uid, gid = ids(spec["owner"], spec["group"])
    changed = (old != data or st is None or stat.S_IMODE(st.st_mode) != mode
               or st.st_uid != uid or st.st_gid != gid)
    diff = {"before_header": path, "after_header": path, "before": before, "after": spec["content"]}
    return changed, diff, lambda: write_atomically(dir_fd, name, data, mode, uid, gid), dir_fd


def run(module):
    files = module.params["files"]
    paths = [f["path"] for f in files]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        module.fail_json(msg=f"paths given more than once: {', '.join(duplicates)}")
    changed_files, diffs = [], []
    for spec in files:
        try:
            changed, diff, action, dir_fd = plan_file(spec, module.check_mode)
        except Refused as exc:
            module.fail_json(msg=str(exc), changed_files=changed_files)
        try:
            if changed:
                changed_files.append(spec["path"])
                diffs.append(diff)
                if not module.check_mode:
                    action()
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    result = {"changed": bool(changed_files), "changed_files": changed_files}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str"},
                    "mode": {"type": "str", "default": "0644"},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "wheel"},
                    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
                },
            },
        },
        supports_check_mode=True,
    )
    run(module)


if __name__ == "__main__":
    main()

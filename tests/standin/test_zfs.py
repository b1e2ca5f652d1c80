"""The zfs(8) double: `list -H -o name,mountpoint -t filesystem` as the backup
reads it, and snapshots readable under MOUNTPOINT/.zfs/snapshot/SNAP as ZFS
presents them (zfsprops(7) `snapdir`), frozen at the time of the snapshot and
gone with `zfs destroy`. The errors are zfs(8)'s (cddl/contrib/opensolaris
zfs_main.c: "dataset does not exist", "dataset already exists", "could not
find any snapshots to destroy").

The stand-in has no pools: a test gives the simulated kernel a dataset
mounted at a directory, as a host whose agents' homes are datasets has.
"""

import json
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in needs root (chroot, mounts)")

DOUBLES_PYTHON = "/usr/libexec/standin/bin/python3.11"


def add_dataset(host, name, mountpoint):
    """Give the stand-in's simulated kernel a ZFS file system mounted at mountpoint."""
    code = ("import sys; sys.path.insert(0, '/usr/libexec/standin')\n"
            "from standin_doubles.common import kernel\n"
            "with kernel(write=True) as k:\n"
            "    k['zfs']['datasets'][sys.argv[1]] = sys.argv[2]\n")
    proc = H.exec_in(host, [DOUBLES_PYTHON, "-c", code, name, mountpoint], capture=True)
    assert proc.returncode == 0, proc.stderr


def sh(host, script):
    proc = H.exec_in(host, ["/bin/sh", "-c", script], capture=True)
    return proc.returncode, proc.stdout, proc.stderr


def ok(host, script):
    rc, out, err = sh(host, script)
    assert rc == 0, (script, rc, out, err)
    return out


@pytest.fixture(scope="module")
def host():
    name = "pytest-zfs-" + uuid.uuid4().hex[:8]
    H.up(name)
    yield name
    H.down(name)


def test_list_prints_name_and_mountpoint_tab_separated(host):
    rc, out, err = sh(host, "zfs list -H -o name,mountpoint -t filesystem")
    assert (rc, out, err) == (0, "", "no datasets available\n")
    ok(host, "mkdir -p /home/zt/workspace /home/zt/state")
    add_dataset(host, "zroot/home/zt/workspace", "/home/zt/workspace")
    add_dataset(host, "zroot/home/zt/state", "/home/zt/state")
    assert ok(host, "zfs list -H -o name,mountpoint -t filesystem") == (
        "zroot/home/zt/state\t/home/zt/state\nzroot/home/zt/workspace\t/home/zt/workspace\n")


def test_a_snapshot_is_read_under_dot_zfs_frozen_and_gone_after_destroy(host):
    ok(host, "mkdir -p /home/zs/ws/notes && printf 'one\\n' > /home/zs/ws/notes/a.md"
             " && ln -s notes/a.md /home/zs/ws/today && chown -R nobody /home/zs/ws/notes"
             " && chmod 0640 /home/zs/ws/notes/a.md")
    add_dataset(host, "zroot/home/zs/ws", "/home/zs/ws")
    root = H.paths(host)["root"]
    live = os.path.join(root, "home/zs/ws")
    snap = os.path.join(live, ".zfs/snapshot/s1")

    ok(host, "zfs snapshot zroot/home/zs/ws@s1")
    ok(host, "printf 'two\\n' > /home/zs/ws/notes/a.md && printf 'new\\n' > /home/zs/ws/b.md")

    with open(os.path.join(snap, "notes/a.md"), encoding="utf-8") as fh:
        assert fh.read() == "one\n", "the snapshot keeps the content of its time"
    assert not os.path.exists(os.path.join(snap, "b.md"))
    assert os.readlink(os.path.join(snap, "today")) == "notes/a.md"
    st, live_st = os.lstat(os.path.join(snap, "notes/a.md")), os.lstat(os.path.join(live, "notes/a.md"))
    assert (st.st_mode & 0o7777, st.st_uid) == (0o640, live_st.st_uid) and live_st.st_uid != 0
    assert os.lstat(os.path.join(snap, "notes")).st_uid == live_st.st_uid
    assert not os.path.exists(os.path.join(snap, ".zfs")), "a snapshot holds no .zfs of its own"

    rc, _out, err = sh(host, "zfs snapshot zroot/home/zs/ws@s1")
    assert rc == 1 and err == "cannot create snapshot 'zroot/home/zs/ws@s1': dataset already exists\n"
    assert ok(host, "zfs list -H -o name -t snapshot") == "zroot/home/zs/ws@s1\n"

    ok(host, "zfs destroy zroot/home/zs/ws@s1")
    assert not os.path.exists(os.path.join(live, ".zfs")), "no snapshot left: .zfs is hidden again"
    with open(os.path.join(live, "notes/a.md"), encoding="utf-8") as fh:
        assert fh.read() == "two\n", "the live file system is untouched"
    rc, _out, err = sh(host, "zfs destroy zroot/home/zs/ws@s1")
    assert rc == 1 and err == "could not find any snapshots to destroy; check snapshot names.\n"
    rc, _out, err = sh(host, "zfs snapshot zroot/nosuch@s1")
    assert rc == 1 and err == "cannot open 'zroot/nosuch': dataset does not exist\n"
    with open(os.path.join(root, ".standin/calls.log"), encoding="utf-8") as fh:
        calls = [json.loads(line) for line in fh]
    assert {"cmd": "zfs", "args": ["destroy", "zroot/home/zs/ws@s1"]} in calls


@pytest.mark.parametrize("form", ["zfs snapshot -r zroot/home/zs/ws@s2", "zfs destroy zroot/home/zs/ws",
                                  "zfs list -o name,compression", "zfs create zroot/x"])
def test_other_forms_are_refused(host, form):
    rc, _out, err = sh(host, form)
    assert rc == 64 and "is not implemented" in err

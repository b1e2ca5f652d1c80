"""Boot files and `standin reboot NAME` of the stand-in FreeBSD host.

seed_etc() puts FreeBSD's boot machinery into a new stand-in's /etc: /etc/rc,
/etc/rc.shutdown, /etc/network.subr and the base rc.d scripts (netif,
routing, pf, pflog, sysctl, jail and the FILESYSTEMS/NETWORKING/SERVERS/
DAEMON/LOGIN milestones), all from tests/standin/doubles/etc/.

reboot() does what reboot(8) and the next boot do to a FreeBSD host:

1. /etc/rc.shutdown runs (scripts with KEYWORD shutdown, reverse rcorder,
   "faststop": rc.d/bastille stops the jails);
2. every process of the stand-in ends (TERM, then KILL), as `down` finds
   them, but the stand-in stays;
3. what lives only in the kernel or in memory is gone: cloned interfaces and
   every address (lo0 and the external interface stay, the external one
   with its primary address, as its NIC and the installer's configuration
   would bring it back), routes, PF rules, tables and the enabled flag,
   runtime sysctl values, running jails (their mounts), the jail id
   counter; /var/run is emptied (rc.d/cleanvar), /tmp only with
   clear_tmp_enable=YES (rc.d/tmp);
4. `/etc/rc autoboot` runs: rcorder over /etc/rc.d and /usr/local/etc/rc.d,
   each script with "faststart" (sysctl, netif, routing, pflog, pf, ...,
   then the enabled local services such as bastille, which starts the jails
   with boot on).

Only what rc.conf (and sysctl.conf, pf.conf, the jails' settings) says comes
back: an address or a bridge made at runtime with ifconfig does not.
"""

import json
import os
import shutil
import signal
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ETC_SRC = os.path.join(HERE, "doubles", "etc")
# files of doubles/etc copied to the stand-in's /etc (defaults.rc.conf and
# rc.subr are placed by standin_host itself)
BOOT_FILES = (("rc", 0o644), ("rc.shutdown", 0o644), ("network.subr", 0o644))

# Runs inside the stand-in after every process has ended: resets the
# simulated kernel through common.kernel(write=True), so whatever follows
# kernel changes (real namespaces) follows this one too.
_RESET = r"""
import json, os, sys
sys.path.insert(0, "/usr/libexec/standin")
from standin_doubles import common, jails
ext_if = sys.argv[1]
report = {"interfaces_removed": [], "jails_stopped": [], "addresses_removed": {}}
with common.kernel() as k:
    running = {n: j for n, j in k["jails"].items() if j.get("running")}
# the kernel ends every jail at reboot: their processes are gone already, so
# no exec.stop runs; their mounts go (jails.py: what "jail -r" does after it)
for name, j in sorted(running.items()):
    try:
        jails.kill_and_unmount(j["path"], name)
    except Exception as exc:  # report, the reboot goes on as the kernel's would
        report.setdefault("errors", []).append(f"{name}: {exc}")
    report["jails_stopped"].append(name)
with common.kernel(write=True) as k:
    fresh = common.default_kernel()
    for name in sorted(k["ifaces"]):
        i = k["ifaces"][name]
        if name == "lo0":
            keep = [a for a in i["inet"] if a.startswith("127.0.0.1/")][:1]
        elif name == ext_if:
            keep = i["inet"][:1]
        else:
            report["interfaces_removed"].append(name)
            del k["ifaces"][name]
            continue
        dropped = [a for a in i["inet"] if a not in keep]
        if dropped:
            report["addresses_removed"][name] = dropped
        i["inet"] = keep
        i["members"], i["private"] = [], []
    k["jails"] = {}
    k["next_jid"] = fresh.get("next_jid", 1)
    k["routes"] = fresh["routes"]
    k["sysctl"] = fresh["sysctl"]
    k["pf"] = fresh["pf"]
print(json.dumps(report))
"""


def seed_etc(etc):
    """Copy /etc/rc, rc.shutdown, network.subr and the base rc.d scripts."""
    for name, mode in BOOT_FILES:
        dst = os.path.join(etc, name)
        shutil.copyfile(os.path.join(ETC_SRC, name), dst)
        os.chmod(dst, mode)
    rcd = os.path.join(etc, "rc.d")
    os.makedirs(rcd, exist_ok=True)
    src = os.path.join(ETC_SRC, "rc.d")
    for name in sorted(os.listdir(src)):
        dst = os.path.join(rcd, name)
        shutil.copyfile(os.path.join(src, name), dst)
        os.chmod(dst, 0o555)


def _end_processes(H, p, timeout=10.0):
    """TERM, then KILL, every process of the stand-in; returns their pids."""
    killed = []
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while True:
        pids = H.processes_under(p["base"])
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.2)
        if time.monotonic() > deadline - timeout / 2:
            sig = signal.SIGKILL
        if time.monotonic() > deadline:
            left = H.processes_under(p["base"])
            if left:
                raise H.StandinError(f"reboot: processes survived SIGKILL: {left}")
            return killed


def _purge(directory, keep_dirs):
    """Remove the files below ``directory`` (rc.d/cleanvar purgedir keeps dirs)."""
    if not os.path.isdir(directory):
        return
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            if keep_dirs:
                _purge(path, keep_dirs)
            else:
                shutil.rmtree(path)
        else:
            os.unlink(path)


def reboot(name):
    """Shut the stand-in down and boot it again from its configuration."""
    import standin_host as H

    p = H.paths(name)
    if not H.is_up(name):
        raise H.StandinError(f"stand-in {name} is not up")
    root = p["root"]
    with open(p["meta"], encoding="utf-8") as fh:
        meta = json.load(fh)
    report = {"name": name, "label": H.LABEL}
    down = H.exec_in(name, ["/bin/sh", "/etc/rc.shutdown", "reboot"], capture=True)
    report["shutdown"] = {"rc": down.returncode, "output": down.stdout, "errors": down.stderr}
    report["killed"] = _end_processes(H, p)
    # the doubles' own interpreter inside the stand-in (layout.PYTHON)
    python = getattr(H.layout, "PYTHON", "/usr/bin/python3")
    reset = H.exec_in(name, [python, "-c", _RESET, meta.get("ext_if", "vtnet0")], capture=True)
    if reset.returncode != 0:
        raise H.StandinError(f"reboot: resetting the kernel failed: {reset.stderr.strip()}")
    report["cleared"] = json.loads(reset.stdout.strip().splitlines()[-1])
    # rc.d/cleanvar: /var/run is emptied at every boot
    _purge(os.path.join(root, "var/run"), keep_dirs=True)
    ok, clear_tmp = H.rcconf.sh_get(H.rcconf.default_conf_files(root), "clear_tmp_enable", root=root)
    if ok and clear_tmp.lower() in ("yes", "true", "on", "1"):
        _purge(os.path.join(root, "tmp"), keep_dirs=False)
    boot = H.exec_in(name, ["/bin/sh", "/etc/rc", "autoboot"], capture=True)
    report["boot"] = {"rc": boot.returncode, "output": boot.stdout, "errors": boot.stderr}
    return report

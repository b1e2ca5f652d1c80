#!/usr/bin/env python
"""Benchmark of the workspace backup (not a test; `make bench-backup`).

Generates realistic agent workspaces (many small markdown files, some JSON
state, a few large files, part of them incompressible) and measures, in the
same run and on the same tree:

  full_vs_tar_zstd     full backup of every agent / `tar -cf - | zstd -3 -T0` of the same tree
  unchanged_vs_full    re-run with nothing changed / the full backup
  restore_vs_zstd_tar  restore of every agent / `zstd -d -c | tar -xf -` of the baseline archive

and against the two best-known peers, restic and borg, given the same tree
(one repository each, zstd compression; restic always encrypts, borg runs with
`--encryption none`):

  full_vs_best_peer       full backup / the faster peer's first backup into an empty repository
  unchanged_vs_best_peer  unchanged re-run / the faster peer's second backup with nothing changed
  restore_vs_best_peer    restore of every agent / the faster peer's restore into an empty directory
  unchanged_vs_stat_walk  unchanged re-run / a bare find(1) stat walk of the same tree

A peer that is not installed is reported with how to install it and left out;
the other figures are still printed.

Usage: python bench/backup.py [--agents 20] [--size-mb 300] [--reps 3] [--dir DIR] [--keep] [--no-peers]

Each figure is the median of --reps repetitions; within a repetition the
baseline, the measured run and the peers take turns, so all see the same warm
page cache and the same machine load.

The restores run with the agents' rc.d service left out of the plan: the
benchmark measures the data path and never calls service(8) on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.warden.fleet.plugins.module_utils import backup, fleet_model  # noqa: E402

# fmt: off
WORDS = ("agent", "memory", "skill", "soul", "workspace", "note", "task", "user", "prefers", "short", "answers",
         "search", "tool", "result", "jail", "database", "backup", "restore", "verify", "manifest", "retention",
         "schedule", "gateway", "token", "session", "context", "summary")
# fmt: on


def text(rng, size):
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _word in range(rng.randint(6, 16))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:size]


def generate(base, agents, size_mb, seed=7):
    """Per agent: ~60% of its bytes in a few large files (half random, half text), the rest in many
    small markdown and JSON files in nested directories."""
    rng = random.Random(seed)
    per_agent = size_mb * 1024 * 1024 // agents
    total_files = 0
    for a in range(agents):
        ws = base / f"agent{a:02d}" / "workspace"
        state = base / f"agent{a:02d}" / "state"
        large = int(per_agent * 0.6)
        for i in range(3):
            path = ws / "data" / f"large{i}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            chunk = large // 3
            if i == 0:
                path.write_bytes(os.urandom(chunk))
            else:
                block = text(rng, 1 << 20).encode()
                path.write_bytes((block * (chunk // len(block) + 1))[:chunk])
            total_files += 1
        small_budget, written, i = per_agent - large, 0, 0
        while written < small_budget:
            size = rng.choice((600, 1500, 3000, 6000, 12000))
            sub = ws / rng.choice(("notes", "memories/curated", f"skills/s{i % 9}", f"projects/p{i % 13}"))
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i:05d}.md").write_text(text(rng, size))
            written += size
            i += 1
        total_files += i
        state.mkdir(parents=True, exist_ok=True)
        for j in range(20):
            (state / f"session{j}.json").write_text(json.dumps({"turn": j, "summary": text(rng, 800)}) + "\n")
        total_files += 20
    return total_files


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_rounds(reps, runs):
    """Run every callable of `runs` (name -> callable returning seconds) in turn, reps times;
    return name -> median seconds. A peer whose run fails is reported and dropped."""
    times = {name: [] for name in runs}
    for _rep in range(reps):
        for name, fn in runs.items():
            if name not in times:
                continue
            try:
                times[name].append(fn())
            except PeerError as exc:
                print(f"{name}: {exc}; left out")
                del times[name]
    return {name: statistics.median(t) for name, t in times.items()}


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


class PeerError(Exception):
    """A peer's command failed."""


class Peer:
    """A peer backup tool given the same tree: one repository, a first (full) backup into an
    empty repository, a second backup with nothing changed, a restore into an empty directory.
    Repository creation and deleting the previous repository or restored copy are outside
    the timings."""

    name = ""
    command = ""
    install = ""

    def __init__(self, work, root):
        self.work = work / self.name
        self.root = root  # holds `agents`, the tree every peer backs up
        self.repo = self.work / "repo"
        self.runs = 0

    def available(self):
        return shutil.which(self.command) is not None

    def env(self):
        return dict(os.environ)

    def call(self, argv, cwd=None):
        """Run argv; return its wall time in seconds."""
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=self.env(), capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise PeerError(f"`{' '.join(map(str, argv))}` exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
        return elapsed

    def version(self):
        argv = [self.command, "version" if self.command == "restic" else "--version"]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        lines = (proc.stdout or proc.stderr).strip().splitlines()
        return lines[0] if proc.returncode == 0 and lines else "version unknown"

    def full(self):
        shutil.rmtree(self.work, ignore_errors=True)  # outside the timing
        self.work.mkdir(parents=True)
        self.runs = 0
        self.call(self.init_argv())
        return self.backup()

    def backup(self):
        self.runs += 1
        return self.call(self.backup_argv(), cwd=self.root)

    def restore(self):
        target = self.work / "extract"
        shutil.rmtree(target, ignore_errors=True)  # outside the timing
        target.mkdir()
        return self.call(self.restore_argv(target), cwd=target)

    def repo_size(self):
        return sum(p.stat().st_size for p in self.repo.rglob("*") if p.is_file())

    def init_argv(self):
        raise NotImplementedError

    def backup_argv(self):
        raise NotImplementedError

    def restore_argv(self, target):
        raise NotImplementedError


class Restic(Peer):
    """restic: repository format 2, `--compression auto` (zstd at its default level). Encryption
    cannot be turned off in restic: every blob is encrypted and authenticated (AES-256-CTR,
    Poly1305-AES), and each command first derives the repository key from the password (scrypt)."""

    name = command = "restic"
    install = "apt-get install restic (Debian/Ubuntu) or pkg install restic (FreeBSD)"

    def env(self):
        env = dict(os.environ)
        # a fixed password for a throw-away repository of generated data
        env.update(RESTIC_PASSWORD="warden-bench", RESTIC_CACHE_DIR=str(self.work / "cache"))
        return env

    def init_argv(self):
        return ["restic", "--repo", str(self.repo), "--quiet", "init"]

    def backup_argv(self):
        repo = ["restic", "--repo", str(self.repo), "--quiet"]
        return repo + ["--compression", "auto", "backup", "--host", "bench", "agents"]

    def restore_argv(self, target):
        return ["restic", "--repo", str(self.repo), "--quiet", "restore", "latest", "--target", str(target)]


class Borg(Peer):
    """borg 1.x: `--encryption none` (chunks still named by their sha256), `--compression zstd,3`;
    single-threaded by design."""

    name = command = "borg"
    install = "apt-get install borgbackup (Debian/Ubuntu) or pkg install py311-borgbackup (FreeBSD)"

    def env(self):
        env = dict(os.environ)
        env.update(
            BORG_BASE_DIR=str(self.work / "base"),  # cache, files cache and security dir of this repository only
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        return env

    def init_argv(self):
        return ["borg", "init", "--encryption", "none", str(self.repo)]

    def backup_argv(self):
        return ["borg", "create", "--compression", "zstd,3", f"{self.repo}::run{self.runs}", "agents"]

    def restore_argv(self, target):
        return ["borg", "extract", f"{self.repo}::run1"]  # the full backup; the unchanged ones hold the same tree


PEERS = (Restic, Borg)


def stat_walk_argv(tree):
    """find(1) stating every entry: GNU find prints the fields the unchanged check compares
    (size, mtime, inode, mode); a find without -printf (BSD) lists them with -ls."""
    gnu = subprocess.run(["find", "--version"], capture_output=True, check=False).returncode == 0
    if gnu:
        return ["find", str(tree), "-printf", "%P %s %T@ %i %m\\n"]
    return ["find", str(tree), "-ls"]


def ratio(ours, theirs, digits=2):
    return f"{ours / theirs:.{digits}f}" if theirs else "n/a"


def best(peer_times):
    """(name, seconds) of the fastest peer, or (None, None) without one."""
    if not peer_times:
        return None, None
    name = min(peer_times, key=peer_times.get)
    return name, peer_times[name]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=300, help="total size of the workspaces (default 300)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement, median taken (default 3)")
    parser.add_argument("--dir", help="work directory (default: a temporary directory, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-peers", action="store_true", help="skip restic and borg")
    args = parser.parse_args()

    work = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="warden-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(work, args):
    root = work / "root"
    agents_dir = root / "agents"
    agents = {
        f"agent{a:02d}": {
            "subnet": f"10.{a // 200}.{a % 200 + 1}",
            "command": "/usr/local/bin/agent-runtime",
            "jails": ["git"],
        }
        for a in range(args.agents)
    }
    hostvars = {
        "warden_ext_if": "vtnet0",
        "warden_root": str(root),
        "warden_etc_dir": str(work / "etc"),
        "warden_backup": {"dir": str(work / "backups")},
        "warden_agents": agents,
    }
    plan, problems = fleet_model.build_plan("bench.example.net", hostvars)
    if problems:
        raise SystemExit("\n".join(str(p) for p in problems))
    for agent in plan["agents"].values():
        agent["service"] = {}

    t = timed(lambda: generate(agents_dir, args.agents, args.size_mb))
    files = sum(len(names) for _dir, _subdirs, names in os.walk(agents_dir))
    size = sum(p.stat().st_size for p in agents_dir.rglob("*") if p.is_file())
    print(f"generated {args.agents} agents, {files} files, {size / 1e6:.1f} MB in {t:.1f}s under {work}")
    sh(f"tar -C {root} -cf - agents | cat > /dev/null")  # same warm page cache for everyone

    peers = []
    for cls in () if args.no_peers else PEERS:
        peer = cls(work / "peers", root)
        if peer.available():
            print(f"peer {peer.name}: {peer.version()}")
            peers.append(peer)
        else:
            print(f"peer {peer.name}: not installed, left out; install it with {peer.install}")

    baseline_archive = work / "baseline.tar.zst"

    def baseline():
        sh(f"tar -C {root} -cf - agents | zstd -3 -T0 -q -f -o {baseline_archive}")

    def full():
        shutil.rmtree(work / "backups", ignore_errors=True)  # outside the timing
        start = time.perf_counter()
        res = backup.backup_fleet(plan)
        elapsed = time.perf_counter() - start
        assert len(res["created"]) == args.agents, res["summary"]
        return elapsed

    runs = {"baseline": lambda: timed(baseline), "ours": full}
    runs.update({peer.name: peer.full for peer in peers})
    m = median_rounds(args.reps, runs)
    t_base, t_full = m.pop("baseline"), m.pop("ours")
    peers = [peer for peer in peers if peer.name in m]
    peer_full = m
    print(f"tar | zstd -3 -T0: {t_base:.2f}s ({baseline_archive.stat().st_size / 1e6:.1f} MB)")
    ours = sum(p.stat().st_size for p in (work / "backups").rglob("*.tar.zst"))
    print(f"full backup:       {t_full:.2f}s ({ours / 1e6:.1f} MB in {args.agents} archives + manifests)")
    for peer in peers:
        label = f"{peer.name} full:"
        print(f"{label:19}{peer_full[peer.name]:.2f}s ({peer.repo_size() / 1e6:.1f} MB repository)")

    def unchanged():
        res = backup.backup_fleet(plan)
        assert res["created"] == [] and not res["failed_agents"], res["summary"]

    walk = stat_walk_argv(agents_dir)

    def stat_walk():
        with open(os.devnull, "wb") as devnull:
            return timed(lambda: subprocess.run(walk, stdout=devnull, check=True))

    runs = {"ours": lambda: timed(unchanged), "stat_walk": stat_walk}
    runs.update({peer.name: peer.backup for peer in peers})
    m = median_rounds(max(3, args.reps), runs)
    t_unchanged, t_walk = m.pop("ours"), m.pop("stat_walk")
    peers = [peer for peer in peers if peer.name in m]
    peer_unchanged = m
    print(f"unchanged re-run:  {t_unchanged:.3f}s")
    print(f"find stat walk:    {t_walk:.3f}s ({' '.join(walk[2:])})")
    for peer in peers:
        label = f"{peer.name} unchanged:"
        print(f"{label:19}{peer_unchanged[peer.name]:.3f}s")

    extract = work / "extract"

    def baseline_restore():
        shutil.rmtree(extract, ignore_errors=True)
        extract.mkdir()
        return timed(lambda: sh(f"zstd -d -q -c {baseline_archive} | tar -C {extract} -xf -"))

    def restore_all():
        for prev in agents_dir.glob("*/*.prev-*"):
            shutil.rmtree(prev)
        return timed(lambda: [backup.restore_agent(plan, name, start_service="never") for name in plan["agents"]])

    # cleanup (deleting the previous copy) is outside the timings
    runs = {"baseline": baseline_restore, "ours": restore_all}
    runs.update({peer.name: peer.restore for peer in peers})
    m = median_rounds(args.reps, runs)
    t_base_restore, t_restore = m.pop("baseline"), m.pop("ours")
    peer_restore = m
    print(f"zstd -d | tar -x:  {t_base_restore:.2f}s")
    print(f"restore (verify archive + every file, swap, sync): {t_restore:.2f}s")
    for peer in peers:
        if peer.name in peer_restore:
            label = f"{peer.name} restore:"
            print(f"{label:19}{peer_restore[peer.name]:.2f}s")
    print(f"full_vs_tar_zstd={t_full / t_base:.2f}")
    print(f"unchanged_vs_full={t_unchanged / t_full:.3f}")
    print(f"restore_vs_zstd_tar={t_restore / t_base_restore:.2f}")
    for key, ours_t, peer_t, digits in (
        ("full", t_full, peer_full, 2),
        ("unchanged", t_unchanged, peer_unchanged, 3),
        ("restore", t_restore, peer_restore, 2),
    ):
        name, theirs = best(peer_t)
        print(f"{key}_vs_best_peer={ratio(ours_t, theirs, digits)} ({name or 'no peer installed'})")
    print(f"unchanged_vs_stat_walk={ratio(t_unchanged, t_walk)}")


if __name__ == "__main__":
    main()

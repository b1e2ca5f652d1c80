#!/usr/bin/env python
"""Benchmark of the workspace backup (not a test; `make bench-backup`).

Generates realistic agent workspaces (many small markdown files, some JSON
state, a few large files, part of them incompressible) and measures, in the
same run and on the same tree:

  full_vs_tar_zstd     full backup of every agent / `tar -cf - | zstd -3 -T0` of the same tree
  unchanged_vs_full    re-run with nothing changed / the full backup
  restore_vs_zstd_tar  restore of every agent / `zstd -d -c | tar -xf -` of the baseline archive

Usage: python bench/backup.py [--agents 20] [--size-mb 300] [--reps 3] [--dir DIR] [--keep]

Each figure is the median of --reps repetitions; a baseline and the measured
run alternate, so both see the same warm page cache and the same machine load.

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


def median_pairs(reps, first, second):
    """Run first() and second() alternately reps times; return their median timings."""
    a, b = [], []
    for _rep in range(reps):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def sh(cmd):
    subprocess.run(cmd, shell=True, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=300, help="total size of the workspaces (default 300)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement, median taken (default 3)")
    parser.add_argument("--dir", help="work directory (default: a temporary directory, removed afterwards)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
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

    t_base, t_full = median_pairs(args.reps, lambda: timed(baseline), full)
    print(f"tar | zstd -3 -T0: {t_base:.2f}s ({baseline_archive.stat().st_size / 1e6:.1f} MB)")
    ours = sum(p.stat().st_size for p in (work / "backups").rglob("*.tar.zst"))
    print(f"full backup:       {t_full:.2f}s ({ours / 1e6:.1f} MB in {args.agents} archives + manifests)")

    def unchanged():
        res = backup.backup_fleet(plan)
        assert res["created"] == [] and not res["failed_agents"], res["summary"]

    t_unchanged = statistics.median(timed(unchanged) for _rep in range(max(3, args.reps)))
    print(f"unchanged re-run:  {t_unchanged:.3f}s")

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
    t_base_restore, t_restore = median_pairs(args.reps, baseline_restore, restore_all)
    print(f"zstd -d | tar -x:  {t_base_restore:.2f}s")
    print(f"restore (verify archive + every file, swap, sync): {t_restore:.2f}s")
    print(f"full_vs_tar_zstd={t_full / t_base:.2f}")
    print(f"unchanged_vs_full={t_unchanged / t_full:.3f}")
    print(f"restore_vs_zstd_tar={t_restore / t_base_restore:.2f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark of a no-op re-run of site.yml as the fleet grows (not a test; `make bench-fleet`).

Converges `site.yml` on a stand-in FreeBSD host (tests/standin, a Linux chroot
with doubles of FreeBSD's commands, not FreeBSD) with 1, 10 and 20 agents,
then re-runs it with nothing to change and prints, in the same run:

  calls_per_extra_agent  module executions a no-op re-run adds per extra agent
                         ((calls at 20 agents - calls at 1 agent) / 19); target <= 1
  noop_20_vs_1           no-op re-run wall time with 20 agents / with 1 agent
                         (median of --reps runs each); target <= 1.5

A module execution is one task result on the host, or one item of a looped
task; skipped tasks and items do not count.

Usage (root, like the stand-in): python bench/fleet.py [--reps 3] [--sizes 1,10,20]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "standin" / "standin"
PLAYBOOK = ROOT / "site.yml"
HOST = "bench.example.net"
KEEP = False


def inventory(agents):
    """An inventory of one host with ``agents`` agents, each on its own /24."""
    fleet = {}
    for i in range(1, agents + 1):
        fleet[f"agent{i:02d}"] = {"subnet": f"10.{100 + i}.0", "command": "/usr/local/bin/agent-runtime",
                                  "port": 20000 + 10 * i}
    return {"warden_hosts": {"hosts": {HOST: {"ansible_python_interpreter": "/usr/local/bin/python3.11",
                                              "warden_ext_if": "vtnet0", "warden_agents": fleet}}}}


def executions(report):
    """Module executions of an ansible.posix.json report: results and loop items that ran."""
    count = 0
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                items = result.get("results")
                # a loop's items carry ansible_loop_var; a module may return a list named results of its own
                if isinstance(items, list) and all(isinstance(i, dict) and "ansible_loop_var" in i for i in items):
                    count += sum(1 for item in items if not item.get("skipped"))
                elif not result.get("skipped"):
                    count += 1
    return count


def failures(stdout):
    """The failed or unreachable task results of an ansible.posix.json report, one line each."""
    try:
        report = json.loads(stdout[stdout.index("{"):])
    except ValueError:
        return []
    lines = []
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                items = result.get("results", [result])
                for item in items:
                    if item.get("failed") or item.get("unreachable"):
                        message = item.get("msg") or item.get("stderr") or ""
                        lines.append(f"{host}: {task['task']['name']}: {str(message)[:1500]}")
    return lines


def playbook(name, inventory_file):
    """Run site.yml on stand-in ``name``; return (seconds, report)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    ansible = str(pathlib.Path(sys.executable).parent / "ansible-playbook")
    start = time.monotonic()
    proc = subprocess.run([str(STANDIN), "run", name, "--", ansible, "-i", inventory_file, str(PLAYBOOK)],
                          capture_output=True, text=True, env=env, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        failed = failures(proc.stdout) or [proc.stdout[-4000:]]
        sys.exit(f"site.yml failed on stand-in {name} (rc {proc.returncode}):\n" + "\n".join(failed)
                 + f"\n{proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout[proc.stdout.index("{"):])


def measure(agents, reps, workdir):
    """Converge a fresh stand-in with ``agents`` agents; return (calls, median seconds) of no-op re-runs."""
    name = f"bench-fleet-{agents}-{uuid.uuid4().hex[:6]}"
    inventory_file = os.path.join(workdir, f"fleet-{agents}.yml")
    with open(inventory_file, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory(agents), handle, sort_keys=False)
    subprocess.run([str(STANDIN), "up", name], check=True, capture_output=True)
    # The agents' command: the Molecule scenario's test runtime, which waits like a long-running agent.
    base = os.environ.get("WARDEN_STANDIN_BASE", "/var/tmp/warden-standin")
    runtime = pathlib.Path(base, name, "root", "usr/local/bin/agent-runtime")
    shutil.copyfile(ROOT / "molecule/default/files/agent-runtime", runtime)
    runtime.chmod(0o755)
    try:
        playbook(name, inventory_file)
        times, calls = [], set()
        for _rep in range(reps):
            seconds, report = playbook(name, inventory_file)
            changed = report.get("stats", {}).get(HOST, {}).get("changed", 0)
            if changed:
                sys.exit(f"a re-run with {agents} agents changed {changed} things: site.yml is not idempotent")
            times.append(seconds)
            calls.add(executions(report))
        if len(calls) != 1:
            sys.exit(f"no-op re-runs with {agents} agents ran different numbers of modules: {sorted(calls)}")
        return calls.pop(), statistics.median(times)
    finally:
        if not KEEP:
            subprocess.run([str(STANDIN), "down", name], check=False, capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", default="1,10,20", help="agent counts; the first and last give the ratios")
    parser.add_argument("--keep", action="store_true", help="leave the stand-ins up (to read a failure)")
    args = parser.parse_args()
    global KEEP  # noqa: PLW0603 - one switch for the whole run
    KEEP = args.keep
    if os.geteuid() != 0:
        sys.exit("bench/fleet.py needs root: it runs site.yml on a stand-in host (chroot, mounts, namespaces)")
    sizes = [int(n) for n in args.sizes.split(",")]
    print("[stand-in] site.yml runs on a stand-in FreeBSD host (a Linux chroot with doubles), not FreeBSD")
    results = {}
    with tempfile.TemporaryDirectory(prefix="warden-bench-fleet-") as workdir:
        for agents in sizes:
            calls, seconds = measure(agents, args.reps, workdir)
            results[agents] = (calls, seconds)
            print(f"agents={agents} noop_calls={calls} noop_seconds={seconds:.2f}")
    low, high = sizes[0], sizes[-1]
    print(f"calls_per_extra_agent={(results[high][0] - results[low][0]) / (high - low):.2f}")
    print(f"noop_{high}_vs_{low}={results[high][1] / results[low][1]:.2f}")


if __name__ == "__main__":
    main()

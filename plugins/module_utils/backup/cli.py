# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""The `warden` command on the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .common import DEFAULT_PLAN_PATH, BackupError
from .extract import verify_archive
from .job import backup_fleet
from .listing import fleet_info
from .manifest import note_verified
from .plan import agent_backup_dir
from .restore import restore_agent, select_archive


def load_plan(path):
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def _say(text):
    sys.stdout.write(text + "\n")


def cli(argv=None):
    import argparse

    parser = argparse.ArgumentParser(
        prog="warden", description="warden.fleet host tool: list, back up and restore agent workspaces"
    )
    parser.add_argument(
        "--plan",
        default=os.environ.get("WARDEN_PLAN", DEFAULT_PLAN_PATH),
        help="plan file written by the warden.fleet.host_tools role (default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command")
    p_list = sub.add_parser("list", help="workspaces, sizes, last backup, service and jails")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_list.add_argument("--verify", action="store_true", help="check the newest archive's sha256")
    p_backup = sub.add_parser("backup", help="back up all agents (or the named ones)")
    p_backup.add_argument("agents", nargs="*")
    p_backup.add_argument("--check", action="store_true", help="report what would be archived and pruned")
    p_backup.add_argument("--json", action="store_true")
    p_restore = sub.add_parser("restore", help="restore an agent from its newest (or an older) archive")
    p_restore.add_argument("agent")
    group = p_restore.add_mutually_exclusive_group()
    group.add_argument("--at", help="newest archive at or before this time (UTC unless an offset is given)")
    group.add_argument("--archive", help="archive file to restore")
    p_restore.add_argument("--as", dest="target", help="restore under this agent of the plan")
    p_restore.add_argument("--no-databases", action="store_true")
    p_restore.add_argument("--check", action="store_true", help="verify the archive and report only")
    p_restore.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait this long for a backup or restore of the agent that holds its lock (default: fail at once)",
    )
    p_verify = sub.add_parser("verify", help="verify an agent's newest archive (or --archive) completely")
    p_verify.add_argument("agent")
    p_verify.add_argument("--archive")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        plan = load_plan(args.plan)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"warden: cannot read plan {args.plan}: {exc}\n")
        return 2
    try:
        if args.command == "list":
            data = fleet_info(plan, verify=args.verify)
            if args.json:
                data.pop("table")
                _say(json.dumps(data, indent=2, sort_keys=True))
            else:
                _say(data["table"])
            return 0
        if args.command == "backup":
            res = backup_fleet(
                plan, args.agents or None, check_mode=args.check, log=lambda m: sys.stderr.write(m + "\n")
            )
            if args.json:
                _say(json.dumps(res, indent=2, sort_keys=True, default=str))
            for name in sorted(res["agents"]):
                r = res["agents"][name]
                note = (" " + r["msg"]) if r["msg"] else ""
                _say(f"{name:<16} {r['status']:<12} {r['archive'] or ''}{note}")
            _say(res["summary"])
            # a damaged archive was moved aside (and a new one made): worth a non-zero exit and cron mail
            return 1 if res["failed_agents"] or res["damaged_agents"] else 0
        if args.command == "restore":
            res = restore_agent(
                plan,
                args.agent,
                archive=args.archive,
                at=args.at,
                target_agent=args.target,
                restore_databases=not args.no_databases,
                check_mode=args.check,
                lock_timeout=args.wait,
            )
            _say(json.dumps(res, indent=2, sort_keys=True, default=str))
            return 0
        if args.command == "verify":
            path = args.archive or select_archive(agent_backup_dir(plan, args.agent), args.agent)["path"]
            manifest = verify_archive(path, members=True)
            note_verified(agent_backup_dir(plan, args.agent), path, manifest["archive_sha256"])
            _say(f"{path}: verified")
            return 0
    except BackupError as exc:
        sys.stderr.write(f"warden: {exc}\n")
        return 1
    except (OSError, subprocess.SubprocessError) as exc:
        # one line naming the file, not a traceback
        sys.stderr.write(f"warden: {args.command} failed: {exc}\n")
        return 1
    return 2

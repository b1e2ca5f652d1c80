# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""What `warden list` and workspace_info report per agent."""

from __future__ import annotations

import datetime
import os

from .commands import JLS
from .common import UTC, BackupError, human_age, human_size, utcnow
from .extract import verify_archive
from .manifest import iso_time, list_archives, load_verified, record_matches
from .plan import agent_backup_dir, agent_plan, orphan_workspaces
from .restore import service_running
from .scan import tree_stats


def jail_running(name):
    jls = JLS.available()
    if not jls:
        return None
    rc, _out, _err = JLS.run("jail jid", check=False, jail=name)
    return rc == 0


def agent_info(plan, name, now=None, verify=False):
    agent = agent_plan(plan, name)
    now = now or utcnow()
    paths = agent.get("paths") or {}
    ws = paths.get("workspace")
    stats = tree_stats(ws) if ws and os.path.isdir(ws) else None
    info = {
        "agent": name,
        "state": agent.get("state", "present"),
        "workspace": ws,
        "exists": stats is not None,
        "size": stats["size"] if stats else None,
        "files": stats["files"] if stats else None,
        "last_modified": None,
        "last_modified_age": None,
        "backup": None,
        "backups": 0,
    }
    if stats and stats["last_modified"] is not None:
        mod = datetime.datetime.fromtimestamp(int(stats["last_modified"]), UTC)
        info["last_modified"] = mod.strftime("%Y-%m-%dT%H:%M:%SZ")
        info["last_modified_age"] = max(0, int((now - mod).total_seconds()))
    archives = list_archives(agent_backup_dir(plan, name), name)
    good = [a for a in archives if a["state"] == "good"]
    info["backups"] = len(good)
    info["incomplete_backups"] = len(archives) - len(good)
    if good:
        newest = good[0]
        record = load_verified(agent_backup_dir(plan, name)).get(newest["name"])
        last_full = record.get("verified") if record else None
        error = None
        if verify:
            verified = True
            try:
                verify_archive(newest["path"], newest["manifest"], members=False)
                last_full = iso_time(now)
            except BackupError as exc:
                verified, error = False, str(exc)
        elif not record:
            # made before verification records were kept, or copied in: the next backup run checks it in full
            verified = None
        else:
            try:
                verified = record_matches(record, os.stat(newest["path"]))
            except OSError:
                verified = False
            if not verified:
                error = f"size or mtime changed since its last full verification ({last_full})"
        info["backup"] = {
            "archive": newest["path"],
            "created": newest["manifest"].get("created"),
            "age": max(0, int((now - newest["time"]).total_seconds())),
            "size": newest["size"],
            "verified": verified,
            "checked": "sha256" if verify else "size+mtime",
            "last_full_verification": last_full,
            "error": error,
        }
    service = agent.get("service") or {}
    info["service"] = {"name": service.get("name"), "running": service_running(service) if service else False}
    info["jails"] = [
        {"name": j["name"], "slot": j.get("slot"), "running": jail_running(j["name"])} for j in agent.get("jails") or []
    ]
    return info


def fleet_info(plan, agents=None, now=None, verify=False):
    now = now or utcnow()
    names = sorted(agents) if agents else sorted((plan.get("agents") or {}).keys())
    rows = [agent_info(plan, n, now=now, verify=verify) for n in names]
    orphans = []
    for path in orphan_workspaces(plan):
        stats = tree_stats(path) or {}
        orphans.append({"path": path, "size": stats.get("size"), "files": stats.get("files")})
    data = {
        "host": plan.get("host"),
        "generated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "agents": rows,
        "orphans": orphans,
    }
    data["table"] = format_table(data)
    return data


def _verified_text(b):
    """VERIFIED column: `yes` (size and mtime as at its last full sha256
    check, or --verify passed), `NO`, or `unknown` (never checked in full)."""
    if b.get("verified") is None:
        return "unknown"
    return "yes" if b["verified"] else "NO"


def format_table(data):
    head = [
        "AGENT",
        "STATE",
        "WORKSPACE",
        "SIZE",
        "MODIFIED",
        "BACKUP AGE",
        "BACKUP SIZE",
        "VERIFIED",
        "SERVICE",
        "JAILS",
    ]
    rows = [head]
    for a in data["agents"]:
        b = a.get("backup") or {}
        jails = a.get("jails") or []
        up = sum(1 for j in jails if j["running"])
        jail_text = f"{up}/{len(jails)} up" if jails else "-"
        if jails and any(j["running"] is None for j in jails):
            jail_text = "unknown"
        rows.append(
            [
                a["agent"],
                a["state"],
                a["workspace"] if a["exists"] else "{} (missing)".format(a["workspace"]),
                human_size(a["size"]) if a["size"] is not None else "-",
                (human_age(a["last_modified_age"]) + " ago") if a["last_modified_age"] is not None else "-",
                human_age(b.get("age")) if b else "never",
                human_size(b["size"]) if b else "-",
                _verified_text(b) if b else "-",
                "running" if (a.get("service") or {}).get("running") else "stopped",
                jail_text,
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(0, "host %s" % (data.get("host") or "?"))
    for a in data["agents"]:
        b = a.get("backup") or {}
        if b:
            lines.append(
                "{}: newest archive last verified in full (sha256) {}{}".format(
                    a["agent"], b.get("last_full_verification") or "never", f"; {b['error']}" if b.get("error") else ""
                )
            )
    for o in data.get("orphans") or []:
        lines.append("orphaned workspace: {} ({})".format(o["path"], human_size(o["size"] or 0)))
    return "\n".join(lines)

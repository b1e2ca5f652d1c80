# Copyright (c) warden.fleet contributors
# BSD-2-Clause (see LICENSE)
"""Which archives retention keeps."""

from __future__ import annotations


def retention(archives, keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0, protect=None):
    """Select archives to keep.

    archives: iterable of (name, datetime). For each rule, walking from the
    newest: keep_last keeps the N newest; keep_daily/weekly/monthly keep the
    newest archive of each of the N most recent days/ISO weeks/months that
    have one. `protect` (the newest verified archive) is always kept.
    Returns (keep: {name: [reasons]}, prune: [names], newest first).
    """
    ordered = sorted(archives, key=lambda a: (a[1], a[0]), reverse=True)
    rules = [
        ("last", keep_last or 0, lambda t, n: n),
        ("daily", keep_daily or 0, lambda t, n: t.strftime("%Y-%m-%d")),
        ("weekly", keep_weekly or 0, lambda t, n: "{:d}-{:02d}".format(*t.isocalendar()[:2])),
        ("monthly", keep_monthly or 0, lambda t, n: t.strftime("%Y-%m")),
    ]
    keep = {}
    for rule, count, keyfn in rules:
        last_key, left = None, count
        for name, when in ordered:
            if left <= 0:
                break
            key = keyfn(when, name)
            if key != last_key:
                keep.setdefault(name, []).append(rule)
                last_key = key
                left -= 1
    if protect:
        keep.setdefault(protect, []).append("newest-verified")
    prune = [name for name, _when in ordered if name not in keep]
    return keep, prune

# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Argument spec shared by the modules that act on a host's plan (doc fragment warden.fleet.plan)."""

from __future__ import annotations


def plan_argument_spec(**options):
    """The module's argument spec: the plan plus the module's own ``options``."""
    return dict(plan=dict(type="dict", required=True), **options)

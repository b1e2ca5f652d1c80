# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Packages, rc.conf values and services inside running jails, for the jail_provision module.

Everything goes through the jail, never through its root directory on the host (a jail's users
can plant symlinks there): pkg(8) attaches with ``pkg -j``, sysrc(8) and service(8) with their
``-j`` options (both jexec(8) into the jail). Each call runs under timeout(1), whose reaper ends
the whole process tree of a command that hangs.

For each jail: list the installed packages once (``pkg -j NAME query -a %n``), read the wanted
rc.conf variables in one call (``sysrc -j NAME -i -e VAR...``) and the services' status
(``service -j NAME SVC status``); then install only the missing packages in one ``pkg install``,
set only the differing variables in one ``sysrc`` call and start only the services that are not
running, and read everything back: an exit code alone is never taken as success.
"""

from __future__ import annotations

import re

from ansible_collections.warden.fleet.plugins.module_utils.backup.runner import (
    CommandRunner,
    as_fixed,
    as_flag,
    as_opt_val,
    as_value,
)

# Bounds: installing the PostgreSQL server and its dependencies can take minutes on a slow mirror.
TIMEOUTS = {"install": 1800}
DEFAULT_TIMEOUT = 300
KILL_AFTER = 30
JAIL_NAME_RE = re.compile(r"^[A-Za-z0-9]{1,11}$")
# pkg(8) package names, rc.conf variable names, rc.d script names: nothing a shell or an option could misread
PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
RC_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# sysrc -e prints NAME="VALUE" (usr.sbin/sysrc/sysrc: the -e format)
SYSRC_E_RE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="(.*)"$')

# -f (foreground) for service starts: without it timeout(1) reaps the command's whole tree and waits for every
# descendant (bin/timeout/timeout.c, PROC_REAP_STATUS), so a daemon the rc.d script detaches would hold it until
# the time is up and then be killed with the rest.
TIMEOUT = CommandRunner("timeout", {"foreground": as_flag("-f"), "kill": as_opt_val("-k"), "seconds": as_value()})
JLS = CommandRunner("jls", {"jail": as_opt_val("-j"), "jid": as_fixed("jid")})
# pkg(8): -j attaches to the jail (the host's pkg works there, no bootstrap inside the jail)
PKG = CommandRunner(
    "pkg",
    {
        "jail": as_opt_val("-j"),
        "query_all": as_fixed("query", "-a", "%n"),
        "install": as_fixed("install", "-y"),
    },
)
SYSRC = CommandRunner(
    "sysrc", {"jail": as_opt_val("-j"), "ignore_unknown": as_fixed("-i"), "env_format": as_fixed("-e")}
)
SERVICE = CommandRunner("service", {"jail": as_opt_val("-j"), "name": as_value()})


class ProvisionError(Exception):
    """A jail could not be brought to the wanted state; the message says which and why."""


class Runner:
    """Runs argv lists bounded by timeout(1); run_command is AnsibleModule.run_command or a test double."""

    def __init__(self, run_command):
        self.run_command = run_command

    def __call__(self, argv, timeout=DEFAULT_TIMEOUT, environ=None, detaches=False):
        """detaches: the command leaves a daemon behind (a service start); only the command itself is bounded."""
        bound = TIMEOUT.argv("foreground kill seconds", foreground=detaches, kill=f"{KILL_AFTER}s",
                             seconds=f"{timeout}s")
        rc, out, err = self.run_command(bound + argv, environ_update=environ or {})
        if rc == 124:
            err = f"did not finish within {timeout} s and was stopped. {err}"
        return rc, out, err


def validate(jails):
    """Every problem of the jails option at once, before any command runs."""
    problems = []
    seen = set()
    for jail in jails:
        name = jail.get("name") or ""
        if not JAIL_NAME_RE.match(name):
            problems.append(f"{name!r} is not a VNET jail name (letters and digits, at most 11)")
        if name in seen:
            problems.append(f"{name}: listed twice")
        seen.add(name)
        problems += [f"{name}: {p!r} is not a package name" for p in jail["packages"] if not PACKAGE_RE.match(p)]
        problems += [f"{name}: {v!r} is not an rc.conf variable" for v in jail["rc_conf"] if not RC_VAR_RE.match(v)]
        problems += [
            f"{name}: the value of {v} has a quote, backslash, dollar or newline"
            for v, value in jail["rc_conf"].items()
            if re.search(r'["\\$`\n]', str(value))
        ]
        problems += [f"{name}: {s!r} is not an rc.d script name" for s in jail["services"] if not SERVICE_RE.match(s)]
    if problems:
        raise ProvisionError("; ".join(problems))


def running(run, name):
    """jls -j NAME matches the exact name (Bastille's targets are prefix-matched)."""
    rc, _out, _err = run(JLS.argv("jail jid", jail=name))
    return rc == 0


def installed_packages(run, name):
    rc, out, err = run(PKG.argv("jail query_all", jail=name))
    if rc != 0:
        raise ProvisionError(f"{name}: pkg -j {name} query failed (rc={rc}): {(err or out).strip()}")
    return {line.strip() for line in out.splitlines() if line.strip()}


def rc_values(run, name, variables):
    """The jail's rc.conf values of the given variables; unset ones are left out."""
    if not variables:
        return {}
    rc, out, err = run(SYSRC.argv("jail ignore_unknown env_format", jail=name) + sorted(variables))
    # sysrc exits 1 when a variable is unset, silently with -i (usr.sbin/sysrc/sysrc): only a message is an error
    if rc != 0 and (rc != 1 or err.strip()):
        raise ProvisionError(f"{name}: sysrc -j {name} failed (rc={rc}): {(err or out).strip()}")
    values = {}
    for line in out.splitlines():
        match = SYSRC_E_RE.match(line.strip())
        if match and match.group(1) in variables:
            values[match.group(1)] = match.group(2)
    return values


def service_running(run, name, service):
    """rc.subr's status: exit 0 only while the service's process runs."""
    rc, _out, _err = run(SERVICE.argv("jail name", jail=name, name=service) + ["status"])
    return rc == 0


def observe(run, name, jail):
    packages = installed_packages(run, name)
    values = rc_values(run, name, set(jail["rc_conf"]))
    services = {s: service_running(run, name, s) for s in jail["services"]}
    return {
        "packages": sorted(p for p in jail["packages"] if p in packages),
        "rc_conf": values,
        "running": sorted(s for s, up in services.items() if up),
    }


def differences(jail, seen):
    return {
        "install": [p for p in jail["packages"] if p not in seen["packages"]],
        "rc_conf": {k: str(v) for k, v in jail["rc_conf"].items() if seen["rc_conf"].get(k) != str(v)},
        "start": [s for s in jail["services"] if s not in seen["running"]],
    }


def wanted(jail):
    return {
        "packages": sorted(jail["packages"]),
        "rc_conf": {k: str(v) for k, v in jail["rc_conf"].items()},
        "running": sorted(jail["services"]),
    }


def apply(run, name, todo):
    """Install, set, start: in this order, since an rc.d script comes with its package."""
    if todo["install"]:
        rc, out, err = run(
            PKG.argv("jail install", jail=name) + todo["install"],
            timeout=TIMEOUTS["install"],
            environ={"ASSUME_ALWAYS_YES": "yes"},
        )
        if rc != 0:
            packages = " ".join(todo["install"])
            raise ProvisionError(f"{name}: pkg install {packages} failed (rc={rc}): {(err or out).strip()}")
    if todo["rc_conf"]:
        assignments = [f"{k}={v}" for k, v in sorted(todo["rc_conf"].items())]
        rc, out, err = run(SYSRC.argv("jail", jail=name) + assignments)
        if rc != 0:
            raise ProvisionError(f"{name}: sysrc {' '.join(assignments)} failed (rc={rc}): {(err or out).strip()}")
    for service in todo["start"]:
        rc, out, err = run(SERVICE.argv("jail name", jail=name, name=service) + ["start"], detaches=True)
        if rc != 0:
            raise ProvisionError(f"{name}: service {service} start failed (rc={rc}): {(err or out).strip()}")


def provision(run, jails, check_mode):
    """Bring every jail to its wanted packages, rc.conf values and running services.

    Returns (results, diff): per jail what was (or would be) installed, set and started.
    Raises ProvisionError naming the jail when a jail is not running (outside check mode) or
    its end state is not the wanted one.
    """
    validate(jails)
    results, before, after = {}, {}, {}
    for jail in jails:
        name = jail["name"]
        want = wanted(jail)
        if not running(run, name):
            if not check_mode:
                raise ProvisionError(
                    f"{name}: the jail is not running (warden.fleet.bastille_jail creates and starts it)"
                )
            # check mode on a host where the jail is still to be created: everything is to do
            seen = {"packages": [], "rc_conf": {}, "running": []}
        else:
            seen = observe(run, name, jail)
        todo = differences(jail, seen)
        changed = bool(todo["install"] or todo["rc_conf"] or todo["start"])
        if changed and not check_mode:
            apply(run, name, todo)
            seen_after = observe(run, name, jail)
            left = differences(jail, seen_after)
            if left["install"] or left["rc_conf"] or left["start"]:
                raise ProvisionError(f"{name}: still not as wanted after the changes: {describe(left)}")
        results[name] = {
            "changed": changed,
            "installed": todo["install"],
            "rc_conf": todo["rc_conf"],
            "started": todo["start"],
        }
        if changed:
            before[name], after[name] = seen, want
    return results, {"before": before, "after": after}


def describe(todo):
    parts = []
    if todo["install"]:
        parts.append("packages " + " ".join(todo["install"]) + " missing")
    if todo["rc_conf"]:
        parts.append("rc.conf " + " ".join(sorted(todo["rc_conf"])) + " differ")
    if todo["start"]:
        parts.append("services " + " ".join(todo["start"]) + " not running")
    return "; ".join(parts)

# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Packages, rc.conf values and services inside running jails, for the jail_provision module.

Everything goes through the jail, never through its root directory on the host (a jail's users
can plant symlinks there): pkg(8) attaches with ``pkg -j``, sysrc(8) and service(8) with their
``-j`` options (both jexec(8) into the jail). Each call runs under timeout(1), whose reaper ends
the whole process tree of a command that hangs.

For each jail, one command (READ, under one timeout): list the installed packages
(``pkg -j NAME query -a %n``), then, in one ``jexec`` (SURVEY), read the wanted rc.conf variables
(``sysrc -i -e VAR...``), the services' status (``service SVC status``) and the accounts' passwd
entries (``pw usershow``); an account's repositories and authorized_keys in one more, as that account.
Then install only the missing packages in one ``pkg install``, set only the differing variables in
one ``sysrc`` call and start only the services that are not running, and read everything back: an
exit code alone is never taken as success.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import os
import pwd
import re
import stat

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
PARALLEL_READS = 8
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
JLS = CommandRunner("jls", {"names": as_fixed("name")})
# pkg(8): -j attaches to the jail (the host's pkg works there, no bootstrap inside the jail)
PKG = CommandRunner(
    "pkg",
    {
        "jail": as_opt_val("-j"),
        "install": as_fixed("install", "-y"),
    },
)
SYSRC = CommandRunner("sysrc", {"jail": as_opt_val("-j")})
SERVICE = CommandRunner("service", {"jail": as_opt_val("-j"), "name": as_value()})


class ProvisionError(Exception):
    """A jail could not be brought to the wanted state; the message says which and why."""


class Runner:
    """Runs argv lists bounded by timeout(1); run_command is AnsibleModule.run_command or a test double."""

    def __init__(self, run_command):
        self.run_command = run_command

    def __call__(self, argv, timeout=DEFAULT_TIMEOUT, environ=None, detaches=False, data=None):
        """detaches: the command leaves a daemon behind (a service start); only the command itself is bounded.
        data: the command's standard input, as is."""
        bound = TIMEOUT.argv("foreground kill seconds", foreground=detaches, kill=f"{KILL_AFTER}s",
                             seconds=f"{timeout}s")
        extra = {} if data is None else {"data": data, "binary_data": True}
        rc, out, err = self.run_command(bound + argv, environ_update=environ or {}, **extra)
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
        for account in jail.get("accounts") or []:
            problems += [f"{name}: account {account.get('name')!r}: {p}" for p in account_problems(account)]
    if problems:
        raise ProvisionError("; ".join(problems))


def running_jails(run):
    """Every running jail's exact name, from one ``jls name`` for the host (Bastille's targets are prefix-matched)."""
    rc, out, err = run(JLS.argv("names"))
    if rc != 0:
        raise ProvisionError(f"jls name failed (rc={rc}): {(err or out).strip()}")
    return {line.strip() for line in out.splitlines() if line.strip()}


# One jexec as the jail's root answers every question about the jail but its packages. Arguments: a marker
# (random per call, so no output can fake a section), the count of rc.conf variables, the variables, the
# count of services, the services, then the accounts. Every name was checked against its pattern before.
SURVEY = r"""mark=$1 n=$2; shift 2; vars=
while [ "$n" -gt 0 ]; do vars="$vars $1"; n=$((n - 1)); shift; done
if [ -n "$vars" ]; then /usr/sbin/sysrc -i -e $vars; echo "$mark sysrc $?"; fi
n=$1; shift
while [ "$n" -gt 0 ]; do
  /usr/sbin/service "$1" status >/dev/null 2>&1; echo "$mark service $? $1"; n=$((n - 1)); shift
done
for user; do /usr/sbin/pw usershow "$user" 2>/dev/null; echo "$mark user $? $user"; done
"""


# On the host, under the one timeout(1) of the read: pkg -j lists the jail's packages (pkg attaches to the jail
# itself: no pkg needed inside), a marker line with its status, then SURVEY in the jail, as its root.
READ = r"""jail=$1 mark=$2 survey=$3; shift 3
/usr/sbin/pkg -j "$jail" query -a %n; echo "$mark pkg $?"
exec /usr/sbin/jexec -l -U root "$jail" /bin/sh -c "$survey" sh "$mark" "$@"
"""


def sections(out, mark):
    """Split SURVEY's output at its marker lines: [(marker words, the lines before it)]."""
    found, lines = [], []
    for line in out.splitlines():
        if line.startswith(f"{mark} "):
            found.append((line.split()[1:], lines))
            lines = []
        else:
            lines.append(line)
    return found


def read_jail(run, name, jail):
    """(installed packages, rc.conf values of the wanted variables, running services, {account: passwd fields})
    from one command (READ)."""
    variables, services = sorted(jail["rc_conf"]), list(jail["services"])
    users = [a["name"] for a in jail.get("accounts") or []]
    mark = os.urandom(8).hex()
    argv = ["/bin/sh", "-c", READ, "sh", name, mark, SURVEY]
    rc, out, err = run(argv + [str(len(variables)), *variables, str(len(services)), *services, *users])
    found = sections(out, mark)
    pkg = next((words[1] for words, _lines in found if words[0] == "pkg"), None)
    if pkg != "0":
        raise ProvisionError(f"{name}: pkg -j {name} query failed (rc={pkg or rc}): {(err or out).strip()}")
    if rc != 0:
        raise ProvisionError(f"{name}: reading the jail failed (rc={rc}): {(err or out).strip()}")
    packages, values, status, accounts = set(), {}, {}, {}
    for words, lines in found:
        if words[0] == "pkg":
            packages = {line.strip() for line in lines if line.strip()}
        elif words[0] == "sysrc":
            # sysrc exits 1 when a variable is unset, silently with -i (usr.sbin/sysrc/sysrc): only a message is
            # an error
            if words[1] != "0" and (words[1] != "1" or err.strip()):
                raise ProvisionError(f"{name}: sysrc -i -e failed (rc={words[1]}): {(err or out).strip()}")
            for line in lines:
                match = SYSRC_E_RE.match(line.strip())
                if match and match.group(1) in jail["rc_conf"]:
                    values[match.group(1)] = match.group(2)
        elif words[0] == "service":
            status[words[2]] = words[1]
        elif words[0] == "user":
            fields = lines[-1].strip().split(":") if words[1] == "0" and lines else []
            accounts[words[2]] = fields if len(fields) == 10 else None
    if set(status) != set(services) or set(accounts) != set(users):
        raise ProvisionError(f"{name}: reading the jail gave an incomplete answer: {out.strip()!r}")
    # rc.subr's status: exit 0 only while the service's process runs
    return packages, values, {s for s, rc in status.items() if rc == "0"}, accounts


def service_running(run, name, service):
    """rc.subr's status: exit 0 only while the service's process runs."""
    rc, _out, _err = run(SERVICE.argv("jail name", jail=name, name=service) + ["status"])
    return rc == 0


def observe(run, name, jail):
    """(what the jail has, {account: what it has}): one command, one more per existing account."""
    packages, values, running, passwd = read_jail(run, name, jail)
    seen = {
        "packages": sorted(p for p in jail["packages"] if p in packages),
        "rc_conf": values,
        "running": sorted(running),
    }
    return seen, {a["name"]: observe_account(run, name, a, passwd[a["name"]]) for a in jail.get("accounts") or []}


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


ACCOUNT_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.git$")
COMMENT_RE = re.compile(r"^[A-Za-z0-9 ._-]*$")


def account_problems(account):
    problems = []
    if not ACCOUNT_RE.match(account.get("name") or ""):
        problems.append("not a login name")
    for field in ("home", "shell"):
        if not PATH_RE.match(account.get(field) or "") or "/../" in f"{account.get(field)}/":
            problems.append(f"{field} is not an absolute path")
    if not COMMENT_RE.match(account.get("comment") or ""):
        problems.append("the comment has characters other than letters, digits, space, dot, dash")
    problems += [f"{r!r} is not a bare repository name (NAME.git)" for r in account.get("repositories") or []
                 if not REPO_RE.match(r) or r.startswith(".")]
    key = account.get("authorized_key")
    if key:
        if not PATH_RE.match(key.get("file") or ""):
            problems.append("authorized_key.file is not an absolute path")
        try:
            ipaddress.ip_address(key.get("from") or "")
        except ValueError:
            problems.append("authorized_key.from is not an IP address")
    return problems


NOT_RUNNING = {"packages": [], "rc_conf": {}, "running": []}
NO_ACCOUNT = {"exists": False, "home": None, "shell": None, "repositories": [], "authorized_keys": None}


def survey(run, jail, up):
    """What a jail has now: (packages, rc.conf and running services, {account: what it has}).
    A jail that does not run (check mode before it is created, ``up`` the running jails) has nothing."""
    if jail["name"] not in up:
        return NOT_RUNNING, {a["name"]: NO_ACCOUNT for a in jail.get("accounts") or []}
    return observe(run, jail["name"], jail)


def provision(run, jails, check_mode):
    """Bring every jail to its wanted packages, rc.conf values and running services.

    Returns (results, diff): per jail what was (or would be) installed, set and started.
    Raises ProvisionError naming the jail when a jail is not running (outside check mode) or
    its end state is not the wanted one.
    """
    validate(jails)
    results, before, after = {}, {}, {}
    # The jails are read in parallel (each read is a few commands in one jail), so a run that changes
    # nothing takes about as long for twenty agents as for one; changes are then made jail by jail.
    up = running_jails(run) if jails else set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_READS, len(jails)))) as pool:
        surveys = list(pool.map(lambda jail: survey(run, jail, up), jails))
    for jail, (seen, seen_accounts) in zip(jails, surveys, strict=True):
        name = jail["name"]
        want = wanted(jail)
        if seen is NOT_RUNNING and not check_mode:
            raise ProvisionError(f"{name}: the jail is not running (warden.fleet.bastille_jail creates and starts it)")
        todo = differences(jail, seen)
        accounts, warnings = {}, []
        for account in jail.get("accounts") or []:
            key, why = None, None
            if account.get("authorized_key"):
                spec = account["authorized_key"]
                key, why = read_public_key(spec["file"], spec["owner"])
                key = key_line(key, spec["from"]) if key else None
            if why:
                # warden.fleet.agent_user makes the key before the jails: missing now, it was removed or broken
                warnings.append(f"{name}: no SSH key for {account['name']}: {why} (warden.fleet.agent_user makes it)")
            accounts[account["name"]] = (account, key, account_todo(account, seen_accounts[account["name"]], key))
        account_changes = any(
            work["create"] or work["repositories"] or work["authorized_keys"] for _a, _k, work in accounts.values()
        )
        changed = bool(todo["install"] or todo["rc_conf"] or todo["start"] or account_changes)
        if changed and not check_mode:
            apply(run, name, dict(todo, start=[]))
            for account, _key, account_work in accounts.values():
                apply_account(run, name, account, account_work)
            apply(run, name, {"install": [], "rc_conf": {}, "start": todo["start"]})
            seen_after, accounts_after = observe(run, name, jail)
            left = differences(jail, seen_after)
            for account, key, _work in accounts.values():
                rest = account_todo(account, accounts_after[account["name"]], key)
                if rest["create"] or rest["repositories"] or rest["authorized_keys"]:
                    left.setdefault("accounts", []).append(account["name"])
            if left["install"] or left["rc_conf"] or left["start"] or left.get("accounts"):
                raise ProvisionError(f"{name}: still not as wanted after the changes: {describe(left)}")
        results[name] = {
            "changed": changed,
            "installed": todo["install"],
            "rc_conf": todo["rc_conf"],
            "started": todo["start"],
            "accounts": {
                user: {"created": work["create"], "repositories": work["repositories"],
                       "authorized_key": work["authorized_keys"] is not None}
                for user, (_account, _key, work) in accounts.items()
            },
            "warnings": warnings,
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
    if todo.get("accounts"):
        parts.append("accounts " + " ".join(todo["accounts"]) + " not as wanted")
    return "; ".join(parts)


# ------------------------------------------------------------------ accounts (the git jail's)

# jexec(8) -l -U: the command runs as that user of the jail (its passwd), with that user's HOME, in a clean
# environment (git reads $HOME/.gitconfig)
JEXEC = CommandRunner("jexec", {"login": as_fixed("-l"), "user": as_opt_val("-U"), "jail": as_value()})
KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\"\\\n\r]*)?$"
)
KEY_MAX = 16384
# authorized_keys options (sshd(8) AUTHORIZED_KEYS FILE FORMAT): git over SSH needs none of these
KEY_RESTRICTIONS = "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty"
WRITE_KEYS = (
    'umask 077 && mkdir -p "$1/.ssh" && cat > "$1/.ssh/authorized_keys.new"'
    ' && mv -f "$1/.ssh/authorized_keys.new" "$1/.ssh/authorized_keys"'
)


def read_public_key(path, owner):
    """The agent's public key line from the host, or (None, why) when there is none to use.

    The key lives in the agent's home, which the agent controls: every component of the path is opened
    relative to the previous one without following a symlink, and the file must be a regular file of
    the agent's, small, holding one public key. So a link to a root-only file leaks nothing.
    """
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        return None, f"the user {owner} does not exist yet"
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                return None, f"{path} does not exist"
            except OSError as exc:
                kind = "file" if last else "directory"
                return None, f"{path}: {'/'.join(parts[: index + 1])} is not a plain {kind} ({exc.strerror})"
            os.close(fd)
            fd = nxt
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_size > KEY_MAX:
            return None, f"{path} is not a regular file of {owner} of at most {KEY_MAX} bytes"
        text = os.read(fd, KEY_MAX + 1).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if "\n" in text or not KEY_RE.match(text):
        return None, f"{path} does not hold one SSH public key"
    return text, None


def key_line(key, source):
    return f'from="{source}",{KEY_RESTRICTIONS} {key}\n'


# As the account: its home's entries, a marker with ls's status, authorized_keys, a marker with cat's status.
ACCOUNT_READ = 'ls -1 "$2"; printf "\\n%s %s\\n" "$1" $?; cat "$2/.ssh/authorized_keys"; printf "\\n%s %s\\n" "$1" $?'


def observe_account(run, jail, account, passwd):
    """What an account has; passwd: its pw usershow fields (read_jail), None when it does not exist."""
    if passwd is None:
        return NO_ACCOUNT
    mark = os.urandom(8).hex()
    argv = JEXEC.argv("login user jail", user=account["name"], jail=jail)
    rc, out, err = run(argv + ["/bin/sh", "-c", ACCOUNT_READ, "sh", mark, account["home"]])
    # cat's output need not end in a newline: the newline before each marker belongs to the marker
    parts = re.split(rf"\n{mark} (\d+)\n", out)
    if rc != 0 or len(parts) != 5:
        raise ProvisionError(f"{jail}: reading {account['name']}'s home failed (rc={rc}): {(err or out).strip()}")
    listing, ls_rc, keys, cat_rc = parts[:4]
    repos = listing.split() if ls_rc == "0" else []
    return {"exists": True, "home": passwd[8], "shell": passwd[9],
            "repositories": [r for r in account["repositories"] if r in repos],
            "authorized_keys": keys if cat_rc == "0" else None}


def account_todo(account, seen, key):
    return {
        "create": not seen["exists"],
        "repositories": [r for r in account["repositories"] if r not in seen["repositories"]],
        "authorized_keys": key if key is not None and seen["authorized_keys"] != key else None,
    }


def apply_account(run, jail, account, todo):
    name, home = account["name"], account["home"]
    as_root = JEXEC.argv("login user jail", user="root", jail=jail)
    as_user = JEXEC.argv("login user jail", user=name, jail=jail)
    steps = []
    if todo["create"]:
        steps.append((as_root + ["pw", "useradd", "-n", name, "-d", home, "-m", "-s", account["shell"],
                                 "-c", account["comment"], "-w", "no"], None))
    steps += [(as_user + ["git", "init", "--bare", "-q", f"{home}/{repo}"], None) for repo in todo["repositories"]]
    if todo["authorized_keys"] is not None:
        steps.append((as_user + ["/bin/sh", "-c", WRITE_KEYS, "sh", home], todo["authorized_keys"]))
    for argv, data in steps:
        rc, out, err = run(argv, data=data)
        if rc != 0:
            raise ProvisionError(f"{jail}: {' '.join(argv[5:8])} failed (rc={rc}): {(err or out).strip()}")


# rc.d commands a caller may ask of a jail's service (rc.subr's standard ones and PostgreSQL's initdb).
SERVICE_ACTIONS = ("initdb", "start", "stop", "restart", "reload")
# After these the service must answer `status` with 0: the exit code of the command alone is not trusted.
RUNNING_AFTER = ("start", "restart", "reload")
# These leave a daemon behind: only the command itself is bounded (see TIMEOUT).
DETACHING = ("start", "restart")


def service_actions(run, actions, check_mode):
    """Run each action (jail, service, action) in order through ``service -j``; return what was done.

    Every problem of the list is named before anything runs. In check mode nothing runs and every action is
    reported as the change it would be; otherwise each action must succeed and, for those that leave the
    service running, ``status`` must say it runs.
    """
    problems = []
    for item in actions:
        jail, service, action = item["jail"], item["service"], item["action"]
        if not JAIL_NAME_RE.match(jail):
            problems.append(f"{jail!r} is not a VNET jail name (letters and digits, at most 11)")
        if not SERVICE_RE.match(service):
            problems.append(f"{jail}: {service!r} is not an rc.d script name")
        if action not in SERVICE_ACTIONS:
            problems.append(f"{jail}: {action!r} is not one of {', '.join(SERVICE_ACTIONS)}")
    if problems:
        raise ProvisionError("; ".join(problems))
    done = []
    for item in actions:
        jail, service, action = item["jail"], item["service"], item["action"]
        if not check_mode:
            argv = SERVICE.argv("jail name", jail=jail, name=service) + [action]
            rc, out, err = run(argv, timeout=item.get("timeout") or DEFAULT_TIMEOUT, detaches=action in DETACHING)
            if rc != 0:
                raise ProvisionError(f"{jail}: service {service} {action} failed (rc={rc}): {(err or out).strip()}")
            if action in RUNNING_AFTER and not service_running(run, jail, service):
                raise ProvisionError(f"{jail}: service {service} {action} exited 0 but {service} does not run: "
                                     f"{(err or out).strip()}")
        done.append(f"{jail}: service {service} {action}")
    return done

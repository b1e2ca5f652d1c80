# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""Bastille 1.4.4 and the facts around its jails, for the bastille_jail module.

Commands go through the collection's command runner (module_utils/backup/runner.py): every
argument of bastille(8), jls(8) and timeout(1) is named once below with its format, and a call
names the arguments it uses in order (BASTILLE.argv("create bridge gateway thick name release
ip interface", ...)), as community.general's cmd_runner does. Each call runs under timeout(1),
whose reaper ends Bastille's whole process tree when it hangs.

Facts are read so that they do not depend on Bastille's output formats:

- a jail exists when ``${bastille_jailsdir}/NAME/jail.conf`` is a file (list.sh's own test);
- it runs when ``jls -j NAME jid`` exits 0 (jls matches the exact name, unlike Bastille's
  targets, which are prefix-matched); one ``jls name`` lists every running jail at once;
- its jail(8) parameters, settings (boot, priority) and fstab are read from the files Bastille
  writes next to the jail's root (root-owned, 0700), never from inside the jail's root, which
  the jail's users can change.

``bastille list`` is parsed (both its 1.4.4 and its master format, table or ``-j``) only to
compare the addresses of existing jails with the wanted ones.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat

from ansible_collections.warden.fleet.plugins.module_utils.backup.common import BackupError
from ansible_collections.warden.fleet.plugins.module_utils.backup.runner import (
    CommandRunner,
    as_fixed,
    as_flag,
    as_opt_val,
    as_value,
)

# usr/local/bin/bastille 1.4.4: BASTILLE_CONFIG
BASTILLE_CONF = "/usr/local/etc/bastille/bastille.conf"
DEFAULT_PREFIX = "/usr/local/bastille"

# Bounds for one Bastille call: a thick create copies a whole release.
TIMEOUTS = {"create": 1800, "destroy": 900}
DEFAULT_TIMEOUT = 600
KILL_AFTER = 30

# FREEBSD-NOTES.md: VNET names may not contain - or _, and the epair e0a_NAME must stay
# under 16 characters (IFNAMSIZ), so a VNET jail's name is alphanumeric and at most 11 long.
NAME_RE = re.compile(r"^[A-Za-z0-9]{1,11}$")

BASTILLE = CommandRunner(
    "bastille",
    {
        "create": as_fixed("create"),
        "start": as_fixed("start"),
        "stop": as_fixed("stop"),
        "restart": as_fixed("restart"),
        "destroy": as_fixed("destroy"),
        "mount": as_fixed("mount"),
        "list": as_fixed("list"),
        "config_set": as_fixed("config"),
        # create.sh: -B VNET on an existing bridge, -g the jail's default router, -T thick
        "bridge": as_fixed("-B"),
        "gateway": as_opt_val("-g"),
        "thick": as_flag("-T"),
        "priority": as_opt_val("-p"),
        "no_boot": as_flag("--no-boot"),
        # destroy.sh: -a stops a running jail first, -f forces the ZFS unmount, -y never prompts
        "auto": as_fixed("-a"),
        "force": as_fixed("-f"),
        "yes": as_fixed("-y"),
        "json": as_fixed("-j"),
        "name": as_value(),
        "release": as_value(),
        "ip": as_value(),
        "interface": as_value(),
        # config.sh: NAME set PROPERTY VALUE (set, not add: both mean the same in 1.4.4)
        "set": as_fixed("set"),
        "property": as_value(),
        "value": as_value(),
        # mount.sh: NAME HOST_PATH JAIL_PATH FS_TYPE FS_OPTIONS DUMP PASS_NUMBER
        "host_path": as_value(),
        "jail_path": as_value(),
        "nullfs": as_fixed("nullfs"),
        "mode": as_value(),
        "dump_pass": as_fixed("0", "0"),
    },
)

JLS = CommandRunner(
    "jls",
    {
        "jail": as_opt_val("-j"),
        "jid": as_fixed("jid"),
        "name_param": as_fixed("name"),
    },
)

# -f (foreground): without it timeout(1) becomes the reaper of the command's whole tree and, once the
# command ends, waits for every descendant (bin/timeout/timeout.c: PROC_REAP_STATUS, rs_children), so the
# daemons a started jail's rc leaves running would hold the call until the bound and then be killed.
TIMEOUT = CommandRunner(
    "timeout", {"foreground": as_flag("-f"), "kill_after": as_opt_val("-k"), "duration": as_value()}
)


class BastilleError(Exception):
    """A jail could not be brought to the wanted state; the message says which and why.

    result, when set, is what was done before the failure (the module returns it with the error)."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


def command(runner, order, **values):
    """runner.argv(), with a command the host lacks (bastille before pkg installed it) as a BastilleError."""
    try:
        return runner.argv(order, **values)
    except BackupError as exc:
        raise BastilleError(f"{exc} (is Bastille installed? pkg install bastille)") from None


def bounded(argv, verb):
    """argv under timeout(1) -f: TERM to the command after the verb's bound, KILL 30 s later."""
    limit = TIMEOUTS.get(verb, DEFAULT_TIMEOUT)
    return command(TIMEOUT, "foreground kill_after duration", foreground=True, kill_after=KILL_AFTER,
                   duration=limit) + argv


# -- files Bastille writes (read, never written, here)


def read_text(path):
    """A file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_EXPAND = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _unquote(value):
    value = value.strip()
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        return value[1:end] if end > 0 else value[1:]
    return value.split("#", 1)[0].strip()


def parse_shell_vars(text, seed=None):
    """NAME=value lines as sh(1) sets them (bastille.conf, settings.conf), ${NAME} expanded."""
    values = dict(seed or {})
    for line in (text or "").splitlines():
        match = _ASSIGN.match(line)
        if not match:
            continue
        raw = match.group(2).strip()
        value = _unquote(raw)
        if not raw.startswith("'"):
            value = _EXPAND.sub(lambda m: values.get(m.group(1) or m.group(2), ""), value)
        values[match.group(1)] = value
    return values


def jails_dir(prefix, conf_text):
    """${bastille_jailsdir}: bastille.conf's value when it sets one, else PREFIX/jails.

    Returns (jailsdir, conf_prefix): conf_prefix is bastille.conf's bastille_prefix (None when unset)."""
    conf = parse_shell_vars(conf_text)
    conf_prefix = conf.get("bastille_prefix") or None
    if conf.get("bastille_jailsdir"):
        base = parse_shell_vars(conf_text, {"bastille_prefix": conf_prefix or prefix})
        return base["bastille_jailsdir"], conf_prefix
    return os.path.join(conf_prefix or prefix, "jails"), conf_prefix


_PARAM = re.compile(r"^\s+([A-Za-z0-9_.]+)\s*(\+?=)\s*(.*?)\s*;\s*$")
_BARE = re.compile(r"^\s+([A-Za-z0-9_.]+)\s*;\s*$")


def _strip_quotes(value):
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_jail_conf(text):
    """jail(8) parameters of a jail.conf Bastille wrote: ``key = value;`` (last wins),
    ``key += value;`` (a list), ``key;`` (True)."""
    params = {}
    for line in (text or "").splitlines():
        match = _PARAM.match(line)
        if match:
            key, op, value = match.group(1), match.group(2), _strip_quotes(match.group(3))
            if op == "+=":
                previous = params.get(key)
                params[key] = (previous if isinstance(previous, list) else []) + [value]
            else:
                params[key] = value
            continue
        match = _BARE.match(line)
        if match:
            params[match.group(1)] = True
    return params


def parse_fstab(text):
    """fstab(5) entries as dicts: spec, file, type, options (a list), in file order."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0].startswith("#"):
            continue
        entries.append({"spec": fields[0], "file": fields[1], "type": fields[2], "options": fields[3].split(",")})
    return entries


def jail_paths(jailsdir, name):
    base = os.path.join(jailsdir, name)
    return {
        "base": base,
        "root": os.path.join(base, "root"),
        "conf": os.path.join(base, "jail.conf"),
        "fstab": os.path.join(base, "fstab"),
        "settings": os.path.join(base, "settings.conf"),
    }


def mount_point(jailsdir, name, jail_path):
    """The fstab mount point mount.sh writes for JAIL_PATH: ${jailsdir}/NAME/root/JAIL_PATH, normalised."""
    return os.path.normpath(jail_paths(jailsdir, name)["root"] + "/" + jail_path)


def unsafe_mount_point(root, jail_path):
    """Why ROOT/JAIL_PATH must not be mounted on, or None.

    mount.sh creates the mount point and mount(8) resolves it on the host: a symbolic link that
    the jail's users planted on the way (``/srv -> /etc``) would put the host directory over a
    host path. Walks the components without following links, each relative to its parent's
    descriptor; a missing component is fine (mount.sh creates it)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(root, flags)
    except FileNotFoundError:
        return None
    try:
        walked = ""
        for part in [p for p in jail_path.split("/") if p]:
            walked += "/" + part
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            if stat.S_ISLNK(info.st_mode):
                return f"{walked} inside the jail is a symbolic link"
            if not stat.S_ISDIR(info.st_mode):
                return f"{walked} inside the jail is not a directory"
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
        return None
    finally:
        os.close(fd)


def read_jail(jailsdir, name):
    """What the files say about one jail: None when it does not exist (no jail.conf)."""
    paths = jail_paths(jailsdir, name)
    conf_text = read_text(paths["conf"])
    if conf_text is None:
        return None
    fstab = parse_fstab(read_text(paths["fstab"]))
    settings = parse_shell_vars(read_text(paths["settings"]))
    release_mount = os.path.join(paths["root"], ".bastille")
    return {
        "params": parse_jail_conf(conf_text),
        "fstab": fstab,
        "boot": settings.get("boot", "on"),
        "priority": settings.get("priority", "99"),
        # list.sh get_jail_info(): thin when the fstab null-mounts the release on root/.bastille
        "thick": not any(os.path.normpath(e["file"]) == release_mount for e in fstab),
    }


# -- outputs of commands


def parse_jls_names(text):
    """``jls name``: one running jail's name a line."""
    return {line.strip() for line in (text or "").splitlines() if line.strip()}


_LIST_KEYS = {"IP ADDRESS": "ip", "NAME": "name", "STATE": "state", "TYPE": "type", "JID": "jid"}


def _list_row(fields):
    row = {}
    for key, value in fields.items():
        short = _LIST_KEYS.get(key.upper())
        if short:
            row[short] = "" if value == "-" else value
    row["ips"] = [ip for ip in row.get("ip", "").split(",") if ip]
    return row


def parse_list(text):
    """``bastille list`` or ``bastille list -j``, 1.4.4's format or master's, as {name: row}.

    1.4.4 (list.sh list_bastille): header `` JID  Name  Boot  Prio  State  Type  IP Address
    Published Ports  Release  Tags`` with computed widths, JSON keys "Name", "IP Address";
    master: upper-case titles single-spaced (``JID NAME BOOT PRIO STATE TYPE IP ADDRESS PORTS
    RELEASE TAGS``), JSON keys "NAME", "IP ADDRESS". Values never contain blanks ("-" when
    empty); a jail with several addresses continues on lines holding only an address.
    """
    text = (text or "").strip()
    if text.startswith("["):
        try:
            rows = [_list_row(item) for item in json.loads(text)]
        except (ValueError, AttributeError) as exc:
            raise BastilleError(f"bastille list -j printed no JSON array of objects: {exc}") from None
        return {row["name"]: row for row in rows if row.get("name")}
    lines = text.splitlines()
    if not lines:
        return {}
    header = re.sub(r"IP Address|IP ADDRESS", "IP_ADDRESS", lines[0])
    header = re.sub(r"Published Ports", "PORTS", header)
    titles = [t.replace("IP_ADDRESS", "IP ADDRESS") for t in header.split()]
    if not titles or titles[0] != "JID":
        raise BastilleError(f"bastille list printed no table header: {lines[0]!r}")
    jails, last = {}, None
    for line in lines[1:]:
        words = line.split()
        if len(words) == 1 and last is not None:
            last["ips"].append(words[0])
            continue
        if len(words) < len(titles) - 1:
            continue
        row = _list_row({title: words[i] for i, title in enumerate(titles) if i < len(words)})
        if row.get("name"):
            jails[row["name"]] = last = row
    return jails


# -- wanted state


def check_jail_spec(spec):
    """Problems with one entry of the jails list (an empty list when there are none)."""
    problems = []
    name = spec.get("name") or ""
    if not NAME_RE.match(name):
        problems.append(
            f"jail name {name!r} is not alphanumeric with at most 11 characters (a VNET jail's epair "
            "e0a_NAME must stay under 16 characters and Bastille refuses - and _ in VNET names)"
        )
    elif name.isdigit():
        # create.sh refuses it, and jls -j would take it for a JID
        problems.append(f"jail name {name!r} has only digits")
    if spec.get("state") == "absent":
        return problems
    for key in ("ip", "gateway"):
        if not spec.get(key):
            problems.append(f"jail {name}: {key} is required unless state is absent")
    if problems:
        return problems
    try:
        iface = ipaddress.IPv4Interface(spec["ip"])
    except ValueError as exc:
        return [f"jail {name}: ip {spec['ip']!r} is not an IPv4 address with a prefix (A.B.C.D/N): {exc}"]
    if "/" not in spec["ip"]:
        problems.append(f"jail {name}: ip {spec['ip']!r} needs its prefix length (A.B.C.D/N)")
    try:
        gateway = ipaddress.IPv4Address(spec["gateway"])
    except ValueError as exc:
        return problems + [f"jail {name}: gateway {spec['gateway']!r} is not an IPv4 address: {exc}"]
    if gateway not in iface.network or gateway == iface.ip:
        problems.append(f"jail {name}: gateway {gateway} is not another address of {iface.network}")
    if spec.get("priority") is not None and spec["priority"] < 0:
        problems.append(f"jail {name}: priority {spec['priority']} is negative (Bastille takes 0 or more)")
    for mount in spec.get("mounts") or []:
        for key in ("host", "jail"):
            path = mount.get(key) or ""
            if not path.startswith("/") or re.search(r"\s", path) or "/../" in path + "/":
                problems.append(f"jail {name}: mount {key} path {path!r} must be absolute, without blanks or '..'")
    for key, value in (spec.get("config") or {}).items():
        if not re.match(r"^[a-z][a-z0-9_.]*$", str(key)):
            problems.append(f"jail {name}: config key {key!r} is not a jail(8) parameter name")
        # config.sh accepts only these characters in a value
        if value is not None and not re.match(r"^[A-Za-z0-9._/:| $!&%=(){}-]*$", config_value(value)):
            problems.append(f"jail {name}: config {key} value {value!r} has characters bastille config refuses")
    return problems


def config_value(value):
    """A jail(8) parameter value as jail.conf holds it: booleans as true/false, None as a bare parameter."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def current_config(params, key):
    """A parameter's value in jail.conf as config_value() writes it ("" for a bare ``key;``), None if unset."""
    value = params.get(key)
    if value is None:
        return None
    if value is True:
        return ""
    if isinstance(value, list):
        return value[-1]
    return value


def describe(name, view):
    """One jail as a readable line or two, for --diff; view is None for an absent jail."""
    if view is None:
        return f"{name}: absent\n"
    head = f"{name}: {view['state']}, {'thick' if view['thick'] else 'thin'}"
    if view.get("ip"):
        head += f", {view['ip']}"
    if view.get("gateway"):
        head += f" via {view['gateway']}"
    if view.get("bridge"):
        head += f" on {view['bridge']}"
    head += f", boot {view['boot']}"
    if view.get("priority") is not None:
        head += f", priority {view['priority']}"
    lines = [head]
    for key, value in sorted((view.get("config") or {}).items()):
        lines.append(f"  config {key} = {'(unset)' if value is None else value or '(set)'}")
    for mount in view.get("mounts") or []:
        lines.append(f"  mount {mount['host']} -> {mount['jail']} ({mount['mode']})")
    return "\n".join(lines) + "\n"


class Host:
    """One host's Bastille: runs the calls, checks exact names first and the end state after."""

    def __init__(self, run, jailsdir, check_mode):
        self.run = run
        self.jailsdir = jailsdir
        self.check_mode = check_mode
        self.running = set()

    # -- facts

    def exists(self, name):
        return os.path.isfile(jail_paths(self.jailsdir, name)["conf"])

    def is_running(self, name):
        rc, _out, _err = self.run(bounded(command(JLS, "jail jid", jail=name), "jls"))
        return rc == 0

    def probe_running(self):
        """Every running jail's name, from one ``jls name``."""
        argv = command(JLS, "name_param")
        rc, out, err = self.run(bounded(argv, "jls"))
        if rc != 0:
            raise BastilleError(f"{' '.join(argv)} failed (rc={rc}): {(err or out).strip()}")
        self.running = parse_jls_names(out)
        return self.running

    def listed(self):
        """``bastille list -j``, parsed; only asked when an existing jail's address is compared."""
        _rc, out, _err = self.bastille("list", "list json")
        return parse_list(out)

    # -- calls

    def bastille(self, verb, order, name=None, **values):
        """Run one Bastille call; a non-zero exit is an error with Bastille's own words.

        A call that targets an existing jail first checks that NAME itself exists: Bastille
        prefix-matches targets, so a missing NAME would silently act on a sibling (NAMEx)."""
        if name is not None and verb != "create" and not self.exists(name):
            raise BastilleError(
                f"jail {name} does not exist (no {jail_paths(self.jailsdir, name)['conf']}): "
                f"'bastille {verb} {name}' was not run (Bastille would act on a jail whose name starts with {name})"
            )
        if name is not None:
            values["name"] = name
        argv = command(BASTILLE, order, **values)
        rc, out, err = self.run(bounded(argv, verb))
        if rc != 0:
            said = (err + out).strip()
            if not said and verb == "create":
                said = "(no output: Bastille 1.4.4 exits 1 silently when validate_ip refuses the -g gateway)"
            if rc == 124:
                said = f"killed after {TIMEOUTS.get(verb, DEFAULT_TIMEOUT)} s by timeout(1). {said}"
            raise BastilleError(f"{' '.join(argv)} failed (rc={rc}): {said}")
        return rc, out, err

    def lied(self, argv_text, what, out, err):
        said = (err + out).strip() or "(nothing)"
        return BastilleError(f"{argv_text} exited 0 but {what}; Bastille said: {said}")


def _mount_view(mount):
    return {"host": mount["host"], "jail": mount["jail"], "mode": mount.get("mode") or "ro"}


class JailConverger:
    """Brings one listed jail to its wanted state on a Host, or says in check mode what it would do."""

    def __init__(self, host, spec, release, bridge, listed=None):
        self.host = host
        self.spec = spec
        self.name = spec["name"]
        self.release = release
        self.bridge = bridge
        self.listed = listed or {}
        self.actions = []
        self.warnings = []

    # -- views for the diff

    def view_now(self, fact, up):
        if fact is None:
            return None
        managed = self.spec.get("config") or {}
        row = self.listed.get(self.name) or {}
        mounts = []
        for mount in self.spec.get("mounts") or []:
            entry = self.fstab_entry(fact, mount)
            if entry:
                mounts.append({"host": entry["spec"], "jail": mount["jail"], "mode": entry["options"][0]})
        return {
            "state": "started" if up else "stopped",
            "thick": fact["thick"],
            "ip": ",".join(row.get("ips") or []),
            "boot": fact["boot"],
            "priority": fact["priority"] if self.spec.get("priority") is not None else None,
            "config": {key: current_config(fact["params"], key) for key in managed},
            "mounts": mounts,
        }

    def view_wanted(self):
        if self.spec["state"] == "absent":
            return None
        return {
            "state": self.spec["state"],
            "thick": bool(self.spec.get("thick")),
            "ip": self.spec["ip"],
            "gateway": self.spec["gateway"],
            "bridge": self.bridge,
            "boot": "on" if self.spec.get("boot", True) else "off",
            "priority": str(self.spec["priority"]) if self.spec.get("priority") is not None else None,
            "config": {key: config_value(value) for key, value in (self.spec.get("config") or {}).items()},
            "mounts": [_mount_view(m) for m in self.spec.get("mounts") or []],
        }

    # -- facts

    def fact(self):
        return read_jail(self.host.jailsdir, self.name)

    def fstab_entry(self, fact, mount):
        point = mount_point(self.host.jailsdir, self.name, mount["jail"])
        for entry in fact["fstab"]:
            if os.path.normpath(entry["file"]) == point:
                return entry
        return None

    # -- steps

    def act(self, action, verb, order, verify=None, **values):
        """Record an action; outside check mode run it and verify its end state."""
        self.actions.append(action)
        if self.host.check_mode:
            return
        argv_text = f"bastille {verb} {self.name}"
        _rc, out, err = self.host.bastille(verb, order, name=self.name, **values)
        if verify is not None:
            problem = verify()
            if problem:
                raise self.host.lied(argv_text, problem, out, err)

    def converge(self):
        fact = self.fact()
        up = self.name in self.host.running
        before = self.view_now(fact, up)
        if self.spec["state"] == "absent":
            if fact is not None:
                self.destroy()
        else:
            self.present(fact, up)
        return before, (self.view_wanted() if self.actions else before)

    def destroy(self):
        def gone():
            if self.host.exists(self.name):
                return f"{jail_paths(self.host.jailsdir, self.name)['conf']} is still there"
            if self.host.is_running(self.name):
                return f"jls still lists {self.name}"
            return None

        self.act("destroy", "destroy", "destroy auto force yes name", verify=gone)

    def create(self):
        spec = self.spec
        if not self.release:
            raise BastilleError(f"jail {self.name} does not exist and no release is given to create it from")

        def made():
            fact = self.fact()
            if fact is None:
                return f"{jail_paths(self.host.jailsdir, self.name)['conf']} does not exist"
            if fact["params"].get("vnet") is not True:
                return "its jail.conf has no 'vnet;'"
            prestart = fact["params"].get("exec.prestart") or []
            if not any(f"ifconfig {self.bridge} addm " in line for line in prestart):
                return f"its jail.conf does not add its epair to {self.bridge}"
            if fact["thick"] != bool(spec.get("thick")):
                return f"it is {'thick' if fact['thick'] else 'thin'}"
            if not self.host.is_running(self.name):
                return "jls does not list it"
            return None

        kind = "thick" if spec.get("thick") else "thin"
        self.act(
            f"create {kind} jail {spec['ip']} via {spec['gateway']} on {self.bridge}",
            "create",
            "create bridge gateway thick priority no_boot name release ip interface",
            verify=made,
            gateway=spec["gateway"],
            thick=bool(spec.get("thick")),
            priority=spec.get("priority"),
            no_boot=not spec.get("boot", True),
            release=self.release,
            ip=spec["ip"],
            interface=self.bridge,
        )

    def set_config(self, key, want):
        def applied():
            fact = self.fact()
            have = current_config(fact["params"], key) if fact else None
            return None if have == want else f"jail.conf has {key} = {have!r}, not {want!r}"

        order = "config_set name set property value" if want != "" else "config_set name set property"
        values = {"property": key, "value": want} if want != "" else {"property": key}
        self.act(f"config {key}={want}" if want != "" else f"config {key}", "config", order, verify=applied, **values)

    def set_setting(self, key, want):
        def applied():
            fact = self.fact()
            have = fact[key] if fact else None
            return None if have == want else f"settings.conf has {key}={have!r}, not {want!r}"

        self.act(
            f"{key} {want}", "config", "config_set name set property value", verify=applied, property=key, value=want
        )

    def start(self, verb="start", why=""):
        def up():
            return None if self.host.is_running(self.name) else "jls does not list it (the jail did not start)"

        self.act(verb + why, verb, f"{verb} name", verify=up)

    def stop(self):
        def down():
            return f"jls still lists {self.name}" if self.host.is_running(self.name) else None

        self.act("stop", "stop", "stop name", verify=down)

    def mount(self, mount):
        want = _mount_view(mount)

        def added():
            fact = self.fact()
            entry = self.fstab_entry(fact, mount) if fact else None
            if entry is None:
                return f"its fstab has no line for {mount_point(self.host.jailsdir, self.name, mount['jail'])}"
            return None

        self.act(
            f"mount {want['host']} -> {want['jail']} ({want['mode']})",
            "mount",
            "mount name host_path jail_path nullfs mode dump_pass",
            verify=added,
            host_path=want["host"],
            jail_path=want["jail"],
            mode=want["mode"],
        )

    def present(self, fact, up):
        spec = self.spec
        created = fact is None
        if created:
            self.create()
            up = True
            boot = "on" if spec.get("boot", True) else "off"
            prio = str(spec["priority"]) if spec.get("priority") is not None else "99"
            fact = self.fact() if not self.host.check_mode else None
            fact = fact or {"params": {}, "fstab": [], "boot": boot, "priority": prio, "thick": bool(spec.get("thick"))}
        else:
            self.drift(fact)
        restart = False
        for key, value in (spec.get("config") or {}).items():
            want = config_value(value)
            if current_config(fact["params"], key) != want:
                self.set_config(key, want)
                restart = restart or up
        boot = "on" if spec.get("boot", True) else "off"
        if fact["boot"] != boot:
            self.set_setting("boot", boot)
        if spec.get("priority") is not None and fact["priority"] != str(spec["priority"]):
            self.set_setting("priority", str(spec["priority"]))
        missing = []
        for mount in spec.get("mounts") or []:
            entry = self.fstab_entry(fact, mount)
            want = _mount_view(mount)
            if entry is None:
                missing.append(mount)
            elif entry["spec"] != want["host"] or entry["options"][0] != want["mode"]:
                raise BastilleError(
                    f"jail {self.name}: its fstab mounts {entry['spec']} on {want['jail']} "
                    f"({','.join(entry['options'])}), not {want['host']} ({want['mode']}); the module never replaces "
                    f"a mount: change it by hand (bastille umount {self.name} {want['jail']}), then run again"
                )
        if missing and not up:
            # mount.sh 1.4.4 skips a stopped jail ("Jail is not running.") and still exits 0
            self.start(why=" (bastille mount needs it running)")
            up = True
        for mount in missing:
            problem = unsafe_mount_point(jail_paths(self.host.jailsdir, self.name)["root"], mount["jail"])
            if problem:
                raise BastilleError(f"jail {self.name}: not mounting {mount['host']} there: {problem}")
            self.mount(mount)
        if spec["state"] == "started":
            if not up:
                self.start()
            elif restart:
                self.start("restart", " (jail.conf changed)")
        elif up:
            self.stop()

    def drift(self, fact):
        """Differences the module does not repair (they would need the jail destroyed): warnings."""
        if fact["thick"] != bool(self.spec.get("thick")):
            self.warnings.append(
                f"jail {self.name} is {'thick' if fact['thick'] else 'thin'}, the inventory wants it "
                f"{'thick' if self.spec.get('thick') else 'thin'}; it is left as it is"
            )
        row = self.listed.get(self.name)
        wanted_ip = str(ipaddress.IPv4Interface(self.spec["ip"]).ip)
        if row and row.get("ips") and wanted_ip not in row["ips"]:
            self.warnings.append(
                f"jail {self.name} has address {','.join(row['ips'])}, the inventory wants {wanted_ip}; "
                "it is left as it is (destroy and re-create it to move it)"
            )


def converge(run, prefix, release, bridge, jails, check_mode):
    """Bring every listed jail to its wanted state; jails not listed are never touched.

    Returns the module's result: changed, jails {NAME: {changed, actions, state}}, results
    (the same per jail, in the order given), diff and warnings. Raises BastilleError, whose
    message names the jail, the call and what Bastille said."""
    specs = [dict(j) for j in jails]
    for spec in specs:
        spec.setdefault("state", "started")
        spec["state"] = spec.get("state") or "started"
    problems = [p for spec in specs for p in check_jail_spec(spec)]
    names = [spec.get("name") for spec in specs]
    problems += [f"jail {n} is listed more than once" for n in sorted({n for n in names if names.count(n) > 1})]
    present = [s for s in specs if s["state"] != "absent"]
    if present and not bridge:
        problems.append("bridge is required when a jail is to be present")
    if problems:
        raise BastilleError("; ".join(problems))

    conf_text = read_text(BASTILLE_CONF)
    jailsdir, conf_prefix = jails_dir(prefix, conf_text)
    warnings = []
    if conf_prefix and os.path.normpath(conf_prefix) != os.path.normpath(prefix):
        warnings.append(
            f"{BASTILLE_CONF} sets bastille_prefix={conf_prefix}, not {prefix}; its jails are in {jailsdir}"
        )
    host = Host(run, jailsdir, check_mode)
    host.probe_running()
    listed = host.listed() if any(host.exists(s["name"]) for s in present) else {}

    result = {"changed": False, "jails": {}, "results": [], "warnings": warnings}
    before_text, after_text = [], []
    # absent jails first: their addresses and names are free before new jails are created
    for spec in sorted(specs, key=lambda s: s["state"] != "absent"):
        jail = JailConverger(host, spec, release, bridge, listed)
        try:
            before, after = jail.converge()
        except BastilleError as exc:
            entry = {"name": jail.name, "changed": bool(jail.actions), "actions": jail.actions, "state": "failed"}
            result["results"].append(entry)
            result["jails"][jail.name] = {k: entry[k] for k in ("changed", "actions", "state")}
            result["changed"] = result["changed"] or bool(jail.actions)
            raise BastilleError(f"jail {jail.name}: {exc}", result) from None
        entry = {"name": jail.name, "changed": bool(jail.actions), "actions": jail.actions, "state": spec["state"]}
        result["results"].append(entry)
        result["jails"][jail.name] = {k: entry[k] for k in ("changed", "actions", "state")}
        result["warnings"].extend(jail.warnings)
        if jail.actions:
            result["changed"] = True
            before_text.append(describe(jail.name, before))
            after_text.append(describe(jail.name, after))
    order = {spec["name"]: i for i, spec in enumerate(specs)}
    result["results"].sort(key=lambda e: order[e["name"]])
    result["diff"] = {"before": "".join(before_text), "after": "".join(after_text)}
    return result

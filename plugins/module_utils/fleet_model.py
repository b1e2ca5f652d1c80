# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""The warden fleet model: one host's inventory in, every derived value out.

``build_plan`` is the only place where agent names become jail names, IPs,
database identifiers, service names, paths and ports.  Roles, modules and
templates read the plan it returns; nothing else derives a name.

Validation collects *every* problem before anything on a host changes.  Each
problem names the host, the agent, the field and what to do about it.

Standard library only: the same file runs on the controller and on the
FreeBSD host.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass

# Slot numbers inside an agent's /24: the host owns .1 on warden0.
GATEWAY_HOST = 1
SLOT_HOSTS = {"git": 2, "cms": 3, "llm": 4, "db": 5}
SLOTS = tuple(SLOT_HOSTS)
DEFAULT_JAILS = ("git", "cms", "db")
THICK_SLOTS = frozenset({"db"})
DB_PURPOSES = ("ops", "brain", "skills")
LLM_MODES = ("own", "shared", "none")
LLM_BACKENDS = ("ollama", "llama-cpp")
# The LLM server's port in its jail, for either backend (PF lets agents with llm: shared reach it).
LLM_PORT = 11434
# The model file the llama-cpp package's rc.d script (llama_server) requires before it starts.
LLAMA_SERVER_MODEL = "/var/db/llama-server/model.gguf"
# jail(8) parameters of the db jail: PostgreSQL needs System V shared memory, semaphores and queues of its own.
DB_JAIL_CONFIG = {"sysvshm": "new", "sysvsem": "new", "sysvmsg": "new"}
# The git jail's account (git-shell: git's own commands only) and the agent's public key, relative to its home.
GIT_USER, GIT_HOME, GIT_SHELL = "git", "/srv/git", "/usr/local/bin/git-shell"
AGENT_SSH_PUBLIC_KEY = ".ssh/id_ed25519.pub"
# The agent's SSH key pair in its home, made once by warden.fleet.agent_workspace (ssh-keygen -t ed25519).
AGENT_SSH_DIR, AGENT_SSH_KEY = ".ssh", ".ssh/id_ed25519"
# The git jail's sshd host key (FreeBSD's rc.d/sshd makes it before sshd's first start), which the agent's
# known_hosts pins; the agent reaches the jail as `git` under this ssh_config Host name.
GIT_HOST_KEY, GIT_SSH_ALIAS = "/etc/ssh/ssh_host_ed25519_key.pub", "git"
# PostgreSQL extensions an agent's databases can have, with the FreeBSD package that ships each
# (pgvector; the others are in postgresqlNN-contrib, which the db jail gets). vector is always there.
DB_EXTENSION_PACKAGES = {
    "vector": "pgvector",
    **{
        ext: "postgresql-contrib"
        for ext in (
            "btree_gin", "btree_gist", "citext", "cube", "earthdistance", "fuzzystrmatch", "hstore", "intarray",
            "ltree", "pg_stat_statements", "pg_trgm", "pgcrypto", "tablefunc", "unaccent", "uuid-ossp",
        )
    },
}
DB_DEFAULT_EXTENSIONS = ("vector",)
STATES = ("present", "absent")

# Bastille VNET jails: the epair is e0a_NAME/e0b_NAME and must stay below
# IFNAMSIZ (16), and '-'/'_' break VNET names.  See FREEBSD-NOTES.md.
JAIL_NAME_MAX = 11
JAIL_NAME_RE = re.compile(r"^[A-Za-z0-9]+$")
# An agent name is at once an rc.d script and rcvar prefix, a tmux session,
# a PostgreSQL identifier, a login name and a VNET jail name prefix: only the
# intersection of those alphabets is safe.
AGENT_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
SUBNET_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
IFNAME_RE = re.compile(r"^[a-z][a-z0-9_.]*[0-9]$")
IFNAME_MAX = 15
RELEASE_RE = re.compile(r"^\d{1,2}\.\d-(RELEASE|STABLE|CURRENT|BETA\d*|RC\d*|ALPHA\d*)(-p\d+)?$")
BCP47_RE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|\d{3}))?$")
SYSTEM_LOCALE_RE = re.compile(r"^([a-z]{2,3}_[A-Z]{2}(@[a-z]+)?|C)\.UTF-8$")
MOVING_REFS = frozenset({"", "head", "main", "master", "trunk", "develop", "development", "latest", "stable"})
SAFE_TEXT_RE = re.compile(r'^[^"$`\\\n\r\x00]+$')
PORT_MIN, PORT_MAX = 1024, 65535
PORT_OFFSETS = (0, 3)  # an agent gateway listening on N also uses N+3
POSTGRESQL_VERSIONS = range(13, 19)
PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))

# Names an agent may not take: FreeBSD base users and groups, rc.d scripts of
# the base system and of what the collection installs, PostgreSQL's own
# roles and databases, and words that read as something else.
RESERVED_NAMES = frozenset(
    """
    root toor daemon operator bin tty kmem games news man sshd smmsp mailnull
    bind unbound proxy uucp pop www ntpd hast tests nobody nogroup wheel staff
    sys guest video realtime network dialer auditdistd
    bastille warden pf pflog jail jails netif routing local cron syslogd devd
    sendmail zfs sysctl ldconfig dmesg ipfw dnsmasq ollama llama postgres
    postgresql pgsql template template0 template1 public all default none
    admin localhost host git cms db llm shared agent agents backup backups
    tmux service services
    """.split()  # noqa: SIM905 - a word list reads better than 80 quoted strings
)

AGENT_KEYS = {
    "assistant_name": "display name of the assistant (default: the agent name, capitalised)",
    "subnet": "the agent's private /24 as its first three octets, e.g. 10.0.1",
    "jails": "service jails the agent gets, any of git, cms, db, llm",
    "llm": "own | shared | none",
    "ips": "per-slot IP overrides inside the agent's /24",
    "jail_names": "per-slot jail name overrides",
    "locale": "display, assistant and system locales",
    "soul": "soul repo: repo URL and pinned version",
    "command": "absolute path of the agent runtime",
    "args": "arguments of the agent runtime",
    "port": "listen port of the agent gateway (it also uses port + 3)",
    "expose": "ports of the host's external interface redirected to one of the agent's jails",
    "state": "present | absent",
    "secrets": "the agent's own secrets for its environment file, {NAME: value}; values vault-encrypted",
    "db_extensions": "PostgreSQL extensions in the agent's databases besides vector (default: warden_db_extensions)",
}
LOCALE_KEYS = ("display", "assistant", "system")
SOUL_KEYS = ("repo", "version", "key_file")
SHARED_FILES_KEYS = ("src",)
# Environment variable names (POSIX: letters, digits, underscore, not starting with a digit).
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The environment file's name for the password of the agent's database role.
DB_PASSWORD_ENV = "WARDEN_DB_PASSWORD"
SHARED_LLM_KEYS = ("name", "subnet", "ip")
EXPOSE_KEYS = ("port", "slot", "to", "proto")
EXPOSE_PROTOS = ("tcp", "udp")
EXPOSE_EXAMPLE = "{port: 8443, slot: cms, to: 443}"
# Never redirected away from the host: SSH (the operator's way in).
EXPOSE_RESERVED_PORTS = frozenset({22})

HOST_DEFAULTS = {
    "warden_release": "14.3-RELEASE",
    "warden_bridge": "warden0",
    "warden_postgresql_version": 17,
    "warden_root": "/usr/local/warden",
    "warden_bastille_prefix": "/usr/local/bastille",
    "warden_etc_dir": "/usr/local/etc/warden",
    "warden_llm_backend": "ollama",
    # On the controller: one 0600 password file per agent database role, outside any repository.
    "warden_credentials_dir": "~/.config/warden/credentials",
    "warden_db_extensions": [],
}
HOST_KEYS = (
    "warden_agents",
    "warden_ext_if",
    "warden_backup",
    "warden_shared_llm",
    "warden_shared_files",
    *HOST_DEFAULTS,
)
# Variables the playbooks accept on the command line or set as facts.
RUNTIME_KEYS = ("warden_plan", "warden_plan_out", "warden_list_json")

BACKUP_DEFAULTS = {
    "dir": "/var/backups/warden",
    "keep_last": 7,
    "keep_daily": 7,
    "keep_weekly": 4,
    "keep_monthly": 6,
    "verify_every": 7,
    "schedule": {"minute": "17", "hour": "3", "weekday": "*"},
    "include_env": False,
    "env_passphrase_file": None,
    "compression": "auto",
    "exclude": [".cache/", "*.lock", "*.pid", "node_modules/.cache/"],
    "copy_to": None,
}
BACKUP_COMPRESSIONS = ("auto", "zstd", "xz", "gzip")
SCHEDULE_KEYS = ("minute", "hour", "weekday")
CRON_FIELD_RE = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")

DEFAULT_LOCALE = {"display": "en-US", "assistant": "en-US", "system": "en_US.UTF-8"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory, with the fix."""

    host: str
    agent: str | None
    field: str
    message: str
    fix: str

    def __str__(self):
        where = f"agent '{self.agent}', field '{self.field}'" if self.agent else f"field '{self.field}'"
        return f"{self.host}: {where}: {self.message}. Fix: {self.fix}"

    def as_dict(self):
        return {"host": self.host, "agent": self.agent, "field": self.field, "message": self.message, "fix": self.fix}


class InventoryError(Exception):
    """Raised by ``plan_or_raise`` with every problem found."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def did_you_mean(word, choices):
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(choices))}"


def _type_name(value):
    # isinstance, not type(): inventory values arrive as subclasses (Ansible tags them with their origin)
    for kind, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (dict, "mapping"),
        (list, "list"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    """Collects problems for one host; every check adds and carries on."""

    def __init__(self, host):
        self.host = host
        self.problems = []

    def add(self, agent, field, message, fix):
        self.problems.append(Problem(self.host, agent, field, message, fix))

    def mapping(self, agent, field, value, allowed):
        """Return ``value`` as a dict (empty when missing or wrong), flagging unknown keys."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(agent, field, f"must be a mapping, got {_type_name(value)}", f"write {field} as key: value pairs")
            return {}
        for key in value:
            if key not in allowed:
                self.add(
                    agent,
                    f"{field}.{key}",
                    "unknown key",
                    f"{did_you_mean(key, allowed)} Remove or rename it",
                )
        return value

    def string(self, agent, field, value, fix):
        if not isinstance(value, str) or not value:
            got = "nothing" if value is None else _type_name(value)
            self.add(agent, field, f"must be a non-empty string, got {got}", fix)
            return None
        return value


def _parse_subnet(check, agent, field, value):
    """Return the ip_network of an 'A.B.C' subnet base, or None after adding a problem."""
    example = "the first three octets of a private /24, e.g. 10.0.1"
    if not isinstance(value, str):
        got = "nothing" if value is None else f"{_type_name(value)} {value!r}"
        check.add(agent, field, f"must be a string like '10.0.1', got {got}", f"set {field} to {example} (quote it)")
        return None
    match = SUBNET_RE.match(value)
    if not match:
        hint = "drop the last octet" if re.match(r"^\d+\.\d+\.\d+\.\d+(/\d+)?$", value) else "use three octets"
        check.add(agent, field, f"'{value}' is not a /24 base", f"{hint}: set {field} to {example}")
        return None
    if any(int(octet) > 255 for octet in match.groups()):
        check.add(agent, field, f"'{value}' has an octet above 255", f"set {field} to {example}")
        return None
    net = ipaddress.ip_network(f"{value}.0/24")
    if not any(net.subnet_of(private) for private in PRIVATE_NETS):
        check.add(
            agent,
            field,
            f"{net} is not a private range (RFC 1918)",
            "pick a /24 inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
        )
        return None
    return net


def _check_agent_name(check, name):
    if not isinstance(name, str):
        check.add(str(name), "name", f"agent names must be strings, got {_type_name(name)}", "use a name like 'atlas'")
        return False
    if not AGENT_NAME_RE.match(name):
        if name.lower() != name and AGENT_NAME_RE.match(name.lower()):
            fix = f"use lowercase: '{name.lower()}'"
        elif re.search(r"[-_.]", name):
            fix = f"drop the separators: '{re.sub(r'[^a-z0-9]', '', name.lower()) or 'agent'}'"
        else:
            fix = "start with a letter and use only a-z and 0-9"
        check.add(
            name,
            "name",
            f"'{name}' cannot serve as an rc.d service, tmux session, PostgreSQL identifier and VNET jail prefix "
            "(allowed: lowercase letters and digits, starting with a letter)",
            fix,
        )
        return False
    if name in RESERVED_NAMES:
        check.add(
            name, "name", f"'{name}' is reserved (a system user, service or database name)", "choose another name"
        )
        return False
    return True


def _agent_jails(check, name, settings):
    raw = settings.get("jails", list(DEFAULT_JAILS))
    if not isinstance(raw, list):
        check.add(name, "jails", f"must be a list, got {_type_name(raw)}", "write e.g. jails: [git, cms, db]")
        return []
    jails = []
    for slot in raw:
        if slot not in SLOT_HOSTS:
            check.add(
                name, "jails", f"unknown jail '{slot}'", f"{did_you_mean(slot, SLOTS)} Allowed: {', '.join(SLOTS)}"
            )
        elif slot in jails:
            check.add(name, "jails", f"'{slot}' is listed twice", "list each jail once")
        else:
            jails.append(slot)
    return sorted(jails, key=SLOTS.index)


def _agent_llm(check, name, settings, jails):
    mode = settings.get("llm", "own" if "llm" in jails else "none")
    if mode not in LLM_MODES:
        check.add(name, "llm", f"'{mode}' is not one of {', '.join(LLM_MODES)}", did_you_mean(mode, LLM_MODES))
        return None
    if mode == "own" and "llm" not in jails:
        check.add(name, "llm", "'own' needs an llm jail", "add llm to jails, or set llm: shared or none")
    if mode != "own" and "llm" in jails:
        check.add(
            name, "llm", f"'{mode}' conflicts with the llm jail in jails", "remove llm from jails or set llm: own"
        )
    return mode


def _agent_jail_names(check, name, settings, jails):
    overrides = check.mapping(name, "jail_names", settings.get("jail_names"), SLOTS)
    names = {}
    for slot in jails:
        field = f"jail_names.{slot}"
        if slot in overrides:
            jail = overrides[slot]
            if not isinstance(jail, str) or not JAIL_NAME_RE.match(jail) or jail.isdigit():
                check.add(
                    name,
                    field,
                    f"{jail!r} is not a valid VNET jail name",
                    "use letters and digits only (no '-', '_' or '.'), not all digits",
                )
                continue
            if len(jail) > JAIL_NAME_MAX:
                check.add(
                    name,
                    field,
                    f"'{jail}' has {len(jail)} characters; VNET jail names may have at most {JAIL_NAME_MAX}",
                    "shorten it",
                )
                continue
        else:
            jail = f"{name}{slot}"
            if len(jail) > JAIL_NAME_MAX:
                check.add(
                    name,
                    "name",
                    f"the agent name makes the jail name '{jail}' ({len(jail)} characters); "
                    f"VNET jail names may have at most {JAIL_NAME_MAX}",
                    f"use an agent name of at most {JAIL_NAME_MAX - len(slot)} characters or set {field}",
                )
                continue
        names[slot] = jail
    for slot in overrides:
        if slot in SLOT_HOSTS and slot not in jails:
            check.add(
                name, f"jail_names.{slot}", f"the agent has no {slot} jail", f"add {slot} to jails or drop the override"
            )
    return names


def _agent_ips(check, name, settings, jails, net):
    overrides = check.mapping(name, "ips", settings.get("ips"), SLOTS)
    ips = {}
    for slot in jails:
        field = f"ips.{slot}"
        if slot not in overrides:
            if net is not None:
                ips[slot] = net.network_address + SLOT_HOSTS[slot]
            continue
        try:
            ip = ipaddress.ip_address(str(overrides[slot]))
        except ValueError:
            check.add(
                name,
                field,
                f"{overrides[slot]!r} is not an IPv4 address",
                f"use an address inside {net or 'the subnet'}",
            )
            continue
        if net is None:
            continue
        if ip not in net:
            check.add(name, field, f"{ip} is outside the agent's subnet {net}", f"use an address inside {net}")
        elif ip in (net.network_address, net.broadcast_address):
            check.add(
                name,
                field,
                f"{ip} is the network or broadcast address",
                f"use {net.network_address + 2}..{net.broadcast_address - 1}",
            )
        elif int(ip) - int(net.network_address) == GATEWAY_HOST:
            check.add(name, field, f"{ip} is the gateway the host owns on warden0", "use another address of the subnet")
        else:
            ips[slot] = ip
    for slot in overrides:
        if slot in SLOT_HOSTS and slot not in jails:
            check.add(name, f"ips.{slot}", f"the agent has no {slot} jail", f"add {slot} to jails or drop the override")
    seen = {}
    for slot, ip in ips.items():
        if ip in seen:
            check.add(
                name, f"ips.{slot}", f"{ip} is also the {seen[ip]} jail's address", "give every jail its own address"
            )
        else:
            seen[ip] = slot
    return {slot: str(ip) for slot, ip in ips.items()}


def _agent_locale(check, name, settings):
    raw = check.mapping(name, "locale", settings.get("locale"), LOCALE_KEYS)
    locale = dict(DEFAULT_LOCALE)
    if "display" in raw and "assistant" not in raw:
        locale["assistant"] = raw["display"]
    for key in LOCALE_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        field = f"locale.{key}"
        if key == "system":
            if not isinstance(value, str) or not SYSTEM_LOCALE_RE.match(value):
                fix = "use a UTF-8 locale such as sl_SI.UTF-8 or en_US.UTF-8"
                if isinstance(value, str) and re.match(r"^[a-z]{2,3}_[A-Z]{2}", value):
                    fix = f"legacy encodings are not allowed: use '{value.split('.')[0].split('@')[0]}.UTF-8'"
                check.add(name, field, f"{value!r} is not a UTF-8 system locale", fix)
                continue
        elif not isinstance(value, str) or not BCP47_RE.match(value):
            fix = "use a BCP 47 tag such as sl-SI, de-DE or zh-CN"
            if isinstance(value, str) and "_" in value:
                fix = f"use '-' not '_': '{value.split('.')[0].replace('_', '-')}'"
            check.add(name, field, f"{value!r} is not a language tag", fix)
            continue
        locale[key] = value
    return locale


def _soul_dest(settings, name):
    """The agent's soul checkout: root's, outside the agent's home, so the agent can never change what root's git
    runs in."""
    return f"{settings['warden_root']}/souls/{name}"


def _agent_soul(check, name, agent_settings, settings, home):
    """The soul entry of warden.fleet.soul_repo: the repository and version, the checkout, the workspace its files
    go to and who owns them there."""
    raw = agent_settings.get("soul")
    if raw is None:
        return None
    raw = check.mapping(name, "soul", raw, SOUL_KEYS)
    if not raw:
        return None
    repo = check.string(name, "soul.repo", raw.get("repo"), "set soul.repo to the soul repository URL")
    if repo and not re.match(r"^(https://|ssh://|git://|file://|/|[\w.-]+@[\w.-]+:)", repo):
        check.add(
            name, "soul.repo", f"'{repo}' is not a git URL", "use https://, ssh://, git@host:path or an absolute path"
        )
    version = raw.get("version")
    if version is None:
        check.add(
            name,
            "soul.version",
            "the soul repo has no pinned version",
            "set soul.version to a tag or commit, e.g. v1.2.0",
        )
    elif not isinstance(version, str) or not version.strip():
        check.add(
            name,
            "soul.version",
            f"must be a tag or commit string, got {_type_name(version)}",
            "quote it, e.g. 'v1.2.0'",
        )
    elif version.strip().lower() in MOVING_REFS:
        check.add(
            name, "soul.version", f"'{version}' is a moving branch, not a pinned version", "use a tag or a commit id"
        )
    key_file = raw.get("key_file")
    if key_file is not None and not (isinstance(key_file, str) and re.match(r"^/\S+$", key_file)):
        check.add(
            name, "soul.key_file", f"{key_file!r} is not an absolute path", "give the deploy key's path on the host"
        )
    return {
        "agent": name,
        "repo": repo,
        "version": version,
        "dest": _soul_dest(settings, name),
        "workspace": f"{home}/workspace",
        "owner": name,
        "group": name,
        "key_file": key_file,
    }


def _agent_command(check, name, settings):
    command = settings.get("command")
    if not isinstance(command, str) or not command.startswith("/") or re.search(r"\s", command):
        got = "nothing" if command is None else repr(command)
        check.add(
            name,
            "command",
            f"must be the absolute path of the runtime, got {got}",
            "e.g. command: /usr/local/bin/agent-runtime; put arguments in args",
        )
    args = settings.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in args):
        check.add(name, "args", "must be a list of strings", "write e.g. args: [--config, /usr/local/etc/agent.yml]")
        args = []
    return command, [str(a) for a in args]


def _agent_port(check, name, settings):
    port = settings.get("port")
    if port is None:
        return None
    if not _is_int(port):
        check.add(
            name, "port", f"must be an integer, got {_type_name(port)} {port!r}", "write the port unquoted, e.g. 18800"
        )
        return None
    top = PORT_MAX - max(PORT_OFFSETS)
    if not PORT_MIN <= port <= top:
        check.add(
            name,
            "port",
            f"{port} is outside {PORT_MIN}..{top} (the runtime also uses port + 3)",
            f"pick a port in {PORT_MIN}..{top}",
        )
        return None
    return port


def _agent_expose(check, name, settings, jail_names, ips):
    """Redirects (PF rdr) from the host's external interface to one of the agent's jails."""
    raw = settings.get("expose", [])
    if not isinstance(raw, list):
        check.add(name, "expose", f"must be a list, got {_type_name(raw)}", f"write e.g. expose: [{EXPOSE_EXAMPLE}]")
        return []
    rules = []
    for index, entry in enumerate(raw):
        field = f"expose[{index}]"
        if not isinstance(entry, dict):
            check.add(name, field, f"must be a mapping, got {_type_name(entry)}", f"write e.g. {EXPOSE_EXAMPLE}")
            continue
        entry = check.mapping(name, field, entry, EXPOSE_KEYS)
        proto = entry.get("proto", "tcp")
        if proto not in EXPOSE_PROTOS:
            check.add(name, f"{field}.proto", f"{proto!r} is not tcp or udp", "use proto: tcp or proto: udp")
        ports = {}
        for key in ("port", "to"):
            value = entry.get(key, entry.get("port") if key == "to" else None)
            if not _is_int(value) or not 1 <= value <= 65535:
                got = "nothing" if value is None else repr(value)
                check.add(name, f"{field}.{key}", f"must be a port number 1..65535, got {got}", "write it unquoted")
            else:
                ports[key] = value
        if ports.get("port") in EXPOSE_RESERVED_PORTS:
            check.add(name, f"{field}.port", f"port {ports['port']} is the host's SSH", "redirect another port")
            ports.pop("port")
        slot = entry.get("slot")
        if slot == "db":
            check.add(
                name, f"{field}.slot", "the database is reachable only from the agent's own subnet",
                "expose the service that uses the database (e.g. cms), not the db jail",
            )
        elif slot not in SLOTS or slot not in jail_names or slot not in ips:
            check.add(
                name, f"{field}.slot", f"{slot!r} is not one of the agent's jails",
                f"use one of the agent's jails: {', '.join(s for s in jail_names if s != 'db') or 'none'}",
            )
        elif len(ports) == 2 and proto in EXPOSE_PROTOS:
            rules.append({"proto": proto, "port": ports["port"], "slot": slot, "jail": jail_names[slot],
                          "ip": ips[slot], "to": ports["to"]})
    return rules


def _check_text(check, agent, field, value, default):
    if value is None:
        return default
    if not isinstance(value, str) or not SAFE_TEXT_RE.match(value):
        check.add(
            agent,
            field,
            f"{value!r} is not plain text",
            "use a plain string without quotes, $, backslashes or newlines",
        )
        return default
    return value


def _host_settings(check, hostvars):
    settings = {key: hostvars.get(key, default) for key, default in HOST_DEFAULTS.items()}
    ext_if = hostvars.get("warden_ext_if")
    for key in ("warden_ext_if", "warden_bridge"):
        value = ext_if if key == "warden_ext_if" else settings[key]
        if value is None:
            check.add(None, key, "is not set", "set it to the host's external interface, e.g. vtnet0")
        elif not isinstance(value, str) or not IFNAME_RE.match(value) or len(value) > IFNAME_MAX:
            check.add(None, key, f"{value!r} is not a FreeBSD interface name", "use a name like vtnet0, em0 or igb0")
    if ext_if is not None and ext_if == settings["warden_bridge"]:
        check.add(
            None, "warden_ext_if", "is the agents' bridge itself", "set the interface that carries the default route"
        )
    settings["warden_ext_if"] = ext_if
    release = settings["warden_release"]
    if not isinstance(release, str) or not RELEASE_RE.match(release):
        check.add(None, "warden_release", f"{release!r} is not a FreeBSD release name", "use e.g. 14.3-RELEASE")
    version = settings["warden_postgresql_version"]
    if not _is_int(version) or version not in POSTGRESQL_VERSIONS:
        check.add(
            None,
            "warden_postgresql_version",
            f"{version!r} is not a supported PostgreSQL major version",
            f"use one of {POSTGRESQL_VERSIONS.start}..{POSTGRESQL_VERSIONS.stop - 1}",
        )
    if settings["warden_llm_backend"] not in LLM_BACKENDS:
        check.add(
            None,
            "warden_llm_backend",
            f"{settings['warden_llm_backend']!r} is not one of {', '.join(LLM_BACKENDS)}",
            did_you_mean(settings["warden_llm_backend"], LLM_BACKENDS),
        )
    for key in ("warden_root", "warden_bastille_prefix", "warden_etc_dir"):
        if not isinstance(settings[key], str) or not settings[key].startswith("/") or settings[key].rstrip("/") == "":
            check.add(None, key, f"{settings[key]!r} is not an absolute directory", f"use e.g. {HOST_DEFAULTS[key]}")
        else:
            settings[key] = settings[key].rstrip("/")
    creds = settings["warden_credentials_dir"]
    if not isinstance(creds, str) or not creds.startswith(("/", "~")) or creds.rstrip("/") in ("", "~"):
        check.add(
            None,
            "warden_credentials_dir",
            f"{creds!r} is not an absolute directory on the controller",
            f"use e.g. {HOST_DEFAULTS['warden_credentials_dir']}, outside any repository",
        )
    else:
        settings["warden_credentials_dir"] = creds.rstrip("/")
    settings["warden_db_extensions"] = _db_extensions(check, None, "warden_db_extensions",
                                                      settings["warden_db_extensions"])
    return settings


def _db_extensions(check, agent, field, raw):
    """The extensions asked for besides vector, each one FreeBSD packages (DB_EXTENSION_PACKAGES)."""
    if not isinstance(raw, list):
        check.add(agent, field, f"must be a list, got {_type_name(raw)}", "write e.g. [pgcrypto, uuid-ossp]")
        return []
    extensions = []
    for ext in raw:
        if ext not in DB_EXTENSION_PACKAGES:
            check.add(
                agent,
                field,
                f"{ext!r} is not a PostgreSQL extension of FreeBSD's pgvector or postgresqlNN-contrib packages",
                did_you_mean(ext, DB_EXTENSION_PACKAGES),
            )
        elif ext not in extensions and ext not in DB_DEFAULT_EXTENSIONS:
            extensions.append(ext)
    return extensions


def _backup_settings(check, raw):
    raw = check.mapping(None, "warden_backup", raw, BACKUP_DEFAULTS)
    backup = {key: raw.get(key, default) for key, default in BACKUP_DEFAULTS.items()}
    if not isinstance(backup["dir"], str) or not backup["dir"].startswith("/"):
        check.add(
            None, "warden_backup.dir", f"{backup['dir']!r} is not an absolute directory", "use e.g. /var/backups/warden"
        )
    else:
        backup["dir"] = backup["dir"].rstrip("/") or "/"
    for key in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"):
        if not _is_int(backup[key]) or backup[key] < 0:
            check.add(None, f"warden_backup.{key}", f"{backup[key]!r} is not a count", "use a whole number, 0 or more")
    if _is_int(backup["keep_last"]) and backup["keep_last"] < 1:
        check.add(
            None, "warden_backup.keep_last", "must keep at least the newest archive", "set keep_last to 1 or more"
        )
    if not _is_int(backup["verify_every"]) or not 0 <= backup["verify_every"] <= 366:
        check.add(
            None,
            "warden_backup.verify_every",
            f"{backup['verify_every']!r} is not a number of days from 0 to 366",
            "use e.g. 7 (a full sha256 check of the newest archive at least weekly; 0 checks it every run)",
        )
    schedule = check.mapping(None, "warden_backup.schedule", backup["schedule"], SCHEDULE_KEYS)
    merged = dict(BACKUP_DEFAULTS["schedule"])
    for key in SCHEDULE_KEYS:
        if key in schedule:
            value = str(schedule[key])
            if not CRON_FIELD_RE.match(value):
                check.add(
                    None, f"warden_backup.schedule.{key}", f"{value!r} is not a cron field", "use e.g. 3, */6, 1-5 or *"
                )
            merged[key] = value
    backup["schedule"] = merged
    if not isinstance(backup["include_env"], bool):
        check.add(None, "warden_backup.include_env", "must be true or false", "write include_env: true or false")
    elif backup["include_env"] and not backup["env_passphrase_file"]:
        check.add(
            None,
            "warden_backup.env_passphrase_file",
            "include_env needs a passphrase file: env files are only ever archived encrypted",
            "set env_passphrase_file to a root-only file on the host, or include_env: false",
        )
    if backup["compression"] not in BACKUP_COMPRESSIONS:
        check.add(
            None,
            "warden_backup.compression",
            f"{backup['compression']!r} is not supported",
            f"{did_you_mean(backup['compression'], BACKUP_COMPRESSIONS)} Use one of {', '.join(BACKUP_COMPRESSIONS)}",
        )
    if not isinstance(backup["exclude"], list) or not all(isinstance(p, str) for p in backup["exclude"]):
        check.add(
            None, "warden_backup.exclude", "must be a list of patterns", "write e.g. exclude: ['.cache/', '*.lock']"
        )
    return backup


def _shared_llm(check, raw, agents_needing):
    raw = check.mapping(None, "warden_shared_llm", raw, SHARED_LLM_KEYS)
    if not raw.get("subnet"):
        for name in agents_needing:
            check.add(
                name,
                "llm",
                "'shared' needs the host's shared LLM jail, but warden_shared_llm.subnet is not set",
                "set warden_shared_llm: {subnet: 10.0.254} on the host, or llm: own or none",
            )
        if raw:
            check.add(
                None, "warden_shared_llm.subnet", "is not set", "set it to the shared LLM jail's /24, e.g. 10.0.254"
            )
        return None
    net = _parse_subnet(check, None, "warden_shared_llm.subnet", raw["subnet"])
    name = raw.get("name", "llm")
    if not isinstance(name, str) or not JAIL_NAME_RE.match(name) or len(name) > JAIL_NAME_MAX or name.isdigit():
        check.add(
            None,
            "warden_shared_llm.name",
            f"{name!r} is not a valid VNET jail name",
            f"letters and digits, at most {JAIL_NAME_MAX}",
        )
    if net is None:
        return None
    ip = net.network_address + SLOT_HOSTS["llm"]
    if "ip" in raw:
        try:
            ip = ipaddress.ip_address(str(raw["ip"]))
        except ValueError:
            check.add(
                None, "warden_shared_llm.ip", f"{raw['ip']!r} is not an IPv4 address", f"use an address inside {net}"
            )
        else:
            if ip not in net or int(ip) - int(net.network_address) in (0, GATEWAY_HOST, 255):
                check.add(
                    None,
                    "warden_shared_llm.ip",
                    f"{ip} is not a jail address of {net}",
                    f"use {net.network_address + 2}..{net.broadcast_address - 1}",
                )
    return {
        "name": name,
        "subnet": raw["subnet"],
        "cidr": str(net),
        "ip": str(ip),
        "gateway": str(net.network_address + 1),
        "_net": net,
    }


def host_networks_from_facts(facts, bridge):
    """The host's own IPv4 networks from gathered facts, leaving out the agents' bridge.

    Returns ``[(interface, ip_network), ...]``; empty when no facts were gathered.
    """
    networks = []
    if not isinstance(facts, dict):
        return networks
    for iface in facts.get("interfaces") or []:
        if iface == bridge or iface.startswith(("lo", "epair", "e0a_", "e0b_", "pflog")):
            continue
        data = facts.get(iface) or facts.get(iface.replace("-", "_")) or {}
        entries = data.get("ipv4") or []
        if isinstance(entries, dict):
            entries = [entries]
        entries = list(entries) + list(data.get("ipv4_secondaries") or [])
        for entry in entries:
            try:
                net = ipaddress.ip_network(f"{entry['address']}/{entry['netmask']}", strict=False)
            except (KeyError, TypeError, ValueError):
                continue
            networks.append((iface, net))
    return networks


def _check_unknown_host_vars(check, hostvars, role_vars):
    known = set(HOST_KEYS) | set(RUNTIME_KEYS) | set(role_vars)
    nested = {
        "warden_backup": BACKUP_DEFAULTS,
        "warden_shared_llm": SHARED_LLM_KEYS,
        "warden_shared_files": SHARED_FILES_KEYS,
    }
    for key in hostvars:
        if not isinstance(key, str) or not key.startswith("warden_") or key in known:
            continue
        parent, sub = next(((p, key[len(p) + 1 :]) for p in nested if key.startswith(p + "_")), (None, None))
        if parent and sub in nested[parent]:
            fix = f"it is a key of {parent}: write {parent}: {{{sub}: ...}}"
        else:
            fix = f"{did_you_mean(key, known)} Remove or rename it"
        check.add(None, key, "unknown host variable", fix)


def _agent_plan(check, name, name_ok, raw, settings, backup):
    """Validate one agent's settings and derive its part of the plan; returns (agent, its network)."""
    for key in raw:
        if key not in AGENT_KEYS:
            check.add(name, str(key), "unknown key", f"{did_you_mean(key, AGENT_KEYS)} Remove or rename it")
    state = raw.get("state", "present")
    if state not in STATES:
        check.add(name, "state", f"{state!r} is not present or absent", did_you_mean(state, STATES))
        state = "present"
    net = _parse_subnet(check, name, "subnet", raw.get("subnet"))
    jails = _agent_jails(check, name, raw)
    llm_mode = _agent_llm(check, name, raw, jails)
    jail_names = _agent_jail_names(check, name, raw, jails) if name_ok else {}
    ips = _agent_ips(check, name, raw, jails, net)
    home = f"{settings['warden_root']}/agents/{name}"
    command, args = _agent_command(check, name, raw)
    port = _agent_port(check, name, raw)
    assistant = _check_text(check, name, "assistant_name", raw.get("assistant_name"), name.capitalize())
    gateway = str(net.network_address + GATEWAY_HOST) if net is not None else None
    agent = {
        "name": name,
        "assistant_name": assistant,
        "state": state,
        "subnet": raw.get("subnet") if net is not None else None,
        "cidr": str(net) if net is not None else None,
        "gateway": gateway,
        "jails": [
            {
                "slot": slot,
                "name": jail_names[slot],
                "ip": ips[slot],
                "cidr": f"{ips[slot]}/{net.prefixlen}",
                "gateway": gateway,
                "thick": slot in THICK_SLOTS,
                **jail_software(slot, ips[slot], settings),
                "accounts": git_accounts(name, home, gateway) if slot == "git" else [],
            }
            for slot in jails
            if slot in jail_names and slot in ips and net is not None
        ],
        "llm": {"mode": llm_mode, "ip": ips.get("llm"), "jail": jail_names.get("llm")},
        "db": (
            {
                "role": name,
                "jail": jail_names.get("db"),
                "host": ips.get("db"),
                "databases": {purpose: f"{name}_{purpose}" for purpose in DB_PURPOSES},
                # Extensions created in each of those databases: vector, then the inventory's.
                "extensions": [*DB_DEFAULT_EXTENSIONS, *_db_extensions(
                    check, name, "db_extensions", raw.get("db_extensions", settings["warden_db_extensions"]))],
                # The only network that may log in (pg_hba), and the role's password file on the controller.
                "client_cidr": str(net) if net is not None else None,
                "password_file": f"{settings['warden_credentials_dir']}/{check.host}/{name}.db",
                # The cluster inside the jail: postgresql_data's default in the port's rc.d script (~postgres/dataNN).
                "data_directory": f"/var/db/postgres/data{settings['warden_postgresql_version']}",
                "hba_file": f"/var/db/postgres/data{settings['warden_postgresql_version']}/pg_hba.conf",
            }
            if "db" in jails
            else None
        ),
        "service": {
            "name": name,
            "rc_script": f"/usr/local/etc/rc.d/{name}",
            "rcvar": f"{name}_enable",
            "pidfile": f"/var/run/{name}.pid",
            "child_pidfile": f"/var/run/{name}.child.pid",
            "log": f"/var/log/{name}.log",
            "tmux_session": name,
        },
        "user": {"name": name, "group": name, "home": home},
        "paths": {
            "home": home,
            "workspace": f"{home}/workspace",
            "state": f"{home}/state",
            "logs": f"{home}/logs",
            "soul": _soul_dest(settings, name),
            "env_file": f"{settings['warden_etc_dir']}/{name}.env",
            "backup_dir": f"{backup['dir']}/{name}",
        },
        # The agent's own SSH identity: made once, never replaced; its public key goes to the git jail.
        "ssh_key": {
            "dir": f"{home}/{AGENT_SSH_DIR}",
            "private": f"{home}/{AGENT_SSH_KEY}",
            "public": f"{home}/{AGENT_SSH_PUBLIC_KEY}",
            "type": "ed25519",
            "comment": f"{name}@{check.host}",
            "known_hosts": f"{home}/{AGENT_SSH_DIR}/known_hosts",
            "config": f"{home}/{AGENT_SSH_DIR}/config",
            # what known_hosts and config name: the agent's git jail, when it has one
            "hosts": [
                {"alias": GIT_SSH_ALIAS, "jail": jail_names["git"], "ip": ips["git"], "user": GIT_USER,
                 "host_key": GIT_HOST_KEY}
            ]
            if "git" in jails and "git" in jail_names and "git" in ips and net is not None
            else [],
        },
        "port": port,
        "ports": [port + offset for offset in PORT_OFFSETS] if port is not None else [],
        "expose": _agent_expose(check, name, raw, jail_names, ips) if net is not None else [],
        "locale": _agent_locale(check, name, raw),
        "soul": _agent_soul(check, name, raw, settings, home),
        "command": command,
        "args": args,
        # Names only: the values stay in the inventory, the plan is printed.
        "secrets": _agent_secret_names(check, name, raw),
    }
    return agent, net


def bastille_dirs(prefix, release):
    """Bastille's directories as the collection's bastille.conf sets them (1.4.4's defaults under the prefix)."""
    return {
        "prefix": prefix,
        "jailsdir": f"{prefix}/jails",
        "releasesdir": f"{prefix}/releases",
        "release_dir": f"{prefix}/releases/{release}",
        "logsdir": "/var/log/bastille",
    }


def jail_software(slot, ip, settings):
    """What runs in a service jail: the packages pkg installs in it, the rc.conf values set in the jail,
    the services started in it (in this order) and its jail(8) parameters (Bastille's ``config set``).

    The db jail's PostgreSQL is only enabled here: initdb, its configuration and its start come after,
    from the database role.  llama-cpp's server starts once its model file is in place.
    """
    if slot == "git":
        return {"packages": ["git"], "rc_conf": {"sshd_enable": "YES"}, "services": ["sshd"], "config": {}}
    if slot == "cms":
        return {"packages": ["nginx"], "rc_conf": {"nginx_enable": "YES"}, "services": ["nginx"], "config": {}}
    if slot == "llm" and settings["warden_llm_backend"] == "llama-cpp":
        rc_conf = {
            "llama_server_enable": "YES",
            "llama_server_model": LLAMA_SERVER_MODEL,
            "llama_server_args": f"--host {ip} --port {LLM_PORT}",
        }
        return {"packages": ["llama-cpp"], "rc_conf": rc_conf, "services": [], "config": {}}
    if slot == "llm":
        rc_conf = {"ollama_enable": "YES", "ollama_env": f"OLLAMA_HOST={ip}:{LLM_PORT}"}
        return {"packages": ["ollama"], "rc_conf": rc_conf, "services": ["ollama"], "config": {}}
    version = settings["warden_postgresql_version"]
    packages = [f"postgresql{version}-server", f"postgresql{version}-contrib", "pgvector", "python311",
                "py311-psycopg2"]
    return {"packages": packages, "rc_conf": {"postgresql_enable": "YES"}, "services": [],
            "config": dict(DB_JAIL_CONFIG)}


def git_accounts(name, home, gateway):
    """The git jail's account the agent logs in with: bare repositories in its home, reached over SSH with
    the agent's own public key (placed on the host by the operator or the agent runtime) and only from the
    agent's gateway, the address the host's connections to the agent's subnet come from."""
    return [
        {
            "name": GIT_USER,
            "home": GIT_HOME,
            "shell": GIT_SHELL,
            "comment": f"git repositories of {name}",
            "repositories": [f"{name}.git"],
            "authorized_key": {"file": f"{home}/{AGENT_SSH_PUBLIC_KEY}", "owner": name, "from": gateway},
        }
    ]


def host_jails(agents, shared, settings):
    """Every service jail of the host, each with its agent and state: the agents' jails (absent agents'
    jails are to be destroyed), then the shared LLM jail while a present agent uses it."""
    jails = [
        dict(jail, agent=agent["name"], state=agent["state"])
        for agent in agents.values()
        for jail in agent["jails"]
    ]
    if shared is not None and any(a["state"] == "present" and a["llm"]["mode"] == "shared" for a in agents.values()):
        jails.append(
            {
                "slot": "llm",
                "name": shared["name"],
                "ip": shared["ip"],
                "cidr": f"{shared['ip']}/{shared['_net'].prefixlen}",
                "gateway": shared["gateway"],
                "thick": False,
                **jail_software("llm", shared["ip"], settings),
                "accounts": [],
                "agent": None,
                "state": "present",
            }
        )
    return jails


def build_plan(host, hostvars, host_networks=(), role_vars=()):
    """Validate one host's inventory and derive its plan.

    ``hostvars`` are the host's inventory variables (``warden_*``), ``host_networks``
    the host's own networks as returned by :func:`host_networks_from_facts`,
    ``role_vars`` the variables of the collection's roles (documented options,
    registered results and facts: not typos).  Returns ``(plan, problems)``; the plan is only complete
    when ``problems`` is empty.
    """
    check = _Checker(str(host))
    _check_unknown_host_vars(check, hostvars, role_vars)
    settings = _host_settings(check, hostvars)
    backup = _backup_settings(check, hostvars.get("warden_backup"))

    agents_raw = hostvars.get("warden_agents")
    if agents_raw is None:
        check.add(
            None, "warden_agents", "is not set", "define warden_agents, a mapping from agent name to its settings"
        )
        agents_raw = {}
    elif not isinstance(agents_raw, dict):
        check.add(
            None,
            "warden_agents",
            f"must be a mapping, got {_type_name(agents_raw)}",
            "key each agent by its AGENT_NAME",
        )
        agents_raw = {}

    agents = {}
    nets = {}
    for name in sorted(agents_raw, key=str):
        raw = agents_raw[name]
        name_ok = _check_agent_name(check, name)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            check.add(
                str(name),
                "settings",
                f"must be a mapping, got {_type_name(raw)}",
                "give the agent at least subnet and command",
            )
            continue
        agent, net = _agent_plan(check, str(name), name_ok, raw, settings, backup)
        agents[agent["name"]] = agent
        if net is not None:
            nets[agent["name"]] = net

    shared_users = [n for n, a in agents.items() if a["llm"]["mode"] == "shared"]
    shared = _shared_llm(check, hostvars.get("warden_shared_llm"), shared_users)
    _check_collisions(check, agents, nets, shared, host_networks)

    if shared is not None:
        for name in shared_users:
            agents[name]["llm"].update(ip=shared["ip"], jail=shared["name"])
    shared_files = _shared_files(check, hostvars.get("warden_shared_files"), settings)
    for agent in agents.values():
        agent["environment"] = _environment(agent)
        if shared_files is not None:
            # Not in the environment: an inventory without shared files must not change every env file.
            agent["paths"]["shared"] = f"{agent['paths']['workspace']}/shared"
        _check_secret_names(check, agent)
    _check_secret_reuse(check, agents_raw)

    present = [a for a in agents.values() if a["state"] == "present"]
    present_nets = sorted({nets[a["name"]] for a in present if a["name"] in nets})
    if shared is not None and any(a["llm"]["mode"] == "shared" for a in present):
        present_nets = sorted(set(present_nets) | {shared["_net"]})
    public_shared = None if shared is None else {k: v for k, v in shared.items() if not k.startswith("_")}
    plan = {
        "host": str(host),
        "bridge": settings["warden_bridge"],
        "ext_if": settings["warden_ext_if"],
        "release": settings["warden_release"],
        "postgresql_version": settings["warden_postgresql_version"],
        "root": settings["warden_root"],
        "etc_dir": settings["warden_etc_dir"],
        "bastille_prefix": settings["warden_bastille_prefix"],
        "bastille": bastille_dirs(settings["warden_bastille_prefix"], settings["warden_release"]),
        "warden_net": [str(n) for n in present_nets],
        "gateways": [f"{n.network_address + GATEWAY_HOST}/{n.prefixlen}" for n in present_nets],
        "shared_llm": public_shared,
        "shared_files": shared_files,
        "llm_backend": settings["warden_llm_backend"],
        "llm_port": LLM_PORT,
        "jails": host_jails(agents, shared, settings),
        "backup": backup,
        "agents": agents,
    }
    # Host-wide problems first, then agent by agent, each in the order found.
    problems = sorted(check.problems, key=lambda p: (p.agent is not None, p.agent or ""))
    return plan, problems


def _check_collisions(check, agents, nets, shared, host_networks):
    """Cross-agent rules: subnets, jail names and ports are each owned once."""
    owners = {}
    for name in sorted(nets):
        net = nets[name]
        for other, other_net in owners.items():
            if net.overlaps(other_net):
                check.add(
                    name, "subnet", f"{net} is also the subnet of agent '{other}'", "give every agent its own /24"
                )
                break
        else:
            owners[name] = net
        for iface, host_net in host_networks:
            if net.overlaps(host_net):
                check.add(
                    name,
                    "subnet",
                    f"{net} overlaps the host's own network {host_net} on {iface}",
                    "pick a /24 the host does not already use",
                )
    if shared is not None:
        for name, net in owners.items():
            if net.overlaps(shared["_net"]):
                check.add(
                    name,
                    "subnet",
                    f"{net} is the shared LLM jail's subnet",
                    "give the shared LLM jail (warden_shared_llm.subnet) its own /24",
                )

    jail_owner = {}
    if shared is not None:
        jail_owner[shared["name"]] = ("the shared LLM jail", "warden_shared_llm.name")
    for name in sorted(agents):
        for jail in agents[name]["jails"]:
            taken = jail_owner.get(jail["name"])
            field = f"jail_names.{jail['slot']}"
            if taken:
                check.add(
                    name,
                    field,
                    f"jail name '{jail['name']}' is also used by {taken[0]}",
                    f"set {field} to a unique name",
                )
            else:
                jail_owner[jail["name"]] = (f"agent '{name}'", field)

    _check_exposed_ports(check, agents)
    port_owner = {}
    for name in sorted(agents):
        for port in agents[name]["ports"]:
            if port in port_owner and port_owner[port] != name:
                other = port_owner[port]
                check.add(
                    name,
                    "port",
                    f"port {agents[name]['port']} uses {port}, which agent '{other}' "
                    f"(port {agents[other]['port']}) also uses (each agent takes port and port + 3)",
                    "space agents' ports apart, e.g. by 10",
                )
                break
        for port in agents[name]["ports"]:
            port_owner.setdefault(port, name)


def _check_exposed_ports(check, agents):
    """A port of the host's external interface goes to one jail only."""
    owner = {}
    for name in sorted(agents):
        if agents[name]["state"] != "present":
            continue
        for index, rule in enumerate(agents[name]["expose"]):
            key = (rule["proto"], rule["port"])
            if key in owner:
                check.add(
                    name, f"expose[{index}].port",
                    f"{rule['proto']} port {rule['port']} of the host is already redirected to {owner[key]}",
                    "pick another port of the host for this agent",
                )
            else:
                owner[key] = f"agent '{name}' ({rule['jail']})"


def _environment(agent):
    """Non-secret environment of the agent's rc.d service, named as the runbook names it."""
    slot_ips = {jail["slot"]: jail["ip"] for jail in agent["jails"]}
    llm_ip = agent["llm"]["ip"] or ""
    env = {
        "AGENT_NAME": agent["name"],
        "ASSISTANT_NAME": agent["assistant_name"],
        "AGENT_SUBNET_BASE": agent["subnet"] or "",
        "WARDEN_GATEWAY": agent["gateway"] or "",
        "WARDEN_SUBNET": agent["cidr"] or "",
        "WARDEN_GIT_IP": slot_ips.get("git", ""),
        "WARDEN_CMS_IP": slot_ips.get("cms", ""),
        "WARDEN_OLLAMA_IP": llm_ip,
        "WARDEN_LLAMA_CPP_IP": llm_ip,
        "WARDEN_DB_IP": slot_ips.get("db", ""),
        "DISPLAY_LOCALE": agent["locale"]["display"],
        "ASSISTANT_LOCALE": agent["locale"]["assistant"],
        "SYSTEM_LOCALE": agent["locale"]["system"],
        "LANG": agent["locale"]["system"],
        "LC_ALL": agent["locale"]["system"],
        "WARDEN_WORKSPACE": agent["paths"]["workspace"],
        "WARDEN_STATE_DIR": agent["paths"]["state"],
    }
    if agent["port"] is not None:
        env["WARDEN_PORT"] = str(agent["port"])
    env["WARDEN_LOG_DIR"] = agent["paths"]["logs"]
    if agent["db"] is not None:
        # The connection to the agent's own databases; the password (DB_PASSWORD_ENV) is added
        # to the environment file only, never to the plan.
        env["WARDEN_DB_HOST"] = agent["db"]["host"] or ""
        env["WARDEN_DB_USER"] = agent["db"]["role"]
        for purpose, database in agent["db"]["databases"].items():
            env[f"WARDEN_DB_{purpose.upper()}"] = database
    return env


def _agent_secret_names(check, name, settings):
    """Validate the agent's secrets; return their names only."""
    raw = settings.get("secrets")
    if raw is None:
        return []
    if not isinstance(raw, dict):
        check.add(name, "secrets", f"must be a mapping, got {_type_name(raw)}", "write secrets as NAME: value pairs")
        return []
    names = []
    for key, value in raw.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            check.add(
                name,
                f"secrets.{key}",
                "is not an environment variable name",
                "use letters, digits and underscores, not starting with a digit, e.g. GATEWAY_TOKEN",
            )
            continue
        text = _secret_text(value)
        if text is None or not text or any(c in text for c in "\n\r\x00"):
            # Never the value in a problem: only its name and kind.
            check.add(
                name,
                f"secrets.{key}",
                "must be a non-empty single-line string",
                "quote the value (or vault-encrypt it with ansible-vault encrypt_string)",
            )
            continue
        names.append(key)
    return sorted(names)


def _secret_text(value):
    """A secret's text: plain strings and vault-encrypted values (decrypted on str()); None for other types."""
    if isinstance(value, str):
        return str(value)
    if type(value).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode"):
        return str(value)
    return None


def _check_secret_names(check, agent):
    """A secret may not replace a value the plan derives, nor the database password."""
    taken = set(agent["environment"]) | {DB_PASSWORD_ENV}
    for key in agent["secrets"]:
        if key in taken:
            check.add(
                agent["name"],
                f"secrets.{key}",
                "is a name the collection sets in the environment file",
                "rename the secret (e.g. with a prefix of the runtime that reads it)",
            )
    agent["secrets"] = [key for key in agent["secrets"] if key not in taken]


def _check_secret_reuse(check, agents_raw):
    """One credential per agent: no secret value may belong to two agents (the value is never named)."""
    owners = {}
    for name in sorted(agents_raw, key=str):
        raw = agents_raw[name]
        secrets = raw.get("secrets") if isinstance(raw, dict) else None
        if not isinstance(secrets, dict):
            continue
        for key in sorted(secrets, key=str):
            text = _secret_text(secrets[key])
            if not text:
                continue
            other = owners.get(text)
            if other is not None and other[0] != name:
                check.add(
                    str(name),
                    f"secrets.{key}",
                    f"has the same value as agent '{other[0]}''s secret {other[1]}",
                    "give every agent its own credential (one token per agent)",
                )
            else:
                owners.setdefault(text, (str(name), key))


def _shared_files(check, raw, settings):
    """Files every agent reads and none can change: one source on the controller, one root-owned copy per host."""
    if raw is None:
        return None
    raw = check.mapping(None, "warden_shared_files", raw, SHARED_FILES_KEYS)
    src = raw.get("src")
    if not isinstance(src, str) or not src.startswith("/"):
        got = "nothing" if src is None else repr(src)
        check.add(
            None,
            "warden_shared_files.src",
            f"must be the absolute path of a directory on the controller, got {got}",
            "e.g. warden_shared_files: {src: /srv/warden/shared} (its AGENTS.md, TOOLS.md, skills/)",
        )
        return None
    return {"src": src.rstrip("/") or "/", "dir": f"{settings['warden_root']}/shared"}


def plan_or_raise(host, hostvars, host_networks=(), role_vars=()):
    """``build_plan`` for callers that want an exception instead of a problem list."""
    plan, problems = build_plan(host, hostvars, host_networks, role_vars)
    if problems:
        raise InventoryError(problems)
    return plan


def plan_summary(plan):
    """Readable lines describing a plan, for operators."""
    lines = [
        f"host {plan['host']}: bridge {plan['bridge']} on {plan['ext_if']}, jails {plan['release']}, "
        f"PostgreSQL {plan['postgresql_version']}",
        f"  warden_net: {{ {', '.join(plan['warden_net'])} }}",
    ]
    if plan["shared_llm"]:
        shared = plan["shared_llm"]
        lines.append(f"  shared LLM jail {shared['name']} at {shared['ip']} (gateway {shared['gateway']})")
    for agent in plan["agents"].values():
        lines.append(
            f"  agent {agent['name']} ({agent['assistant_name']}, {agent['state']}): "
            f"subnet {agent['cidr']}, gateway {agent['gateway']}"
        )
        for jail in agent["jails"]:
            kind = "thick" if jail["thick"] else "thin"
            lines.append(f"    jail {jail['slot']:<4} {jail['name']:<12} {jail['ip']:<15} ({kind})")
        if agent["llm"]["mode"] == "shared":
            lines.append(f"    llm  shared {agent['llm']['jail']} at {agent['llm']['ip']}")
        if agent["db"]:
            dbs = ", ".join(agent["db"]["databases"].values())
            lines.append(f"    db   role {agent['db']['role']} on {agent['db']['jail']}: {dbs}")
        service = agent["service"]
        ports = "/".join(str(p) for p in agent["ports"]) or "none"
        lines.append(f"    service {service['rc_script']} (tmux {service['tmux_session']}), ports {ports}")
        lines.append(f"    workspace {agent['paths']['workspace']}, backups {agent['paths']['backup_dir']}")
    return lines

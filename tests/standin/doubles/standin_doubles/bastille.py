"""Bastille 1.4.4 double (after BastilleBSD/bastille 1.4.4 usr/local/share/bastille/*.sh).

Subcommands and forms:
  bootstrap RELEASE                      (releases/RELEASE skeleton)
  create [-B|-V] [-T] [-M] [-g GW|--gateway GW] [-p N] [--no-boot] NAME RELEASE IP [IF]
  start|stop|restart TARGET              TARGET: name, prefix, JID or ALL
  destroy [-a] [-f] [-y] [-c] TARGET     prompts "Are you sure you want to continue? [y|n]:" without -y
  list [-j] [jails|NAME]                 1.4.4 header " JID  Name  Boot  Prio  State  Type  IP Address..."
  mount TARGET HOST_PATH JAIL_PATH [nullfs ro 0 0]
  sysrc|service|cmd TARGET ARGS...       via jexec
  pkg [-y] TARGET ARGS...                via jexec -U root [env ASSUME_ALWAYS_YES=yes] /usr/sbin/pkg
  config TARGET set|get|remove PROPERTY [VALUE]
Quirks kept on purpose (FREEBSD-NOTES.md):
  - "Jail is already running." / "Jail is already stopped." exit 0 (error_continue);
  - destroy of a running jail without -a prints "Jail is running." and exits 0;
  - targets are prefix-matched (jail_autocomplete): "agent" means "agent1" when
    it is the only jail starting with "agent";
  - create without -g takes bastille_network_gateway, else the host's default route;
  - start returns 0 when the jail could not be created (jail -c failed).
"""

import contextlib
import copy
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from . import jails as J
from . import net, rcconf
from .common import Exit, atomic_write, err, kernel, not_implemented, out

CONF = "/usr/local/etc/bastille/bastille.conf"
# files of FreeBSD's base.txz that rc.d scripts inside a jail need
BASE_ETC = ("/etc/rc.subr", "/etc/defaults/rc.conf")
NAME_OK = re.compile(r"^[A-Za-z0-9_-]+$")


def error_exit(msg):
    err(msg)
    out("")
    raise Exit(1)


def load_conf():
    if not os.path.isfile(CONF):
        err(f"Missing Configuration: {CONF}")
        raise Exit(1)
    names = ("bastille_prefix", "bastille_jailsdir", "bastille_releasesdir", "bastille_logsdir",
             "bastille_network_gateway", "bastille_zfs_enable", "bastille_zfs_zpool", "bastille_zfs_prefix")
    conf = {}
    for n in names:
        _ok, conf[n] = rcconf.sh_get([CONF], n, defaults=False)
    conf["bastille_prefix"] = conf["bastille_prefix"] or "/usr/local/bastille"
    conf["bastille_jailsdir"] = conf["bastille_jailsdir"] or conf["bastille_prefix"] + "/jails"
    conf["bastille_releasesdir"] = conf["bastille_releasesdir"] or conf["bastille_prefix"] + "/releases"
    conf["bastille_logsdir"] = conf["bastille_logsdir"] or "/var/log/bastille"
    return conf


def _natural(name):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def all_jails(conf):
    d = conf["bastille_jailsdir"]
    if not os.path.isdir(d):
        return []
    return sorted((n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n, "jail.conf"))), key=_natural)


def resolve(conf, target, single=False):
    """set_target / set_target_single: exact, JID, then prefix match."""
    names = all_jails(conf)
    if target in ("ALL", "all"):
        if single:
            error_exit("[all|ALL] not supported with this command.")
        return names
    result = []
    for t in target.split():
        if t in names:
            result.append(t)
            continue
        if t.isdigit() and not os.path.isdir(os.path.join(conf["bastille_jailsdir"], t)):
            with kernel() as k:
                name, _j = J.find_running(k, t)
            if name:
                result.append(name)
                continue
            msg = f'Error: JID "{t}" not found. Is jail running?'
            if single:
                error_exit(msg)
            err(msg)
            continue
        matches = [n for n in names if re.match("^" + t, n)]
        if len(matches) == 1:
            result.append(matches[0])
        elif len(matches) > 1:
            err("Multiple jails found for {}:\n{}".format(t, "\n".join(matches)))
            out("")
            raise Exit(1)
        else:
            if single:
                error_exit(f'Jail not found "{t}"')
            err(f'Jail not found "{t}"')
    if not result:
        raise Exit(1)
    return result


def is_running(name):
    with kernel() as k:
        j = k["jails"].get(name)
        return bool(j and j.get("running"))


def header(name):
    err(f"\n[{name}]:")


def jail_paths(conf, name):
    base = os.path.join(conf["bastille_jailsdir"], name)
    return {"base": base, "root": os.path.join(base, "root"), "conf": os.path.join(base, "jail.conf"),
            "fstab": os.path.join(base, "fstab"), "settings": os.path.join(base, "settings.conf"),
            "rc": os.path.join(base, "root", "etc", "rc.conf")}


def read_jail_conf(path):
    props = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r"^\s+([A-Za-z0-9_.]+)\s*(\+?=)\s*(.*);\s*$", line)
                if m:
                    val = m.group(3).strip()
                    if len(val) > 1 and val[0] == val[-1] and val[0] in "'\"":
                        val = val[1:-1]  # jail.conf(5) quoting; escapes stay as written
                    if m.group(2) == "+=":
                        props.setdefault(m.group(1), [])
                        if isinstance(props[m.group(1)], list):
                            props[m.group(1)].append(val)
                    else:
                        props[m.group(1)] = val
                elif re.match(r"^\s+([A-Za-z0-9_.]+);\s*$", line):
                    props[line.strip().rstrip(";")] = True
    except FileNotFoundError:
        pass
    return props


# ------------------------------------------------------------------ bootstrap

def cmd_bootstrap(conf, args):
    if len(args) != 1 or not re.match(r"^[0-9]+\.[0-9]-RELEASE$", args[0]):
        not_implemented("bastille", ["bootstrap"] + args)
    rel = os.path.join(conf["bastille_releasesdir"], args[0])
    if os.path.isfile(os.path.join(rel, "bin", "freebsd-version")):
        err("Bootstrap appears complete!")
        return 0
    os.makedirs(conf["bastille_prefix"], mode=0o750, exist_ok=True)
    os.chmod(conf["bastille_prefix"], 0o750)
    for d in ("bin", "etc", "usr/local", "var/run", "var/log", "var/db", "tmp", "root", "home"):
        os.makedirs(os.path.join(rel, d), exist_ok=True)
    atomic_write(os.path.join(rel, "bin", "freebsd-version"),
                 f'#!/bin/sh\nUSERLAND_VERSION="{args[0]}"\necho "$USERLAND_VERSION"\n', 0o555)
    from .layout import passwd_files
    for path, (text, mode) in passwd_files().items():
        atomic_write(os.path.join(rel, path.lstrip("/")), text, mode)
    atomic_write(os.path.join(rel, "etc", "rc.conf"), "", 0o644)
    # base.txz's /etc/rc.subr and /etc/defaults/rc.conf: the stand-in's own
    for f in BASE_ETC:
        if os.path.isfile(f):
            os.makedirs(os.path.dirname(os.path.join(rel, f.lstrip("/"))), exist_ok=True)
            shutil.copy2(f, os.path.join(rel, f.lstrip("/")))
    out("Bootstrapping FreeBSD distfiles...")
    out(f"Extracting FreeBSD {args[0]} base.txz.")
    out("Bootstrap successful.")
    return 0


# ------------------------------------------------------------------ create

def usage(line):
    """A subcommand's usage(): the line on stderr, exit 1 (the options list is left out)."""
    err(line)
    raise Exit(1)


def info(msg):
    """common.sh info 1 / error_notify: stderr."""
    err(msg)


# common.sh validate_ip(): the IPv4 pattern, each quad 0-255, optional /0-32
IP4_RX = re.compile(r"^(([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])\.){3}"
                    r"([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5])(/([0-9]|[1-2][0-9]|3[0-2]))?$")
# ... and what it takes for IPv6 (anything of hex digits and colons, or SLAAC)
IP6_RX = re.compile(r"^(([a-fA-F0-9:]+$)|([a-fA-F0-9:]+/[0-9]{1,3}$)|SLAAC)")
SPECIAL_IPS = ("0.0.0.0", "DHCP", "SYNCDHCP")


def validate_ip(ip, vnet, args):
    """common.sh validate_ip() of Bastille 1.4.4 for one address; returns IP4_ADDR."""
    fields = ip.split("/")
    ip4, subnet = fields[0], fields[1] if len(fields) > 1 else ""  # awk -F"/" $1 and $2
    if IP6_RX.match(ip):
        not_implemented("bastille", ["create"] + list(args) + ["(IPv6 jail addresses)"])
    if ip in ("inherit", "ip_hostname") or ip in SPECIAL_IPS:
        info(f"\nValid IP: {ip}")
        return ip
    if not ip4:
        error_exit(f"[ERROR]: IP incorrectly formatted: {ip}")
    if vnet:
        # a VNET jail's address always carries a prefix: /24 when none is given
        if subnet == "":
            subnet = "24"
        elif not subnet.isdigit() or not 1 <= int(subnet) <= 32:
            error_exit(f"[ERROR]: Invalid subnet: /{subnet}")
        ip4 = f"{ip4}/{subnet}"
    # a non-VNET jail keeps the bare address: the prefix given is dropped
    if not IP4_RX.match(ip4):
        error_exit(f"[ERROR]: Invalid IP: {ip4}")
    info(f"\nValid IP: {ip4}")
    return ip4


def gateway_is_valid(gw):
    """create.sh -g: validate_ip "$GW" >/dev/null 2>/dev/null with no VNET flag.

    validate_ip's error_exit then ends bastille itself with everything
    silenced, so an invalid gateway exits 1 without a word: the
    "Not a valid gateway" line after it is never reached (create.sh 1.4.4).
    """
    fields = gw.split("/")
    if IP6_RX.match(gw) or gw in ("inherit", "ip_hostname") or gw in SPECIAL_IPS:
        return True
    return bool(fields[0]) and bool(IP4_RX.match(fields[0]))


# create.sh: FreeBSD release names it accepts, upper-cased (NAME_VERIFY)
RELEASE_RX = re.compile(r"^([1-9]+)\.[0-9](-RELEASE|-RELEASE-i386|-RC[1-9]|-BETA[1-9])$", re.IGNORECASE)
CREATE_USAGE = "Usage: bastille create [option(s)] NAME RELEASE IP [INTERFACE]"


def _create_options(args):
    argv = list(args)
    o = {"B": False, "T": False, "V": False, "M": False, "g": "", "p": "99", "boot": "on"}
    long_flags = {"--bridge": "B", "--thick": "T", "--vnet": "V", "--static-mac": "M"}
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-g", "--gateway", "--defaultrouter"):
            if not argv or not argv[0]:
                not_implemented("bastille", ["create"] + list(args))
            o["g"] = argv.pop(0)
            if not gateway_is_valid(o["g"]):
                raise Exit(1)
        elif a in ("-p", "--priority"):
            value = argv.pop(0) if argv else ""
            if not re.fullmatch(r"[0-9]+", value):
                error_exit(f'Not a valid priority value: "{value}"')
            o["p"] = value
        elif a == "--no-boot":
            o["boot"] = "off"
        elif a in long_flags:
            o[long_flags[a]] = True
        elif a in ("-h", "--help"):
            usage(CREATE_USAGE)
        elif a.startswith("--") or re.search(r"[CDELPxnvZ]", a):
            # clone, dual stack, empty, Linux, passthrough, nameservers, VLANs,
            # ZFS options, --tags, --no-ip, --no-validate: not modelled
            not_implemented("bastille", ["create"] + list(args))
        else:
            for ch in a.replace("-", ""):
                if ch not in "BTVM":
                    error_exit(f'[ERROR]: Unknown Option: "{a}"')
                o[ch] = True
    return o, argv


def _bridge_group(ifaces):
    return [n for n, i in ifaces.items() if "bridge" in i.get("groups", [])]


def static_mac(ifaces, name, iface):
    """common.sh generate_static_mac(): 58:9c:fc + sha256(ether, interface, name)."""
    ether = ifaces.get(iface, {}).get("ether", "")
    digest = hashlib.sha256(f"{ether}{iface}{name}".replace(":", "").encode()).hexdigest()[:5]
    return f"58:9c:fc:{digest[0:2]}:{digest[2:4]}:{digest[4]}"


def vnet_netblock(name, kind, iface, mac):
    """common.sh generate_vnet_jail_netblock() for if_bridge: -B (bridge) or -V (standard)."""
    if len(f"e0a_{name}") < 16:
        host_ep, jail_ep, jib_ep = f"e0a_{name}", f"e0b_{name}", name
    else:
        not_implemented("bastille", ["create", "(epair names past 15 characters: e0a_bastilleN)", name])
    lines = ["  vnet;", f"  vnet.interface = {jail_ep};"]
    if kind == "bridge":
        lines += [f'  exec.prestart += "epair0=\\$(ifconfig epair create) && ifconfig \\${{epair0}} up name {host_ep} '
                  f'&& ifconfig \\${{epair0%a}}b up name {jail_ep}";',
                  f'  exec.prestart += "ifconfig {iface} addm {host_ep}";']
    else:
        lines.append(f'  exec.prestart += "jib addm {jib_ep} {iface}";')
    if mac:
        lines += [f'  exec.prestart += "ifconfig {host_ep} ether {mac}a";',
                  f'  exec.prestart += "ifconfig {jail_ep} ether {mac}b";']
    description = f'\\"vnet0 host interface for Bastille jail {name}\\"'
    lines += [f'  exec.prestart += "ifconfig {host_ep} description {description}";',
              f'  exec.poststop += "ifconfig {host_ep} destroy";']
    return jail_ep, lines


def jail_conf_text(conf, name, release, p, vnet_lines=None, ip4_definition=""):
    """create.sh generate_jail_conf() / generate_vnet_jail_conf() (1.4.4), line for line."""
    log = os.path.join(conf["bastille_logsdir"], f"{name}_console.log")
    # devfs_ruleset: 13 for VNET, 4 otherwise (0 when the host is itself jailed)
    head = [f"{name} {{", "  enforce_statfs = 2;", f"  devfs_ruleset = {13 if vnet_lines else 4};",
            "  exec.clean;", f"  exec.consolelog = {log};", "  exec.start = '/bin/sh /etc/rc';",
            "  exec.stop = '/bin/sh /etc/rc.shutdown';", f"  host.hostname = {name};", "  mount.devfs;",
            "  mount.fstab = {};".format(p["fstab"]), "  path = {};".format(p["root"]), "  securelevel = 2;",
            f'  osrelease = "{release}";', ""]
    if vnet_lines:
        return "\n".join(head + vnet_lines + ["}"]) + "\n"
    # the heredoc keeps the empty IP6_DEFINITION line (two spaces)
    return "\n".join(head + [f"  {ip4_definition}", "  ", "  ip6 = disable;", "}"]) + "\n"


def cmd_create(conf, args):
    o, argv = _create_options(args)
    if sum((o["B"], o["V"])) > 1:
        error_exit("[ERROR]: Only one of [-V|--vnet], [-B|--bridge] or [-P|--passthrough] can be selected.")
    vnet = o["B"] or o["V"]
    info(f"\nCreating jail: {argv[0] if argv else ''}...")
    if len(argv) not in (3, 4):
        usage(CREATE_USAGE)
    name, release, ip = argv[:3]
    iface = argv[3] if len(argv) == 4 else ""
    # validate_name()
    if name in all_jails(conf):
        error_exit(f"[ERROR]: Jail already exists: {name}")
    sanitized = re.sub(r"[^a-zA-Z0-9_-]", "", name)
    if sanitized[:1] in ("-", "_"):
        error_exit("[ERROR]: Jail names may not begin with (-|_) characters!")
    if vnet and re.search(r"[-_]", name):
        error_exit("[ERROR]: VNET jail names may not contain (-|_) characters.")
    if name != sanitized:
        error_exit("[ERROR]: Jail names may not contain special characters!")
    if name.isdigit():
        error_exit("[ERROR]: Jail names may not contain only digits.")
    with kernel() as k:
        ifaces = copy.deepcopy(k["ifaces"])
        default_gw = k["routes"].get("default", "")
    # the interface type is checked against "ifconfig -g bridge" (grep -w) first
    bridges = _bridge_group(ifaces)
    if o["B"] and iface not in bridges:
        error_exit(f"[ERROR]: Interface is not a bridge: {iface}")
    if o["V"] and iface in bridges:
        error_exit(f"[ERROR]: Interface is a bridge: {iface}")
    m = RELEASE_RX.match(release)
    if not m:
        if re.match(r"^[2-4]\.[0-9]|-(current|stable)|^(current|ubuntu|debian|bionic|focal|jammy|noble|buster|"
                    r"bullseye|bookworm|trixie)", release, re.IGNORECASE):
            not_implemented("bastille", ["create"] + list(args))
        if not re.search(r"-(release|rc[1-9]|beta[1-9])", release, re.IGNORECASE):
            err(f"Unknown release: {release}")
        usage(CREATE_USAGE)
    release = release.upper().replace("I386", "i386")
    if not os.path.isdir(os.path.join(conf["bastille_releasesdir"], release)):
        err("[ERROR]: Release must be bootstrapped first.")
        error_exit("See 'bastille bootstrap'.")
    if " " in ip.strip():
        not_implemented("bastille", ["create"] + list(args))
    ip4 = validate_ip(ip, vnet, args)
    if ip4 in ("inherit", "ip_hostname") and vnet:
        error_exit(f"[ERROR]: Unsupported IP option for VNET jail: {ip4}")
    if ip4 in SPECIAL_IPS and not vnet:
        error_exit(f"[ERROR]: Unsupported IP option for non-VNET jail: {ip4}")
    if ip4 in ("inherit", "ip_hostname"):
        not_implemented("bastille", ["create"] + list(args))
    _ok, loopback = rcconf.sh_get([CONF], "bastille_network_loopback", defaults=False)
    _ok, shared = rcconf.sh_get([CONF], "bastille_network_shared", defaults=False)
    if iface:
        # validate_netif(): the name must be a word of "ifconfig -l" (or VNET)
        if iface not in list(ifaces) + ["VNET"]:
            error_exit(f"[ERROR]: Invalid interface: {iface}")
        if o["V"]:
            for bridge in bridges:
                if iface in ifaces[bridge]["members"]:
                    error_exit(f"[ERROR]: Interface '{iface}' is already a member of bridge: {bridge}")
            if "." in iface:
                error_exit("[ERROR]: [-V|--vnet] does not support dots (.) in interface names.")
        else:
            info(f"\nValid interface: {iface}")
    elif vnet and not shared:
        error_exit("[ERROR]: Network interface not set.")
    conf_iface = iface or (shared if shared and not loopback else loopback if loopback and not shared else "")

    p = jail_paths(conf, name)
    rel = os.path.join(conf["bastille_releasesdir"], release)
    os.makedirs(p["root"], exist_ok=True)
    for d in ("etc", "usr/local", "var/run", "var/log", "var/db", "tmp", "root", "home"):
        os.makedirs(os.path.join(p["root"], d), exist_ok=True)
    if not o["T"]:
        # thin jails: the release is null-mounted on .bastille, templates in .template
        os.makedirs(os.path.join(p["root"], ".bastille"), exist_ok=True)
        os.makedirs(os.path.join(p["root"], ".template"), exist_ok=True)
    os.chmod(os.path.join(p["root"], "tmp"), 0o1777)
    # the stand-in copies the release's /etc files a jail needs (thin: the
    # release's etc/ tree; thick: the whole release, whose binaries the
    # stand-in's jails take from the host instead)
    for f in ("etc/passwd", "etc/master.passwd", "etc/group") + tuple(x.lstrip("/") for x in BASE_ETC):
        src = os.path.join(rel, f)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(p["root"], f)), exist_ok=True)
            shutil.copy2(src, os.path.join(p["root"], f))
    if o["T"] and os.path.isfile(os.path.join(rel, "bin", "freebsd-version")):
        os.makedirs(os.path.join(p["root"], ".standin"), exist_ok=True)
        shutil.copy2(os.path.join(rel, "bin", "freebsd-version"),
                     os.path.join(p["root"], ".standin", "freebsd-version"))
    # post_create_jail(): thin fstab null-mounts the release read-only; thick is empty
    fstab = "" if o["T"] else "{} {} nullfs ro 0 0\n".format(rel, os.path.join(p["root"], ".bastille"))
    atomic_write(p["fstab"], fstab)
    atomic_write(os.path.join(p["root"], "etc", "fstab"), "")
    if vnet:
        mac = static_mac(ifaces, name, iface) if o["M"] else ""
        jail_ep, netblock = vnet_netblock(name, "bridge" if o["B"] else "standard", iface, mac)
        atomic_write(p["conf"], jail_conf_text(conf, name, release, p, vnet_lines=netblock))
    else:
        atomic_write(p["conf"], jail_conf_text(conf, name, release, p,
                                               ip4_definition=f"ip4.addr = {conf_iface}|{ip4};"))
    os.chmod(p["base"], 0o700)
    # boot, depend and priority go to settings.conf (sysrc -f), before the start
    for key, value in (("boot", o["boot"]), ("depend", ""), ("priority", o["p"])):
        rcconf.set_value([p["settings"]], key, value)
    os.makedirs(conf["bastille_logsdir"], exist_ok=True)
    if conf.get("bastille_zfs_enable", "").upper() == "YES" and conf.get("bastille_zfs_zpool"):
        with kernel(write=True) as k:
            prefix = conf["bastille_zfs_prefix"] or "bastille"
            k["zfs"]["datasets"][f"{conf['bastille_zfs_zpool']}/{prefix}/jails/{name}"] = p["base"]
    start_one(conf, name)
    if not is_running(name):
        # create.sh: a jail that did not start is destroyed again
        remove_jail(conf, name)
        error_exit(f"[ERROR]: Failed to create jail: {name}")
    rc_files = [p["rc"]]
    if vnet:
        # templates/default/vnet/Bastillefile (SYSRC lines) with create.sh's arguments
        if ip4 in SPECIAL_IPS:
            ifconfig_inet, gateway = "SYNCDHCP", "NO"
        else:
            ifconfig_inet = f"inet {ip4}"
            gateway = o["g"] or conf.get("bastille_network_gateway") or default_gw
        for key, value in ((f"ifconfig_{jail_ep.replace('-', '_')}_name", "vnet0"),
                           ("ifconfig_vnet0", ifconfig_inet),
                           ("ifconfig_vnet0_descr", f"jail interface for {iface}"), ("ifconfig_vnet0_ipv6", ""),
                           ("defaultrouter", gateway or "NO"), ("ipv6_defaultrouter", "NO")):
            rcconf.set_value(rc_files, key, value)
    # templates/default/base/Bastillefile (through default/thin or default/thick)
    rcconf.set_value([os.path.join(p["root"], "etc", "periodic.conf")], "daily_status_world_kernel", "NO")
    for key, value in (("syslogd_flags", "-ss"), ("sendmail_enable", "NO"), ("sendmail_submit_enable", "NO"),
                       ("sendmail_outbound_enable", "NO"), ("sendmail_msp_queue_enable", "NO"),
                       ("cron_flags", "-J 60")):
        rcconf.set_value(rc_files, key, value)
    if os.path.isfile("/etc/resolv.conf"):
        shutil.copyfile("/etc/resolv.conf", os.path.join(p["root"], "etc", "resolv.conf"))
    # create.sh ends with "bastille restart NAME" to apply what the templates set
    stop_one(conf, name)
    start_one(conf, name)
    return 0


def remove_jail(conf, name):
    """destroy.sh's work for a stopped jail: its directory and datasets."""
    p = jail_paths(conf, name)
    shutil.rmtree(p["base"])
    with kernel(write=True) as k:
        for ds in [d for d, path in k["zfs"]["datasets"].items() if path == p["base"]]:
            del k["zfs"]["datasets"][ds]


# ------------------------------------------------------------------ start/stop

def _prestart_steps(cmd):
    """jail.conf exec.prestart/poststop strings Bastille 1.4.4 writes, as ifconfig argvs."""
    text = cmd.replace('\\"', '"').replace("\\$", "$")
    m = re.fullmatch(r"epair0=\$\(ifconfig epair create\) && ifconfig \$\{epair0\} up name (\S+) "
                     r"&& ifconfig \$\{epair0%a\}b up name (\S+)", text)
    if m:
        return [["epair", "create"], ["{epair}a", "up", "name", m.group(1)], ["{epair}b", "up", "name", m.group(2)]]
    words = shlex.split(text)
    if words[:2] == ["jib", "addm"] and len(words) == 4:
        return [["jib"] + words[2:]]
    if words[:1] == ["ifconfig"] and len(words) > 2:
        return [words[1:]]
    return None


def _jib_addm(k, name, iface):
    """/usr/share/examples/jails/jib addm NAME IF: IF's bridge IFbridge, epair e0a_/e0b_NAME."""
    ifaces = k["ifaces"]
    bridge = f"{iface}bridge"
    steps = []
    if bridge not in ifaces:
        steps += [["bridge", "create", "name", bridge], [iface, "up"], [bridge, "addm", iface, "up"]]
    steps += [["epair", "create"], ["{epair}a", "name", f"e0a_{name}", "up"], ["{epair}b", "name", f"e0b_{name}", "up"],
              [bridge, "addm", f"e0a_{name}"]]
    return steps


def _run_ifconfig_steps(k, steps):
    epair = ""
    for argv in steps:
        if argv[0] == "jib":
            if not _run_ifconfig_steps(k, _jib_addm(k, argv[1], argv[2])):
                return False
            continue
        argv = [a.replace("{epair}", epair) for a in argv]
        status, names = net.ifconfig_apply(k, argv)
        if status != 0:
            return False
        if argv[1:] == ["create"]:
            epair = names[0][:-1] if names else ""
    return True


def _run_jail_commands(k, name, props, key):
    """Run a jail's exec.prestart / exec.poststop lines; False when one fails (jail(8))."""
    for cmd in props.get(key, []):
        steps = _prestart_steps(cmd)
        if steps is None:
            not_implemented("jail", ["-c", name, f"{key}: {cmd}"])
        if not _run_ifconfig_steps(k, steps):
            err(f"jail: {name}: {key} {cmd}: failed")
            return False
    return True


def start_one(conf, name):
    p = jail_paths(conf, name)
    props = read_jail_conf(p["conf"])
    header(name)
    if is_running(name):
        err("Jail is already running.")
        return 0
    vnet = props.get("vnet") is True
    if not vnet:
        # start.sh: a non-VNET jail's interface must exist
        ip4 = str(props.get("ip4.addr", ""))
        if "|" in ip4:
            ifname = ip4.split("|", maxsplit=1)[0]
            with kernel() as k:
                exists = ifname in k["ifaces"]
            if not exists:
                err(f"[ERROR]: {ifname} interface does not exist.")
                return 0
    with kernel(write=True) as k:
        before = copy.deepcopy(k["ifaces"])
        try:
            started = not vnet or _run_jail_commands(k, name, props, "exec.prestart")
            if not started:
                # undo the half-made plumbing with the jail's own exec.poststop
                _run_jail_commands(k, name, props, "exec.poststop")
        finally:
            net.interfaces_saved(k, before)
        if not started:
            # jail -c failed; bastille start still exits 0 (start.sh does not check it)
            return 0
        jail_ep = props.get("vnet.interface") if vnet else None
        host_ep = "e0a" + jail_ep[3:] if jail_ep else None
        bridge = net.bridge_of(k["ifaces"], host_ep) if host_ep else None
        # jail(8) vnet.interface: the jail's end leaves the host's interface list
        # while the jail runs (it comes back when the jail is removed)
        moved = {jail_ep: k["ifaces"].pop(jail_ep)} if jail_ep in k["ifaces"] else {}
        jid = k["next_jid"]
        k["next_jid"] += 1
        k["jails"][name] = {"jid": jid, "running": True, "path": p["root"],
                            "hostname": props.get("host.hostname", name),
                            "vnet": vnet, "ip4": "" if vnet else ip4_of(props),
                            "osrelease": props.get("osrelease", ""), "host_epair": host_ep, "jail_epair": jail_ep,
                            "bridge": bridge, "vnet_ifaces": moved}
    J.mount_jail(p["root"])
    with open(p["fstab"], encoding="utf-8") as fh:
        fstab_lines = fh.read().splitlines()
    for line in fstab_lines:
        f = line.split()
        if len(f) >= 4 and f[2] == "nullfs" and os.path.isdir(f[0]):
            os.makedirs(f[1], exist_ok=True)
            subprocess.run(["/bin/mount", "--bind", f[0], f[1]], check=False, capture_output=True)
            if f[3].split(",")[0] == "ro":
                subprocess.run(["/bin/mount", "-o", "remount,bind,ro", f[1]], check=False, capture_output=True)
    # jail(8) exec.start ("/bin/sh /etc/rc"): the jail boots its own services (jails.py)
    J.exec_start(name)
    out(f"{name}: created")
    return 0


def ip4_of(props):
    """ip4.addr without "IF|" and prefix, as jls(8) shows it."""
    return str(props.get("ip4.addr", "")).rsplit("|", maxsplit=1)[-1].split("/")[0]


def stop_one(conf, name):
    header(name)
    if not is_running(name):
        err("Jail is already stopped.")
        return 0
    p = jail_paths(conf, name)
    props = read_jail_conf(p["conf"])
    J.unmount_jail(p["root"])
    with kernel(write=True) as k:
        before = copy.deepcopy(k["ifaces"])
        j = k["jails"].pop(name)
        k["ifaces"].update(j.get("vnet_ifaces") or {})
        try:
            # jail -r: the jail's epair end comes home, then exec.poststop runs
            if props.get("vnet") is True and not _run_jail_commands(k, name, props, "exec.poststop"):
                err(f"jail: {name}: exec.poststop failed")
        finally:
            net.interfaces_saved(k, before)
    out(f"{name}: removed")
    return 0


def _settings(conf, name, key):
    return rcconf.sh_get([jail_paths(conf, name)["settings"]], key, defaults=False)[1]


def by_priority(conf, names, reverse=False):
    """common.sh list_jail_priority | sort -k2 -n[r]: priority, then the line."""
    def key(n):
        prio = _settings(conf, n, "priority")
        return (int(prio) if prio.isdigit() else 0, f"{n} {prio}".encode())
    return sorted(dict.fromkeys(names), key=key, reverse=reverse)


def _startstop_options(verb, args):
    """start.sh / stop.sh / restart.sh option loops (1.4.4).

    Returns (flags, target, delay): start and restart take "-d|--delay VALUE",
    the seconds to wait after starting each jail (docs/chapters/subcommands/
    start.rst; rc.d/bastille passes $bastille_startup_delay with it).
    """
    flags, rest, delay = set(), list(args), 0
    allowed = {"start": "b", "stop": "f", "restart": "bi"}[verb]
    long_names = {"--boot": "b", "--force": "f", "--ignore": "i"}
    while rest and rest[0].startswith("-"):
        a = rest.pop(0)
        if a in long_names and long_names[a] in allowed:
            flags.add(long_names[a])
            continue
        if a in ("-d", "--delay") and verb in ("start", "restart"):
            if not rest or not rest[0].isdigit():
                # start.sh hands VALUE to sleep(1); only whole seconds are modelled
                not_implemented("bastille", [verb] + list(args))
            delay = int(rest.pop(0))
            continue
        if a in ("-h", "--help"):
            usage(f"Usage: bastille {verb} [option(s)] TARGET")
        if a.startswith("--") or any(ch in "vxd" for ch in a[1:]):
            # verbose jail(8), debug, and -d bundled with other letters: not modelled
            not_implemented("bastille", [verb] + list(args))
        for ch in a[1:]:
            if ch not in allowed:
                error_exit(f'[ERROR]: Unknown Option: "{a}"')
            flags.add(ch)
    if len(rest) != 1:
        usage(f"Usage: bastille {verb} [option(s)] TARGET")
    return flags, rest[0], delay


def start_jails(conf, names, boot_only, delay=0):
    for name in names:
        # start.sh: with -b, a jail whose settings say boot=off is skipped
        if boot_only and _settings(conf, name, "boot") == "off":
            continue
        # its "depend" jails first (start.sh calls "bastille start" for each)
        for dep in _settings(conf, name, "depend").split():
            if dep in all_jails(conf):
                start_one(conf, dep)
        start_one(conf, name)
        if delay:
            time.sleep(delay)


def stop_jails(conf, names, stopping=()):
    for name in names:
        # stop.sh: jails whose settings.conf names this one (grep -w) stop first;
        # a jail already on the way down is not asked again (stop.sh would loop)
        for other in all_jails(conf):
            if other == name or other in stopping:
                continue
            try:
                with open(jail_paths(conf, other)["settings"], encoding="utf-8") as fh:
                    text = fh.read()
            except FileNotFoundError:
                continue
            if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text):
                stop_jails(conf, [other], stopping=(*stopping, name))
        stop_one(conf, name)


def cmd_startstop(conf, verb, args):
    flags, target, delay = _startstop_options(verb, args)
    names = resolve(conf, target)
    if verb == "start":
        start_jails(conf, by_priority(conf, names), "b" in flags, delay)
    elif verb == "stop":
        stop_jails(conf, by_priority(conf, names, reverse=True))
    else:
        for name in by_priority(conf, names):
            if "i" in flags:
                # restart.sh 1.4.4 with -i: a stopped jail is reported and left
                # alone, and a running one is not restarted either
                if not is_running(name):
                    header(name)
                    err("Jail is stopped.")
                continue
            stop_jails(conf, [name])
            start_jails(conf, [name], "b" in flags, delay)
    return 0


def cmd_destroy(conf, args):
    flags, rest = set(), []
    for a in args:
        if a in ("-a", "--auto"):
            flags.add("a")
        elif a in ("-f", "--force"):
            flags.add("f")
        elif a in ("-y", "--yes"):
            flags.add("y")
        elif a in ("-c", "--no-cache"):
            flags.add("c")
        elif re.match(r"^-[acfy]+$", a):
            flags.update(a[1:])
        elif a.startswith("-"):
            error_exit(f'[ERROR]: Unknown Option: "{a}"')
        else:
            rest.append(a)
    if len(rest) != 1:
        not_implemented("bastille", ["destroy"] + list(args))
    if re.search(r"-(RELEASE|CURRENT|STABLE)", rest[0]):
        not_implemented("bastille", ["destroy"] + list(args))
    for name in resolve(conf, rest[0]):
        if is_running(name):
            if "a" not in flags:
                header(name)
                err("Jail is running.")
                err("Use [-a|--auto] to auto-stop the jail.")
                continue
            stop_one(conf, name)
        header(name)
        if "y" not in flags:
            err(f"\nAttempting to destroy jail: {name}\n")
            sys.stdout.write("Are you sure you want to continue? [y|n]:")
            sys.stdout.flush()
            answer = sys.stdin.readline().strip()
            if answer.lower() in ("n", "no"):
                error_exit("[ERROR]: Cancelled by user.")
            if answer.lower() not in ("y", "yes"):
                error_exit("[ERROR]: Invalid input. Please answer 'y' or 'n'.")
        p = jail_paths(conf, name)
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[1] for line in fh if line.split()[1].startswith(p["root"] + "/")]
        if mounts:
            err(f"[ERROR]: Failed to destroy jail: {name}")
            err("Jail has mounted filesystems:\n{}".format("\n".join(mounts)))
            continue
        err("Destroying jail...")
        shutil.rmtree(p["base"])
        with kernel(write=True) as k:
            for ds in [d for d, path in k["zfs"]["datasets"].items() if path == p["base"]]:
                del k["zfs"]["datasets"][ds]
        log = os.path.join(conf["bastille_logsdir"], f"{name}_console.log")
        if os.path.isfile(log):
            os.rename(log, log + "-archived")
            err("Note: jail console logs archived.")
    return 0


# ------------------------------------------------------------------ list

def _userland(path):
    """USERLAND_VERSION of a freebsd-version script, as list.sh greps it."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r"^USERLAND_VERSION=(.*)$", line.strip())
                if m:
                    return re.sub(r"[\"'^]", "", m.group(1)).split(" ")[0]
    except FileNotFoundError:
        pass
    return ""


def _release(conf, name, p):
    # thin: the release null-mounted from fstab; thick: the jail's own
    # bin/freebsd-version (kept aside in the stand-in, whose jails run the host's binaries)
    with open(p["fstab"], encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if len(f) > 2 and "/releases/" in f[0] and f[1].endswith("/root/.bastille") and f[2] == "nullfs":
                return _userland(os.path.join(f[0], "bin", "freebsd-version"))
    return _userland(os.path.join(p["root"], ".standin", "freebsd-version"))


def jail_info(conf, name):
    """list.sh get_jail_info() of Bastille 1.4.4 for one jail ("-" for empty values)."""
    p = jail_paths(conf, name)
    props = read_jail_conf(p["conf"])
    with kernel() as k:
        j = k["jails"].get(name)
    running = bool(j and j.get("running"))
    if props.get("vnet") is True:
        # rc.conf's ifconfig_vnet*="inet A/N" (the stand-in reads it also for a
        # running jail, where list.sh asks ifconfig inside the jail)
        ips = []
        with contextlib.suppress(FileNotFoundError), open(p["rc"], encoding="utf-8") as fh:
            for line in fh:
                m = re.match(r'^ifconfig_vnet\S*=.*inet (\S+)', line)
                if m:
                    ips.append(re.sub(r"/[0-9]+.*", "", m.group(1)).replace('"', ""))
        ip = ",".join(ips)
    else:
        ip = ip4_of(props) if props.get("ip4.addr") else ""
    with open(p["fstab"], encoding="utf-8") as fh:
        thin = os.path.join(p["root"], ".bastille") in fh.read().split()
    tags = ""
    if os.path.isfile(os.path.join(p["base"], "tags")):
        with open(os.path.join(p["base"], "tags"), encoding="utf-8") as fh:
            tags = ",".join(x.strip() for x in fh if x.strip())
    values = {"JID": str(j["jid"]) if running else "", "Name": name, "Boot": _settings(conf, name, "boot"),
              "Prio": _settings(conf, name, "priority"), "State": "Up" if running else "Down",
              "Type": "thin" if thin else "thick", "IP Address": ip, "Published Ports": "",
              "Release": _release(conf, name, p), "Tags": tags,
              "Hostname": str(props.get("host.hostname", "")), "Path": str(props.get("path", ""))}
    return {key: value or "-" for key, value in values.items()}


def _widths(conf, rows):
    """list.sh get_max_lengths(): computed over every jail, with its minimums."""
    names = all_jails(conf)
    infos = [jail_info(conf, n) for n in names]
    return {"JID": 3, "Name": max([len(n) for n in names], default=10) if names else 10,
            "Type": 5, "IP Address": max([10] + [len(i["IP Address"]) for i in infos if i["IP Address"] != "-"]),
            "Published Ports": 15, "Hostname": max([8] + [len(i["Hostname"]) for i in infos]),
            "Release": max([7] + [len(i["Release"]) for i in infos if i["Release"] != "-"])}


def _pad(value, width):
    # printf "%*s" with width MAX - len + SPACER (a negative width pads too)
    return value + " " * abs(width - len(value) + 2)


LIST_COLUMNS = ("JID", "Name", "Boot", "Prio", "State", "Type", "IP Address", "Published Ports", "Release", "Tags")
ALL_COLUMNS = ("JID", "Boot", "Prio", "State", "IP Address", "Published Ports", "Hostname", "Release", "Path")
FIXED = {"Boot": 4, "Prio": 4, "State": 5}


def _table(columns, widths, rows):
    def line(cells):
        text = ""
        for col, cell in zip(columns[:-1], cells[:-1], strict=True):
            text += _pad(cell, max(widths.get(col, FIXED.get(col, 0)), 3 if col == "Name" else 0))
        return " " + text + cells[-1]
    # the header pads each title by MAX + SPACER - len(title), as the rows do
    return [line(list(columns))] + [line([r[c] for c in columns]) for r in rows]


def _json(columns, rows):
    # list.sh: awk over the table's whitespace-separated fields, one object a line
    objs = ["  {" + ",".join(f'"{c}":"{r[c]}"' for c in columns) + "}" for r in rows]
    return "[\n" + ",\n".join(objs) + "\n]"


def cmd_list(conf, args):
    as_json, state, rest = False, "all", []
    argv = list(args)
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-j", "--json"):
            as_json = True
        elif a in ("-u", "--up"):
            state = "Up"
        elif a in ("-d", "--down"):
            state = "Down"
        elif a in ("-p", "--pretty", "-x", "--debug"):
            not_implemented("bastille", ["list"] + list(args))
        else:
            for ch in a.replace("-", ""):
                if ch == "a":
                    # list.sh 1.4.4: the old flag is refused
                    error_exit('[ERROR]: "-a" is deprecated. Use "all" instead.')
                if ch not in "jdu":
                    error_exit(f'[ERROR]: Unknown Option: "{a}"')
                as_json = as_json or ch == "j"
                state = {"d": "Down", "u": "Up"}.get(ch, state)
    rest = argv
    if rest in (["jail"], ["jails"], ["container"], ["containers"]):
        # list_jail(): names one a line, natural order (ls -v), never JSON
        for n in all_jails(conf):
            out(n)
        return 0
    other_lists = ("ip", "ips", "path", "paths", "rdr", "port", "ports", "state", "status", "type", "jailtype",
                   "release", "releases", "snap", "snapshot", "snapshots", "template", "templates", "log", "logs",
                   "limit", "limits", "import", "imports", "export", "exports", "backup", "backups")
    if len(rest) > 1 or (rest and rest[0] in other_lists):
        not_implemented("bastille", ["list"] + list(args))
    if not os.path.isdir(conf["bastille_jailsdir"]):
        error_exit("[ERROR]: No jails found.")
    columns = ALL_COLUMNS if rest == ["all"] else LIST_COLUMNS
    names = all_jails(conf) if not rest or rest == ["all"] else resolve(conf, rest[0])
    rows = [r for r in (jail_info(conf, n) for n in names) if state in ("all", r["State"])]
    if as_json:
        out(_json(columns, rows))
        return 0
    for line in _table(columns, _widths(conf, rows), rows):
        out(line)
    return 0


# ------------------------------------------------------------------ in-jail commands

def _need_running(name):
    if not is_running(name):
        header(name)
        err("Jail is not running.")
        err("Use [-a|--auto] to auto-start the jail.")
        return False
    return True


def cmd_exec(conf, verb, args):
    yes = False
    argv = list(args)
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if verb == "pkg" and a in ("-y", "--yes"):
            yes = True
        else:
            error_exit(f'[ERROR]: Unknown Option: "{a}"')
    if len(argv) < 2:
        not_implemented("bastille", [verb] + list(args))
    errors = 0
    for name in resolve(conf, argv[0]):
        if not _need_running(name):
            continue
        header(name)
        rest = argv[1:]
        if verb == "sysrc":
            cmd = J.jexec_argv(name, ["/usr/sbin/sysrc"] + rest, login=True)
        elif verb == "service":
            cmd = J.jexec_argv(name, ["/usr/sbin/service"] + rest, login=True)
        elif verb == "pkg":
            inner = (["env", "ASSUME_ALWAYS_YES=yes"] if yes else []) + ["/usr/sbin/pkg"] + rest
            cmd = J.jexec_argv(name, inner, user="root", login=True)
        else:
            cmd = J.jexec_argv(name, rest, user="root", login=True)
        sys.stdout.flush()
        sys.stderr.flush()
        if subprocess.run(cmd, check=False).returncode != 0:
            errors += 1
    if errors:
        error_exit(f"[ERROR]: Command failed on {errors} jails.")
    return 0


def cmd_mount(conf, args):
    if len(args) not in (3, 7):
        not_implemented("bastille", ["mount"] + list(args))
    target, host, jailpath = args[:3]
    fstype, perms, dump, pas = args[3:] if len(args) == 7 else ("nullfs", "ro", "0", "0")
    if fstype != "nullfs" or not os.path.exists(host):
        err("[ERROR]: Invalid host path or incorrect mount type in FSTAB.")
        err("Format: /host/path /jail/path nullfs ro 0 0")
        err(f"Read: {host} {jailpath} {fstype} {perms} {dump} {pas}")
        raise Exit(1)
    if not re.match(r"^(ro|rw|rq|sw|xx)(,.*)?$", perms):
        err("Detected invalid mount permissions in FSTAB.")
        raise Exit(1)
    for name in resolve(conf, target):
        if not _need_running(name):
            continue
        header(name)
        p = jail_paths(conf, name)
        full = os.path.normpath(p["root"] + "/" + jailpath)
        line = f"{host} {full} {fstype} {perms} {dump} {pas}\n"
        with open(p["fstab"], encoding="utf-8") as fh:
            present = any(len(x.split()) > 1 and x.split()[1] == full for x in fh)
        if present:
            err("Mountpoint already present in {}".format(p["fstab"]))
            continue
        os.makedirs(full, exist_ok=True)
        with open(p["fstab"], "a", encoding="utf-8") as fh:
            fh.write(line)
        subprocess.run(["/bin/mount", "--bind", host, full], check=False, capture_output=True)
        if perms.startswith("ro"):
            subprocess.run(["/bin/mount", "-o", "remount,bind,ro", full], check=False, capture_output=True)
        out(f"Added: {line.strip()}")
    return 0


# jail(8) parameters Bastille 1.4.4 config.sh accepts (validate_property());
# anything else: "[ERROR]: Unsupported property: NAME", exit 1, nothing written
JAIL_PARAMS = frozenset(re.findall(r"\S+", """
jid name path interface ip_hostname ip4.addr ip4.saddrsel ip4 ip6.addr ip6.saddrsel ip6 vnet vnet.interface
novnet host.hostname host.domainname host.hostuuid host.hostid host securelevel devfs_ruleset children.max
children.cur enforce_statfs persist cpuset.id parent nopersist osrelease osreldate meta env
allow.set_hostname allow.sysvipc allow.raw_sockets allow.chflags allow.noset_hostname allow.nosysvipc
allow.noraw_sockets allow.nochflags allow.mount allow.mount.devfs allow.quotas allow.read_msgbuf allow.nomount
allow.nomount.devfs allow.noquotas allow.noread_msgbuf allow.socket_af allow.mlock allow.nfsd
allow.reserved_ports allow.nosocket_af allow.nomlock allow.nonfsd allow.noreserved_ports
allow.unprivileged_parent_tampering allow.unprivileged_proc_debug allow.nounprivileged_parent_tampering
allow.nounprivileged_proc_debug allow.suser allow.extattr allow.adjtime allow.settime allow.routing
allow.setaudit allow.nosuser allow.noextattr allow.noadjtime allow.nosettime allow.norouting allow.nosetaudit
allow.mount.fdescfs allow.mount.fusefs allow.mount.nullfs allow.mount.procfs allow.mount.linprocfs
allow.nomount.fdescfs allow.nomount.fusefs allow.nomount.nullfs allow.nomount.procfs allow.nomount.linprocfs
allow.mount.linsysfs allow.mount.tmpfs allow.mount.zfs allow.vmm allow.nomount.linsysfs allow.nomount.tmpfs
allow.nomount.zfs allow.novmm linux linux.osname linux.osrelease linux.oss_version sysvmsg sysvsem sysvshm
zfs.mount_snapshot exec.prepare exec.prestart exec.created exec.start command exec.poststart exec.prestop
exec.stop exec.poststop exec.release exec.clean exec.jail_user exec.system_jail_user exec.system_user
exec.timeout exec.consolelog exec.fib stop.timeout zfs.dataset mount mount.fstab mount.devfs mount.fdescfs
mount.procfs dying allow.dying
"""))
CONFIG_USAGE = "Usage: bastille config [option(s)] TARGET set|add PROPERTY [VALUE]"


def _sysrc_set(path, key, value):
    """sysrc -f FILE key=value: "key: old -> new" on stdout."""
    _ok, old = rcconf.sh_get([path], key, defaults=False)
    rcconf.set_value([path], key, value)
    out(f"{key}: {old} -> {value}")


def _jail_conf_get(path, prop):
    """config.sh get: jail -e output through awk: value, "enabled" for a bare name, or "not set"."""
    value = read_jail_conf(path).get(prop)
    if value is None:
        return "not set"
    if value is True or (isinstance(value, str) and "=" in value):
        return "enabled"  # awk -F= sees more than two fields
    if isinstance(value, list):
        return "enabled" if any("=" in v for v in value) else value[0]
    return value


def _bastille_property(conf, name, action, prop, value):
    path = jail_paths(conf, name)["settings"]
    prop = {"prio": "priority", "depends": "depend"}.get(prop, prop)
    if action == "get":
        out(_settings(conf, name, prop))
    elif prop == "priority":
        if action == "remove":
            error_exit("[ERROR]: Cannot remove the 'priority' property.")
        if not re.fullmatch(r"[0-9]+", value):
            error_exit("Priority value must be a number.")
        _sysrc_set(path, prop, value)
    elif prop == "boot":
        if action == "remove":
            error_exit("[ERROR]: Cannot remove the 'boot' property.")
        if value not in ("on", "off"):
            error_exit("Boot value must be 'on' or 'off'.")
        _sysrc_set(path, prop, value)
    else:
        if not value:
            verb = "Adding a jail to" if action == "set" else "Removing a jail from"
            error_exit(f"[ERROR]: {verb} the 'depend' property requires a TARGET.")
        deps = resolve(conf, value)
        header(name)
        old = _settings(conf, name, "depend").split()
        new = old + [d for d in deps if d not in old] if action == "set" else [d for d in old if d not in deps]
        _sysrc_set(path, "depend", " ".join(new))


def cmd_config(conf, args):
    argv = list(args)
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-h", "--help"):
            usage(CONFIG_USAGE)
        if a in ("-x", "--debug"):
            not_implemented("bastille", ["config"] + list(args))
        err(f'[ERROR]: Unknown Option: "{a}"')
        usage(CONFIG_USAGE)
    if not 3 <= len(argv) <= 4:
        usage(CONFIG_USAGE)
    target, action, prop = argv[0], argv[1], argv[2]
    value = argv[3] if len(argv) == 4 else ""
    names = by_priority(conf, resolve(conf, target))
    if action in ("get", "remove") and len(argv) != 3:
        error_exit("[ERROR]: Too many parameters for [get|remove] operation.")
    if action not in ("get", "remove", "set", "add"):
        error_exit("[ERROR]: Only (add|set), get and remove are supported.")
    action = "set" if action == "add" else action
    bastille_property = prop in ("boot", "depend", "depends", "prio", "priority")
    if not bastille_property and prop not in JAIL_PARAMS:
        error_exit(f"[ERROR]: Unsupported property: {prop}")
    if prop in ("ip4.addr", "ip6.addr") and action == "set":
        not_implemented("bastille", ["config"] + list(args))
    for name in names:
        if bastille_property:
            _bastille_property(conf, name, action, prop, value)
            continue
        path = jail_paths(conf, name)["conf"]
        if not os.path.isfile(path):
            err(f"jail.conf does not exist for jail: {name}")
            continue
        if action == "get":
            out(_jail_conf_get(path, prop))
            continue
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        if action == "remove":
            if _jail_conf_get(path, prop) == "not set":
                error_exit(f"[ERROR]: Value not present in jail.conf: {prop}")
            header(name)
            # sed "/.*PROP.*/d": every line that contains the name goes (so
            # removing "vnet" takes vnet.interface with it, as in 1.4.4)
            rx = re.compile(prop)
            lines = [line for line in lines if not rx.search(line)]
            info(f"Property removed: {prop}")
        else:
            if value and not re.fullmatch(r"[A-Za-z0-9._/:| $!&%=(){}-]+", value):
                error_exit(f"[ERROR]: Value contains unsupported characters: {value}")
            if " " in value:
                value = f"'{value}'"
            newline = f"  {prop} = {value};" if value else f"  {prop};"
            # the awk: replace the first "PROP" / "PROP = ..." line, else add before "}"
            rx = re.compile(rf"^[\s]*{prop}[\s]*;?$")
            idx = [i for i, line in enumerate(lines) if rx.match(line.split("=")[0])]
            if idx:
                lines[idx[0]] = newline
            else:
                close = [i for i, line in enumerate(lines) if line.split("=")[0] == "}"]
                lines.insert(close[0] if close else len(lines), newline)
        atomic_write(path, "\n".join(lines) + "\n")
    if action in ("set", "remove") and not bastille_property:
        info("A restart is required for the changes to be applied. See 'bastille restart'.")
    return 0


def main(args):
    if not args:
        not_implemented("bastille", args)
    verb, rest = args[0], args[1:]
    if os.geteuid() != 0:
        err("Bastille: Permission Denied")
        error_exit("root / sudo / doas required")
    if verb in ("-v", "--version", "version"):
        # usr/local/bin/bastille: info 1 "${BASTILLE_VERSION}" (stderr)
        err("1.4.4")
        return 0
    conf = load_conf()
    if verb == "bootstrap":
        return cmd_bootstrap(conf, rest)
    if verb == "create":
        return cmd_create(conf, rest)
    if verb in ("start", "stop", "restart"):
        return cmd_startstop(conf, verb, rest)
    if verb == "destroy":
        return cmd_destroy(conf, rest)
    if verb == "list":
        return cmd_list(conf, rest)
    if verb in ("sysrc", "service", "cmd", "pkg"):
        return cmd_exec(conf, verb, rest)
    if verb == "mount":
        return cmd_mount(conf, rest)
    if verb == "config":
        return cmd_config(conf, rest)
    not_implemented("bastille", args)
    return 64

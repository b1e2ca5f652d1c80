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

import json
import os
import re
import shutil
import subprocess
import sys

from . import jails as J
from . import rcconf
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
                    val = m.group(3).strip().strip("'\"")
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

def cmd_create(conf, args):
    argv = list(args)
    o = {"B": False, "T": False, "V": False, "M": False, "g": "", "p": "99", "boot": "on"}
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a in ("-g", "--gateway", "--defaultrouter") and argv:
            o["g"] = argv.pop(0)
            if not re.match(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$", o["g"]):
                error_exit("[ERROR]: Not a valid gateway: {}".format(o["g"]))
        elif a in ("-p", "--priority") and argv:
            o["p"] = argv.pop(0)
        elif a == "--no-boot":
            o["boot"] = "off"
        elif a in ("--bridge", "--thick", "--vnet", "--static-mac"):
            o[{"--bridge": "B", "--thick": "T", "--vnet": "V", "--static-mac": "M"}[a]] = True
        elif re.match(r"^-[BTVM]+$", a):
            for ch in a[1:]:
                o[ch] = True
        else:
            not_implemented("bastille", ["create"] + list(args))
    if len(argv) not in (3, 4):
        not_implemented("bastille", ["create"] + list(args))
    name, release, ip = argv[:3]
    iface = argv[3] if len(argv) == 4 else ""
    vnet = o["B"] or o["V"]
    if o["B"] and o["V"]:
        error_exit("[ERROR]: Only one of [-V|--vnet], [-B|--bridge] or [-P|--passthrough] can be selected.")
    names = all_jails(conf)
    if name in names:
        error_exit(f"[ERROR]: Jail already exists: {name}")
    if name[:1] in "-_":
        error_exit("[ERROR]: Jail names may not begin with (-|_) characters!")
    if vnet and re.search(r"[-_]", name):
        error_exit("[ERROR]: VNET jail names may not contain (-|_) characters.")
    if not NAME_OK.match(name):
        error_exit("[ERROR]: Jail names may not contain special characters!")
    if name.isdigit():
        error_exit("[ERROR]: Jail names may not contain only digits.")
    if not os.path.isdir(os.path.join(conf["bastille_releasesdir"], release)):
        err("[ERROR]: Release must be bootstrapped first.")
        error_exit("See 'bastille bootstrap'.")
    m = re.match(r"^([0-9]{1,3}(?:\.[0-9]{1,3}){3})(/[0-9]{1,2})?$", ip)
    if not m:
        error_exit(f"[ERROR]: Invalid IP: {ip}")
    with kernel() as k:
        ifaces = k["ifaces"]
        default_gw = k["routes"].get("default", "")
    if vnet:
        if not iface:
            error_exit("[ERROR]: Network interface not set.")
        if iface not in ifaces:
            error_exit(f"[ERROR]: Interface does not exist: {iface}")
        is_bridge = "bridge" in ifaces[iface].get("groups", [])
        if o["B"] and not is_bridge:
            error_exit(f"[ERROR]: Interface is not a bridge: {iface}")
        if o["V"] and is_bridge:
            error_exit(f"[ERROR]: Interface is a bridge: {iface}")
        err(f"\nValid interface: {iface}")
    elif iface and iface not in ifaces:
        error_exit(f"[ERROR]: Invalid interface: {iface}")
    err(f"\nCreating jail: {name}...")
    p = jail_paths(conf, name)
    rel = os.path.join(conf["bastille_releasesdir"], release)
    os.makedirs(p["root"], exist_ok=True)
    for d in ("etc", "usr/local", "var/run", "var/log", "var/db", "tmp", "root", "home", ".bastille"):
        os.makedirs(os.path.join(p["root"], d), exist_ok=True)
    os.chmod(os.path.join(p["root"], "tmp"), 0o1777)
    # thin and thick jails get their own copy of the release's /etc (create.sh)
    for f in ("etc/passwd", "etc/master.passwd", "etc/group") + tuple(x.lstrip("/") for x in BASE_ETC):
        src = os.path.join(rel, f)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(p["root"], f)), exist_ok=True)
            shutil.copy2(src, os.path.join(p["root"], f))
    if os.path.isfile("/etc/resolv.conf"):
        shutil.copyfile("/etc/resolv.conf", os.path.join(p["root"], "etc", "resolv.conf"))
    fstab = "" if o["T"] else "{} {} nullfs ro 0 0\n".format(rel, os.path.join(p["root"], ".bastille"))
    atomic_write(p["fstab"], fstab)
    log = os.path.join(conf["bastille_logsdir"], f"{name}_console.log")
    lines = [f"{name} {{", "  enforce_statfs = 2;", f"  devfs_ruleset = {13 if vnet else 4};",
             "  exec.clean;", f"  exec.consolelog = {log};", "  exec.start = '/bin/sh /etc/rc';",
             "  exec.stop = '/bin/sh /etc/rc.shutdown';", f"  host.hostname = {name};", "  mount.devfs;",
             "  mount.fstab = {};".format(p["fstab"]), "  path = {};".format(p["root"]), "  securelevel = 2;",
             f'  osrelease = "{release}";', ""]
    if vnet:
        host_ep, jail_ep = f"e0a_{name}", f"e0b_{name}"
        if len(host_ep) >= 16:
            host_ep, jail_ep = "e0a_bastille1", "e0b_bastille1"
        lines += ["  vnet;", f"  vnet.interface = {jail_ep};",
                  f'  exec.prestart += "epair0=\\$(ifconfig epair create) && ifconfig \\${{epair0}} up name {host_ep} '
                  f'&& ifconfig \\${{epair0%a}}b up name {jail_ep}";',
                  f'  exec.prestart += "ifconfig {iface} addm {host_ep}";',
                  f'  exec.prestart += "ifconfig {host_ep} description '
                  f'\\"vnet0 host interface for Bastille jail {name}\\"";',
                  f'  exec.poststop += "ifconfig {host_ep} destroy";']
    else:
        lines += [f"  interface = {iface};" if iface else "", f"  ip4.addr = {ip};", "  ip6 = disable;"]
    lines.append("}")
    atomic_write(p["conf"], "\n".join(lines) + "\n")
    atomic_write(p["settings"], 'boot="{}"\ndepend=""\npriority="{}"\n'.format(o["boot"], o["p"]))
    os.makedirs(conf["bastille_logsdir"], exist_ok=True)
    rc_files = [p["rc"]]
    rcconf.set_value(rc_files, "syslogd_flags", "-ss")
    if vnet:
        # after BastilleBSD templates default/vnet/Bastillefile (SYSRC lines)
        gateway = o["g"] or conf.get("bastille_network_gateway") or default_gw
        rcconf.set_value(rc_files, f"ifconfig_{jail_ep}_name", "vnet0")
        rcconf.set_value(rc_files, "ifconfig_vnet0", f"inet {ip}")
        rcconf.set_value(rc_files, "defaultrouter", gateway or "NO")
    if conf.get("bastille_zfs_enable", "").upper() == "YES" and conf.get("bastille_zfs_zpool"):
        with kernel(write=True) as k:
            prefix = conf["bastille_zfs_prefix"] or "bastille"
            k["zfs"]["datasets"][f"{conf['bastille_zfs_zpool']}/{prefix}/jails/{name}"] = p["base"]
    return start_one(conf, name)


# ------------------------------------------------------------------ start/stop

def start_one(conf, name):
    p = jail_paths(conf, name)
    props = read_jail_conf(p["conf"])
    if is_running(name):
        header(name)
        err("Jail is already running.")
        return 0
    header(name)
    vnet = props.get("vnet") is True
    with kernel(write=True) as k:
        ifaces = k["ifaces"]
        host_ep = jail_ep = bridge = None
        if vnet:
            jail_ep = props.get("vnet.interface")
            host_ep = "e0a" + jail_ep[3:]
            for cmd in props.get("exec.prestart", []):
                mm = re.match(r"^ifconfig (\S+) addm (\S+)$", cmd)
                if mm:
                    bridge = mm.group(1)
            if not bridge or bridge not in ifaces:
                # jail -c fails in exec.prestart; bastille start still exits 0
                err(f"ifconfig: interface {bridge} does not exist")
                err(f"jail: {name}: exec.prestart: ifconfig {bridge} addm {host_ep}: failed")
                return 0
            from .net import new_iface
            ifaces[host_ep] = new_iface(host_ep, "epair")
            ifaces[host_ep]["up"] = True
            ifaces[host_ep]["description"] = f"vnet0 host interface for Bastille jail {name}"
            ifaces[bridge]["members"].append(host_ep)
        jid = k["next_jid"]
        k["next_jid"] += 1
        k["jails"][name] = {"jid": jid, "running": True, "path": p["root"],
                            "hostname": props.get("host.hostname", name),
                            "vnet": vnet, "ip4": "" if vnet else props.get("ip4.addr", ""),
                            "osrelease": props.get("osrelease", ""), "host_epair": host_ep, "bridge": bridge}
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


def stop_one(conf, name):
    header(name)
    if not is_running(name):
        err("Jail is already stopped.")
        return 0
    p = jail_paths(conf, name)
    J.unmount_jail(p["root"])
    with kernel(write=True) as k:
        j = k["jails"].pop(name)
        ep, br = j.get("host_epair"), j.get("bridge")
        if ep:
            k["ifaces"].pop(ep, None)
            if br in k["ifaces"] and ep in k["ifaces"][br]["members"]:
                k["ifaces"][br]["members"].remove(ep)
    out(f"{name}: removed")
    return 0


def cmd_startstop(conf, verb, args):
    if len(args) != 1:
        not_implemented("bastille", [verb] + list(args))
    targets = resolve(conf, args[0])
    for name in targets:
        if verb in ("stop", "restart"):
            if verb == "restart" and not is_running(name):
                header(name)
                err("Jail is stopped.")
                continue
            stop_one(conf, name)
        if verb in ("start", "restart"):
            start_one(conf, name)
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

def _row(conf, name):
    p = jail_paths(conf, name)
    props = read_jail_conf(p["conf"])
    with kernel() as k:
        j = k["jails"].get(name)
    running = bool(j and j.get("running"))
    settings = {}
    for key in ("boot", "priority"):
        _ok, settings[key] = rcconf.sh_get([p["settings"]], key, defaults=False)
    if props.get("vnet") is True:
        _ok, ipline = rcconf.sh_get([p["rc"]], "ifconfig_vnet0", defaults=False)
        ipm = re.search(r"inet ([0-9.]+)", ipline)
        ip = ipm.group(1) if ipm else "-"
    else:
        ip = str(props.get("ip4.addr", "-")).split("/", maxsplit=1)[0]
    thin = os.path.getsize(p["fstab"]) > 0 if os.path.isfile(p["fstab"]) else False
    return {"JID": str(j["jid"]) if running else "-", "Name": name, "Boot": settings["boot"] or "on",
            "Prio": settings["priority"] or "99", "State": "Up" if running else "Down",
            "Type": "thin" if thin else "thick", "IP Address": ip, "Published Ports": "-",
            "Release": props.get("osrelease", "-"), "Tags": "-"}


def cmd_list(conf, args):
    as_json = False
    rest = []
    for a in args:
        if a in ("-j", "--json"):
            as_json = True
        elif a.startswith("-"):
            error_exit(f'[ERROR]: Unknown Option: "{a}"')
        else:
            rest.append(a)
    if rest in (["jail"], ["jails"], ["container"], ["containers"]):
        if as_json:
            out(json.dumps(all_jails(conf)))
        else:
            for n in all_jails(conf):
                out(n)
        return 0
    other_lists = ("all", "ip", "path", "state", "type", "release", "template", "log", "limit", "import",
                   "export", "backup", "priority")
    if len(rest) > 1 or (rest and rest[0] in other_lists):
        not_implemented("bastille", ["list"] + list(args))
    names = all_jails(conf) if not rest else resolve(conf, rest[0], single=True)
    rows = [_row(conf, n) for n in names]
    if as_json:
        out(json.dumps(rows, indent=2))
        return 0
    # after bastille 1.4.4 usr/local/share/bastille/list.sh list_bastille(): computed widths, SPACER=2
    w_jid, w_name = 3, max([10] + [len(n) for n in names])
    w_ip = max([10] + [len(r["IP Address"]) for r in rows])
    w_ports, w_rel, w_type = 15, max([7] + [len(r["Release"]) for r in rows]), 5
    cols = [("JID", w_jid), ("Name", w_name), ("Boot", 4), ("Prio", 4), ("State", 5), ("Type", w_type),
            ("IP Address", w_ip), ("Published Ports", w_ports), ("Release", w_rel), ("Tags", 0)]
    out(" " + "".join(c.ljust(w + 2) if w else c for c, w in cols))
    for r in rows:
        out(" " + "".join(r[c].ljust(w + 2) if w else r[c] for c, w in cols))
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


def cmd_config(conf, args):
    if len(args) < 3 or args[1] not in ("set", "get", "remove", "add"):
        not_implemented("bastille", ["config"] + list(args))
    name = resolve(conf, args[0], single=True)[0]
    action, prop = args[1], args[2]
    value = " ".join(args[3:])
    p = jail_paths(conf, name)
    if prop in ("boot", "priority", "depend"):
        if action in ("set", "add"):
            rcconf.set_value([p["settings"]], prop, value)
        elif action == "get":
            out(rcconf.sh_get([p["settings"]], prop, defaults=False)[1])
        else:
            error_exit(f"[ERROR]: Cannot remove the '{prop}' property.")
        return 0
    if not re.match(r"^[A-Za-z0-9_.]+$", prop):
        error_exit(f"[ERROR]: Unsupported property: {prop}")
    with open(p["conf"], encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    rx = re.compile(rf"^\s+{re.escape(prop)}(\s*=.*)?;\s*$")
    idx = [i for i, line in enumerate(lines) if rx.match(line)]
    if action == "get":
        if not idx:
            out("not set")
            return 0
        m = re.match(r"^\s+\S+\s*=\s*(.*);\s*$", lines[idx[-1]])
        out(m.group(1) if m else "true")
        return 0
    if action == "remove":
        if not idx:
            error_exit(f"[ERROR]: Value not present in jail.conf: {prop}")
        for i in reversed(idx):
            del lines[i]
        header(name)
        err(f"Property removed: {prop}")
    else:
        if not re.match(r"^[A-Za-z0-9._/:| $!&%=(){}-]*$", value):
            error_exit(f"[ERROR]: Invalid value: {value}")
        newline = f"  {prop} = {value};" if value else f"  {prop};"
        if idx:
            lines[idx[-1]] = newline
        else:
            close = max(i for i, line in enumerate(lines) if line.strip() == "}")
            lines.insert(close, newline)
        header(name)
        out("{}: {}".format(prop, value or "true"))
    atomic_write(p["conf"], "\n".join(lines) + "\n")
    return 0


def main(args):
    if not args:
        not_implemented("bastille", args)
    verb, rest = args[0], args[1:]
    if os.geteuid() != 0:
        err("Bastille: Permission Denied")
        error_exit("root / sudo / doas required")
    if verb in ("-v", "--version", "version"):
        out("1.4.4")
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

"""Parts of `standin state` about rc.conf, processes, routes, jails' services.

standin_host.state() calls add() once at its end; add() fills or refines:

  rc_conf        every variable of /etc/rc.conf, /etc/rc.conf.local and
                 /etc/rc.conf.d/* merged in the order rc.subr's load_rc_config
                 reads them (a later file wins); rc_conf_files: the same per file
  interfaces     each interface also gets kind, cloned and description
  routes         the routing table as netstat -rn shows it: one entry per
                 connected network, local address, loopback, default and
                 static route (destination, gateway, flags, interface)
  processes      pid, ppid, user (name from the stand-in's or the jail's
                 passwd), uid, jail (name or null), cmdline
  jails.NAME     services: every rc.d script inside a running jail (enabled,
                 running, pids); postgresql: roles and databases when a
                 PostgreSQL server runs in the jail (psql through jexec as the
                 postgres user), null otherwise
"""

import ipaddress
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
RC_CONF_D = ("/etc/rc.conf.d", "/usr/local/etc/rc.conf.d")


def _rc_conf(H, root):
    """Merged rc.conf variables and the per-file view (rc.subr load_rc_config)."""
    files = [f for f in H.rcconf.default_conf_files(root) if os.path.isfile(os.path.join(root, f.lstrip("/")))]
    for d in RC_CONF_D:
        full = os.path.join(root, d.lstrip("/"))
        if os.path.isdir(full):
            for entry in sorted(os.listdir(full)):
                path = os.path.join(full, entry)
                if os.path.isfile(path):
                    files.append(f"{d}/{entry}")
                elif os.path.isdir(path):
                    files += [f"{d}/{entry}/{x}" for x in sorted(os.listdir(path))
                              if os.path.isfile(os.path.join(path, x))]
    merged, per_file = {}, {}
    for f in files:
        values = H.rcconf.read_all(os.path.join(root, f.lstrip("/")))
        per_file[f] = values
        merged.update(values)
    return merged, per_file


def _routes(k):
    """The simulated routing table in netstat -rn's terms."""
    table = []
    routes = k.get("routes", {})
    if routes.get("default"):
        table.append({"destination": "default", "gateway": routes["default"], "flags": "UGS",
                      "interface": routes.get("default_if")})
    for index, (name, i) in enumerate(sorted(k["ifaces"].items()), start=1):
        for a in i.get("inet", []):
            iface = ipaddress.ip_interface(a)
            if name == "lo0" or i.get("kind") == "loopback":
                table.append({"destination": str(iface.ip), "gateway": f"link#{index}", "flags": "UH",
                              "interface": name})
                continue
            if iface.network.prefixlen < 32:
                table.append({"destination": str(iface.network), "gateway": f"link#{index}", "flags": "U",
                              "interface": name})
            table.append({"destination": str(iface.ip), "gateway": f"link#{index}", "flags": "UHS",
                          "interface": "lo0"})
    for dest, r in sorted(routes.get("static", {}).items()):
        table.append({"destination": dest, "gateway": r.get("gateway") or r.get("iface"),
                      "flags": "UGS" if r.get("gateway") else "US", "interface": r.get("iface")})
    return table


def _passwd(path):
    users = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                f = line.rstrip("\n").split(":")
                if len(f) >= 3 and f[2].isdigit():
                    users.setdefault(int(f[2]), f[0])
    except OSError:
        pass
    return users


def _processes(H, p, k):
    root = os.path.realpath(p["root"])
    jail_roots = {}
    for name, j in k.get("jails", {}).items():
        if j.get("running") and j.get("path"):
            jail_roots[os.path.realpath(os.path.join(root, j["path"].lstrip("/")))] = name
    host_users = _passwd(os.path.join(root, "etc/passwd"))
    procs = []
    for pid in H.processes_under(p["base"]):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = [x.decode(errors="replace") for x in fh.read().split(b"\0") if x]
            with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            proc_root = os.readlink(f"/proc/{pid}/root")
        except OSError:
            continue
        ppid = int(status.get("PPid", "0").strip())
        uid = int(status.get("Uid", "0").split()[0])
        jail = jail_roots.get(proc_root)
        if jail is None:
            # a process below a jail's root (chrooted deeper) still counts as the jail's
            jail = next((n for jr, n in jail_roots.items() if proc_root.startswith(jr + "/")), None)
        users = _passwd(os.path.join(proc_root, "etc/passwd")) if jail else host_users
        procs.append({"pid": pid, "ppid": ppid, "uid": uid, "user": users.get(uid, str(uid)), "jail": jail,
                      "cmdline": cmdline})
    return procs


# One shell inside the host or the jail asks service(8) about every rc.d script:
# a chroot (and jexec) per script and question made `state` take seconds per jail.
_SERVICE_TABLE = r"""
for d in /etc/rc.d /usr/local/etc/rc.d; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    [ -f "$f" ] || continue
    n=${f##*/}
    /usr/sbin/service "$n" enabled >/dev/null 2>&1; e=$?
    s=$(/usr/sbin/service "$n" onestatus 2>&1 | tr '\n' ' ')
    printf '%s\t%s\t%s\t%s\n' "$d" "$n" "$e" "$s"
  done
done
"""


def service_table(H, name, jail=None):
    """Every rc.d script of the host (or of a running jail): {name: {script, enabled, running, pids}}."""
    argv = ["/bin/sh", "-c", _SERVICE_TABLE]
    rc, out = H._chroot_out(name, ["/usr/sbin/jexec", jail, *argv] if jail else argv)
    services = {}
    if rc != 0:
        return services
    for line in out.splitlines():
        directory, script, enabled, status = (line.split("\t", 3) + ["", "", "", ""])[:4]
        # rc.subr's "NAME is running as pid N [N...]." (a script's own status may add words after it);
        # pg_ctl's "server is running (PID: N)" for PostgreSQL
        m = (re.search(r"is running as pid ([0-9]+(?: [0-9]+)*)", status)
             or re.search(r"is running \(PID: ([0-9]+)\)", status))
        services[script] = {"script": f"{directory}/{script}", "enabled": enabled == "0", "running": bool(m),
                            "pids": [int(x) for x in m.group(1).split()] if m else []}
    return dict(sorted(services.items()))


def _jail_services(H, name, jail):
    """Every rc.d script of a running jail: enabled, running, pids (via jexec)."""
    return service_table(H, name, jail)


def _postgresql(H, name, jail, procs):
    """Roles and databases of a PostgreSQL server running in the jail, or None."""
    if not any(pr["jail"] == jail and pr["cmdline"] and "postgres" in os.path.basename(pr["cmdline"][0])
               for pr in procs):
        return None
    result = {}
    for key, query in (("roles", "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1"),
                       ("databases", "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")):
        rc, out = H._chroot_out(name, ["/usr/sbin/jexec", "-U", "postgres", jail, "/usr/local/bin/psql",
                                       "-X", "-A", "-t", "-d", "postgres", "-c", query])
        if rc != 0:
            return {"error": f"psql exited {rc}"}
        result[key] = [x for x in out.splitlines() if x]
    return result


def add(H, name, result, k):
    """Fill the keys above into ``result`` (standin_host.state's dict)."""
    p = H.paths(name)
    root = p["root"]
    result["rc_conf"], result["rc_conf_files"] = _rc_conf(H, root)
    for n, entry in result.get("interfaces", {}).items():
        i = k["ifaces"].get(n, {})
        entry["kind"] = i.get("kind")
        entry["cloned"] = bool(i.get("cloned", i.get("kind") in ("bridge", "epair", "pflog", "tap")))
        entry["description"] = i.get("description", "")
    result["routes"] = _routes(k)
    result["processes"] = _processes(H, p, k)
    for jail, entry in result.get("jails", {}).items():
        running = bool(k.get("jails", {}).get(jail, {}).get("running"))
        entry["services"] = _jail_services(H, name, jail) if running else {}
        entry["postgresql"] = _postgresql(H, name, jail, result["processes"]) if running else None
    return result

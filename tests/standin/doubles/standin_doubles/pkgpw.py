"""pkg(8), pw(8) and chpass(1) doubles.

pkg (after FreeBSD pkg 2.x, pkg(8), pkg-install(8), pkg-info(8), pkg-query(8)):
  pkg [-j jail|--jail=J|-c dir|--chroot=D] ACTION ...
  pkg -v                                  version
  pkg bootstrap [-f] [-y]                 honours ASSUME_ALWAYS_YES
  pkg update [-f]
  pkg install [-y] [-U] [-g] [-f] NAME...  "[1/1] Installing NAME-VER..."
  pkg delete|remove [-y] [-f] NAME...
  pkg info [-e] [-g] [NAME...]            -e: exit status only
  pkg query [-a] FORMAT [NAME...]         %n %v %o %c
  pkg upgrade -n [NAME...]                nothing to upgrade (exit 0)
  unknown package: "pkg: No packages available to install matching 'X' have
  been found in the repositories", exit 1
Packages come from a small catalogue; installing one records it in
/var/db/pkg/local.json (the stand-in's package database) and creates its
files (e.g. /usr/local/bin/bastille).

pw (after FreeBSD usr.sbin/pw/pw_user.c, pw_group.c, pw(8)):
  pw useradd [NAME] [-n NAME] [-u UID] [-o] [-g GROUP] [-G G1,G2] [-c COMMENT]
             [-d HOME] [-m] [-k SKEL] [-s SHELL] [-L CLASS] [-e N] [-w no] [-q]
  pw usermod NAME [same flags]; pw userdel [-n] NAME [-r]; pw usershow NAME
  pw groupadd NAME [-g GID] [-o] [-M m1,m2]; pw groupmod NAME [-g GID] [-m m] [-M m1,m2]
  pw groupdel NAME; pw groupshow NAME; pw lock NAME; pw unlock NAME
  errors: "pw: user 'X' already exists" (65), "pw: no such user `X'" (67),
          "pw: group name 'X' already exists" (65), "pw: unknown group `X'" (67)
chpass: chpass -p HASH NAME
"""

import json
import os
import shutil

from . import postgresql as pg
from .common import atomic_write, err, getopt_strict, kernel, not_implemented, out

DB = "/var/db/pkg/local.json"
PKG_VERSION = "2.1.2"
DOUBLE_DIR = "/usr/libexec/standin"
# FreeBSD's lang/python311 site directory (PYTHON_SITELIBDIR)
PY311_SITE = "/usr/local/lib/python3.11/site-packages"
# name -> (version, comment, files: path -> ("double", cmd) | ("link", target) | ("text", body))
CATALOGUE = {
    # pkg bootstrap installs the real pkg (pkg(7): /usr/sbin/pkg only bootstraps it)
    "pkg": (PKG_VERSION, "Package manager", {"/usr/local/sbin/pkg": ("double", "pkg"),
                                             "/usr/local/sbin/pkg-static": ("double", "pkg")}),
    "python311": ("3.11.13", "Interpreted object-oriented programming language",
                  {"/usr/local/bin/python3.11": ("link", "/usr/bin/python3.11")}),
    "bastille": ("1.4.4", "Bastille is an open-source system for automating jail management", {
        "/usr/local/bin/bastille": ("double", "bastille"),
        "/usr/local/etc/bastille/bastille.conf.sample": ("bastille_conf", ""),
        # the package's rc.d script (BastilleBSD 1.4.4 usr/local/etc/rc.d/bastille)
        "/usr/local/etc/rc.d/bastille": ("link", DOUBLE_DIR + "/standin_doubles/pkgfiles/bastille.rc"),
    }),
    "git": ("2.50.1", "Distributed source code management tool",
            {"/usr/local/bin/git": ("link", "/usr/bin/git")}),
    "tmux": ("3.5a", "Terminal Multiplexer", {"/usr/local/bin/tmux": ("link", "/usr/bin/tmux")}),
    "zstd": ("1.5.7", "Fast real-time compression algorithm",
             {"/usr/local/bin/zstd": ("link", "/usr/bin/zstd")}),
    "rsync": ("3.4.1", "Network file distribution/synchronization utility",
              {"/usr/local/bin/rsync": ("link", "/usr/bin/rsync")}),
    "sudo": ("1.9.17p1", "Allow others to run commands as root", {}),
    "doas": ("6.3p12", "Simple sudo alternative to run commands as another user", {}),
    "ca_root_nss": ("3.114", "Root certificate bundle from the Mozilla Project", {}),
    "dnsmasq": ("2.91", "Lightweight DNS forwarder, DHCP, and TFTP server", {}),
    "curl": ("8.14.1", "Command line tool and library for transferring data with URLs", {}),
    "jq": ("1.7.1", "Lightweight and flexible command-line JSON processor", {}),
    "node22": ("22.17.0", "V8 JavaScript for client and server", {}),
    "npm-node22": ("11.4.2", "Node package manager", {}),
    # the servers are services.py's doubles; the rc.d scripts are the ports' files/*.in (pkgfiles/)
    "ollama": ("0.9.6", "Run Llama 2, Mistral, and other large language models", {
        "/usr/local/bin/ollama": ("double", "ollama"),
        "/usr/local/etc/rc.d/ollama": ("link", DOUBLE_DIR + "/standin_doubles/pkgfiles/ollama.rc"),
    }),
    "llama-cpp": ("5882", "Facebook's LLaMA model in C/C++", {
        "/usr/local/bin/llama-server": ("double", "llama-server"),
        "/usr/local/etc/rc.d/llama-server": ("link", DOUBLE_DIR + "/standin_doubles/pkgfiles/llama-server.rc"),
    }),
    "nginx": ("1.28.0_1,3", "Robust and small WWW server", {
        "/usr/local/sbin/nginx": ("double", "nginx"),
        "/usr/local/etc/rc.d/nginx": ("link", DOUBLE_DIR + "/standin_doubles/pkgfiles/nginx.rc"),
        "/usr/local/etc/nginx/nginx.conf": ("link", DOUBLE_DIR + "/standin_doubles/pkgfiles/nginx.conf"),
        "/usr/local/www/nginx/index.html": ("link", DOUBLE_DIR + "/standin_doubles/pkgfiles/nginx-index.html"),
    }),
    # FreeBSD's py311-psycopg2 installs into python311's site-packages (ports databases/py-psycopg2
    # pkg-plist: %%PYTHON_SITELIBDIR%%/psycopg2/); the stand-in copies the machine's build of the same
    # package (Debian python3-psycopg2), which the stand-in's /usr/lib/python3/dist-packages hides;
    # `standin up` keeps a copy in layout.PKG_SOURCES.
    "py311-psycopg2": ("2.9.10", "High performance Python adapter for PostgreSQL", {
        PY311_SITE + "/psycopg2": ("pytree", "psycopg2"),
    }),
    "py311-psycopg": ("3.2.9", "PostgreSQL database adapter for Python", {}),
    # FreeBSD's pgvector installs lib/postgresql/vector.so and share/postgresql/extension/vector*; the
    # stand-in has no build of it: `standin up` puts a labelled placeholder of the extension where the
    # machine's server looks (postgresql.placeholder_extension), as contrib's extensions are there too.
    "pgvector": ("0.8.0", "Open-source vector similarity search for Postgres", {}),
}
# name -> packages installed with it (automatic), after the ports' RUN_DEPENDS
DEPENDS = {}
# name -> users (and their groups) the package creates, after ports/UIDs and ports/GIDs
USERS = {}
for _v in ("15", "16", "17", "18"):
    # FreeBSD's layout as wrappers of the machine's PostgreSQL (standin_doubles/postgresql.py)
    CATALOGUE[f"postgresql{_v}-server"] = (f"{_v}.5", "PostgreSQL is the most advanced open-source database",
                                           pg.files(_v, "server"))
    CATALOGUE[f"postgresql{_v}-client"] = (f"{_v}.5", "PostgreSQL database (client)", pg.files(_v, "client"))
    CATALOGUE[f"postgresql{_v}-contrib"] = (f"{_v}.5", "The contrib utilities from the PostgreSQL distribution", {})
    DEPENDS[f"postgresql{_v}-server"] = [f"postgresql{_v}-client"]
    USERS[f"postgresql{_v}-server"] = [pg.USER]


def _root_for(opts_root, jail):
    if jail:
        from .jails import find_running
        with kernel() as k:
            name, j = find_running(k, jail)
        if not name:
            err(f"pkg: jail '{jail}' not found")
            raise SystemExit(1)
        return j["path"]
    return opts_root or "/"


def _p(root, path):
    return os.path.join(root, path.lstrip("/"))


def load_db(root="/"):
    try:
        with open(_p(root, DB), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def save_db(db, root="/"):
    atomic_write(_p(root, DB), json.dumps(db, indent=1, sort_keys=True) + "\n")


def install_files(name, root="/"):
    from .layout import bastille_conf_sample, double_script
    for path, (kind, arg) in CATALOGUE[name][2].items():
        dst = _p(root, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            continue
        if kind == "link":
            from .layout import machine_link_target
            os.symlink(machine_link_target(arg), dst)
        elif kind == "double":
            atomic_write(dst, double_script(arg), 0o555)
        elif kind == "pgwrap":
            atomic_write(dst, pg.wrapper(arg), 0o555)
        elif kind == "pgrc":
            atomic_write(dst, pg.rc_script(arg), 0o555)
        elif kind == "pytree":
            _copy_machine_tree(name, arg, dst)
        elif kind == "bastille_conf":
            atomic_write(dst, bastille_conf_sample(), 0o644)
            conf = dst[: -len(".sample")]
            if not os.path.exists(conf):
                shutil.copyfile(dst, conf)


def _copy_machine_tree(name, source, dst):
    """Copy the machine's Python package SOURCE (kept in layout.PKG_SOURCES by `standin up`) to dst,
    through a temporary sibling renamed into place; without it the install fails loudly."""
    from .layout import PKG_SOURCES
    src = os.path.join(PKG_SOURCES, source)
    if not os.path.isdir(src):
        err(f"stand-in: {name} copies the machine's Python package {source}, which this machine lacks "
            "(Debian: apt-get install python3-psycopg2, then a new stand-in)")
        raise SystemExit(1)
    tmp = f"{dst}.pkgtmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.rename(tmp, dst)


def add_users(name, root="/"):
    """Create the package's users and groups in root's passwd files (pkg's
    users/groups scripts run pw(8); existing entries are kept) and their homes."""
    for u in USERS.get(name, []):
        groups = _read(_p(root, "/etc/group"))
        if not any(g[0] == u["name"] for g in groups):
            groups.append([u["name"], "*", str(u["gid"]), ""])
            _write(_p(root, "/etc/group"), groups)
        master = _read(_p(root, "/etc/master.passwd"))
        if not any(r[0] == u["name"] for r in master):
            master.append([u["name"], "*", str(u["uid"]), str(u["gid"]), "", "0", "0", u["gecos"], u["home"],
                           u["shell"]])
            _write(_p(root, "/etc/master.passwd"), master, 0o600)
            _write(_p(root, "/etc/passwd"), [[r[0], "*", r[2], r[3], r[7], r[8], r[9]] for r in master])
        home = _p(root, u["home"])
        if not os.path.isdir(home):
            os.makedirs(home, 0o755)
            os.chown(home, u["uid"], u["gid"])


def remove_files(name, root="/"):
    for path in CATALOGUE.get(name, ("", "", {}))[2]:
        dst = _p(root, path)
        if os.path.isdir(dst) and not os.path.islink(dst):
            shutil.rmtree(dst)
        elif os.path.lexists(dst):
            os.unlink(dst)


def pkg_main(args):
    argv = [a for a in args if a != ""]
    root_opt, jail = None, None
    while argv and argv[0].startswith("-"):
        a = argv.pop(0)
        if a == "-v" and not argv:
            out(PKG_VERSION)
            return 0
        if a == "-j" and argv:
            jail = argv.pop(0)
        elif a.startswith("--jail="):
            jail = a.split("=", 1)[1]
        elif a == "-c" and argv:
            root_opt = argv.pop(0)
        elif a.startswith("--chroot="):
            root_opt = a.split("=", 1)[1]
        elif a == "-N" and not argv:
            db = load_db()
            if "pkg" not in db:
                err("pkg: pkg is not installed")
                return 1
            out(f"pkg: {len(db)} packages installed")
            return 0
        else:
            not_implemented("pkg", args)
    if not argv:
        not_implemented("pkg", args)
    root = _root_for(root_opt, jail)
    action, rest = argv[0], argv[1:]
    yes_env = os.environ.get("ASSUME_ALWAYS_YES", "").lower() in ("yes", "true", "1", "on")
    db = load_db(root)
    # /usr/sbin/pkg (usr.sbin/pkg/pkg.c) asks to bootstrap when the HOST has no pkg; with -j/-c the host's
    # pkg attaches to the jail or chroots (pkg main.c), so a jail needs no pkg of its own
    if action != "bootstrap" and "pkg" not in (load_db() if jail or root_opt else db):
        out("The package management tool is not yet installed on your system.")
        out("Do you want to fetch and install it now? [y/N]: ")
        return 1
    if action == "bootstrap":
        opts, extra = getopt_strict("pkg", rest, "fy")
        if extra:
            not_implemented("pkg", args)
        o = dict(opts)
        if "pkg" in db and "-f" not in o:
            out("pkg(8) already installed, use -f to force.")
            return 0
        if not (yes_env or "-y" in o):
            out("The package management tool is not yet installed on your system.")
            out("Do you want to fetch and install it now? [y/N]: ")
            return 1
        out("Bootstrapping pkg from pkg+https://pkg.FreeBSD.org/FreeBSD:14:amd64/quarterly, please wait...")
        out(f"Installing pkg-{PKG_VERSION}...")
        out(f"Extracting pkg-{PKG_VERSION}: 100%")
        db["pkg"] = {"version": PKG_VERSION, "origin": "ports-mgmt/pkg", "automatic": False}
        install_files("pkg", root)
        save_db(db, root)
        return 0
    if action == "update":
        opts, extra = getopt_strict("pkg", rest, "fq")
        if extra:
            not_implemented("pkg", args)
        out("Updating FreeBSD repository catalogue...")
        out("FreeBSD repository is up to date.")
        out("All repositories are up to date.")
        return 0
    if action == "install":
        opts, names = getopt_strict("pkg", rest, "yUgfqA")
        o = dict(opts)
        if not names:
            not_implemented("pkg", args)
        missing = [n for n in names if n not in CATALOGUE]
        if missing:
            err(f"pkg: No packages available to install matching '{missing[0]}' have been found in the repositories")
            return 1
        deps = [d for n in names for d in DEPENDS.get(n, []) if d not in names and d not in db]
        todo = [n for n in deps if n not in db] + [n for n in names if n not in db or "-f" in o]
        if any(n.startswith("postgresql") for n in todo) and not pg.check_available():
            return 1
        if "-U" not in o:
            out("Updating FreeBSD repository catalogue...")
            out("FreeBSD repository is up to date.")
            out("All repositories are up to date.")
        if not todo:
            out("Checking integrity... done (0 conflicting)")
            out("The most recent versions of packages are already installed")
            return 0
        if not (yes_env or "-y" in o or os.environ.get("BATCH")):
            out("Proceed with this action? [y/N]: ")
            return 1
        out(f"The following {len(todo)} package(s) will be affected (of 0 checked):")
        out("")
        out("New packages to be INSTALLED:")
        for n in todo:
            out(f"\t{n}: {CATALOGUE[n][0]} [FreeBSD]")
        out("")
        out(f"Number of packages to be installed: {len(todo)}")
        for idx, n in enumerate(todo, start=1):
            ver = CATALOGUE[n][0]
            out(f"[{idx}/{len(todo)}] Installing {n}-{ver}...")
            out(f"[{idx}/{len(todo)}] Extracting {n}-{ver}: 100%")
            add_users(n, root)
            install_files(n, root)
            db[n] = {"version": ver, "origin": "", "automatic": "-A" in o or n in deps}
        save_db(db, root)
        return 0
    if action in ("delete", "remove"):
        opts, names = getopt_strict("pkg", rest, "yfq")
        if not names:
            not_implemented("pkg", args)
        gone = [n for n in names if n in db]
        if not gone:
            out(f"No packages matched for pattern '{names[0]}'")
            out("")
            out("Checking integrity... done (0 conflicting)")
            return 1
        for n in gone:
            out("Deinstalling {}-{}...".format(n, db[n]["version"]))
            remove_files(n, root)
            del db[n]
        save_db(db, root)
        return 0
    if action == "info":
        opts, names = getopt_strict("pkg", rest, "egqa")
        o = dict(opts)
        if "-e" in o:
            if not names:
                not_implemented("pkg", args)
            return 0 if all(n in db for n in names) else 1
        if not names:
            for n in sorted(db):
                label = "{}-{}".format(n, db[n]["version"])
                out(f"{label:<32} {CATALOGUE.get(n, ('', '', {}))[1]}")
            return 0
        status = 0
        for n in names:
            if n not in db:
                err(f"pkg: No package(s) matching {n}")
                status = 70
                continue
            out("{}-{}".format(n, db[n]["version"]))
        return status
    if action == "query":
        opts, rest2 = getopt_strict("pkg", rest, "a")
        if not rest2:
            not_implemented("pkg", args)
        fmt, names = rest2[0], rest2[1:]
        if "-a" in dict(opts):
            names = sorted(db)
        elif not names:
            not_implemented("pkg", args)
        status = 0
        for n in names:
            if n not in db:
                status = 1
                continue
            text = (fmt.replace("%n", n).replace("%v", db[n]["version"])
                    .replace("%o", db[n].get("origin", "")).replace("%c", CATALOGUE.get(n, ("", "", {}))[1])
                    .replace("%a", "1" if db[n].get("automatic") else "0"))
            out(text)
        return status
    if action == "upgrade":
        opts, _names = getopt_strict("pkg", rest, "ng")
        if "-n" not in dict(opts):
            not_implemented("pkg", args)
        out("Checking for upgrades (0 candidates): 100%")
        out("Your packages are up to date.")
        return 0
    not_implemented("pkg", args)
    return 64


# ---------------------------------------------------------------- pw(8)

def _read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip("\n").split(":") for line in fh if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []


def _write(path, rows, mode=0o644):
    atomic_write(path, "".join(":".join(r) + "\n" for r in rows), mode)


def _save_users(master):
    _write("/etc/master.passwd", master, 0o600)
    _write("/etc/passwd", [[r[0], "*", r[2], r[3], r[7], r[8], r[9]] for r in master])


def _group(groups, ident):
    for g in groups:
        if g[0] == ident or g[2] == ident:
            return g
    return None


def pw_main(args):
    if not args:
        not_implemented("pw", args)
    verb, rest = args[0], args[1:]
    name = None
    if rest and not rest[0].startswith("-"):
        name, rest = rest[0], rest[1:]
    if verb in ("useradd", "usermod"):
        opts, extra = getopt_strict("pw", rest, "n:u:og:G:c:d:mk:s:L:e:w:qK:")
    elif verb in ("userdel",):
        opts, extra = getopt_strict("pw", rest, "n:r")
    elif verb in ("usershow", "groupshow", "groupdel", "lock", "unlock"):
        opts, extra = getopt_strict("pw", rest, "n:q")
    elif verb in ("groupadd", "groupmod"):
        opts, extra = getopt_strict("pw", rest, "n:g:oM:m:qK:")
    else:
        not_implemented("pw", args)
    if extra:
        not_implemented("pw", args)
    o = {}
    for k, v in opts:
        o[k] = v
    name = o.get("-n", name)
    if not name:
        not_implemented("pw", args)
    master = _read("/etc/master.passwd")
    groups = _read("/etc/group")
    user = next((u for u in master if u[0] == name), None)
    if verb == "useradd":
        if user:
            err(f"pw: user '{name}' already exists")
            return 65
        uids = {int(u[2]) for u in master}
        uid = int(o["-u"]) if "-u" in o else max([999] + [u for u in uids if u < 60000]) + 1
        if uid in uids and "-o" not in o:
            err(f"pw: uid `{uid}' has already been allocated")
            return 65
        if "-g" in o:
            g = _group(groups, o["-g"])
            if not g:
                err("pw: group `{}' does not exist".format(o["-g"]))
                return 67
        else:
            g = _group(groups, name)
            if not g:
                gids = {int(x[2]) for x in groups}
                gid = uid if uid not in gids else max(x for x in gids if x < 60000) + 1
                g = [name, "*", str(gid), ""]
                groups.append(g)
        home = o.get("-d", f"/home/{name}")
        row = [name, "*", str(uid), g[2], o.get("-L", ""), "0", o.get("-e", "0"), o.get("-c", "User &"),
               home, o.get("-s", "/bin/sh")]
        master.append(row)
        for extra_g in filter(None, o.get("-G", "").split(",")):
            eg = _group(groups, extra_g)
            if not eg:
                err(f"pw: group `{extra_g}' does not exist")
                return 67
            members = [m for m in eg[3].split(",") if m]
            if name not in members:
                eg[3] = ",".join(members + [name])
        _write("/etc/group", groups)
        _save_users(master)
        if "-m" in o and not os.path.exists(home):
            os.makedirs(home, mode=0o755)
            os.chown(home, uid, int(g[2]))
        return 0
    if verb in ("usermod", "userdel", "usershow", "lock", "unlock") and not user:
        err(f"pw: no such user `{name}'")
        return 67
    if verb == "usershow":
        out(":".join(user))
        return 0
    if verb == "userdel":
        master.remove(user)
        for g in groups:
            g[3] = ",".join(m for m in g[3].split(",") if m and m != name)
        groups = [g for g in groups if not (g[0] == name and g[2] == user[3] and not g[3])]
        _write("/etc/group", groups)
        _save_users(master)
        if "-r" in o and user[8].startswith("/home/") and os.path.isdir(user[8]):
            shutil.rmtree(user[8])
        return 0
    if verb in ("lock", "unlock"):
        locked = user[1].startswith("*LOCKED*")
        if verb == "lock" and not locked:
            user[1] = "*LOCKED*" + user[1]
        elif verb == "unlock" and locked:
            user[1] = user[1][len("*LOCKED*"):]
        _save_users(master)
        return 0
    if verb == "usermod":
        if "-u" in o:
            user[2] = o["-u"]
        if "-g" in o:
            g = _group(groups, o["-g"])
            if not g:
                err("pw: group `{}' does not exist".format(o["-g"]))
                return 67
            user[3] = g[2]
        for flag, idx in (("-c", 7), ("-d", 8), ("-s", 9), ("-L", 4), ("-e", 6)):
            if flag in o:
                user[idx] = o[flag]
        if "-G" in o:
            wanted = set(filter(None, o["-G"].split(",")))
            for g in groups:
                members = [m for m in g[3].split(",") if m]
                if g[0] in wanted and name not in members:
                    members.append(name)
                elif g[0] not in wanted and name in members:
                    members.remove(name)
                g[3] = ",".join(members)
        _write("/etc/group", groups)
        _save_users(master)
        if "-m" in o and not os.path.exists(user[8]):
            os.makedirs(user[8], mode=0o755)
            os.chown(user[8], int(user[2]), int(user[3]))
        return 0
    group = _group(groups, name)
    if verb == "groupadd":
        if group:
            err(f"pw: group name '{name}' already exists")
            return 65
        gids = {int(x[2]) for x in groups}
        gid = int(o["-g"]) if "-g" in o else max([999] + [x for x in gids if x < 60000]) + 1
        if gid in gids and "-o" not in o:
            err(f"pw: gid `{gid}' has already been allocated")
            return 65
        groups.append([name, "*", str(gid), o.get("-M", "")])
        _write("/etc/group", groups)
        return 0
    if not group:
        err(f"pw: unknown group `{name}'")
        return 67
    if verb == "groupshow":
        out(":".join(group))
        return 0
    if verb == "groupdel":
        groups.remove(group)
        _write("/etc/group", groups)
        return 0
    if "-g" in o:
        group[2] = o["-g"]
    if "-M" in o:
        group[3] = o["-M"]
    if "-m" in o:
        members = [m for m in group[3].split(",") if m]
        for m in o["-m"].split(","):
            if m and m not in members:
                members.append(m)
        group[3] = ",".join(members)
    _write("/etc/group", groups)
    return 0


def chpass_main(args):
    if len(args) != 3 or args[0] != "-p":
        not_implemented("chpass", args)
    master = _read("/etc/master.passwd")
    for u in master:
        if u[0] == args[2]:
            u[1] = args[1]
            _save_users(master)
            return 0
    err(f"chpass: unknown user: {args[2]}")
    return 1

"""sysrc(8) double.

Forms (after FreeBSD usr.sbin/sysrc/sysrc, 14.x):
  sysrc [-cdeinqv] [-f file ...] [-j jail | -R dir] [-s name] [-x] name[[+|-]=value] ...
Output fixtures (same source):
  set:      "name: old -> new"            (with -v: "FILE: name: old -> new")
  get:      "name: value" / -n "value" / -e 'name="value"'
  unknown:  stderr "sysrc: unknown variable 'name'", exit 1
  -c:       silent, exit 0 when nothing would change, 1 otherwise
Unsupported flags (-a -A -l -L -d -D -E -F -N -X) are not implemented.
"""

import os

from . import rcconf
from .common import Exit, err, getopt_strict, kernel, not_implemented, out

CMD = "sysrc"


def _jail_root(jail):
    with kernel() as k:
        for name, j in k["jails"].items():
            if j.get("running") and (name == jail or str(j.get("jid")) == jail):
                return j["path"]
    err(f'jexec: jail "{jail}" not found')
    raise Exit(1)


def main(args):
    if not args:
        err("Usage: sysrc [OPTIONS] {name[[+|-]=value] ... | -a | -A | -l | -L [name ...]}")
        err("Try `sysrc --help' for more information.")
        return 1
    opts, rest = getopt_strict(CMD, args, "cef:ij:nqR:s:vx")
    check = show_equals = ignore = quiet = verbose = delete = False
    show_name = True
    files = None
    root = ""
    service = None
    for flag, val in opts:
        if flag == "-c":
            check = True
        elif flag == "-e":
            show_equals = True
        elif flag == "-f":
            files = (files or []) + val.split()
        elif flag == "-i":
            ignore = True
        elif flag == "-j":
            root = _jail_root(val)
        elif flag == "-R":
            root = val
        elif flag == "-n":
            show_name = False
        elif flag == "-q":
            quiet, verbose = True, False
        elif flag == "-s":
            service = val
        elif flag == "-v":
            verbose, quiet = True, False
        elif flag == "-x":
            delete = True
    if not rest:
        not_implemented(CMD, args)
    if files is None:
        files = rcconf.default_conf_files(root)
        if service:
            for d in ("/etc", "/usr/local/etc"):
                f = f"{d}/rc.conf.d/{service}"
                if os.path.isfile(os.path.join(root or "/", f.lstrip("/"))):
                    files.append(f)
    if not show_name:
        show_equals = False
    sep = '="' if show_equals else ": "
    status = 0
    for arg in rest:
        name = arg.split("=", 1)[0]
        mode = "assign"
        if name.endswith("+"):
            mode, name = "append", name[:-1]
        elif name.endswith("-"):
            mode, name = "remove", name[:-1]
        if not rcconf.NAME_RE.match(name):
            err(f"sysrc: {name}: name contains characters not allowed in shell")
            return 1
        if "=" in arg:
            value = arg.split("=", 1)[1]
            if verbose and not check:
                f = rcconf.find(files, name, root)
                if f in ("", rcconf.RC_DEFAULTS):
                    f = files[0]
                print((f"{f}: "), end="")
            if delete:
                rcconf.delete(files, name, root)
                continue
            is_set, before = rcconf.sh_get(files, name, root)
            if mode == "assign":
                new = value
            else:
                delim = value[:1]
                if delim == "" or delim.isspace() or delim.isalnum() or delim in "./":
                    delim = " "
                    items = value.split()
                    have = before.split()
                else:
                    items = [x for x in value.split(delim) if x]
                    have = [x for x in before.split(delim) if x]
                if mode == "append":
                    new_items = list(have) + [a for a in items if a not in have]
                else:
                    new_items = [b for b in have if b not in items]
                new = delim.join(new_items)
            if check:
                if not is_set or new != before:
                    status = 1
                continue
            rcconf.set_value(files, name, new, root)
            _ok, after = rcconf.sh_get(files, name, root)
            if show_equals:
                out(f'{name}="{before}" # -> "{after}"')
            else:
                out("{}{} -> {}".format((name + sep) if show_name else "", before, after))
            continue
        is_set, value = rcconf.sh_get(files, name, root)
        if not is_set:
            if not (ignore or quiet):
                err(f"sysrc: unknown variable '{name}'")
            status = 1
            continue
        if check:
            continue
        if delete:
            rcconf.delete(files, name, root)
            continue
        prefix = ""
        if verbose:
            prefix = f"{rcconf.find(files, name, root)}: "
        if show_equals:
            out(f'{prefix}{name}="{value}"')
        else:
            out("{}{}{}".format(prefix, (name + sep) if show_name else "", value))
    return status

"""rc.conf(5) files as sysrc(8) sees them (stand-in implementation).

Behaviour modelled on FreeBSD's usr.sbin/sysrc/sysrc and sysrc.subr
(f_sysrc_get, f_sysrc_find, f_sysrc_set, f_sysrc_delete): values are read
by sourcing the files with sh(1) (so quoting and expansions behave as on
FreeBSD), /etc/defaults/rc.conf is always sourced first, a value is written
to the last file that already sets it (or the first file of rc_conf_files),
as ``name="value"``, replacing the last assignment in that file.
"""

import os
import re
import subprocess

from .common import atomic_write

RC_DEFAULTS = "/etc/defaults/rc.conf"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _prefix(root, path):
    if not root:
        return path
    return os.path.join(root, path.lstrip("/"))


def default_conf_files(root=""):
    """rc_conf_files as set by /etc/defaults/rc.conf (usually two files)."""
    ok, value = sh_get([], "rc_conf_files", root=root)
    files = value.split() if ok else ["/etc/rc.conf", "/etc/rc.conf.local"]
    return files


def sh_get(files, name, root="", defaults=True):
    """Return (is_set, value) of ``name`` after sourcing defaults + files."""
    if not NAME_RE.match(name):
        return False, ""
    script = ['set +e']
    srcs = []
    if defaults:
        srcs.append(_prefix(root, RC_DEFAULTS))
    srcs += [_prefix(root, f) for f in files]
    for i, _src in enumerate(srcs):
        script.append(f'[ -r "$F{i}" ] && . "$F{i}" >/dev/null 2>&1')
    script.append(f'if [ "${{{name}+set}}" ]; then printf "%s" "${name}"; exit 0; fi; exit 3')
    env = {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin"}
    for i, src in enumerate(srcs):
        env[f"F{i}"] = src
    proc = subprocess.run(["/bin/sh", "-c", "\n".join(script)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return True, proc.stdout
    return False, ""


def _assign_re(name):
    return re.compile(rf"^[ \t]*{re.escape(name)}=")


def find(files, name, root=""):
    """The last file setting ``name`` (f_sysrc_find); defaults last resort."""
    rx = _assign_re(name)
    for f in reversed(files):
        path = _prefix(root, f)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                if any(rx.match(line) for line in fh):
                    return f
        except OSError:
            continue
    path = _prefix(root, RC_DEFAULTS)
    try:
        with open(path, encoding="utf-8") as fh:
            if any(rx.match(line) for line in fh):
                return RC_DEFAULTS
    except OSError:
        pass
    return ""


def quote(value):
    out = []
    for ch in value:
        if ch in '"\\$`':
            out.append("\\")
        out.append(ch)
    return '"{}"'.format("".join(out))


def set_value(files, name, value, root=""):
    """Write ``name="value"`` as f_sysrc_set does. Returns the file written."""
    target = find(files, name, root)
    if not target or target == RC_DEFAULTS:
        target = files[0]
    path = _prefix(root, target)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines(True)
    except FileNotFoundError:
        lines = []
    rx = _assign_re(name)
    newline = f"{name}={quote(value)}\n"
    idx = [i for i, line in enumerate(lines) if rx.match(line)]
    if idx:
        lines[idx[-1]] = newline
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(newline)
    atomic_write(path, "".join(lines))
    return target


def delete(files, name, root=""):
    """Remove every assignment of ``name`` from ``files`` (f_sysrc_delete)."""
    rx = _assign_re(name)
    for f in files:
        path = _prefix(root, f)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fh:
                lines = fh.read().splitlines(True)
        except FileNotFoundError:
            continue
        kept = [line for line in lines if not rx.match(line)]
        if kept != lines:
            atomic_write(path, "".join(kept))


def read_all(path):
    """name -> value of every assignment in one file (sourced by sh)."""
    names = []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                m = re.match(r"^[ \t]*([A-Za-z_][A-Za-z0-9_]*)=", line)
                if m and m.group(1) not in names:
                    names.append(m.group(1))
    except FileNotFoundError:
        return {}
    result = {}
    for name in names:
        ok, value = sh_get([path], name, defaults=False)
        if ok:
            result[name] = value
    return result

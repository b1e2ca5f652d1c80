"""standin: the stand-in FreeBSD host for tests and the demo.

  standin up NAME [--ext-if IF] [--ext-addr A/N] [--gateway GW] [--release R] [--hostname H]
  standin run NAME -- ansible-playbook -i INVENTORY PLAYBOOK [ARGS...]
  standin exec NAME -- CMD [ARGS...]
  standin state NAME
  standin reboot NAME      rc.shutdown, every process ends, kernel state cleared, /etc/rc autoboot
  standin down NAME
  standin list

The stand-in is a Linux chroot with doubles of FreeBSD's commands, not FreeBSD.
See tests/standin/README.md.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_host as H  # noqa: E402


def _in_root(root, path, hops=40):
    """``path`` inside the stand-in as a machine path, symlinks resolved within ``root``."""
    parts, resolved = [p for p in path.split("/") if p], root
    while parts and hops > 0:
        part = parts.pop(0)
        if part == "..":
            if resolved != root:
                resolved = os.path.dirname(resolved)
            continue
        if part == ".":
            continue
        candidate = os.path.join(resolved, part)
        if os.path.islink(candidate):
            hops -= 1
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                resolved = root
            continue
        resolved = candidate
    return resolved


def _not_found(root, command):
    """The command name sh would report as not found inside the stand-in, or None."""
    if "/" in command:
        base = command if command.startswith("/") else "/root/" + command
        return None if os.path.exists(_in_root(root, base)) else command
    for directory in H.FREEBSD_PATH.split(":"):
        found = _in_root(root, f"{directory}/{command}")
        if os.path.isfile(found) and os.access(found, os.X_OK):
            return None
    return command


def main(argv):
    parser = argparse.ArgumentParser(prog="standin", description="The stand-in FreeBSD host (not FreeBSD).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("name")
    p_up.add_argument("--ext-if", default="vtnet0")
    p_up.add_argument("--ext-addr", default="192.0.2.10/24")
    p_up.add_argument("--gateway", default="192.0.2.1")
    p_up.add_argument("--release", default="14.3-RELEASE")
    p_up.add_argument("--hostname")
    for c in ("run", "exec"):
        s = sub.add_parser(c)
        s.add_argument("name")
        s.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("state").add_argument("name")
    sub.add_parser("reboot").add_argument("name")
    sub.add_parser("down").add_argument("name")
    sub.add_parser("list")
    a = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("standin: must run as root (chroot, mounts)\n")
        return 1
    try:
        if a.cmd == "up":
            if H.is_up(a.name):
                print(f"[stand-in] {a.name} is already up: root {H.paths(a.name)['root']}")
                return 0
            p = H.up(a.name, a.ext_if, a.ext_addr, a.gateway, a.release, a.hostname)
            print(f"[stand-in] {H.LABEL} {a.name} is up: root {p['root']}")
            return 0
        if a.cmd in ("run", "exec"):
            rest = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
            if not rest:
                parser.error(f"{a.cmd} needs a command after --")
            if a.cmd == "run":
                return H.run(a.name, rest)
            missing = _not_found(H.paths(a.name)["root"], rest[0])
            if missing:
                # FreeBSD sh(1) (bin/sh/exec.c): "sh: NAME: not found", status 127
                sys.stderr.write(f"sh: {missing}: not found\n")
                return 127
            try:
                return H.exec_in(a.name, rest).returncode
            except FileNotFoundError:
                sys.stderr.write(f"sh: {rest[0]}: not found\n")
                return 127
            except PermissionError:
                sys.stderr.write(f"sh: {rest[0]}: Permission denied\n")
                return 126
        if a.cmd == "state":
            print(json.dumps(H.state(a.name), indent=2, sort_keys=True))
            return 0
        if a.cmd == "reboot":
            import standin_boot
            rep = standin_boot.reboot(a.name)
            sys.stdout.write(rep["shutdown"]["output"] + rep["boot"]["output"])
            sys.stderr.write(rep["shutdown"]["errors"] + rep["boot"]["errors"])
            print(f"[stand-in] {a.name} rebooted ({H.LABEL}): {len(rep['killed'])} processes ended, "
                  f"{json.dumps(rep['cleared'])}")
            return 0 if rep["boot"]["rc"] == 0 else 1
        if a.cmd == "down":
            existed = os.path.exists(H.paths(a.name)["base"])
            rep = H.down(a.name)
            if not existed:
                print(f"[stand-in] {a.name} was not up; nothing to remove")
                return 0
            print(f"[stand-in] {a.name} removed (killed {len(rep['killed'])} processes); "
                  "no process, mount or file left")
            return 0
        if a.cmd == "list":
            base = H.base_dir()
            for n in sorted(os.listdir(base)) if os.path.isdir(base) else []:
                print(f"{n}\t{'up' if H.is_up(n) else 'broken'}")
            return 0
    except H.StandinError as exc:
        sys.stderr.write(f"standin: {exc}\n")
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""standin: the stand-in FreeBSD host for tests and the demo.

  standin up NAME [--ext-if IF] [--ext-addr A/N] [--gateway GW] [--release R] [--hostname H]
  standin run NAME -- ansible-playbook -i INVENTORY PLAYBOOK [ARGS...]
  standin exec NAME -- CMD [ARGS...]
  standin state NAME
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
            return H.exec_in(a.name, rest).returncode
        if a.cmd == "state":
            print(json.dumps(H.state(a.name), indent=2, sort_keys=True))
            return 0
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

# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""The host's agent bridge (warden0): read ifconfig(8) and rc.conf, work out the difference, apply it.

Everything here goes through a ``run(argv) -> (rc, out, err)`` callable (no shell), so the
module runs it with ``AnsibleModule.run_command`` and the unit tests with recorded outputs.
"""

from __future__ import annotations

import ipaddress
import re

IFCONFIG = "/sbin/ifconfig"
SYSRC = "/usr/sbin/sysrc"
SYSCTL = "/sbin/sysctl"

_FLAGS = re.compile(r"^(?P<name>\S+): flags=[0-9a-f]+<(?P<flags>[^>]*)>")
_INET = re.compile(r"^\s+inet (?P<ip>\d+\.\d+\.\d+\.\d+) netmask 0x(?P<mask>[0-9a-f]{8})")
_GROUPS = re.compile(r"^\s+groups: (?P<groups>.*)$")
_BRIDGE_UNIT = re.compile(r"^bridge(?P<unit>\d+)$")


class BridgeError(Exception):
    """A state the module must not change, or a command that failed; the message says which."""


def parse_ifconfig(text):
    """One interface of ``ifconfig IF`` (FreeBSD's format): flags, IPv4 addresses as A.B.C.D/N, groups."""
    info = {"name": None, "flags": [], "addresses": [], "groups": []}
    for line in text.splitlines():
        match = _FLAGS.match(line)
        if match:
            info["name"] = match.group("name")
            info["flags"] = [f for f in match.group("flags").split(",") if f]
            continue
        match = _INET.match(line)
        if match:
            prefix = bin(int(match.group("mask"), 16)).count("1")
            info["addresses"].append(f"{match.group('ip')}/{prefix}")
            continue
        match = _GROUPS.match(line)
        if match:
            info["groups"] = match.group("groups").split()
    return info


def parse_sysrc(text):
    """``sysrc -i NAME...`` output (``name: value`` per known variable) as a dict."""
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if not sep and line.endswith(":"):
            name, sep, value = line[:-1], ":", ""
        if sep and re.match(r"^\w+$", name):
            values[name] = value
    return values


def normalise(address):
    """``A.B.C.D/N`` as ipaddress.IPv4Interface; a bad address is a clear error."""
    try:
        return ipaddress.IPv4Interface(address)
    except ValueError as exc:
        raise BridgeError(f"{address!r} is not an IPv4 address with a prefix length (A.B.C.D/N): {exc}") from None


def ordered(addresses):
    """Addresses in a stable order: numerically, so rc.conf is rendered the same every run."""
    return [str(a) for a in sorted({normalise(a) for a in addresses}, key=lambda i: (int(i.ip), i.network.prefixlen))]


def aliases_value(entries):
    """``ifconfig_IF_aliases``: ``inet A/N inet B/N``."""
    return " ".join(f"inet {a}" for a in entries)


def parse_aliases(value):
    """The ``inet A/N`` entries of an ``ifconfig_IF_aliases`` value, and whatever else it holds (kept as is)."""
    words = value.split()
    inet, other = [], []
    i = 0
    while i < len(words):
        if words[i] == "inet" and i + 1 < len(words):
            inet.append(words[i + 1])
            i += 2
        else:
            other.append(words[i])
            i += 1
    return inet, other


class Bridge:
    """The bridge ``name`` on one host, driven through ``run``."""

    def __init__(self, run, name):
        self.run = run
        self.name = name

    def must(self, argv):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise BridgeError(f"{' '.join(argv)} failed (rc {rc}): {(err or out).strip()}")
        return out

    def interfaces(self):
        return self.must([IFCONFIG, "-l"]).split()

    def show(self):
        info = parse_ifconfig(self.must([IFCONFIG, self.name]))
        if info["name"] != self.name:
            raise BridgeError(f"ifconfig {self.name} printed no interface {self.name}")
        return info

    def rc_conf(self, names):
        # sysrc exits 1 when one of the names is unset; -i keeps that quiet and the known ones are printed
        rc, out, err = self.run([SYSRC, "-i"] + list(names))
        if rc not in (0, 1):
            raise BridgeError(f"sysrc -i {' '.join(names)} failed (rc {rc}): {(err or out).strip()}")
        return parse_sysrc(out)

    def sysctls(self, names):
        out = self.must([SYSCTL, "-n"] + list(names))
        values = out.splitlines()
        if len(values) != len(names):
            raise BridgeError(f"sysctl -n {' '.join(names)} printed {len(values)} values for {len(names)} names")
        return dict(zip(names, (v.strip() for v in values), strict=True))


def plan_rc_conf(name, current, runtime_names, desired, absent):
    """The rc.conf variables that bring ``name`` back at boot with the ``desired`` addresses.

    ``current`` holds the rc.conf values read so far (cloned_interfaces, ifconfig_NAME,
    ifconfig_NAME_aliases and ifconfig_bridgeN_name of every cloned bridge). The clone keeps the
    unit rc.conf already renames to ``name``; otherwise it is the lowest bridgeN that neither rc.conf
    clones nor the kernel has, so an operator's bridge0 is never renamed at boot. Aliases that are
    neither desired nor listed in ``absent`` stay (they may be the operator's, or an agent this run's
    inventory does not list); all are rendered in numerical order, so the value is the same every run.
    """
    cloned = [c.split(":")[0] for c in current.get("cloned_interfaces", "").split()]
    clone = next((c for c in cloned if _BRIDGE_UNIT.match(c) and current.get(f"ifconfig_{c}_name") == name), None)
    if clone is None:
        taken = set(cloned) | set(runtime_names)
        unit = 0
        while f"bridge{unit}" in taken:
            unit += 1
        clone = f"bridge{unit}"

    ifconfig = current.get(f"ifconfig_{name}", "").strip()
    if not ifconfig:
        ifconfig = "up"
    elif "up" not in ifconfig.split():
        ifconfig = f"{ifconfig} up"

    inet, other = parse_aliases(current.get(f"ifconfig_{name}_aliases", ""))
    mine = {normalise(a) for a in desired}
    gone = {normalise(a).ip for a in absent}
    kept = [a for a in inet if _keep(a, mine, gone)]
    other += [f"inet {a}" for a in kept if not _valid(a)]
    aliases = " ".join(other + [aliases_value(ordered([a for a in kept if _valid(a)] + desired))]).strip()

    return clone, {
        f"ifconfig_{clone}_name": name,
        f"ifconfig_{name}": ifconfig,
        f"ifconfig_{name}_aliases": aliases,
    }


def _keep(address, mine, gone):
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        return True
    return iface not in mine and iface.ip not in gone


def _valid(address):
    try:
        ipaddress.IPv4Interface(address)
    except ValueError:
        return False
    return True


def absent_ip(address):
    """An address of the absent list, with or without its prefix length, as an IPv4Address."""
    try:
        return ipaddress.IPv4Interface(address).ip
    except ValueError as exc:
        raise BridgeError(f"{address!r} is not an IPv4 address: {exc}") from None


def converge(run, name, addresses, absent, sysctls, check_mode):
    """Make the runtime bridge ``name`` carry ``addresses`` (and none of ``absent``), with ``sysctls`` set.

    Returns the module's result: changed, created, added, removed, addresses before and after,
    the sysctls set, the rc.conf plan (clone, rc_conf) and the diff.
    """
    bridge = Bridge(run, name)
    desired = ordered(addresses)
    desired_set = {normalise(a) for a in desired}
    gone = {absent_ip(a) for a in absent}
    clash = sorted(str(a) for a in desired_set if a.ip in gone)
    if clash:
        raise BridgeError(f"{', '.join(clash)} is both wanted on {name} and listed as absent")

    names = bridge.interfaces()
    exists = name in names
    before = {"flags": [], "addresses": [], "groups": []}
    if exists:
        before = bridge.show()
        if "bridge" not in before["groups"]:
            raise BridgeError(
                f"{name} exists and is not a bridge (groups: {' '.join(before['groups']) or 'none'}); "
                f"it is left as it is: rename or destroy it by hand, or choose another bridge name"
            )
        held = {normalise(a).ip: a for a in before["addresses"]}
        for want in desired_set:
            have = held.get(want.ip)
            if have is not None and normalise(have) != want:
                raise BridgeError(
                    f"{name} has {have}, not {want}: "
                    f"fix the prefix length by hand (ifconfig {name} inet {want.ip} -alias)"
                )

    have = {normalise(a) for a in before["addresses"]}
    add = [a for a in desired if normalise(a) not in have]
    remove = [a for a in before["addresses"] if normalise(a).ip in gone]
    bring_up = exists and "UP" not in before["flags"]

    current = bridge.rc_conf(["cloned_interfaces", f"ifconfig_{name}", f"ifconfig_{name}_aliases"])
    cloned_units = [c.split(":")[0] for c in current.get("cloned_interfaces", "").split()]
    bridges = [c for c in cloned_units if _BRIDGE_UNIT.match(c)]
    if bridges:
        current.update(bridge.rc_conf([f"ifconfig_{c}_name" for c in bridges]))
    clone, rc_conf = plan_rc_conf(name, current, names, desired, absent)

    rc_planned = dict(rc_conf)
    cloned = current.get("cloned_interfaces", "").split()
    if clone not in [c.split(":")[0] for c in cloned]:
        cloned.append(clone)
    rc_planned["cloned_interfaces"] = " ".join(cloned)

    sysctl_want = {k: str(v) for k, v in sorted(sysctls.items())}
    sysctl_have = bridge.sysctls(list(sysctl_want)) if sysctl_want else {}
    sysctl_set = {k: v for k, v in sysctl_want.items() if sysctl_have.get(k) != v}

    after_addresses = [a for a in before["addresses"] if a not in remove] + add
    changed = bool(not exists or bring_up or add or remove or sysctl_set)
    if changed and not check_mode:
        if not exists:
            bridge.must([IFCONFIG, "bridge", "create", "name", name, "up"])
        elif bring_up:
            bridge.must([IFCONFIG, name, "up"])
        for address in remove:
            bridge.must([IFCONFIG, name, "inet", address.split("/")[0], "-alias"])
        for address in add:
            bridge.must([IFCONFIG, name, "inet", address, "alias"])
        if sysctl_set:
            bridge.must([SYSCTL] + [f"{k}={v}" for k, v in sysctl_set.items()])
        _verify(bridge, desired_set, gone, sysctl_want)

    return {
        "changed": changed,
        "created": not exists,
        "added": add,
        "removed": remove,
        "addresses": after_addresses,
        "sysctls_set": sysctl_set,
        "clone": clone,
        "rc_conf": rc_conf,
        "diff": [
            {
                "before_header": f"ifconfig {name} (runtime)",
                "after_header": f"ifconfig {name} (runtime)",
                "before": _render(exists, before["addresses"], sysctl_have),
                "after": _render(True, after_addresses, {**sysctl_have, **sysctl_want}),
            },
            {
                "before_header": "/etc/rc.conf",
                "after_header": "/etc/rc.conf",
                "before": _render_rc({k: current.get(k) for k in rc_planned}),
                "after": _render_rc(rc_planned),
            },
        ],
    }


def _verify(bridge, desired, gone, sysctls):
    """The end state, read back: exit codes are not trusted."""
    info = bridge.show()
    have = {normalise(a) for a in info["addresses"]}
    missing = sorted(str(a) for a in desired - have)
    left = sorted(a for a in info["addresses"] if normalise(a).ip in gone)
    problems = []
    if "UP" not in info["flags"]:
        problems.append(f"{bridge.name} is not up")
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if left:
        problems.append(f"still has {', '.join(left)}")
    if sysctls:
        now = bridge.sysctls(list(sysctls))
        problems += [f"{k} is {now[k]}, not {v}" for k, v in sysctls.items() if now[k] != v]
    if problems:
        raise BridgeError(f"after the changes {bridge.name} is not as wanted: {'; '.join(problems)}")


def _render(exists, addresses, sysctls):
    lines = [f"inet {a}" for a in addresses] if exists else []
    lines += [f"sysctl {k}={v}" for k, v in sorted(sysctls.items())]
    return "".join(f"{line}\n" for line in lines)


def _render_rc(values):
    return "".join(f'{k}="{v}"\n' for k, v in sorted(values.items()) if v is not None)

# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)
"""The host's registry of the agents the collection manages.

Global artifacts (the gateways on the bridge, PF's warden_net) cover every
agent of the registry, not only the agents of the run's inventory: a run from
a stale checkout or another operator's inventory must not remove an agent it
does not list.  Only ``state: absent`` removes an agent: it stays in the
registry marked absent until a run has removed its resources, then is dropped.
The registry is only written under the host lock (warden.fleet.host_lock).
"""

from __future__ import annotations

import ipaddress
import json
import os

DEFAULT_PATH = "/var/db/warden/registry.json"
VERSION = 1


class RegistryError(Exception):
    """The registry cannot be read, or the inventory conflicts with it."""


def empty():
    return {"version": VERSION, "agents": {}}


def load(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return empty()
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: cannot read the agent registry ({exc}); nothing was changed") from exc
    if not isinstance(data, dict) or not isinstance(data.get("agents"), dict):
        raise RegistryError(f"{path}: not an agent registry (no 'agents' mapping); nothing was changed")
    if data.get("version") != VERSION:
        raise RegistryError(f"{path}: registry version {data.get('version')!r}, this collection reads {VERSION}")
    return data


def save(path, data):
    """Write the registry atomically, root-only (temp file, fsync, rename)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, dump(data).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def dump(data):
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


def update(registry, plan):
    """The registry after this run's inventory: its agents added or updated, absent ones marked absent.

    Agents the inventory does not list stay as they are. An inventory agent whose subnet a registered agent
    it does not list already uses is a conflict (RegistryError), named with the fix.
    """
    agents = {name: dict(entry) for name, entry in registry["agents"].items()}
    listed = plan.get("agents") or {}
    problems = []
    for name, agent in sorted(listed.items()):
        if agent.get("state") == "absent":
            continue
        net = ipaddress.ip_network(agent["cidr"])
        for other, entry in sorted(agents.items()):
            if other in listed or entry.get("state") == "absent":
                continue
            if net.overlaps(ipaddress.ip_network(entry["cidr"])):
                problems.append(
                    f"agent '{name}' wants subnet {agent['cidr']}, which agent '{other}' registered on "
                    f"{plan.get('host')} already uses, and this inventory does not list '{other}'. Fix: give "
                    f"'{name}' another subnet, or add '{other}' with state: absent to remove it first")
    if problems:
        raise RegistryError("the inventory conflicts with the host's agent registry, nothing was changed:\n"
                            + "\n".join(f"- {p}" for p in problems))
    for name, agent in listed.items():
        if agent.get("state") == "absent" and name not in agents:
            # Never registered (or already dropped): nothing to remember, but the run still removes
            # whatever it may have left (the absent lists include it).
            continue
        agents[name] = dict(agent)
    return {"version": VERSION, "agents": agents}


def prune(registry):
    """The registry without the agents marked absent (their resources were removed by this run)."""
    return {"version": VERSION,
            "agents": {n: a for n, a in registry["agents"].items() if a.get("state") != "absent"}}


def merged(registry, plan):
    """What the network and PF roles cover: every present agent, registered or listed, and the absent ones."""
    present = {n: a for n, a in registry["agents"].items() if a.get("state") != "absent"}
    absent = {n: a for n, a in registry["agents"].items() if a.get("state") == "absent"}
    for name, agent in (plan.get("agents") or {}).items():
        if agent.get("state") == "absent":
            absent.setdefault(name, agent)

    def by_net(agents):
        return sorted(agents.values(), key=lambda a: (ipaddress.ip_network(a["cidr"]), a["name"]))

    present_list = by_net(present)
    absent_list = by_net(absent)
    gateways = [f"{a['gateway']}/{ipaddress.ip_network(a['cidr']).prefixlen}" for a in present_list]
    return {
        "agents": present_list,
        "agent_names": [a["name"] for a in present_list],
        "unlisted": sorted(n for n in present if n not in (plan.get("agents") or {})),
        "warden_net": [a["cidr"] for a in present_list],
        "gateways": gateways,
        "absent": absent_list,
        "absent_names": [a["name"] for a in absent_list],
        # a gateway a present agent owns again is never removed
        "gateways_absent": [gw for gw in (f"{a['gateway']}/{ipaddress.ip_network(a['cidr']).prefixlen}"
                                          for a in absent_list) if gw not in gateways],
    }

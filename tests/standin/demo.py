"""make demo: run site.yml with the example inventory against a stand-in host.

Brings up the stand-in FreeBSD host "demo" (a Linux chroot with doubles of
FreeBSD's commands, tests/standin), maps the example inventory's host onto it,
runs site.yml, and prints the fleet: the inventory's plan (agents, subnets,
jails, services, databases) next to what is now on the stand-in host.
The stand-in is left up for inspection (`tests/standin/standin state demo`,
`tests/standin/standin down demo`).

As in the Molecule scenario, the example's soul repositories (https URLs of
git.example.net) are served from bare repositories inside the stand-in, its
agents run a test runtime that waits (molecule/default/files/agent-runtime),
and its shared files come from inventories/example/shared.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import standin_host as H  # noqa: E402

NAME = os.environ.get("WARDEN_DEMO_NAME", "demo")
INVENTORY = os.path.join(PROJECT, "inventories", "example")
BIN = os.path.dirname(sys.executable)
SCENARIO = os.path.join(PROJECT, "molecule", "default")
BANNER = "*** This ran against a STAND-IN host: a Linux chroot with doubles of FreeBSD's commands, not FreeBSD. ***"


def load_fleet_model():
    path = os.path.join(PROJECT, "plugins", "module_utils", "fleet_model.py")
    spec = importlib.util.spec_from_file_location("warden_fleet_model", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def prepare(root):
    """What the example inventory needs that a host has in real life: its souls' git server and its runtime."""
    subprocess.run([sys.executable, os.path.join(SCENARIO, "tests", "soul_repos.py"), root], check=True)
    runtime = os.path.join(root, "usr/local/bin/agent-runtime")
    shutil.copyfile(os.path.join(SCENARIO, "files", "agent-runtime"), runtime)
    os.chmod(runtime, 0o755)
    print("[stand-in] the example's souls served from /var/tmp/souls, test agent runtime in /usr/local/bin")


def main():
    if os.geteuid() != 0:
        sys.stderr.write("make demo needs root: the stand-in host is a chroot with its own mounts\n")
        return 1
    print(BANNER)
    if H.is_up(NAME):
        H.down(NAME)
    p = H.up(NAME)
    print(f"[stand-in] {NAME} is up at {p['root']}")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(PROJECT, "ansible.cfg"),
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    os.environ.update(env)
    prepare(p["root"])
    shared = json.dumps({"warden_shared_files": {"src": os.path.join(INVENTORY, "shared")}})
    rc = H.run(NAME, [os.path.join(BIN, "ansible-playbook"), "-i", INVENTORY, "-e", shared,
                      os.path.join(PROJECT, "site.yml")])
    if rc != 0:
        print(f"site.yml failed (rc={rc}) on the stand-in host; it stays up: tests/standin/standin state {NAME}")
        return rc
    hosts = H.inventory_hosts(os.path.join(BIN, "ansible-inventory"), [INVENTORY])
    fm = load_fleet_model()
    state = H.state(NAME)
    print()
    print(BANNER)
    for host in hosts:
        hv = json.loads(subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", INVENTORY, "--host", host],
                                       capture_output=True, text=True, check=True, env=env).stdout)
        plan, problems = fm.build_plan(host, hv)
        if problems:
            print(f"{host}: inventory problems: {problems}")
            continue
        print(f"\nHost {host} -> stand-in '{NAME}' ({state['root']}), release {plan['release']}, "
              f"bridge {plan['bridge']}, uplink {plan['ext_if']}")
        print(f"  warden_net {', '.join(plan['warden_net'])}; "
              f"gateways on {plan['bridge']}: {', '.join(plan['gateways'])}")
        for name, a in plan["agents"].items():
            print(f"\n  agent {name} ({a['assistant_name']}), state {a['state']}, "
                  f"subnet {a['cidr']}, gateway {a['gateway']}")
            for j in a["jails"]:
                on_host = state["jails"].get(j["name"])
                now = f"{on_host['state']}, gateway {on_host['gateway']}" if on_host else "not on the host"
                print(f"    jail {j['name']:<12} {j['slot']:<4} {j['cidr']:<16} {'thick' if j['thick'] else 'thin ':<5}"
                      f"  now: {now}")
            svc = a["service"]
            s = state["services"].get(svc["name"])
            now = ("running, pids " + " ".join(map(str, s["pids"]))) if s and s["running"] else (
                "installed, stopped" if s else "not installed")
            print(f"    service {svc['rc_script']} (rcvar {svc['rcvar']})  now: {now}")
            if a["db"]:
                dbs = ", ".join(a["db"]["databases"].values())
                print(f"    databases on {a['db']['jail']} ({a['db']['host']}): {dbs} (role {a['db']['role']})")
            else:
                print("    databases: none")
        w0 = state["warden0"]
        print(f"\n  on the stand-in now: warden0 {'addresses ' + ', '.join(w0['inet']) if w0 else 'absent'}; "
              f"PF anchors {sorted(state['pf']['anchors']) or 'none'}; jails {sorted(state['jails']) or 'none'}; "
              f"users {sorted(state['users']) or 'none'}; packages {', '.join(sorted(state['packages']))}")
        tool = os.path.join(state["root"], "usr/local/bin/warden")
        print(f"  host command /usr/local/bin/warden {'installed' if os.path.exists(tool) else 'absent'}; "
              f"cron.d {', '.join(sorted(state['cron_d'])) or 'none'}")
    print()
    print(BANNER)
    print(f"Inspect: tests/standin/standin state {NAME}    Remove: tests/standin/standin down {NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Verify a real FreeBSD 14 host after `site.yml` with the example inventory.

Runs through Molecule's testinfra verifier over SSH (molecule/freebsd).
Checks what the stand-in host cannot: FreeBSD's own rc.subr, sysrc, pfctl
parser, jail(8)/Bastille, procctl-based whole-tree stop.  Every role of
site.yml must have tests here, as in molecule/default.
"""

import json
import os
import re

import yaml

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))

ROLE_TESTS = {
    "preflight": ["test_preflight_changed_nothing_on_the_host"],
    "host_tools": ["test_host_tools_installed_the_warden_command"],
    "backup_schedule": ["test_backup_schedule_installed_a_working_cron_job"],
}


def _site_roles():
    roles = []

    def walk(path):
        with open(path, encoding="utf-8") as fh:
            for play in yaml.safe_load(fh) or []:
                if "ansible.builtin.import_playbook" in play:
                    walk(os.path.join(os.path.dirname(path), play["ansible.builtin.import_playbook"]))
                for r in play.get("roles", []):
                    roles.append((r["role"] if isinstance(r, dict) else r).split(".")[-1])

    walk(os.path.join(PROJECT, "site.yml"))
    return sorted(set(roles))


def test_every_role_of_site_yml_is_verified():
    assert [r for r in _site_roles() if r not in ROLE_TESTS] == []


def test_the_host_is_freebsd_14(host):
    assert host.system_info.type == "freebsd"
    assert host.check_output("freebsd-version -u").startswith("14.")
    assert host.file("/usr/local/bin/python3.11").exists


def test_preflight_changed_nothing_on_the_host(host):
    with host.sudo():
        before = host.file("/var/tmp/warden-molecule/rc.conf.sha256").content_string.strip()
        assert host.check_output("sha256 -q /etc/rc.conf").strip() == before
        rules = host.run("pfctl -sr").stdout
        assert rules == host.file("/var/tmp/warden-molecule/pf.rules").content_string


def test_host_tools_installed_the_warden_command(host):
    with host.sudo():
        warden = host.file("/usr/local/bin/warden")
        assert warden.exists and warden.user == "root" and warden.mode == 0o755
        assert warden.content_string.splitlines()[0] == "#!/usr/local/bin/python3.11"
        plan = json.loads(host.file("/usr/local/etc/warden/plan.json").content_string)
        out = host.check_output("/usr/local/bin/warden --plan /usr/local/etc/warden/plan.json list")
    for agent in plan["agents"]:
        assert re.search(rf"^{agent}\s+", out, re.M), out


def test_backup_schedule_installed_a_working_cron_job(host):
    with host.sudo():
        text = host.file("/usr/local/etc/cron.d/warden-backup").content_string
        jobs = [x for x in text.splitlines() if x and not x.startswith("#") and not re.match(r"^[A-Z]+=", x)]
        assert len(jobs) == 1
        command = jobs[0].split(None, 6)[6].split(">>")[0].strip()
        assert command.startswith("/usr/bin/lockf -k -t 0 ")
        assert host.run(command).rc == 0

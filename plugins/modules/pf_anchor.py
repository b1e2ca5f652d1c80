#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: pf_anchor
short_description: Validate, install and load the warden PF anchor and reference it from pf.conf
version_added: 0.1.0
description:
  - Installs the rules of one PF anchor (C(warden/fleet) by default) into their own file and loads them, once per
    host, whatever the number of agents.
  - Makes sure the main ruleset (C(/etc/pf.conf)) references the warden anchors (C(nat-anchor), C(rdr-anchor),
    C(anchor) and C(load anchor ... from FILE)), adding each missing line once in pf.conf's statement order and
    keeping every other line byte for byte. On a host without C(/etc/pf.conf) writes a minimal one that passes
    everything, SSH first with state picked up mid-connection.
  - Validates the whole candidate ruleset (C(pfctl -nf), the main file with the candidate anchor file) before any
    file is replaced. On failure nothing is installed, the running rules stay loaded and the module fails with
    pfctl's message.
  - Files are written atomically (temporary file, fsync, rename). Loads only when a file changed or the loaded
    rules differ from the file (C(pfctl -a ANCHOR -sr/-sn), the anchor's tables with C(-T show)); reloads only the
    anchor when the main file is unchanged and already loaded. Then verifies the loaded rules.
  - Enables PF (C(pfctl -e)) after the rules are loaded, never before; refuses to when PF is disabled and the
    loaded main ruleset blocks traffic without a rule passing an SSH port.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  rules:
    description: The anchor's rules in pf.conf syntax - tables, then translation, then filter rules.
    type: str
    required: true
  anchor:
    description: Anchor path; its first component is the root the main ruleset references with C(/*).
    type: str
    default: warden/fleet
  path:
    description: File holding the anchor's rules, loaded by the main ruleset's C(load anchor) line.
    type: path
    default: /etc/pf.warden.conf
  pf_conf:
    description: The main ruleset, as rc.conf's C(pf_rules) names it.
    type: path
    default: /etc/pf.conf
  ssh_ports:
    description: Ports the minimal pf.conf passes first, and that the enable check looks for.
    type: list
    elements: int
    default: [22]
  enable:
    description: Enable PF after loading when it is disabled.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Validates with C(pfctl -n) and reports what would change; writes and loads nothing.
  diff_mode:
    support: full
    description: The text diff of the anchor file and of pf.conf, and the runtime state (loaded, enabled).
notes:
  - Runs C(pfctl) from C(/sbin); needs root.
seealso:
  - module: community.general.sysrc
"""

EXAMPLES = r"""
- name: Install and load the agents' PF anchor
  warden.fleet.pf_anchor:
    rules: "{{ lookup('ansible.builtin.template', 'pf.warden.conf.j2') }}"
    anchor: warden/fleet
    path: /etc/pf.warden.conf
"""

RETURN = r"""
anchor:
  description: The anchor loaded.
  returned: always
  type: str
  sample: warden/fleet
pf_conf_changed:
  description: Whether the main ruleset file was created or had references added.
  returned: always
  type: bool
rules_changed:
  description: Whether the anchor's file changed.
  returned: always
  type: bool
loaded:
  description: What was (or in check mode would be) loaded, C(all) (pfctl -f pf.conf), C(anchor) or C(none).
  returned: always
  type: str
  sample: anchor
enabled:
  description: Whether PF is (or in check mode would be) enabled after the run.
  returned: always
  type: bool
"""

import os  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.pf import (  # noqa: E402
    add_references,
    expected_from_dry_run,
    loaded_references_ok,
    loaded_rules,
    minimal_pf_conf,
    references,
    ruleset_has_block_without_ssh,
)

PFCTL = "/sbin/pfctl"


class PFError(Exception):
    pass


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def atomic_write(path, text, mode):
    """Temporary file in the same directory, fsync, rename, fsync the directory."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class PF:
    def __init__(self, module):
        self.module = module
        self.commands = []

    def run(self, *args, check=True):
        cmd = [PFCTL, *args]
        self.commands.append(" ".join(cmd))
        rc, out, err = self.module.run_command(cmd)
        if check and rc != 0:
            raise PFError(f"{' '.join(cmd)} failed (rc={rc}): {(err or out).strip()}")
        return rc, out, err

    def enabled(self):
        out = self.run("-s", "info")[1]
        return out.startswith("Status: Enabled")

    def anchor_state(self, anchor):
        rules = self.run("-a", anchor, "-sr", check=False)
        nats = self.run("-a", anchor, "-sn", check=False)
        if rules[0] != 0 or nats[0] != 0:
            return None
        return loaded_rules(rules[1], nats[1])

    def table(self, anchor, name):
        rc, out, dummy = self.run("-a", anchor, "-t", name, "-T", "show", check=False)
        return sorted(out.split()) if rc == 0 else None

    def main_state(self):
        rules = self.run("-sr", check=False)[1]
        nats = self.run("-sn", check=False)[1]
        return rules, nats


def anchor_loaded_as(pf, anchor, expected_rules, expected_tables):
    if pf.anchor_state(anchor) != expected_rules:
        return False
    return all(pf.table(anchor, name) == entries for name, entries in expected_tables.items())


def run(module):
    p = module.params
    anchor, path, pf_conf = p["anchor"], p["path"], p["pf_conf"]
    rules = p["rules"] if p["rules"].endswith("\n") else p["rules"] + "\n"
    pf = PF(module)

    old_main = _read(pf_conf)
    if old_main is None:
        new_main = minimal_pf_conf(anchor, path, p["ssh_ports"])
    else:
        new_main = add_references(old_main, anchor, path)
    old_rules = _read(path)

    # Validate the whole candidate ruleset, in files of our own: the main file's load line names the
    # candidate anchor file, so nothing under /etc is touched before pfctl accepted both.
    with tempfile.TemporaryDirectory(dir=module.tmpdir) as tmp:
        cand_rules = os.path.join(tmp, "anchor.conf")
        cand_main = os.path.join(tmp, "pf.conf")
        with open(cand_rules, "w", encoding="utf-8") as f:
            f.write(rules)
        with open(cand_main, "w", encoding="utf-8") as f:
            f.write(new_main.replace(references(anchor, path)["load"], references(anchor, cand_rules)["load"]))
        rc, dry, err = pf.run("-n", "-v", "-a", anchor, "-f", cand_rules, check=False)
        if rc != 0:
            raise PFError(f"pfctl rejects the {anchor} rules, nothing was changed: {err.strip()}")
        rc, dummy, err = pf.run("-n", "-f", cand_main, check=False)
        if rc != 0:
            raise PFError(f"pfctl rejects {pf_conf} with the {anchor} rules, nothing was changed: {err.strip()}")
    expected_rules, expected_tables = expected_from_dry_run(dry)

    main_changed = new_main != old_main
    rules_changed = rules != old_rules
    main_rules, main_nats = pf.main_state()
    main_loaded = loaded_references_ok(main_rules, main_nats, anchor)
    anchor_ok = anchor_loaded_as(pf, anchor, expected_rules, expected_tables)
    was_enabled = pf.enabled()

    if main_changed or not main_loaded:
        load = "all"
    elif rules_changed or not anchor_ok:
        load = "anchor"
    else:
        load = "none"
    enable = p["enable"] and not was_enabled
    changed = main_changed or rules_changed or load != "none" or enable

    result = dict(
        changed=changed,
        anchor=anchor,
        pf_conf_changed=main_changed,
        rules_changed=rules_changed,
        loaded=load,
        enabled=was_enabled or p["enable"],
        commands=pf.commands,
    )
    if module._diff:
        result["diff"] = [
            dict(before_header=pf_conf, after_header=pf_conf, before=old_main or "", after=new_main),
            dict(before_header=path, after_header=path, before=old_rules or "", after=rules),
            dict(
                before_header="PF (runtime)",
                after_header="PF (runtime)",
                before=f"enabled: {was_enabled}\n{anchor} loaded as in {path}: {anchor_ok and not rules_changed}\n",
                after=f"enabled: {result['enabled']}\n{anchor} loaded as in {path}: True\n",
            ),
        ]
    if module.check_mode or not changed:
        return result

    if rules_changed:
        atomic_write(path, rules, 0o600)
    if main_changed:
        atomic_write(pf_conf, new_main, os.stat(pf_conf).st_mode & 0o7777 if old_main is not None else 0o644)
    try:
        if load == "all":
            pf.run("-f", pf_conf)
        elif load == "anchor":
            pf.run("-a", anchor, "-f", path)
    except PFError:
        # pfctl loads in one transaction: the running rules are still the previous ones; so are the files.
        restore(path, old_rules)
        restore(pf_conf, old_main)
        raise
    if load != "none" and not anchor_loaded_as(pf, anchor, expected_rules, expected_tables):
        raise PFError(f"pfctl reported success but the loaded {anchor} rules differ from {path}")

    if enable:
        main_rules = pf.main_state()[0]
        if ruleset_has_block_without_ssh(main_rules, p["ssh_ports"]):
            raise PFError(
                f"PF is disabled and the ruleset of {pf_conf} blocks traffic without a rule passing SSH "
                f"(ports {p['ssh_ports']}); not enabling PF: add a pass rule for SSH or run pfctl -e yourself"
            )
        pf.run("-e")
        if not pf.enabled():
            raise PFError("pfctl -e reported success but PF is not enabled")
    result["commands"] = pf.commands
    return result


def restore(path, text):
    if text is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        atomic_write(path, text, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o600)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type="str", required=True),
            anchor=dict(type="str", default="warden/fleet"),
            path=dict(type="path", default="/etc/pf.warden.conf"),
            pf_conf=dict(type="path", default="/etc/pf.conf"),
            ssh_ports=dict(type="list", elements="int", default=[22]),
            enable=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    if "/" not in module.params["anchor"] or module.params["anchor"].startswith("/"):
        module.fail_json(msg=f"anchor must be ROOT/NAME, e.g. warden/fleet, got {module.params['anchor']!r}")
    try:
        result = run(module)
    except (PFError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()

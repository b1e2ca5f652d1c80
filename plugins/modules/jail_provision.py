#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: jail_provision
short_description: Packages, rc.conf values and running services in every service jail of a host, in one call
version_added: 0.1.0
description:
  - For every jail in O(jails), in one call per host, reads what the jail has with one command per jail
    (C(pkg -j NAME query -a %n), then one C(jexec -l -U root NAME /bin/sh) that runs C(sysrc -i -e VAR...),
    C(service SVC status) for each service and C(pw usershow) for each account) and one C(jexec -l -U ACCOUNT) per
    existing account that lists its home and reads its C(authorized_keys), and acts only on the difference, with one
    C(pkg -j NAME install -y) of the missing packages, one C(sysrc -j NAME VAR=VALUE...) of the differing
    variables, C(service -j NAME SVC start) of the services that are not running, in this order. Then it reads
    everything back and fails unless the jail is as wanted.
  - Works through the jail (pkg, sysrc and service attach to it), never by writing into the jail's root
    directory from the host, where a jail's users could plant symlinks.
  - Every command runs under C(timeout(1)), which ends the command's whole process tree when it hangs; service
    starts run under C(timeout -f), which bounds the command alone, so the daemon it leaves behind is neither
    waited for nor killed.
  - Jails not listed are never touched. A listed jail must be running (M(warden.fleet.bastille_jail) creates
    and starts it first); in check mode a jail that does not run yet is reported with everything to do.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  jails:
    description: The jails and what each must have, as the plan's jails list them.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The jail's exact name (letters and digits, at most 11).
        type: str
        required: true
      packages:
        description: Packages that must be installed in the jail.
        type: list
        elements: str
        default: []
      rc_conf:
        description: Variables of the jail's rc.conf and their values.
        type: dict
        default: {}
      services:
        description: rc.d services that must be running in the jail, started in this order.
        type: list
        elements: str
        default: []
      accounts:
        description:
          - Users of the jail (C(pw useradd) through C(jexec)), created before the services start, each with
            bare git repositories in its home (C(git init --bare), as that user) and an SSH key in its
            C(authorized_keys) (written as that user).
          - The key is read from a file on the host that its owner controls (the agent's own public key), so each
            component of the path is opened without following a symlink, and the file must be a regular file of
            that owner holding one public key. M(warden.fleet.agent_workspace) makes the agent's key before the
            jails are provisioned (site.yml runs C(warden.fleet.agent_user) first); when it is missing all the same
            (check mode on a new host, a key that was removed, a file that is not a key), the account gets no
            key and a warning says why.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Login name.
            type: str
            required: true
          home:
            description: Home directory, created with the account.
            type: str
            required: true
          shell:
            description: Login shell, for example C(/usr/local/bin/git-shell).
            type: str
            required: true
          comment:
            description: The account's full name field.
            type: str
            default: ""
          repositories:
            description: Bare repositories (C(NAME.git)) in the home.
            type: list
            elements: str
            default: []
          authorized_key:
            description: Where the account's SSH key comes from and where logins may come from.
            type: dict
            suboptions:
              file:
                description: The public key file on the host.
                type: str
                required: true
              owner:
                description: The host user who must own O(jails[].accounts[].authorized_key.file).
                type: str
                required: true
              from:
                description: The only address logins with the key are accepted from (C(from=) in C(authorized_keys)).
                type: str
                required: true
attributes:
  check_mode:
    support: full
    description: Reads the jails and reports what it would install, set and start; changes nothing.
  diff_mode:
    support: full
    description:
      - Per changed jail, its packages (of the wanted ones), rc.conf values and running services before and after.
notes:
  - Runs C(/usr/bin/timeout), C(/usr/sbin/jls), C(/usr/sbin/pkg), C(/usr/sbin/sysrc) and C(/usr/sbin/service) with
    argument lists, never through a shell.
seealso:
  - module: warden.fleet.bastille_jail
"""

EXAMPLES = r"""
- name: Install and start what every service jail runs
  warden.fleet.jail_provision:
    jails:
      - name: atlascms
        packages: [nginx]
        rc_conf: {nginx_enable: "YES"}
        services: [nginx]
      - name: atlasdb
        packages: [postgresql17-server, postgresql17-contrib, pgvector]
        rc_conf: {postgresql_enable: "YES"}
"""

RETURN = r"""
jails:
  description: Per jail, what was installed, set and started (or would be, in check mode).
  returned: always
  type: dict
  sample:
    atlascms:
      changed: true
      installed: [nginx]
      rc_conf: {nginx_enable: "YES"}
      started: [nginx]
      accounts: {}
      warnings: []
    atlasgit:
      changed: false
      installed: []
      rc_conf: {}
      started: []
      accounts: {git: {created: false, repositories: [], authorized_key: false}}
      warnings: ["atlasgit: no SSH key for git: /usr/local/warden/agents/atlas/.ssh/id_ed25519.pub does not exist
        (warden.fleet.agent_user makes it)"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.backup.common import BackupError  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.jail_provision import (  # noqa: E402
    ProvisionError,
    Runner,
    provision,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "jails": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "packages": {"type": "list", "elements": "str", "default": []},
                    "rc_conf": {"type": "dict", "default": {}},
                    "services": {"type": "list", "elements": "str", "default": []},
                    "accounts": {
                        "type": "list",
                        "elements": "dict",
                        "default": [],
                        "options": {
                            "name": {"type": "str", "required": True},
                            "home": {"type": "str", "required": True},
                            "shell": {"type": "str", "required": True},
                            "comment": {"type": "str", "default": ""},
                            "repositories": {"type": "list", "elements": "str", "default": []},
                            # a public key's file and where logins may come from: nothing secret
                            "authorized_key": {
                                "type": "dict",
                                "no_log": False,
                                "options": {
                                    "file": {"type": "str", "required": True},
                                    "owner": {"type": "str", "required": True},
                                    "from": {"type": "str", "required": True},
                                },
                            },
                        },
                    },
                },
            },
        },
        supports_check_mode=True,
    )
    try:
        results, diff = provision(Runner(module.run_command), module.params["jails"], module.check_mode)
    except (ProvisionError, BackupError) as exc:
        module.fail_json(msg=str(exc))
    for jail in results.values():
        for warning in jail["warnings"]:
            module.warn(warning)
    result = {"changed": any(r["changed"] for r in results.values()), "jails": results}
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()

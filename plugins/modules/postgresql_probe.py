#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: postgresql_probe
short_description: Compare every agent's PostgreSQL in its db jail with the plan, in one call per host
version_added: 0.1.0
description:
  - For each entry of O(databases), looks inside the agent's db jail through C(jexec -l -U postgres JAIL) (the
    jail's own C(psql) over its local socket, peer authentication; only when that fails C(service postgresql status))
    and reports what differs from the plan, so the role's per-agent tasks run only for the agents that differ.
  - Read only; never changes anything. Nothing of the jail is read through the host's view of its root.
  - "Differences, in the order the role repairs them: C(jail) (the db jail is not running; nothing else is read),
    C(cluster) (no C(initdb) yet), C(running), C(settings)
    (C(listen_addresses) or C(password_encryption)), C(pg_hba) (the rules of C(pg_hba.conf) on disk, as
    C(pg_hba_file_rules) reads them, against O(databases[].hba)), C(role) (missing, or superuser, createrole,
    createdb, or no login), C(password), C(databases) (missing or another owner), C(extensions) (missing in one
    of the databases), C(restart) (a setting waits for a restart)."
  - The password is checked against the role's SCRAM-SHA-256 verifier in C(pg_authid) (RFC 5802); neither the
    password nor the verifier is returned.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  databases:
    description: One entry per agent with a db jail.
    type: list
    elements: dict
    required: true
    suboptions:
      agent:
        description: The agent's name.
        type: str
        required: true
      jail:
        description: Its db jail (exact name).
        type: str
        required: true
      role:
        description: Its login role.
        type: str
        required: true
      databases:
        description: Its databases, owned by O(databases[].role).
        type: list
        elements: str
        required: true
      extensions:
        description: Extensions wanted in each of those databases.
        type: list
        elements: str
        default: []
      listen_addresses:
        description: The wanted C(listen_addresses) (the jail's own address).
        type: str
        required: true
      hba:
        description: The wanted rules of C(pg_hba.conf), as M(community.postgresql.postgresql_pg_hba) takes them
          in its C(rules) (C(contype), C(databases), C(users), C(source), C(method)).
        type: list
        elements: dict
        required: true
      password:
        description: The role's password, to compare with its verifier.
        type: str
        required: true
      data_directory:
        description: The cluster's data directory inside the jail (C(postgresql_data) of the jail's rc.conf).
        type: str
        required: true
  timeout:
    description: Seconds each command may take before C(timeout(1)) ends it.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Read only; the same in check mode.
  diff_mode:
    support: none
    description: Nothing to show; the result lists the differences per agent.
notes:
  - Runs C(/usr/bin/timeout), C(/usr/sbin/jls) (once per host), C(/usr/sbin/jexec), and in the jail
    C(/usr/local/bin/psql), C(/usr/sbin/service) and C(/bin/test), with argument lists, never through a shell.
  - Use C(no_log) on the task, its arguments hold the passwords.
seealso:
  - module: community.postgresql.postgresql_user
  - module: community.postgresql.postgresql_pg_hba
"""

EXAMPLES = r"""
- name: Probe every agent's PostgreSQL
  warden.fleet.postgresql_probe:
    databases:
      - agent: atlas
        jail: atlasdb
        role: atlas
        databases: [atlas_ops, atlas_brain, atlas_skills]
        extensions: [vector, pgcrypto]
        listen_addresses: 10.0.1.5
        hba:
          - {contype: local, databases: all, users: postgres, method: peer}
          - {contype: host, databases: "atlas_ops,atlas_brain,atlas_skills", users: atlas, source: 10.0.1.0/24,
             method: scram-sha-256}
        password: "{{ warden_db_passwords.atlas }}"
        data_directory: /var/db/postgres/data17
  no_log: true
  register: warden_postgresql_probe
"""

RETURN = r"""
agents:
  description: Per agent, what the probe found (never a password or verifier).
  returned: always
  type: dict
  sample:
    atlas:
      jail: atlasdb
      initialized: true
      running: true
      listen_addresses: 10.0.1.5
      password_encryption: scram-sha-256
      databases: {atlas_ops: atlas, atlas_brain: atlas, atlas_skills: atlas}
      extensions: {atlas_ops: [plpgsql, vector]}
      missing_extensions: []
      role: {rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolcanlogin: true}
      password_ok: true
      differences: []
differ:
  description: The agents with at least one difference, in the order of O(databases).
  returned: always
  type: list
  elements: str
  sample: [hermes]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import postgresql_probe as pgp  # noqa: E402


def main():
    entry = dict(
        agent=dict(type="str", required=True),
        jail=dict(type="str", required=True),
        role=dict(type="str", required=True),
        databases=dict(type="list", elements="str", required=True),
        extensions=dict(type="list", elements="str", default=[]),
        listen_addresses=dict(type="str", required=True),
        hba=dict(type="list", elements="dict", required=True),
        password=dict(type="str", required=True, no_log=True),
        data_directory=dict(type="str", required=True),
    )
    module = AnsibleModule(
        argument_spec=dict(
            databases=dict(type="list", elements="dict", required=True, options=entry),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    entries = module.params["databases"]
    problems = pgp.validate(entries)
    if problems:
        module.fail_json(msg="; ".join(problems))
    run = pgp.Runner(module.run_command, module.params["timeout"])
    agents = {}
    try:
        agents = pgp.probe_all(run, entries, pgp.running_jails(run))
    except pgp.ProbeError as exc:
        module.fail_json(msg=str(exc))
    differ = [e["agent"] for e in entries if agents[e["agent"]]["differences"]]
    module.exit_json(changed=False, agents=agents, differ=differ)


if __name__ == "__main__":
    main()

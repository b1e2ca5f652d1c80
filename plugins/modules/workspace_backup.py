#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: workspace_backup
short_description: Back up every agent workspace of a warden host, verified and retained
version_added: 0.1.0
description:
  - Backs up the agents of the host's plan in one call, one archive per agent per run, named
    C(<backup_dir>/<agent>/<agent>_<YYYYmmddTHHMMSSZ>.tar.zst) (C(.tar.xz) or C(.tar.gz) without zstd).
  - Each archive holds the agent's workspace and state directories, a C(pg_dump -Fc) dump of each of the
    agent's databases taken inside its database jail, and, only when C(include_env) is set in the plan's
    backup settings, the env file encrypted with C(openssl enc -aes-256-cbc -pbkdf2).
  - The archive is written under a temporary name, fsynced, read back and renamed; its manifest (every file
    with size and sha256, the soul commit, the databases, the archive's own sha256) is written last. An
    archive without a valid manifest is never taken as a backup.
  - Where a workspace or state directory is the mountpoint of its own ZFS dataset, the backup reads a
    snapshot of it; otherwise it reads the live directory (best effort).
  - An agent whose files, database contents, soul commit and env file have not changed since its last good
    archive gets no new archive and is reported C(unchanged); unchanged files are recognised by their
    size, mtime, ctime, inode and mode, without being read.
  - Retention (C(keep_last), C(keep_daily), C(keep_weekly), C(keep_monthly) of the plan's backup settings)
    runs per agent after its backup and never deletes the newest archive that verifies.
  - Every run proves the newest archive intact (its size and mtime against the ones recorded at its last full
    sha256 check, and a full check at least every C(verify_every) days); a damaged one is moved to
    C(<backup_dir>/<agent>/damaged/) for inspection, reported in C(damaged_agents), and a new full archive is made.
  - An archive whose manifest is missing or damaged is read through and gets a manifest rebuilt from its
    contents; one that does not read back is moved to C(damaged/). No archive is deleted except by retention.
  - Every child process is bounded. A full disk or a write error ends the run of that agent at once, naming the
    cause and the file; a C(pg_dump) or C(zstd) that makes no progress for 10 minutes is killed.
  - Reports workspaces under C(<root>/agents/) that no agent of the plan owns.
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agents:
    description:
      - Back up only these agents. They may have C(state=absent) (a backup before removal).
      - By default every agent of the plan with C(state=present).
    type: list
    elements: str
    default: []
  env_passphrase_file:
    description:
      - File holding the passphrase that encrypts env files, when the plan's backup settings include them.
      - Overrides C(backup.env_passphrase_file) of the plan. Must be a regular file (not a symlink) owned by root
        and readable by its owner only.
    type: path
  fail_on_error:
    description:
      - Fail the task when the backup of any agent failed. The other agents are backed up either way.
    type: bool
    default: true
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Reports which agents would get an archive and which archives retention would delete.
  diff_mode:
    support: none
    description: Archives are not shown as diffs.
notes:
  - Runs as root on the FreeBSD host. Needs C(zstd) for C(.tar.zst) archives, C(jexec) and C(pg_dump) in
    the database jails for databases, C(openssl) for env files.
  - The same code is installed on the host as the C(warden) command by the C(warden.fleet.host_tools) role.
seealso:
  - module: warden.fleet.workspace_restore
  - module: warden.fleet.workspace_info
  - name: Backup and restore
    description: Archive format, schedule, retention and the restore runbook.
    link: https://github.com/warden-fleet/warden.fleet/blob/main/docs/backup.md
"""

EXAMPLES = r"""
- name: Back up every agent of the host
  warden.fleet.workspace_backup:
    plan: "{{ warden_plan }}"
  register: warden_backup_result

- name: Back up one agent before removing it
  warden.fleet.workspace_backup:
    plan: "{{ warden_plan }}"
    agents: [atlas]

- name: Include the env files, encrypted
  warden.fleet.workspace_backup:
    plan: "{{ warden_plan }}"
    env_passphrase_file: /root/.warden-backup-passphrase
"""

RETURN = r"""
agents:
  description: Per agent result, keyed by agent name.
  returned: always
  type: dict
  sample:
    atlas:
      status: created
      archive: /var/backups/warden/atlas/atlas_20250101T031700Z.tar.zst
      manifest: /var/backups/warden/atlas/atlas_20250101T031700Z.tar.zst.manifest.json
      sha256: 5c7ab31cb878bb9041904007560cc8a109a20e5bb6e74380798aaca36a1b0290
      size: 104857
      files: 812
      consistency: zfs-snapshot
      databases: [{key: ops, name: atlas_ops, size: 20480, content_sha256: 0c1d...}]
      pruned: [/var/backups/warden/atlas/atlas_20241201T031700Z.tar.zst]
      removed_leftovers: []
      damaged: []
      rebuilt_manifests: []
      unknown_format: []
      msg: ""
    hermes:
      status: unchanged
      archive: /var/backups/warden/hermes/hermes_20241231T031700Z.tar.zst
created:
  description: Archives written by this run.
  returned: always
  type: list
  elements: str
failed_agents:
  description: Agents whose backup failed (their C(msg) says why).
  returned: always
  type: list
  elements: str
damaged_agents:
  description:
    - Agents with an archive found damaged by this run (sha256 or size no longer the manifest's, or an archive
      without a usable manifest that does not read back). Each is listed in the agent's C(damaged) with the
      error and where it was moved (C(<backup dir>/<agent>/damaged/), kept for inspection); a new full archive
      is made in the same run.
  returned: always
  type: list
  elements: str
orphans:
  description: Directories under C(<root>/agents/) that no agent of the plan owns.
  returned: always
  type: list
  elements: str
summary:
  description: One line for logs and cron mail.
  returned: always
  type: str
  sample: "warden backup bsd1.example.net: 1 created, 19 unchanged; pruned 1"
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError, backup_fleet  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(
            agents=dict(type="list", elements="str", default=[]),
            env_passphrase_file=dict(type="path", no_log=True),
            fail_on_error=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = backup_fleet(
            params["plan"],
            agents=params["agents"] or None,
            check_mode=module.check_mode,
            env_passphrase_file=params["env_passphrase_file"],
            log=module.warn,
        )
    except (BackupError, KeyError, OSError) as exc:
        module.fail_json(msg=f"backup failed: {exc}")
    if result["failed_agents"] and params["fail_on_error"]:
        module.fail_json(msg=result["summary"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

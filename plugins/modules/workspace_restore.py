#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: workspace_restore
short_description: Restore an agent's workspace, state and databases from a verified archive
version_added: 0.1.0
description:
  - Picks an archive of C(agent) (the newest, the newest at or before C(at), or the given C(archive)) and
    checks the archive's sha256 against its manifest before anything else.
  - Holds the target agent's lock (the one its backups and retention hold) throughout; another backup or
    restore of that agent makes it wait up to C(lock_timeout) seconds, then fail naming the holder.
  - Extracts it into a staging directory only root can enter, on the file system of the live directories
    but outside the agent's reach, checking every file's sha256 against the manifest and writing through
    directory descriptors without following symlinks. A corrupted archive is refused and nothing on the
    host changes.
  - Then stops the agent's rc.d service, renames the live workspace and state to
    C(<dir>.prev-<YYYYmmddTHHMMSSZ>), renames the staged ones into place, restores each database with
    C(pg_restore --clean --if-exists --single-transaction) inside the database jail, optionally restores
    the encrypted env file, and starts the service again if it was running.
  - With C(target_agent) the archive is restored under another agent of the plan, into that agent's paths
    and databases (objects owned by its database role). On a new host, copy the archive and its
    C(.manifest.json) there and pass C(archive).
author:
  - warden.fleet contributors (@warden-fleet)
options:
  agent:
    description:
      - The agent whose archives to restore from (its backup directory in the plan).
      - May be omitted with C(archive); the manifest names the agent.
    type: str
  archive:
    description: Path of the archive on the host; its manifest must be next to it.
    type: path
  at:
    description:
      - Restore the newest archive taken at or before this time.
      - C(YYYY-mm-ddTHH:MM[:SS][Z|+HH:MM]), C(YYYYmmddTHHMMSSZ) or C(YYYY-mm-dd) (the end of that day).
        Times without an offset are UTC.
    type: str
  target_agent:
    description: Restore into this agent of the plan instead of C(agent).
    type: str
  restore_databases:
    description: Restore the databases found in the archive.
    type: bool
    default: true
  restore_env:
    description: Decrypt the env file from the archive into the target agent's env file.
    type: bool
    default: false
  env_passphrase_file:
    description:
      - Passphrase file for C(restore_env). Must be a regular file (not a symlink) owned by root and readable by
        its owner only.
      - The env file is decrypted into memory before the service is stopped, so a wrong passphrase fails the
        restore before anything is swapped; it is then written 0600 from creation, owned by the target agent.
    type: path
  start_service:
    description:
      - C(auto) starts the service after the restore when it was running before, C(always) starts it,
        C(never) leaves it stopped.
    type: str
    choices: [auto, always, never]
    default: auto
  lock_timeout:
    description:
      - Seconds to wait for a backup or restore of the target agent that holds its lock.
      - C(0) fails at once, naming the holder (pid, operation, start time).
    type: float
    default: 0
extends_documentation_fragment:
  - warden.fleet.plan
attributes:
  check_mode:
    support: full
    description: Verifies the archive completely (archive and every file) and reports what would change.
  diff_mode:
    support: none
    description: Workspaces are not shown as diffs.
notes:
  - The previous workspace and state are kept; remove C(*.prev-*) directories once the restore is accepted.
  - Where the workspace is the mountpoint of its own ZFS dataset, the previous content is moved into
    C(<workspace>/.warden-prev-<ts>/) instead (a mountpoint cannot be renamed).
seealso:
  - module: warden.fleet.workspace_backup
  - name: Restore runbook
    description: Restore in place, at a time, under another name and on a new host.
    link: https://github.com/warden-fleet/warden.fleet/blob/main/docs/backup.md
"""

EXAMPLES = r"""
- name: Restore atlas from its newest archive
  warden.fleet.workspace_restore:
    plan: "{{ warden_plan }}"
    agent: atlas

- name: Restore atlas as it was on the 2nd of March
  warden.fleet.workspace_restore:
    plan: "{{ warden_plan }}"
    agent: atlas
    at: "2025-03-02"

- name: Restore a copied archive of atlas as the agent hermes
  warden.fleet.workspace_restore:
    plan: "{{ warden_plan }}"
    archive: /var/backups/warden/atlas/atlas_20250302T031700Z.tar.zst
    target_agent: hermes
"""

RETURN = r"""
agent:
  description: The agent the archive belongs to.
  returned: always
  type: str
target_agent:
  description: The agent restored into.
  returned: always
  type: str
archive:
  description: The archive restored.
  returned: always
  type: str
created:
  description: When the archive was taken (UTC).
  returned: always
  type: str
  sample: "2025-03-02T03:17:00Z"
soul_commit:
  description: The soul repository commit recorded in the archive.
  returned: always
  type: str
previous:
  description: Where the replaced workspace and state were kept (null where there was none).
  returned: success
  type: dict
  sample: {workspace: /usr/local/warden/agents/atlas/workspace.prev-20250303T101010Z}
databases:
  description: Databases restored.
  returned: always
  type: list
  elements: str
service:
  description: Whether the service was running, the stop exit code, whether it was started.
  returned: always
  type: dict
env_restored:
  description: Whether the env file was restored.
  returned: always
  type: bool
would_restore:
  description: In check mode, the directories that would be replaced.
  returned: check mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.backup import BackupError, restore_agent  # noqa: E402
from ansible_collections.warden.fleet.plugins.module_utils.plan_args import plan_argument_spec  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec=plan_argument_spec(
            agent=dict(type="str"),
            archive=dict(type="path"),
            at=dict(type="str"),
            target_agent=dict(type="str"),
            restore_databases=dict(type="bool", default=True),
            restore_env=dict(type="bool", default=False),
            env_passphrase_file=dict(type="path", no_log=True),
            start_service=dict(type="str", choices=["auto", "always", "never"], default="auto"),
            lock_timeout=dict(type="float", default=0),
        ),
        mutually_exclusive=[("archive", "at")],
        required_one_of=[("agent", "archive")],
        required_if=[("restore_env", True, ("env_passphrase_file",))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = restore_agent(
            p["plan"],
            p["agent"],
            archive=p["archive"],
            at=p["at"],
            target_agent=p["target_agent"],
            restore_databases=p["restore_databases"],
            restore_env=p["restore_env"],
            env_passphrase_file=p["env_passphrase_file"],
            start_service=p["start_service"],
            check_mode=module.check_mode,
            lock_timeout=p["lock_timeout"],
        )
    except (BackupError, KeyError, OSError) as exc:
        module.fail_json(msg=f"restore failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: soul_repo
short_description: Install every agent's soul of a host from git at its pinned version, one way, repo to workspace
version_added: 0.1.0
description:
  - One call handles every agent of a host (O(souls)). For each agent it brings the root-owned checkout O(souls[].dest)
    to the pinned O(souls[].version), verifies the commit, checks the soul (C(manifest.json), the core files, no
    secrets, no runtime-owned paths) and installs the files the soul repository tracks into the agent's workspace.
    Nothing else in the workspace is touched (C(MEMORY.md), C(memory/), anything the soul repository does not track).
  - "A version that is a full commit id (all 40 hex digits) needs no network once the checkout holds it: a no-op
    call reads the checkout and the workspace only. Any other version is a tag: C(git ls-remote) asks the repository
    once per call where the tag points, and the checkout remembers where it pointed when it was first installed
    (trust on first use). A tag that moved upstream is never followed: O(moved_tag) decides whether that fails the
    call or keeps the first commit with a warning; either way the result names the old and the new commit.
    A version that is a branch upstream is refused, as a branch is not a pinned version."
  - Every agent's soul is fetched and checked before any workspace is written; a refused soul fails the call with
    every problem listed (file and line for a secret, never its value) and no workspace is changed.
  - The workspace belongs to the agent, which may race anything done there. Every write is made through directory
    descriptors opened without following symlinks from C(/) down, into a temporary file that is owned, moded and
    synced through its descriptor and renamed over the soul file. A symlink, FIFO, hard link or directory the agent
    planted where a soul file goes is replaced (or reported) and never followed, read or changed in place.
  - Installed files are owned by O(souls[].owner) and O(souls[].group), mode C(0640) (C(0750) for files the
    repository marks executable); directories the soul needs are created C(0750). A soul file the agent edited or
    removed is installed again on the next call and reported as changed. A file that a newer version no longer
    tracks is removed from the workspace only when it still holds the content of the version installed before.
  - git runs as root in O(souls[].dest) only, never in the workspace, each command bounded by O(timeout).
author:
  - warden.fleet contributors (@warden-fleet)
options:
  souls:
    description: The souls of the host's agents, one entry per agent. The plan's C(warden_plan.agents[NAME].soul) is
      such an entry (docs/souls.md).
    type: list
    elements: dict
    required: true
    suboptions:
      agent:
        description: The agent's name. C(manifest.json) must name it as C(agent_id).
        type: str
        required: true
      repo:
        description: The soul repository, C(https://), C(ssh://), C(git://), C(file://), C(user@host:path) or an
          absolute path.
        type: str
        required: true
      version:
        description: The pinned version, a tag or a full commit id (a short id is taken for a tag name).
        type: str
        required: true
      dest:
        description:
          - The root-owned checkout of the soul repository (created mode C(0700) when missing). It and every
            directory above it must be owned by root and not writable by anyone else (a world-writable directory
            must be sticky), so the agent can never reach it.
          - Its C(HEAD) is the commit last installed into the workspace.
        type: path
        required: true
      workspace:
        description: The agent's workspace, owned by the agent (or root). Must exist unless in check mode.
        type: path
        required: true
      owner:
        description: The user that owns the installed files (the agent's user).
        type: str
        required: true
      group:
        description: The group of the installed files (the agent's group).
        type: str
        required: true
      key_file:
        description: The private ssh deploy key for this agent's repository, on the host, owned by root, mode
          C(0600) (no group or other bits). Used only for ssh repositories.
        type: path
  known_hosts:
    description: The ssh known_hosts file with the keys of the soul repositories' ssh servers. ssh runs with
      C(StrictHostKeyChecking=yes) and this file only; it must exist when any soul is fetched over ssh.
    type: path
    default: /usr/local/etc/warden/ssh_known_hosts
  moved_tag:
    description: What a tag that moved upstream since it was first installed does. C(fail) refuses that agent's
      soul (the call fails); C(warn) keeps the commit first installed and warns. Either way the agent's result has
      C(moved_tag) with both commits. To follow a moved tag on purpose, pin its new commit id.
    type: str
    choices: [fail, warn]
    default: fail
  required_files:
    description: The core files every soul must track at its top level, besides C(manifest.json).
    type: list
    elements: str
    default: [SOUL.md, USER.md, IDENTITY.md, AGENTS.md]
  runtime_paths:
    description: Workspace paths the agent owns at runtime. A soul repository that tracks one of them (or anything
      under it) is refused, so installing a soul can never overwrite them.
    type: list
    elements: str
    default: [MEMORY.md, memory]
  timeout:
    description: Seconds each git command may run before it is killed and the agent's soul fails.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
    description: Nothing is written, neither the checkouts nor the workspaces; a soul that must be fetched is
      fetched into a temporary repository that is removed afterwards, so the changes reported are the real ones.
  diff_mode:
    support: full
    description: One diff per changed file, text before and after (a file that was not a regular agent file, or
      not text, is shown as a note instead of its content).
seealso:
  - module: warden.fleet.fleet_plan
notes:
  - "C(manifest.json) schema version 1: C({\"schema_version\": 1, \"agent_id\": \"atlas\", ...}); other keys
    (provenance, sharing rules) are kept in the repository and not interpreted here. See docs/souls.md."
  - "Refused as secrets: private keys (C(-----BEGIN ... PRIVATE KEY-----)), AWS access key ids, GitHub tokens
    (C(ghp_), C(gho_), C(ghu_), C(ghs_), C(ghr_), C(github_pat_)), OpenAI/Anthropic style keys (C(sk-...)),
    Slack tokens (C(xox?-)), C(password)/C(secret)/C(token)/C(api_key) assignments with a literal value, and files
    named C(.env), C(.env.*), C(*.env), C(.netrc), C(.pgpass) or C(id_rsa)-style key files."
requirements:
  - git on the host (C(pkg install git)); ssh for ssh repositories.
"""

EXAMPLES = r"""
- name: Install the souls of every present agent at their pinned versions
  warden.fleet.soul_repo:
    souls: "{{ warden_plan.agents.values() | selectattr('soul') | map(attribute='soul') | list }}"

- name: One agent's soul over ssh with its deploy key
  warden.fleet.soul_repo:
    souls:
      - agent: atlas
        repo: git@git.example.net:souls/atlas.git
        version: v1.2.0
        dest: /usr/local/warden/souls/atlas
        workspace: /usr/local/warden/agents/atlas/workspace
        owner: atlas
        group: atlas
        key_file: /usr/local/etc/warden/keys/atlas_soul
    known_hosts: /usr/local/etc/warden/ssh_known_hosts
"""

RETURN = r"""
souls:
  description: Per agent, what was installed.
  returned: always
  type: dict
  sample:
    atlas:
      version: v1.2.0
      commit: 5f1c1b9d2e6c0a8f0b6f0e5c3c9a1d2e4f6a7b8c
      previous_commit: 0c3e1a7d9b2f4e6a8c0d2f4b6a8c0e2d4f6a8b0c
      changed: true
      changed_files: [SOUL.md, skills/search/SKILL.md]
      removed_files: []
      moved_tag: null
      fetched: true
  contains:
    version:
      description: The pinned version.
      type: str
    commit:
      description: The commit installed (verified after checkout).
      type: str
    previous_commit:
      description: The commit installed before this call, C(null) on the first install.
      type: str
    changed:
      description: Whether the checkout or any workspace file changed (or would, in check mode).
      type: bool
    changed_files:
      description: Workspace paths (relative to the workspace) written, or that would be.
      type: list
      elements: str
    removed_files:
      description: Workspace paths of files the previous version tracked and this one does not, removed because
        they still held the previous version's content.
      type: list
      elements: str
    moved_tag:
      description: When the tag moved upstream, C({old, new}) commits; C(null) otherwise.
      type: dict
    fetched:
      description: Whether the repository was contacted to fetch objects.
      type: bool
changed_agents:
  description: The agents whose soul changed, sorted (to restart only their services).
  returned: always
  type: list
  elements: str
  sample: [atlas]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils import soul  # noqa: E402

SOUL_SPEC = dict(
    agent=dict(type="str", required=True),
    repo=dict(type="str", required=True),
    version=dict(type="str", required=True),
    dest=dict(type="path", required=True),
    workspace=dict(type="path", required=True),
    owner=dict(type="str", required=True),
    group=dict(type="str", required=True),
    key_file=dict(type="path", no_log=False),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            souls=dict(type="list", elements="dict", required=True, options=SOUL_SPEC),
            known_hosts=dict(type="path", default=soul.DEFAULT_KNOWN_HOSTS),
            moved_tag=dict(type="str", choices=["fail", "warn"], default="fail"),
            required_files=dict(type="list", elements="str", default=list(soul.REQUIRED_FILES)),
            runtime_paths=dict(type="list", elements="str", default=list(soul.RUNTIME_PATHS)),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    params = module.params
    git = soul.Git(module.get_bin_path("git", required=True), timeout=params["timeout"],
                   known_hosts=params["known_hosts"])
    installer = soul.SoulInstaller(
        git,
        check_mode=module.check_mode,
        moved_tag=params["moved_tag"],
        required_files=params["required_files"],
        runtime_paths=params["runtime_paths"],
    )
    try:
        outcome = installer.run(params["souls"])
    except soul.SoulError as exc:
        module.fail_json(msg=str(exc), problems=exc.problems, souls=exc.results)
    for warning in outcome.warnings:
        module.warn(warning)
    result = dict(changed=bool(outcome.changed_agents), souls=outcome.results, changed_agents=outcome.changed_agents)
    if module._diff:
        result["diff"] = outcome.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()

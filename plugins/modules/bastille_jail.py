#!/usr/bin/python
# Copyright: warden.fleet contributors
# BSD 2-Clause License (see LICENSE)

DOCUMENTATION = r"""
---
module: bastille_jail
short_description: Every Bastille VNET jail of a host, declaratively, in one call
version_added: 0.1.0
description:
  - Brings every jail listed in O(jails) to its wanted state in one invocation per host; jails that are not
    listed are never touched.
  - Lists once (the jails' files under C(${bastille_jailsdir}), one C(jls name), and C(bastille list -j) when an
    existing jail's address is to be compared) and acts only on the difference.
  - Creates a missing jail as a VNET jail on O(bridge) with C(bastille create -B -g GATEWAY [-T] [-p PRIORITY]
    [--no-boot] NAME RELEASE IP BRIDGE), always with its own gateway (without C(-g) Bastille takes the host's
    default route).
  - Sets the jail(8) parameters of C(config) that differ (C(bastille config NAME set KEY VALUE)) and restarts a
    running jail once afterwards (C(bastille restart NAME)); sets C(boot) and C(priority) the same way.
  - Adds the missing nullfs C(mounts) (C(bastille mount NAME HOST JAIL nullfs MODE 0 0)) after checking the
    jail's fstab; a mount point that the fstab already holds with another source or mode is an error, never
    replaced.
  - Starts or stops the jail (C(bastille start|stop NAME)); destroys a jail whose C(state) is C(absent) with
    C(bastille destroy -a -f -y NAME).
  - Bastille prefix-matches its targets (C(bastille destroy agent) destroys C(agent1) when it is the only match),
    so before every call that targets a jail the module checks that the exact name exists
    (C(${bastille_jailsdir}/NAME/jail.conf)).
  - Bastille's exit codes lie (C(start) exits 0 when the jail did not start, C(destroy) exits 0 when it
    destroyed nothing, C(mount) exits 0 for a stopped jail), so after every call the module reads the end state
    (the jail's files, C(jls -j NAME jid)) and fails with Bastille's output when it is not the wanted one.
  - A jail's address, gateway and thick/thin type are set when it is created; a difference on an existing jail
    is reported as a warning and left alone (changing it means destroying the jail).
  - Every Bastille call runs under C(timeout(1)) (30 minutes for C(create), 15 for C(destroy), 10 otherwise).
author:
  - warden.fleet contributors (@warden-fleet)
options:
  prefix:
    description:
      - Bastille's C(bastille_prefix). The jails are in C(PREFIX/jails) unless
        C(/usr/local/etc/bastille/bastille.conf) sets C(bastille_jailsdir) (or its own C(bastille_prefix)).
    type: path
    default: /usr/local/bastille
  release:
    description:
      - The bootstrapped FreeBSD release new jails are created from, for example C(14.3-RELEASE).
      - Required when a listed jail does not exist yet.
    type: str
  bridge:
    description:
      - The bridge new VNET jails hang off (C(bastille create -B)), for example C(warden0).
      - Required when a listed jail is to be present.
    type: str
  jails:
    description: The jails to manage.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The jail's name, alphanumeric and at most 11 characters (VNET jail names may not contain C(-) or
            C(_), and the epair C(e0a_NAME) must stay under 16 characters).
        type: str
        required: true
      ip:
        description: The jail's address with its prefix length, for example C(10.0.1.2/24). Required unless absent.
        type: str
      gateway:
        description: The jail's default router, another address of its network. Required unless absent.
        type: str
      thick:
        description: Create a thick jail (C(-T)) rather than a thin one.
        type: bool
        default: false
      state:
        description: C(started) and C(stopped) create the jail when it is missing; C(absent) destroys it.
        type: str
        choices: [started, stopped, absent]
        default: started
      boot:
        description: Whether Bastille starts the jail at boot (C(bastille config NAME set boot on|off)).
        type: bool
        default: true
      priority:
        description: The jail's start priority (lower starts first); left as it is when not given.
        type: int
      config:
        description:
          - jail(8) parameters to set in the jail's jail.conf, for example C(sysvshm) set to C(new).
          - Booleans are written as C(true)/C(false); an empty value or null sets the bare parameter (C(KEY;)).
          - Parameters not listed are left alone.
        type: dict
        default: {}
      mounts:
        description: nullfs mounts of host directories into the jail, kept in the jail's fstab.
        type: list
        elements: dict
        default: []
        suboptions:
          host:
            description: The host directory (absolute).
            type: path
            required: true
          jail:
            description: Where it appears inside the jail (absolute).
            type: str
            required: true
          mode:
            description: Read-only or read-write.
            type: str
            choices: [ro, rw]
            default: ro
attributes:
  check_mode:
    support: full
    description: Reports the actions it would take per jail and changes nothing.
  diff_mode:
    support: full
    description: Every jail it changes (or would change), before and after, one readable summary each.
notes:
  - Written after Bastille 1.4.4 (usr/local/share/bastille/create.sh, start.sh, stop.sh, destroy.sh, list.sh,
    mount.sh, config.sh, common.sh).
  - Runs C(/usr/local/bin/bastille), C(/usr/sbin/jls) and C(/usr/bin/timeout) with argument lists, never through
    a shell.
seealso:
  - name: Bastille documentation
    description: BastilleBSD's reference of its subcommands.
    link: https://bastille.readthedocs.io/
"""

EXAMPLES = r"""
- name: Every agent's jails on warden0
  warden.fleet.bastille_jail:
    prefix: /usr/local/bastille
    release: 14.3-RELEASE
    bridge: warden0
    jails:
      - name: atlasgit
        ip: 10.0.1.2/24
        gateway: 10.0.1.1
        mounts:
          - {host: /usr/local/share/warden/shared, jail: /srv/shared, mode: ro}
      - name: atlasdb
        ip: 10.0.1.5/24
        gateway: 10.0.1.1
        thick: true
        priority: 10
        config: {sysvshm: new, sysvsem: new, sysvmsg: new}
      - name: oldcms
        state: absent
  register: warden_jails

- name: Show what changed
  ansible.builtin.debug:
    msg: "{{ warden_jails.jails | dict2items | selectattr('value.changed') | map(attribute='key') | list }}"
"""

RETURN = r"""
changed:
  description: Whether any jail was (or, in check mode, would be) changed.
  returned: always
  type: bool
jails:
  description: Per jail name, whether it changed, the actions taken (or to take) and its state afterwards.
  returned: always
  type: dict
  sample:
    atlasdb:
      changed: true
      actions: [create thick jail 10.0.1.5/24 via 10.0.1.1 on warden0, config sysvshm=new, restart (jail.conf changed)]
      state: started
    atlasgit:
      changed: false
      actions: []
      state: started
results:
  description: The same per jail as a list, in the order of O(jails), each with its C(name).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: atlasgit, changed: false, actions: [], state: started}
drift:
  description: Differences the module leaves alone (address, thick or thin), also shown as warnings.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - modules keep their documentation first

from ansible_collections.warden.fleet.plugins.module_utils.bastille import (  # noqa: E402
    DEFAULT_PREFIX,
    BastilleError,
    converge,
)

MOUNT_SPEC = dict(
    host=dict(type="path", required=True),
    jail=dict(type="str", required=True),
    mode=dict(type="str", choices=["ro", "rw"], default="ro"),
)

JAIL_SPEC = dict(
    name=dict(type="str", required=True),
    ip=dict(type="str"),
    gateway=dict(type="str"),
    thick=dict(type="bool", default=False),
    state=dict(type="str", choices=["started", "stopped", "absent"], default="started"),
    boot=dict(type="bool", default=True),
    priority=dict(type="int"),
    config=dict(type="dict", default={}),
    mounts=dict(type="list", elements="dict", default=[], options=MOUNT_SPEC),
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            prefix=dict(type="path", default=DEFAULT_PREFIX),
            release=dict(type="str"),
            bridge=dict(type="str"),
            jails=dict(type="list", elements="dict", required=True, options=JAIL_SPEC),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        # NO_COLOR: common.sh colours only a terminal, and the errors are quoted back verbatim
        return module.run_command(argv, environ_update={"LC_ALL": "C", "NO_COLOR": "1"})

    params = module.params
    try:
        result = converge(
            run, params["prefix"], params["release"], params["bridge"], params["jails"], module.check_mode
        )
    except BastilleError as exc:
        done = exc.result or {}
        module.fail_json(msg=str(exc), **{k: v for k, v in done.items() if k in ("changed", "jails", "results")})
    result["drift"] = result.pop("warnings")
    for warning in result["drift"]:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

"""Where the doubles live and what a fresh stand-in root contains."""

DOUBLE_DIR = "/usr/libexec/standin"


def host_tool(name):
    """Path of a machine (Linux) binary a double itself needs (ip, nsenter...).

    Such tools are the doubles' machinery, not part of the FreeBSD userland the
    stand-in shows on PATH; doubles reach them only through this function.
    """
    import shutil
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise FileNotFoundError(f"stand-in: machine tool {name} is missing")
    return found

# FreeBSD path -> double name.  /bin, /sbin and /lib are symlinks into /usr
# in the stand-in (as on the Linux host), so /sbin/ifconfig is /usr/sbin/ifconfig.
COMMANDS = {
    "/usr/sbin/sysrc": "sysrc",
    "/usr/sbin/service": "service",
    "/usr/sbin/ifconfig": "ifconfig",
    "/usr/sbin/pfctl": "pfctl",
    "/usr/sbin/sysctl": "sysctl",
    "/usr/sbin/route": "route",
    "/usr/sbin/jls": "jls",
    "/usr/sbin/jexec": "jexec",
    "/usr/sbin/pkg": "pkg",
    "/usr/sbin/pw": "pw",
    "/usr/sbin/daemon": "daemon",
    "/usr/sbin/zfs": "zfs",
    "/usr/sbin/zpool": "zpool",
    "/usr/bin/lockf": "lockf",
    "/usr/bin/timeout": "timeout",
    "/usr/bin/chpass": "chpass",
    "/usr/bin/su": "su",
    "/usr/bin/freebsd-version": "freebsd-version",
}


def double_script(name):
    return ("#!/usr/bin/python3\n"
            f"# stand-in FreeBSD host: double of {name} (tests/standin/doubles)\n"
            "import sys\n"
            f"sys.path.insert(0, {DOUBLE_DIR!r})\n"
            "from standin_doubles import dispatch\n"
            f"sys.exit(dispatch({name!r}, sys.argv[1:]))\n")


def bastille_conf_sample():
    # after bastille 1.4.4 usr/local/etc/bastille/bastille.conf.sample (subset)
    return """#####################
## [ BastilleBSD ] ##
#####################

## default paths
bastille_prefix="/usr/local/bastille"                                 ## default: "/usr/local/bastille"
bastille_backupsdir="${bastille_prefix}/backups"                      ## default: "${bastille_prefix}/backups"
bastille_cachedir="${bastille_prefix}/cache"                          ## default: "${bastille_prefix}/cache"
bastille_jailsdir="${bastille_prefix}/jails"                          ## default: "${bastille_prefix}/jails"
bastille_releasesdir="${bastille_prefix}/releases"                    ## default: "${bastille_prefix}/releases"
bastille_templatesdir="${bastille_prefix}/templates"                  ## default: "${bastille_prefix}/templates"
bastille_logsdir="/var/log/bastille"                                  ## default: "/var/log/bastille"

## bastille scripts directory (assumed by bastille pkg)
bastille_sharedir="/usr/local/share/bastille"                         ## default: "/usr/local/share/bastille"

## bootstrap archives, which components of the OS to install.
bastille_bootstrap_archives="base"                                    ## default: "base"

## default timezone
bastille_tzdata=""                                                    ## default: empty to use host's time zone

## default jail resolv.conf
bastille_resolv_conf="/etc/resolv.conf"                               ## default: "/etc/resolv.conf"

## ZFS options
bastille_zfs_enable="NO"                                              ## default: "NO"
bastille_zfs_zpool=""                                                 ## default: ""
bastille_zfs_prefix="bastille"                                        ## default: "bastille"
bastille_zfs_options="-o compress=lz4 -o atime=off"                   ## default: "-o compress=lz4 -o atime=off"

## Networking
bastille_network_vnet_type="if_bridge"                                ## default: "if_bridge"
bastille_network_loopback="bastille0"                                 ## default: "bastille0"
bastille_network_pf_ext_if="ext_if"                                   ## default: "ext_if"
bastille_network_pf_table="jails"                                     ## default: "jails"
bastille_network_shared=""                                            ## default: ""
bastille_network_gateway=""                                           ## default: ""
bastille_network_gateway6=""                                          ## default: ""

## Default Templates
bastille_template_base="default/base"                                 ## default: "default/base"
bastille_template_empty=""                                            ## default: "default/empty"
bastille_template_thick="default/thick"                               ## default: "default/thick"
bastille_template_clone="default/clone"                               ## default: "default/clone"
bastille_template_thin="default/thin"                                 ## default: "default/thin"
bastille_template_vnet="default/vnet"                                 ## default: "default/vnet"
"""


# after FreeBSD etc/master.passwd (14.x), subset
BASE_USERS = [
    ("root", 0, 0, "Charlie &", "/root", "/bin/sh"),
    ("toor", 0, 0, "Bourne-again Superuser", "/root", "/usr/sbin/nologin"),
    ("daemon", 1, 1, "Owner of many system processes", "/root", "/usr/sbin/nologin"),
    ("operator", 2, 5, "System &", "/", "/usr/sbin/nologin"),
    ("bin", 3, 7, "Binaries Commands and Source", "/", "/usr/sbin/nologin"),
    ("tty", 4, 65533, "Tty Sandbox", "/", "/usr/sbin/nologin"),
    ("kmem", 5, 65533, "KMem Sandbox", "/", "/usr/sbin/nologin"),
    ("man", 9, 9, "Mister Man Pages", "/usr/share/man", "/usr/sbin/nologin"),
    ("sshd", 22, 22, "Secure Shell Daemon", "/var/empty", "/usr/sbin/nologin"),
    ("_pflogd", 64, 64, "pflogd privsep user", "/var/empty", "/usr/sbin/nologin"),
    ("_dhcp", 65, 65, "dhcp programs", "/var/empty", "/usr/sbin/nologin"),
    ("www", 80, 80, "World Wide Web Owner", "/nonexistent", "/usr/sbin/nologin"),
    ("nobody", 65534, 65534, "Unprivileged user", "/nonexistent", "/usr/sbin/nologin"),
]
# after FreeBSD etc/group (14.x), subset
BASE_GROUPS = [
    ("wheel", 0, "root"), ("daemon", 1, ""), ("kmem", 2, ""), ("sys", 3, ""), ("tty", 4, ""),
    ("operator", 5, "root"), ("mail", 6, ""), ("bin", 7, ""), ("news", 8, ""), ("man", 9, ""),
    ("games", 13, ""), ("staff", 20, ""), ("sshd", 22, ""), ("guest", 31, ""), ("video", 44, ""),
    ("_pflogd", 64, ""), ("_dhcp", 65, ""), ("network", 69, ""), ("www", 80, ""),
    ("nogroup", 65533, ""), ("nobody", 65534, ""),
]


def passwd_files():
    master = "".join(f"{n}:*:{u}:{g}::0:0:{c}:{h}:{s}\n" for n, u, g, c, h, s in BASE_USERS)
    passwd = "".join(f"{n}:*:{u}:{g}:{c}:{h}:{s}\n" for n, u, g, c, h, s in BASE_USERS)
    group = "".join(f"{n}:*:{g}:{m}\n" for n, g, m in BASE_GROUPS)
    return {"/etc/master.passwd": (master, 0o600), "/etc/passwd": (passwd, 0o644),
            "/etc/group": (group, 0o644)}

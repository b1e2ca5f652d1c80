"""Where the doubles live and what a fresh stand-in root contains."""

import os

DOUBLE_DIR = "/usr/libexec/standin"
# Machine binaries the stand-in itself runs, outside FreeBSD's PATH: the
# doubles' interpreter, what pkg's links point at (git, tmux, rsync) and the
# GNU tools the userland doubles translate to.  Hard links (or copies) made in
# the read-only layer, so they are also inside jails, which bind-mount the
# stand-in's /usr/libexec.
PRIVATE_BIN = DOUBLE_DIR + "/bin"
PYTHON = PRIVATE_BIN + "/python3.11"
PRIVATE_TOOLS = ("python3.11", "git", "tmux", "rsync", "zstd", "sed", "find", "xargs",
                 "ip", "nsenter", "unshare", "mount", "umount")
# The machine's whole /usr, read-only, for any other machine tool a double
# needs (standin_host mounts it; `standin down` unmounts it with the rest).
HOST_USR = "/.standin/host-usr"
# Machine files that stand-in packages copy (a Python package for py311-psycopg2), kept off
# every path in the read-only layer; `standin up` fills it.
PKG_SOURCES = DOUBLE_DIR + "/pkg-sources"


def _host_usr_path(path):
    """Follow symlinks of a path under HOST_USR without leaving the machine's /usr.

    Absolute link targets name the machine's /usr (or /etc/alternatives, whose
    copy in the stand-in's /etc points back into /usr): read them there, not in
    the stand-in's /usr, where they may be hidden.
    """
    for _hop in range(16):
        if not os.path.islink(path):
            return path
        target = os.readlink(path)
        if not target.startswith("/"):
            target = os.path.join(os.path.dirname(path), target)
        elif target.startswith("/usr/"):
            target = HOST_USR + target[len("/usr"):]
        elif target.startswith(("/bin/", "/sbin/")):
            target = HOST_USR + target
        path = os.path.normpath(target)
    return path


def host_tool(name):
    """Path of a machine (Linux) binary a double itself needs (ip, nsenter...).

    Such tools are the doubles' machinery, not part of the FreeBSD userland the
    stand-in shows on PATH; doubles reach them only through this function.
    Inside the stand-in (or one of its jails) the machine's bin directories are
    hidden, so the private copies and the read-only view of the machine's /usr
    are searched; never the stand-in's PATH, where the name may be a double.
    """
    import shutil
    for directory in (PRIVATE_BIN, HOST_USR + "/sbin", HOST_USR + "/bin"):
        candidate = os.path.join(directory, name)
        if os.path.lexists(candidate):
            found = _host_usr_path(candidate) if directory.startswith(HOST_USR) else candidate
            if os.access(found, os.X_OK):
                return found
    if os.path.isdir(DOUBLE_DIR):
        raise FileNotFoundError(f"stand-in: machine tool {name} is not reachable here")
    # on the machine itself (standin_host, tests)
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
    # base system daemons and tools the jails need (services.py)
    "/usr/sbin/sshd": "sshd",
    "/usr/sbin/devfs": "devfs",
    "/usr/bin/lockf": "lockf",
    "/usr/bin/timeout": "timeout",
    "/usr/bin/pgrep": "pgrep",
    "/usr/bin/pkill": "pkill",
    "/usr/sbin/newsyslog": "newsyslog",
    "/usr/bin/chpass": "chpass",
    "/usr/bin/su": "su",
    "/usr/bin/freebsd-version": "freebsd-version",
    "/usr/sbin/rcorder": "rcorder",
    # userland.py: FreeBSD's option syntax over the machine's GNU tools
    "/usr/bin/sed": "sed",
    "/usr/bin/stat": "stat",
    "/usr/bin/date": "date",
    "/usr/bin/install": "install",
    "/usr/bin/find": "find",
    "/usr/bin/xargs": "xargs",
    "/usr/bin/uname": "uname",
    "/usr/bin/hostname": "hostname",
    "/usr/sbin/md5": "md5", "/usr/sbin/sha1": "sha1", "/usr/sbin/sha224": "sha224",
    "/usr/sbin/sha256": "sha256", "/usr/sbin/sha384": "sha384", "/usr/sbin/sha512": "sha512",
}
# Doubles in userland.py start without importing the other doubles (sed and
# friends run often, from rc.d scripts too).
USERLAND = ("sed", "stat", "date", "install", "find", "xargs", "uname", "hostname",
            "md5", "sha1", "sha224", "sha256", "sha384", "sha512")


def _sed_script(python_entry):
    """sed as a small sh script: rc.d scripts and subr files call sed often.

    The everyday forms of FreeBSD's sed(1) (usr.bin/sed/main.c getopt
    "EI:ae:f:i:lnru"): separate -n, -E/-r, -u/-l flags, one script operand
    that starts with an address or a command letter, readable files not
    named like options, go straight to the machine's sed (no process of
    Python).  Every other form (-i/-I, -e/-f, errors) goes to the Python
    double, which checks it.
    """
    return rf"""#!/bin/sh
# stand-in FreeBSD host: double of sed (tests/standin/doubles, userland.py)
fast() {{
    gnu=
    while [ $# -gt 0 ]; do
        case $1 in
        -n|-E|-u) gnu="$gnu $1" ;;
        -r) gnu="$gnu -E" ;;
        -l) gnu="$gnu -u" ;;
        *) break ;;
        esac
        shift
    done
    [ $# -gt 0 ] || return 0
    script=$1
    shift
    case $script in
    [0-9\$/sSyYpPdDnNgGhHxbtqlaicw=:{{}}#!]*) ;;
    *) return 0 ;;
    esac
    for f do
        case $f in -*) return 0 ;; esac
        [ -f "$f" ] && [ -r "$f" ] || return 0
    done
    exec {PRIVATE_BIN}/sed $gnu -e "$script" -- "$@"
}}
fast "$@"
exec {PYTHON} -S -c '{python_entry}' "$@"
"""


# Doubles that stay running, found by their rc.d scripts' check_pidfile (procname, command).
DAEMONS = ("daemon", "sshd", "nginx", "ollama", "llama-server")


def double_script(name):
    # The interpreter is the stand-in's private one: /usr/bin/python3 is not
    # on a FreeBSD host, so it is hidden from the stand-in's userland.
    if name == "sed":
        return _sed_script(f"import sys; sys.path.insert(0, \"{DOUBLE_DIR}\"); "
                           "from standin_doubles.common import run_main; "
                           "from standin_doubles.userland import MAINS; "
                           "sys.exit(run_main(\"sed\", MAINS[\"sed\"], sys.argv[1:]))")
    if name in USERLAND:
        entry = ("from standin_doubles.common import run_main\n"
                 "from standin_doubles.userland import MAINS\n"
                 f"sys.exit(run_main({name!r}, MAINS[{name!r}], sys.argv[1:]))\n")
    else:
        entry = ("from standin_doubles import dispatch\n"
                 f"sys.exit(dispatch({name!r}, sys.argv[1:]))\n")
    # -S: no site module. The doubles need only the standard library, and site's start-up (its path scan and
    # the stand-in's sitecustomize, which is for the FreeBSD programs' Python) would more than double theirs.
    # Not for the daemons: rc.subr knows their processes by argv[1], which must stay the script's path.
    flags = "" if name in DAEMONS else " -S"
    return (f"#!{PYTHON}{flags}\n"
            f"# stand-in FreeBSD host: double of {name} (tests/standin/doubles)\n"
            "import sys\n"
            f"sys.path.insert(0, {DOUBLE_DIR!r})\n" + entry)


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


# Command names of FreeBSD 14's base system, by source directory (after the
# SUBDIR lists and LINKS of bin/Makefile, sbin/Makefile, usr.bin/Makefile,
# usr.sbin/Makefile, secure/usr.bin and cddl/ of freebsd-src releng/14.3;
# the toolchain (cc, ld, ar, nm, strip...) left out).  Only names the machine
# also has matter: every other entry of the machine's /usr/bin and /usr/sbin is
# hidden from the stand-in (overlay whiteouts).
FREEBSD_BASE = {
    "bin": """cat chflags chmod cp cpuset date dd df echo ed red expr freebsd-version getfacl
        hostname kenv kill link ln ls mkdir mv nproc pax pgrep pkill ps pwait pwd realpath rm
        unlink rmdir setfacl sh sleep stty sync test [ timeout uuidgen csh tcsh""",
    "sbin": """bectl camcontrol devd devfs dhclient dmesg dump fsck fsck_ffs gpart halt ifconfig
        init ipfw kldconfig kldload kldstat kldunload ldconfig md5 sha1 sha224 sha256 sha384
        sha512 md5sum sha1sum sha224sum sha256sum sha384sum sha512sum mdconfig mknod mount
        mount_nullfs newfs nologin pfctl ping ping6 poweroff reboot route shutdown swapoff
        swapon sysctl umount zfs zpool""",
    "usr.bin": """apropos at awk b64decode b64encode base64 basename bc bsdcat bsdtar bunzip2
        bzcat bzip2 bzip2recover cal cap_mkdb chfn chpass chsh cksum clear cmp col
        colcrt colrm column comm compress cpio crontab csplit cut dc diff diff3 dirname
        du ee egrep env ex expand false fetch fgrep file find fmt fold fstat fuser gencat
        getconf getent getopt grep groups gunzip gzcat gzip hd head hexdump iconv id install
        ipcrm ipcs join jot killall last less lessecho lesskey locale localedef lockf
        logger login logname look lzcat lzma lzmainfo m4 mail make man mesg mkfifo mktemp
        more nc ncal netstat newgrp nice nl nohup od openssl passwd paste patch pathchk pr
        printenv printf readlink renice reset rev rgrep scp script sdiff sed seq
        sftp sockstat sort split ssh ssh-add ssh-agent ssh-keygen ssh-keyscan stat
        stdbuf su sum tabs tail tar tee tftp time top touch tput tr true
        truncate tset tsort tty ul uname uncompress unexpand uniq unlzma units unxz unzip
        unzstd uptime users uudecode uuencode vi view vmstat w wall wc whatis whereis which
        who whoami write xargs xz xzcat xzdec xzegrep xzfgrep xzgrep yes zcat zcmp zdiff
        zegrep zfgrep zforce zgrep zless zmore znew zstd zstdcat zstdgrep zstdless zstdmt""",
    "usr.sbin": """adduser arp chgrp chown chroot cron daemon iostat jail jexec jls newsyslog
        periodic pkg pw pwd_mkdb rmuser service sshd syslogd sysrc tcpdump traceroute vigr
        vipw watch zdump zic""",
}
BASE_COMMANDS = frozenset(n for names in FREEBSD_BASE.values() for n in names.split())

# FreeBSD has these, but the machine's binary would act on the machine itself
# (its clock, hostname, NIS domain, kernel log, power state, swap, network
# tables, its boot) or does something else under the same name: absent
# rather than misleading.  The userland doubles cover date and hostname.
HIDDEN_BASE = frozenset((
    "adduser", "arp", "chfn", "chsh", "dmesg", "domainname", "fsck", "halt", "init", "ldconfig",
    "login", "make", "netstat", "newgrp", "passwd", "poweroff", "reboot", "rmuser", "shutdown",
    "swapoff", "swapon", "vigr", "vipw", "watch"))

# Not FreeBSD commands, kept visible because the project's own tests use them
# inside the stand-in (reported, not hidden, so nothing that passes today breaks):
#   setsid   tests/standin/test_standin.py starts a child in its own session to
#            prove a service's whole tree stops (FreeBSD has no setsid(1)).
KEPT_FOR_TESTS = frozenset({"setsid"})


def visible(name):
    """Whether a machine command keeps its name on the stand-in's PATH."""
    if name in KEPT_FOR_TESTS:
        return True
    return name in BASE_COMMANDS and name not in HIDDEN_BASE


def userland_plan(machine_usr="/usr"):
    """What the layer does to the machine's bin directories.

    Returns (whiteouts, links): ``whiteouts`` are paths under usr/ to hide;
    ``links`` maps a path under usr/ to the machine file to place there (a
    visible name whose symlink ends at a hidden one, e.g. sh -> dash,
    awk -> /etc/alternatives/awk -> mawk).
    """
    doubled = {path[len("/usr/"):] for path in COMMANDS}
    doubled_names = {os.path.basename(path) for path in doubled}
    whiteouts, links = [], {}
    for directory in ("bin", "sbin"):
        full_dir = os.path.join(machine_usr, directory)
        for name in sorted(os.listdir(full_dir)):
            rel = f"{directory}/{name}"
            if rel in doubled:
                continue  # the double in the layer shadows it
            if not visible(name) or name in doubled_names:
                whiteouts.append(rel)
                continue
            real = os.path.realpath(os.path.join(full_dir, name))
            parent = os.path.dirname(real)
            ends_hidden = (parent in (os.path.join(machine_usr, "bin"), os.path.join(machine_usr, "sbin"))
                           and not visible(os.path.basename(real)))
            if os.path.islink(os.path.join(full_dir, name)) and ends_hidden:
                links[rel] = real
    return whiteouts, links


def machine_link_target(target):
    """Where a package's link to a machine binary points inside the stand-in.

    pkg's catalogue names the machine's /usr/bin/NAME; that name is hidden
    from the stand-in's userland, the private copy (PRIVATE_BIN) is not.
    """
    name = os.path.basename(target)
    if os.path.dirname(target) in ("/usr/bin", "/usr/sbin") and name in PRIVATE_TOOLS:
        return f"{PRIVATE_BIN}/{name}"
    return target

"""PostgreSQL packages of the stand-in FreeBSD host (postgresqlNN-server, -client).

The stand-in has no FreeBSD build of PostgreSQL; its packages install, inside
the root they are installed into (a jail's root with ``pkg -j`` or ``bastille
pkg``), FreeBSD's file layout as thin wrappers that exec the machine's real
PostgreSQL binaries (``/usr/lib/postgresql/<major>/bin``, visible in every jail
through the read-only /usr/lib mount).  The server really runs, as the root's
``postgres`` user, with its data directory inside that root.

Layout after FreeBSD ports databases/postgresql17-server and
databases/postgresql17-client (pkg-plist, Makefile USERS/GROUPS, and
files/postgresql.in for the rc.d script):

  client: /usr/local/bin/{psql,pg_dump,pg_dumpall,pg_restore,createdb,dropdb,
          createuser,dropuser,pg_isready}
  server: /usr/local/bin/{initdb,pg_ctl,postgres,pg_controldata},
          /usr/local/etc/rc.d/postgresql, user and group postgres (uid/gid
          770, home /var/db/postgres, shell /bin/sh, "PostgreSQL Daemon" after
          ports/UIDs and ports/GIDs), /var/db/postgres owned by it
  the server package depends on the client package of the same version.

Stand-in deviations (labelled in every wrapper):
  - the binaries are the machine's PostgreSQL (a different major version than
    the package name says; ``psql --version`` tells the truth);
  - client tools default PGHOST to /tmp, FreeBSD's compiled-in socket
    directory (Debian's build defaults to /var/run/postgresql);
  - ``pg_ctl start|restart`` starts the server with
    ``unix_socket_directories=/tmp`` (FreeBSD's default; Debian's build
    defaults to /var/run/postgresql); its log goes to
    /var/db/postgres/standin-server.log because the stand-in has no syslogd
    (FreeBSD's package logs to syslog).

As on FreeBSD the server listens on TCP at the ``listen_addresses`` of its
postgresql.conf (default 'localhost'), in the network stack of the jail it
runs in: a VNET jail of the stand-in has its own network namespace with its
address (netns.py), so ``psql -h 10.0.1.5`` from the host or from another
jail reaches it and pg_hba.conf decides.  Its shared memory follows the
jail's sysvshm parameter: without it (jail(8) default "disable") the server
does not start, as on FreeBSD, where shmget(2) fails with ENOSYS ("could not
create shared memory segment: Function not implemented"); in the stand-in
Linux refuses the segment with ENOSPC ("No space left on device", see
netns.IPC_OFF).
"""

import glob
import os

from .common import err

CLIENT_TOOLS = ("psql", "pg_dump", "pg_dumpall", "pg_restore", "createdb", "dropdb", "createuser",
                "dropuser", "pg_isready")
SERVER_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_controldata")
USER = {"name": "postgres", "uid": 770, "gid": 770, "gecos": "PostgreSQL Daemon", "home": "/var/db/postgres",
        "shell": "/bin/sh"}
SERVER_LOG = "/var/db/postgres/standin-server.log"


class NoPostgres(Exception):
    pass


def machine_bin():
    """Directory of the machine's newest PostgreSQL binaries (as seen inside the stand-in)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise NoPostgres("stand-in: no PostgreSQL binaries under /usr/lib/postgresql/*/bin on this machine: "
                         "the stand-in's postgresql packages run the machine's PostgreSQL")
    return os.path.dirname(found[-1])


def files(major, kind):
    """path -> (kind, arg) entries of the pkgpw catalogue for postgresql<major>-<kind>."""
    tools = CLIENT_TOOLS if kind == "client" else SERVER_TOOLS
    entries = {f"/usr/local/bin/{t}": ("pgwrap", f"{major}:{kind}:{t}") for t in tools}
    if kind == "server":
        entries["/usr/local/etc/rc.d/postgresql"] = ("pgrc", str(major))
    return entries


def wrapper(spec):
    """Text of /usr/local/bin/TOOL for catalogue arg 'MAJOR:KIND:TOOL'."""
    major, kind, tool = spec.split(":")
    real = machine_bin()
    head = (
        "#!/bin/sh\n"
        f"# stand-in FreeBSD host (tests/standin), NOT FreeBSD's PostgreSQL: /usr/local/bin/{tool} of the\n"
        f"# package postgresql{major}-{kind}, a thin wrapper that runs the machine's {real}/{tool}.\n"
    )
    if tool == "pg_ctl":
        return head + (
            "# start/restart: the unix socket goes to /tmp (FreeBSD's default directory), TCP follows\n"
            "# listen_addresses of postgresql.conf in the jail's own network stack and, without syslogd,\n"
            f"# the server logs to {SERVER_LOG} unless -l is given.\n"
            "for a in \"$@\"; do\n"
            "\tcase $a in\n"
            "\tstart|restart)\n"
            f"\t\texec {real}/pg_ctl -o \"-c unix_socket_directories=/tmp\" "
            f"-l {SERVER_LOG} \"$@\" ;;\n"
            "\tesac\n"
            "done\n"
            f"exec {real}/pg_ctl \"$@\"\n"
        )
    if tool in CLIENT_TOOLS:
        return head + (
            "# FreeBSD's libpq looks for the server's socket in /tmp by default.\n"
            ": \"${PGHOST:=/tmp}\"\n"
            "export PGHOST\n"
            f"exec {real}/{tool} \"$@\"\n"
        )
    return head + f"exec {real}/{tool} \"$@\"\n"


def rc_script(major):
    """/usr/local/etc/rc.d/postgresql after FreeBSD ports
    databases/postgresql{major}-server/files/postgresql.in: the same rc.conf
    variables and defaults, and every action run as ${postgresql_user} with
    ``su -l`` (initdb with the login class)."""
    return f"""#!/bin/sh
#
# stand-in FreeBSD host (tests/standin): /usr/local/etc/rc.d/postgresql of the
# package postgresql{major}-server, after FreeBSD ports
# databases/postgresql{major}-server/files/postgresql.in (same variables,
# defaults and commands). pg_ctl and initdb are the stand-in's wrappers of the
# machine's PostgreSQL.
#
# PROVIDE: postgresql
# REQUIRE: DAEMON
# KEYWORD: shutdown
#
# Add the following line to /etc/rc.conf to enable PostgreSQL:
#
#  postgresql_enable="YES"
#  # optional
#  postgresql_data="/var/db/postgres/data{major}"
#  postgresql_flags="-w -s -m fast"
#  postgresql_initdb_flags="--encoding=utf-8 --lc-collate=C"
#  postgresql_login_class="default"
#
# This script takes one of the following commands:
#
#   start stop restart reload status initdb

command=/usr/local/bin/pg_ctl

. /etc/rc.subr

load_rc_config postgresql

# set defaults
postgresql_enable=${{postgresql_enable:-"NO"}}
postgresql_flags=${{postgresql_flags:-"-w -s -m fast"}}
postgresql_user=${{postgresql_user:-"postgres"}}
eval postgresql_data=${{postgresql_data:-"~${{postgresql_user}}/data{major}"}}
postgresql_login_class=${{postgresql_login_class:-"default"}}
postgresql_initdb_flags=${{postgresql_initdb_flags:-"--encoding=utf-8 --lc-collate=C"}}

name=postgresql
rcvar=postgresql_enable
extra_commands="reload initdb"

start_cmd="postgresql_command start"
stop_cmd="postgresql_command stop"
restart_cmd="postgresql_command restart"
reload_cmd="postgresql_command reload"
status_cmd="postgresql_command status"

initdb_cmd="postgresql_initdb"

su_cmd="/usr/bin/su"

command_args="-D ${{postgresql_data}} ${{postgresql_flags}}"

postgresql_command()
{{
\t${{su_cmd}} -l ${{postgresql_user}} -c "exec ${{command}} ${{command_args}} ${{rc_arg}}"
}}

postgresql_initdb()
{{
\t${{su_cmd}} -l -c ${{postgresql_login_class}} ${{postgresql_user}} \\
\t\t-c "exec /usr/local/bin/initdb ${{postgresql_initdb_flags}} -D ${{postgresql_data}} -U ${{postgresql_user}}"
}}

run_rc_command "$1"
"""


def check_available():
    """Fail loudly (before anything is installed) when the machine has no PostgreSQL."""
    try:
        machine_bin()
    except NoPostgres as exc:
        err(str(exc))
        return False
    return True


def placeholder_extension(name, version):
    """Files (name -> text) of a labelled SQL-only placeholder of extension NAME at VERSION, for the
    machine server's extension directory (``extension_dir()``), so ``CREATE EXTENSION vector`` and
    ``pg_available_extensions`` behave as with FreeBSD's pgvector package.  It is NOT pgvector: the
    type is a domain over real[] and no operator or index method exists.  FreeBSD's package puts
    the files in /usr/local/share/postgresql/extension; the machine's server reads only its own
    sharedir, which every jail of the stand-in shares read-only (/usr/share), so `standin up`
    places them there once for all jails, where contrib's extensions already are."""
    label = f"stand-in FreeBSD host (tests/standin): NOT {name} {version}, a SQL-only placeholder of its name"
    return {
        f"{name}--{version}.sql": f"-- {label}\nCREATE DOMAIN {name} AS real[];\n",
        f"{name}.control": f"# {label}\ncomment = '{label}'\ndefault_version = '{version}'\nrelocatable = true\n",
    }


def extension_dir():
    """The machine server's extension directory, /usr/share/postgresql/<major>/extension."""
    return os.path.join("/usr/share/postgresql", os.path.basename(os.path.dirname(machine_bin())), "extension")

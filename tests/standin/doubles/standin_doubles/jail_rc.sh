#!/bin/sh
# /etc/rc of a jail of the stand-in FreeBSD host (tests/standin), written for
# the stand-in after FreeBSD libexec/rc/rc (14.x).  jail(8) runs it as
# exec.start = "/bin/sh /etc/rc" (Bastille 1.4.4 create.sh); it starts, in
# rcorder(8) order, every rc.d script of /etc/rc.d and of local_startup
# (/usr/local/etc/rc.d) that the jail's rc.conf enables.
#
# Kept from FreeBSD's rc: no "autoboot" argument means "quietstart" for every
# script; "-s nostart", and inside a jail "-s nojail" (plus "-s nojailvnet" in
# a jail without vnet, security.jail.vnet 0); the date at the end.
# Simplified: one rcorder pass over /etc/rc.d and local_startup together
# (FreeBSD does a first pass up to early_late_divider, then mounts local file
# systems and re-runs rcorder with local_startup: a jail has nothing to mount
# in between); no firstboot sentinel, no diskless, no SIGALRM reload.

trap : 2
trap "echo 'Boot interrupted'; exit 1" 3

HOME=/
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME PATH

if [ "$1" = autoboot ]; then
	_boot="faststart"
	rc_fast=yes
else
	_boot="quietstart"
fi

# rcorder(8): the stand-in's double when it has one, else the ordering of
# standin_doubles/jails.py (same rules), run by the doubles' interpreter
if ! command -v rcorder >/dev/null 2>&1; then
	rcorder()
	{
		@PYTHON@ -c 'import sys; sys.path.insert(0, "/usr/libexec/standin")
from standin_doubles.jails import rcorder_main
sys.exit(rcorder_main(sys.argv[1:]))' "$@"
	}
fi

# run_rc_script FILE ARG, after rc.subr's: backup files are ignored, a script
# that is not executable is skipped, the others are sourced in a subshell
_rc_run_script()
{
	case "$1" in
	*[~#]|*.OLD|*.bak|*.orig|*,v) echo 1>&2 "/etc/rc: WARNING: Ignoring old file $1"; return ;;
	esac
	[ -x "$1" ] || return 0
	_rc_file=$1
	( set "$2"; . "$_rc_file" )
}

. /etc/rc.subr
load_rc_config

skip="-s nostart"
if [ `/sbin/sysctl -n security.jail.jailed` -eq 1 ]; then
	skip="$skip -s nojail"
	if [ `/sbin/sysctl -n security.jail.vnet` -ne 1 ]; then
		skip="$skip -s nojailvnet"
	fi
fi

local_rc=
case ${local_startup} in
[Nn][Oo] | '') ;;
*)
	# find_local_scripts_new of rc.subr: every entry of each local_startup directory
	for _dir in ${local_startup}; do
		for _f in ${_dir}/*; do
			[ -e "${_f}" ] && local_rc="${local_rc} ${_f}"
		done
	done
	;;
esac

files=`rcorder ${skip} /etc/rc.d/* ${local_rc} 2>/dev/null`
for _rc_elem in ${files}; do
	_rc_run_script ${_rc_elem} ${_boot}
done

echo ''
date
exit 0

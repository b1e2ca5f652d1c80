#!/bin/sh
# /etc/rc.shutdown of a jail of the stand-in FreeBSD host (tests/standin),
# written for the stand-in after FreeBSD libexec/rc/rc.shutdown (14.x).
# jail(8) runs it as exec.stop = "/bin/sh /etc/rc.shutdown" (Bastille 1.4.4
# create.sh) before it signals what is left.  It stops, in reverse rcorder(8)
# order, every script of /etc/rc.d and local_startup with "KEYWORD: shutdown"
# ("-k shutdown"; "-s nojail" in a jail, "-s nojailvnet" without vnet), each
# with "faststop".  Simplified: no rcshutdown_timeout watchdog (jails.py bounds
# the whole run instead), no logger.

trap : 2
trap : 3

HOME=/
PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin
export HOME PATH

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

_rc_run_script()
{
	case "$1" in
	*[~#]|*.OLD|*.bak|*.orig|*,v) return ;;
	esac
	[ -x "$1" ] || return 0
	_rc_file=$1
	( set "$2"; . "$_rc_file" )
}

. /etc/rc.subr
load_rc_config

reverse_list()
{
	_revlist=
	for _revfile in $*; do
		_revlist="$_revfile $_revlist"
	done
	echo $_revlist
}

rcorder_opts="-k shutdown"
if [ `/sbin/sysctl -n security.jail.jailed` -eq 1 ]; then
	rcorder_opts="$rcorder_opts -s nojail"
	if [ `/sbin/sysctl -n security.jail.vnet` -ne 1 ]; then
		rcorder_opts="$rcorder_opts -s nojailvnet"
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

files=`rcorder ${rcorder_opts} /etc/rc.d/* ${local_rc} 2>/dev/null`
for _rc_elem in `reverse_list $files`; do
	_rc_run_script $_rc_elem faststop
done

echo '.'
exit 0

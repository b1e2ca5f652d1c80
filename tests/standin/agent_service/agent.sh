#!/bin/sh
# Test agent: says who it is, starts a double-forked grandchild, a setsid
# child and a grandchild that ignores SIGTERM and SIGHUP, then waits.
echo "test-agent $AGENT_NAME up as $(id -un) in $(pwd) LANG=$LANG LC_ALL=$LC_ALL secret=${WARDEN_SECRET:-none} args:$*"
( ( exec sleep 1001 ) & ) &
setsid sleep 1002 &
( trap '' TERM HUP; exec sleep 1003 ) &
exec sleep 100000

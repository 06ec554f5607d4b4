# shellcheck shell=sh
# Runs inside the VM (busybox sh, see run-in-vm): for each hook kind, start
# sockdump, send one datagram to syslogd's /dev/log with logger, and check
# that sockdump printed it. One line per hook for the host to collect:
#
#   SMOKE <hook> ok|FAIL <start seconds> <detail>
#
# The start time is from launch to the `listening` line: mostly BTF parsing
# and program verification, both slow under TCG.
hooks=${SMOKE_HOOKS:-fentry kprobe tracepoint auto}

# /proc/uptime in hundredths of a second
now() { read -r up _ </proc/uptime; echo "${up%.*}${up#*.}"; }
secs() { echo "$(($1 / 100)).$(($1 % 100 / 10))"; }

syslogd -n -O /tmp/syslog &
for _ in $(seq 50); do [ -S /dev/log ] && break; sleep 0.1; done
[ -S /dev/log ] || { echo "SMOKE - FAIL 0 syslogd did not create /dev/log"; exit 1; }

failed=0
for hook in $hooks; do
	text="sockdump-vm-check-$hook"
	t0=$(now)
	sockdump --hook "$hook" -v -c 1 --format string >"out.$hook" 2>"err.$hook" &
	pid=$!
	# up to 120 s for the `listening` line, or until sockdump gives up
	for _ in $(seq 1200); do
		grep -q '^listening' "err.$hook" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	start=$(($(now) - t0))
	if grep -q '^listening' "err.$hook"; then
		logger "$text"
		# -c 1 ends it after the message; don't wait forever if it never comes
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill "$pid" 2>/dev/null
	fi
	wait "$pid"
	rc=$?
	used=$(sed -n 's/^listening.*, hook \([a-z]*\) .*/\1/p' "err.$hook")
	# the whole datagram, seen from logger, sent to /dev/log; every kernel
	# booted here has BPF trampolines, so auto must not fall back from fentry
	if grep -q "$text" "out.$hook" && [ "$rc" = 0 ] &&
		{ [ "$hook" != auto ] || [ "$used" = fentry ]; } &&
		grep -Eq '>>> process logger \[[0-9]+ -> [?0-9]+\] path /dev/log len ([0-9]+)\(\1\)$' "out.$hook" &&
		grep -q '^1 packets captured, 0 lost' "err.$hook"; then
		[ "$hook" = auto ] || used=
		echo "SMOKE $hook ok $(secs "$start") ${used:+used $used}"
	else
		failed=1
		echo "SMOKE $hook FAIL $(secs "$start") exit $rc${used:+, used $used}"
		echo "--- sockdump --hook $hook stderr:"
		cat "err.$hook"
		echo "--- stdout:"
		cat "out.$hook"
		echo "---"
	fi
done
exit $failed

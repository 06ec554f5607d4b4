# shellcheck shell=sh
# Runs inside a VM (busybox sh, see run-in-vm): every capture scenario with
# each hook family forced (socket: or its clean refusal before 6.3; fentry:
# or its clean refusal on arm64 before 6.4), then with --hook auto, which
# must pick fentry, or where the kernel lacks or preempts it socket or
# kprobe. Then the kprobe
# hook with tracefs read-only (ro-tracefs). Prints the runner's
# `RESULT <hook> <scenario> PASS|FAIL` lines for the host to collect.
rc=0
# The socket-layer tracepoint came in 6.3: from there it must work, before
# it must be refused cleanly.
case $(uname -r) in
5.* | 6.[012].*) socket=hook ;;
*) socket=run ;;
esac
# fentry needs ftrace to call BPF trampolines (direct calls): arm64 has
# them from 6.4. Debian's arm64 6.1 builds trampolines but has no
# DYNAMIC_FTRACE_WITH_DIRECT_CALLS: attaching fails (ENOTSUPP), and forcing
# fentry must be refused cleanly.
case $(uname -m),$(uname -r) in
aarch64,5.* | aarch64,6.[0-3].*) fentry=hook ;;
*) fentry=run ;;
esac
# From 7.0, or booted with preempt=full or lazy, the kernel preempts fentry
# programs (from 7.0 tp_btf too, which the socket and tracepoint families
# then leave for perf's tracepoints): forced, fentry must warn and count
# every send it misses as lost; auto must pass it over, to socket where
# the kernel has it, else to kprobe.
case $(uname -r) in
[0-6].*) new=no ;;
*) new=yes ;;
esac
booted_preempting=no
grep -qE '(^| )preempt=(full|lazy)( |$)' /proc/cmdline && booted_preempting=yes
if [ $new = yes ] || [ $booted_preempting = yes ]; then
	preempted=--preempted
	auto=kprobe
	[ $socket = run ] && auto=socket
elif [ $fentry = hook ]; then
	preempted=""
	auto=kprobe
	[ $socket = run ] && auto=socket
else
	preempted=""
	auto=fentry
fi
# shellcheck disable=SC2086 # $preempted is one flag or none
sockdump-scenarios "$fentry" --hook fentry $preempted --sockdump /bin/sockdump || rc=1
# Before 7.0 the model changes only what fentry does: the other families
# run in the same kernel's own column (run-matrix leaves them out here).
if [ $new = no ] && [ $booted_preempting = yes ]; then
	sockdump-scenarios run --hook auto --expect-hook "$auto" --sockdump /bin/sockdump || rc=1
	exit $rc
fi
for hook in kprobe tracepoint; do
	sockdump-scenarios run --hook "$hook" --sockdump /bin/sockdump || rc=1
done

# sockdump -- CMD: CMD forks; both ends of both its conversations are kept,
# and its exit status (3) is sockdump's. The families no kernel preempts:
# sockdump must follow CMD while it still holds its capabilities (5.10
# refuses map updates without them).
sockdump-scenarios echo-server /tmp/command.sock &
server=$!
while [ ! -S /tmp/command.sock ]; do sleep 0.1; done
for hook in kprobe tracepoint; do
	/bin/sockdump --hook "$hook" --format string -o "/tmp/command.$hook" -- \
		sockdump-scenarios fork-client /tmp/command.sock m >/dev/null 2>"/tmp/command.$hook.err"
	status=$?
	missing=""
	for line in m-parent m-child re:m-parent re:m-child; do
		grep -qx "$line" "/tmp/command.$hook" || missing="$missing $line"
	done
	if [ $status = 3 ] && [ -z "$missing" ]; then
		echo "RESULT $hook command PASS"
	else
		echo "RESULT $hook command FAIL status $status, missing:$missing; $(tr '\n' ' ' <"/tmp/command.$hook.err")"
		rc=1
	fi
done

# Waits until the capture whose stderr goes to $1 is live.
live() {
	tries=0
	until grep -q '^listening' "$1" 2>/dev/null; do
		tries=$((tries + 1))
		[ $tries -gt 300 ] && return 1
		sleep 0.1
	done
}

# Two captures at once both see every message, each with its own
# kretprobes in tracefs (the host runs the other families: together.rs).
/bin/sockdump --hook kprobe --format string --sock /tmp/command.sock -o /tmp/twice.a 2>/tmp/twice.a.err &
pid_a=$!
/bin/sockdump --hook kprobe --format string --sock /tmp/command.sock -o /tmp/twice.b 2>/tmp/twice.b.err &
pid_b=$!
live /tmp/twice.a.err && live /tmp/twice.b.err &&
	sockdump-scenarios client /tmp/command.sock twice >/dev/null
sleep 0.5
kill "$pid_a" "$pid_b"
wait "$pid_a" "$pid_b"
missing=""
for run in a b; do
	for line in twice re:twice; do
		grep -qx "$line" "/tmp/twice.$run" || missing="$missing $run:$line"
	done
done
if [ -z "$missing" ]; then
	echo "RESULT kprobe twice PASS"
else
	echo "RESULT kprobe twice FAIL missing:$missing; $(cat /tmp/twice.a.err /tmp/twice.b.err | tr '\n' ' ')"
	rc=1
fi

# kill -9 leaves a capture's kretprobes in tracefs (no destructor runs);
# the next capture removes them, captures, and leaves nothing itself.
events=/sys/kernel/tracing/kprobe_events
/bin/sockdump --hook kprobe --format string -o /dev/null 2>/tmp/killed.err &
killed=$!
live /tmp/killed.err
kill -9 $killed
wait $killed
left=$(grep -c sockdump_ $events)
/bin/sockdump --hook kprobe --format string --sock /tmp/command.sock -c 2 -o /tmp/after 2>/tmp/after.err &
after=$!
live /tmp/after.err && sockdump-scenarios client /tmp/command.sock after-kill >/dev/null
wait $after
status=$?
remaining=$(grep -c sockdump_ $events)
if [ "$left" -gt 0 ] && [ "$remaining" = 0 ] && [ $status = 0 ] && grep -qx after-kill /tmp/after; then
	echo "RESULT kprobe kill-9 PASS"
else
	echo "RESULT kprobe kill-9 FAIL $left events left by kill -9, $remaining after the next capture (status $status); $(tr '\n' ' ' </tmp/after.err)"
	rc=1
fi
kill $server
sockdump-scenarios "$socket" --hook socket --sockdump /bin/sockdump || rc=1
sockdump-scenarios run --hook auto --expect-hook "$auto" --sockdump /bin/sockdump || rc=1

# Without writable tracefs sockdump cannot make its kretprobes there (the
# only way to set maxactive): it attaches them through the perf PMU, and -v
# says the kernel's default applies. One stream and one datagram scenario:
# both hooked functions. Last: the VM ends after this.
if mount -o remount,ro /sys/kernel/tracing; then
	sockdump-scenarios run --hook kprobe --sockdump /bin/sockdump --report-as ro-tracefs \
		--expect-stderr "the kernel's default number of tracked sends in progress applies" \
		stream-named dgram-sendto || rc=1
else
	echo "RESULT kprobe ro-tracefs FAIL cannot remount tracefs read-only"
	rc=1
fi
exit $rc

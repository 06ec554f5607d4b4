# shellcheck shell=sh
# Runs inside a VM (busybox sh, see run-in-vm): every capture scenario with
# each hook family forced, then with --hook auto, which must pick fentry:
# every kernel booted here has BPF trampolines. Prints the runner's
# `RESULT <hook> <scenario> PASS|FAIL` lines for the host to collect.
rc=0
for hook in fentry kprobe tracepoint; do
	sockdump-scenarios run --hook "$hook" --sockdump /bin/sockdump || rc=1
done
sockdump-scenarios run --hook auto --expect-hook fentry --sockdump /bin/sockdump || rc=1
exit $rc

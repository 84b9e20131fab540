#!/usr/bin/env bash
# Brand joyent: a real busybox system container run through liblxc by
# src/libvmadm/brand/joyent.c, driven with tests/integration/joyent-ops and
# cross-checked with the lxc-* tools.
#
# The root filesystem is made here by hand from busybox-static (a stand-in
# for the real test image): busybox init runs an inittab whose respawned
# job appends a counter line every 100 ms to /zones/UUID/data/counter, the
# delegated dataset, so the host sees it grow in ZONEPATH/data/counter.
. "$(dirname "$0")/../lib/common.sh"

OPS=$BUILD/tests/integration/joyent-ops
if [ ! -x "$OPS" ]; then
	fail "joyent-ops: not built at $OPS"
	exit 1
fi
for tool in lxc-info lxc-attach lxc-stop busybox; do
	if ! command -v "$tool" >/dev/null; then
		fail "prerequisite: $tool not installed"
		exit 1
	fi
done

ROOT=$T/node
LXCPATH=$ROOT/run/lxc
mkdir -p "$ROOT"/{run,log,zones}
# liblxc keeps its container locks under /run/lxc/lock/LXCPATH.
t_defer "rm -rf '/run/lxc/lock$T'"

# mkvm UUID HOSTNAME: a zonepath with a busybox root and a data dataset,
# and its record in $T/UUID.json.
mkvm() {
	local uuid=$1 host=$2 zp=$ROOT/zones/$1 r
	r=$zp/root
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run} "$zp/data"
	cp /bin/busybox "$r/bin/busybox"
	# What `busybox --install -s` does, without needing /proc inside.
	busybox --list-full | while read -r app; do
		[ -e "$r/$app" ] || ln -s /bin/busybox "$r/$app"
	done
	cat >"$r/etc/inittab" <<-EOF
		::sysinit:/bin/echo joyent-test: sysinit
		::respawn:/bin/counter
		::shutdown:/bin/echo joyent-test: shutting down
	EOF
	cat >"$r/bin/counter" <<-EOF
		#!/bin/sh
		echo joyent-test: counter started
		n=0
		while :; do
			n=\$((n + 1))
			echo "\$n" >>/zones/$uuid/data/counter
			[ \$((n % 10)) -ne 0 ] || echo "joyent-test: tick \$n"
			usleep 100000
		done
	EOF
	chmod +x "$r/bin/counter"
	cat >"$T/$uuid.json" <<-EOF
		{"uuid": "$uuid", "brand": "joyent", "alias": "joy-$host", "hostname": "$host",
		 "max_physical_memory": 128, "cpu_cap": 50, "quota": 1,
		 "zfs_filesystem": "zones/$uuid", "zonepath": "$zp",
		 "delegate_dataset": true, "datasets": ["zones/$uuid/data"]}
	EOF
	t_defer "lxc-stop -P '$LXCPATH' -n '$uuid' -k"
}

ops() { "$OPS" "$ROOT" "$@"; }
state() { ops state "$T/$1.json" | cut -d' ' -f1; }
pid_of() { ops state "$T/$1.json" | cut -d' ' -f3; }
lxc_state() { lxc-info -P "$LXCPATH" -n "$1" -s -H 2>/dev/null; }
# lxc_down UUID: LXC sees no such running container (stopped, or its config
# gone) and no monitor process of it is left.
lxc_down() {
	local s
	s=$(lxc-info -P "$LXCPATH" -n "$1" -s -H 2>&1)
	case "$s" in STOPPED | *"doesn't exist"*) ;; *) echo "lxc-info: $s" && return 1 ;; esac
	! pgrep -af "^\[lxc monitor\] $LXCPATH $1\$"
}
lines() { wc -l <"$ROOT/zones/$1/data/counter" 2>/dev/null || echo 0; }
# wait_for SECS CMD...: poll every 100 ms until CMD succeeds.
wait_for() {
	local end=$((SECONDS * 10 + $1 * 10)) i=0
	shift
	while ! "$@"; do
		i=$((i + 1))
		[ $((SECONDS * 10 + i)) -lt "$end" ] || return 1
		sleep 0.1
	done
}
is_state() { [ "$(state "$1")" = "$2" ]; }
ms() { date +%s%3N; }

U1=$(cat /proc/sys/kernel/random/uuid)
mkvm "$U1" joyhost
J=$T/$U1.json

# --- runtime of a VM that never ran: stopped, even with no lxcpath ---
check_eq "state before first start" "stopped installed 0" "$(ops state "$J")"
check "state did not create the lxcpath" test ! -e "$LXCPATH"

# --- start ---
if ops start "$J" >"$T/start.out" 2>&1; then ok "start"; else fail "start: $(cat "$T/start.out")"; fi
check "start printed nothing (liblxc writes to its log file)" test ! -s "$T/start.out"
check_eq "state after start" running "$(state "$U1")"
P=$(pid_of "$U1")
check "init pid $P is alive" kill -0 "$P"
check_eq "lxc-info agrees: RUNNING" RUNNING "$(lxc_state "$U1")"
check_eq "lxc-info agrees on the init pid" "$P" "$(lxc-info -P "$LXCPATH" -n "$U1" -p -H 2>/dev/null)"
check_eq "container hostname is the record's" joyhost \
	"$(lxc-attach -P "$LXCPATH" -n "$U1" -- hostname 2>&1)"
check_grep "config file written with the liblxc API" -q "^lxc.uts.name = joyhost" "$LXCPATH/$U1/config"

# The delegated dataset is really mounted: the counter grows on the host.
wait_for 10 test -s "$ROOT/zones/$U1/data/counter"
n1=$(lines "$U1")
sleep 1
n2=$(lines "$U1")
if [ "$n1" -gt 0 ] && [ "$n2" -ge $((n1 + 3)) ]; then
	ok "counter in zones/$U1/data grows on the host ($n1 -> $n2 lines in 1 s)"
else
	fail "counter in zones/$U1/data does not grow: $n1 -> $n2 lines"
fi
check "the mount point was created inside the root" test -d "$ROOT/zones/$U1/root/zones/$U1/data"

# Memory limit as the kernel has it, from init's own cgroup.
memcg=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' "/proc/$P/cgroup")
if [ -n "$memcg" ] && [ -f "/sys/fs/cgroup/memory$memcg/memory.limit_in_bytes" ]; then
	check_eq "memory limit applied (cgroup v1 $memcg)" $((128 * 1024 * 1024)) \
		"$(cat "/sys/fs/cgroup/memory$memcg/memory.limit_in_bytes")"
else
	v2=$(awk -F: '$1 == 0 {print $3}' "/proc/$P/cgroup")
	check_eq "memory limit applied (cgroup v2 $v2)" $((128 * 1024 * 1024)) \
		"$(cat "/sys/fs/cgroup$v2/memory.max" 2>&1)"
fi
cpucg=$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' "/proc/$P/cgroup")
if [ -n "$cpucg" ] && [ -f "/sys/fs/cgroup/cpu$cpucg/cpu.cfs_quota_us" ]; then
	check_eq "cpu_cap 50 applied as cfs quota" 50000 "$(cat "/sys/fs/cgroup/cpu$cpucg/cpu.cfs_quota_us")"
fi

info=$(ops info "$J")
check_eq "info: lxc_state" RUNNING "$(jq -r .lxc_state <<<"$info" 2>&1)"
check_eq "info: init_pid" "$P" "$(jq -r .init_pid <<<"$info" 2>&1)"
check_eq "info: memory_limit" $((128 * 1024 * 1024)) "$(jq -r .memory_limit <<<"$info" 2>&1)"
check_eq "info: no ips" 0 "$(jq -r '.ips | length' <<<"$info" 2>&1)"
check_grep "console log has init's output" -q "joyent-test: counter started" "$ROOT/log/$U1-console.log"
check_fails "start of a running VM is refused" "already running" ops start "$J"

# --- stop -t 3: busybox init honours lxc.signal.halt (SIGUSR2) ---
t0=$(ms)
check "stop -t 3" ops stop -t 3 "$J"
dt=$(($(ms) - t0))
if [ "$dt" -lt 5000 ]; then ok "stop -t 3 returned in ${dt} ms"; else fail "stop -t 3 took ${dt} ms"; fi
check_eq "state after stop" "stopped installed 0" "$(ops state "$J")"
check "lxc-info agrees: stopped, no monitor left" lxc_down "$U1"
check "init $P is gone" bash -c "! kill -0 $P 2>/dev/null"
check "init ran its shutdown actions (clean halt, not a kill)" \
	grep -q "joyent-test: shutting down" "$ROOT/log/$U1-console.log"
check "no config left in run/lxc after stop" test ! -e "$LXCPATH/$U1"
check "stop of a stopped VM is 0" ops stop -t 3 "$J"

# --- init killed with SIGKILL -> stopped ---
check "start again" ops start "$J"
P2=$(pid_of "$U1")
if [ "${P2:-0}" -gt 0 ] && [ "$P2" != "$P" ]; then ok "new init pid $P2"; else fail "init pid after restart: '$P2'"; fi
kill -KILL "$P2"
if wait_for 5 is_state "$U1" stopped; then ok "SIGKILL of init -> stopped"; else fail "after SIGKILL of init: $(ops state "$J")"; fi
check "lxc-info agrees after SIGKILL" lxc_down "$U1"
check "stop after init died is 0" ops stop "$J"

# --- reboot: a new init, still running ---
check "start for reboot" ops start "$J"
P3=$(pid_of "$U1")
check "reboot" ops reboot "$J"
P4=$(pid_of "$U1")
check_eq "running after reboot" running "$(state "$U1")"
if [ "${P4:-0}" -gt 0 ] && [ "$P4" != "$P3" ]; then ok "reboot made a new init ($P3 -> $P4)"; else fail "reboot: init pid $P3 -> '$P4'"; fi

# --- console: output of init's job, detach with Ctrl-] q ---
(sleep 1.5; printf '\035q') | timeout 10 "$OPS" "$ROOT" console "$J" >"$T/console.out" 2>&1
check_eq "console detaches with Ctrl-] q" 0 "$?"
check_grep "console shows the container's output" -q "joyent-test: tick" "$T/console.out"
check_eq "running after console detach" running "$(state "$U1")"

# --- stop -F is quick ---
t0=$(ms)
check "stop -F" ops stop -F "$J"
dt=$(($(ms) - t0))
if [ "$dt" -lt 2000 ]; then ok "stop -F returned in ${dt} ms"; else fail "stop -F took ${dt} ms"; fi
check_eq "state after stop -F" stopped "$(state "$U1")"
check "lxc-info agrees after stop -F" lxc_down "$U1"

# --- an init deaf to the halt signal: stop waits -t, then kills ---
U3=$(cat /proc/sys/kernel/random/uuid)
mkvm "$U3" joydeaf
rm "$ROOT/zones/$U3/root/sbin/init"
printf '#!/bin/sh\nwhile :; do sleep 1; done\n' >"$ROOT/zones/$U3/root/sbin/init"
chmod +x "$ROOT/zones/$U3/root/sbin/init"
check "start (init ignores signals)" ops start "$T/$U3.json"
t0=$(ms)
check "stop -t 2 of a deaf init" ops stop -t 2 "$T/$U3.json"
dt=$(($(ms) - t0))
if [ "$dt" -ge 1900 ] && [ "$dt" -lt 5000 ]; then ok "stop waited ~2 s then killed (${dt} ms)"; else fail "stop -t 2 of a deaf init took ${dt} ms"; fi
check_eq "deaf init: stopped" stopped "$(state "$U3")"
check "deaf init: lxc-info agrees" lxc_down "$U3"

# --- missing data dataset: named, nothing runs, nothing left ---
mv "$ROOT/zones/$U1/data" "$ROOT/zones/$U1/data.away"
check_fails "start with a missing data dataset names it" \
	"start $U1: dataset zones/$U1/data is missing" ops start "$J"
check_eq "nothing runs after the refused start" stopped "$(state "$U1")"
check "no config left after the refused start" test ! -e "$LXCPATH/$U1"
mv "$ROOT/zones/$U1/data.away" "$ROOT/zones/$U1/data"

# --- liblxc itself fails (a mount that cannot be made): log tail, cleanup ---
U2=$(cat /proc/sys/kernel/random/uuid)
mkvm "$U2" joybad
jq --arg s "$T/no-such-dir" '.filesystems = [{"source": $s, "target": "/mnt/x", "type": "lofs", "options": ["ro"]}]' \
	"$T/$U2.json" >"$T/$U2.json.new" && mv "$T/$U2.json.new" "$T/$U2.json"
check_fails "start failing inside liblxc quotes its log" "container did not start" ops start "$T/$U2.json"
check_eq "the failure is one line: liblxc printed nothing itself" 1 "$(wc -l <"$T/.check.out")"
grep -qF "Failed to mount \"$T/no-such-dir\"" "$T/.check.out" && ok "the message has the lxc log's reason" ||
	fail "the message lacks the lxc log's reason: $(head -c 300 "$T/.check.out")"
check_eq "failed start: stopped" stopped "$(state "$U2")"
check "failed start: lxc-info agrees" lxc_down "$U2"
check "failed start: no config left" test ! -e "$LXCPATH/$U2"
check "failed start: rootfs untouched" test -x "$ROOT/zones/$U2/root/bin/busybox"

t_done

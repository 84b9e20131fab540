#!/usr/bin/env bash
# vmadm send UUID HOST PORT when things go wrong, between two hosts: a wrong
# key, a UUID already on the target, a target pool too small, the link cut
# mid-transfer, the target's vmadmd killed mid-transfer, the sender killed
# mid-transfer (then the re-run resumes and moves fewer bytes, unless the
# VM was started in between). Every case
# checks the source VM intact (and running again where it ran) and the
# target clean. Transfers are made long enough to cut with random data and
# --bwlimit; deadlines are 5 s (--timeout, net_timeout) to keep it short.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

IMAGES=$BUILD/images
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
J=9f304152-7c8d-4e9f-a0b1-2c3d4e5f6a73 # joyent, running
R=a0415263-8d9e-4fa0-b1c2-3d4e5f6a7b84 # kvm, stopped, two big disks
TMO=5

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
if ! hosts_make 2 2147483648 2>"$T/hosts.err"; then
	fail "hosts_make 2: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
A=$(host_root a)
B=$(host_root b)
IPB=$(host_ip b)
# Short deadlines on the target too (read per connection).
$JSON -I -f "$B/vmadm.conf" -e "this.net_timeout = $TMO" >/dev/null 2>&1

state() { host_exec "$1" "$VMADM" get "$2" 2>/dev/null | $JSON state; }
disks_hash() { cat "$A/zones/$R-disk0/disk.raw" "$A/zones/$R-disk1/disk.raw" | sha256sum; }
target_clean() {
	local l
	host_exec b "$VMADM" list >/dev/null 2>&1 # recovery of what a dead receive left
	l=$(leftovers "$B" | grep -v -e '\.filler')
	[ -z "$l" ] || { echo "left on b: $l"; return 1; }
}
# wait_bytes FILE N: until the --json events in FILE pass N bytes.
wait_bytes() {
	local i b
	for ((i = 0; i < 300; i++)); do
		b=$(grep '"progress"' "$1" 2>/dev/null | tail -n 1 | $JSON bytes 2>/dev/null)
		[ "${b:-0}" -ge "$2" ] && return 0
		sleep 0.1
	done
	echo "still at ${b:-0} bytes" >&2
	return 1
}
# wait_log PATTERN SECS: until b's vmadmd log has PATTERN.
wait_log() {
	local deadline=$((SECONDS + $2))
	while [ $SECONDS -lt $deadline ]; do
		grep -q "$1" "$B/log/vmadmd.log" && return 0
		sleep 0.2
	done
	return 1
}
# kill_in_disk1 UUID NAME RATE: send UUID at RATE, kill the sender with
# SIGKILL once it streams the VM's disk1 (disk0 is then complete on b);
# events in $T/NAME.events. Fails if disk1 never started.
kill_in_disk1() {
	local i ps
	host_spawn a "$VMADM" send "$1" "$IPB" 9777 --json --bwlimit "$3" >"$T/$2.events" 2>"$T/$2.err"
	ps=$HOST_PID
	for ((i = 0; i < 300; i++)); do
		grep -q "\"dataset\":\"zones/$1-disk1\"" "$T/$2.events" && break
		sleep 0.1
	done
	kill -KILL $ps
	wait $ps 2>/dev/null
	[ $i -lt 300 ]
}
# kept_on_b UUID: b keeps a partial of UUID for a resume (waits for it).
kept_on_b() {
	local i
	for ((i = 0; i < 5 * TMO * 3; i++)); do
		[ "$($JSON phase <"$B/recv/$1.json" 2>/dev/null)" = kept ] && return 0
		sleep 0.2
	done
	return 1
}
running_again() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(state a "$1")" = running ] && return 0
		sleep 0.2
	done
	return 1
}

check "imgadm install joyent-test on a" host_exec a "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
check "create joyent VM J on a" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$J\", \"alias\": \"j\",
  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true, \"autoboot\": true}' | VMADM_ROOT=$A $VMADM create"
head -c 60000000 /dev/urandom >"$A/zones/$J/root/blob"
J_BLOB=$(sha256sum <"$A/zones/$J/root/blob")
check "start J on a" host_exec a "$VMADM" start $J
check "create kvm VM R on a (stopped)" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$R\", \"alias\": \"r\", \"ram\": 128,
  \"disks\": [{\"size\": 200, \"boot\": true}, {\"size\": 100}]}' | VMADM_ROOT=$A $VMADM create"
head -c 160000000 /dev/urandom | dd of="$A/zones/$R-disk0/disk.raw" bs=1M seek=20 conv=notrunc status=none
head -c 60000000 /dev/urandom | dd of="$A/zones/$R-disk1/disk.raw" bs=1M seek=20 conv=notrunc status=none
R_HASH=$(disks_hash)

# 1. A wrong key: a clear error on both sides, nothing moves.
cp "$A/vmadm.key" "$T/a.key"
host_exec a "$VMADM" key generate -f >/dev/null 2>&1
check_fails "wrong key: the sender says so" "the peer has a different key (compare \`vmadm key show\` on both nodes)" \
	host_exec a "$VMADM" send $J "$IPB" 9777
check "wrong key: the target logs it" wait_log "different key" 5
check_eq "wrong key: J still runs on a" running "$(state a $J)"
check "wrong key: target clean" target_clean
install -m 0600 "$T/a.key" "$A/vmadm.key"
check_eq "key show: same fingerprint on both nodes" "$(host_exec a "$VMADM" key show | tail -n 1)" \
	"$(host_exec b "$VMADM" key show | tail -n 1)"

# 2. The UUID is already on the target.
check "make a VM with J's uuid on b" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$J\", \"alias\": \"other\"}' |
  VMADM_ROOT=$B $VMADM create"
check_fails "uuid taken: refused with the target's reason" "already exists on this node" \
	host_exec a "$VMADM" send $J "$IPB" 9777
check_eq "uuid taken: J still runs on a" running "$(state a $J)"
check_eq "uuid taken: b's own VM untouched" other "$(host_exec b "$VMADM" get $J | $JSON alias)"
check "remove b's VM" host_exec b "$VMADM" delete $J
check "uuid taken: target clean" target_clean

# 3. The target's pool is too small.
avail=$(df -B1 --output=avail "$B/zones" | tail -n 1)
fallocate -l $((avail - 100 * 1048576)) "$B/zones/.filler" && sync
check_fails "pool too small: refused before any data" "free" \
	host_exec a "$VMADM" send $R "$IPB" 9777
cp "$T/.check.out" "$T/small.out"
check_grep "pool too small: the reason names the need" -q "needs .* MiB but pool zones on this node has .* free" "$T/small.out"
rm -f "$B/zones/.filler"
# btrfs frees a removed file's extents only when the transaction commits
# (up to 30 s later): commit now, or the next case runs on a full pool.
sync -f "$B/zones"
check "pool too small: the space is back" test "$(df -B1 --output=avail "$B/zones" | tail -n 1)" -ge $((avail - 50 * 1048576))
check_eq "pool too small: R intact on a" "stopped $R_HASH" "$(state a $R) $(disks_hash)"
check "pool too small: target clean" target_clean

# 4. The link cut mid-transfer: both sides end within the deadline.
host_spawn a "$VMADM" send $J "$IPB" 9777 --json --bwlimit 8M --timeout $TMO >"$T/cut.events" 2>"$T/cut.err"
ps=$HOST_PID
check "link cut: the transfer runs" wait_bytes "$T/cut.events" 8000000
check "link cut: still running when the link goes down" kill -0 $ps
link_down a
t0=$SECONDS
wait $ps
rc=$?
dt=$((SECONDS - t0))
check "link cut: the sender fails" test $rc -ne 0
check "link cut: the sender ends within the deadline ($dt s)" test $dt -le $((TMO * 3))
check_grep "link cut: the sender says why" -qE "no progress|closed|timed out" "$T/cut.err"
check "link cut: the target ends within the deadline" wait_log "migration of VM $J from .* failed" $((TMO * 3))
link_up a
link_up b
check "link cut: J runs again on a" running_again $J
check_eq "link cut: J's data intact" "$J_BLOB" "$(sha256sum <"$A/zones/$J/root/blob")"
check "link cut: target clean" target_clean
check_eq "link cut: --json result says not ok" false "$(grep '"result"' "$T/cut.events" | $JSON ok)"

# 5. The target's vmadmd killed mid-transfer, its `btrfs receive` stopped
# just before (as one blocked in the kernel would be): nothing vmadmd ran
# may outlive it, writing on into the staging that recovery removes; the
# next command on b leaves no dataset, journal or staging behind.
host_spawn a "$VMADM" send $J "$IPB" 9777 --json --bwlimit 8M --timeout $TMO >"$T/kill.events" 2>"$T/kill.err"
ps=$HOST_PID
check "vmadmd killed: the transfer runs" wait_bytes "$T/kill.events" 8000000
recv_pid=$(pgrep -f "btrfs receive.* $B/zones/\.recv/" | head -n 1)
check "vmadmd killed: b's btrfs receive runs" test -n "$recv_pid"
[ -n "$recv_pid" ] && kill -STOP "$recv_pid"
host_vmadmd_kill b
t0=$SECONDS
wait $ps
rc=$?
dt=$((SECONDS - t0))
check "vmadmd killed: the sender fails" test $rc -ne 0
check "vmadmd killed: the sender ends within the deadline ($dt s)" test $dt -le $((TMO * 3))
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
if [ -n "$recv_pid" ]; then
	for i in $(seq 1 50); do gone "$recv_pid" && break; sleep 0.1; done
	check "vmadmd killed: its btrfs receive died with it" gone "$recv_pid"
	gone "$recv_pid" || kill -KILL "$recv_pid" # if it outlived vmadmd: not ours to leave
fi
check "vmadmd killed: J runs again on a" running_again $J
check_eq "vmadmd killed: J's data intact" "$J_BLOB" "$(sha256sum <"$A/zones/$J/root/blob")"
check "vmadmd killed: target clean (after its recovery)" target_clean
check_eq "vmadmd killed: no zones/.recv temp left" "" "$(ls -A "$B/zones/.recv" 2>/dev/null)"
check "restart b's vmadmd" host_vmadmd_start b

# 6. The sender killed mid-transfer; the re-run resumes.
check "sender killed: the transfer reached disk1" kill_in_disk1 $R r1 50M
check "sender killed: the target notices" wait_log "migration of VM $R from .* failed" $((TMO * 3))
check_eq "sender killed: the target keeps the complete datasets" "kept" \
	"$($JSON phase <"$B/recv/$R.json" 2>/dev/null)"
check_eq "sender killed: R intact on a" "stopped $R_HASH" "$(state a $R) $(disks_hash)"
host_exec a "$VMADM" send $R "$IPB" 9777 --json >"$T/r2.events" 2>"$T/r2.err"
check_eq "re-run exits 0" "0" "$(echo $? $(grep -v '^Successfully' "$T/r2.err" | head -3))"
first_total=$(grep '"result"' "$T/r2.events" | $JSON total)
second=$(grep '"result"' "$T/r2.events" | $JSON bytes)
check "re-run sent less than half the VM ($second of $first_total bytes)" test "${second:-0}" -gt 0 -a "${second:-0}" -lt $((first_total / 2))
check_eq "re-run skipped the datasets b had" "zones/$R-disk0" \
	"$(grep '"result"' "$T/r2.events" | $JSON skipped | $JSON -a | grep disk0)"
check_eq "R on b has the same disks" "$R_HASH" \
	"$(cat "$B/zones/$R-disk0/disk.raw" "$B/zones/$R-disk1/disk.raw" | sha256sum)"
check_eq "R stopped on b (it was stopped)" stopped "$(state b $R)"
check_eq "R on a: autoboot off, migrated_to b" "false $IPB" \
	"$(host_exec a "$VMADM" get $R | $JSON autoboot migrated_to.host | xargs)"
check_eq "no journal or temp on b" "" "$(ls "$B/recv"; ls "$B/zones" | grep -F .recv)"
check_eq "no send snapshots left on a" "" "$(find "$A/zones/.snapshots" -name '*vmadm-send*' 2>/dev/null)"
check "delete R on b" host_exec b "$VMADM" delete $R
check "the && promise: delete R on a" host_exec a "$VMADM" delete $R
check "target clean after deleting R" target_clean

# 6b. The sender killed, then the VM started and stopped by hand (its
# guest wrote meanwhile): the re-run must not resume from the old
# snapshots, or the target would get the data from before.
Q=d3748596-b011-42d3-a4f5-6a7b8c9daeb7
check "create kvm VM Q on a (stopped)" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$Q\", \"ram\": 128,
  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 64}]}' | VMADM_ROOT=$A $VMADM create"
head -c 40000000 /dev/urandom | dd of="$A/zones/$Q-disk0/disk.raw" bs=1M seek=4 conv=notrunc status=none
head -c 40000000 /dev/urandom | dd of="$A/zones/$Q-disk1/disk.raw" bs=1M seek=4 conv=notrunc status=none
check "started by hand: the transfer reached disk1" kill_in_disk1 $Q q1 20M
check "started by hand: b keeps disk0 of the killed send" kept_on_b $Q
check "started by hand: start Q on a" host_exec a "$VMADM" start $Q
head -c 1048576 /dev/urandom | dd of="$A/zones/$Q-disk0/disk.raw" bs=1M seek=10 conv=notrunc status=none
check "started by hand: stop Q on a" host_exec a "$VMADM" stop -F $Q
Q_HASH=$(cat "$A/zones/$Q-disk0/disk.raw" "$A/zones/$Q-disk1/disk.raw" | sha256sum)
host_exec a "$VMADM" send $Q "$IPB" 9777 --json >"$T/q2.events" 2>"$T/q2.err"
check_eq "started by hand: the re-run exits 0" "0" "$(echo $? $(grep -v '^Successfully' "$T/q2.err" | head -3))"
check_eq "started by hand: the re-run skipped nothing" "" \
	"$(grep '"result"' "$T/q2.events" | $JSON skipped | $JSON -a 2>/dev/null)"
check_eq "started by hand: Q on b has the disks as they are now" "$Q_HASH" \
	"$(cat "$B/zones/$Q-disk0/disk.raw" "$B/zones/$Q-disk1/disk.raw" | sha256sum)"
check "started by hand: delete Q on b" host_exec b "$VMADM" delete $Q
check "started by hand: delete Q on a" host_exec a "$VMADM" delete $Q
check "started by hand: target clean" target_clean

# 7. A partial kept for a resume expires (partial_keep_secs), and then the
# next command on the target removes it.
S=b1526374-9eaf-40b1-82d3-4e5f6a7b8c95
check "create kvm VM S on a (stopped)" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$S\", \"ram\": 128,
  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 64}]}' | VMADM_ROOT=$A $VMADM create"
head -c 40000000 /dev/urandom | dd of="$A/zones/$S-disk0/disk.raw" bs=1M seek=4 conv=notrunc status=none
head -c 40000000 /dev/urandom | dd of="$A/zones/$S-disk1/disk.raw" bs=1M seek=4 conv=notrunc status=none
$JSON -I -f "$B/vmadm.conf" -e "this.partial_keep_secs = 2" >/dev/null 2>&1
check "expiry: the transfer reached disk1" kill_in_disk1 $S s 20M
check "expiry: the target notices" wait_log "migration of VM $S from .* failed" $((TMO * 3))
check_eq "expiry: the partial is kept" kept "$($JSON phase <"$B/recv/$S.json" 2>/dev/null)"
host_exec b "$VMADM" list >/dev/null 2>&1
check_eq "expiry: a command before the expiry leaves it" kept "$($JSON phase <"$B/recv/$S.json" 2>/dev/null)"
sleep 3
check "expiry: the next command removes it" sh -c "VMADM_ROOT=$B $VMADM list 2>&1 >/dev/null | grep -q 'removed the partial receive of VM $S (kept for a resume, expired)'"
check "expiry: target clean" target_clean
# The same partial, kept for an hour, goes at once with its "receiving" VM.
$JSON -I -f "$B/vmadm.conf" -e "this.partial_keep_secs = 3600" >/dev/null 2>&1
check "delete kept: the transfer reached disk1" kill_in_disk1 $S s2 20M
kept_on_b $S
check_eq "delete kept: the partial is kept, the VM receiving" "kept receiving" \
	"$($JSON phase <"$B/recv/$S.json" 2>/dev/null) $(state b $S)"
host_exec b "$VMADM" delete $S >"$T/del.out" 2>&1
check_grep "delete kept: vmadm delete of the receiving VM removes the partial" \
	-q "removed the partial receive of VM $S (its VM was deleted)" "$T/del.out"
check "delete kept: target clean" target_clean
check "expiry: vmadm delete S on a (with its kept send snapshots)" host_exec a "$VMADM" delete $S
check_eq "expiry: no send snapshot of S left on a" "" "$(find "$A/zones/.snapshots" -path "*$S*" 2>/dev/null)"

# 8. max_receives: with one receive running, a second is refused; the
# first goes on (and J, which ran through every case above, lands on b).
U=c2637485-af00-41c2-93e4-5f6a7b8c9da6
check "create a small VM on a" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$U\"}' | VMADM_ROOT=$A $VMADM create"
$JSON -I -f "$B/vmadm.conf" -e "this.max_receives = 1" >/dev/null 2>&1
host_spawn a "$VMADM" send $J "$IPB" 9777 --json --bwlimit 8M >"$T/max.events" 2>"$T/max.err"
ps=$HOST_PID
check "max_receives: the first transfer runs" wait_bytes "$T/max.events" 4000000
check_fails "max_receives: a second receive is refused" "this node is busy: 1 receives in progress (max_receives)" \
	host_exec a "$VMADM" send $U "$IPB" 9777
wait $ps
check_eq "max_receives: the first send completes" 0 $?
check_eq "J runs on b" running "$(state b $J)"
check_eq "J's data on b" "$J_BLOB" "$(sha256sum <"$B/zones/$J/root/blob")"
check_eq "the refused VM is intact on a" stopped "$(state a $U)"
t_done

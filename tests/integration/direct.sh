#!/usr/bin/env bash
# vmadm send UUID HOST PORT between two hosts (network namespaces, each with
# its node, pool and vmadmd): a running kvm VM (from the kvm image, TCG) and
# a running joyent VM go from a to b at once; the && promise holds (exit 0,
# the VMs run on b with the same config and data, a keeps them stopped with
# autoboot off and migrated_to, then `vmadm delete` on a works), the
# workloads go on with no gap; then the same VMs, stopped, go back from b to
# a. --json events parse and their bytes grow to the total; -n estimates.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
KVM=7d1e3f20-5a6b-4c7d-8e9f-0a1b2c3d4e61
OS=8e2f4031-6b7c-4d8e-9fa0-1b2c3d4e5f62
OFFSET=33554432
BOOT_WAIT=90

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
IPA=$(host_ip a)
IPB=$(host_ip b)

# comparable ROOT UUID: the record without what a migration changes on
# purpose (state, autoboot, migrated_to), the live accel of a running kvm VM,
# or what differs between nodes.
comparable() {
	vm_get_comparable "$1" "$2" |
		$JSON -e 'delete this.state; delete this.zone_state; delete this.autoboot;
			delete this.migrated_to; delete this.accel; delete this.exit_status; delete this.exit_timestamp'
}
# events_grow FILE: every line is JSON; progress bytes never go down; the
# last progress event reaches the total; the result says ok.
events_grow() {
	local f=$1
	$JSON -ga event <"$f" >/dev/null || { echo "a line does not parse"; return 1; }
	$JSON -ga -c 'this.event === "progress"' bytes total <"$f" | awk '
		{ if ($1 < last) { print "bytes went down: " last " -> " $1; bad = 1 } last = $1; t = $2 }
		END { if (bad) exit 1; if (last != t || t == 0) { print "last " last " != total " t; exit 1 } }'
	[ "$($JSON -ga -c 'this.event === "result"' ok <"$f")" = true ]
}

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "imgadm install joyent-test on a" host_exec a "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
check "create kvm VM on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 256,
  \"autoboot\": true, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 64}]}' |
  VMADM_ROOT=$A $VMADM create"
check "create joyent VM on a" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\",
  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true, \"autoboot\": true}' | VMADM_ROOT=$A $VMADM create"
head -c 5000000 /dev/urandom | dd of="$A/zones/$KVM-disk1/disk.raw" bs=1M seek=7 conv=notrunc status=none
head -c 300000 /dev/urandom >"$A/zones/$OS/root/blob"

host_exec a "$VMADM" send $KVM -n >"$T/est.txt" 2>&1
check_grep "send -n prints each dataset and the total" -q "^total  *[0-9]" "$T/est.txt"
check_eq "send -n lists the kvm VM's 3 datasets" 3 "$(grep -c "^zones/$KVM" "$T/est.txt")"
check "send -n sent nothing" test ! -e "$B/vms/$KVM.json"

check "start kvm on a" host_exec a "$VMADM" start $KVM
check "start joyent on a" host_exec a "$VMADM" start $OS
check "kvm workload runs on a" wl_wait_records 20 "$BOOT_WAIT" --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw"
check "joyent workload runs on a" wl_wait_records 20 30 "$A/zones/$OS/data/workload.rec"

# 1. Both running VMs at once, a -> b (HOST PORT and HOST:PORT forms).
host_exec a "$VMADM" send $KVM "$IPB" 9777 --json >"$T/k.events" 2>"$T/k.err" &
pk=$!
host_exec a "$VMADM" send $OS "$IPB:9777" >"$T/o.out" 2>"$T/o.err"
ro=$?
wait $pk
rk=$?
check_eq "send kvm (running) a -> b exits 0" "0" "$(echo $rk $(grep -v '^Successfully' "$T/k.err" | head -3))"
check_eq "send joyent (running) a -> b exits 0" "0" "$(echo $ro $(grep -v '^Successfully' "$T/o.err" | head -3))"
check "--json events parse and their bytes grow to the total" events_grow "$T/k.events"
for u in $KVM $OS; do
	check_eq "$u runs on b" running "$(host_exec b "$VMADM" get $u | $JSON state)"
	check_eq "$u stopped on a" stopped "$(host_exec a "$VMADM" get $u | $JSON state)"
	check_eq "$u: autoboot off on a, kept on b" "false true" \
		"$(host_exec a "$VMADM" get $u | $JSON autoboot) $(host_exec b "$VMADM" get $u | $JSON autoboot)"
	check_eq "$u: migrated_to on a names b" "$IPB 9777" \
		"$(host_exec a "$VMADM" get $u | $JSON migrated_to.host migrated_to.port | xargs)"
	check_eq "$u: same config on both" "$(comparable "$A" $u)" "$(comparable "$B" $u)"
done
check_eq "kvm disk1 byte-identical" "$(sha256sum <"$A/zones/$KVM-disk1/disk.raw")" \
	"$(sha256sum <"$B/zones/$KVM-disk1/disk.raw" 2>&1)"
check "kvm disk0 boot area identical" cmp -n "$OFFSET" "$A/zones/$KVM-disk0/disk.raw" "$B/zones/$KVM-disk0/disk.raw"
check "joyent root data identical" cmp "$A/zones/$OS/root/blob" "$B/zones/$OS/root/blob"
check "joyent workload file on b starts with a's" cmp -n "$(stat -c %s "$A/zones/$OS/data/workload.rec")" \
	"$A/zones/$OS/data/workload.rec" "$B/zones/$OS/data/workload.rec"
check_eq "no QEMU or container of ours left running on a" "" \
	"$(pgrep -f "qemu-system-x86_64 -name $KVM" | while read -r p; do grep -l "$A" /proc/$p/cmdline 2>/dev/null; done)"
check_eq "no send snapshots left on a or b" "" \
	"$(find "$A/zones/.snapshots" "$B/zones/.snapshots" -name '*vmadm-send*' 2>/dev/null)"
check_eq "no receive journal or temp on b" "" "$(ls "$B/recv"; ls "$B/zones" | grep -F .recv)"
check_grep "b's vmadmd logged the migrations" -q "migration of VM $KVM from .* done" "$B/log/vmadmd.log"

nk=$(wl_records --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw")
no=$(wl_records "$A/zones/$OS/data/workload.rec")
check "kvm workload continues on b" wl_wait_records $((nk + 15)) "$BOOT_WAIT" --offset "$OFFSET" "$B/zones/$KVM-disk0/disk.raw"
check "joyent workload continues on b" wl_wait_records $((no + 15)) 30 "$B/zones/$OS/data/workload.rec"
check "the && promise: vmadm delete kvm on a" host_exec a "$VMADM" delete $KVM
check "the && promise: vmadm delete joyent on a" host_exec a "$VMADM" delete $OS
check_eq "a holds nothing of them (its images stay)" "" "$(leftovers "$A" | grep -v -e $KVM_IMAGE -e $OS_IMAGE)"
check "stop kvm on b" host_exec b "$VMADM" stop $KVM
check "stop joyent on b" host_exec b "$VMADM" stop $OS
"$CHECK" --json --offset "$OFFSET" "$B/zones/$KVM-disk0/disk.raw" >"$T/k.json"
"$CHECK" --json "$B/zones/$OS/data/workload.rec" >"$T/o.json"
check_eq "kvm: sequence gap-free across the move, two boots" "true 0 2" "$($JSON -f "$T/k.json" -a ok gaps boots)"
check_eq "joyent: sequence gap-free across the move, two runs" "true 0 2" "$($JSON -f "$T/o.json" -a ok gaps runs)"

# 2. The same VMs, stopped, b -> a.
# On a terminal (script(1) gives it one): the progress line, redrawn.
script -qec "nsenter --net=/run/netns/$(_host_ns b) -- env VMADM_ROOT=$B $VMADM send $KVM $IPA 9777 --bwlimit 40M" \
	"$T/k2.tty" >/dev/null 2>&1
check_eq "send kvm (stopped) b -> a on a terminal exits 0" "0" "$(echo $? $(grep -v -e '^Successfully' -e '^Script' "$T/k2.tty" | tr '\r' '\n' | grep -i error | head -3))"
check "the terminal shows a progress line with phase, bytes, total, rate and ETA" \
	grep -qE "send +zones/$KVM-disk[01] +[0-9.]+ [KMG]?i?B / [0-9.]+ [KMG]?i?B +[0-9.]+ [KMG]?i?B/s +ETA [0-9]+:[0-9]{2}" "$T/k2.tty"
check "the progress line is redrawn with \\r" test "$(tr -cd '\r' <"$T/k2.tty" | wc -c)" -gt 3
host_exec b "$VMADM" send $OS "$IPA" 9777 --no-compress >"$T/o2.out" 2>"$T/o2.err"
check_eq "send joyent (stopped) b -> a exits 0" "0" "$(echo $? $(grep -v '^Successfully' "$T/o2.err" | head -3))"
for u in $KVM $OS; do
	check_eq "$u stays stopped on a" stopped "$(host_exec a "$VMADM" get $u | $JSON state)"
	check_eq "$u: same config on both" "$(comparable "$B" $u)" "$(comparable "$A" $u)"
	check_eq "$u: autoboot off on b" false "$(host_exec b "$VMADM" get $u | $JSON autoboot)"
done
for d in disk0 disk1; do
	check_eq "kvm $d byte-identical" "$(sha256sum <"$B/zones/$KVM-$d/disk.raw")" \
		"$(sha256sum <"$A/zones/$KVM-$d/disk.raw" 2>&1)"
done
check_eq "joyent root tree identical" "$(tree_hash "$B/zones/$OS/root")" "$(tree_hash "$A/zones/$OS/root")"
check_eq "joyent data tree identical" "$(tree_hash "$B/zones/$OS/data")" "$(tree_hash "$A/zones/$OS/data")"
check_fails "sending a migrated VM again is refused" "already migrated" \
	host_exec b "$VMADM" send $KVM "$IPA" 9777
check "vmadm delete kvm on b" host_exec b "$VMADM" delete $KVM
check "vmadm delete joyent on b" host_exec b "$VMADM" delete $OS
check_eq "b holds nothing of them" "" "$(leftovers "$B")"
t_done

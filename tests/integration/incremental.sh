#!/usr/bin/env bash
# vmadm send -I UUID HOST PORT between namespaced hosts (a, b: btrfs; c, d:
# dir): running VMs whose workload writes all along move with passes while
# they run, then a short stop. For each: exit 0, the VM runs on the target
# and is stopped with autoboot off on the source, pass 2 and later move a
# small fraction of pass 1 (from the --json events), the downtime is
# reported, no migration snapshot or journal is left, and the workload's
# sequence has no gap across the move. kvm a -> b (btrfs native deltas),
# joyent a -> b, kvm b -> c (btrfs -> dir: portable deltas), kvm c -> d (dir
# -> dir). Then the stop rule: a guest writing faster than --bwlimit ends
# the passes because the deltas stop shrinking, and the send completes.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
KVM=5a1e3f20-5a6b-4c7d-8e9f-0a1b2c3d4e71
OS=6b2f4031-6b7c-4d8e-9fa0-1b2c3d4e5f72
OFFSET=33554432
BOOT_WAIT=90

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
if ! HOSTS_POOLS="btrfs btrfs dir dir" hosts_make 4 1073741824 2>"$T/hosts.err"; then
	fail "hosts_make 4: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi

# passes FILE: "pass pass_bytes" per pass event of a --json send.
passes() {
	$JSON -ga -c 'this.pass !== undefined' pass pass_bytes <"$1"
}
# small_deltas FILE: there are >= 2 passes and every pass after the first
# moved less than a quarter of pass 1.
small_deltas() {
	passes "$1" | awk '
		NR == 1 { p1 = $2; next }
		{ n++; if ($2 * 4 >= p1) { print "pass " $1 " moved " $2 " of " p1; bad = 1 } }
		END { if (n < 1) { print "only one pass"; exit 1 } exit bad }'
}

# migrate_I LABEL UUID FROM TO RECARGS... : send -I a running VM FROM -> TO
# and check the promises; RECARGS locate its records under a root given as
# @ROOT@.
migrate_I() {
	local l=$1 u=$2 from=$3 to=$4
	shift 4
	local rf rt
	rf=$(host_root "$from")
	rt=$(host_root "$to")
	local args_from=("${@//@ROOT@/$rf}") args_to=("${@//@ROOT@/$rt}")
	local n0
	n0=$(wl_records "${args_from[@]}")
	host_exec "$from" "$VMADM" send "$u" -I "$(host_ip "$to")" 9777 --json --timeout 10 \
		"${SEND_EXTRA[@]}" >"$T/$l.events" 2>"$T/$l.err"
	check_eq "$l: send -I exits 0" "0" "$(echo $? | grep -v '^0$' && tail -n 3 "$T/$l.err" | xargs; echo 0)"
	check "$l: --json events parse" $JSON -ga event <"$T/$l.events"
	echo "# $l: passes (pass bytes): $(passes "$T/$l.events" | xargs)"
	echo "# $l: $($JSON -ga -c 'this.downtime !== undefined && this.event === "progress"' \
		downtime bytes_total <"$T/$l.events" | xargs)"
	check "$l: later passes move a small fraction of pass 1" small_deltas "$T/$l.events"
	check "$l: the last pass is the final one" test \
		"$($JSON -ga -c 'this.pass !== undefined' final <"$T/$l.events" | tail -n 1)" = true
	check "$l: the result reports a downtime" awk -v d="$($JSON -ga -c 'this.event === "result"' \
		downtime <"$T/$l.events")" 'BEGIN { exit !(d > 0 && d < 60) }'
	check_eq "$l: runs on $to" running "$(host_exec "$to" "$VMADM" get "$u" | $JSON state)"
	check_eq "$l: stopped, autoboot off on $from" "stopped false" \
		"$(host_exec "$from" "$VMADM" get "$u" | $JSON state autoboot | xargs)"
	check_eq "$l: no migration snapshots left on either side" "" \
		"$(find "$rf/zones/.snapshots" "$rt/zones/.snapshots" -name '*vmadm-send*' 2>/dev/null)"
	check_eq "$l: no receive journal or temp on $to" "" "$(ls "$rt/recv"; ls "$rt/zones" | grep -F .recv)"
	check "$l: the workload had run on $from during the passes" \
		test "$(wl_records "${args_from[@]}")" -gt "$n0"
	check "$l: the workload continues on $to" \
		wl_wait_records $(($(wl_records "${args_from[@]}") + 10)) "$BOOT_WAIT" "${args_to[@]}"
}

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "imgadm install joyent-test on a" host_exec a "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
A=$(host_root a)
check "create kvm VM on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 256,
  \"autoboot\": true, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 32}]}' |
  VMADM_ROOT=$A $VMADM create"
check "create joyent VM on a" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\",
  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true, \"autoboot\": true}' | VMADM_ROOT=$A $VMADM create"
head -c 8000000 /dev/urandom | dd of="$A/zones/$KVM-disk1/disk.raw" bs=1M seek=4 conv=notrunc status=none
check "start kvm on a" host_exec a "$VMADM" start $KVM
check "start joyent on a" host_exec a "$VMADM" start $OS
KREC=(--offset "$OFFSET" "@ROOT@/zones/$KVM-disk0/disk.raw")
OREC=("@ROOT@/zones/$OS/data/workload.rec")
check "kvm workload runs on a" wl_wait_records 10 "$BOOT_WAIT" --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw"
check "joyent workload runs on a" wl_wait_records 10 30 "$A/zones/$OS/data/workload.rec"

# The first moves stop the VM cleanly for the last delta (the default);
# the last one pauses it and ends QEMU (--final-stop pause).
SEND_EXTRA=()
migrate_I "kvm a->b (btrfs)" $KVM a b "${KREC[@]}"
migrate_I "joyent a->b (btrfs)" $OS a b "${OREC[@]}"
migrate_I "kvm b->c (btrfs->dir)" $KVM b c "${KREC[@]}"
SEND_EXTRA=(--final-stop pause)
migrate_I "kvm c->d (dir, --final-stop pause)" $KVM c d "${KREC[@]}"
check "--final-stop pause: the downtime held no guest shutdown (< 2 s)" awk -v d="$($JSON -ga \
	-c 'this.event === "result"' downtime <"$T/kvm c->d (dir, --final-stop pause).events")" \
	'BEGIN { exit !(d > 0 && d < 2) }'
SEND_EXTRA=()

D=$(host_root d)
B=$(host_root b)
check "stop kvm on d" host_exec d "$VMADM" stop $KVM
check "stop joyent on b" host_exec b "$VMADM" stop $OS
"$BUILD/tools/vmadm-workload-check" --json --offset "$OFFSET" "$D/zones/$KVM-disk0/disk.raw" >"$T/k.json"
"$BUILD/tools/vmadm-workload-check" --json "$B/zones/$OS/data/workload.rec" >"$T/o.json"
check_eq "kvm: sequence gap-free across three moves, four boots" "true 0 4" "$($JSON -f "$T/k.json" -a ok gaps boots)"
check_eq "joyent: sequence gap-free across the move, two runs" "true 0 2" "$($JSON -f "$T/o.json" -a ok gaps runs)"
for h in a b c; do
	check "vmadm delete kvm on $h" host_exec $h "$VMADM" delete $KVM
done
check "vmadm delete joyent on a" host_exec a "$VMADM" delete $OS

# The stop rule: the joyent guest on b writes 256 KiB every 50 ms (5 MiB/s, within 8 MiB)
# over a 2 MiB/s link: the deltas cannot shrink; the passes end there.
echo "--rate-ms 50 --burst 256k --scratch-size 8M" >"$B/zones/$OS/data/workload.args"
check "start the fast-writing joyent VM on b" host_exec b "$VMADM" start $OS
check "its workload runs" wl_wait_records $(($(wl_records "$B/zones/$OS/data/workload.rec") + 20)) 30 \
	"$B/zones/$OS/data/workload.rec"
host_exec b "$VMADM" send $OS -I "$(host_ip a)" 9777 --json --timeout 10 --bwlimit 2M --max-passes 8 \
	>"$T/rule.events" 2>"$T/rule.err"
check_eq "stop rule: send -I exits 0" "0" "$(echo $? | grep -v '^0$' && tail -n 3 "$T/rule.err" | xargs; echo 0)"
echo "# stop rule: passes (pass bytes): $(passes "$T/rule.events" | xargs)"
echo "# stop rule: $($JSON -ga -c 'this.stop === true' reason <"$T/rule.events")"
check "stop rule: the passes ended because the delta stopped shrinking" \
	grep -q '"reason":"the delta stopped shrinking' "$T/rule.events"
check "stop rule: fewer passes than --max-passes" test "$(passes "$T/rule.events" | wc -l)" -lt 8
check_eq "stop rule: runs on a" running "$(host_exec a "$VMADM" get $OS | $JSON state)"
check "stop rule: stop it on a" host_exec a "$VMADM" stop $OS
"$BUILD/tools/vmadm-workload-check" --json "$A/zones/$OS/data/workload.rec" >"$T/o2.json"
check_eq "stop rule: joyent sequence still gap-free" "true 0" "$($JSON -f "$T/o2.json" -a ok gaps)"
t_done

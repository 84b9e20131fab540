#!/usr/bin/env bash
# vmadm send UUID -L HOST PORT between two hosts (network namespaces, each
# with its node, pool and vmadmd): a running kvm VM (kvm image, TCG) with
# two disks and the workload writing a record every 100 ms moves while it
# runs. The checker on the target shows no gap in the sequence numbers, one
# boot and one workload run (the guest never stopped), the largest gap in
# guest time; disk0's records and disk1's untouched data are byte-identical;
# the source VM is stopped with autoboot off and migrated_to; the target's
# VM has the same config; `vmadm delete` on the source works. Progress
# events of the disk and RAM phases carry QEMU's numbers; the result
# reports QEMU's downtime and the STOP -> RESUME pause.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
U=5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c01
OFFSET=33554432

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

comparable() {
	vm_get_comparable "$1" "$2" |
		$JSON -e 'delete this.state; delete this.zone_state; delete this.autoboot;
			delete this.migrated_to; delete this.accel; delete this.exit_status;
			delete this.exit_timestamp; delete this.boot_timestamp'
}

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "create kvm VM with two disks on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$U\", \"alias\": \"lv\", \"ram\": 128,
  \"autoboot\": true, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 64}]}' |
  VMADM_ROOT=$A $VMADM create"
# disk1 holds data the guest never touches: it must arrive as it is.
head -c 3000000 /dev/urandom | dd of="$A/zones/$U-disk1/disk.raw" bs=1M seek=7 conv=notrunc status=none
check "start the VM on a" host_exec a "$VMADM" start "$U"
check "workload writes records on a" wl_wait_records 20 90 --offset "$OFFSET" "$A/zones/$U-disk0/disk.raw"
comparable "$A" "$U" >"$T/config.a"
mac_a=$(on "$A" "$VMADM" get "$U" | $JSON nics 2>/dev/null)
sum1=$(sha256sum <"$A/zones/$U-disk1/disk.raw")

host_exec a "$VMADM" send "$U" -L "$IPB" "$HOSTS_PORT" --json --downtime-limit 300 --timeout 10 \
	>"$T/live.json" 2>"$T/live.err"
rc=$?
check_eq "send -L exits 0" 0 "$rc"
[ "$rc" = 0 ] || echo "# $(tail -n 5 "$T/live.err" | tr '\n' ' ')"
check "every --json line parses" $JSON -ga event <"$T/live.json"
check_grep "progress: the disk phase reported" -q '"phase":"disk"' "$T/live.json"
check "progress: the RAM phase with QEMU's numbers (transferred, remaining, dirty rate)" \
	sh -c "grep '\"phase\":\"ram\"' '$T/live.json' | grep -q '\"ram_transferred\":[1-9].*\"ram_remaining\":[0-9]*,\"dirty_rate\":'"
result=$(grep '"event":"result"' "$T/live.json")
echo "# result: $result"
rep() { echo "$result" | $JSON -e "this.r = this.report || this" r."$1"; }
downtime=$(rep downtime_ms)
pause=$(rep pause_ms)
echo "# QEMU downtime ${downtime} ms, guest paused (STOP->RESUME) ${pause} ms, total $(rep total_ms) ms"
# QEMU's downtime is its own measure of its stop, and the limit (300 ms) its
# target, not a bound: on a loaded machine the last round overshoots (CI
# once saw 423 ms). What the guest sees is checked next (the pause) and by
# the workload's records; this one only catches a gross error.
check "QEMU-reported downtime ($downtime ms) near the limit (300 ms): under 1 s" \
	test "${downtime:-9999}" -lt 1000
check "STOP->RESUME pause measured ($pause ms) and under 2 s" test "${pause:--1}" -ge 0 -a "${pause:-9999}" -lt 2000
check_eq "the result says running on b" running "$(echo "$result" | $JSON state)"

check_eq "VM runs on b" running "$(on "$B" "$VMADM" get "$U" | $JSON state)"
check_eq "source VM stopped" stopped "$(on "$A" "$VMADM" get "$U" | $JSON state)"
check_eq "source autoboot off" false "$(on "$A" "$VMADM" get "$U" | $JSON autoboot)"
check_eq "source migrated_to names b" "$IPB" "$(on "$A" "$VMADM" get "$U" | $JSON migrated_to.host)"
check_eq "target autoboot restored (true)" true "$(on "$B" "$VMADM" get "$U" | $JSON autoboot)"
comparable "$B" "$U" >"$T/config.b"
check "same config on b (UUID, MACs, disks...)" cmp "$T/config.a" "$T/config.b"
check_eq "same MACs on b" "$mac_a" "$(on "$B" "$VMADM" get "$U" | $JSON nics 2>/dev/null)"
lastA=$(wl_records --offset "$OFFSET" "$A/zones/$U-disk0/disk.raw")
check "workload goes on on b" wl_wait_records $((lastA + 20)) 30 --offset "$OFFSET" "$B/zones/$U-disk0/disk.raw"
check "no live leftovers on a (overlays, run dir)" sh -c "test ! -e '$A/zones/.live' && test ! -e '$A/run/$U'"
check "no key copy in b's run dir" test ! -e "$B/run/$U/tls"
check "stop the VM on b" host_exec b "$VMADM" stop "$U"

"$CHECK" --json --offset "$OFFSET" "$B/zones/$U-disk0/disk.raw" >"$T/check.json"
echo "# checker on b: $(cat "$T/check.json")"
check_eq "b disk0: no gap in sequence numbers" 0 "$($JSON gaps <"$T/check.json")"
check_eq "b disk0: no corrupt slot" 0 "$($JSON corrupt <"$T/check.json")"
check_eq "b disk0: no duplicate" 0 "$($JSON duplicates <"$T/check.json")"
check_eq "b disk0: records from seq 1" 1 "$($JSON first_seq <"$T/check.json")"
check_eq "guest never rebooted (one boot id)" 1 "$($JSON boots <"$T/check.json")"
check_eq "workload never restarted (one run id)" 1 "$($JSON runs <"$T/check.json")"
gap=$($JSON max_gap_ms_same_boot <"$T/check.json")
echo "# largest gap in guest time: $gap ms"
check "largest guest-time gap $gap ms < 2000 ms" test "${gap%.*}" -lt 2000
# disk0: the boot partition, the config sector and the records up to the
# switchover are byte-identical; after the records too.
upto=$((OFFSET + 512 * (lastA + 1)))
check "b disk0 byte-identical to a's up to record $lastA" \
	cmp -n "$upto" "$A/zones/$U-disk0/disk.raw" "$B/zones/$U-disk0/disk.raw"
lastB=$($JSON last_seq <"$T/check.json")
check "b disk0 identical after the records" \
	cmp -i $((OFFSET + 512 * (lastB + 1))) "$A/zones/$U-disk0/disk.raw" "$B/zones/$U-disk0/disk.raw"
check_eq "b disk1 byte-identical (untouched data)" "$sum1" "$(sha256sum <"$B/zones/$U-disk1/disk.raw")"
check "b: the VM starts again from its record's disk paths" host_exec b "$VMADM" start "$U"
check "b: and stops" host_exec b "$VMADM" stop "$U"
check "vmadm delete on a works" host_exec a "$VMADM" delete "$U"
check_eq "a: no dataset of the VM left" "" "$(ls "$A/zones" | grep "$U")"
t_done

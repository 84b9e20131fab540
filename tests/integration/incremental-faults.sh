#!/usr/bin/env bash
# vmadm send -I when the link between the hosts is cut: during pass 2 (the
# VM still runs on the source), and during the final pass (the source had
# stopped the VM). Either way the send fails, the VM runs on the source
# (restarted in the second case), the target holds only the last pass that
# landed (a held receive with an expiry, the VM "receiving" there), and a
# re-run continues from that pass (it sends less than the first pass) and
# completes, with no gap in the workload's sequence.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
KVM=9c1e3f20-5a6b-4c7d-8e9f-0a1b2c3d4e81
OFFSET=33554432
BOOT_WAIT=90

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
if ! hosts_make 2 1073741824 2>"$T/hosts.err"; then
	fail "hosts_make 2: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
A=$(host_root a)
B=$(host_root b)
IPB=$(host_ip b)
# b gives up on a silent source after 5 s (read per connection).
$JSON -I -f "$B/vmadm.conf" -e 'this.net_timeout = 5' >/dev/null 2>&1

# pass_bytes FILE N: pass N's bytes in a --json send's events.
pass_bytes() {
	$JSON -ga -c "this.pass === $2" pass_bytes <"$1" | tail -n 1
}
# wait_for SECS CMD...: until CMD succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}
# held_on_b: b holds a pass of the VM, with an expiry, and nothing else.
held_on_b() {
	[ "$($JSON -f "$B/recv/$KVM.json" phase 2>/dev/null)" = held ] &&
		[ -n "$($JSON -f "$B/recv/$KVM.json" expires 2>/dev/null)" ]
}
state_on() {
	host_exec "$1" "$VMADM" get $KVM 2>/dev/null | $JSON state
}

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "create kvm VM on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 256,
  \"autoboot\": true, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 16}]}' |
  VMADM_ROOT=$A $VMADM create"
# A guest that writes 256 KiB per 100 ms into its 16 MiB scratch area:
# every delta is several MiB, so each pass lasts a few seconds at 4 MiB/s.
wl_set_conf "$A/zones/$KVM-disk0/disk.raw" "burst=256k"
head -c 8000000 /dev/urandom | dd of="$A/zones/$KVM-disk1/disk.raw" bs=1M seek=2 conv=notrunc status=none
check "start kvm on a" host_exec a "$VMADM" start $KVM
check "kvm workload runs on a" wl_wait_records 10 "$BOOT_WAIT" --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw"

# rerun LABEL: send again (no bwlimit), check it completes from the held pass.
rerun() {
	local l=$1 first=$2
	host_exec a "$VMADM" send $KVM -I "$IPB" 9777 --json --timeout 10 >"$T/$l.events" 2>"$T/$l.err"
	local rc=$?
	check_eq "$l: the re-run exits 0" "0" "$rc$([ $rc = 0 ] || tail -n 2 "$T/$l.err" | xargs)"
	echo "# $l: re-run passes (pass bytes): $($JSON -ga -c 'this.pass !== undefined' pass pass_bytes <"$T/$l.events" | xargs)"
	check_eq "$l: the re-run continued from the held pass" true \
		"$($JSON -ga -c 'this.event === "result"' report.resumed <"$T/$l.events")"
	local p1
	p1=$(pass_bytes "$T/$l.events" 1)
	echo "# $l: the first run's pass 1 moved $first bytes"
	check "$l: its first pass is a delta, less than pass 1 of the first run ($p1 < $first)" \
		test "${p1:-999999999}" -lt "$first"
	check_eq "$l: runs on b" running "$(state_on b)"
	check_eq "$l: stopped with autoboot off on a" "stopped false" \
		"$(host_exec a "$VMADM" get $KVM | $JSON state autoboot | xargs)"
	check_eq "$l: no journal or temp left on b" "" "$(ls "$B/recv"; ls "$B/zones" | grep -F .recv)"
	check_eq "$l: no migration snapshots left" "" \
		"$(find "$A/zones/.snapshots" "$B/zones/.snapshots" -name '*vmadm-send*' 2>/dev/null)"
}

# 1. The link goes down during pass 2.
host_spawn a "$VMADM" send $KVM -I "$IPB" 9777 --json --timeout 5 --bwlimit 4M >"$T/cut2.events" 2>"$T/cut2.err"
pid=$HOST_PID
check "cut 2: pass 1 lands" wait_for 60 grep -q '"pass":1' "$T/cut2.events"
sleep 1
link_down a
wait $pid
rc=$?
link_up a
echo "# cut 2: $(tail -n 1 "$T/cut2.err")"
check "cut 2: the send fails" test "$rc" -ne 0
check_grep "cut 2: the failure names the network" -qiE "timed out|connection|network|peer|silent" "$T/cut2.err"
check_eq "cut 2: no pass 2 landed" "" "$(pass_bytes "$T/cut2.events" 2)"
check_eq "cut 2: the VM still runs on a" running "$(state_on a)"
check "cut 2: b holds pass 1 (held, with an expiry)" wait_for 30 held_on_b
check "cut 2: the held snapshot is pass 1's" sh -c "$JSON -f '$B/recv/$KVM.json' snapshot | grep -q -- '-1\$'"
check_eq "cut 2: b has the VM only as a receiving placeholder" receiving "$(state_on b)"
check_eq "cut 2: a keeps one migration snapshot per dataset (the acknowledged pass)" 1 \
	"$(find "$A/zones/.snapshots" -name '*vmadm-send-I*' -path "*$KVM-disk0*" | wc -l)"
rerun "cut 2" "$(pass_bytes "$T/cut2.events" 1)"

# Back to a for the second case (a plain -I send; the workload goes on).
check "delete the migrated copy on a" host_exec a "$VMADM" delete $KVM
check "back to a" host_exec b "$VMADM" send $KVM -I "$(host_ip a)" 9777 --timeout 10
check "delete the migrated copy on b" host_exec b "$VMADM" delete $KVM

# 2. The link goes down during the final pass (the VM is stopped by then).
host_spawn a "$VMADM" send $KVM -I "$IPB" 9777 --json --timeout 5 --bwlimit 4M --max-passes 1 \
	>"$T/cutf.events" 2>"$T/cutf.err"
pid=$HOST_PID
check "cut final: pass 1 lands" wait_for 60 grep -q '"pass":1' "$T/cutf.events"
# The final pass starts once the guest shut down (a clean shutdown under
# TCG: seconds when idle, up to the send's 60 s stop timeout on a loaded
# machine; CI once took more than 30 s).
check "cut final: the VM stops for the final pass" wait_for 90 sh -c \
	"grep -A1000 '\"pass\":1' '$T/cutf.events' | grep -q '\"phase\":\"send\"'"
sleep 1
link_down a
wait $pid
rc=$?
link_up a
echo "# cut final: $(tail -n 1 "$T/cutf.err")"
check "cut final: the send fails" test "$rc" -ne 0
check_eq "cut final: no final pass landed" "" "$(pass_bytes "$T/cutf.events" 2)"
check_eq "cut final: the VM was restarted on a" running "$(state_on a)"
check "cut final: its workload goes on on a" wl_wait_records \
	$(($(wl_records --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw") + 10)) "$BOOT_WAIT" \
	--offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw"
check "cut final: b holds pass 1 (held, with an expiry)" wait_for 30 held_on_b
check_eq "cut final: b has the VM only as a receiving placeholder" receiving "$(state_on b)"
rerun "cut final" "$(pass_bytes "$T/cutf.events" 1)"

check "stop kvm on b" host_exec b "$VMADM" stop $KVM
"$BUILD/tools/vmadm-workload-check" --json --offset "$OFFSET" "$B/zones/$KVM-disk0/disk.raw" >"$T/k.json"
check_eq "kvm: sequence gap-free across failures and moves" "true 0" "$($JSON -f "$T/k.json" -a ok gaps)"
t_done

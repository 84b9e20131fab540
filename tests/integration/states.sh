#!/usr/bin/env bash
# SmartOS states around a failed start: a VM whose QEMU dies while starting
# shows "failed" (with QEMU's own reason), can be started again once fixed,
# and a start refused for a missing dataset leaves it "stopped".
. "$(dirname "$0")/../lib/common.sh"

root=$(node_make n dir)
vmadm() { VMADM_ROOT=$root "$VMADM" "$@"; }
U=6c1f0e2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f

echo "{\"brand\": \"kvm\", \"uuid\": \"$U\", \"ram\": 64, \"cpu_type\": \"no-such-cpu\",
  \"disks\": [{\"size\": 16}]}" | vmadm create >/dev/null 2>&1
check_fails "start with a CPU model QEMU refuses" "no-such-cpu" vmadm start $U
check_eq "the VM is failed" failed "$(vmadm list -H -o state uuid=$U)"
check_eq "get agrees" failed "$(vmadm get $U | $JSON state)"
check_eq "nothing runs" "" "$(pgrep -f "qemu-system.*$U")"
check_fails "a failed VM may be started again (and fails again)" "no-such-cpu" vmadm start $U
check "fix the config" vmadm update $U cpu_type=qemu64
check "start works now" vmadm start $U
check_eq "the VM is running" running "$(vmadm list -H -o state uuid=$U)"
check "stop -F" vmadm stop $U -F
check_eq "stopped" stopped "$(vmadm get $U | $JSON state)"

# A missing dataset is refused before anything runs: stopped, not failed.
mv "$root/zones/$U-disk0" "$T/disk0.away"
check_fails "start without disk0 names it" "zones/$U-disk0" vmadm start $U
check_eq "still stopped" stopped "$(vmadm get $U | $JSON state)"
mv "$T/disk0.away" "$root/zones/$U-disk0"
check "delete" vmadm delete $U
t_done

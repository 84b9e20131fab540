#!/usr/bin/env bash
# The seed's Option 1 with running VMs: a kvm VM (two disks, disk0 from the
# kvm image, under TCG) and a joyent VM (from the joyent image, delegated
# dataset) run their workloads; `vmadm send | gzip > f` stops them;
# `gunzip -c f | vmadm receive` on a second node; every property of
# `vmadm get` equal but those that must change, datasets byte-identical; the
# VMs start on the second node and the workloads continue the sequence with
# no gap. kvm and joyent go through each step together.
. "$(dirname "$0")/../lib/common.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
KVM=7d1e3f20-5a6b-4c7d-8e9f-0a1b2c3d4e5f
OS=8e2f4031-6b7c-4d8e-9fa0-1b2c3d4e5f60
OFFSET=33554432
BOOT_WAIT=90

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi

A=$(node_make a btrfs 2147483648)
B=$(node_make b btrfs 2147483648)

# both CMD...: run CMD KVM and CMD OS at the same time; fails if either does.
both() {
	"$@" $KVM >"$T/both.k" 2>&1 &
	local pk=$!
	"$@" $OS >"$T/both.o" 2>&1
	local ro=$?
	wait $pk
	local rk=$?
	[ $rk -eq 0 ] && [ $ro -eq 0 ] || { cat "$T/both.k" "$T/both.o"; return 1; }
}

check "imgadm install kvm-test" on "$A" "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "imgadm install joyent-test" on "$A" "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
check "create kvm VM (two disks)" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 256,
  \"autoboot\": false, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 64}]}' |
  VMADM_ROOT=$A $VMADM create"
check "create joyent VM" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\",
  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true, \"autoboot\": false}' | VMADM_ROOT=$A $VMADM create"
head -c 5000000 /dev/urandom | dd of="$A/zones/$KVM-disk1/disk.raw" bs=1M seek=7 conv=notrunc status=none

check "start both on node a" both on "$A" "$VMADM" start
check "kvm workload runs on a" wl_wait_records 20 "$BOOT_WAIT" --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw"
check "joyent workload runs on a" wl_wait_records 20 30 "$A/zones/$OS/data/workload.rec"

# send | gzip > f, both VMs at once; send stops them.
send_one() (
	set -o pipefail
	VMADM_ROOT=$A "$VMADM" send "$1" 2>"$T/$1.send.err" | gzip >"$T/$1.tgz"
)
check "vmadm send | gzip of both running VMs" both send_one
check_eq "send stopped them on node a" "stopped stopped" \
	"$(on "$A" "$VMADM" get $KVM | $JSON state) $(on "$A" "$VMADM" get $OS | $JSON state)"
check_eq "no QEMU or container left running on a" "" \
	"$(pgrep -f "qemu-system-x86_64 -name $KVM"; lxc-ls -P "$A" --running 2>/dev/null | grep $OS)"
nk=$(wl_records --offset "$OFFSET" "$A/zones/$KVM-disk0/disk.raw")
no=$(wl_records "$A/zones/$OS/data/workload.rec")
echo "# source: $nk kvm records, $no joyent records"

recv_one() (
	set -o pipefail
	gunzip -c "$T/$1.tgz" | VMADM_ROOT=$B "$VMADM" receive
)
check "gunzip -c f | vmadm receive on node b, both" both recv_one

for u in $KVM $OS; do
	check_eq "vmadm get of $u equal on both nodes" "$(vm_get_comparable "$A" $u)" "$(vm_get_comparable "$B" $u)"
done
for d in disk0 disk1; do
	check_eq "kvm $d byte-identical" "$(sha256sum <"$A/zones/$KVM-$d/disk.raw")" \
		"$(sha256sum <"$B/zones/$KVM-$d/disk.raw" 2>&1)"
done
check_eq "joyent root tree identical" "$(tree_hash "$A/zones/$OS/root")" "$(tree_hash "$B/zones/$OS/root")"
check_eq "joyent data tree identical" "$(tree_hash "$A/zones/$OS/data")" "$(tree_hash "$B/zones/$OS/data")"
check_eq "no send snapshots left on either node" "" \
	"$(find "$A/zones/.snapshots" "$B/zones/.snapshots" -name '*vmadm-send*' 2>/dev/null)"

# The VMs start on node b and their workloads go on from the last record.
check "start both on node b" both on "$B" "$VMADM" start
check_eq "both run on node b" "running running" \
	"$(on "$B" "$VMADM" get $KVM | $JSON state) $(on "$B" "$VMADM" get $OS | $JSON state)"
check "kvm workload continues on b" wl_wait_records $((nk + 15)) "$BOOT_WAIT" --offset "$OFFSET" "$B/zones/$KVM-disk0/disk.raw"
check "joyent workload continues on b" wl_wait_records $((no + 15)) 30 "$B/zones/$OS/data/workload.rec"
check "stop both on node b" both on "$B" "$VMADM" stop
"$CHECK" --json --offset "$OFFSET" "$B/zones/$KVM-disk0/disk.raw" >"$T/k.json"
"$CHECK" --json "$B/zones/$OS/data/workload.rec" >"$T/o.json"
check_eq "kvm: sequence gap-free across the move, two boots" "true 0 2" \
	"$($JSON -f "$T/k.json" -a ok gaps boots)"
check "kvm: the sequence went on past the source's last record ($nk)" \
	test "$($JSON -f "$T/k.json" last_seq)" -gt "$nk"
check_eq "joyent: sequence gap-free across the move, two runs" "true 0 2" \
	"$($JSON -f "$T/o.json" -a ok gaps runs)"
check "joyent: the sequence went on past the source's last record ($no)" \
	test "$($JSON -f "$T/o.json" last_seq)" -gt "$no"
echo "# kvm: $($JSON -f "$T/k.json" records) records, outage $($JSON -f "$T/k.json" max_gap_ms_boot_change) ms;" \
	"joyent: $($JSON -f "$T/o.json" records) records"
t_done

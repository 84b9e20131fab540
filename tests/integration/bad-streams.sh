#!/usr/bin/env bash
# Bad streams: `vmadm receive` must refuse each with a non-zero exit and a
# message naming what is wrong, and leave nothing on the receiver (no record,
# dataset, temporary name or journal). Truncations, flipped bytes, forged
# headers (made with vmadm-stream rewrite, so that the intended defect is the
# only one), an existing UUID, a pool too small; a receive killed in the
# middle or after verification; send into a closed pipe and a failing
# `btrfs send`.
. "$(dirname "$0")/../lib/common.sh"

VMSTREAM=${VMSTREAM_BIN:-$BUILD/tools/vmadm-stream}
A=$(node_make a btrfs 1073741824)
B=$(node_make b btrfs 1073741824)
P=$(node_make p btrfs 268435456)
KVM=4a1b2c3d-2222-4222-8333-444455556666
OS=5b2c3d4e-2222-4222-8333-444455556666
BIG=6c3d4e5f-2222-4222-8333-444455556666
OTHER=11111111-2222-4333-8444-555555555555

# rec_off FILE DATASET TYPE N: byte offset of the Nth record of TYPE inside
# DATASET ("-disk0", "" for the VM's own, "*" for any), from the dump.
rec_off() {
	"$VMSTREAM" dump "$1" | awk -v ds="$2" -v ty="$3" -v n="$4" '
		$3 == "DS_BEGIN" { match($0, /name "[^"]*"/); cur = substr($0, RSTART + 6, RLENGTH - 7) }
		$3 == ty && (ds == "*" || cur == ds) { if (++k == n) { print $1; exit } }'
}

# flip FILE OFFSET OUT: copy FILE to OUT with the byte at OFFSET inverted.
flip() {
	cp "$1" "$3"
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1)
f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' "$3" "$2"
}

# refused NAME WANT FILE: receiving FILE on B fails saying WANT, B stays clean.
refused() {
	check_fails "$1: refused" "$2" sh -c "VMADM_ROOT=$B $VMADM receive < $3"
	check_eq "$1: receiver clean" "" "$(leftovers "$B")"
}

setup() {
	echo "{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 128,
	  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 32}]}" | on "$A" "$VMADM" create || return 1
	echo "{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\", \"delegate_dataset\": true}" |
		on "$A" "$VMADM" create || return 1
	head -c 9000000 /dev/urandom | dd of="$A/zones/$KVM-disk0/disk.raw" bs=1M seek=4 conv=notrunc status=none
	head -c 2000000 /dev/urandom | dd of="$A/zones/$KVM-disk1/disk.raw" bs=1M seek=1 conv=notrunc status=none
	mkdir -p "$A/zones/$OS/root/etc"
	for i in 1 2 3 4 5 6; do head -c 700000 /dev/urandom >"$A/zones/$OS/root/etc/f$i"; done
	echo data >"$A/zones/$OS/data/file"
	on "$A" "$VMADM" send $KVM >"$T/kvm.vms" && on "$A" "$VMADM" send --portable $OS >"$T/os.vms" &&
		"$VMSTREAM" dump "$T/kvm.vms" >/dev/null && "$VMSTREAM" dump "$T/os.vms" >/dev/null
}
check "make VMs and streams on node a (dump says they are valid)" setup
disk_sums() { sha256sum "$A/zones/$KVM-disk0/disk.raw" "$A/zones/$KVM-disk1/disk.raw"; }
SUMS=$(disk_sums)

# 1. Truncated at several offsets.
cfg=$(rec_off "$T/kvm.vms" "*" CONFIG 1)
d0=$(rec_off "$T/kvm.vms" -disk0 DS_DATA 3)
tar=$(rec_off "$T/os.vms" "" DS_DATA 2)
end=$(rec_off "$T/kvm.vms" "*" END 1)
check "dump finds the records" test -n "$cfg" -a -n "$d0" -a -n "$tar" -a -n "$end"
head -c $((cfg + 32 + 20)) "$T/kvm.vms" >"$T/t1.vms"
refused "truncated inside CONFIG" "the payload of record 1 (type CONFIG) is incomplete" "$T/t1.vms"
head -c $((d0 + 32 + 5000)) "$T/kvm.vms" >"$T/t2.vms"
refused "truncated inside a volume's DS_DATA" "(inside dataset zones/$KVM-disk0)" "$T/t2.vms"
head -c $((tar + 32 + 300000)) "$T/os.vms" >"$T/t3.vms"
refused "truncated inside a tar dataset" "stream truncated at byte $((tar + 32 + 300000)) (inside dataset zones/$OS)" "$T/t3.vms"
head -c "$end" "$T/kvm.vms" >"$T/t4.vms"
refused "truncated just before END" "it ends before its END record" "$T/t4.vms"
head -c $((end + 32)) "$T/kvm.vms" >"$T/t5.vms"
refused "truncated after END's header" "the payload of record" "$T/t5.vms"

# 2. One flipped byte in a data chunk, a header, the config.
flip "$T/kvm.vms" $((d0 + 32 + 777)) "$T/f1.vms"
refused "flipped byte in a data chunk" "checksum mismatch in record" "$T/f1.vms"
check_fails "flipped data: the message names the dataset" "inside dataset zones/$KVM-disk0" \
	sh -c "VMADM_ROOT=$B $VMADM receive < $T/f1.vms"
flip "$T/kvm.vms" $((d0 + 9)) "$T/f2.vms"
refused "flipped byte in a header" "checksum mismatch in the header of record" "$T/f2.vms"
flip "$T/kvm.vms" $((cfg + 32 + 10)) "$T/f3.vms"
refused "flipped byte in the config" "(type CONFIG) at byte $cfg" "$T/f3.vms"

# 3. Forged with vmadm-stream rewrite: the intended defect is the only one.
forge() { "$VMSTREAM" rewrite "$@" <"$T/kvm.vms" >"$T/forged.vms"; }
forge --magic NOTVMADM
refused "wrong magic" 'bad magic "NOTVMADM"' "$T/forged.vms"
forge --version 2
refused "future version" "stream format version 2 is newer than this vmadm reads" "$T/forged.vms"
forge --required-features 4
refused "unknown required feature" "stream requires unknown features 0x4" "$T/forged.vms"
forge --dataset-name "-disk1=/../$OTHER"
refused "dataset name outside the VM" "dataset name \"/../$OTHER\" leaves zones/$KVM" "$T/forged.vms"
forge --dataset-name "-disk1=-disk01"
refused "dataset name not of the VM's shape" "does not belong to VM $KVM" "$T/forged.vms"
seq=$("$VMSTREAM" dump "$T/kvm.vms" | awk -v o="$d0" '$1 == o {print $2}')
forge --length "$seq=4611686018427387904"
refused "declared length of 2^62" "declares a payload of 4611686018427387904 bytes, more than the 4194304 allowed" "$T/forged.vms"
forge --config-set 'uuid="not-a-uuid"'
refused "config without a valid uuid" 'the config has no valid "uuid"' "$T/forged.vms"
check "the forged streams differ only where intended (rewrite of a no-op change is valid)" \
	sh -c "'$VMSTREAM' rewrite --config-set 'alias=\"k\"' < $T/kvm.vms | '$VMSTREAM' dump >/dev/null"
head -c 1500000 /dev/urandom >"$T/newdata"
check "rewrite --dataset-data: a valid stream whose -disk1 carries the new bytes" \
	sh -c "'$VMSTREAM' rewrite --dataset-data '-disk1=$T/newdata' < $T/kvm.vms | '$VMSTREAM' dump |
		grep -q 'DS_END .* bytes 1500000 xxh3-128 [0-9a-f.]* ok'"

# 4. An existing UUID: refused, the VM there untouched, nothing else left.
check "receive the kvm VM once" sh -c "VMADM_ROOT=$B $VMADM receive < $T/kvm.vms"
before=$(leftovers "$B"; sha256sum "$B/zones/$KVM-disk0/disk.raw")
check_fails "existing UUID refused" "VM $KVM already exists on this node" \
	sh -c "VMADM_ROOT=$B $VMADM receive < $T/kvm.vms"
check_eq "existing UUID: the VM there untouched, nothing added" "$before" \
	"$(leftovers "$B"; sha256sum "$B/zones/$KVM-disk0/disk.raw")"
on "$B" "$VMADM" delete $KVM >/dev/null 2>&1
check_eq "receiver clean after delete" "" "$(leftovers "$B")"

# 5. A pool too small for the data: 256 MiB pool (btrfs's least), a disk with ~300 MiB.
big() {
	echo "{\"brand\": \"kvm\", \"uuid\": \"$BIG\", \"ram\": 128, \"disks\": [{\"size\": 320, \"boot\": true}]}" |
		on "$A" "$VMADM" create || return 1
	head -c 300000000 /dev/urandom | dd of="$A/zones/$BIG-disk0/disk.raw" conv=notrunc status=none
	on "$A" "$VMADM" send $BIG >"$T/big.vms"
}
check "make a VM with 300 MiB of data" big
check_fails "pool too small: names the dataset" "zones/$BIG-disk0 needs" sh -c "VMADM_ROOT=$P $VMADM receive < $T/big.vms"
cp "$T/.check.out" "$T/small.out"
check "pool too small: names both sizes ($(grep -o 'needs.*' "$T/small.out"))" \
	grep -Eq "needs [0-9.]+ [MG]iB but pool .* has [0-9.]+ [MG]iB free" "$T/small.out"
check_eq "pool too small: receiver clean" "" "$(leftovers "$P")"
on "$A" "$VMADM" delete $BIG >/dev/null 2>&1
rm -f "$T/big.vms"
# ... but a sparse disk counts by its data ("used" in DS_BEGIN), not its size:
# a 512 MiB disk with 16 MiB written fits the 256 MiB pool.
sparse() {
	echo "{\"brand\": \"kvm\", \"uuid\": \"$BIG\", \"ram\": 128, \"disks\": [{\"size\": 512, \"boot\": true}]}" |
		on "$A" "$VMADM" create || return 1
	head -c 16777216 /dev/urandom | dd of="$A/zones/$BIG-disk0/disk.raw" bs=1M seek=100 conv=notrunc status=none
	on "$A" "$VMADM" send $BIG >"$T/sparse.vms"
}
check "make a VM with a 512 MiB disk holding 16 MiB" sparse
check "sparse disk larger than the pool's free space: received" \
	sh -c "VMADM_ROOT=$P $VMADM receive < $T/sparse.vms"
on "$P" "$VMADM" delete $BIG >/dev/null 2>&1
on "$A" "$VMADM" delete $BIG >/dev/null 2>&1
check_eq "sparse receive deleted: receiver clean" "" "$(leftovers "$P")"
rm -f "$T/sparse.vms"

# 6. receive killed with SIGKILL inside a dataset: the next command removes
# the partial receive.
cut=$((d0 + 32 + 100000))
(head -c $cut "$T/kvm.vms"; sleep 4; tail -c +$((cut + 1)) "$T/kvm.vms") 2>/dev/null |
	VMADM_ROOT=$B "$VMADM" receive >/dev/null 2>&1 &
rpid=$!
T_PIDS+=("$rpid")
sleep 2
check "a journal exists while the receive runs" test -n "$(ls "$B/recv" 2>/dev/null)"
kill -KILL "$rpid"
wait "$rpid" 2>/dev/null
sleep 1
check_fails "the next command removes the partial receive" "removed the partial receive of VM $KVM" \
	sh -c "VMADM_ROOT=$B $VMADM list >/dev/null && false"
check_eq "killed receive: receiver clean" "" "$(leftovers "$B")"

# 7. receive killed after verification: the next command finishes it.
VMADM_FAULT=receive-before-commit VMADM_ROOT=$B "$VMADM" receive <"$T/kvm.vms" >/dev/null 2>&1
check_eq "receive killed at receive-before-commit" 137 "$?"
check_fails "the next command finishes the receive" "finished the interrupted receive of VM $KVM" \
	sh -c "VMADM_ROOT=$B $VMADM list >/dev/null && false"
check_eq "finished receive: the VM is installed" stopped "$(on "$B" "$VMADM" get $KVM | $JSON state)"
check_eq "finished receive: disks identical" "$(cut -d' ' -f1 <<<"$SUMS")" \
	"$(sha256sum "$B/zones/$KVM-disk0/disk.raw" "$B/zones/$KVM-disk1/disk.raw" | cut -d' ' -f1)"
check_eq "finished receive: no temps or journal" "" "$(ls "$B/recv"; ls "$B/zones" | grep -F .recv)"
on "$B" "$VMADM" delete $KVM >/dev/null 2>&1

# 8. Sender side: a closed pipe, a failing `btrfs send`.
on "$A" "$VMADM" send $KVM 2>"$T/send.err" | head -c 1000 >/dev/null
check_eq "send into a closed pipe fails" "1" "$([ "${PIPESTATUS[0]}" -ne 0 ] && echo 1)"
check_grep "send into a closed pipe: the message says so" -q "closed the pipe" "$T/send.err"
check_eq "closed pipe: the source VM intact" "stopped $SUMS" "$(on "$A" "$VMADM" get $KVM | $JSON state) $(disk_sums)"
check_eq "closed pipe: the snapshots removed" "" "$(find "$A/zones/.snapshots" -name '*vmadm-send*')"
mkdir -p "$T/wrap"
cat >"$T/wrap/btrfs" <<'EOF'
#!/bin/sh
if [ "$1" = send ]; then
	echo "ERROR: simulated failure of btrfs send" >&2
	exit 1
fi
exec /usr/bin/env PATH="$REAL_PATH" btrfs "$@"
EOF
chmod +x "$T/wrap/btrfs"
check_fails "a failing btrfs send: error with the tool's stderr" "simulated failure of btrfs send" \
	sh -c "REAL_PATH='$PATH' PATH='$T/wrap:$PATH' VMADM_ROOT=$A $VMADM send $KVM > $T/fail.vms"
check_eq "failing btrfs send: the source VM intact" "stopped $SUMS" "$(on "$A" "$VMADM" get $KVM | $JSON state) $(disk_sums)"
check_eq "failing btrfs send: the snapshots removed" "" "$(find "$A/zones/.snapshots" -name '*vmadm-send*')"
pre=$(leftovers "$B") # empty, unless an earlier case left something (reported there)
check_fails "the stream of a failed send is refused" "stream truncated" sh -c "VMADM_ROOT=$B $VMADM receive < $T/fail.vms"
check_eq "failed send's stream: receiver clean" "$pre" "$(leftovers "$B")"
t_done

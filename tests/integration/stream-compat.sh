#!/usr/bin/env bash
# Stream versions: a later vmadm reads an older stream (docs/stream-format.md,
# section 5). tests/integration/data/v1-sha256-kvm.vms was written by vmadm
# before the "xxh3" feature (SHA-256 dataset hashes): it must still receive,
# on a dir and on a btrfs pool, with every byte. Streams written today carry
# the "xxh3" required feature, and that bit decides how DS_END is checked.
. "$(dirname "$0")/../lib/common.sh"

VMSTREAM=${VMSTREAM_BIN:-$BUILD/tools/vmadm-stream}
OLD=$TOP/tests/integration/data/v1-sha256-kvm.vms
U=5a5a0001-0000-4000-8000-000000000001
SUM0=26fee7b5e2d9052e6691085659a224224c910b5310868514bae6a3ae2ffaacdf
SUM1=0a3e9c96a7252d0ceb91bb44465257e0505b0f873b4246ba6ff2a6472354ccc2
D=$(node_make d dir 1073741824)
B=$(node_make b btrfs 1073741824)
C=$(node_make c btrfs 1073741824)

# dump_says LABEL FILE FEATURES HASH: vmadm-stream dump finds FILE valid,
# with required features FEATURES and 3 datasets whose DS_END is HASH.
dump_says() {
	"$VMSTREAM" dump "$2" >"$T/dump" 2>&1
	check_grep "$1: dump finds it valid" -q "every checksum and hash matches" "$T/dump"
	check_eq "$1: required features $3" "1" "$(grep -c "BEGIN .*required $3 " "$T/dump")"
	check_eq "$1: its 3 DS_END records say $4" "3" "$(grep -c "DS_END .* $4 .* ok\$" "$T/dump")"
}

dump_says "old stream" "$OLD" 0x1 sha256

# received_ok ROOT LABEL: the fixture's VM on ROOT, every byte as written.
received_ok() {
	local root=$1 l=$2
	check_eq "$l: state" "stopped" "$(on "$root" "$VMADM" get $U | $JSON state)"
	check_eq "$l: alias" "v1-fixture" "$(on "$root" "$VMADM" get $U | $JSON alias)"
	check_eq "$l: disk0" "$SUM0" "$(sha256sum <"$root/zones/$U-disk0/disk.raw" | cut -d' ' -f1)"
	check_eq "$l: disk1" "$SUM1" "$(sha256sum <"$root/zones/$U-disk1/disk.raw" | cut -d' ' -f1)"
	check_eq "$l: root/etc/motd" "hello" "$(cat "$root/zones/$U/root/etc/motd" 2>&1)"
}

check "old stream: received on a dir pool" sh -c "VMADM_ROOT=$D $VMADM receive < $OLD"
received_ok "$D" "old stream on dir"
check "old stream: received on a btrfs pool" sh -c "VMADM_ROOT=$B $VMADM receive < $OLD"
received_ok "$B" "old stream on btrfs"

# Today's writer: native and portable streams declare xxh3 and carry it.
on "$B" "$VMADM" send $U >"$T/new.vms" 2>"$T/send.err"
check_eq "new stream: sent" "0" "$?"
dump_says "new stream" "$T/new.vms" 0x2 xxh3-128
on "$D" "$VMADM" send --portable -z $U >"$T/new-z.vms" 2>/dev/null
dump_says "new portable -z stream" "$T/new-z.vms" 0x3 xxh3-128

check "new stream: received on another btrfs pool" sh -c "VMADM_ROOT=$C $VMADM receive < $T/new.vms"
received_ok "$C" "new stream on btrfs"

# The feature bit is what says XXH3: the same stream with the bit cleared
# (every CRC and the END hash recomputed) is read as SHA-256 and refused at
# its first DS_END, naming the dataset; the receiver stays clean.
"$VMSTREAM" rewrite --required-features 0 <"$T/new.vms" >"$T/nobit.vms"
E=$(node_make e btrfs 1073741824)
check_fails "xxh3 bit cleared: refused" "dataset zones/$U: data hash mismatch (DS_END record" \
	sh -c "VMADM_ROOT=$E $VMADM receive < $T/nobit.vms"
check_eq "xxh3 bit cleared: receiver clean" "" "$(leftovers "$E")"

t_done

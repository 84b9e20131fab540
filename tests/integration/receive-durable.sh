#!/usr/bin/env bash
# A receive puts the data on disk before it calls the VM complete: the
# sender may delete its copy the moment `vmadm receive` (or the target of a
# direct send) says so, and a power cut right after must not lose the VM.
# Checked on the system calls (strace -f, so btrfs receive's writes count):
# after the last write into the pool's datasets comes a syncfs of the pool,
# and only then are the received datasets renamed into place; the same for
# the install that ends an -I migration.
. "$(dirname "$0")/../lib/common.sh"

OLD=$TOP/tests/integration/data/v1-sha256-kvm.vms
U=5a5a0001-0000-4000-8000-000000000001
A=$(node_make a btrfs 1073741824)

check "make a VM from the kept stream" sh -c "VMADM_ROOT=$A $VMADM receive < $OLD"
on "$A" "$VMADM" send $U >"$T/native.vms" 2>/dev/null
on "$A" "$VMADM" send --portable $U >"$T/portable.vms" 2>/dev/null

# synced TRACE ROOT WRITES: "synced" when TRACE (strace -f -y) has a syncfs of
# ROOT/zones after the last data write into it (WRITES=1: there must be
# some) and before the first rename of a received dataset into place (they
# wait under temporary names "zones/UUID.recv*"); else what it found.
synced() {
	awk -v z="$2/zones" -v t="$2/zones/$U.recv" -v need="$3" '
		/ (write|pwrite64)\(/ && index($0, "<" z "/") { last_write = NR }
		/ syncfs\(/ && index($0, "<" z ">") { sync[NR] = 1 }
		/ rename(at2?)?\(/ && index($0, "\"" t) && !first_rename { first_rename = NR }
		END {
			ok = 0
			for (n in sync) if (n + 0 > last_write && n + 0 < first_rename) ok = 1
			printf "%s\n", ((last_write || !need) && first_rename && ok) ? "synced" : \
				"last write " last_write ", first rename " first_rename ", no syncfs between"
		}' "$1"
}

TRACE="strace -f -y -o $T/trace -e trace=syncfs,write,pwrite64,rename,renameat,renameat2"

# synced_before_commit LABEL POOL_TYPE STREAM
synced_before_commit() {
	local l=$1 root
	root=$(node_make "n$2$RANDOM" "$2" 1073741824)
	$TRACE env VMADM_ROOT="$root" "$VMADM" receive <"$3" >/dev/null 2>&1
	check_eq "$l: received" "stopped" "$(on "$root" "$VMADM" get $U | $JSON state)"
	check_eq "$l: syncfs after the last data write, before the datasets go into place" \
		"synced" "$(synced "$T/trace" "$root" 1)"
}

synced_before_commit "native stream, btrfs pool" btrfs "$T/native.vms"
synced_before_commit "portable stream, dir pool" dir "$T/portable.vms"
synced_before_commit "portable stream, btrfs pool" btrfs "$T/portable.vms"

# -I: the passes are held on the target; the install that ends the
# migration syncs before it puts the datasets in place.
OPS=$BUILD/tests/integration/incr-ops
B=$(node_make b btrfs 1073741824)
check "-I: snapshot" on "$A" "$OPS" snapshot $U vmadm-send-I1-x
on "$A" "$OPS" send $U - vmadm-send-I1-x >"$T/p1" 2>/dev/null
check "-I: pass 1 held on the target" sh -c "VMADM_ROOT=$B $OPS receive < $T/p1"
check_eq "-I: finish" "stopped" "$($TRACE env VMADM_ROOT="$B" "$OPS" finish $U 2>&1)"
check_eq "-I: syncfs before the datasets go into place" "synced" "$(synced "$T/trace" "$B" 0)"

t_done

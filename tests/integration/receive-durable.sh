#!/usr/bin/env bash
# A receive puts the data on disk before it calls the VM complete: the
# sender may delete its copy the moment `vmadm receive` (or the target of a
# direct send) says so, and a power cut right after must not lose the VM.
# Checked on the system calls (strace -f, so btrfs receive's writes count):
# after the last write into the pool's datasets comes a syncfs of the pool,
# and only then are the received datasets renamed into place.
. "$(dirname "$0")/../lib/common.sh"

OLD=$TOP/tests/integration/data/v1-sha256-kvm.vms
U=5a5a0001-0000-4000-8000-000000000001
A=$(node_make a btrfs 1073741824)

check "make a VM from the kept stream" sh -c "VMADM_ROOT=$A $VMADM receive < $OLD"
on "$A" "$VMADM" send $U >"$T/native.vms" 2>/dev/null
on "$A" "$VMADM" send --portable $U >"$T/portable.vms" 2>/dev/null

# synced_before_commit LABEL POOL_TYPE STREAM
synced_before_commit() {
	local l=$1 root
	root=$(node_make "n$2$RANDOM" "$2" 1073741824)
	strace -f -y -o "$T/trace" -e trace=syncfs,write,pwrite64,rename,renameat,renameat2 \
		env VMADM_ROOT="$root" "$VMADM" receive <"$3" >/dev/null 2>&1
	check_eq "$l: received" "stopped" "$(on "$root" "$VMADM" get $U | $JSON state)"
	# line numbers: the last data write into zones/, the first rename of
	# a received dataset into place, the syncfs of zones between them
	# (the received datasets wait under temporary names "zones/UUID.recv*")
	awk -v z="$root/zones" -v t="$root/zones/$U.recv" '
		/ (write|pwrite64)\(/ && index($0, "<" z "/") { last_write = NR }
		/ syncfs\(/ && index($0, "<" z ">") { sync[NR] = 1 }
		/ rename(at2?)?\(/ && index($0, "\"" t) && !first_rename { first_rename = NR }
		END {
			ok = 0
			for (n in sync) if (n + 0 > last_write && n + 0 < first_rename) ok = 1
			printf "%s\n", (last_write && first_rename && ok) ? "synced" : \
				"last write " last_write ", first rename " first_rename ", no syncfs between"
		}' "$T/trace" >"$T/verdict"
	check_eq "$l: syncfs after the last data write, before the datasets go into place" \
		"synced" "$(cat "$T/verdict")"
}

synced_before_commit "native stream, btrfs pool" btrfs "$T/native.vms"
synced_before_commit "portable stream, dir pool" dir "$T/portable.vms"
synced_before_commit "portable stream, btrfs pool" btrfs "$T/portable.vms"

t_done

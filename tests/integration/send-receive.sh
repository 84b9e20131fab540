#!/usr/bin/env bash
# vmadm send / receive of stopped VMs between nodes: through gzip, btrfs to
# btrfs (native), btrfs <-> dir (--portable), with -z; the SmartOS low-level
# flow with `json` and `vmadm install`; refusals that name the flag to use.
. "$(dirname "$0")/../lib/common.sh"

A=$(node_make a btrfs 1073741824)
B=$(node_make b btrfs 1073741824)
C=$(node_make c dir)
KVM=4a1b2c3d-1111-4222-8333-444455556666
OS=5b2c3d4e-1111-4222-8333-444455556666

# make_vms ROOT: a kvm VM with two disks holding data and holes, and a
# joyent VM whose root and data dataset hold a varied tree.
make_vms() {
	local root=$1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 128,
	  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 32}],
	  \"customer_metadata\": {\"a\": \"b\"}}" | on "$root" "$VMADM" create || return 1
	echo "{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\", \"delegate_dataset\": true,
	  \"tags\": {\"t\": 1}}" | on "$root" "$VMADM" create || return 1
	local d0=$root/zones/$KVM-disk0/disk.raw d1=$root/zones/$KVM-disk1/disk.raw
	head -c 3000000 /dev/urandom | dd of="$d0" bs=1M seek=5 conv=notrunc status=none
	head -c 1000000 /dev/urandom | dd of="$d0" bs=1M seek=40 conv=notrunc status=none
	echo "end of disk1" | dd of="$d1" bs=1 seek=$((32 * 1048576 - 13)) conv=notrunc status=none
	local r=$root/zones/$OS/root data=$root/zones/$OS/data
	mkdir -p "$r/etc" "$r/bin" "$r/var/empty"
	echo "hostname" >"$r/etc/hostname"
	head -c 200000 /dev/urandom >"$r/bin/prog"
	chmod 4755 "$r/bin/prog"
	ln -s ../bin/prog "$r/etc/link"
	ln "$r/bin/prog" "$r/bin/hardlink"
	chown 1234:5678 "$r/etc/hostname"
	mkfifo "$r/var/fifo"
	truncate -s 50M "$r/var/sparse"
	echo tail | dd of="$r/var/sparse" bs=1 seek=$((20 * 1048576)) conv=notrunc status=none
	echo "payload" >"$data/file"
	mkdir -p "$data/sub"
	head -c 70000 /dev/urandom >"$data/sub/bin"
	# extended attributes: user, trusted, on a directory, and a file
	# capability (cap_net_raw+ep), which a chown after it would drop
	setfattr -n user.tag -v "a tag" "$r/etc/hostname"
	setfattr -n trusted.t -v 1 "$data/sub/bin"
	setfattr -n user.dir -v d "$r/var/empty"
	setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 "$r/bin/prog"
}

# same_vms FROM TO LABEL: records and data equal on both nodes.
same_vms() {
	local from=$1 to=$2 l=$3 u
	for u in $KVM $OS; do
		check_eq "$l: vmadm get of $u equal" "$(vm_get_comparable "$from" $u)" "$(vm_get_comparable "$to" $u)"
	done
	check_eq "$l: state is stopped" stopped "$(on "$to" "$VMADM" get $KVM | $JSON state)"
	for d in disk0 disk1; do
		check_eq "$l: $d byte-identical" "$(sha256sum <"$from/zones/$KVM-$d/disk.raw")" \
			"$(sha256sum <"$to/zones/$KVM-$d/disk.raw" 2>&1)"
	done
	check "$l: disk0 stays sparse" test "$(stat -c %b "$to/zones/$KVM-disk0/disk.raw")" -lt 40000
	check_eq "$l: joyent root tree equal" "$(tree_hash "$from/zones/$OS/root")" "$(tree_hash "$to/zones/$OS/root")"
	check_eq "$l: joyent data tree equal" "$(tree_hash "$from/zones/$OS/data")" "$(tree_hash "$to/zones/$OS/data")"
	check "$l: hard link kept" test "$(stat -c %h "$to/zones/$OS/root/bin/prog")" = 2
	check "$l: sparse file kept sparse" test "$(stat -c %b "$to/zones/$OS/root/var/sparse")" -lt 2000
	check_eq "$l: extended attributes kept" \
		"$(tree_xattrs "$from/zones/$OS/root"; tree_xattrs "$from/zones/$OS/data")" \
		"$(tree_xattrs "$to/zones/$OS/root"; tree_xattrs "$to/zones/$OS/data")"
	check_eq "$l: the file capability kept" 0x0100000200200000000000000000000000000000 \
		"$(getfattr --absolute-names -e hex -n security.capability "$to/zones/$OS/root/bin/prog" 2>&1 | sed -n 's/^security.capability=//p')"
	check_eq "$l: no temp datasets or journals" "" "$(ls "$to/zones" | grep -F .recv; ls "$to/recv")"
}

# clear_node ROOT: delete both VMs.
clear_node() {
	on "$1" "$VMADM" delete $KVM >/dev/null 2>&1
	on "$1" "$VMADM" delete $OS >/dev/null 2>&1
}

check "make VMs on node a (btrfs)" make_vms "$A"

# 1. The seed's Option 1: send | gzip > file; gunzip -c file | receive.
for u in $KVM $OS; do
	on "$A" "$VMADM" send $u 2>"$T/send.err" | gzip >"$T/$u.tgz"
	check_eq "send $u through gzip exits 0" "0 0" "${PIPESTATUS[*]}"
	check "receive $u from gunzip" sh -c "gunzip -c $T/$u.tgz | VMADM_ROOT=$B $VMADM receive"
done
check_eq "send left the source VMs" "$KVM $OS" "$(on "$A" "$VMADM" list -H -o uuid | xargs)"
check_eq "send removed its snapshots" "" "$(find "$A/zones/.snapshots" -name '@vmadm-send-*')"
same_vms "$A" "$B" "btrfs->btrfs gzip"
check_eq "received datasets are subvolumes" 5 "$(btrfs subvolume list "$B/zones" | grep -v "\.snapshots" | grep -c -e "$KVM" -e "$OS")"
check_eq "receiver kept no send snapshots" "" "$(find "$B/zones/.snapshots" -name '@vmadm-send-*')"

# A stream that cannot be written (a full disk) fails the send, saying so,
# and leaves the source as it was: no send snapshot.
check_fails "send $OS > /dev/full fails, naming the write" "No space left" \
	sh -c "VMADM_ROOT=$A $VMADM send $OS >/dev/full"
check_eq "send > /dev/full left no snapshot, and the VM" \
	"$OS" "$(find "$A/zones/.snapshots" -name '@vmadm-send-*'; on "$A" "$VMADM" list -H -o uuid | grep "$OS")"

# 2. An existing UUID is refused, -f replaces a stopped VM.
check_fails "existing UUID refused" "VM $KVM already exists on this node (use -f" \
	sh -c "gunzip -c $T/$KVM.tgz | VMADM_ROOT=$B $VMADM receive"
check "receive -f replaces the stopped VM" sh -c "gunzip -c $T/$KVM.tgz | VMADM_ROOT=$B $VMADM receive -f"
same_vms "$A" "$B" "after -f"
clear_node "$B"

# 3. btrfs -> dir needs --portable, and says so.
on "$A" "$VMADM" send $KVM >"$T/native.vms" 2>/dev/null
check_fails "dir pool refuses a btrfs stream, naming --portable" "--portable" \
	sh -c "VMADM_ROOT=$C $VMADM receive < $T/native.vms"
check_eq "refused receive left the dir pool clean" "" "$(leftovers "$C")"
for u in $KVM $OS; do
	check "send --portable $u (btrfs -> dir)" sh -c "VMADM_ROOT=$A $VMADM send --portable $u | VMADM_ROOT=$C $VMADM receive"
done
same_vms "$A" "$C" "btrfs->dir portable"

# 4. dir -> btrfs, portable (the dir pool has no native stream).
clear_node "$A"
for u in $KVM $OS; do
	check "send $u (dir -> btrfs)" sh -c "VMADM_ROOT=$C $VMADM send $u | VMADM_ROOT=$A $VMADM receive"
done
same_vms "$C" "$A" "dir->btrfs"

# 5. btrfs -> btrfs with -z: smaller than without, same result.
for u in $KVM $OS; do
	check "send -z $u" sh -c "VMADM_ROOT=$A $VMADM send -z $u > $T/$u.z.vms && VMADM_ROOT=$B $VMADM receive < $T/$u.z.vms"
done
same_vms "$A" "$B" "btrfs->btrfs -z"
raw=$(on "$A" "$VMADM" send $OS | wc -c)
check "-z makes the joyent stream smaller ($(stat -c %s "$T/$OS.z.vms") < $raw)" test "$(stat -c %s "$T/$OS.z.vms")" -lt "$raw"
clear_node "$B"

# 6. send refuses a terminal and names what is missing.
check_fails "send of an unknown VM" "VM 00000000-0000-4000-8000-000000000000 not found" \
	sh -c "VMADM_ROOT=$A $VMADM send 00000000-0000-4000-8000-000000000000 > /dev/null"
check_fails "receive of an empty stdin" "stdin is empty" sh -c "VMADM_ROOT=$B $VMADM receive < /dev/null"
check_fails "receive of gzip data names gunzip" "gunzip" sh -c "VMADM_ROOT=$B $VMADM receive < $T/$KVM.tgz"

# 7. The SmartOS low-level flow, on btrfs, with the json tool.
on "$A" "$VMADM" get $KVM >"$T/$KVM.json"
datasets=$(on "$A" "$VMADM" get $KVM | $JSON disks | $JSON -a zfs_filesystem; on "$A" "$VMADM" get $KVM | $JSON zfs_filesystem)
check_eq "json disks zfs_filesystem lists the three datasets" 3 "$(wc -l <<<"$datasets")"
check "receive < UUID.json" sh -c "VMADM_ROOT=$B $VMADM receive < $T/$KVM.json"
check_eq "the VM waits in state receiving" receiving "$(on "$B" "$VMADM" get $KVM | $JSON state)"
check_fails "install lists the missing datasets" "zones/$KVM-disk1" on "$B" "$VMADM" install $KVM
for ds in $datasets; do
	name=${ds#zones/}
	# zfs snapshot / zfs send / zfs receive, in btrfs words.
	btrfs subvolume snapshot -r "$A/zones/$name" "$A/zones/$name@sending" >/dev/null
	btrfs send -q "$A/zones/$name@sending" >"$T/$name.btrfs"
	btrfs subvolume delete "$A/zones/$name@sending" >/dev/null
	btrfs receive -q "$B/zones" <"$T/$name.btrfs"
	btrfs subvolume snapshot "$B/zones/$name@sending" "$B/zones/$name" >/dev/null
	btrfs subvolume delete "$B/zones/$name@sending" >/dev/null
done
check "vmadm install" on "$B" "$VMADM" install $KVM
check_eq "installed VM is stopped" stopped "$(on "$B" "$VMADM" get $KVM | $JSON state)"
check_eq "low-level flow: disk0 identical" "$(sha256sum <"$A/zones/$KVM-disk0/disk.raw")" "$(sha256sum <"$B/zones/$KVM-disk0/disk.raw")"
check "delete on the source" on "$A" "$VMADM" delete $KVM
check_fails "install of a VM that is not receiving" "not waiting to be installed" on "$B" "$VMADM" install $KVM
check "a receiving VM can be deleted" sh -c "VMADM_ROOT=$B $VMADM receive -f < $T/$KVM.json 2>&1 | grep -q 'use -f' || VMADM_ROOT=$B $VMADM delete $KVM"
t_done

#!/usr/bin/env bash
# zfs pools on real ZFS code (zfs-fuse, its daemon started if none runs):
# the pool-ops driver's cases (datasets, volumes, snapshots opened by fd and
# rolled back to, clones, rename, destroy, space, names), kvm and joyent VMs
# created and deleted on a zfs node leaving no dataset, kvm and joyent VMs
# cloned from images started (their workloads write records), stopped and
# deleted leaving only the images, and `vmadm send |
# vmadm receive` zfs -> zfs (native, through gzip), zfs -> btrfs, btrfs -> zfs,
# zfs -> dir -> zfs (portable), data identical, no property from a stream
# applied, and the note's low-level flow between two zfs nodes, both brands.
# Each node has its own zpool (vmt-PID-NAME), destroyed at the end; no other
# zpool is touched.
. "$(dirname "$0")/../lib/common.sh"

POOLOPS=${POOLOPS:-$BUILD/tests/integration/pool-ops}
if ! command -v zfs-fuse >/dev/null; then
	fail "zfs-fuse is not installed (scripts/install-deps)"
	t_done
	exit
fi
po() { "$POOLOPS" "$@"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# zds ROOT: the zfs datasets of a node's zpool, below the pool itself.
zds() { zfs list -H -o name -t all -r "$(zfs_pool_of "$1")" 2>/dev/null | tail -n +2 | xargs; }

# wait_used ROOT DS MIN: ZFS counts writes once their transaction group is
# committed (up to ~30 s on zfs-fuse): wait until used reaches MIN.
wait_used() {
	local i out
	for ((i = 0; i < 80; i++)); do
		out=$(po "$1" used "$2")
		[ "${out% *}" -ge "$3" ] && return 0
		sleep 0.5
	done
	echo "used of $2 is ${out% *} after 40 s" >&2
	return 1
}

# ---- pool operations ----
R=$(node_make z1 zfs 1073741824) || { fail "zfs node"; t_done; exit; }
ZP=$(zfs_pool_of "$R")
check "zfs: open makes the zpool on a sparse file" po "$R" open
check_eq "zfs: backend" "zfs $R/zones" "$(po "$R" open)"
check "zfs: zpool on ROOT/zfs.img" sh -c "zpool status $ZP | grep -q '$R/zfs.img'"
check_eq "zfs: zpool mounted at ROOT/zones" "$R/zones" "$(zfs get -H -o value mountpoint "$ZP")"
check_eq "zfs: mount point is 0700" 700 "$(stat -c %a "$R/zones")"

check "zfs: create filesystem" po "$R" create-fs zones/a
check "zfs: create child filesystem" po "$R" create-fs zones/a/data
check "zfs: create volume" po "$R" create-vol zones/a-disk0 64M
check_eq "zfs: they are zfs datasets" "$ZP/a $ZP/a-disk0 $ZP/a/data" \
	"$(zfs list -H -o name -r "$ZP" | tail -n +2 | sort | xargs)"
check_eq "zfs: kind filesystem" filesystem "$(po "$R" kind zones/a)"
check_eq "zfs: kind child" filesystem "$(po "$R" kind zones/a/data)"
check_eq "zfs: kind volume" volume "$(po "$R" kind zones/a-disk0)"
check_eq "zfs: kind missing" none "$(po "$R" kind zones/nope)"
check_fails "zfs: create existing" "already exists" po "$R" create-fs zones/a
check_fails "zfs: create without parent" "parent dataset zones/nope does not exist" \
	po "$R" create-fs zones/nope/child

P=$(po "$R" path zones/a)
V=$(po "$R" volpath zones/a-disk0)
check_eq "zfs: dataset path" "$R/zones/a" "$P"
check_eq "zfs: mounted there" "$R/zones/a" "$(zfs get -H -o value mountpoint "$ZP/a")"
check_eq "zfs: volume path" "$R/zones/a-disk0/disk.raw" "$V"
check_eq "zfs: volume size" 67108864 "$(stat -c %s "$V")"
check "zfs: volume is sparse" test "$(stat -c %b "$V")" -lt 1024

echo v1 >"$P/file"
mkdir -p "$P/dir" && echo nested >"$P/dir/n" && ln -s file "$P/link"
echo child >"$(po "$R" path zones/a/data)/inner"
dd if=/dev/urandom of="$V" bs=1M count=4 seek=1 conv=notrunc status=none
S1=$(sha "$V")

check "zfs: snapshot fs" po "$R" snapshot zones/a s1
check "zfs: snapshot volume" po "$R" snapshot zones/a-disk0 s1
check_eq "zfs: a zfs snapshot" snapshot "$(zfs get -H -o value type "$ZP/a@s1")"
check_fails "zfs: snapshot exists" "already exists" po "$R" snapshot zones/a s1
echo v2 >"$P/file"
rm "$P/dir/n"
dd if=/dev/urandom of="$V" bs=1M count=2 seek=2 conv=notrunc status=none
check "zfs: second snapshot" po "$R" snapshot zones/a s2
check "zfs: child snapshot not listed with its parent's" po "$R" snapshot zones/a/data c1
check_eq "zfs: list snapshots oldest first" "s1 s2" \
	"$(po "$R" list-snapshots zones/a | xargs)"

check "zfs: clone filesystem" po "$R" clone zones/a@s1 zones/b
check_eq "zfs: clone content" v1 "$(cat "$R/zones/b/file" 2>&1)"
check_eq "zfs: clone is a zfs clone" "$ZP/a@s1" "$(zfs get -H -o value origin "$ZP/b")"
echo clone-write >"$R/zones/b/file"
check "zfs: clone volume grown" po "$R" clone zones/a-disk0@s1 zones/b-disk0 128M
check_eq "zfs: clone volume kind" volume "$(po "$R" kind zones/b-disk0)"
check_eq "zfs: clone volume size" 134217728 "$(stat -c %s "$R/zones/b-disk0/disk.raw")"
check_eq "zfs: clone volume content" "$S1" \
	"$(head -c 67108864 "$R/zones/b-disk0/disk.raw" | sha256sum | cut -d' ' -f1)"
check_fails "zfs: clone of missing snapshot" "does not exist" po "$R" clone zones/a@nope zones/c
check_eq "zfs: failed clone left nothing" none "$(po "$R" kind zones/c)"

check "zfs: used counts the volume's blocks once committed (>= 4 MiB)" \
	wait_used "$R" zones/a-disk0 4194304
out=$(po "$R" used zones/a-disk0)
check_eq "zfs: used reports volume size" 67108864 "${out#* }"
check "zfs: used is below 16 MiB" test "${out% *}" -lt 16777216
check "zfs: available from the zpool" test "$(po "$R" available)" -gt 500000000

# What migration reads a snapshot through: an fd, here on a temporary clone.
check_eq "zfs: open snapshot of a filesystem" "directory data dir file link" \
	"$(po "$R" open-snapshot zones/a s1)"
check_eq "zfs: open snapshot of a volume" "image 67108864" \
	"$(po "$R" open-snapshot zones/a-disk0 s1)"
check_fails "zfs: open missing snapshot" "snapshot does not exist" \
	po "$R" open-snapshot zones/a nope
check_eq "zfs: the temporary clones went with the fds" "" \
	"$(zfs list -H -o name -r "$ZP" | grep -F .vmadm-open-)"
# A process killed while it held one leaves its clone: the next open of the
# pool, in another process, destroys it (and leaves a live process's alone).
DEAD=$(sh -c 'echo $$')
zfs clone -o mountpoint="$R/.zfs-open/$DEAD-0" "$ZP/a@s1" "$ZP/.vmadm-open-$DEAD-0"
zfs clone -o mountpoint="$R/.zfs-open/$$-0" "$ZP/a@s1" "$ZP/.vmadm-open-$$-0"
check "zfs: open of the pool" po "$R" open
check_eq "zfs: a dead process's temporary clone is destroyed, a live one's kept" \
	"$ZP/.vmadm-open-$$-0" "$(zfs list -H -o name -r "$ZP" | grep -F .vmadm-open-)"
check "zfs: ... with its mount point" test ! -e "$R/.zfs-open/$DEAD-0"
zfs umount "$ZP/.vmadm-open-$$-0" && zfs destroy "$ZP/.vmadm-open-$$-0"

# Rollback to the latest snapshot.
echo v3 >"$P/file" && echo new >"$P/new" && rm "$P/link"
dd if=/dev/urandom of="$V" bs=1M count=1 seek=1 conv=notrunc status=none
check "zfs: rollback filesystem" po "$R" rollback zones/a s2
check_eq "zfs: rollback restores a file" v2 "$(cat "$P/file" 2>&1)"
check "zfs: rollback removes what came after" test ! -e "$P/new"
check_eq "zfs: rollback restores a symlink" file "$(readlink "$P/link" 2>&1)"
check_eq "zfs: rollback keeps the child dataset" child \
	"$(cat "$(po "$R" path zones/a/data)/inner" 2>&1)"
check "zfs: rollback volume" po "$R" rollback zones/a-disk0 s1
check_eq "zfs: rollback restores the volume" "$S1" "$(sha "$V")"
check_eq "zfs: rollback keeps the snapshots" "s1 s2" "$(po "$R" list-snapshots zones/a | xargs)"
check_fails "zfs: rollback to a missing snapshot" "does not exist" \
	po "$R" rollback zones/a nope

check "zfs: destroy snapshot" po "$R" destroy-snapshot zones/a s2
check_eq "zfs: snapshot gone from list" s1 "$(po "$R" list-snapshots zones/a)"
check_fails "zfs: destroy missing snapshot" "does not exist" po "$R" destroy-snapshot zones/a s2

check "zfs: destroy clones" sh -c "$POOLOPS $R destroy zones/b && $POOLOPS $R destroy zones/b-disk0"
check "zfs: rename" po "$R" rename zones/a zones/r
check_eq "zfs: renamed kind" filesystem "$(po "$R" kind zones/r)"
check_eq "zfs: old name gone" none "$(po "$R" kind zones/a)"
check_eq "zfs: child moved" child "$(cat "$R/zones/r/data/inner" 2>&1)"
check_eq "zfs: snapshots moved" s1 "$(po "$R" list-snapshots zones/r)"
check_fails "zfs: rename onto existing" "already exists" po "$R" rename zones/r zones/a-disk0
check_fails "zfs: destroy with children refused" "has child dataset zones/r/data" \
	po "$R" destroy zones/r
check "zfs: destroy recursive" po "$R" destroy -r zones/r
check_eq "zfs: destroyed" none "$(po "$R" kind zones/r)"
check "zfs: no dataset directory left" test ! -e "$R/zones/r"
check_fails "zfs: destroy missing" "does not exist" po "$R" destroy zones/r
check "zfs: destroy volume" po "$R" destroy zones/a-disk0
check_eq "zfs: no zfs dataset or snapshot left (no temporary clone)" "" "$(zds "$R")"

check_fails "zfs: bad name .." "invalid dataset name 'zones/../x'" po "$R" create-fs zones/../x
check_fails "zfs: bad name other pool" "must begin with 'zones/'" po "$R" create-fs other/x
# A zpool the daemon no longer knows (exported, or a machine that forgot it)
# is imported again from ROOT/zfs.img by the next open, with its data.
check "zfs: keep a dataset across an export" sh -c "$POOLOPS $R create-fs zones/kept && echo kept >$R/zones/kept/f"
zfs list -H -o name -r "$ZP" | sort -r | xargs -r -n 1 zfs umount
check "zfs: export the zpool" zpool export "$ZP"
check "zfs: open imports it again" po "$R" open
check_eq "zfs: ... with its data, mounted" kept "$(cat "$R/zones/kept/f" 2>&1)"
check "zfs: destroy it" po "$R" destroy zones/kept
check_fails "zfs: a zpool mounted elsewhere is refused, not changed" "not at" \
	env VMADM_ROOT="$T/elsewhere" sh -c "mkdir -p $T/elsewhere && printf '{\"pool_type\": \"zfs\", \"zfs_pool\": \"$ZP\"}' > $T/elsewhere/vmadm.conf && $POOLOPS $T/elsewhere open"
check_eq "zfs: ... and it kept its mountpoint" "$R/zones" "$(zfs get -H -o value mountpoint "$ZP")"

# ---- VMs on a zfs node ----
KVM=6c1d2e3f-2222-4333-8444-555566667777
OS=7d2e3f40-2222-4333-8444-555566667777
Z=$(node_make z2 zfs 1073741824)
B=$(node_make b btrfs 1073741824)
D=$(node_make d dir)

make_vms() {
	local root=$1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 128,
	  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 32}]}" |
		on "$root" "$VMADM" create || return 1
	echo "{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\", \"delegate_dataset\": true}" |
		on "$root" "$VMADM" create || return 1
	head -c 3000000 /dev/urandom | dd of="$root/zones/$KVM-disk0/disk.raw" bs=1M seek=5 conv=notrunc status=none
	mkdir -p "$root/zones/$OS/root/etc"
	echo hostname >"$root/zones/$OS/root/etc/hostname"
	head -c 200000 /dev/urandom >"$root/zones/$OS/root/etc/blob"
	ln -s hostname "$root/zones/$OS/root/etc/link"
	echo payload >"$root/zones/$OS/data/file"
}

same_vms() {
	local from=$1 to=$2 l=$3 d
	for d in disk0 disk1; do
		check_eq "$l: $d byte-identical" "$(sha256sum <"$from/zones/$KVM-$d/disk.raw")" \
			"$(sha256sum <"$to/zones/$KVM-$d/disk.raw" 2>&1)"
	done
	check_eq "$l: joyent root tree equal" "$(tree_hash "$from/zones/$OS/root")" \
		"$(tree_hash "$to/zones/$OS/root" 2>&1)"
	check_eq "$l: data dataset tree equal" "$(tree_hash "$from/zones/$OS/data")" \
		"$(tree_hash "$to/zones/$OS/data" 2>&1)"
}

check "zfs node: create a kvm and a joyent VM" make_vms "$Z"
ZZ=$(zfs_pool_of "$Z")
check_eq "zfs node: their datasets are zfs datasets" \
	"$ZZ/$KVM $ZZ/$KVM-disk0 $ZZ/$KVM-disk1 $ZZ/$OS $ZZ/$OS/data" \
	"$(zfs list -H -o name -r "$ZZ" | tail -n +2 | sort | xargs)"
check_eq "zfs node: disk path" "$Z/zones/$KVM-disk1/disk.raw" \
	"$(on "$Z" "$VMADM" get "$KVM" | $JSON disks.1.path)"
check_eq "zfs node: the joyent VM's quota (10 GiB, the default) is ZFS's own" 10737418240 \
	"$(zfs get -Hp -o value quota "$ZZ/$OS")"
check "zfs node: update quota=3" on "$Z" "$VMADM" update "$OS" quota=3
check_eq "zfs node: the updated quota is ZFS's" 3221225472 "$(zfs get -Hp -o value quota "$ZZ/$OS")"
check "zfs node: update quota=0 (none)" on "$Z" "$VMADM" update "$OS" quota=0
check_eq "zfs node: no quota" 0 "$(zfs get -Hp -o value quota "$ZZ/$OS")"
check "zfs node: quota back to 10" on "$Z" "$VMADM" update "$OS" quota=10

# zfs -> zfs: the native encoding, `zfs send -p` in the stream's records,
# through gzip as the note does it.
Z2=$(node_make z4 zfs 1073741824)
ZZ2=$(zfs_pool_of "$Z2")
# properties the stream carries (-p) and the receiver must not apply
zfs set com.example:tag=from-the-sender "$ZZ/$OS"
zfs set atime=off "$ZZ/$OS"
zfs set quota=5368709120 "$ZZ/$OS" # not the VM's (10 GiB): the stream's word only
zfs set setuid=on "$ZZ/$OS/data"
for u in $KVM $OS; do
	check "send $u zfs -> file" sh -c "VMADM_ROOT=$Z $VMADM send $u | gzip >$T/$u.vms.gz"
	gunzip <"$T/$u.vms.gz" | "$BUILD/tools/vmadm-stream" dump >"$T/$u.dump" 2>&1
	check_grep "send $u zfs -> file: its datasets travel as zfs streams" -q 'encoding zfs' "$T/$u.dump"
	check "receive $u file -> zfs" sh -c "gunzip <$T/$u.vms.gz | VMADM_ROOT=$Z2 $VMADM receive"
done
same_vms "$Z" "$Z2" "zfs -> zfs (native)"
check_eq "zfs -> zfs: the datasets, nothing more" \
	"$(zds "$Z" | tr ' ' '\n' | sed "s|^$ZZ/||" | sort | xargs)" \
	"$(zds "$Z2" | tr ' ' '\n' | sed "s|^$ZZ2/||" | sort | xargs)"
check_eq "zfs -> zfs: the sender's dataset has a property of its own" \
	"from-the-sender" "$(zfs get -H -o value com.example:tag "$ZZ/$OS")"
check_eq "zfs -> zfs: no property came from the stream" "" \
	"$(zfs get -H -o name,property,value -s local,received all -r "$ZZ2" | grep -v "^$ZZ2\s" |
		grep -v "^$ZZ2/$OS	quota	10G$" | xargs)"
check_eq "zfs -> zfs: the stream's atime=off not applied" "on" \
	"$(zfs get -H -o value atime "$ZZ2/$OS")"
check_eq "zfs -> zfs: each received dataset is mounted where the node keeps it" \
	"$Z2/zones/$OS/data" "$(zfs get -H -o value mountpoint "$ZZ2/$OS/data")"
check_eq "zfs -> zfs: the received joyent VM has its config's quota (10 GiB), not the stream's (5)" 10737418240 \
	"$(zfs get -Hp -o value quota "$ZZ2/$OS")"
check_eq "zfs -> zfs: the VMs are installed" "stopped stopped" \
	"$(on "$Z2" "$VMADM" list -H -o state | xargs)"
check_fails "zfs stream to a btrfs node: refused, saying how" "--portable" \
	sh -c "gunzip <$T/$KVM.vms.gz | VMADM_ROOT=$B $VMADM receive"
check_eq "zfs stream to a btrfs node: nothing left there" "" "$(on "$B" "$VMADM" list -H -o uuid)"
for u in $KVM $OS; do
	check "delete $u on the second zfs node" on "$Z2" "$VMADM" delete "$u"
done
check_eq "second zfs node: no dataset left" "" "$(zds "$Z2")"
# A stream that says it resumes a cut receive (DS_BEGIN resume_token) that
# this node never kept: refused, nothing left.
gunzip <"$T/$OS.vms.gz" >"$T/$OS.vms"
"$BUILD/tools/vmadm-stream" rewrite --dataset-set ':resume_token="1-abcdef-12-789c"' \
	<"$T/$OS.vms" >"$T/$OS.resumed.vms"
check_fails "a resume_token this node never kept: refused" "did not keep" \
	sh -c "VMADM_ROOT=$Z2 $VMADM receive <$T/$OS.resumed.vms"
check_eq "a resume_token this node never kept: no dataset, no VM left" "" \
	"$(zds "$Z2" | tr ' ' '\n' | grep "$OS"; on "$Z2" "$VMADM" list -H -o uuid)"

# A compressed dataset: its native stream carries the data as it is, far
# more than the dataset takes on disk. What the sender declares (the
# snapshot's logical size, not what it takes) must cover it, or the
# receiver refuses the data as more than declared.
zfs set compression=gzip "$ZZ/$OS/data"
yes "vmadm compresses well" | head -c $((48 << 20)) >"$Z/zones/$OS/data/compressible"
check "a compressed dataset (48 MiB in ~2 MiB on disk): send | receive zfs -> zfs" \
	sh -c "VMADM_ROOT=$Z $VMADM send $OS | VMADM_ROOT=$Z2 $VMADM receive"
check_eq "a compressed dataset: its data arrived" "$(sha "$Z/zones/$OS/data/compressible")" \
	"$(sha "$Z2/zones/$OS/data/compressible" 2>&1)"
check "a compressed dataset: delete it on the second zfs node" on "$Z2" "$VMADM" delete "$OS"
rm -f "$Z/zones/$OS/data/compressible"
zfs inherit compression "$ZZ/$OS/data"

# Many small files: a native stream carries ~1.3 KB per file that ZFS's
# measure of the blocks does not show (20000 empty files: 7 MB referenced,
# a 26 MB stream). The declaration allows for each file, or the receiver
# refuses the data as more than declared.
mkdir "$Z/zones/$OS/root/many"
(cd "$Z/zones/$OS/root/many" && seq 1 40000 | xargs touch)
check "40000 empty files: send | receive zfs -> zfs" \
	sh -c "VMADM_ROOT=$Z $VMADM send $OS | VMADM_ROOT=$Z2 $VMADM receive"
check_eq "40000 empty files: all arrived" 40000 "$(ls "$Z2/zones/$OS/root/many" 2>&1 | wc -l)"
check "40000 empty files: delete the VM on the second zfs node" on "$Z2" "$VMADM" delete "$OS"
rm -rf "$Z/zones/$OS/root/many"

for u in $KVM $OS; do
	check "send --portable $u zfs -> btrfs" \
		sh -c "VMADM_ROOT=$Z $VMADM send --portable $u | VMADM_ROOT=$B $VMADM receive"
done
same_vms "$Z" "$B" "zfs -> btrfs"
check_eq "zfs -> btrfs: no snapshot or temporary clone left on the zfs node" \
	"$ZZ/$KVM $ZZ/$KVM-disk0 $ZZ/$KVM-disk1 $ZZ/$OS $ZZ/$OS/data" "$(zds "$Z" | tr ' ' '\n' | sort | xargs)"

# zfs -> dir and back (portable, through a file)
for u in $KVM $OS; do
	check "send --portable $u zfs -> file -> dir" \
		sh -c "VMADM_ROOT=$Z $VMADM send --portable $u | gzip >$T/$u.p.gz && gunzip <$T/$u.p.gz | VMADM_ROOT=$D $VMADM receive"
done
same_vms "$Z" "$D" "zfs -> dir"
for u in $KVM $OS; do
	check "send --portable $u dir -> file -> second zfs node" \
		sh -c "VMADM_ROOT=$D $VMADM send --portable $u | gzip >$T/$u.d.gz && gunzip <$T/$u.d.gz | VMADM_ROOT=$Z2 $VMADM receive"
	check "delete $u on the dir node" on "$D" "$VMADM" delete "$u"
done
same_vms "$Z" "$Z2" "dir -> zfs"
for u in $KVM $OS; do
	check "delete $u (from dir) on the second zfs node" on "$Z2" "$VMADM" delete "$u"
done
check_eq "zfs -> dir -> zfs: no dataset left on the second zfs node" "" "$(zds "$Z2")"

for u in $KVM $OS; do
	check "delete $u on the zfs node" on "$Z" "$VMADM" delete "$u"
done
check_eq "zfs node: no dataset left" "" "$(zds "$Z")"
check_eq "zfs node: no dataset directory left" "" "$(ls "$Z/zones" | xargs)"

for u in $KVM $OS; do
	check "send --portable $u btrfs -> zfs" \
		sh -c "VMADM_ROOT=$B $VMADM send --portable $u | VMADM_ROOT=$Z $VMADM receive"
done
same_vms "$B" "$Z" "btrfs -> zfs"
check_eq "btrfs -> zfs: the datasets, nothing more" \
	"$ZZ/$KVM $ZZ/$KVM-disk0 $ZZ/$KVM-disk1 $ZZ/$OS $ZZ/$OS/data" "$(zds "$Z" | tr ' ' '\n' | sort | xargs)"

# The note's low-level flow between two zfs nodes, both brands, with its
# commands as written: the pool is the one each node names (its zfs_pool;
# "zones", the default, makes them the note's words exactly).
# lowlevel_datasets ROOT UUID: the VM's datasets, found as the note does.
lowlevel_datasets() {
	local j
	j=$(on "$1" "$VMADM" get "$2") || return 1
	$JSON zfs_filesystem <<<"$j"
	$JSON disks <<<"$j" | $JSON -a zfs_filesystem
	$JSON datasets <<<"$j" | $JSON -a
}
# lowlevel UUID FROM TO: the whole flow, by hand.
lowlevel() {
	local u=$1 from=$2 to=$3 zf zt ds f
	zf=$(zfs_pool_of "$from")
	zt=$(zfs_pool_of "$to")
	on "$from" "$VMADM" get "$u" >"$T/$u.json" || return 1
	for ds in $(lowlevel_datasets "$from" "$u"); do
		f=$T/$(echo "${ds#zones/}" | tr / -).zfs
		zfs snapshot "$zf/${ds#zones/}@sending" || return 1
		zfs send -p "$zf/${ds#zones/}@sending" >"$f" || return 1
		zfs destroy "$zf/${ds#zones/}@sending" || return 1
	done
	on "$to" "$VMADM" receive <"$T/$u.json" || return 1
	rm "$T/$u.json"
	for ds in $(lowlevel_datasets "$from" "$u"); do
		f=$T/$(echo "${ds#zones/}" | tr / -).zfs
		zfs receive "$zt/${ds#zones/}" <"$f" || return 1
		zfs destroy "$zt/${ds#zones/}@sending" || return 1
		rm "$f"
	done
	on "$to" "$VMADM" install "$u"
}
for u in $KVM $OS; do
	check "the note's low-level flow: $u zfs -> zfs" lowlevel "$u" "$Z" "$Z2"
done
check_eq "low-level flow: both VMs installed, stopped" "stopped stopped" \
	"$(on "$Z2" "$VMADM" list -H -o state | xargs)"
same_vms "$Z" "$Z2" "low-level flow zfs -> zfs"
check_eq "low-level flow: no snapshot left on either node" "" \
	"$(zds "$Z" | tr ' ' '\n' | grep @; zds "$Z2" | tr ' ' '\n' | grep @)"
check_eq "low-level flow: the received VM's config is the sender's" \
	"$(vm_get_comparable "$Z" "$KVM")" "$(vm_get_comparable "$Z2" "$KVM")"
for u in $KVM $OS; do
	check "low-level flow: vmadm delete $u on the source" on "$Z" "$VMADM" delete "$u"
done
check_eq "zfs node: no dataset left after delete" "" "$(zds "$Z")"
check "low-level flow: the moved kvm VM starts on the target" on "$Z2" "$VMADM" start "$KVM"
check "low-level flow: and stops" on "$Z2" "$VMADM" stop "$KVM" -F
for u in $KVM $OS; do
	check "delete $u on the target" on "$Z2" "$VMADM" delete "$u"
done
check_eq "second zfs node: no dataset left at the end" "" "$(zds "$Z2")"

# ---- a quota ZFS enforces ----
Q=$(node_make zq zfs 2147483648)
QZ=$(zfs_pool_of "$Q")
QV=8e3f4051-2222-4333-8444-555566667777
check "quota: a joyent VM of quota 1 GiB" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$QV\",
	\"quota\": 1, \"delegate_dataset\": true}' | VMADM_ROOT=$Q $VMADM create"
check_fails "quota: writing 1100 MiB into its data dataset stops at the quota" "quota" \
	dd if=/dev/zero of="$Q/zones/$QV/data/big" bs=1M count=1100 conv=fsync status=none
check "quota: the VM is deleted, its data with it" on "$Q" "$VMADM" delete "$QV"
check_eq "quota: nothing left" "" "$(zds "$Q")"

# ---- VMs from images, started and stopped on a zfs node ----
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	t_done
	exit
fi
I=$(node_make z3 zfs 2147483648)
ZI=$(zfs_pool_of "$I")
vm=(on "$I" "$VMADM")
check "zfs node: imgadm install kvm-test" on "$I" "$IMGADM" install \
	-m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "zfs node: imgadm install joyent-test" on "$I" "$IMGADM" install \
	-m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
echo "{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 256, \"autoboot\": false,
  \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 32}]}" >"$T/kvm.json"
echo "{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\", \"image_uuid\": \"$OS_IMAGE\",
  \"delegate_dataset\": true, \"autoboot\": false}" >"$T/os.json"
check "zfs node: create kvm VM from its image" "${vm[@]}" create -f "$T/kvm.json"
check "zfs node: create joyent VM from its image" "${vm[@]}" create -f "$T/os.json"
check_eq "zfs node: disk0 is a zfs clone of the image's snapshot" "$ZI/$KVM_IMAGE@final" \
	"$(zfs get -H -o value origin "$ZI/$KVM-disk0")"
check_eq "zfs node: the joyent root is a zfs clone of its image" "$ZI/$OS_IMAGE@final" \
	"$(zfs get -H -o value origin "$ZI/$OS")"
check "zfs node: start kvm" "${vm[@]}" start "$KVM"
check "zfs node: start joyent" "${vm[@]}" start "$OS"
check_eq "zfs node: both running" "running running" \
	"$("${vm[@]}" list -H -o state -s uuid | xargs)"
check "zfs node: kvm guest boots and writes records" \
	wl_wait_records 3 90 --offset 33554432 "$I/zones/$KVM-disk0/disk.raw"
check "zfs node: joyent workload writes records" \
	wl_wait_records 3 30 "$I/zones/$OS/data/workload.rec"
check "zfs node: stop kvm" "${vm[@]}" stop "$KVM" -t 30
check "zfs node: stop joyent" "${vm[@]}" stop "$OS" -t 30
check_eq "zfs node: both stopped" "stopped stopped" \
	"$("${vm[@]}" list -H -o state -s uuid | xargs)"
check "zfs node: delete kvm" "${vm[@]}" delete "$KVM"
check "zfs node: delete joyent" "${vm[@]}" delete "$OS"
check_eq "zfs node: only the images' datasets are left" \
	"$ZI/$KVM_IMAGE $ZI/$KVM_IMAGE@final $ZI/$OS_IMAGE $ZI/$OS_IMAGE@final" \
	"$(zds "$I" | tr ' ' '\n' | sort | xargs)"
t_done

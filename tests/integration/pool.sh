#!/usr/bin/env bash
# Storage pools through the pool-ops driver, on real btrfs loop pools and on
# dir pools: datasets, volumes, snapshots (opened by fd, rolled back to),
# clones, rename, destroy, space checks, name checks; on btrfs also
# send/receive between two nodes and
# reopening a pool after it was unmounted (a reboot).
. "$(dirname "$0")/../lib/common.sh"

POOLOPS=${POOLOPS:-$BUILD/tests/integration/pool-ops}
if [ ! -x "$POOLOPS" ]; then
	fail "pool-ops: not built at $POOLOPS"
	t_done
	exit
fi
po() { "$POOLOPS" "$@"; }
GiB=1073741824

sha() { sha256sum "$1" | cut -d' ' -f1; }

# snap_path ROOT DS SNAP: where a snapshot's tree is kept.
snap_path() { echo "$1/zones/.snapshots/${2#zones/}/@$3"; }

# Tests common to every backend. $1 = backend, $2 = node root.
common_tests() {
	local t=$1 R=$2 P V S1 out
	check "$t: open" po "$R" open
	check_eq "$t: backend" "$t $R/zones" "$(po "$R" open)"

	check "$t: create filesystem" po "$R" create-fs zones/a
	check "$t: create child filesystem" po "$R" create-fs zones/a/data
	check "$t: create volume" po "$R" create-vol zones/a-disk0 64M
	check_eq "$t: kind filesystem" filesystem "$(po "$R" kind zones/a)"
	check_eq "$t: kind child" filesystem "$(po "$R" kind zones/a/data)"
	check_eq "$t: kind volume" volume "$(po "$R" kind zones/a-disk0)"
	check_eq "$t: kind missing" none "$(po "$R" kind zones/nope)"
	check_fails "$t: create existing" "already exists" po "$R" create-fs zones/a
	check_fails "$t: create without parent" "parent dataset zones/nope does not exist" \
		po "$R" create-fs zones/nope/child

	P=$(po "$R" path zones/a)
	V=$(po "$R" volpath zones/a-disk0)
	check_eq "$t: volume path" "$R/zones/a-disk0/disk.raw" "$V"
	check_eq "$t: volume size" 67108864 "$(stat -c %s "$V")"
	check "$t: volume is sparse" test "$(stat -c %b "$V")" -lt 1024

	echo v1 >"$P/file"
	mkdir -p "$P/dir" && echo nested >"$P/dir/n" && ln -s file "$P/link"
	echo linked >"$P/h1" && ln "$P/h1" "$P/dir/h2"
	echo child >"$(po "$R" path zones/a/data)/inner"
	dd if=/dev/urandom of="$V" bs=1M count=4 seek=1 conv=notrunc status=none
	S1=$(sha "$V")

	check "$t: snapshot fs" po "$R" snapshot zones/a s1
	check "$t: snapshot volume" po "$R" snapshot zones/a-disk0 s1
	check_fails "$t: snapshot exists" "already exists" po "$R" snapshot zones/a s1
	echo v2 >"$P/file"
	rm "$P/dir/n"
	dd if=/dev/urandom of="$V" bs=1M count=2 seek=2 conv=notrunc status=none
	check_eq "$t: snapshot file frozen" v1 "$(cat "$(snap_path "$R" zones/a s1)/file")"
	check_eq "$t: snapshot nested file frozen" nested \
		"$(cat "$(snap_path "$R" zones/a s1)/dir/n" 2>&1)"
	check_eq "$t: snapshot symlink kept" file "$(readlink "$(snap_path "$R" zones/a s1)/link")"
	check_eq "$t: snapshot hard link kept" "$(stat -c %i "$(snap_path "$R" zones/a s1)/h1")" \
		"$(stat -c %i "$(snap_path "$R" zones/a s1)/dir/h2" 2>&1)"
	check_eq "$t: snapshot volume frozen" "$S1" "$(sha "$(snap_path "$R" zones/a-disk0 s1)/disk.raw")"
	check "$t: snapshot leaves out child dataset" \
		test ! -e "$(snap_path "$R" zones/a s1)/data/inner"
	check_eq "$t: dataset changed" v2 "$(cat "$P/file")"

	check "$t: second snapshot" po "$R" snapshot zones/a s2
	check_eq "$t: list snapshots oldest first" "s1 s2" \
		"$(po "$R" list-snapshots zones/a | tr '\n' ' ' | sed 's/ $//')"

	check "$t: clone filesystem" po "$R" clone zones/a@s1 zones/b
	check_eq "$t: clone content" v1 "$(cat "$R/zones/b/file" 2>&1)"
	check_eq "$t: clone kind" filesystem "$(po "$R" kind zones/b)"
	echo clone-write >"$R/zones/b/file"
	check_eq "$t: clone is writable, snapshot unchanged" v1 \
		"$(cat "$(snap_path "$R" zones/a s1)/file")"
	check "$t: clone volume grown" po "$R" clone zones/a-disk0@s1 zones/b-disk0 128M
	check_eq "$t: clone volume kind" volume "$(po "$R" kind zones/b-disk0)"
	check_eq "$t: clone volume size" 134217728 "$(stat -c %s "$R/zones/b-disk0/disk.raw")"
	check_eq "$t: clone volume content" "$S1" \
		"$(head -c 67108864 "$R/zones/b-disk0/disk.raw" | sha256sum | cut -d' ' -f1)"
	check_fails "$t: clone of missing snapshot" "does not exist" \
		po "$R" clone zones/a@nope zones/c
	check_eq "$t: failed clone left nothing" none "$(po "$R" kind zones/c)"

	out=$(po "$R" used zones/a-disk0)
	check_eq "$t: used reports volume size" 67108864 "${out#* }"
	check "$t: used counts allocated blocks (>= 4 MiB, < 16 MiB)" \
		test "${out% *}" -ge 4194304 -a "${out% *}" -lt 16777216

	# What migration reads a snapshot through: an fd, never a path.
	check_eq "$t: open snapshot of a filesystem" "directory dir file h1 link" \
		"$(po "$R" open-snapshot zones/a s1 | sed 's/ \.vmadm-dataset//; s/ data//')"
	check_eq "$t: open snapshot of a volume" "image 67108864" \
		"$(po "$R" open-snapshot zones/a-disk0 s1)"
	check_fails "$t: open missing snapshot" "snapshot does not exist" \
		po "$R" open-snapshot zones/a nope

	# Rollback (to the latest snapshot, as ZFS asks): the dataset as its
	# snapshot holds it, in place; its child datasets, its name and its
	# snapshots stay.
	echo v3 >"$P/file" && echo new >"$P/new" && rm "$P/link" && echo back >"$P/dir/n"
	dd if=/dev/urandom of="$V" bs=1M count=1 seek=1 conv=notrunc status=none
	check "$t: rollback filesystem" po "$R" rollback zones/a s2
	check_eq "$t: rollback restores a file" v2 "$(cat "$P/file" 2>&1)"
	check "$t: rollback removes what came after" test ! -e "$P/new" -a ! -e "$P/dir/n"
	check_eq "$t: rollback restores a symlink" file "$(readlink "$P/link" 2>&1)"
	check_eq "$t: rollback keeps a hard link" "$(stat -c %i "$P/h1")" \
		"$(stat -c %i "$P/dir/h2" 2>&1)"
	check_eq "$t: rollback keeps the child dataset" child \
		"$(cat "$(po "$R" path zones/a/data)/inner" 2>&1)"
	check_eq "$t: child still a dataset after rollback" filesystem \
		"$(po "$R" kind zones/a/data)"
	check "$t: rollback volume" po "$R" rollback zones/a-disk0 s1
	check_eq "$t: rollback restores the volume" "$S1" "$(sha "$V")"
	check_eq "$t: rollback keeps the snapshots" "s1 s2" \
		"$(po "$R" list-snapshots zones/a | tr '\n' ' ' | sed 's/ $//')"
	check_fails "$t: rollback to a missing snapshot" "does not exist" \
		po "$R" rollback zones/a nope

	check "$t: destroy snapshot" po "$R" destroy-snapshot zones/a s2
	check_eq "$t: snapshot gone from list" s1 "$(po "$R" list-snapshots zones/a)"
	check_fails "$t: destroy missing snapshot" "does not exist" \
		po "$R" destroy-snapshot zones/a s2

	check "$t: rename" po "$R" rename zones/a zones/r
	check_eq "$t: renamed kind" filesystem "$(po "$R" kind zones/r)"
	check_eq "$t: old name gone" none "$(po "$R" kind zones/a)"
	check_eq "$t: child moved" child "$(cat "$R/zones/r/data/inner" 2>&1)"
	check_eq "$t: snapshots moved" s1 "$(po "$R" list-snapshots zones/r)"
	check_fails "$t: rename onto existing" "already exists" po "$R" rename zones/r zones/b
	check_eq "$t: failed rename kept source" filesystem "$(po "$R" kind zones/r)"
	check "$t: snapshot child" po "$R" snapshot zones/r/data c1

	check_fails "$t: destroy with children refused" "has child dataset zones/r/data" \
		po "$R" destroy zones/r
	check "$t: destroy recursive" po "$R" destroy -r zones/r
	check_eq "$t: destroyed" none "$(po "$R" kind zones/r)"
	check_eq "$t: child destroyed" none "$(po "$R" kind zones/r/data)"
	check "$t: no dataset directory left" test ! -e "$R/zones/r"
	check "$t: no snapshot directory left" test ! -e "$R/zones/.snapshots/r"
	check_fails "$t: destroy missing" "does not exist" po "$R" destroy zones/r

	check_fails "$t: bad name .." "invalid dataset name 'zones/../x'" \
		po "$R" create-fs zones/../x
	check_fails "$t: bad name other pool" "must begin with 'zones/'" po "$R" create-fs other/x
	check_fails "$t: bad name empty component" "empty component" po "$R" create-fs zones//x
	check_fails "$t: bad name char" "not allowed" po "$R" create-fs 'zones/a b'
	check_fails "$t: bad name reserved" "may not begin with '.'" \
		po "$R" create-fs zones/.snapshots
	check_fails "$t: bad snapshot name" "invalid snapshot name" po "$R" snapshot zones/b '@x'
	check "$t: nothing made by bad names" test ! -e "$R/x" -a ! -e "$R/zones/x"
}

#### btrfs ####
N1=$(node_make n1 btrfs $GiB)
N2=$(node_make n2 btrfs $GiB)
common_tests btrfs "$N1"

check "btrfs: loop file made" test -f "$N1/pool.img"
check_eq "btrfs: loop file size from pool_size" $GiB "$(stat -c %s "$N1/pool.img")"
check "btrfs: pool mounted" mountpoint -q "$N1/zones"
check_eq "btrfs: pool is btrfs" btrfs "$(stat -f -c %T "$N1/zones")"
check "btrfs: destroyed subvolumes gone from subvolume list" \
	bash -c "! btrfs subvolume list '$N1/zones' | grep -qE ' path (r|r/data|\.snapshots/r/.*)\$'"
check "btrfs: clone is a subvolume" \
	bash -c "btrfs subvolume list '$N1/zones' | grep -qE ' path b-disk0\$'"

check_fails "btrfs: volume larger than pool" "No space left on device" \
	po "$N1" create-vol zones/huge 2G
check_eq "btrfs: refused volume left nothing" none "$(po "$N1" kind zones/huge)"
check "btrfs: refused volume no subvolume" \
	bash -c "! btrfs subvolume list '$N1/zones' | grep -q huge"

# send / receive: a volume and a filesystem, full then incremental.
po "$N1" create-vol zones/v 256M
VV=$(po "$N1" volpath zones/v)
dd if=/dev/urandom of="$VV" bs=1M count=24 seek=3 conv=notrunc status=none
po "$N1" create-fs zones/f
mkdir -p "$N1/zones/f/etc" && echo hello >"$N1/zones/f/etc/motd"
check "btrfs: snapshot for send" po "$N1" snapshot zones/v s1
po "$N1" snapshot zones/f s1
check "btrfs: full send" bash -c "'$POOLOPS' '$N1' send zones/v s1 >'$T/v-full'"
po "$N1" send zones/f s1 >"$T/f-full"
dd if=/dev/urandom of="$VV" bs=1M count=8 seek=100 conv=notrunc status=none
echo changed >"$N1/zones/f/etc/motd"
echo new >"$N1/zones/f/etc/new"
po "$N1" snapshot zones/v s2
po "$N1" snapshot zones/f s2
check "btrfs: incremental send" bash -c "'$POOLOPS' '$N1' send zones/v s2 s1 >'$T/v-inc'"
po "$N1" send zones/f s2 s1 >"$T/f-inc"
check "btrfs: incremental stream is small" test "$(stat -c %s "$T/v-inc")" -lt 16000000

check "btrfs: full receive" bash -c "'$POOLOPS' '$N2' receive zones/v s1 <'$T/v-full'"
check_eq "btrfs: received kind" volume "$(po "$N2" kind zones/v)"
check_eq "btrfs: full receive identical" "$(sha "$(snap_path "$N1" zones/v s1)/disk.raw")" \
	"$(sha "$N2/zones/v/disk.raw")"
check "btrfs: received dataset writable" touch "$N2/zones/v/scratch"
rm -f "$N2/zones/v/scratch"
check "btrfs: incremental receive" bash -c "'$POOLOPS' '$N2' receive zones/v s2 s1 <'$T/v-inc'"
check_eq "btrfs: incremental receive identical" "$(sha "$(snap_path "$N1" zones/v s2)/disk.raw")" \
	"$(sha "$N2/zones/v/disk.raw")"
check_eq "btrfs: received snapshots" "s1 s2" \
	"$(po "$N2" list-snapshots zones/v | tr '\n' ' ' | sed 's/ $//')"
check_eq "btrfs: received s1 unchanged" "$(sha "$(snap_path "$N1" zones/v s1)/disk.raw")" \
	"$(sha "$(snap_path "$N2" zones/v s1)/disk.raw")"
check "btrfs: fs full receive" bash -c "'$POOLOPS' '$N2' receive zones/f s1 <'$T/f-full'"
# A child dataset made on the receiving side must survive the incremental
# receive that replaces its parent.
po "$N2" create-fs zones/f/kid && echo kid >"$N2/zones/f/kid/k"
check "btrfs: fs incremental receive" bash -c "'$POOLOPS' '$N2' receive zones/f s2 s1 <'$T/f-inc'"
check_eq "btrfs: fs received content" "changed new" \
	"$(cat "$N2/zones/f/etc/motd" "$N2/zones/f/etc/new" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check_eq "btrfs: child kept across incremental receive" kid "$(cat "$N2/zones/f/kid/k" 2>&1)"
check_eq "btrfs: child still a dataset" filesystem "$(po "$N2" kind zones/f/kid)"
check "btrfs: no receive temp left" test -z "$(ls -A "$N2/zones/.recv")"
check_fails "btrfs: incremental without base refused" "does not exist" \
	bash -c "'$POOLOPS' '$N2' receive zones/w s2 s1 <'$T/v-inc'"

# Broken streams: nothing may be left behind.
head -c $(($(stat -c %s "$T/v-full") / 2)) "$T/v-full" >"$T/trunc"
check_fails "btrfs: truncated stream refused" "truncated" \
	bash -c "'$POOLOPS' '$N2' receive zones/w s1 <'$T/trunc'"
cp "$T/v-full" "$T/corrupt"
printf 'garbagegarbagegarbage' | dd of="$T/corrupt" bs=1 seek=4000000 conv=notrunc status=none
check_fails "btrfs: corrupt stream refused" "receive zones/w@s1" \
	bash -c "'$POOLOPS' '$N2' receive zones/w s1 <'$T/corrupt'"
check_fails "btrfs: not a stream refused" "not a btrfs send stream" \
	bash -c "head -c 4096 /dev/urandom | '$POOLOPS' '$N2' receive zones/w s1"
check_eq "btrfs: broken streams left no dataset" none "$(po "$N2" kind zones/w)"
check "btrfs: broken streams left no receive temp" test -z "$(ls -A "$N2/zones/.recv")"
check "btrfs: broken streams left no snapshot dir" test ! -e "$N2/zones/.snapshots/w"
check "btrfs: broken streams left no subvolume" \
	bash -c "! btrfs subvolume list '$N2/zones' | grep -qE 'path (\.recv|w|\.snapshots/w)'"
# A broken incremental must leave the existing dataset as it was.
head -c $(($(stat -c %s "$T/v-inc") / 2)) "$T/v-inc" >"$T/trunc-inc"
po "$N2" destroy-snapshot zones/v s2
before=$(sha "$N2/zones/v/disk.raw")
check_fails "btrfs: truncated incremental refused" "truncated" \
	bash -c "'$POOLOPS' '$N2' receive zones/v s2 s1 <'$T/trunc-inc'"
check_eq "btrfs: dataset intact after broken incremental" "$before" "$(sha "$N2/zones/v/disk.raw")"
check_eq "btrfs: no new snapshot after broken incremental" s1 "$(po "$N2" list-snapshots zones/v)"

# Reboot: the pool is unmounted; opening the node mounts the same image again.
check "btrfs: unmount pool" umount "$N1/zones"
check "btrfs: reopen after unmount" po "$N1" open
check "btrfs: remounted" mountpoint -q "$N1/zones"
check_eq "btrfs: data survives remount" changed "$(cat "$N1/zones/f/etc/motd" 2>&1)"
check_eq "btrfs: snapshots survive remount" "s1 s2" \
	"$(po "$N1" list-snapshots zones/f | tr '\n' ' ' | sed 's/ $//')"

# A pool that cannot be made leaves nothing.
N3=$(node_make n3 btrfs 1000)
check_fails "btrfs: too small pool refused" "too small" po "$N3" open
check "btrfs: failed pool left no image" test ! -e "$N3/pool.img"
check "btrfs: failed pool left no mount" bash -c "! mountpoint -q '$N3/zones'"

#### dir ####
D1=$(node_make d1 dir)
common_tests dir "$D1"
check "dir: no loop file" test ! -e "$D1/pool.img"
check "dir: not a mount" bash -c "! mountpoint -q '$D1/zones'"
check_fails "dir: volume larger than pool" "No space left on device" \
	po "$D1" create-vol zones/huge 1000000G
check_eq "dir: refused volume left nothing" none "$(po "$D1" kind zones/huge)"
check "dir: refused volume no directory" test ! -e "$D1/zones/huge"
check "dir: clone volume stays sparse" test "$(stat -c %b "$D1/zones/b-disk0/disk.raw")" -lt 40000
check_fails "dir: no native send" "not supported by the dir pool backend" \
	po "$D1" send zones/b-disk0 s1

# The environment chooses the backend over the config.
check_eq "env VMADM_POOL_TYPE wins" "dir $T/e1/zones" \
	"$(mkdir -p "$T/e1" && VMADM_POOL_TYPE=dir po "$T/e1" open)"
check_fails "unknown pool type" "valid: btrfs, dir" env VMADM_POOL_TYPE=lvm "$POOLOPS" "$T/e1" open

t_done

#!/usr/bin/env bash
# The building blocks of `vmadm send -I`, without the network: two or more
# nodes on one host, passes piped from vm_incr_send_pass into
# vm_incr_receive_pass through tests/integration/incr-ops. For btrfs native
# (`btrfs send -p`), btrfs --portable, dir -> dir and btrfs -> dir (the
# blocks-delta and tar-delta encodings): pass 1 full, data changed (writes
# at offsets, a punched hole, files deleted, added, changed, retyped),
# pass 2 incremental, finish; the target equals the source's snapshot, pass
# 2 moves a small fraction of pass 1, old snapshots are gone on both sides;
# extended attributes, changed alone, arrive too.
# Then a running kvm guest: pause/snapshot/resume and its workload on the
# target.
. "$(dirname "$0")/../lib/common.sh"

OPS=$BUILD/tests/integration/incr-ops
if [ ! -x "$OPS" ]; then
	fail "incr-ops is not built: $OPS"
	exit 1
fi
KVM=6c1b2c3d-1111-4222-8333-444455556666
OS=7d2c3d4e-1111-4222-8333-444455556666

A=$(node_make a btrfs 1073741824)
B=$(node_make b btrfs 1073741824)
C=$(node_make c dir)
D=$(node_make d dir)

# make_vms ROOT: a kvm VM with two disks (24 MiB of data in disk0) and a
# joyent VM with a varied root and data tree.
make_vms() {
	local root=$1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 128,
	  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 32}]}" | on "$root" "$VMADM" create || return 1
	echo "{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\", \"delegate_dataset\": true}" |
		on "$root" "$VMADM" create || return 1
	local d0=$root/zones/$KVM-disk0/disk.raw d1=$root/zones/$KVM-disk1/disk.raw
	head -c $((16 * 1048576)) /dev/urandom | dd of="$d0" bs=1M seek=2 conv=notrunc status=none
	head -c $((8 * 1048576)) /dev/urandom | dd of="$d0" bs=1M seek=40 conv=notrunc status=none
	echo "end of disk1" | dd of="$d1" bs=1 seek=$((32 * 1048576 - 13)) conv=notrunc status=none
	local r=$root/zones/$OS/root data=$root/zones/$OS/data
	mkdir -p "$r/etc" "$r/bin" "$r/lib" "$r/var/empty" "$r/gone/deep" "$r/swap"
	echo "hostname" >"$r/etc/hostname"
	head -c $((12 * 1048576)) /dev/urandom >"$r/lib/big"
	head -c 200000 /dev/urandom >"$r/bin/prog"
	ln -s ../bin/prog "$r/etc/link"
	ln "$r/bin/prog" "$r/bin/hardlink"
	echo x >"$r/gone/deep/file"
	echo "will be a dir" >"$r/swapfile"
	echo "will be a file" >"$r/swap/inner"
	truncate -s 50M "$r/var/sparse"
	echo tail | dd of="$r/var/sparse" bs=1 seek=$((20 * 1048576)) conv=notrunc status=none
	echo "payload" >"$data/file"
	mkdir -p "$data/sub"
	head -c 700000 /dev/urandom >"$data/sub/bin"
	echo "welcome" >"$r/etc/motd"
	setfattr -n user.tag -v v1 "$r/etc/motd"
	setfattr -n trusted.origin -v image "$r/etc/motd"
	setfattr -n user.dir -v d1 "$r/var/empty"
	setfattr -n user.keep -v k "$data/sub/bin"
	sync
}

# change_vms ROOT: what a guest does between passes.
change_vms() {
	local root=$1
	local d0=$root/zones/$KVM-disk0/disk.raw d1=$root/zones/$KVM-disk1/disk.raw
	head -c 1048576 /dev/urandom | dd of="$d0" bs=64K seek=100 conv=notrunc status=none # at 6.25 MiB
	head -c 70000 /dev/urandom | dd of="$d0" bs=1 seek=$((60 * 1048576 + 5)) conv=notrunc status=none
	fallocate -p -o $((42 * 1048576)) -l $((2 * 1048576)) "$d0" # a hole where data was
	echo "new end" | dd of="$d1" bs=1 seek=$((32 * 1048576 - 8)) conv=notrunc status=none
	local r=$root/zones/$OS/root data=$root/zones/$OS/data
	rm -rf "$r/gone"
	echo "new host" >"$r/etc/hostname"
	echo "added" >"$r/etc/added"
	mkdir -p "$r/new/dir" && echo n >"$r/new/dir/f"
	rm "$r/swapfile" && mkdir "$r/swapfile" && echo in >"$r/swapfile/x"
	rm -rf "$r/swap" && echo "now a file" >"$r/swap"
	ln -sf ../etc/hostname "$r/etc/link"
	echo more >>"$r/bin/prog" # both hard links change
	rm "$data/file"
	echo "data added" >"$data/added"
	# attribute-only changes: a copy (dir pool) shows them in no time stamp
	setfattr -n user.tag -v v2 "$r/etc/motd"
	setfattr -x trusted.origin "$r/etc/motd"
	setfattr -n user.dir -v d2 "$r/var/empty"
	setfattr -x user.keep "$data/sub/bin"
	sync
}

# same_as_source FROM TO LABEL: the target's installed VM equals the source.
same_as_source() {
	local from=$1 to=$2 l=$3
	for d in disk0 disk1; do
		check_eq "$l: $d byte-identical" "$(sha256sum <"$from/zones/$KVM-$d/disk.raw")" \
			"$(sha256sum <"$to/zones/$KVM-$d/disk.raw" 2>&1)"
	done
	check "$l: disk0 stays sparse" test "$(stat -c %b "$to/zones/$KVM-disk0/disk.raw")" -lt 80000
	check_eq "$l: joyent root tree equal" "$(tree_hash "$from/zones/$OS/root")" "$(tree_hash "$to/zones/$OS/root")"
	check_eq "$l: joyent data tree equal" "$(tree_hash "$from/zones/$OS/data")" "$(tree_hash "$to/zones/$OS/data")"
	check_eq "$l: extended attributes equal, changes included" \
		"$(tree_xattrs "$from/zones/$OS/root"; tree_xattrs "$from/zones/$OS/data")" \
		"$(tree_xattrs "$to/zones/$OS/root"; tree_xattrs "$to/zones/$OS/data")"
	check_eq "$l: the changed attribute arrived" 'v2' "$(getfattr --absolute-names --only-values -n user.tag "$to/zones/$OS/root/etc/motd" 2>&1)"
	check "$l: hard link kept" test "$(stat -c %h "$to/zones/$OS/root/bin/prog")" = 2
	check "$l: sparse file kept sparse" test "$(stat -c %b "$to/zones/$OS/root/var/sparse")" -lt 2000
	for u in $KVM $OS; do
		check_eq "$l: $u installed stopped" stopped "$(on "$to" "$VMADM" get $u | $JSON state)"
	done
	check_eq "$l: no temps or journals on the target" "" "$(ls "$to/zones" | grep -F .recv; ls "$to/recv")"
	check_eq "$l: no migration snapshots on the target" "" "$(find "$to/zones/.snapshots" -name '@vmadm-send-*')"
}

# migrate FROM TO LABEL [-p]: pass 1, change, pass 2, finish, for both VMs.
migrate() {
	local from=$1 to=$2 l=$3 opt=${4:-} u p1 p2
	for u in $KVM $OS; do
		check "$l: snapshot 1 of $u" on "$from" "$OPS" snapshot $u vmadm-send-I1-x
		on "$from" "$OPS" send $u - vmadm-send-I1-x $opt >"$T/$u.p1" 2>"$T/err" ||
			fail "$l: send pass 1 of $u: $(cat "$T/err")"
		check_eq "$l: receive pass 1 of $u holds it" "held $u vmadm-send-I1-x" \
			"$(on "$to" "$OPS" receive <"$T/$u.p1" 2>&1 | cut -d' ' -f1-3)"
		check_eq "$l: $u waits in state receiving" receiving "$(on "$to" "$VMADM" get $u | $JSON state)"
		check_eq "$l: held snapshot of $u" vmadm-send-I1-x "$(on "$to" "$OPS" held $u 2>&1)"
	done
	change_vms "$from"
	for u in $KVM $OS; do
		check "$l: snapshot 2 of $u" on "$from" "$OPS" snapshot $u vmadm-send-I2-x
		on "$from" "$OPS" send $u vmadm-send-I1-x vmadm-send-I2-x $opt >"$T/$u.p2" 2>"$T/err" ||
			fail "$l: send pass 2 of $u: $(cat "$T/err")"
		check_eq "$l: receive pass 2 of $u" "held $u vmadm-send-I2-x" \
			"$(on "$to" "$OPS" receive <"$T/$u.p2" 2>&1 | cut -d' ' -f1-3)"
		check "$l: source drops snapshot 1 of $u" on "$from" "$OPS" drop $u vmadm-send-I1-x
		p1=$(stat -c %s "$T/$u.p1") p2=$(stat -c %s "$T/$u.p2")
		echo "# $l: $u pass 1 $p1 bytes, pass 2 $p2 bytes"
		check "$l: pass 2 of $u moved a small fraction of pass 1 ($p2 * 4 < $p1)" test $((p2 * 4)) -lt "$p1"
	done
	check_eq "$l: target holds only snapshot 2" "" \
		"$(find "$to/zones/.snapshots" -name '@vmadm-send-I1-x')"
	check_eq "$l: source holds only snapshot 2" "" \
		"$(find "$from/zones/.snapshots" -name '@vmadm-send-I1-x')"
	for u in $KVM $OS; do
		check_eq "$l: finish $u" stopped "$(on "$to" "$OPS" finish $u 2>&1)"
		check "$l: source drops snapshot 2 of $u" on "$from" "$OPS" drop $u vmadm-send-I2-x
	done
	check_eq "$l: no migration snapshots left on the source" "" \
		"$(find "$from/zones/.snapshots" -name '@vmadm-send-*')"
	same_as_source "$from" "$to" "$l"
}

clear_node() {
	on "$1" "$VMADM" delete $KVM >/dev/null 2>&1
	on "$1" "$VMADM" delete $OS >/dev/null 2>&1
}

check "make VMs on node a (btrfs)" make_vms "$A"
migrate "$A" "$B" "btrfs native"
check_grep "btrfs native: passes 2 were btrfs streams" -q '"encoding":"btrfs"' "$T/$KVM.p2"
clear_node "$A"
clear_node "$B"
check "make VMs on node a again" make_vms "$A"
migrate "$A" "$B" "btrfs portable" -p
check_grep "btrfs portable: pass 2 is blocks-delta" -q '"encoding":"blocks-delta"' "$T/$KVM.p2"
check_grep "btrfs portable: pass 2 is tar-delta" -q '"encoding":"tar-delta"' "$T/$OS.p2"
check "make VMs on node c (dir)" make_vms "$C"
migrate "$C" "$D" "dir"
clear_node "$A"
clear_node "$C"
check "make VMs on node a again" make_vms "$A"
migrate "$A" "$C" "btrfs->dir" -p

# A dir pool on a filesystem with reflinks (btrfs): its snapshots share
# extents with the dataset, so the sender leaves unchanged blocks unread.
mkdir -p "$T/e"
truncate -s 1G "$T/e.img" && mkfs.btrfs -q "$T/e.img" && mount -o loop "$T/e.img" "$T/e" ||
	fail "make a btrfs filesystem for node e"
E=$(node_make e dir)
clear_node "$C"
check "make VMs on node e (dir on btrfs)" make_vms "$E"
migrate "$E" "$C" "dir on btrfs" -p
on "$E" "$OPS" snapshot $KVM vmadm-send-I1-s
change_vms "$E"
on "$E" "$OPS" snapshot $KVM vmadm-send-I2-s
VMADM_DEBUG=1 VMADM_ROOT=$E "$OPS" send $KVM vmadm-send-I1-s vmadm-send-I2-s -p 2>"$T/dbg" >/dev/null
unread=$(sed -n "s/^debug: send zones\/$KVM-disk0@.* \([0-9]*\) bytes left unread.*/\1/p" "$T/dbg")
check "dir on btrfs: the delta of disk0 left ${unread:-?} unchanged bytes unread (> 16 MiB)" \
	test "${unread:-0}" -gt $((16 * 1048576))
on "$E" "$OPS" drop $KVM vmadm-send-I1-s
on "$E" "$OPS" drop $KVM vmadm-send-I2-s

# A pass that builds on a snapshot the target does not hold is refused
# without touching what the target holds.
on "$A" "$OPS" snapshot $KVM vmadm-send-I1-y
on "$A" "$OPS" send $KVM - vmadm-send-I1-y -p >"$T/y1" 2>/dev/null
on "$D" "$VMADM" delete $KVM >/dev/null 2>&1
check "refusal setup: pass 1 held on d" sh -c "VMADM_ROOT=$D $OPS receive < $T/y1 >/dev/null"
check_fails "a stream from an unknown base is refused" "no earlier pass" \
	sh -c "VMADM_ROOT=$B $OPS receive < $T/$KVM.p2"
check_fails "a stream from another base is refused" "holds vmadm-send-I1-y" \
	sh -c "VMADM_ROOT=$D $OPS receive < $T/$KVM.p2"
check_eq "the refused pass left the held one" vmadm-send-I1-y "$(on "$D" "$OPS" held $KVM 2>&1)"
check "a held receive survives other vmadm commands" on "$D" "$VMADM" list
check_eq "... and is still held" vmadm-send-I1-y "$(on "$D" "$OPS" held $KVM 2>&1)"
# A pass cut short is undone back to the held base, so a re-run continues.
on "$A" "$OPS" snapshot $KVM vmadm-send-I2-y
on "$A" "$OPS" send $KVM vmadm-send-I1-y vmadm-send-I2-y -p >"$T/y2" 2>/dev/null
head -c $(($(stat -c %s "$T/y2") - 100)) "$T/y2" >"$T/y2.cut"
check_fails "a truncated pass 2 fails" "truncated" sh -c "VMADM_ROOT=$D $OPS receive < $T/y2.cut"
check_eq "the held base survives the failed pass" vmadm-send-I1-y "$(on "$D" "$OPS" held $KVM 2>&1)"
check "the re-run of pass 2 lands" sh -c "VMADM_ROOT=$D $OPS receive < $T/y2 >/dev/null"
check "finish after the re-run" on "$D" "$OPS" finish $KVM
for d in disk0 disk1; do
	check_eq "after a failed and re-run pass: $d equals the snapshot" \
		"$(sha256sum <"$A/zones/.snapshots/$KVM-$d/@vmadm-send-I2-y/disk.raw")" \
		"$(sha256sum <"$D/zones/$KVM-$d/disk.raw")"
done
# A pass killed half-way (after its first dataset) is reset to the held
# base by the next one.
on "$D" "$VMADM" delete $KVM >/dev/null 2>&1
check "crash setup: pass 1 held on d" sh -c "VMADM_ROOT=$D $OPS receive < $T/y1 >/dev/null"
VMADM_FAULT=incr-after-dataset VMADM_ROOT=$D "$OPS" receive <"$T/y2" >/dev/null 2>&1
check_eq "the killed pass died at the fault point" 137 "$?"
check_fails "the held receive says its last pass was interrupted" "interrupted" on "$D" "$OPS" held $KVM
check_fails "finish refuses a half-applied pass" "interrupted" on "$D" "$OPS" finish $KVM
check "the re-run of the killed pass lands" sh -c "VMADM_ROOT=$D $OPS receive < $T/y2 >/dev/null"
check "finish after the killed pass" on "$D" "$OPS" finish $KVM
for d in disk0 disk1; do
	check_eq "after a killed and re-run pass: $d equals the snapshot" \
		"$(sha256sum <"$A/zones/.snapshots/$KVM-$d/@vmadm-send-I2-y/disk.raw")" \
		"$(sha256sum <"$D/zones/$KVM-$d/disk.raw")"
done
check_eq "after a killed and re-run pass: no temps or journals" "" "$(ls "$D/zones" | grep -F .recv; ls "$D/recv")"
on "$A" "$OPS" drop $KVM vmadm-send-I1-y
on "$A" "$OPS" drop $KVM vmadm-send-I2-y
# abort drops a held receive entirely.
on "$A" "$OPS" snapshot $OS vmadm-send-I1-z
on "$A" "$OPS" send $OS - vmadm-send-I1-z >"$T/z1" 2>/dev/null
clear_node "$B"
check "abort setup: pass 1 held on b" sh -c "VMADM_ROOT=$B $OPS receive < $T/z1 >/dev/null"
# Hostile deletion lists are refused before anything outside the dataset,
# its root or a child dataset is touched, and the held base survives.
mkdir -p "$T/outside" && echo keep >"$T/outside/victim"
ln -s "$T/outside" "$B/zones/$OS.recv/root/escape"
on "$B" "$OPS" held $OS >/dev/null
for bad in "root/escape/victim|its parent is not a directory" "../outside/victim|has a \"..\" component" \
	"/etc/passwd|is absolute" "data|a child dataset" ".|the root" "root/../../x|has a \"..\" component"; do
	path=${bad%%|*} why=${bad#*|}
	on "$A" "$OPS" forge-delta $OS vmadm-send-I1-z vmadm-send-I2-z "$path" >"$T/forged" 2>"$T/err" ||
		fail "forge a deletion of $path: $(cat "$T/err")"
	check_fails "deletion of \"$path\" refused" "$why" sh -c "VMADM_ROOT=$B $OPS receive < $T/forged"
	check_eq "after the refused deletion of $path: still held" vmadm-send-I1-z "$(on "$B" "$OPS" held $OS 2>&1)"
done
check_eq "the file behind the symlink is intact" keep "$(cat "$T/outside/victim")"
check "the held dataset's data is intact" test -d "$B/zones/$OS.recv/data"
check "abort" on "$B" "$OPS" abort $OS
check_eq "abort left node b clean" "" "$(leftovers "$B")"
# vmadm delete of the "receiving" placeholder takes its held receive along
# (before, the temps, snapshots and journal stayed until an expiry a held
# pass between passes does not even have).
check "delete setup: pass 1 held on b" sh -c "VMADM_ROOT=$B $OPS receive < $T/z1 >/dev/null"
check_eq "delete setup: b shows the placeholder" receiving "$(on "$B" "$VMADM" get $OS | $JSON state)"
check "delete the held placeholder" sh -c "VMADM_ROOT=$B $VMADM delete $OS 2>$T/del.err"
check_grep "delete says the held receive went too" -q "removed the partial receive of VM $OS (its VM was deleted)" "$T/del.err"
check_eq "delete left node b clean" "" "$(leftovers "$B")"
check_fails "nothing held any more" "" on "$B" "$OPS" held $OS
on "$A" "$OPS" drop $OS vmadm-send-I1-z

# Change detection without reading (FIEMAP): a reflinked copy on btrfs
# shares every extent but the one written since; on ext4 nothing is known
# to be shared and every data range is compared.
img=$A/zones/fiemap.img
head -c $((8 * 1048576)) /dev/urandom >"$img"
cp --reflink=always "$img" "$img.new"
head -c 4096 /dev/urandom | dd of="$img.new" bs=4096 seek=300 conv=notrunc status=none
sync
check_eq "btrfs reflink: only the written grain may differ" "ranges 1 bytes 65536 shared $((8 * 1048576 - 65536))" \
	"$("$OPS" changed-ranges "$img" "$img.new" 2>&1)"
rm -f "$img" "$img.new"
cp "$T/$KVM.p1" "$T/plain" && cp "$T/plain" "$T/plain.new"
check "ext4: every data range is handed out" sh -c "$OPS changed-ranges $T/plain $T/plain.new | grep -q ' shared 0\$'"

# A running kvm guest and a running container: pass 1 and 2 while they run
# (paused / frozen around the snapshots), the last pass after the stop; the
# workload's records on the target are whole and run up to the stop.
CHECK=$BUILD/tools/vmadm-workload-check
OFFSET=33554432
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
RK=8e1b2c3d-1111-4222-8333-444455556666
RO=9f2c3d4e-1111-4222-8333-444455556666
if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
clear_node "$A"
clear_node "$B"
check "imgadm install kvm-test" on "$A" "$IMGADM" install -m "$BUILD/images/kvm-test.json" -f "$BUILD/images/kvm-test.img"
check "imgadm install joyent-test" on "$A" "$IMGADM" install -m "$BUILD/images/joyent-test.json" -f "$BUILD/images/joyent-test.tar.gz"
check "create a running kvm VM" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$RK\", \"ram\": 256,
  \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 64}]}' | VMADM_ROOT=$A $VMADM create"
check "create a running joyent VM" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$RO\",
  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true}' | VMADM_ROOT=$A $VMADM create"
check "start both" sh -c "VMADM_ROOT=$A $VMADM start $RK && VMADM_ROOT=$A $VMADM start $RO"
check "kvm workload runs" wl_wait_records 10 90 --offset $OFFSET "$A/zones/$RK-disk0/disk.raw"
check "joyent workload runs" wl_wait_records 10 30 "$A/zones/$RO/data/workload.rec"
for u in $RK $RO; do
	check "running $u: snapshot 1" on "$A" "$OPS" snapshot $u vmadm-send-I1-r
	check_eq "running $u: still running after the snapshot" running "$(on "$A" "$VMADM" get $u | $JSON state)"
	on "$A" "$OPS" send $u - vmadm-send-I1-r >"$T/$u.r1" 2>"$T/err" || fail "running $u: pass 1: $(cat "$T/err")"
	check "running $u: receive pass 1" sh -c "VMADM_ROOT=$B $OPS receive < $T/$u.r1 >/dev/null"
done
check "kvm snapshot 1 holds whole records" "$CHECK" --offset $OFFSET "$A/zones/.snapshots/$RK-disk0/@vmadm-send-I1-r/disk.raw"
nk=$(wl_records --offset $OFFSET "$A/zones/$RK-disk0/disk.raw")
no=$(wl_records "$A/zones/$RO/data/workload.rec")
check "kvm workload goes on after the pause" wl_wait_records $((nk + 10)) 30 --offset $OFFSET "$A/zones/$RK-disk0/disk.raw"
check "joyent workload goes on after the freeze" wl_wait_records $((no + 10)) 30 "$A/zones/$RO/data/workload.rec"
for u in $RK $RO; do
	check "running $u: snapshot 2" on "$A" "$OPS" snapshot $u vmadm-send-I2-r
	on "$A" "$OPS" send $u vmadm-send-I1-r vmadm-send-I2-r >"$T/$u.r2" 2>"$T/err" || fail "running $u: pass 2: $(cat "$T/err")"
	check "running $u: receive pass 2" sh -c "VMADM_ROOT=$B $OPS receive < $T/$u.r2 >/dev/null"
	on "$A" "$OPS" drop $u vmadm-send-I1-r
	p1=$(stat -c %s "$T/$u.r1") p2=$(stat -c %s "$T/$u.r2")
	echo "# running $u: pass 1 $p1 bytes, pass 2 $p2 bytes"
	check "running $u: pass 2 moved a small fraction of pass 1 ($p2 * 4 < $p1)" test $((p2 * 4)) -lt "$p1"
	check "running $u: stop" on "$A" "$VMADM" stop $u
	check "running $u: snapshot 3 (stopped)" on "$A" "$OPS" snapshot $u vmadm-send-I3-r
	on "$A" "$OPS" send $u vmadm-send-I2-r vmadm-send-I3-r >"$T/$u.r3" 2>"$T/err" || fail "running $u: pass 3: $(cat "$T/err")"
	check "running $u: receive the last pass" sh -c "VMADM_ROOT=$B $OPS receive < $T/$u.r3 >/dev/null"
	on "$A" "$OPS" drop $u vmadm-send-I2-r
	check_eq "running $u: finish" stopped "$(on "$B" "$OPS" finish $u 2>&1)"
	on "$A" "$OPS" drop $u vmadm-send-I3-r
done
for d in disk0 disk1; do
	check_eq "running kvm: $d byte-identical" "$(sha256sum <"$A/zones/$RK-$d/disk.raw")" "$(sha256sum <"$B/zones/$RK-$d/disk.raw")"
done
nk=$(wl_records --offset $OFFSET "$A/zones/$RK-disk0/disk.raw")
check_eq "running kvm: the target has every record up to the stop" "$nk" "$(wl_records --offset $OFFSET "$B/zones/$RK-disk0/disk.raw")"
check_eq "running joyent: data equal" "$(tree_hash "$A/zones/$RO/data")" "$(tree_hash "$B/zones/$RO/data")"
check_eq "running joyent: root equal" "$(tree_hash "$A/zones/$RO/root")" "$(tree_hash "$B/zones/$RO/root")"
check_eq "running: no migration snapshots left" "" "$(find "$A/zones/.snapshots" "$B/zones/.snapshots" -name '@vmadm-send-*')"

t_done

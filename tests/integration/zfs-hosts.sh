#!/usr/bin/env bash
# Direct migrations between hosts with zfs pools (zfs-fuse): three
# namespaced hosts, a and b with a zfs pool each (their own zpools), c with
# a btrfs pool. A running kvm VM and a running joyent VM, whose workloads
# write records all along, travel
#   cold (`vmadm send UUID HOST PORT`): a -> b (zfs -> zfs: the native
#     encoding, `zfs send -p` into `zfs receive -u`), b -> c and, stopped,
#     c -> a (zfs <-> btrfs: portable, picked with no flag);
#   -I: a -> b (native passes: `zfs send -p -i`), b -> c (portable);
#   cold again (kvm, running) c -> a, then -L (kvm): a -> b, b -> c.
# Each move: exit 0; the encoding the target's vmadmd logged is the one
# expected (zfs when both pools speak it, else portable); the VM runs on
# the target; the source keeps it stopped with autoboot off and migrated_to
# (then `vmadm delete` there works); the target has every record the source
# had, byte for byte, and the workload goes on; the stopped move leaves
# every dataset byte-identical; no dataset, snapshot or temporary name is
# left on either zfs node beyond the VMs' own (and a's images). At the end
# the workloads' sequences have no gap.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
KVM=3f1c2b4a-7e6d-4c5b-9a8f-0e1d2c3b4a51
OS=4a2d3c5b-8f7e-4d6c-8b9a-1f2e3d4c5b62
OFFSET=33554432
BOOT_WAIT=90

if ! command -v zfs-fuse >/dev/null; then
	fail "zfs-fuse is not installed (scripts/install-deps)"
	exit 1
fi
if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
# VMADM_DEBUG: each vmadmd logs the zfs commands it runs (the native
# receives' `zfs receive -u [-F]`).
if ! VMADM_DEBUG=1 HOSTS_POOLS="zfs zfs btrfs" hosts_make 3 1073741824 2>"$T/hosts.err"; then
	fail "hosts_make 3 (zfs zfs btrfs): $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
A=$(host_root a)
ZA=$(zfs_pool_of "$A")
ZB=$(zfs_pool_of "$(host_root b)")

# Where each VM is: a host name.
declare -A AT=([$KVM]=a [$OS]=a)
# rec UUID ROOT: the checker's arguments for the VM's records on a node.
rec() {
	if [ "$1" = "$KVM" ]; then
		echo "--offset $OFFSET $2/zones/$KVM-disk0/disk.raw"
	else
		echo "$2/zones/$OS/data/workload.rec"
	fi
}
# own_datasets HOST: the zfs names a zfs host must hold, below its zpool:
# the VMs that are there, and on a the images.
own_datasets() {
	local h=$1
	{
		if [ "$h" = a ]; then
			printf '%s\n' "$KVM_IMAGE" "$KVM_IMAGE@final" "$OS_IMAGE" "$OS_IMAGE@final"
		fi
		[ "${AT[$KVM]}" = "$h" ] && printf '%s\n' "$KVM" "$KVM-disk0" "$KVM-disk1"
		[ "${AT[$OS]}" = "$h" ] && printf '%s\n' "$OS" "$OS/data"
	} | sort | xargs
}
# vm_datasets HOST UUID: what HOST must hold of VM UUID: its datasets, no
# snapshot; vm_datasets_now HOST UUID: what it holds (a zfs host's zfs
# datasets and snapshots, a btrfs host's datasets and their snapshots).
vm_datasets() {
	own_datasets "$1" | tr ' ' '\n' | grep -F "$2" | xargs
}
vm_datasets_now() {
	local r
	r=$(host_root "$1")
	if [ "$1" = c ]; then
		{
			ls "$r/zones" | grep -F "$2"
			ls "$r/zones/$2" 2>/dev/null | grep -qx data && echo "$2/data"
			find "$r/zones/.snapshots" -mindepth 2 -maxdepth 3 -path "*$2*" -name '@*' 2>/dev/null
		} | sort | xargs
	else
		zfs_datasets "$(zfs_pool_of "$r")" | tr ' ' '\n' | grep -F "$2" | xargs
	fi
}
# zfs_datasets ZPOOL: every dataset, snapshot and clone under the zpool.
zfs_datasets() {
	zfs list -H -o name -t all -r "$1" | tail -n +2 | sed "s|^$1/||" | sort | xargs
}
# nothing_left L: the zfs hosts hold the VMs' own datasets and nothing more;
# c has no send snapshot, receive journal or temporary receive left.
nothing_left() {
	local c
	c=$(host_root c)
	check_eq "$1: a's zpool holds only its own datasets" "$(own_datasets a)" "$(zfs_datasets "$ZA")"
	check_eq "$1: b's zpool holds only its own datasets" "$(own_datasets b)" "$(zfs_datasets "$ZB")"
	check_eq "$1: no temporary clone mount left on a or b" "" \
		"$(ls -A "$A/.zfs-open" "$(host_root b)/.zfs-open" 2>/dev/null | grep -v ':$' | xargs)"
	check_eq "$1: c: no send snapshot, receive journal or temp" "" \
		"$(find "$c/zones/.snapshots" -name '*vmadm-*' 2>/dev/null; ls -A "$c/recv" 2>/dev/null
		find "$c/zones/.recv" -mindepth 1 2>/dev/null)"
}
# comparable ROOT UUID: the record without what a move changes on purpose.
comparable() {
	vm_get_comparable "$1" "$2" |
		$JSON -e 'delete this.state; delete this.zone_state; delete this.autoboot;
			delete this.migrated_to; delete this.accel; delete this.exit_status;
			delete this.exit_timestamp; delete this.boot_timestamp'
}
# the_encoding HOST UUID: the encoding HOST's vmadmd logged for the last
# migration of UUID it took.
the_encoding() {
	grep "migration of VM $2 from .*encoding " "$(host_root "$1")/log/vmadmd.log" | tail -n 1 |
		sed -n 's/.*, encoding \([^,]*\),.*/\1/p'
}

# move_start MODE UUID TO: start `vmadm send` of UUID from where it is to TO
# in the background (MODE: cold, -I or -L), its --json events in
# $T/UUID.MODE.TO.events, its stderr (with VMADM_DEBUG, the zfs commands it
# runs) in .err; MOVE_PID is the send's PID.
move_start() {
	local mode=$1 u=$2 to=$3 from=${AT[$2]} flag=()
	[ "$mode" = cold ] || flag=("$mode")
	local f=$T/$u.$mode.$to
	MOVE_N0[$u]=$(wl_records $(rec "$u" "$(host_root "$from")"))
	MOVE_RUNNING[$u]=$(host_exec "$from" "$VMADM" get "$u" | $JSON state)
	comparable "$(host_root "$from")" "$u" >"$f.config"
	host_spawn "$from" env VMADM_DEBUG=1 "$VMADM" send "$u" "${flag[@]}" "$(host_ip "$to")" \
		"$HOSTS_PORT" --json --timeout 10 >"$f.events" 2>"$f.err"
	MOVE_PID=$HOST_PID
}
declare -A MOVE_N0 MOVE_RUNNING

# move_check MODE UUID TO RC ENCODING: the promises of one finished move
# (RC its exit status); ENCODING the one the target must have logged. Then
# `vmadm delete` on the source, as the && promise allows.
move_check() {
	local mode=$1 u=$2 to=$3 rc=$4 enc=$5 from=${AT[$2]}
	local l="$mode ${u:0:8} $from -> $to" f=$T/$u.$mode.$to
	local rf rt n
	rf=$(host_root "$from")
	rt=$(host_root "$to")
	check_eq "$l: send exits 0" 0 "$rc$([ "$rc" = 0 ] || echo ": $(grep -v spawn: "$f.err" | tail -n 3 | xargs)")"
	check "$l: every --json line parses" $JSON -ga event <"$f.events"
	check_eq "$l: the result says ok" true "$($JSON -ga -c 'this.event === "result"' ok <"$f.events")"
	check_eq "$l: $to's vmadmd took it as encoding $enc" "$enc" "$(the_encoding "$to" "$u")"
	if [ "$enc" = zfs ]; then
		check_grep "$l: $from sent it with zfs send -p" -q "spawn: zfs send -p .*/$u@" "$f.err"
		check_grep "$l: $to received it with zfs receive -u" -q \
			"spawn: zfs receive -u .*$u" "$rt/log/vmadmd.log"
	else
		check_eq "$l: no zfs send" "" "$(grep 'spawn: zfs send' "$f.err")"
	fi
	check_eq "$l: ${MOVE_RUNNING[$u]} on $to" "${MOVE_RUNNING[$u]}" \
		"$(host_exec "$to" "$VMADM" get "$u" | $JSON state)"
	check_eq "$l: stopped on $from, autoboot off, migrated_to $to" \
		"stopped false $(host_ip "$to") $HOSTS_PORT" \
		"$(host_exec "$from" "$VMADM" get "$u" | $JSON state autoboot migrated_to.host migrated_to.port | xargs)"
	check_eq "$l: same config on $to" "$(cat "$f.config")" "$(comparable "$rt" "$u")"
	# No record lost: every record the source has is on the target, byte
	# for byte (the records of a running VM are its last writes before the
	# stop, or before the switchover).
	n=$(wl_records $(rec "$u" "$rf"))
	if [ "$mode" = cold ]; then
		check "$l: $from's records are all there ($n)" test "$n" -ge "${MOVE_N0[$u]}"
	else
		check "$l: the workload wrote on $from while it moved (${MOVE_N0[$u]} -> $n records)" \
			test "$n" -gt "${MOVE_N0[$u]}"
	fi
	if [ "$u" = "$KVM" ]; then
		check "$l: disk0 on $to identical to $from's up to its last record ($n)" \
			cmp -n $((OFFSET + 512 * (n + 1))) "$rf/zones/$u-disk0/disk.raw" "$rt/zones/$u-disk0/disk.raw"
		check_eq "$l: disk1 byte-identical" "$(sha256sum <"$rf/zones/$u-disk1/disk.raw")" \
			"$(sha256sum <"$rt/zones/$u-disk1/disk.raw" 2>&1)"
	else
		check "$l: the record file on $to starts with $from's ($n records)" \
			cmp -n "$(stat -c %s "$rf/zones/$u/data/workload.rec")" \
			"$rf/zones/$u/data/workload.rec" "$rt/zones/$u/data/workload.rec"
		check "$l: root data identical" cmp "$rf/zones/$u/root/blob" "$rt/zones/$u/root/blob"
	fi
	if [ "${MOVE_RUNNING[$u]}" = running ]; then
		check "$l: the workload goes on on $to" \
			wl_wait_records $((n + 10)) "$BOOT_WAIT" $(rec "$u" "$rt")
	fi
	# The source keeps the VM as it was, without the send's snapshots
	# (looked at before the delete, which would take them too).
	check_eq "$l: $from keeps its datasets and no snapshot of the send" \
		"$(vm_datasets "$from" "$u")" "$(vm_datasets_now "$from" "$u")"
	check "$l: vmadm delete on $from" host_exec "$from" "$VMADM" delete "$u"
	AT[$u]=$to
}

# move MODE TO UUID...: move each VM to TO at once, then check each.
move() {
	local mode=$1 to=$2 u
	shift 2
	declare -A pids
	for u in "$@"; do
		move_start "$mode" "$u" "$to"
		pids[$u]=$MOVE_PID
	done
	for u in "$@"; do
		wait "${pids[$u]}"
		RC[$u]=$?
	done
}
declare -A RC

# passes FILE: the pass events of an -I send, "pass final" each.
passes() { $JSON -ga -c 'this.pass !== undefined' pass final <"$1" | xargs; }

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "imgadm install joyent-test on a" host_exec a "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
check "create kvm VM on a (zfs)" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 128,
  \"autoboot\": true, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 32}]}' |
  VMADM_ROOT=$A $VMADM create"
check "create joyent VM on a (zfs)" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\",
  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true, \"autoboot\": true}' | VMADM_ROOT=$A $VMADM create"
# data the guests never touch: it must arrive as it is, every time
head -c 4000000 /dev/urandom | dd of="$A/zones/$KVM-disk1/disk.raw" bs=1M seek=3 conv=notrunc status=none
head -c 300000 /dev/urandom >"$A/zones/$OS/root/blob"
nothing_left "created"
check "start kvm on a" host_exec a "$VMADM" start $KVM
check "start joyent on a" host_exec a "$VMADM" start $OS
check "kvm workload runs on a" wl_wait_records 10 "$BOOT_WAIT" $(rec $KVM "$A")
check "joyent workload runs on a" wl_wait_records 10 30 $(rec $OS "$A")

# 1. cold a -> b, both running, at once: zfs to zfs, natively.
move cold b $KVM $OS
for u in $KVM $OS; do move_check cold $u b "${RC[$u]}" zfs; done
nothing_left "cold a -> b"

# 2. cold b -> c, both running: zfs to btrfs, portable with no flag.
move cold c $KVM $OS
for u in $KVM $OS; do move_check cold $u c "${RC[$u]}" portable; done
nothing_left "cold b -> c"

# 3. cold c -> a, both stopped: btrfs to zfs, portable; every dataset
# byte-identical.
C=$(host_root c)
check "stop kvm on c" host_exec c "$VMADM" stop $KVM
check "stop joyent on c" host_exec c "$VMADM" stop $OS
# tree_hash_s DIR: tree_hash with mtimes to the second. zfs-fuse keeps
# whole seconds only (it stores and shows a utimensat's or a write's time
# without its nanoseconds), so a tree that comes from btrfs with sub-second
# mtimes (the workload's record file) arrives on it with them cut.
tree_hash_s() {
	(
		cd "$1" || exit 1
		find . -path ./.vmadm-dataset -prune -o -printf '%P|%y|%m|%U|%G|%l\n' | sort
		find . -type f ! -name .vmadm-dataset -printf '%P|%s|%T@\n' | sed 's/\.[0-9]*$//' | sort
		find . -type f ! -name .vmadm-dataset -exec sha256sum {} + | sort -k 2
		tree_xattrs .
	) | sha256sum | cut -d' ' -f1
}
sums() { # ROOT: the VMs' datasets, each a hash
	local d
	for d in disk0 disk1; do sha256sum <"$1/zones/$KVM-$d/disk.raw"; done
	tree_hash_s "$1/zones/$OS/root"
	tree_hash_s "$1/zones/$OS/data"
}
sums "$C" >"$T/sums.c"
move cold a $KVM $OS
for u in $KVM $OS; do move_check cold $u a "${RC[$u]}" portable; done
check_eq "cold c -> a (stopped): every dataset byte-identical (disk0, disk1, root, data; mtimes to the second)" \
	"$(cat "$T/sums.c" | xargs)" "$(sums "$A" | xargs)"
nothing_left "cold c -> a"
check "start kvm on a again" host_exec a "$VMADM" start $KVM
check "start joyent on a again" host_exec a "$VMADM" start $OS
check "kvm workload runs on a again" \
	wl_wait_records $(($(wl_records $(rec $KVM "$A")) + 10)) "$BOOT_WAIT" $(rec $KVM "$A")
check "joyent workload runs on a again" \
	wl_wait_records $(($(wl_records $(rec $OS "$A")) + 10)) 30 $(rec $OS "$A")

# 4. -I a -> b: native passes (a full `zfs send -p`, then `zfs send -p -i`).
move -I b $KVM $OS
for u in $KVM $OS; do
	check "-I ${u:0:8} a -> b: more than one pass, the last one final" \
		sh -c "echo '$(passes "$T/$u.-I.b.events")' | grep -Eq '^1 false( [0-9]+ false)* [0-9]+ true$'"
	move_check -I $u b "${RC[$u]}" zfs
done
for u in $KVM $OS; do
	check_grep "-I ${u:0:8} a -> b: a sent the deltas as zfs send -p -i" -q \
		"spawn: zfs send -p -i @vmadm-send-[^ ]* [^ ]*/$u@" "$T/$u.-I.b.err"
done
check_grep "-I a -> b: b applied them with zfs receive -u -F" -q \
	"spawn: zfs receive -u -F .*$KVM.*disk0@" "$(host_root b)/log/vmadmd.log"
nothing_left "-I a -> b"

# 5. -I b -> c: portable passes.
move -I c $KVM $OS
for u in $KVM $OS; do
	check "-I ${u:0:8} b -> c: more than one pass, the last one final" \
		sh -c "echo '$(passes "$T/$u.-I.c.events")' | grep -Eq '^1 false( [0-9]+ false)* [0-9]+ true$'"
	move_check -I $u c "${RC[$u]}" portable
done
nothing_left "-I b -> c"

# 6. kvm, running, cold c -> a: btrfs to zfs, portable.
move cold a $KVM
move_check cold $KVM a "${RC[$KVM]}" portable
nothing_left "cold c -> a (running)"

# 7. -L a -> b (the disks' snapshots natively), 8. -L b -> c (portable).
for to in b c; do
	from=${AT[$KVM]}
	move -L $to $KVM
	f=$T/$KVM.-L.$to.events
	check_grep "-L $from -> $to: the RAM phase ran" -q '"phase":"ram"' "$f"
	echo "# -L $from -> $to: $(grep '"event":"result"' "$f" | $JSON report 2>/dev/null | tr -d '\n')"
	move_check -L $KVM $to "${RC[$KVM]}" "$([ $to = b ] && echo zfs || echo portable)"
	nothing_left "-L $from -> $to"
done

# The workloads' whole history: no record lost across every move.
check "stop kvm on c" host_exec c "$VMADM" stop $KVM
check "stop joyent on c" host_exec c "$VMADM" stop $OS
"$CHECK" --json $(rec $KVM "$C") >"$T/k.json"
"$CHECK" --json $(rec $OS "$C") >"$T/o.json"
echo "# kvm: $(cat "$T/k.json")"
echo "# joyent: $(cat "$T/o.json")"
# kvm boots: a, cold to b, cold to c, a again, -I to b, -I to c, cold to a
# (-L keeps the guest running); joyent runs: a, b, c, a, b, c.
check_eq "kvm: sequence gap-free, nothing corrupt or duplicated, across 9 moves (7 boots)" \
	"true 0 0 0 7" "$($JSON -f "$T/k.json" -a ok gaps corrupt duplicates boots)"
check_eq "joyent: sequence gap-free, nothing corrupt or duplicated, across 6 moves (6 runs)" \
	"true 0 0 0 6" "$($JSON -f "$T/o.json" -a ok gaps corrupt duplicates runs)"
check "delete kvm on c" host_exec c "$VMADM" delete $KVM
check "delete joyent on c" host_exec c "$VMADM" delete $OS
check_eq "c holds nothing of them" "" "$(leftovers "$C")"
nothing_left "the end"
t_done

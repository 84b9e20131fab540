#!/usr/bin/env bash
# Hostile zfs send streams: real `vmadm send` streams of a zfs node (a
# joyent VM with a delegated dataset, a kvm VM with small disks), one
# dataset's `zfs send -p` stream rewritten by tests/lib/zfs-forge.py (cut,
# a byte flipped, bad magic, clone flag, incremental where a full one is
# expected, dedup, raw, compressed and embedded records, a second substream,
# another dataset's or snapshot's name, trailing bytes, a forged properties
# length, ...) and wrapped back with `vmadm-stream rewrite --dataset-data`
# (valid CRCs and hashes), each received by `vmadm receive` on a second zfs
# node. Each must be refused with the checker's words (or, where only zfs
# can tell, the tool's) and leave that node as it was: no dataset, snapshot
# or temporary name in its zpool, no VM, no directory under ROOT/zones, no
# mount, another VM's dataset (OTHER) byte-identical; and the node still
# takes the genuine stream. Properties a stream carries (mountpoint,
# canmount, sharenfs, quota, reservation) are never applied. An incremental
# (-I) pass with a forged base, and a receive killed with SIGKILL in the
# middle of a dataset, leave nothing behind either.
# Each node has its own zpool (vmt-PID-NAME), destroyed at the end; no other
# zpool is touched.
. "$(dirname "$0")/../lib/common.sh"

if ! command -v zfs-fuse >/dev/null; then
	fail "zfs-fuse is not installed (scripts/install-deps)"
	exit 1
fi
VMSTREAM=${VMSTREAM_BIN:-$BUILD/tools/vmadm-stream}
OPS=$BUILD/tests/integration/incr-ops
FORGE="python3 $TOP/tests/lib/zfs-forge.py"
KVM=6c1d2e3f-8888-4333-8444-555566667777   # the attacker's kvm VM
OS=7d2e3f40-8888-4333-8444-555566667777    # the attacker's joyent VM
PROPS=8e3f4051-8888-4333-8444-555566667777 # a joyent VM whose datasets carry properties
OTHER=9f405162-8888-4333-8444-555566667777 # a victim installed on the receiver
INC=a0516273-8888-4333-8444-555566667777   # sent in -I passes

A=$(node_make za zfs 1073741824) # the sender
B=$(node_make zb zfs 1073741824) # the receiver
if ! on "$A" "$VMADM" list >/dev/null 2>"$T/open.err" || ! on "$B" "$VMADM" list >/dev/null 2>>"$T/open.err"; then
	fail "zfs nodes: $(tail -n 3 "$T/open.err" | tr '\n' ' ')"
	exit 1
fi
ZA=$(zfs_pool_of "$A")
ZB=$(zfs_pool_of "$B")

joyent() { # ROOT UUID
	echo "{\"brand\": \"joyent\", \"uuid\": \"$2\", \"alias\": \"o\", \"delegate_dataset\": true}" |
		on "$1" "$VMADM" create
}

setup() {
	echo "{\"brand\": \"kvm\", \"uuid\": \"$KVM\", \"alias\": \"k\", \"ram\": 128,
	  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 8}]}" | on "$A" "$VMADM" create || return 1
	joyent "$A" "$OS" && joyent "$A" "$PROPS" && joyent "$A" "$INC" || return 1
	# enough data in disk0 for a receive to be killed in the middle of it
	head -c $((40 * 1048576)) /dev/urandom | dd of="$A/zones/$KVM-disk0/disk.raw" bs=1M seek=2 conv=notrunc status=none
	mkdir -p "$A/zones/$OS/root/etc"
	echo "the attacker's own" >"$A/zones/$OS/root/etc/own"
	head -c 300000 /dev/urandom >"$A/zones/$OS/root/etc/blob"
	echo payload >"$A/zones/$OS/data/file"
	echo "with properties" >"$A/zones/$PROPS/file"
	echo "pass one" >"$A/zones/$INC/file"
	# the victim on b: a joyent VM with a file and a snapshot
	joyent "$B" "$OTHER" || return 1
	echo "the victim's secret" >"$B/zones/$OTHER/secret"
	head -c 100000 /dev/urandom >"$B/zones/$OTHER/data/blob"
	zfs snapshot "$ZB/$OTHER@s" || return 1
	sync
	on "$A" "$VMADM" send $KVM >"$T/kvm.vms" && on "$A" "$VMADM" send $OS >"$T/os.vms"
}
check "make the attacker's VMs (a), the victim (b), real streams" setup
"$VMSTREAM" dump "$T/os.vms" >"$T/os.dump" 2>&1
check_grep "the joyent VM's datasets travel as zfs streams" -q 'encoding zfs' "$T/os.dump"

# The zfs streams inside, and the snapshot they were taken from.
$FORGE --extract "" <"$T/os.vms" >"$T/os.zs"
$FORGE --extract "/data" <"$T/os.vms" >"$T/data.zs"
$FORGE --extract "-disk0" <"$T/kvm.vms" >"$T/disk0.zs"
$FORGE --show "$T/os.zs" >"$T/os.show"
SNAP=$(sed -n 's/^2 .* BEGIN .*toname=[^@]*@\(.*\)$/\1/p' "$T/os.show")
check "the joyent VM's stream is a compound one (zfs send -p) of snapshot ${SNAP:-?}" \
	grep -q '^0 @0 BEGIN .*hdrtype=2' "$T/os.show"
check "... holding WRITE records" grep -q ' WRITE ' "$T/os.show"
check "zstreamdump reads it" sh -c "zstreamdump <$T/os.zs"
check "the kvm VM's disk0 is a stream of more than 40 MiB" test "$(stat -c %s "$T/disk0.zs")" -gt $((40 * 1048576))

# zlist: every dataset and snapshot of b's zpool, with its guid.
zlist() { zfs get -Hp -r -o name,value guid "$ZB" | sort; }

# What a refused receive must leave as it was on b: the zpool's datasets
# and snapshots, the node's records, journals and dataset directories, the
# mounts under b, the victim's data and snapshot.
state() {
	leftovers "$B"
	zlist
	awk -v r="$B/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort
	on "$B" "$VMADM" list -H -o uuid,state
	tree_hash "$B/zones/$OTHER"
	tree_hash "$B/zones/$OTHER/data"
}
BASE=$(state)
zlist_base() { grep "^${ZB}[/@[:space:]]" <<<"$BASE"; }

# wrap VMS NAME ZS OUT: the real vmadm stream VMS whose dataset NAME
# carries ZS instead, every CRC and hash valid.
wrap() {
	"$VMSTREAM" rewrite --dataset-data "$2=$3" <"$1" >"$4" && "$VMSTREAM" dump "$4" >/dev/null
}

# zfs_finished DS: how many `zfs receive` commands of temporary dataset DS
# (zones/DS) zfs finished in b's zpool: its history logs a command once it
# succeeded, in the transaction group that a snapshot (made and destroyed
# at once) waits for.
zfs_finished() {
	zfs snapshot "$ZB@sync" && zfs destroy "$ZB@sync"
	zpool history "$ZB" | grep -c " zfs receive .*$ZB/$1@"
}

# hidden: the datasets zdb finds in b's zpool that zfs does not list (the
# temporary clone of an incremental receive, %SNAP, is hidden from zfs;
# zdb names it, and cannot open it while a receive holds it). zdb takes a
# second: checked at the end of each group of attacks.
hidden() {
	zfs snapshot "$ZB@sync" && zfs destroy "$ZB@sync"
	comm -13 <(zfs get -H -r -o name guid "$ZB" | sort) \
		<(zdb -d "$ZB" 2>&1 | sed -n -e 's/^Dataset \([^ ]*\) .*/\1/p' \
			-e 's/^Could not open \([^,]*\), error .*/\1/p' | grep -vx mos | sort)
}

# after NAME: node b as it was.
after() {
	check_eq "$1: node b as before (datasets, snapshots, records, mounts, the victim)" "$BASE" "$(state)"
}

# attack NAME WANT VMS DS ZS FORGE_ARGS...: forge ZS (dataset DS of the
# stream VMS), wrap it, receive it on b: refused with WANT, naming the
# dataset, nothing left.
attack() {
	local name=$1 want=$2 vms=$3 ds=$4 zs=$5 u n
	shift 5
	case $vms in
	*/kvm.vms) u=$KVM ;;
	*) u=$OS ;;
	esac
	if ! $FORGE "$zs" "$@" >"$T/atk.zs" 2>"$T/forge.err"; then
		fail "$name: forge: $(cat "$T/forge.err")"
		return
	fi
	check "$name: wrapped in a valid vmadm stream" wrap "$vms" "$ds" "$T/atk.zs" "$T/atk.vms"
	n=$(zfs_finished "$u.recv$ds")
	check_fails "$name: refused" "$want" sh -c "VMADM_ROOT=$B $VMADM receive < $T/atk.vms"
	cp "$T/.check.out" "$T/atk.out"
	check_eq "$name: zfs finished no receive of zones/$u.recv$ds (zpool history)" "$n" \
		"$(zfs_finished "$u.recv$ds")"
	echo "# $name: $(head -c 400 "$T/atk.out")"
	check_grep "$name: the message names the dataset" -q "zones/$u$ds" "$T/atk.out"
	after "$name"
	# Should the attack have got through, undo it so that the next one is
	# judged on its own.
	on "$B" "$VMADM" delete $u >/dev/null 2>&1
}

# ---- the stream's framing ----
attack "cut in a record" "truncated" "$T/os.vms" "" "$T/os.zs" --cut 'OBJECT#3+100'
attack "cut in a WRITE payload" "truncated at byte" "$T/os.vms" "" "$T/os.zs" --cut 'WRITE#0.payload+100'
attack "cut in a large WRITE payload of a disk" "(in a payload)" "$T/kvm.vms" "-disk0" "$T/disk0.zs" \
	--cut 'WRITE#100.payload+4096'
attack "cut in the VM's second dataset (the first one is undone)" "no last END" \
	"$T/os.vms" "/data" "$T/data.zs" --cut 'END#-2'
attack "cut before the substream's END" "no last END" "$T/os.vms" "" "$T/os.zs" --cut 'END#-2'
attack "cut before the final END" "no last END" "$T/os.vms" "" "$T/os.zs" --cut 'END#-1'
attack "cut in the final END" "no last END" "$T/os.vms" "" "$T/os.zs" --cut 'END#-1+311'
attack "a byte flipped in a WRITE payload (zfs's checksum)" "checksum" "$T/os.vms" "" "$T/os.zs" \
	--flip 'WRITE#0.payload+10'
attack "bad magic" "bad magic" "$T/os.vms" "" "$T/os.zs" --magic 0x2f5bacbad
attack "bad magic in the substream" "bad magic" "$T/os.vms" "" "$T/os.zs" --magic 0x1
attack "trailing bytes after the last END" "trailing data after the zfs stream's END" \
	"$T/os.vms" "" "$T/os.zs" --append 00
cat "$T/os.zs" "$T/os.zs" >"$T/twice.zs"
attack "a whole second stream after the last END" "trailing data after the zfs stream's END" \
	"$T/os.vms" "" "$T/twice.zs"
attack "unknown record type" "record type not taken here" "$T/os.vms" "" "$T/os.zs" --insert '42@END#-2'
attack "a record before the stream's BEGIN" "bad magic" "$T/os.vms" "" "$T/os.zs" --insert 'FREE@BEGIN#0'
attack "the magic in the other byte order" "header type 0" "$T/os.vms" "" "$T/os.zs" --magic 0xaccbbaf502000000
attack "a substream BEGIN that is itself a compound header" "header type 2" \
	"$T/os.vms" "" "$T/os.zs" --hdrtype 2
attack "END of another snapshot" "END of snapshot guid" "$T/os.vms" "" "$T/os.zs" \
	--poke 'END#-2+40:8=0x1234'
attack "snapshot guid 0" "snapshot guid 0" "$T/os.vms" "" "$T/os.zs" --toguid 0

# ---- what the stream may ask of zfs ----
attack "the clone flag" "a clone stream" "$T/os.vms" "" "$T/os.zs" --flags +1
attack "unknown BEGIN flags" "unknown flags" "$T/os.vms" "" "$T/os.zs" --flags +0x100
attack "an incremental stream where a full one is expected (forged from guid)" \
	"where a full one was expected" "$T/os.vms" "" "$T/os.zs" --fromguid "$(zfs get -Hp -o value guid "$ZB/$OTHER@s")"
attack "dedup: a WRITE_BYREF record" "dedup reference" "$T/os.vms" "" "$T/os.zs" --insert 'WRITE_BYREF@END#-2'
attack "dedup: the dedup feature bit" "stream features 0x1 " "$T/os.vms" "" "$T/os.zs" --features +1
attack "dedup: the dedup props feature bit" "stream features 0x2 " "$T/os.vms" "" "$T/os.zs" --features +2
attack "raw: the raw feature bit" "stream features 0x1000000" "$T/os.vms" "" "$T/os.zs" --features +0x1000000
attack "compressed: the compressed feature bit" "stream features 0x400000" "$T/os.vms" "" "$T/os.zs" \
	--features +0x400000
attack "compressed: a WRITE with compressed data" "compressed data" "$T/os.vms" "" "$T/os.zs" \
	--poke 'WRITE#0+50:1=15'
attack "embedded: the feature bit" "stream features 0x10000" "$T/os.vms" "" "$T/os.zs" --features +0x10000
attack "embedded: a WRITE_EMBEDDED record" "record type not taken here" "$T/os.vms" "" "$T/os.zs" \
	--insert 'WRITE_EMBEDDED@END#-2'
attack "resuming: the feature bit" "stream features 0x100000" "$T/os.vms" "" "$T/os.zs" --features +0x100000
# features the checker takes, but zfs-fuse (pool version 23) does not: the
# tool's words
for f in "sa_spill 0x4" "lz4 0x20000" "large_blocks 0x80000" "large_dnode 0x800000" "switch_to_large 0x8000000"; do
	attack "feature ${f% *}: zfs-fuse refuses it" "stream has unsupported feature" \
		"$T/os.vms" "" "$T/os.zs" --features "+${f#* }"
done
attack "an unknown feature bit in the compound header" "stream features 0x20000000" \
	"$T/os.vms" "" "$T/os.zs" --compound --features +0x20000000
attack "a raw bonus buffer" "a raw (encrypted) bonus buffer" "$T/os.vms" "" "$T/os.zs" --poke 'OBJECT#0+36:4=8'
attack "a volume's stream" "dataset type 3" "$T/os.vms" "" "$T/os.zs" --objtype 3
attack "the meta objset type" "dataset type 1" "$T/os.vms" "" "$T/os.zs" --objtype 1
attack "a second substream (an -R stream), of another VM's dataset" "a second dataset" \
	"$T/os.vms" "" "$T/os.zs" --dup-substream-as "$ZB/$OTHER@$SNAP" --fix-checksum
attack "a second substream of the same dataset" "a second dataset" "$T/os.vms" "" "$T/os.zs" --dup-substream
attack "another snapshot name" "but @$SNAP was expected" "$T/os.vms" "" "$T/os.zs" --toname "$ZA/$OS@evil"
attack "no snapshot name" "but @$SNAP was expected" "$T/os.vms" "" "$T/os.zs" --toname "$ZB/$OTHER"
attack "properties larger than 1 MiB" "properties of 2097152 bytes" "$T/os.vms" "" "$T/os.zs" \
	--props-len 0x200000
PLEN=$(sed -n 's/^0 @0 BEGIN payload=\([0-9]*\) .*/\1/p' "$T/os.show")
attack "a properties length that swallows the header's END" "END expected after the stream's properties" \
	"$T/os.vms" "" "$T/os.zs" --props-len $((PLEN + 312))
attack "a properties length that ends inside the nvlist" "END expected after the stream's properties" \
	"$T/os.vms" "" "$T/os.zs" --props-len 8

check_eq "the stream attacks left no hidden dataset in b's zpool (zdb -d)" "" "$(hidden)"

# ---- toname naming another dataset: lands under the VM's own name, or
# is refused; the other dataset is never created or touched ----
toname() {
	local name=$1 to=$2 n
	$FORGE "$T/os.zs" --toname "$to" --fix-checksum >"$T/atk.zs"
	check "$name: zstreamdump reads the forged stream" sh -c "zstreamdump <$T/atk.zs"
	check "$name: wrapped" wrap "$T/os.vms" "" "$T/atk.zs" "$T/atk.vms"
	n=$(zfs_finished "$OS.recv")
	if sh -c "VMADM_ROOT=$B $VMADM receive < $T/atk.vms" >"$T/atk.out" 2>&1; then
		ok "$name: received"
		check_eq "$name: zfs finished its receive of zones/$OS.recv (zpool history)" $((n + 1)) \
			"$(zfs_finished "$OS.recv")"
		check_eq "$name: it landed under the VM's own name, nothing else changed in the zpool" \
			"$(zlist_base)" "$(zlist | grep -v "^$ZB/${OS}[/@[:space:]]")"
		check_eq "$name: the VM's own data" "the attacker's own" "$(cat "$B/zones/$OS/root/etc/own" 2>&1)"
		check "$name: delete it" on "$B" "$VMADM" delete $OS
	else
		ok "$name: refused ($(head -c 200 "$T/atk.out"))"
	fi
	after "$name"
}
toname "toname: another VM's dataset" "$ZB/$OTHER@$SNAP"
toname "toname: another VM's child dataset" "$ZB/$OTHER/data@$SNAP"
toname "toname: a new dataset elsewhere" "$ZB/$OTHER/evil@$SNAP"
toname "toname: the pool itself" "$ZB@$SNAP"
toname "toname: another pool" "$ZA/$OS@$SNAP"

check_eq "toname: no hidden dataset in b's zpool (zdb -d)" "" "$(hidden)"

# ---- names in the vmadm stream ----
names() {
	local name=$1 want=$2 from=$3 to=$4
	"$VMSTREAM" rewrite --dataset-name "$from=$to" <"$T/os.vms" >"$T/atk.vms"
	check_fails "$name: refused" "$want" sh -c "VMADM_ROOT=$B $VMADM receive < $T/atk.vms"
	echo "# $name: $(head -c 300 "$T/.check.out")"
	after "$name"
}
names "a dataset name outside the VM (..)" "/../$OTHER" "/data" "/../$OTHER"
names "another VM's dataset" "/$OTHER" "/data" "/$OTHER"
names "a disk name for the joyent VM's data" "does not have" "/data" "-disk0"
names "a child the VM's config does not have" "does not have" "/data" "/other"

# ---- properties the stream carries are never applied ----
EVIL=$T/evil
mkdir -p "$EVIL"
props_set() {
	local ds kv
	for ds in "$ZA/$PROPS" "$ZA/$PROPS/data"; do
		# one property per call (zfs-fuse); sharenfs is set even though
		# it cannot be shared here (no exportfs)
		for kv in "mountpoint=$EVIL${ds#"$ZA"}" canmount=noauto sharenfs=on quota=200M reservation=8M; do
			zfs set "$kv" "$ds" >/dev/null 2>&1
		done
	done
	zfs get -H -o property -s local mountpoint,canmount,sharenfs,quota,reservation "$ZA/$PROPS" | sort | xargs
}
props_unset() {
	local ds p
	for ds in "$ZA/$PROPS/data" "$ZA/$PROPS"; do
		for p in sharenfs canmount quota reservation mountpoint; do
			zfs inherit "$p" "$ds" >/dev/null 2>&1
		done
	done
	zfs get -H -o value mounted,mountpoint "$ZA/$PROPS" "$ZA/$PROPS/data" | xargs
}
check_eq "properties set on the sender's datasets" "canmount mountpoint quota reservation sharenfs" "$(props_set)"
check "send the VM with properties" sh -c "VMADM_ROOT=$A $VMADM send $PROPS > $T/props.vms"
$FORGE --extract "" <"$T/props.vms" >"$T/props.zs"
zstreamdump -v <"$T/props.zs" >"$T/props.dump" 2>&1
for p in "mountpoint = $EVIL/$PROPS" "canmount = 0x2" "sharenfs = on" "quota = 0xc800000" "reservation = 0x800000"; do
	check_grep "the stream carries $p" -qF "$p" "$T/props.dump"
done
# the sender's datasets back where its node keeps them: nothing of the
# sender's is mounted at the evil path while b receives
check_eq "the sender's properties unset" "yes $A/zones/$PROPS yes $A/zones/$PROPS/data" "$(props_unset)"
check_eq "nothing mounted at the evil path before the receive" "" \
	"$(awk -v e="$EVIL" 'index($5, e) == 1 {print $5}' /proc/self/mountinfo)"
check "received on b" sh -c "VMADM_ROOT=$B $VMADM receive < $T/props.vms"
# (the one local property is vmadm's own: the VM's quota from its config)
check_eq "none of them applied (zfs get -s local,received)" "$ZB/$PROPS quota 10G" \
	"$(zfs get -H -o name,property,value -s local,received all "$ZB/$PROPS" "$ZB/$PROPS/data" 2>&1 | xargs)"
check_eq "mounted where the node keeps it" "$B/zones/$PROPS yes $B/zones/$PROPS/data yes" \
	"$(zfs get -H -o value mountpoint,mounted "$ZB/$PROPS" "$ZB/$PROPS/data" | xargs)"
check_eq "the config's quota (10 GiB), not the stream's; no reservation" "10737418240 0 0 0" \
	"$(zfs get -Hp -o value quota,reservation "$ZB/$PROPS" "$ZB/$PROPS/data" | xargs)"
check_eq "its data with it" "with properties" "$(cat "$B/zones/$PROPS/file" 2>&1)"
check_eq "nothing mounted at the evil path" "" \
	"$(awk -v e="$EVIL" 'index($5, e) == 1 {print $5}' /proc/self/mountinfo)"
check_eq "no file there" "" "$(find "$EVIL" ! -type d 2>&1)"
check "delete it on b" on "$B" "$VMADM" delete $PROPS
after "properties"

# ---- -I passes: a forged base ----
incr_setup() {
	on "$A" "$OPS" snapshot $INC vmadm-send-I1-h &&
		on "$A" "$OPS" send $INC - vmadm-send-I1-h >"$T/p1.vms" 2>/dev/null &&
		on "$B" "$OPS" receive <"$T/p1.vms" >/dev/null || return 1
	echo "pass two" >"$A/zones/$INC/file"
	echo "added" >"$A/zones/$INC/added"
	sync
	on "$A" "$OPS" snapshot $INC vmadm-send-I2-h &&
		on "$A" "$OPS" send $INC vmadm-send-I1-h vmadm-send-I2-h >"$T/p2.vms"
}
check "-I: pass 1 held on b, pass 2 sent" incr_setup
"$VMSTREAM" dump "$T/p2.vms" >"$T/p2.dump" 2>&1
check_grep "-I: pass 2 is a zfs stream" -q 'encoding zfs' "$T/p2.dump"
$FORGE --extract "" <"$T/p1.vms" >"$T/p1.zs"
$FORGE --extract "" <"$T/p2.vms" >"$T/p2.zs"
BASEGUID=$(zfs get -Hp -o value guid "$ZB/$INC.recv@vmadm-send-I1-h" 2>&1)
check_grep "-I: pass 2 builds on the held base (guid $BASEGUID)" -q "fromguid=$(python3 -c "print(hex($BASEGUID))" 2>/dev/null)" \
	<($FORGE --show "$T/p2.zs")
BASE=$(state)
incr_attack() {
	local name=$1 want=$2 zs=$3 n
	shift 3
	$FORGE "$zs" "$@" >"$T/atk.zs" && wrap "$T/p2.vms" "" "$T/atk.zs" "$T/atk.vms" ||
		fail "$name: forge or wrap"
	n=$(zfs_finished "$INC.recv")
	check_fails "$name: refused" "$want" sh -c "VMADM_ROOT=$B $OPS receive < $T/atk.vms"
	check_grep "$name: the message names the dataset" -q "zones/$INC" "$T/.check.out"
	check_eq "$name: zfs finished no receive of zones/$INC.recv (zpool history)" "$n" \
		"$(zfs_finished "$INC.recv")"
	after "$name"
	check_eq "$name: the held pass is still held" vmadm-send-I1-h "$(on "$B" "$OPS" held $INC 2>&1)"
	check_eq "$name: its data as pass 1 left it" "pass one" "$(cat "$B/zones/$INC.recv/file" 2>&1)"
	check_eq "$name: no hidden dataset in b's zpool (zdb -d)" "" "$(hidden)"
}
incr_attack "-I: pass 2 from another VM's snapshot" "but the base here is" "$T/p2.zs" \
	--fromguid "$(zfs get -Hp -o value guid "$ZB/$OTHER@s")" --fix-checksum
incr_attack "-I: pass 2 from a guid nobody has" "but the base here is" "$T/p2.zs" --fromguid 0x1234
incr_attack "-I: a full stream where pass 2 is expected" "from guid 0x" "$T/p1.zs" \
	--toname "$ZA/$INC@vmadm-send-I2-h"
incr_attack "-I: pass 2 cut before its END" "no last END" "$T/p2.zs" --cut 'END#-2'
incr_attack "-I: pass 2 with a byte flipped in a WRITE (zfs's checksum)" "checksum" "$T/p2.zs" \
	--flip 'WRITE#0.payload+1'
incr_attack "-I: pass 2 with trailing bytes" "trailing data" "$T/p2.zs" --append 0000
# a pass 2 wrapped where a full stream is expected
$FORGE "$T/p2.zs" --toname "$ZA/$OS@$SNAP" >"$T/atk.zs"
check "-I stream as a full one: wrapped" wrap "$T/os.vms" "" "$T/atk.zs" "$T/atk.vms"
check_fails "-I stream as a full one: refused" "where a full one was expected" \
	sh -c "VMADM_ROOT=$B $VMADM receive < $T/atk.vms"
after "-I stream as a full one"
# (with the zfs commands it ran, should it fail)
if VMADM_DEBUG=1 VMADM_ROOT=$B $OPS receive <"$T/p2.vms" >"$T/p2.log" 2>&1; then
	ok "-I: the real pass 2 lands after the refusals"
else
	fail "-I: the real pass 2 lands after the refusals: $(grep -v '^debug: ' "$T/p2.log" | tail -n 2)"
	tail -n 30 "$T/p2.log" | sed 's/^/# /'
fi
# "file" kept its size: a mount that still served what the kernel cached
# before pass 2 would read "pass one"
check_eq "-I: with pass 2's data, read through the held dataset's mount" "pass two added" \
	"$(cat "$B/zones/$INC.recv/file" "$B/zones/$INC.recv/added" 2>&1 | xargs)"
check "-I: abort the held receive" on "$B" "$OPS" abort $INC
on "$A" "$OPS" drop $INC vmadm-send-I1-h
on "$A" "$OPS" drop $INC vmadm-send-I2-h
BASE=$(state)
after "-I: abort"

# ---- a receive killed with SIGKILL in the middle of a dataset ----
# sigkill NAME PAUSE: feed b's `vmadm receive` the kvm stream up to the
# middle of disk0's data, kill it there, run the next vmadm PAUSE seconds
# later: it removes the partial receive, and nothing is left.
mkfifo "$T/fifo"
in_disk0() { zfs list -H -o name "$ZB/$KVM.recv-disk0" >/dev/null 2>&1; }
sigkill() {
	local name=$1 pause=$2 writer recv i left
	(head -c $(($(stat -c %s "$T/kvm.vms") / 2)) "$T/kvm.vms" && exec sleep 120) >"$T/fifo" &
	writer=$!
	T_PIDS+=("$writer")
	VMADM_ROOT=$B "$VMADM" receive <"$T/fifo" >"$T/kill.out" 2>&1 &
	recv=$!
	for ((i = 0; i < 150; i++)); do in_disk0 && break; sleep 0.2; done
	sleep 1
	check "$name: the receive is in disk0 (its temporary dataset exists)" in_disk0
	kill -KILL "$recv"
	wait "$recv" 2>/dev/null
	check_eq "$name: vmadm receive died of it" 137 "$?"
	kill "$writer" 2>/dev/null
	wait "$writer" 2>/dev/null
	sleep "$pause"
	left=$( (leftovers "$B"; zfs list -H -t all -r -o name "$ZB") | grep -F "$KVM" | sed "s|$T/||" | xargs)
	echo "# $name: left before the next vmadm: $left"
	check "$name: the next vmadm runs" sh -c "VMADM_ROOT=$B $VMADM list >/dev/null 2>$T/recover.err"
	check_grep "$name: it removed the partial receive" -q "removed the partial receive of VM $KVM" "$T/recover.err"
	after "$name"
	check_eq "$name: no hidden dataset in b's zpool (zdb -d)" "" "$(hidden)"
}
sigkill "SIGKILL, the next vmadm a second later" 1
sigkill "SIGKILL, the next vmadm at once" 0

# ---- the node takes the genuine streams ----
check "the genuine joyent stream is received on b" sh -c "VMADM_ROOT=$B $VMADM receive < $T/os.vms"
check_eq "... with its data" "the attacker's own payload " \
	"$(cat "$B/zones/$OS/root/etc/own" "$B/zones/$OS/data/file" 2>&1 | tr '\n' ' ')"
check "the genuine kvm stream is received on b" sh -c "VMADM_ROOT=$B $VMADM receive < $T/kvm.vms"
check_eq "... disk0 byte-identical" "$(sha256sum <"$A/zones/$KVM-disk0/disk.raw")" \
	"$(sha256sum <"$B/zones/$KVM-disk0/disk.raw" 2>&1)"
for u in $OS $KVM; do check "delete $u on b" on "$B" "$VMADM" delete $u; done
after "the genuine streams, deleted"
check "delete the victim" on "$B" "$VMADM" delete $OTHER
check_eq "node b clean" "" "$(leftovers "$B"; zfs list -H -t all -r -o name "$ZB" | tail -n +2; hidden)"
t_done

#!/usr/bin/env bash
# Hostile btrfs send streams (issue 11, findings 1 and 2): a stream whose
# framing, CRCs and hashes are all valid, but whose btrfs commands write,
# link, chmod or rename outside the received subvolume (by "..", through a
# symlink the stream made, by a hard link), copy another VM's data (a
# SNAPSHOT or CLONE naming its subvolume, a CLONE from the base through a
# symlink the base holds), or stop before END. Each is received on a real
# node: by `vmadm receive` from a file, as an incremental pass, and through
# vmadmd over the network (vmadm-peer holds the key). Each must be refused
# with a message naming the dataset and the reason, change nothing outside
# (sentinel files with known hashes and modes outside the pool and in another
# VM), and leave the node usable (list, create, delete, no leftovers, no
# zones/.recv entry).
#
# The hostile streams are made by tests/lib/btrfs-forge.py from real
# `btrfs send` streams of the attacking VM, and wrapped into its real
# `vmadm send` stream with `vmadm-stream rewrite --dataset-data`.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

VMSTREAM=${VMSTREAM_BIN:-$BUILD/tools/vmadm-stream}
PEER=$BUILD/tools/vmadm-peer
OPS=$BUILD/tests/integration/incr-ops
FORGE="python3 $TOP/tests/lib/btrfs-forge.py"
X=3a1b2c3d-7777-4222-8333-444455556666 # the attacker's VM
V=4b2c3d4e-7777-4222-8333-444455556666 # a victim installed on the target
W=6d4e5f60-7777-4222-8333-444455556666 # a victim held there between -I passes
N=5c3d4e5f-7777-4222-8333-444455556666 # made after the attacks

if ! hosts_make 2 1073741824 2>"$T/hosts.err"; then
	fail "hosts_make 2: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
A=$(host_root a)
B=$(host_root b)

# Sentinels outside the pool: a 0600 secret, a file to be renamed, a dir.
OUT=$T/outside
make_outside() {
	rm -rf "$OUT"
	mkdir -p "$OUT/dir"
	echo "outside secret" >"$OUT/secret"
	chmod 0600 "$OUT/secret"
	echo "outside victim" >"$OUT/victim"
}
make_outside
# From a received subvolume (MOUNTPOINT/.recv/X.RANDOM/NAME), 30 levels of
# ".." reach /; then the absolute path of $OUT.
UP=$(printf '../%.0s' $(seq 30))
OUTREL=$UP${OUT#/}

setup() {
	local u
	for u in $X $V $W; do
		echo "{\"brand\": \"kvm\", \"uuid\": \"$u\", \"ram\": 128,
		  \"disks\": [{\"size\": 16, \"boot\": true}]}" | on "$A" "$VMADM" create || return 1
	done
	# V is installed on b; W's first -I pass is held there, so its base
	# snapshot carries a received uuid (by which btrfs receive finds parents
	# and clone sources).
	echo "the victim's secret" >"$A/zones/$V/secret"
	echo "the victim's secret" >"$A/zones/$W/secret"
	head -c 3000000 /dev/urandom | dd of="$A/zones/$V-disk0/disk.raw" conv=notrunc status=none
	on "$A" "$VMADM" send $V >"$T/v.vms" && on "$B" "$VMADM" receive <"$T/v.vms" >/dev/null &&
		on "$A" "$VMADM" delete $V || return 1
	on "$A" "$OPS" snapshot $W vmadm-send-I1-w && on "$A" "$OPS" send $W - vmadm-send-I1-w >"$T/w1.vms" 2>/dev/null &&
		on "$B" "$OPS" receive <"$T/w1.vms" >/dev/null || return 1
	echo "x's own" >"$A/zones/$X/own"
	head -c 65536 /dev/urandom >"$A/zones/$X/old"
	sync
	on "$A" "$VMADM" send $X >"$T/x.vms" || return 1
	# Real btrfs streams of X's own dataset: full (I1) and incremental (I2),
	# whose "from-parent" is a reflink of "old" as it was in I1: btrfs send
	# -p makes it a CLONE from the parent, which the receiver must take.
	on "$A" "$OPS" snapshot $X vmadm-send-I1-h || return 1
	echo "changed" >"$A/zones/$X/own"
	cp --reflink=always "$A/zones/$X/old" "$A/zones/$X/from-parent"
	head -c 65536 /dev/urandom | dd of="$A/zones/$X/old" conv=notrunc status=none
	sync
	on "$A" "$OPS" snapshot $X vmadm-send-I2-h || return 1
	btrfs send -q "$A/zones/.snapshots/$X/@vmadm-send-I1-h" >"$T/full.btrfs" 2>/dev/null &&
		btrfs send -q -p "$A/zones/.snapshots/$X/@vmadm-send-I1-h" \
			"$A/zones/.snapshots/$X/@vmadm-send-I2-h" >"$T/incr.btrfs" 2>/dev/null || return 1
	on "$A" "$OPS" send $X - vmadm-send-I1-h >"$T/p1.vms" 2>/dev/null &&
		on "$A" "$OPS" send $X vmadm-send-I1-h vmadm-send-I2-h >"$T/p2.vms" 2>/dev/null
}
check "make the attacker's VM (a), the victims (b), real streams" setup

# The victims' subvolumes and the attacker's own one, as btrfs knows them:
# V's dataset by its uuid, W's held base snapshot by its received uuid.
subvol_field() { btrfs subvolume show "$1" | awk -v f="$2" -F':[ \t]*' '$1 ~ "^[ \t]*"f"$" {print $2}'; }
V_UUID=$(subvol_field "$B/zones/$V" UUID)
V_GEN=$(subvol_field "$B/zones/$V" Generation)
W_SNAP=$B/zones/.snapshots/$W.recv/@vmadm-send-I1-w
W_RUUID=$(subvol_field "$W_SNAP" "Received UUID")
W_STRANSID=$(subvol_field "$W_SNAP" "Send transid")
read -r X_UUID X_CT < <($FORGE --show "$T/full.btrfs" | sed -n 's/^subvol .*uuid=\([^ ]*\) ctransid=\([0-9]*\).*/\1 \2/p')
check_grep "the real pass 2 clones from its parent" -q "^clone .*clone_uuid=$X_UUID" \
	<($FORGE --show "$T/incr.btrfs")
check "subvolume uuids known (V $V_UUID, W received $W_RUUID, X $X_UUID)" \
	test -n "$V_UUID" -a -n "$W_RUUID" -a "$W_RUUID" != "-" -a -n "$X_UUID" -a -n "$X_CT"

# What must not change: the outside files (content, mode, link count), the
# victims' data, and the node's state (records, datasets, temporaries).
sentinels() {
	(cd "$OUT" && find . -printf '%P|%y|%m|%n|%s\n' | sort && sha256sum secret victim)
	tree_hash "$B/zones/$V"
	sha256sum <"$B/zones/$V-disk0/disk.raw"
	tree_hash "$B/zones/$W.recv"
	tree_hash "$W_SNAP"
}
SENT=$(sentinels)
BASE_B=$(leftovers "$B")

# after NAME: nothing outside changed, node b as before.
after() {
	check_eq "$1: nothing outside changed" "$SENT" "$(sentinels)"
	check_eq "$1: node b as before (no record, dataset, temporary)" "$BASE_B" "$(leftovers "$B")"
	check_eq "$1: no zones/.recv leftovers" "" "$(ls -A "$B/zones/.recv")"
	if grep -rqs "victim's secret" "$B/zones/$X" "$B/zones/$X.recv"; then
		fail "$1: the victim's data reached the attacker's VM"
	fi
}

# wrap BTRFS VMS OUT: the real vmadm stream VMS whose dataset "" (zones/X)
# carries BTRFS instead, every CRC and hash valid.
wrap() {
	"$VMSTREAM" rewrite --dataset-data "=$1" <"$2" >"$3" && "$VMSTREAM" dump "$3" >/dev/null
}

# attack NAME WANT FORGE_ARGS...: forge a full stream of X's dataset, check
# that btrfs itself finds it well-formed, receive it on b from a file.
attack() {
	local name=$1 want=$2
	shift 2
	$FORGE --from "$T/full.btrfs" "$@" >"$T/atk.btrfs"
	if [[ " $* " == *" --no-end "* ]]; then
		btrfs receive --dump -f "$T/atk.btrfs" >/dev/null 2>"$T/dump.err"
		check_grep "$name: the forged btrfs stream is well-formed up to its cut" -q \
			"unexpected EOF in stream" "$T/dump.err"
	else
		check "$name: the forged btrfs stream is well-formed (btrfs receive --dump)" \
			btrfs receive --dump -f "$T/atk.btrfs"
	fi
	check "$name: wrapped in a valid vmadm stream" wrap "$T/atk.btrfs" "$T/x.vms" "$T/atk.vms"
	check_fails "$name: refused" "$want" sh -c "VMADM_ROOT=$B $VMADM receive < $T/atk.vms"
	cp "$T/.check.out" "$T/atk.out"
	echo "# $name: $(head -c 400 "$T/atk.out")"
	check_grep "$name: the message names the dataset" -q "zones/$X" "$T/atk.out"
	after "$name"
	# Should the attack have got through, undo it so that the next one is
	# judged on its own.
	on "$B" "$VMADM" delete $X >/dev/null 2>&1
	make_outside
}

attack "write to ../../x" 'has a ".." component' \
	"mkfile path=$OUTREL/written ino=300" "write path=$OUTREL/written file_offset=0 data=PWNED"
attack "mkfile outside, then rename it in" 'has a ".." component' \
	"mkfile path=$OUTREL/made ino=300" "rename path=$OUTREL/made path_to=made"
attack "symlink to / and a write through it" "No such file or directory" \
	"symlink path=esc ino=301 path_link=/" "mkfile path=esc/${OUT#/}/via-root ino=302" \
	"write path=esc/${OUT#/}/via-root file_offset=0 data=PWNED"
attack "symlink to an outside dir and a write through it" "No such file or directory" \
	"symlink path=esc ino=301 path_link=$OUT/dir" "mkfile path=esc/through ino=302" \
	"write path=esc/through file_offset=0 data=PWNED"
attack "symlink to an outside file and a chmod through it" "No such file or directory" \
	"symlink path=esc ino=301 path_link=$OUT/secret" "chmod path=esc mode=0o666"
attack "hard link to an outside file" 'has a ".." component' \
	"link path=$OUTREL/hardlink path_link=$OUTREL/secret"
attack "hard link from the VM to an outside file" 'has a ".." component' \
	"link path=stolen path_link=$OUTREL/secret"
attack "chmod 0666 of an outside 0600 file" 'has a ".." component' \
	"chmod path=$OUTREL/secret mode=0o666"
attack "rename of something outside in" 'has a ".." component' \
	"rename path=$OUTREL/victim path_to=stolen"
attack "rename of something outside to elsewhere outside" 'has a ".." component' \
	"rename path=$OUTREL/victim path_to=$OUTREL/moved"
attack "an absolute path" 'is absolute' \
	"mkfile path=$OUT/abs ino=300"
attack "SNAPSHOT of another VM's subvolume in a full stream" "SNAPSHOT command in a full stream" \
	--keep none "snapshot path=got uuid=$X_UUID ctransid=$X_CT clone_uuid=$V_UUID clone_ctransid=$V_GEN"
attack "CLONE from another VM's subvolume" "is neither the received subvolume nor its base" \
	"mkfile path=o300 ino=300" "rename path=o300 path_to=stolen" \
	"clone path=stolen file_offset=0 clone_len=20 clone_uuid=$W_RUUID clone_ctransid=$W_STRANSID clone_path=secret clone_offset=0"
attack "CLONE with a clone path out of the received subvolume" 'has a ".." component' \
	"mkfile path=o300 ino=300" "rename path=o300 path_to=stolen" \
	"clone path=stolen file_offset=0 clone_len=20 clone_uuid=$X_UUID clone_ctransid=$X_CT clone_path=../../../$V/secret clone_offset=0"
attack "write to ../../x, cut before END" 'has a ".." component' --no-end \
	"mkfile path=$OUTREL/written ino=300" "write path=$OUTREL/written file_offset=0 data=PWNED"

# A second stream after END: btrfs receive would read it and make a second
# subvolume (the receiver used to stop reading at END and leave the rest).
$FORGE --from "$T/full.btrfs" --keep all >"$T/one.btrfs"
$FORGE "subvol path=second uuid=$X_UUID ctransid=$X_CT" "mkfile path=extra ino=300" >"$T/two.btrfs"
cat "$T/one.btrfs" "$T/two.btrfs" >"$T/atk.btrfs"
check "a second stream after END: wrapped" wrap "$T/atk.btrfs" "$T/x.vms" "$T/atk.vms"
check_fails "a second stream after END: refused" "trailing data after the btrfs stream's END" \
	sh -c "VMADM_ROOT=$B $VMADM receive < $T/atk.vms"
check_grep "a second stream after END: the message names the dataset" -q "zones/$X" "$T/.check.out"
after "a second stream after END"
on "$B" "$VMADM" delete $X >/dev/null 2>&1

# Incremental passes (vmadm send -I): pass 1 of X is held on b; pass 2 names
# another VM's snapshot as its parent (and nothing else: X would become a
# copy of it).
incr() { sh -c "VMADM_ROOT=$B $OPS receive < $1"; }
check "pass 1 of X held on b" incr "$T/p1.vms"
BASE_B=$(leftovers "$B") # now with the held pass
SENT=$(sentinels)
$FORGE --from "$T/incr.btrfs" --keep first --parent "$W_RUUID:$W_STRANSID" >"$T/atk.btrfs"
check "parent swapped: wrapped in a valid vmadm stream" wrap "$T/atk.btrfs" "$T/p2.vms" "$T/atk.vms"
check_fails "an incremental pass whose parent is another VM's subvolume: refused" \
	"is not the base" incr "$T/atk.vms"
check_grep "parent swapped: the message names the dataset" -q "zones/$X" "$T/.check.out"
after "parent swapped"
check_eq "parent swapped: the held pass is still held" vmadm-send-I1-h "$(on "$B" "$OPS" held $X 2>&1)"
check "the real pass 2 still lands after the refusals" incr "$T/p2.vms"
check_eq "the real pass 2 brought X's own data" changed "$(cat "$B/zones/$X.recv/own" 2>&1)"
check_eq "... and the file cloned from its base" "$(sha256sum <"$A/zones/$X/from-parent")" \
	"$(sha256sum <"$B/zones/$X.recv/from-parent" 2>&1)"
check "abort the held receive" on "$B" "$OPS" abort $X

# A base that holds a symlink out of the pool's snapshot directory into the
# victim, and a pass 2 that clones "through" it from the base (btrfs receive
# opens clone sources of other subvolumes from the mount, outside any chroot).
$FORGE --from "$T/full.btrfs" --keep all "symlink path=evil ino=400 path_link=../../../$V/secret" \
	>"$T/evil1.btrfs"
check "symlink base: pass 1 wrapped" wrap "$T/evil1.btrfs" "$T/p1.vms" "$T/evil1.vms"
check "symlink base: pass 1 (a symlink is data) held on b" incr "$T/evil1.vms"
check_eq "symlink base: the base holds the symlink" "../../../$V/secret" \
	"$(readlink "$B/zones/.snapshots/$X.recv/@vmadm-send-I1-h/evil")"
BASE_B=$(leftovers "$B")
$FORGE --from "$T/incr.btrfs" --keep all "mkfile path=o401 ino=401" "rename path=o401 path_to=stolen" \
	"clone path=stolen file_offset=0 clone_len=20 clone_uuid=$X_UUID clone_ctransid=$X_CT clone_path=evil clone_offset=0" \
	>"$T/atk.btrfs"
check "clone through the base's symlink: wrapped" wrap "$T/atk.btrfs" "$T/p2.vms" "$T/atk.vms"
check_fails "a CLONE from the base through a symlink it holds: refused" "symlink" incr "$T/atk.vms"
check_grep "clone through the base's symlink: the message names the dataset" -q "zones/$X" "$T/.check.out"
after "clone through the base's symlink"
check "abort the held receive" on "$B" "$OPS" abort $X
BASE_B=$(leftovers "$B")

# A pass 1 whose subvolume takes the held victim's received uuid, then a
# pass 2 naming "its base" by that uuid: btrfs receive takes the first
# subvolume with it, the victim's.
$FORGE --from "$T/full.btrfs" --keep all --uuid "$W_RUUID" >"$T/twin1.btrfs"
check "uuid twin: pass 1 wrapped" wrap "$T/twin1.btrfs" "$T/p1.vms" "$T/twin1.vms"
check "uuid twin: pass 1 held on b" incr "$T/twin1.vms"
BASE_B=$(leftovers "$B")
$FORGE --from "$T/incr.btrfs" --keep first --parent "$W_RUUID:$X_CT" >"$T/atk.btrfs"
check "uuid twin: pass 2 wrapped" wrap "$T/atk.btrfs" "$T/p2.vms" "$T/atk.vms"
check_fails "a pass 2 whose base shares its uuid with another VM's: refused" \
	"shares its uuid with subvolume" incr "$T/atk.vms"
check_grep "uuid twin: the message names the dataset" -q "zones/$X" "$T/.check.out"
after "uuid twin"
check "abort the held receive" on "$B" "$OPS" abort $X
BASE_B=$(leftovers "$B")

# Over the network: vmadm-peer holds the key and plays the source.
netattack() {
	local name=$1 want=$2 rec
	shift 2
	$FORGE --from "$T/full.btrfs" "$@" >"$T/atk.btrfs"
	wrap "$T/atk.btrfs" "$T/x.vms" "$T/atk.vms" || fail "$name: wrap"
	rec=$(on "$A" "$VMADM" get $X | $JSON -o json-0)
	host_exec a "$PEER" -k "$A/vmadm.key" "$(host_ip b):$HOSTS_PORT" \
		'send:{"type":"hello","protocol":1,"node":"evil","version":"0.1.0","encodings":["btrfs","tar","blocks"],"compression":["zstd"]}' \
		recv "send:{\"type\":\"begin\",\"mode\":\"cold\",\"uuid\":\"$X\",\"config\":$rec,\"total\":1000000,\"encoding\":\"btrfs\",\"compression\":\"none\",\"instant\":\"vmadm-send-x\"}" \
		recv "stream:$T/atk.vms" recv >"$T/peer.out" 2>&1
	check_grep "$name over the network: vmadmd answers failed" -q '"type":"failed"' "$T/peer.out"
	check_grep "$name over the network: with the reason" -qF "$want" "$T/peer.out"
	check_grep "$name over the network: naming the dataset" -q "zones/$X" "$T/peer.out"
	after "$name over the network"
	on "$B" "$VMADM" delete $X >/dev/null 2>&1
	make_outside
}
netattack "write to ../../x" 'has a \"..\" component' \
	"mkfile path=$OUTREL/written ino=300" "write path=$OUTREL/written file_offset=0 data=PWNED"
netattack "CLONE from another VM's subvolume" "is neither the received subvolume nor its base" \
	"mkfile path=o300 ino=300" "rename path=o300 path_to=stolen" \
	"clone path=stolen file_offset=0 clone_len=20 clone_uuid=$W_RUUID clone_ctransid=$W_STRANSID clone_path=secret clone_offset=0"

# The node is fully usable after all this.
check "vmadm list on b" on "$B" "$VMADM" list
check "create a VM on b" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$N\", \"ram\": 128,
  \"disks\": [{\"size\": 8, \"boot\": true}]}' | VMADM_ROOT=$B $VMADM create"
check "delete it" on "$B" "$VMADM" delete $N
check "the real stream of X is received on b" sh -c "VMADM_ROOT=$B $VMADM receive < $T/x.vms"
check_eq "... with X's own data" "x's own" "$(cat "$B/zones/$X/own" 2>&1)"
check "delete X on b" on "$B" "$VMADM" delete $X
check "delete the victim" on "$B" "$VMADM" delete $V
check "abort the victim's held receive" on "$B" "$OPS" abort $W
check_eq "node b clean" "" "$(leftovers "$B")"
check_eq "the outside files as they were" "$(cd "$OUT" && find . -printf '%P|%y|%m|%n|%s\n' | sort && sha256sum secret victim)" \
	"$(head -n -4 <<<"$SENT")"

t_done

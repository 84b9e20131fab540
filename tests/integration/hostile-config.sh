#!/usr/bin/env bash
# Hostile configs (issue 11, item 2): a stream's config is the receiver's to
# accept. Each attack is a valid stream (right framing, CRCs and hashes:
# real `vmadm send` output, or forged with vmadm-stream rewrite) or a real
# peer of the migration protocol (vmadm-peer, holding the key, against a
# real vmadmd on namespaced hosts). Each must be refused with a message that
# names the property or dataset and the reason, leave nothing on the
# receiver, and leave the node fully usable (list, create, delete, a clean
# `leftovers`):
#   - finding 3: filesystems[] bind-mounting host directories into a
#     received container: refused unless under receive_filesystem_roots,
#     resolved through symlinks and "..", re-checked at start (a real
#     container tries to write there), known types only;
#   - nic tags the node does not define;
#   - finding 10: a joyent VM whose root is a symlink or a file (native
#     btrfs and portable tar streams), and its start;
#   - disk sizes: a volume whose size is not its config's (DS_BEGIN, and a
#     btrfs stream that truncates the file itself), and data past what
#     DS_BEGIN declared (refused at the declared amount, not at pool full),
#     for a file receive, vmadmd's cold path and an -I pass;
#   - finding 9: a BEGIN that names one VM followed by the stream of
#     another, in modes cold, incremental and live.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

VMSTREAM=${VMSTREAM_BIN:-$BUILD/tools/vmadm-stream}
PEER=${VMADM_PEER_BIN:-$BUILD/tools/vmadm-peer}
for tool in "$VMSTREAM" "$PEER"; do
	if [ ! -x "$tool" ]; then
		fail "prerequisite: $tool not built"
		exit 1
	fi
done
for tool in busybox python3 lxc-info; do
	if ! command -v "$tool" >/dev/null; then
		fail "prerequisite: $tool not installed"
		exit 1
	fi
done
# liblxc keeps its container locks under /run/lxc/lock/LXCPATH.
t_defer "rm -rf '/run/lxc/lock$T'"

S=$(node_make src btrfs 1073741824) # where the real VMs and streams come from
R=$(node_make rcv btrfs 1073741824) # the receiver of file streams
P=$(node_make small btrfs 268435456)
J=6a1b2c3d-3333-4222-8333-444455556601  # joyent, busybox root
JL=6a1b2c3d-3333-4222-8333-444455556602 # joyent, root a symlink
JF=6a1b2c3d-3333-4222-8333-444455556603 # joyent, root a file
K=6a1b2c3d-3333-4222-8333-444455556604  # kvm, disk0 64 MiB
K2=6a1b2c3d-3333-4222-8333-444455556605 # kvm, disk0 128 MiB
L=6a1b2c3d-3333-4222-8333-444455556606  # kvm, disk0 160 MiB, almost empty
L2=6a1b2c3d-3333-4222-8333-444455556607 # kvm, disk0 160 MiB, 100 MiB of data
X=6a1b2c3d-3333-4222-8333-444455556608  # kvm, the VM a peer sends
Y=6a1b2c3d-3333-4222-8333-444455556609  # kvm, the VM its BEGIN names
SCRATCH=6a1b2c3d-3333-4222-8333-4444555566ff

HOSTDIR=$T/hostdir     # the host directory an attacker wants
ALLOWED=$T/allowed     # a root the operator allows
mkdir -p "$HOSTDIR" "$ALLOWED/share" "$ALLOWED/later" "$T/allowed-not"
echo "host secret" >"$HOSTDIR/secret"
ln -s "$HOSTDIR" "$ALLOWED/link"
HOSTSUM=$(cd "$HOSTDIR" && find . -printf '%p %s %m\n' | sort | sha256sum)
host_untouched() { test "$(cd "$HOSTDIR" && find . -printf '%p %s %m\n' | sort | sha256sum)" = "$HOSTSUM"; }

# conf_set ROOT KEY JSON / conf_del ROOT KEY: edit a node's vmadm.conf.
conf_set() {
	python3 - "$1/vmadm.conf" "$2" "$3" <<-'EOF'
		import json, sys
		p, k, v = sys.argv[1:4]
		c = json.load(open(p)); c[k] = json.loads(v); json.dump(c, open(p, "w"))
	EOF
}
conf_del() {
	python3 - "$1/vmadm.conf" "$2" <<-'EOF'
		import json, sys
		p, k = sys.argv[1:3]
		c = json.load(open(p)); c.pop(k, None); json.dump(c, open(p, "w"))
	EOF
}

# busybox_root DIR: a busybox system whose init writes a file into /mnt
# (where the attacker's filesystems[] entry mounts) and then sleeps.
busybox_root() {
	local r=$1 app
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run,mnt}
	cp /bin/busybox "$r/bin/busybox"
	busybox --list-full | while read -r app; do
		[ -e "$r/$app" ] || ln -s /bin/busybox "$r/$app"
	done
	cat >"$r/etc/inittab" <<-'EOF'
		::sysinit:/bin/sh /etc/rc
		::respawn:/bin/sleep 3600
	EOF
	cat >"$r/etc/rc" <<-'EOF'
		#!/bin/sh
		echo "written from inside the container" >/mnt/pwned
		sync
	EOF
}

# scrub ROOT: delete whatever VM an attack that got through left there, so
# that each case stands alone (on code that lets the attacks through).
scrub() {
	local u
	for u in $(on "$1" "$VMADM" list -H -o uuid 2>/dev/null); do
		on "$1" "$VMADM" delete "$u" >/dev/null 2>&1
	done
}

# refused NAME WANT FILE [ROOT]: receiving FILE on ROOT (default R) fails
# saying WANT, and ROOT keeps nothing of it.
refused() {
	local root=${4:-$R}
	check_fails "$1: refused" "$2" sh -c "VMADM_ROOT=$root $VMADM receive < $3"
	check_eq "$1: receiver clean" "" "$(leftovers "$root")"
	scrub "$root"
}

# usable ROOT LABEL: the node lists, creates and deletes a VM, and is clean.
usable() {
	check "$2: vmadm list works" on "$1" "$VMADM" list
	check "$2: create works" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$SCRATCH\"}' |
		VMADM_ROOT=$1 $VMADM create"
	check "$2: delete works" on "$1" "$VMADM" delete "$SCRATCH"
	check_eq "$2: nothing left" "" "$(leftovers "$1")"
}

# forge IN OUT REWRITE-ARGS...: a valid stream with one change.
forge() {
	local in=$1 out=$2
	shift 2
	"$VMSTREAM" rewrite "$@" <"$in" >"$out" && "$VMSTREAM" dump "$out" >/dev/null
}

setup() {
	echo "{\"brand\": \"joyent\", \"uuid\": \"$J\", \"alias\": \"j\"}" | on "$S" "$VMADM" create &&
		busybox_root "$S/zones/$J/root" || return 1
	echo "{\"brand\": \"joyent\", \"uuid\": \"$JL\", \"alias\": \"jl\"}" | on "$S" "$VMADM" create &&
		rmdir "$S/zones/$JL/root" && ln -s / "$S/zones/$JL/root" || return 1
	echo "{\"brand\": \"joyent\", \"uuid\": \"$JF\", \"alias\": \"jf\"}" | on "$S" "$VMADM" create &&
		rmdir "$S/zones/$JF/root" && echo "not a directory" >"$S/zones/$JF/root" || return 1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$K\", \"ram\": 64, \"disks\": [{\"size\": 64}]}" |
		on "$S" "$VMADM" create || return 1
	head -c 1000000 /dev/urandom | dd of="$S/zones/$K-disk0/disk.raw" bs=1M seek=3 conv=notrunc status=none
	echo "{\"brand\": \"kvm\", \"uuid\": \"$K2\", \"ram\": 64, \"disks\": [{\"size\": 128}]}" |
		on "$S" "$VMADM" create || return 1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$L\", \"ram\": 64, \"disks\": [{\"size\": 160}]}" |
		on "$S" "$VMADM" create || return 1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$L2\", \"ram\": 64, \"disks\": [{\"size\": 160}]}" |
		on "$S" "$VMADM" create || return 1
	head -c 104857600 /dev/urandom | dd of="$S/zones/$L2-disk0/disk.raw" bs=1M conv=notrunc status=none
	for u in $X $Y; do
		echo "{\"brand\": \"kvm\", \"uuid\": \"$u\", \"ram\": 64, \"disks\": [{\"size\": 16}]}" |
			on "$S" "$VMADM" create || return 1
	done
	for u in $J $JL $JF $K $K2 $L $L2 $X $Y; do
		on "$S" "$VMADM" send $u >"$T/$u.vms" || return 1
		on "$S" "$VMADM" send --portable $u >"$T/$u.portable.vms" || return 1
	done
}
check "make VMs and their streams (native and portable) on the source node" setup

# ---- finding 3: host directories into a received container ----

fs_entry() { # SOURCE [TYPE]
	printf '[{"source": "%s", "target": "/mnt", "type": "%s"}]' "$1" "${2:-lofs}"
}
check "forge: the joyent VM with filesystems[] = the host directory" \
	forge "$T/$J.vms" "$T/fs-host.vms" --config-set "filesystems=$(fs_entry "$HOSTDIR")"
refused "host directory, node allows none" \
	"property 'filesystems[0].source': VM $J was received from another node" "$T/fs-host.vms"
check_fails "host directory: the message names the setting that would allow it" \
	'"receive_filesystem_roots", which this node does not set' \
	sh -c "VMADM_ROOT=$R $VMADM receive < $T/fs-host.vms"
scrub "$R"
check "forge: the same through a portable (tar) stream" \
	forge "$T/$J.portable.vms" "$T/fs-host-tar.vms" --config-set "filesystems=$(fs_entry "$HOSTDIR")"
refused "host directory in a portable stream" "property 'filesystems[0].source'" "$T/fs-host-tar.vms"
check "the bare config too (vmadm receive < UUID.json)" sh -c "
	VMADM_ROOT=$S $VMADM get $J | python3 -c 'import json,sys; c=json.load(sys.stdin); c[\"filesystems\"]=json.loads(sys.argv[1]); json.dump(c, sys.stdout)' '$(fs_entry "$HOSTDIR")' >$T/fs-host.json"
refused "host directory in a bare config" "property 'filesystems[0].source'" "$T/fs-host.json"

conf_set "$R" receive_filesystem_roots "[\"$ALLOWED\"]"
refused "host directory, node allows another root" "is not under vmadm.conf \"receive_filesystem_roots\" ($ALLOWED)" "$T/fs-host.vms"
forge "$T/$J.vms" "$T/fs-link.vms" --config-set "filesystems=$(fs_entry "$ALLOWED/link")"
refused "a symlink in the allowed root to the host directory" \
	"property 'filesystems[0].source': $ALLOWED/link is $HOSTDIR, which is not under" "$T/fs-link.vms"
forge "$T/$J.vms" "$T/fs-dotdot.vms" --config-set "filesystems=$(fs_entry "$ALLOWED/share/../../hostdir")"
refused "a '..' out of the allowed root" "property 'filesystems[0].source': must be an absolute path without '..'" "$T/fs-dotdot.vms"
forge "$T/$J.vms" "$T/fs-prefix.vms" --config-set "filesystems=$(fs_entry "$T/allowed-not")"
refused "a sibling whose name starts like the root" "$T/allowed-not is $T/allowed-not, which is not under" "$T/fs-prefix.vms"
for ty in ext4 proc nfs; do
	forge "$T/$J.vms" "$T/fs-$ty.vms" --config-set "filesystems=$(fs_entry /dev/vda "$ty")"
	refused "type $ty" "property 'filesystems[0].type': must be one of lofs, bind, tmpfs, got \"$ty\"" "$T/fs-$ty.vms"
done
forge "$T/$J.vms" "$T/fs-opt.vms" \
	--config-set "filesystems=[{\"source\": \"$ALLOWED/share\", \"target\": \"/mnt\", \"options\": [\"rbind\"]}]"
refused "an option that is not a restriction" "property 'filesystems[0].options[0]'" "$T/fs-opt.vms"
check "host directory untouched by the refused receives" host_untouched
usable "$R" "after the filesystems attacks"

# Allowed: the container really mounts and writes there (the attack's
# mechanism works, so the refusals above are what stopped it).
forge "$T/$J.vms" "$T/fs-ok.vms" --config-set "filesystems=$(fs_entry "$ALLOWED/share")"
check "a source under the allowed root is received" sh -c "VMADM_ROOT=$R $VMADM receive < $T/fs-ok.vms"
check "the received record says when it was received" \
	sh -c "VMADM_ROOT=$R $VMADM get $J | grep -q '\"received_at\"'"
check "start the received container" on "$R" "$VMADM" start "$J"
wait_file() { for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
check "the container wrote into the allowed directory" wait_file "$ALLOWED/share/pwned"
check "... mounted nosuid,nodev (a received VM's files give the host nothing)" \
	grep -q "$ALLOWED/share mnt none bind,nosuid,nodev" "$R/run/lxc/$J/config"
check "stop it" on "$R" "$VMADM" stop -F "$J"
check "delete it" on "$R" "$VMADM" delete "$J"

# Re-checked at start: the allowed directory became a symlink to the host
# directory after the receive.
forge "$T/$J.vms" "$T/fs-later.vms" --config-set "filesystems=$(fs_entry "$ALLOWED/later")"
check "received with a source that is a directory now" sh -c "VMADM_ROOT=$R $VMADM receive < $T/fs-later.vms"
rmdir "$ALLOWED/later" && ln -s "$HOSTDIR" "$ALLOWED/later"
check_fails "start refuses the source that now leads out of the root" \
	"start $J: property 'filesystems[0].source': $ALLOWED/later is $HOSTDIR, which is not under" \
	on "$R" "$VMADM" start "$J"
sleep 2
check "the container wrote nothing into the host directory" host_untouched
not_running() { # ROOT UUID
	local st
	st=$(on "$1" "$VMADM" get "$2" | $JSON state 2>/dev/null)
	[ "$st" = stopped ] || [ "$st" = failed ] || { echo "state $st" && return 1; }
	! pgrep -f "^\[lxc monitor\] $1/run/lxc $2\$"
}
check "the VM does not run" not_running "$R" "$J"
# and when the node stops allowing the root
rm "$ALLOWED/later" && mkdir "$ALLOWED/later"
conf_del "$R" receive_filesystem_roots
check_fails "start refuses once the node no longer allows the root" \
	"which this node does not set: $ALLOWED/later refused" on "$R" "$VMADM" start "$J"
check "delete it" on "$R" "$VMADM" delete "$J"
usable "$R" "after the start attacks"

# ---- nic tags ----

forge "$T/$K.vms" "$T/nic-bridge.vms" --config-set 'nics=[{"mac": "02:08:20:aa:bb:01", "nic_tag": "br-host"}]'
conf_set "$R" nic_tags '{"admin": "vmadmtestbr0"}'
refused "a nic tag the node does not define" \
	"property 'nics[0].nic_tag': nic tag \"br-host\" is not defined on this node (vmadm.conf \"nic_tags\" defines admin)" \
	"$T/nic-bridge.vms"
check_fails "create refuses an undefined nic tag too" "property 'nics[0].nic_tag'" \
	sh -c "echo '{\"brand\": \"kvm\", \"nics\": [{\"nic_tag\": \"br-host\"}]}' | VMADM_ROOT=$R $VMADM create"
scrub "$R"
forge "$T/$K.vms" "$T/nic-admin.vms" --config-set 'nics=[{"mac": "02:08:20:aa:bb:02", "nic_tag": "admin"}]'
check "a defined nic tag is received" sh -c "VMADM_ROOT=$R $VMADM receive < $T/nic-admin.vms"
check_eq "its nic got its interface name here" net0 "$(on "$R" "$VMADM" get "$K" | $JSON nics.0.interface)"
check "delete it" on "$R" "$VMADM" delete "$K"
conf_set "$R" nic_tags '{"admin": "no/bridge"}'
check_fails "a malformed nic_tags setting is named" "vmadm.conf: nic_tags.admin: not a bridge name" \
	sh -c "VMADM_ROOT=$R $VMADM receive < $T/nic-admin.vms"
scrub "$R"
conf_del "$R" nic_tags
usable "$R" "after the nic tag attacks"

# ---- finding 10: a joyent root that is a symlink or a file ----

refused "root a symlink (native btrfs stream)" "dataset zones/$JL: root is a symlink (to /), not a directory" "$T/$JL.vms"
refused "root a symlink (portable tar stream)" "dataset zones/$JL: root is a symlink (to /), not a directory" "$T/$JL.portable.vms"
refused "root a file (native btrfs stream)" "dataset zones/$JF: root is not a directory" "$T/$JF.vms"
refused "root a file (portable tar stream)" "dataset zones/$JF: root is not a directory" "$T/$JF.portable.vms"
check_fails "start of a VM whose root is a symlink says so before liblxc" \
	"start $JL: root filesystem $S/zones/$JL/root is a symlink (to /), not a directory" \
	on "$S" "$VMADM" start "$JL"
check "... and it does not run" not_running "$S" "$JL"
usable "$R" "after the root attacks"

# ---- disk sizes: the config's, and no more data than declared ----

# data_of FILE NAME OUT: the data of dataset NAME ("" or "-diskN") of a
# stream without zstd, as its DS_DATA records carry it.
data_of() {
	python3 - "$@" <<-'EOF'
		import json, struct, sys
		d = open(sys.argv[1], "rb").read(); want = sys.argv[2]; out = open(sys.argv[3], "wb")
		off, cur = 0, None
		while off < len(d):
		    t, fl, ln = struct.unpack_from("<IIQ", d, off)
		    p = d[off + 32:off + 32 + ln]
		    if t == 3:
		        cur = json.loads(p)["name"]
		    elif t == 4 and cur == want:
		        assert fl & 2 == 0, "zstd"
		        out.write(p)
		    off += 32 + ln
	EOF
}
# blocks OUT MIB [DELTA]: "blocks" (or "blocks-delta": the same records)
# data writing MIB MiB of non-zero bytes from offset 0.
blocks() {
	python3 - "$1" "$2" <<-'EOF'
		import struct, sys
		out = open(sys.argv[1], "wb"); chunk = b"\x5a" * (1 << 20)
		for i in range(int(sys.argv[2])):
		    out.write(struct.pack("<QQ", i << 20, 1 << 20)); out.write(chunk)
	EOF
}
# big_tar OUT MIB: a pax archive of the root "." and root/big, MIB MiB.
big_tar() {
	python3 - "$1" "$2" <<-'EOF'
		import io, sys, tarfile
		n = int(sys.argv[2]) << 20
		with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
		    for name in (".", "root"):
		        i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
		    i = tarfile.TarInfo("root/big"); i.size = n; i.mode = 0o644
		    t.addfile(i, io.BytesIO(b"Z" * n))
	EOF
}

forge "$T/$K.vms" "$T/size-native.vms" --config-set 'disks=[{"size": 32, "boot": true}]'
refused "a volume bigger than its config's disk (native)" \
	"receive zones/$K-disk0: the stream's volume is 67108864 bytes, but the VM's config makes the disk 32 MiB" \
	"$T/size-native.vms"
forge "$T/$K.portable.vms" "$T/size-blocks.vms" --config-set 'disks=[{"size": 128, "boot": true}]'
refused "a volume smaller than its config's disk (blocks)" \
	"the stream's volume is 67108864 bytes, but the VM's config makes the disk 128 MiB" "$T/size-blocks.vms"
forge "$T/$K.vms" "$T/size-none.vms" --config-set 'disks=[{"boot": true}]'
refused "a disk without a size" "disks[0]: needs size (the size of the volume the stream brings)" "$T/size-none.vms"
# The btrfs stream of K's 64 MiB volume where K2's DS_BEGIN and config say
# 128 MiB: btrfs receive sizes the file itself.
data_of "$T/$K.vms" -disk0 "$T/k-disk0.btrfs"
forge "$T/$K2.vms" "$T/size-btrfs.vms" --dataset-data "-disk0=$T/k-disk0.btrfs"
refused "a btrfs stream that makes the volume another size" \
	"zones/$K2-disk0: the stream made a volume of 67108864 bytes, but the VM's config makes the disk 134217728 bytes" \
	"$T/size-btrfs.vms"

# L declares what an empty 160 MiB volume takes (a few KiB), and its data
# is 150 MiB of blocks inside the volume: the pool's free-space check
# passed on the declaration. The reader refuses the data once it passes
# the declaration plus 1/8 and 16 MiB, not when the pool fills.
CAP="more than its DS_BEGIN declares (used"
blocks "$T/150m.blocks" 150
forge "$T/$L.portable.vms" "$T/cap-blocks.vms" --dataset-data "-disk0=$T/150m.blocks"
refused "150 MiB of blocks where a few KiB were declared" "$CAP" "$T/cap-blocks.vms" "$P"
check_fails "... naming the dataset and where" "dataset zones/$L-disk0: record" \
	sh -c "VMADM_ROOT=$P $VMADM receive < $T/cap-blocks.vms"
scrub "$P"
data_of "$T/$L2.vms" -disk0 "$T/l2-disk0.btrfs"
forge "$T/$L.vms" "$T/cap-btrfs.vms" --dataset-data "-disk0=$T/l2-disk0.btrfs"
refused "a btrfs stream of 100 MiB where a few KiB were declared" "$CAP" "$T/cap-btrfs.vms" "$P"
big_tar "$T/big.tar" 100
forge "$T/$J.portable.vms" "$T/cap-tar.vms" --dataset-data "=$T/big.tar"
refused "an archive of 100 MiB where a busybox root was declared" "dataset zones/$J: record" "$T/cap-tar.vms" "$P"
usable "$P" "after the data-size attacks"

# An -I pass: a real first pass is held, then a delta that writes 150 MiB
# where it declared the volume's few KiB.
INCR=$BUILD/tests/integration/incr-ops
# btrfs frees a deleted subvolume's space in the background: wait for it
# (the pool is small and the attacks above filled it; under load the
# cleaner lags and the 160 MiB volume would not fit).
btrfs subvolume sync "$P/zones" >/dev/null 2>&1
sync
check "-I: pass 1 of L held on the receiver" sh -c "
	VMADM_ROOT=$S $INCR snapshot $L s1 && VMADM_ROOT=$S $INCR send $L - s1 -p >$T/l-pass1.vms &&
	VMADM_ROOT=$P $INCR receive <$T/l-pass1.vms >/dev/null &&
	dd if=/dev/urandom of=$S/zones/$L-disk0/disk.raw bs=64k count=1 conv=notrunc status=none &&
	VMADM_ROOT=$S $INCR snapshot $L s2 && VMADM_ROOT=$S $INCR send $L s1 s2 -p >$T/l-pass2.vms"
forge "$T/l-pass2.vms" "$T/cap-delta.vms" --dataset-data "-disk0=$T/150m.blocks"
check_fails "-I: a delta past its declaration is refused" "$CAP" \
	sh -c "VMADM_ROOT=$P $INCR receive < $T/cap-delta.vms"
check_eq "-I: the held pass is still the first" s1 "$(VMADM_ROOT=$P "$INCR" held "$L" 2>&1)"
check "-I: the honest delta still lands" sh -c "VMADM_ROOT=$P $INCR receive < $T/l-pass2.vms >/dev/null"
check "-I: drop the held receive" sh -c "VMADM_ROOT=$P $INCR abort $L"
usable "$P" "after the -I attack"

# ---- the migration protocol: a real vmadmd, a peer holding the key ----

if ! hosts_make 2 2147483648 2>"$T/hosts.err"; then
	fail "hosts_make 2: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
IPB=$(host_ip b)
B=$(host_root b)
HELLO='{"type":"hello","protocol":1,"node":"peer","version":"test","encodings":["tar","blocks"],"compression":["zstd"]}'
# begin MODE UUID: the BEGIN of a migration of VM UUID of the source node.
begin() {
	printf '{"type":"begin","mode":"%s","uuid":"%s","config":%s,"estimate":{},"total":0,' \
		"$1" "$2" "$(on "$S" "$VMADM" get "$2")"
	printf '"encoding":"portable","compression":"none","instant":"vmadm-send-peer@1"}'
}
# peer STEP...: vmadm-peer from host a to b's vmadmd; its output in $T/peer.out.
peer() {
	host_exec a "$PEER" -k "$(host_root a)/vmadm.key" -t 30 "$IPB:$HOSTS_PORT" \
		send:"$HELLO" recv "$@" >"$T/peer.out" 2>&1
}
peer_refused() { # NAME WANT STEP...
	local name=$1 want=$2
	shift 2
	peer "$@"
	local rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$name: the peer got through: $(tail -c 300 "$T/peer.out" | tr '\n' ' ')"
	elif ! grep -qF -- "$want" "$T/peer.out"; then
		fail "$name: exit $rc, but vmadmd's answer lacks '$want': $(tail -c 400 "$T/peer.out" | tr '\n' ' ')"
	else
		ok "$name: refused"
	fi
	check_eq "$name: target holds nothing" "" "$(leftovers "$B")"
	check_eq "$name: target lists no VM" "" "$(host_exec b "$VMADM" list -H)"
	scrub "$B"
}
MISMATCH="the stream carries VM $X, but the migration's begin message announced VM $Y"
peer_refused "cold: BEGIN names Y, the stream is X" "$MISMATCH" \
	send:"$(begin cold $Y)" recv stream:"$T/$X.portable.vms" recv
peer_refused "incremental: BEGIN names Y, pass 1 is X" "$MISMATCH" \
	send:"$(begin incremental $Y)" recv recv \
	send:'{"type":"pass","pass":1,"final":true,"from":null,"snapshot":"s1"}' \
	stream:"$T/$X.portable.vms" recv
peer_refused "live: BEGIN names Y, the snapshot stream is X" "$MISMATCH" \
	send:"$(begin live $Y)" recv stream:"$T/$X.portable.vms" recv
forge "$T/$J.portable.vms" "$T/y-joyent.vms" --config-set "uuid=\"$Y\""
peer_refused "cold: BEGIN names kvm VM Y, the stream is a joyent Y" \
	"the stream carries a VM of brand joyent, but the migration's begin message announced brand kvm" \
	send:"$(begin cold $Y)" recv stream:"$T/y-joyent.vms" recv
# vmadmd keeps a failed receive's complete datasets for a resume
# (docs/migration-protocol.md, Resume): here the VM's own, empty dataset,
# received whole before the disk's data ran past its declaration.
peer send:"$(begin cold $L)" recv stream:"$T/cap-blocks.vms" recv
check_grep "cold through vmadmd: data past its declaration is refused" -qF "$CAP" "$T/peer.out"
check_eq "cold through vmadmd: what b keeps is the complete zone dataset, for a resume" \
	"kept zones/$L" "$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["phase"], *j["done"])' "$B/recv/$L.json" 2>&1)"
check "cold through vmadmd: the kept partial can be deleted" host_exec b "$VMADM" delete "$L"
check_eq "cold through vmadmd: then b holds nothing" "" "$(leftovers "$B")"
peer_refused "-I through vmadmd: pass 1 past its declaration" "$CAP" \
	send:"$(begin incremental $L)" recv recv \
	send:'{"type":"pass","pass":1,"final":true,"from":null,"snapshot":"s1"}' \
	stream:"$T/cap-blocks.vms" recv
install -m 0600 "$(host_root a)/vmadm.key" "$S/vmadm.key"
check "an honest send to b still works" host_exec a env VMADM_ROOT="$S" "$VMADM" send "$X" "$IPB" "$HOSTS_PORT"
check_eq "... and b has it" "$X" "$(host_exec b "$VMADM" list -H -o uuid)"
check "delete it on b" host_exec b "$VMADM" delete "$X"
usable "$B" "target after the peer attacks"

t_done

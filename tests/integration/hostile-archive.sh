#!/usr/bin/env bash
# What lands on disk cannot hurt the host (issue 11, item 3; findings 4, 5
# and 6). Valid streams (framing, CRCs and hashes right: vmadm-stream rewrite
# --dataset-data) whose joyent dataset carries a hostile pax archive made
# with python3's tarfile, received into a btrfs pool (node b) and a dir pool
# (node d), in the "tar" encoding (`vmadm receive < file`) and in the
# "tar-delta" encoding of `vmadm send -I` (vm_incr_receive_pass, through
# tests/integration/incr-ops):
#
#  - immutable and append-only flags (SCHILY.fflags schg, sappnd) on the
#    root, files and directories: not applied; a refused receive that made
#    them leaves nothing, and the node works after (finding 4);
#  - a setuid-root program and a 0666 node of a real loop device: kept
#    (containers need them), but a local user cannot run or open them: the
#    pool is 0700 (finding 5);
#  - the dir pool's dataset marker .vmadm-dataset (as a directory, deeper
#    down, as a hard link target, in the deletion list) and disk.raw at the
#    root: refused with the dataset and the entry named (finding 6); and a
#    temporary dataset left without its marker (a receive killed half-way,
#    the marker taken away) is removed by the next command's recovery;
#  - what else a cleanup trips over: 0000/0500 directories with content, a
#    directory replaced by a symlink, a fifo, a 1900-level tree (a path
#    longer than PATH_MAX is refused, and cleaned up as well).
#
# And the defence in depth behind it: a container that chattr'ed its own
# files (+i on its delegated dataset's root and on files, +a on a directory)
# can still be sent (the snapshots go after) and deleted, on both pools; on
# a dir pool on btrfs, one that made subvolumes (read-only, immutable) in
# its root can be deleted.
. "$(dirname "$0")/../lib/common.sh"

VMSTREAM=${VMSTREAM_BIN:-$BUILD/tools/vmadm-stream}
OPS=$BUILD/tests/integration/incr-ops
for tool in "$VMSTREAM" "$OPS"; do
	if [ ! -x "$tool" ]; then
		fail "not built: $tool"
		exit 1
	fi
done
for tool in python3 setpriv chattr lsattr losetup mkfs.btrfs btrfs; do
	if ! command -v "$tool" >/dev/null; then
		fail "prerequisite: $tool not installed"
		exit 1
	fi
done

OS=3c1d2e3f-4444-4555-8666-777788889999
NEW=4d2e3f40-4444-4555-8666-777788889999
A=$(node_make a btrfs 1073741824)
B=$(node_make b btrfs 1073741824)
D=$(node_make d dir)
# Only the pool's own mode may stand between a local user and the VMs'
# files: $T (mktemp -d) is 0700, which would hide everything anyway.
chmod 0755 "$T" "$A" "$B" "$D"
# If a check fails on a build without the fixes, immutable files stay in
# the dir pool and $T could not be removed: clear them (regular files and
# directories only, nothing followed, nothing outside $T).
t_defer "find '$D' -xdev \\( -type f -o -type d \\) -exec chattr -i -a {} + 2>/dev/null"

# mkar OUT SPEC [DELETION...]: a pax archive from SPEC (one entry a line:
#   dir NAME MODE | file NAME MODE [TEXT] | copy NAME MODE SRC |
#   chr|blk NAME MODE MAJOR MINOR | fifo NAME MODE | sym NAME TARGET |
#   link NAME TARGET | deep NAME DEPTH
# each with options fflags=F uid=N gid=N). With deletions (or "-" for
# none), the body of a tar-delta dataset: the deletion list, then it.
cat >"$T/mkar.py" <<'EOF'
import io, struct, sys, tarfile

def entry(name, kind, mode, opts):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, mode, 1700000000
    ti.uid, ti.gid = int(opts.get("uid", 0)), int(opts.get("gid", 0))
    if "fflags" in opts:
        ti.pax_headers = {"SCHILY.fflags": opts["fflags"]}
    return ti

def archive(spec):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for line in spec.splitlines():
            f = line.split()
            if not f:
                continue
            kind, name = f[0], f[1]
            opts = dict(x.split("=", 1) for x in f[2:] if "=" in x)
            args = [x for x in f[2:] if "=" not in x]
            if kind == "dir":
                tf.addfile(entry(name, tarfile.DIRTYPE, int(args[0], 8), opts))
            elif kind in ("file", "copy"):
                if kind == "copy":
                    data = open(args[1], "rb").read()
                else:
                    data = args[1].encode() if len(args) > 1 else b""
                ti = entry(name, tarfile.REGTYPE, int(args[0], 8), opts)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            elif kind in ("chr", "blk"):
                ti = entry(name, tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE,
                           int(args[0], 8), opts)
                ti.devmajor, ti.devminor = int(args[1]), int(args[2])
                tf.addfile(ti)
            elif kind == "fifo":
                tf.addfile(entry(name, tarfile.FIFOTYPE, int(args[0], 8), opts))
            elif kind in ("sym", "link"):
                ti = entry(name, tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE,
                           0o777 if kind == "sym" else 0o644, opts)
                ti.linkname = args[0]
                tf.addfile(ti)
            elif kind == "deep":
                p, last = name, name.split("/")[-1]
                for _ in range(int(args[0])):
                    tf.addfile(entry(p, tarfile.DIRTYPE, 0o755, opts))
                    p += "/" + last
                tf.addfile(entry(p, tarfile.REGTYPE, 0o644, opts), io.BytesIO(b""))
            else:
                sys.exit("mkar: unknown entry kind " + kind)
    return buf.getvalue()

out, spec, dels = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3:]
with open(out, "wb") as o:
    if dels:
        for d in dels:
            if d != "-":
                o.write(struct.pack("<I", len(d.encode())) + d.encode())
        o.write(struct.pack("<I", 0))
    o.write(archive(spec))
EOF
mkar() {
	local out=$1 spec=$2
	shift 2
	printf '%s\n' "$spec" >"$T/spec"
	python3 "$T/mkar.py" "$out" "$T/spec" "$@"
}

# The base of every archive: what a joyent dataset holds.
BASE='dir . 0755
dir root 0755
dir root/etc 0755
file root/etc/hostname 0644 hostile'

# forge NAME SPEC: $T/NAME.vms, the real stream of VM $OS whose own dataset
# is the archive of SPEC.
forge() {
	mkar "$T/$1.tar" "$2" || return 1
	"$VMSTREAM" rewrite --dataset-data "=$T/$1.tar" <"$T/os.vms" >"$T/$1.vms"
}

# usable ROOT WHAT: the node works after WHAT: list, create and delete a
# VM, and a receive of the genuine stream of $OS succeeds (and is deleted).
usable() {
	local root=$1 what=$2
	check "$what: vmadm list works" on "$root" "$VMADM" list
	check "$what: create works" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$NEW\"}' |
		VMADM_ROOT=$root $VMADM create"
	check "$what: delete works" on "$root" "$VMADM" delete $NEW
	check "$what: the same UUID is received from a genuine stream" \
		sh -c "VMADM_ROOT=$root $VMADM receive < $T/os.vms"
	check "$what: and deleted" on "$root" "$VMADM" delete $OS
	check_eq "$what: nothing left" "" "$(leftovers "$root")"
}

# refused NAME ROOT WANT: receiving $T/NAME.vms on ROOT fails saying WANT,
# leaves nothing, and the node is usable.
refused() {
	local name=$1 root=$2 want=$3 pool
	pool=$(basename "$root")
	check_fails "$name ($pool): refused" "$want" sh -c "VMADM_ROOT=$root $VMADM receive < $T/$name.vms"
	check_eq "$name ($pool): nothing left" "" "$(leftovers "$root")"
	usable "$root" "$name ($pool)"
}

setup() {
	echo "{\"brand\": \"joyent\", \"uuid\": \"$OS\", \"alias\": \"o\"}" | on "$A" "$VMADM" create || return 1
	mkdir -p "$A/zones/$OS/root/etc" && echo genuine >"$A/zones/$OS/root/etc/hostname" &&
		on "$A" "$VMADM" send --portable $OS >"$T/os.vms" && "$VMSTREAM" dump "$T/os.vms" >/dev/null
}
check "make a joyent VM and its portable stream on node a" setup

for R in "$B" "$D"; do
	check "$(basename "$R"): the genuine stream is received" sh -c "VMADM_ROOT=$R $VMADM receive < $T/os.vms"
	on "$R" "$VMADM" delete $OS >/dev/null 2>&1
done

# ---- finding 4: immutable and append-only flags ----

FLAGS="dir . 0755 fflags=schg
dir root 0755 fflags=sappnd
dir root/etc 0755
file root/etc/hostname 0644 hostile fflags=schg
file root/etc/shadow 0600 x fflags=sappnd
dir root/var 0755 fflags=schg,sappnd
file root/var/log 0644 x fflags=uchg
file root/var/nodump 0644 x fflags=nodump"
check "forge: an archive with schg/sappnd/uchg flags" forge flags "$FLAGS"
for R in "$B" "$D"; do
	pool=$(basename "$R")
	check "flags ($pool): received" sh -c "VMADM_ROOT=$R $VMADM receive < $T/flags.vms"
	z=$R/zones/$OS
	check_eq "flags ($pool): no immutable or append-only flag on anything received" "" \
		"$(lsattr -d "$z" "$z/root" "$z/root/etc/hostname" "$z/root/etc/shadow" "$z/root/var" "$z/root/var/log" 2>&1 |
			awk '$1 ~ /[ia]/')"
	check_grep "flags ($pool): nodump is kept" -q '^[^ ]*d[^ ]* ' <(lsattr "$z/root/var/nodump" 2>&1)
	check "flags ($pool): delete" on "$R" "$VMADM" delete $OS
	check_eq "flags ($pool): nothing left" "" "$(leftovers "$R")"
done
# The same flags on entries extracted before the archive is refused: the
# cleanup of the refused receive must remove them.
check "forge: flags, then a refused entry" forge flagsref "$FLAGS
file zzz/../../escape 0644 x"
for R in "$B" "$D"; do
	refused flagsref "$R" "archive entry \"zzz/../../escape\" has a \"..\" component"
done


# ---- finding 5: setuid-root programs and device nodes ----

# The device node is a real one: the loop device holding node a's pool.
LOOP=$(losetup -nO NAME -j "$A/pool.img" | head -n 1)
MAJ=$((16#$(stat -c %t "$LOOP"))) MIN=$((16#$(stat -c %T "$LOOP")))
check "node a's pool is on a loop device ($LOOP, $MAJ:$MIN)" test -b "$LOOP"
# as_nobody CMD...: run CMD as user and group nobody, no other groups.
# Through env: setpriv keeps root's capabilities until its own execve, so
# that looking CMD's path up would not be done as nobody.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- env -- "$@"; }
check "forge: a setuid-root id and a world-readable node of node a's loop device" forge suid "$BASE
dir root/bin 0755
copy root/bin/id 04755 $(command -v id)
dir root/dev 0755
blk root/dev/pool 0666 $MAJ $MIN"
for R in "$B" "$D"; do
	pool=$(basename "$R")
	z=$R/zones/$OS
	check "suid ($pool): received" sh -c "VMADM_ROOT=$R $VMADM receive < $T/suid.vms"
	# They are kept: a container's own su and /dev need them.
	check_eq "suid ($pool): the program is setuid root in the VM" "4755 0" "$(stat -c '%a %u' "$z/root/bin/id")"
	check_eq "suid ($pool): the device node is there" "block special file $MAJ:$MIN" \
		"$(stat -c '%F %Hr:%Lr' "$z/root/dev/pool")"
	check_eq "suid ($pool): the pool's mount point is 0700" 700 "$(stat -c %a "$R/zones")"
	check "suid ($pool): nobody can reach the node root (only the pool stops it)" as_nobody ls "$R"
	check_fails "suid ($pool): nobody cannot run the setuid program" "Permission denied" \
		as_nobody "$z/root/bin/id" -u
	check_fails "suid ($pool): nobody cannot open the device node" "Permission denied" \
		as_nobody head -c 512 "$z/root/dev/pool"
	# An existing node, made before the pools were 0700: the next command
	# that opens its pool fixes the mode.
	chmod 0755 "$R/zones"
	check_eq "suid ($pool): (the attack, on a pool left 0755: euid 0)" 0 "$(as_nobody "$z/root/bin/id" -u 2>&1)"
	check_eq "suid ($pool): (the attack, on a pool left 0755: node a's pool read)" _BHRfS_M \
		"$(as_nobody dd if="$z/root/dev/pool" bs=1 skip=$((65536 + 64)) count=8 status=none 2>&1)"
	check "suid ($pool): a command that opens the pool" \
		sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$NEW\"}' | VMADM_ROOT=$R $VMADM create"
	check_eq "suid ($pool): ... makes it 0700 again" 700 "$(stat -c %a "$R/zones")"
	check_fails "suid ($pool): ... and nobody cannot run the program" "Permission denied" \
		as_nobody "$z/root/bin/id" -u
	check "suid ($pool): delete the other VM" on "$R" "$VMADM" delete $NEW
	check "suid ($pool): delete" on "$R" "$VMADM" delete $OS
	check_eq "suid ($pool): nothing left" "" "$(leftovers "$R")"
done

# ---- finding 6: the dir pool's marker, and a volume's image ----

for bad in "markerdir|dir .vmadm-dataset 0755
file .vmadm-dataset/x 0644 x|archive entry \".vmadm-dataset/\": the name .vmadm-dataset is reserved" \
	"markerfile|file .vmadm-dataset 0644 x|archive entry \".vmadm-dataset\": the name .vmadm-dataset is reserved" \
	"markerdeep|file root/./.vmadm-dataset 0644|archive entry \"root/./.vmadm-dataset\": the name .vmadm-dataset is reserved" \
	"markerlink|link root/m .vmadm-dataset|hard link target \".vmadm-dataset\": the name .vmadm-dataset is reserved" \
	"image|file ./disk.raw 0644 x|archive entry \"./disk.raw\": the name disk.raw at the root of a filesystem is reserved"; do
	name=${bad%%|*} rest=${bad#*|}
	spec=${rest%|*} why=${rest##*|}
	check "forge: $name" forge "$name" "$BASE
$spec"
	for R in "$B" "$D"; do
		refused "$name" "$R" "receive zones/$OS: $why"
	done
done
check "forge: disk.raw below the root is a file like any" forge image2 "$BASE
file root/disk.raw 0644 x"
for R in "$B" "$D"; do
	check "image2 ($(basename "$R")): received" sh -c "VMADM_ROOT=$R $VMADM receive < $T/image2.vms"
	check "image2 ($(basename "$R")): delete" on "$R" "$VMADM" delete $OS
done

# ---- what else a cleanup could trip over ----

LONG=$(printf 'n%.0s' $(seq 255))
check "forge: 0000 and 0500 directories with content, a fifo, a directory replaced by a symlink, a 255-byte name, a 1900-level tree, then a refused entry" forge trips "$BASE
dir root/ro 0500
file root/ro/f 0444 x
dir root/none 0000
dir root/none/sub 0000
file root/none/sub/f 0000 x
fifo root/fifo 0644
dir root/swap 0755
sym root/swap ../etc
file root/$LONG 0644 x
deep root/d 1900
file zzz/../../escape 0644 x"
for R in "$B" "$D"; do
	refused trips "$R" "archive entry \"zzz/../../escape\" has a \"..\" component"
done
# Deeper than PATH_MAX: refused there (libarchive would chdir along it, and
# fail anyway), after 2000 levels were made.
check "forge: a 3000-level tree" forge deeper "$BASE
deep root/d 3000"
for R in "$B" "$D"; do
	refused deeper "$R" "its path in the pool is longer than 4095 bytes"
done
# And what held before (issue 11): writing through the archive's own symlink.
mkdir -p "$T/outside" && echo keep >"$T/outside/victim"
check "forge: a symlink out, then a file through it" forge escape "$BASE
sym root/out $T/outside
file root/out/victim 0644 pwned"
for R in "$B" "$D"; do
	refused escape "$R" "Cannot extract through symlink"
done
check_eq "nothing written outside the node roots" "keep victim" "$(cat "$T/outside/victim") $(ls "$T/outside")"

# A dir pool receive killed between its mkdir and its marker, or one whose
# marker older code let an archive take (finding 6): the next command's
# recovery removes the unmarked temporary directory too.
unmarked() {
	local pid i
	mkfifo "$T/fifo" || return 1
	VMADM_ROOT=$D "$VMADM" receive <"$T/fifo" >/dev/null 2>&1 &
	pid=$!
	exec 7>"$T/fifo"
	# up to the end of the VM's dataset's data: its archive is extracted,
	# the receive waits for DS_END
	head -c "$("$VMSTREAM" dump "$T/os.vms" | awk '$3 == "DS_END" {print $1; exit}')" "$T/os.vms" >&7
	for ((i = 0; i < 100; i++)); do
		[ -f "$D/recv/$OS.json" ] && [ -f "$D/zones/$OS.recv/root/etc/hostname" ] && break
		sleep 0.1
	done
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
	exec 7>&-
	rm -f "$T/fifo"
	[ -f "$D/recv/$OS.json" ] && rm "$D/zones/$OS.recv/.vmadm-dataset"
}
check "unmarked: a receive killed half-way, its temporary dataset without a marker" unmarked
check "unmarked: the next command" on "$D" "$VMADM" list
check_eq "unmarked: nothing left" "" "$(leftovers "$D")"
usable "$D" "unmarked"

# ---- the same through the tar-delta encoding (vmadm send -I) ----

# Pass 1 (full) and a genuine pass 2 of VM $OS2 from node a, portable; each
# forged pass 2 carries a hostile body (deletion list, then archive).
OS2=5e3f4051-4444-4555-8666-777788889999
I1=vmadm-send-I1-h I2=vmadm-send-I2-h
passes() {
	echo "{\"brand\": \"joyent\", \"uuid\": \"$OS2\"}" | on "$A" "$VMADM" create || return 1
	mkdir -p "$A/zones/$OS2/root/etc" && echo one >"$A/zones/$OS2/root/etc/hostname" &&
		on "$A" "$OPS" snapshot $OS2 $I1 && on "$A" "$OPS" send $OS2 - $I1 -p >"$T/p1" 2>/dev/null &&
		echo two >"$A/zones/$OS2/root/etc/hostname" &&
		on "$A" "$OPS" snapshot $OS2 $I2 && on "$A" "$OPS" send $OS2 $I1 $I2 -p >"$T/p2" 2>/dev/null &&
		grep -q '"encoding":"tar-delta"' "$T/p2"
}
check "make pass 1 and a tar-delta pass 2 of a joyent VM on node a" passes
# delta NAME SPEC [DELETION...]: $T/NAME.vms, pass 2 with that body.
delta() {
	local name=$1 spec=$2
	shift 2
	mkar "$T/$name.body" "$spec" "$@" || return 1
	"$VMSTREAM" rewrite --dataset-data "=$T/$name.body" <"$T/p2" >"$T/$name.vms"
}
DBASE='dir . 0755
dir root 0755
dir root/etc 0755
file root/etc/hostname 0644 two'
for R in "$B" "$D"; do
	pool=$(basename "$R")
	check "delta ($pool): pass 1 held" sh -c "VMADM_ROOT=$R $OPS receive < $T/p1 >/dev/null"
	for bad in "dmarkdel||root/.vmadm-dataset|deleted path \"root/.vmadm-dataset\": the name .vmadm-dataset is reserved" \
		"dmarkdel2||.vmadm-dataset|deleted path \".vmadm-dataset\": the name .vmadm-dataset is reserved" \
		"dmarkdir|dir .vmadm-dataset 0755|-|archive entry \".vmadm-dataset/\": the name .vmadm-dataset is reserved" \
		"dmarklink|link root/m .vmadm-dataset|-|hard link target \".vmadm-dataset\": the name .vmadm-dataset is reserved" \
		"dimage|file disk.raw 0644 x|-|archive entry \"disk.raw\": the name disk.raw at the root of a filesystem is reserved" \
		"dflagsref|$FLAGS
file zzz/../../escape 0644 x|-|archive entry \"zzz/../../escape\" has a \"..\" component"; do
		IFS='|' read -r -d '' name spec del why < <(printf '%s\0' "$bad")
		check "delta ($pool): forge $name" delta "$name" "$DBASE
$spec" "$del"
		check_fails "delta ($pool): $name: refused" "receive zones/$OS2: $why" \
			sh -c "VMADM_ROOT=$R $OPS receive < $T/$name.vms"
		check_eq "delta ($pool): $name: pass 1 still held" $I1 "$(on "$R" "$OPS" held $OS2 2>&1)"
		check_eq "delta ($pool): $name: no immutable or append-only flag on the held copy" "" \
			"$(find "$R/zones/$OS2.recv" \( -type f -o -type d \) -exec lsattr -d {} + 2>&1 | awk '$1 ~ /[ia]/')"
		check "delta ($pool): $name: vmadm list works" on "$R" "$VMADM" list
	done
	# Flags, a setuid program and a device node in a pass that is taken.
	check "delta ($pool): forge flags, setuid, device" delta dflags "$DBASE
$FLAGS
dir root/bin 0755
copy root/bin/id 04755 $(command -v id)
blk root/pool 0666 $MAJ $MIN" -
	check_eq "delta ($pool): flags, setuid, device: taken" "held $OS2 $I2" \
		"$(on "$R" "$OPS" receive <"$T/dflags.vms" 2>&1 | cut -d' ' -f1-3)"
	z=$R/zones/$OS2.recv
	check_eq "delta ($pool): no immutable or append-only flag on anything received" "" \
		"$(find "$z" \( -type f -o -type d \) -exec lsattr -d {} + 2>&1 | awk '$1 ~ /[ia]/')"
	check_eq "delta ($pool): the program is setuid root" "4755 0" "$(stat -c '%a %u' "$z/root/bin/id")"
	check_fails "delta ($pool): nobody cannot run it" "Permission denied" as_nobody "$z/root/bin/id" -u
	check_fails "delta ($pool): nobody cannot open the device node" "Permission denied" \
		as_nobody head -c 512 "$z/root/pool"
	check "delta ($pool): abort" on "$R" "$OPS" abort $OS2
	check_eq "delta ($pool): nothing left" "" "$(leftovers "$R")"
	usable "$R" "delta ($pool)"
done
on "$A" "$VMADM" delete $OS2 >/dev/null 2>&1

# ---- a container that chattr'ed its own files ----

# What root in a container can do to its files, done here from the host:
# +i on its delegated dataset's root (/zones/UUID/data in the container),
# on its / and on a file, +a on a directory. The VM can still be sent (its
# snapshots go after), received elsewhere (without the flags), deleted.
CH=6f405162-4444-4555-8666-777788889999
chattred() {
	local root=$1 z=$1/zones/$CH
	echo "{\"brand\": \"joyent\", \"uuid\": \"$CH\", \"delegate_dataset\": true}" |
		on "$root" "$VMADM" create || return 1
	mkdir -p "$z/root/etc" "$z/root/var/log" && echo x >"$z/root/etc/passwd" && echo y >"$z/root/var/log/l" &&
		echo z >"$z/data/file" &&
		chattr +i "$z/root/etc/passwd" "$z/data" "$z/root" && chattr +a "$z/root/var/log"
}
for pair in "$A $D" "$D $B"; do
	set -- $pair
	src=$1 dst=$2 pool=$(basename "$1")
	check "chattr ($pool): a VM whose container chattr'ed its files" chattred "$src"
	check "chattr ($pool): send" sh -c "VMADM_ROOT=$src $VMADM send --portable $CH > $T/ch.vms"
	check_eq "chattr ($pool): its snapshots are gone" "" "$(find "$src/zones/.snapshots" -name '@*')"
	check "chattr ($pool): received on $(basename "$dst")" sh -c "VMADM_ROOT=$dst $VMADM receive < $T/ch.vms"
	check_eq "chattr ($pool): without the flags" "" \
		"$(find "$dst/zones/$CH" \( -type f -o -type d \) -exec lsattr -d {} + 2>&1 | awk '$1 ~ /[ia]/')"
	check "chattr ($pool): delete" on "$src" "$VMADM" delete $CH
	check_eq "chattr ($pool): nothing left" "" "$(leftovers "$src" | grep $CH)"
	check "chattr ($pool): delete the copy" on "$dst" "$VMADM" delete $CH
	check_eq "chattr ($pool): nothing left of the copy" "" "$(leftovers "$dst")"
done

# A dir pool on btrfs: a container can make btrfs subvolumes in its root,
# read-only snapshots and immutable subvolume roots among them.
E=$T/e
dirpool_on_btrfs() {
	truncate -s 1G "$T/e.img" && mkfs.btrfs -q "$T/e.img" && mkdir -p "$E" &&
		mount -o loop "$T/e.img" "$E" && node_make e dir >/dev/null
}
check "a dir pool on a btrfs filesystem" dirpool_on_btrfs
subvols() {
	local z=$E/zones/$CH
	echo "{\"brand\": \"joyent\", \"uuid\": \"$CH\"}" | on "$E" "$VMADM" create || return 1
	mkdir -p "$z/root" && btrfs -q subvolume create "$z/root/sv" && echo x >"$z/root/sv/f" &&
		btrfs -q subvolume create "$z/root/sv/nested" && echo y >"$z/root/sv/nested/g" &&
		btrfs -q subvolume snapshot -r "$z/root/sv" "$z/root/ro" && chattr +i "$z/root/sv/f" "$z/root/sv"
}
check "subvols: a VM with subvolumes, immutable and read-only, in its root" subvols
check "subvols: delete" on "$E" "$VMADM" delete $CH
check_eq "subvols: nothing left" "" "$(leftovers "$E")"

t_done

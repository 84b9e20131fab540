#!/usr/bin/env bash
# The fault matrix (docs/fault-matrix.md): every way of moving a VM
# {file send/receive, cold direct, -I, -L} against every fault {link cut,
# target killed, sender killed, target pool full, wrong key, UUID already on
# the target, a peer of another protocol version, SIGINT at the sender}.
# Per cell: the sender's (and for a file the receiver's) exit status and
# message; the source as it was (state, autoboot, data hashes; -I/-L: the
# guest's workload goes on; -L: the same QEMU); the target clean (no record
# but the documented kept partial, no dataset, temporary, snapshot, mount,
# loop device or process); and a re-run that completes once the fault is
# gone, with the VM then on the target as it was on the source. The re-run
# moves the VM, so the next cell goes the other way (a -> b, b -> a, ...).
# The matrix is printed at the end: rows faults, columns modes, each cell
# "ok" or its first failing check.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

IMAGES=$BUILD/images
PEER=$BUILD/tools/vmadm-peer
STREAM=$BUILD/tools/vmadm-stream
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
FU=0f3a1b2c-4d5e-4f60-8172-a3b4c5d6e7f8 # file: kvm, stopped
CU=1a4b2c3d-5e6f-4071-8283-b4c5d6e7f809 # cold: joyent, running
IU=2b5c3d4e-6f70-4182-9394-c5d6e7f8091a # -I: kvm, running
LU=3c6d4e5f-7081-4293-a4a5-d6e7f8091a2b # -L: kvm, running
OFFSET=33554432                         # the kvm workload's records
TMO=5                                   # network deadline, both sides
# Both vmadmds and every send give up on a silent peer after TMO seconds.
export VMADM_NET_TIMEOUT=$TMO

MODES=(file cold incr live)
FAULTS=(cut tkill skill full key uuid proto sigint)
# FAULT_MATRIX_MODES="cold incr", FAULT_MATRIX_FAULTS="cut key": run only
# those columns and rows (to work on them)
RUN_MODES=" ${FAULT_MATRIX_MODES:-${MODES[*]}} "
RUN_FAULTS=" ${FAULT_MATRIX_FAULTS:-${FAULTS[*]}} "
declare -A MODE_LABEL=([file]="file" [cold]="cold" [incr]="-I" [live]="-L")
declare -A FAULT_LABEL=([cut]="link cut" [tkill]="target killed" [skill]="sender killed"
	[full]="target pool full" [key]="wrong key" [uuid]="UUID on the target"
	[proto]="other protocol" [sigint]="SIGINT at sender")
declare -A CELL CELLT
CUR=

# A failing check marks the cell it belongs to (its first failure names it).
# c/ce/cg: check/check_eq/check_grep named "MODE/FAULT what".
LAST=
fail() {
	echo "not ok - $*"
	T_FAILED=1
	if [ -n "$CUR" ] && [ "${CELL[$CUR]}" = ok ]; then
		CELL[$CUR]=$LAST
	fi
}
c() {
	local n=$1
	shift
	LAST=$n
	check "$CUR $n" "$@"
}
ce() {
	LAST=$1
	check_eq "$CUR $1" "$2" "$3"
}
cg() {
	LAST=$1
	local n=$1
	shift
	check_grep "$CUR $n" "$@"
}
# The images (installed on a, where the VMs are made) are not the VM's.
not_images() { grep -v -e "$KVM_IMAGE" -e "$OS_IMAGE" -e '/\.filler[0-9]*$'; }

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
if ! hosts_make 2 2147483648 2>"$T/hosts.err"; then
	fail "hosts_make 2: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
SRC=a
DST=b
swap() {
	local x=$SRC
	SRC=$DST
	DST=$x
}
R() { host_root "$1"; }
state() { host_exec "$1" "$VMADM" get "$2" 2>/dev/null | $JSON state; }
field() { host_exec "$1" "$VMADM" get "$2" 2>/dev/null | $JSON "$3"; }
state_is() { [ "$(state "$1" "$2")" = "$3" ]; }
# wait_for SECS CMD...: until CMD succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}
# rate_pipe BYTES_PER_S: copy stdin to stdout at that rate (a slow link).
rate_pipe() {
	/usr/bin/python3 -c '
import os, sys, time
rate, t0, n = int(sys.argv[1]), time.monotonic(), 0
while True:
    b = os.read(0, 65536)
    if not b:
        break
    os.write(1, b)
    n += len(b)
    ahead = n / rate - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
' "$1"
}

# ---- the VMs -----------------------------------------------------------------

# hash_of MODE HOST: the data of the mode's VM on HOST. kvm: the disks
# (-I/-L: disk1, which the guest's workload leaves alone; disk0's moves are
# judged by the workload's own gap-free sequence); joyent: a blob in its
# root and one in its delegated dataset (whose workload.rec the container's
# workload writes, judged the same way).
hash_of() {
	local r
	r=$(R "$2")
	case $1 in
	file) cat "$r/zones/$FU-disk0/disk.raw" "$r/zones/$FU-disk1/disk.raw" | sha256sum | cut -c1-16 ;;
	cold) cat "$r/zones/$CU/root/blob" "$r/zones/$CU/data/blob" | sha256sum | cut -c1-16 ;;
	incr) sha256sum <"$r/zones/$IU-disk1/disk.raw" | cut -c1-16 ;;
	live) sha256sum <"$r/zones/$LU-disk1/disk.raw" | cut -c1-16 ;;
	esac
}
uuid_of() {
	case $1 in file) echo $FU ;; cold) echo $CU ;; incr) echo $IU ;; live) echo $LU ;; esac
}
# wl_where HOST UUID: where the VM's workload writes its records (the
# checker's arguments): a kvm guest's disk0, a container's data/workload.rec.
wl_where() {
	if [ "$2" = "$CU" ]; then
		echo "$(R "$1")/zones/$2/data/workload.rec"
	else
		echo "--offset $OFFSET $(R "$1")/zones/$2-disk0/disk.raw"
	fi
}
# workload_goes_on HOST UUID: the guest's workload writes new records.
workload_goes_on() {
	local n q
	n=$(wl_records $(wl_where "$1" "$2"))
	wl_wait_records $((n + 5)) 60 $(wl_where "$1" "$2") && return 0
	q=$(R "$1")/run/$2
	if [ -S "$q/qmp.sock" ]; then
		# what became of the guest, for the log
		echo "QEMU: $(qmp_cmd "$q/qmp.sock" query-status) $(qmp_cmd "$q/qmp.sock" query-block | grep -o '"io-status": "[a-z]*"' | xargs)"
		echo "console: $(timeout 2 socat -u UNIX-CONNECT:"$q/console.sock" - 2>/dev/null | tail -c 600 | tr -c '[:print:]' ' ')"
	fi
	return 1
}

# ---- the cells -----------------------------------------------------------------

cell_begin() {
	MODE=$1
	FAULT=$2
	CUR="$MODE/$FAULT"
	CELL[$CUR]=ok
	CELL_T0=$SECONDS
	U=$(uuid_of "$MODE")
	N=$T/$MODE-$FAULT
	echo "# ---- $CUR: ${FAULT_LABEL[$FAULT]}, ${MODE_LABEL[$MODE]}, $SRC -> $DST"
	# The source as it is before the fault.
	EXP_STATE=$(state "$SRC" "$U")
	EXP_AUTOBOOT=$(field "$SRC" "$U" autoboot)
	EXP_HASH=$(hash_of "$MODE" "$SRC")
	EXP_QPID=
	[ "$MODE" = live ] && EXP_QPID=$(cat "$(R "$SRC")/run/$U/qemu.pid")
	DST_VMADMD=$(cat "$T/.hosts/$DST.pid")
	LOG_MARK=$(wc -l <"$(R "$DST")/log/vmadmd.log")
}
cell_end() {
	local h
	if [ "${CELL[$CUR]}" != ok ]; then
		# what the nodes said, for the log of a failed run
		for h in a b; do
			tail -n +$((LOG_MARK + 1)) "$(R "$h")/log/vmadmd.log" | tail -n 6 | sed "s/^/# $h vmadmd: /"
			[ -S "$(R "$h")/run/$U/qmp.sock" ] && echo "# $h QEMU: $(qmp_status "$(R "$h")/run/$U/qmp.sock")"
		done
	fi
	CELLT[$CUR]=$((SECONDS - CELL_T0))
	echo "# $CUR: ${CELL[$CUR]} (${CELLT[$CUR]} s)"
	CUR=
}
# qmp_cmd SOCKET COMMAND: what QEMU answers (for the log of a failure).
qmp_cmd() {
	timeout 5 /usr/bin/python3 -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for c in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": c}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "event" not in r:
            break
print(json.dumps(r.get("return", r)))' "$1" "$2" 2>&1
}
qmp_status() { qmp_cmd "$1" query-status; }
# dst_log PATTERN: the target's vmadmd logged PATTERN during this cell.
dst_log() {
	tail -n +$((LOG_MARK + 1)) "$(R "$DST")/log/vmadmd.log" | grep -qE -- "$1"
}

# source_as_it_was [STATE]: the source VM as before the fault (STATE when the
# docs say otherwise: a killed cold sender leaves its stopped VM stopped).
source_as_it_was() {
	local want=${1:-$EXP_STATE} r
	r=$(R "$SRC")
	wait_for 30 state_is "$SRC" "$U" "$want"
	ce "source: state" "$want" "$(state "$SRC" "$U")"
	ce "source: autoboot" "$EXP_AUTOBOOT" "$(field "$SRC" "$U" autoboot)"
	ce "source: no migrated_to" "" "$(field "$SRC" "$U" migrated_to)"
	ce "source: data hashes" "$EXP_HASH" "$(hash_of "$MODE" "$SRC")"
	case $MODE in
	file)
		host_exec "$SRC" "$VMADM" list >/dev/null 2>&1
		ce "source: no send snapshot left" "" "$(find "$r/zones/.snapshots" -path "*$U*" -name '*vmadm-send*' 2>/dev/null)"
		;;
	cold | incr)
		[ "$want" = running ] && c "source: the workload goes on" workload_goes_on "$SRC" "$U"
		;;
	live)
		host_exec "$SRC" "$VMADM" list >/dev/null 2>&1
		ce "source: the same QEMU" "$EXP_QPID" "$(cat "$r/run/$U/qemu.pid" 2>/dev/null)"
		c "source: the workload goes on" workload_goes_on "$SRC" "$U"
		ce "source: no overlay left" "" "$(ls "$r/zones/.live" 2>/dev/null)"
		;;
	esac
}

# What a target holds of anything: records, journals, datasets, snapshots,
# temporaries, mounts, loop devices, processes. KEEP (none, kept, held)
# says which partial the docs let it keep (docs/migration-protocol.md):
# kept, the complete datasets of a cut cold transfer (journal "done"); held,
# the last pass of -I that landed. Waits for the target to settle first.
target_settled() {
	local r
	r=$(R "$DST")
	case $KEEP in
	none) [ -z "$(leftovers "$r" | not_images)" ] ;;
	*) [ "$($JSON -f "$r/recv/$U.json" phase 2>/dev/null)" = "$KEEP" ] ;;
	esac
}
temp_top() { # zones/UUID-disk0 -> UUID.recv-disk0, zones/UUID/data -> UUID.recv
	local rest=${1#zones/}
	rest=${rest%%/*}
	echo "$U.recv${rest#"$U"}"
}
target_clean() {
	local r i j want have kept snaps procs
	KEEP=${1:-none}
	r=$(R "$DST")
	wait_for $((TMO * 4)) sh -c "VMADM_ROOT=$r $VMADM list >/dev/null 2>&1; exit 0" >/dev/null
	# the next command on the target does its recovery; then it settles
	wait_for $((TMO * 4)) target_settled
	host_exec "$DST" "$VMADM" list >"$N.tlist" 2>&1
	if [ "$KEEP" = none ]; then
		ce "target: no record" "" "$(ls "$r/vms")"
		ce "target: no journal" "" "$(ls "$r/recv" 2>/dev/null)"
		ce "target: no dataset" "" "$(find "$r/zones" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null | not_images)"
		ce "target: no snapshot" "" "$(find "$r/zones/.snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | not_images)"
	else
		j=$r/recv/$U.json
		ce "target: keeps a partial ($KEEP)" "$KEEP" "$($JSON -f "$j" phase 2>/dev/null)"
		c "target: the partial expires" test "$($JSON -f "$j" expires 2>/dev/null || echo 0)" -gt "$(date +%s)"
		ce "target: only the placeholder record" "$U.json receiving" \
			"$(ls "$r/vms" | xargs) $(field "$DST" "$U" state)"
		if [ "$KEEP" = kept ]; then
			kept=$($JSON -f "$j" 'done' | $JSON -a)
		else
			kept=$($JSON -f "$j" finals | $JSON -a)
		fi
		want=$(for i in $kept; do temp_top "$i"; done | sort -u | xargs)
		have=$(find "$r/zones" -mindepth 1 -maxdepth 1 ! -name '.*' -printf '%f\n' | not_images | sort | xargs)
		ce "target: only the kept datasets ($want)" "$want" "$have"
		[ -n "${KEEP_WANT:-}" ] && ce "target: kept exactly the complete datasets" "$KEEP_WANT" "$(xargs <<<"$kept")"
		snaps=$(find "$r/zones/.snapshots" -mindepth 1 -maxdepth 1 ! -name "$U.recv*" 2>/dev/null | not_images)
		ce "target: no snapshot but the kept ones'" "" "$snaps"
	fi
	ce "target: no receive staging" "" "$(ls -A "$r/zones/.recv" 2>/dev/null)"
	ce "target: no live overlay" "" "$(ls -A "$r/zones/.live" 2>/dev/null)"
	ce "target: no mount but the pool" "$r/zones" \
		"$(cut -d' ' -f5 /proc/self/mountinfo | grep -F "$r/" | sort -u | xargs)"
	ce "target: no loop device but the pool's" "$r/pool.img" \
		"$(losetup -nO BACK-FILE 2>/dev/null | grep -F "$r/" | sort -u | xargs)"
	procs=$(pgrep -af -- "$r/" | grep -v "^$(cat "$T/.hosts/$DST.pid") ")
	ce "target: no process (QEMU, btrfs, LXC)" "" "$procs"
	ce "target: no child of vmadmd" "" "$(pgrep -P "$(cat "$T/.hosts/$DST.pid")" | xargs)"
	ce "target: the next command says nothing is wrong" "" "$(grep -v '^UUID' "$N.tlist" | grep -v "^$U .*receiving")"
}

# The re-run once the fault is gone: the VM moves, the source copy goes (the
# `&&` promise), and the next cell starts from the target.
rerun() {
	local rc r
	r=$(R "$DST")
	case $MODE in
	file)
		VMADM_ROOT=$(R "$SRC") "$VMADM" send "$U" 2>"$N.rs.err" |
			VMADM_ROOT=$r "$VMADM" receive >"$N.rr.out" 2>"$N.rr.err"
		rc="${PIPESTATUS[0]} ${PIPESTATUS[1]}"
		ce "re-run: send | receive exit 0" "0 0" "$rc"
		;;
	cold) host_exec "$SRC" "$VMADM" send "$U" "$(host_ip "$DST")" "$HOSTS_PORT" --json >"$N.rr.events" 2>"$N.rr.err" ;;
	incr) host_exec "$SRC" "$VMADM" send "$U" -I "$(host_ip "$DST")" "$HOSTS_PORT" --json >"$N.rr.events" 2>"$N.rr.err" ;;
	live) host_exec "$SRC" "$VMADM" send "$U" -L "$(host_ip "$DST")" "$HOSTS_PORT" --json >"$N.rr.events" 2>"$N.rr.err" ;;
	esac
	rc=$?
	[ "$MODE" = file ] || ce "re-run: exit 0" "0" "$rc$([ "$rc" = 0 ] || tail -n 2 "$N.rr.err" | xargs)"
	ce "re-run: the VM is on the target as it was" "$EXP_STATE $EXP_HASH" \
		"$(state "$DST" "$U") $(hash_of "$MODE" "$DST")"
	case $MODE in
	cold | incr | live) c "re-run: the workload goes on on the target" workload_goes_on "$DST" "$U" ;;
	esac
	if [ "$MODE" != file ]; then
		ce "re-run: the source copy is stopped, autoboot off, migrated_to" "stopped false $(host_ip "$DST")" \
			"$(host_exec "$SRC" "$VMADM" get "$U" | $JSON state autoboot migrated_to.host | xargs)"
		ce "re-run: autoboot restored on the target" "$EXP_AUTOBOOT" "$(field "$DST" "$U" autoboot)"
	fi
	# the next cell starts where the VM is
	[ -e "$r/vms/$U.json" ] || return 1
	c "re-run: delete the source copy" host_exec "$SRC" "$VMADM" delete "$U"
	ce "re-run: nothing left on the source" "" "$(leftovers "$(R "$SRC")" | not_images)"
	swap
}

# ---- faults, per mode ------------------------------------------------------------

# file mode: `vmadm send U` into a pipe, a middle (rate_pipe, head -c, or a
# file), `vmadm receive` out of it. SEND_PID/RECV_PID for the faults; exit
# statuses in $N.src and $N.rrc.
file_pipe() { # MIDDLE...
	rm -f "$N.p1" "$N.p2"
	mkfifo "$N.p1" "$N.p2"
	VMADM_ROOT=$(R "$SRC") env --default-signal=INT "$VMADM" send "$U" >"$N.p1" 2>"$N.serr" &
	SEND_PID=$!
	"$@" <"$N.p1" >"$N.p2" &
	MID_PID=$!
	VMADM_ROOT=$(R "$DST") "$VMADM" receive <"$N.p2" >"$N.rout" 2>"$N.rerr" &
	RECV_PID=$!
}
file_wait() {
	wait "$SEND_PID"
	echo $? >"$N.src"
	wait "$MID_PID"
	wait "$RECV_PID"
	echo $? >"$N.rrc"
}
# until the target's btrfs receive has taken some of the stream; fails the
# cell, saying so, if it never starts (the fault would then hit a finished
# transfer, and the cell's checks would mislead)
file_midway() {
	if wait_for 30 pgrep -f "btrfs receive .*$(R "$DST")/" >/dev/null; then
		sleep 1
	else
		fail "$CUR the receive got midway (no btrfs receive into $(R "$DST")/ within 30 s)"
	fi
}
sender_ok() { ce "sender: exit 0 (the file was written)" 0 "$(cat "$N.src")"; }
sender_fails() { # PATTERN (empty: killed, no message expected)
	c "sender: exits non-zero ($(cat "$N.src" 2>/dev/null))" test "$(cat "$N.src" 2>/dev/null || echo 0)" -ne 0
	[ -z "$1" ] || cg "sender: says why" -qE -- "$1" "$N.serr"
}
receiver_refuses() { # PATTERN
	c "receiver: exits non-zero" test "$(cat "$N.rrc")" -ne 0
	cg "receiver: says why" -qE -- "$1" "$N.rerr"
}

fault_file() {
	case $FAULT in
	cut) # the link: a pipe that ends half-way
		file_pipe head -c 20000000
		file_wait
		sender_fails "Broken pipe|write"
		receiver_refuses "stream truncated at byte 20000000"
		;;
	tkill) # the target: vmadm receive killed mid-stream
		file_pipe rate_pipe 8000000
		file_midway
		kill -KILL "$RECV_PID"
		file_wait
		sender_fails "Broken pipe|write"
		ce "receiver: killed" 137 "$(cat "$N.rrc")"
		;;
	skill)
		file_pipe rate_pipe 8000000
		file_midway
		kill -KILL "$SEND_PID"
		file_wait
		sender_fails ""
		receiver_refuses "stream truncated"
		;;
	full)
		fill_target
		file_pipe cat
		file_wait
		unfill_target
		sender_fails "Broken pipe|write"
		receiver_refuses "zones/$U-disk0 needs .* MiB but pool zones has .* MiB free"
		;;
	key) # no key for a file: its integrity is its checksums
		VMADM_ROOT=$(R "$SRC") "$VMADM" send "$U" >"$N.vms" 2>"$N.serr"
		echo $? >"$N.src"
		# one bit flipped in the middle of the data
		local at=$(($(stat -c %s "$N.vms") / 2)) byte
		byte=$(od -An -tu1 -j "$at" -N1 "$N.vms" | tr -d ' ')
		printf '%b' "$(printf '\\%03o' $((byte ^ 1)))" | dd of="$N.vms" bs=1 seek="$at" conv=notrunc status=none
		VMADM_ROOT=$(R "$DST") "$VMADM" receive <"$N.vms" >"$N.rout" 2>"$N.rerr"
		echo $? >"$N.rrc"
		sender_ok
		receiver_refuses "checksum mismatch in record [0-9]+ \(type DS_DATA\) at byte [0-9]+ \(inside dataset zones/$U-disk"
		;;
	uuid)
		other_vm_on_target
		VMADM_ROOT=$(R "$SRC") "$VMADM" send "$U" 2>"$N.serr" | VMADM_ROOT=$(R "$DST") "$VMADM" receive >"$N.rout" 2>"$N.rerr"
		echo "${PIPESTATUS[1]}" >"$N.rrc"
		receiver_refuses "VM $U already exists on this node \(use -f to replace it"
		other_vm_gone
		;;
	proto) # a stream of a newer format version
		VMADM_ROOT=$(R "$SRC") "$VMADM" send "$U" 2>"$N.serr" | "$STREAM" rewrite --version 2 >"$N.vms"
		echo "${PIPESTATUS[0]}" >"$N.src"
		VMADM_ROOT=$(R "$DST") "$VMADM" receive <"$N.vms" >"$N.rout" 2>"$N.rerr"
		echo $? >"$N.rrc"
		sender_ok
		receiver_refuses "stream format version 2 is newer than this vmadm reads \(up to 1\)"
		;;
	sigint)
		file_pipe rate_pipe 8000000
		file_midway
		kill -INT "$SEND_PID"
		file_wait
		sender_fails ""
		receiver_refuses "stream truncated"
		;;
	esac
	source_as_it_was
	target_clean none
	rerun
}

# The target's pool with less room than any VM here needs (at most 8 MiB
# for data, by btrfs's own estimate: statfs, which vmadm reads, may say 0
# for a while when metadata runs short, then more), and back.
pool_free() {
	btrfs filesystem usage -b "$1" 2>/dev/null | sed -n 's/^[[:space:]]*Free (estimated):[[:space:]]*\([0-9]*\).*/\1/p'
}
fill_target() {
	local z avail i
	z=$(R "$DST")/zones
	for i in 1 2 3 4 5 6; do
		sync -f "$z"
		avail=$(pool_free "$z")
		[ "${avail:-0}" -le $((8 * 1048576)) ] && break
		fallocate -l $((avail - 4 * 1048576)) "$z/.filler$i"
	done
	echo "# the target's pool: $((avail / 1048576)) MiB free for data"
}
unfill_target() {
	rm -f "$(R "$DST")"/zones/.filler*
	# btrfs frees a removed file's extents when its transaction commits
	sync -f "$(R "$DST")/zones"
}
# A VM of the target's own with the moving VM's uuid, left as it was.
other_vm_on_target() {
	echo "{\"brand\": \"joyent\", \"uuid\": \"$U\", \"alias\": \"other\"}" |
		VMADM_ROOT=$(R "$DST") "$VMADM" create >/dev/null 2>&1
	ce "the target's own VM $U made" other "$(field "$DST" "$U" alias)"
}
other_vm_gone() {
	ce "the target's own VM untouched" "other stopped" "$(field "$DST" "$U" alias) $(state "$DST" "$U")"
	c "delete the target's own VM" host_exec "$DST" "$VMADM" delete "$U"
}

# ---- network modes -------------------------------------------------------------

FLAG_cold=
FLAG_incr=-I
FLAG_live=-L
# net_send ARGS...: vmadm send of this cell's VM to DST in the background
# (SEND_PID), its --json events in $N.events, stderr in $N.serr, exit
# status in $N.src. SIGINT as a terminal's Ctrl-C would find it.
net_send() {
	local flag=FLAG_$MODE
	rm -f "$N.src" "$N.pid"
	(
		host_spawn "$SRC" env --default-signal=INT "$VMADM" send "$U" ${!flag} \
			"$(host_ip "$DST")" "$HOSTS_PORT" --json --timeout "$TMO" "$@" >"$N.events" 2>"$N.serr"
		echo "$HOST_PID" >"$N.pid"
		wait "$HOST_PID"
		echo $? >"$N.src"
	) &
	wait_for 5 test -s "$N.pid"
	SEND_PID=$(cat "$N.pid")
}
net_wait() { # SECS
	wait_for "$1" test -s "$N.src"
	[ -s "$N.src" ] || echo running >"$N.src"
}
# net_midway: until the transfer is where a fault hurts most: cold, inside
# the second dataset (the first is complete on the target); -I, in pass 2;
# -L, in the RAM phase. Fails if it never got there.
net_midway() {
	case $MODE in
	cold) wait_for 60 grep -q "\"dataset\":\"zones/$U/data\"" "$N.events" && sleep 1 ;;
	incr) wait_for 90 grep -q '"pass":1' "$N.events" && sleep 1 ;;
	live) wait_for 90 grep -q '"phase":"ram"' "$N.events" ;;
	esac
}
# The bandwidth that makes each mode's transfer last long enough to be hit.
midway_rate() {
	case $MODE in cold) echo 8M ;; incr) echo 4M ;; live) echo 8M ;; esac
}
kill_sender() { kill -"$1" "$SEND_PID"; }
# net_midway_fault CMD...: start the send, run CMD midway.
net_midway_fault() {
	net_send --bwlimit "$(midway_rate)"
	if net_midway; then
		"$@"
	else
		fail "$CUR the transfer got midway: $(tail -n 2 "$N.serr" | xargs)"
	fi
	net_wait $((TMO * 4 + 30))
}
# What the docs let the target keep after a cut in the middle (KEEP), and
# the state the source VM is left in.
midway_keep() {
	case $MODE in cold) echo kept ;; incr) echo held ;; live) echo none ;; esac
}
hello2='{"type":"hello","protocol":2,"node":"future","version":"9.0","encodings":["tar","blocks"],"compression":["zstd"]}'

fault_net() {
	local keep=none want_state='' flag=FLAG_$MODE
	KEEP_WANT=
	case $FAULT in
	cut)
		net_midway_fault link_down "$SRC"
		link_up "$SRC"
		link_up "$DST"
		sender_fails "no progress|closed|timed out|connection|peer|network"
		c "target: logs the failure" wait_for $((TMO * 4)) dst_log "migration of VM $U from .* failed"
		keep=$(midway_keep)
		[ "$MODE" = cold ] && KEEP_WANT="zones/$U"
		;;
	tkill)
		net_midway_fault host_vmadmd_kill "$DST"
		sender_fails "closed|reset|Broken pipe|connection|peer|EOF|end of"
		keep=none
		[ "$MODE" = incr ] && keep=held
		;;
	skill)
		net_midway_fault kill_sender KILL
		ce "sender: killed" 137 "$(cat "$N.src")"
		c "target: logs the failure" wait_for $((TMO * 4)) dst_log "migration of VM $U from .* failed"
		keep=$(midway_keep)
		[ "$MODE" = cold ] && KEEP_WANT="zones/$U"
		# docs: a killed cold sender cannot restart its VM; the re-run
		# starts it on the target
		[ "$MODE" = cold ] && want_state=stopped
		;;
	full)
		fill_target
		net_send
		net_wait 60
		unfill_target
		sender_fails "VM $U needs .* but pool zones on this node has .* free"
		c "target: logs the refusal" dst_log "refused: VM $U needs"
		;;
	key)
		cp "$(R "$SRC")/vmadm.key" "$N.key"
		host_exec "$SRC" "$VMADM" key generate -f >/dev/null 2>&1
		net_send
		net_wait 60
		install -m 0600 "$N.key" "$(R "$SRC")/vmadm.key"
		sender_fails "the peer has a different key \(compare \`vmadm key show\` on both nodes\)"
		c "target: logs the wrong key" wait_for 5 dst_log "different key"
		;;
	uuid)
		other_vm_on_target
		net_send
		net_wait 60
		sender_fails "VM $U already exists on this node"
		other_vm_gone
		;;
	proto)
		# A target that answers with protocol 2 (vmadm-peer plays it, on
		# the target host, another port).
		host_exec "$DST" "$PEER" -l -t "$TMO" "$(host_ip "$DST"):9778" recv "send:$hello2" drain \
			>"$N.peer.out" 2>"$N.peer.err" &
		local ppid=$!
		wait_for 5 grep -q listening "$N.peer.err"
		host_exec "$SRC" "$VMADM" send "$U" ${!flag} "$(host_ip "$DST")" 9778 --timeout "$TMO" \
			>/dev/null 2>"$N.serr"
		echo $? >"$N.src"
		wait "$ppid"
		sender_fails "$(host_ip "$DST") speaks migration protocol 2, this vmadm 1"
		cg "the fake target got a hello of protocol 1" -q '"protocol":1' "$N.peer.out"
		# A source that says protocol 2 to the real target, then asks
		# for the VM anyway.
		local begin
		begin=$(host_exec "$SRC" "$VMADM" get "$U" | /usr/bin/python3 -c '
import json, sys
vm = json.load(sys.stdin)
for k in ("pid", "transition", "boot_timestamp"):
    vm.pop(k, None)
print(json.dumps({"type": "begin", "mode": sys.argv[1], "uuid": vm["uuid"], "config": vm,
                  "estimate": {}, "total": 1, "encoding": "portable", "compression": "none",
                  "instant": "x@y"}))' "$([ "$MODE" = incr ] && echo incremental || echo "$MODE")")
		host_exec "$SRC" "$PEER" -t "$TMO" "$(host_ip "$DST"):$HOSTS_PORT" "send:$hello2" recv "send:$begin" recv \
			>"$N.peer2.out" 2>"$N.peer2.err"
		ce "the target answers a protocol-2 hello with an error, not a hello" "" "$(cat "$N.peer2.out")"
		cg "the error names both protocols" -q "vmadm-peer: recv: .* speaks migration protocol 2, this vmadmd 1" "$N.peer2.err"
		c "target: logs it" wait_for 5 dst_log "protocol 2"
		;;
	sigint)
		net_midway_fault kill_sender INT
		sender_fails "cancel"
		c "target: logs the failure" wait_for $((TMO * 4)) dst_log "migration of VM $U from .* failed"
		keep=$(midway_keep)
		[ "$MODE" = cold ] && KEEP_WANT="zones/$U"
		;;
	esac
	[ "$FAULT" = tkill ] || ce "target: vmadmd lives on" "$DST_VMADMD" "$(pgrep -xf "$VMADMD -f -l $(host_ip "$DST"):$HOSTS_PORT" | grep -x "$DST_VMADMD")"
	source_as_it_was $want_state
	target_clean "$keep"
	if [ "$FAULT" = tkill ]; then
		c "restart the target's vmadmd" host_vmadmd_start "$DST"
	fi
	rerun
}

# ---- run -----------------------------------------------------------------------

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "imgadm install joyent-test on a" host_exec a "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"

run_mode() {
	local f
	case $RUN_MODES in *" $1 "*) ;; *) return 1 ;; esac
	for f in "${FAULTS[@]}"; do
		[[ $RUN_FAULTS == *" $f "* ]] || continue
		cell_begin "$1" "$f"
		if [ "$1" = file ]; then fault_file; else fault_net; fi
		cell_end
	done
}

# file: a stopped kvm VM, 36 MB of data on two disks
if [[ $RUN_MODES == *" file "* ]]; then
	check "create the file-mode VM on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$FU\", \"ram\": 128,
	  \"disks\": [{\"size\": 64, \"boot\": true}, {\"size\": 32}]}' | VMADM_ROOT=$T/a $VMADM create"
	head -c 24000000 /dev/urandom | dd of="$T/a/zones/$FU-disk0/disk.raw" bs=1M seek=4 conv=notrunc status=none
	head -c 12000000 /dev/urandom | dd of="$T/a/zones/$FU-disk1/disk.raw" bs=1M seek=4 conv=notrunc status=none
	run_mode file
	check "delete the file-mode VM" host_exec "$SRC" "$VMADM" delete "$FU"
fi

# gap_free UUID: after all the moves, not one record of the workload lost
gap_free() {
	host_exec "$SRC" "$VMADM" stop "$1" >/dev/null 2>&1
	"$BUILD/tools/vmadm-workload-check" --json $(wl_where "$SRC" "$1") >"$T/$1.wl"
	check_eq "$2: the workload's sequence is gap-free across every fault and move" "true 0" \
		"$($JSON -f "$T/$1.wl" -a ok gaps)"
}
# cold: a running joyent VM; its delegated dataset (sent second) holds most
# of its data, so that a cut inside it leaves the first complete
SRC=a DST=b
if [[ $RUN_MODES == *" cold "* ]]; then
	check "create the cold-mode VM on a" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$CU\", \"alias\": \"cold\",
	  \"image_uuid\": \"$OS_IMAGE\", \"delegate_dataset\": true, \"autoboot\": true}' | VMADM_ROOT=$T/a $VMADM create"
	head -c 2000000 /dev/urandom >"$T/a/zones/$CU/root/blob"
	head -c 40000000 /dev/urandom >"$T/a/zones/$CU/data/blob"
	check "start the cold-mode VM" host_exec a "$VMADM" start "$CU"
	check "the cold-mode VM's workload runs" wl_wait_records 5 30 "$T/a/zones/$CU/data/workload.rec"
	run_mode cold && gap_free "$CU" "cold"
	check "delete the cold-mode VM" host_exec "$SRC" "$VMADM" delete "$CU"
fi

# -I and -L: running kvm VMs whose guest writes 256 KiB of records and
# scratch data every 100 ms. (Not RAM as well for -L: QEMU 7.2 under TCG
# corrupts a guest that dirties RAM fast during a slow precopy, vmadm or
# not; docs/fault-matrix.md. live-faults.sh and live.sh dirty RAM.)
kvm_vm() { # UUID ALIAS WORKLOAD_CONF
	check "create the $2 VM on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$1\", \"alias\": \"$2\", \"ram\": 128,
	  \"autoboot\": true, \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 32}]}' |
	  VMADM_ROOT=$T/a $VMADM create"
	wl_set_conf "$T/a/zones/$1-disk0/disk.raw" "$3"
	head -c 4000000 /dev/urandom | dd of="$T/a/zones/$1-disk1/disk.raw" bs=1M seek=1 conv=notrunc status=none
	check "start the $2 VM" host_exec a "$VMADM" start "$1"
	check "the $2 VM's workload runs" wl_wait_records 10 90 --offset "$OFFSET" "$T/a/zones/$1-disk0/disk.raw"
}
SRC=a DST=b
if [[ $RUN_MODES == *" incr "* ]]; then
	kvm_vm "$IU" "-I" "burst=256k"
	run_mode incr && gap_free "$IU" "-I"
	check "delete the -I VM" host_exec "$SRC" "$VMADM" delete "$IU"
fi

SRC=a DST=b
if [[ $RUN_MODES == *" live "* ]]; then
	kvm_vm "$LU" "-L" "rate_ms=100 burst=256k"
	run_mode live && gap_free "$LU" "-L"
	check "delete the -L VM" host_exec "$SRC" "$VMADM" delete "$LU"
fi

# and the nodes are as new
for h in a b; do
	check_eq "host $h: nothing left" "" "$(leftovers "$(R $h)" | not_images)"
	check "host $h: create and delete a VM" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$CU\"}' |
	  VMADM_ROOT=$(R $h) $VMADM create && VMADM_ROOT=$(R $h) $VMADM delete $CU"
done

print_matrix() {
	local m f w=4
	for m in "${MODES[@]}"; do for f in "${FAULTS[@]}"; do
		local v=${CELL[$m/$f]:-not run}
		[ ${#v} -gt $w ] && w=${#v}
	done; done
	printf '| %-18s |' "fault \\ mode"
	for m in "${MODES[@]}"; do printf " %-${w}s |" "${MODE_LABEL[$m]}"; done
	echo
	printf '| %-18s |' "------------------"
	for m in "${MODES[@]}"; do printf " %-${w}s |" "$(printf '%*s' $w '' | tr ' ' -)"; done
	echo
	for f in "${FAULTS[@]}"; do
		printf '| %-18s |' "${FAULT_LABEL[$f]}"
		for m in "${MODES[@]}"; do printf " %-${w}s |" "${CELL[$m/$f]:-not run}"; done
		echo
	done
}
echo "# the fault matrix (cell seconds: $(for m in "${MODES[@]}"; do for f in "${FAULTS[@]}"; do printf '%s ' "${CELLT[$m/$f]:--}"; done; done))"
print_matrix
t_done

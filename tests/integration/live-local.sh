#!/usr/bin/env bash
# Live migration, the QEMU side (brand/kvm-live*.c) without vmadmd: two node
# roots on this machine, the QEMUs in two network namespaces joined by a
# veth pair, a kvm VM (TCG) with two disks running the workload (a record
# every 100 ms on disk0). The disk snapshots are "sent" by copying them
# into the target's volumes (the transport is not tested here).
#
# Faults first (a target with another key, the link cut in the disk phase
# and in the RAM phase, the target killed): each leaves the source guest
# running with its workload going on, nothing of ours left in the source
# QEMU, and the target clean. Then the migration that succeeds: no gap in
# the records, one boot, one run, the largest guest-time gap reported and
# under 2 s, the disks byte-identical to what the guest wrote.
. "$(dirname "$0")/../lib/common.sh"

LOPS=${LIVE_OPS_BIN:-$BUILD/tests/integration/live-ops}
CHECK=$BUILD/tools/vmadm-workload-check
for bin in "$LOPS" "$VMADM" "$IMGADM" "$CHECK"; do
	if [ ! -x "$bin" ]; then
		fail "not built: $bin"
		exit 1
	fi
done
if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
IMAGES=$BUILD/images
IMG=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OFFSET=33554432
U=3d5e7f90-1a2b-4c3d-8e4f-5a6b7c8d9e0f

A=$(node_make a btrfs 1073741824)
B=$(node_make b btrfs 1073741824)
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$KEY" >"$A/vmadm.key"
echo "$KEY" >"$B/vmadm.key"
chmod 600 "$A/vmadm.key" "$B/vmadm.key"

# --- Two hosts: namespaces and a veth pair -------------------------------
NSA=vmadm-live-a-$$
NSB=vmadm-live-b-$$
VA=vla$$
VB=vlb$$
NET=10.99.$((RANDOM % 200 + 20))
HA=$NET.1
HB=$NET.2
ip netns add "$NSA" && T_NETNS+=("$NSA")
ip netns add "$NSB" && T_NETNS+=("$NSB")
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$NSA"
ip link set "$VB" netns "$NSB"
ina() { nsenter --net=/run/netns/"$NSA" -- "$@"; }
inb() { nsenter --net=/run/netns/"$NSB" -- "$@"; }
ina ip addr add "$HA/24" dev "$VA"
inb ip addr add "$HB/24" dev "$VB"
for l in lo "$VA"; do ina ip link set "$l" up; done
for l in lo "$VB"; do inb ip link set "$l" up; done
check "hosts reach each other over the veth" ina busybox ping -c 1 -W 2 "$HB"

# qmp ROOT COMMAND [ARGS_JSON]: one QMP command to the VM, prints its return.
qmp() {
	python3 - "$1/run/$U/qmp.sock" "$2" "${3:-}" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
cmds = [("qmp_capabilities", None), (sys.argv[2], json.loads(sys.argv[3]) if sys.argv[3] else None)]
for cmd, args in cmds:
    msg = {"execute": cmd}
    if args is not None:
        msg["arguments"] = args
    f.write(json.dumps(msg) + "\n")
    f.flush()
    while "return" not in (r := json.loads(f.readline())) and "error" not in r:
        pass
    if "error" in r:
        sys.exit(r["error"]["desc"])
print(json.dumps(r["return"]))
EOF
}
jget() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[k]
print(v)' "$@"; }

# last_seq ROOT: the workload's last record on the VM's disk0 (0 if none).
last_seq() {
	"$CHECK" --json --offset "$OFFSET" "$1/zones/$U-disk0/disk.raw" 2>/dev/null |
		jget last_seq 2>/dev/null || echo 0
}
wait_records() { # ROOT MIN TIMEOUT_S
	local deadline=$((SECONDS + $3))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(last_seq "$1")" -ge "$2" ] && return 0
		sleep 0.5
	done
	return 1
}

MPID=

# --- The VM, the same record on both nodes --------------------------------
for n in "$A" "$B"; do
	on "$n" "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img" >/dev/null 2>&1
	echo "{\"brand\": \"kvm\", \"uuid\": \"$U\", \"alias\": \"live\", \"ram\": 128,
	  \"disks\": [{\"image_uuid\": \"$IMG\", \"boot\": true}, {\"size\": 64}]}" |
		on "$n" "$VMADM" create >"$T/create.out" 2>&1 ||
		fail "create the VM on $n: $(cat "$T/create.out")"
done
# disk1 holds data the guest never touches; it must arrive as it is.
head -c 3000000 /dev/urandom | dd of="$A/zones/$U-disk1/disk.raw" bs=1M seek=7 conv=notrunc status=none
echo "end of disk1" | dd of="$A/zones/$U-disk1/disk.raw" bs=1 seek=$((64 * 1048576 - 13)) conv=notrunc status=none
check "start the VM on host a" ina env VMADM_ROOT="$A" "$VMADM" start "$U"
check "workload writes records on the source" wait_records "$A" 10 90

# attempt N [source-migrate options]: begin (snapshots + bitmaps), "send"
# the snapshots (copy them into the target's volumes), prepare the target,
# migrate in the background; sets MPID, writes $T/mig.N.{out,err}.
attempt() {
	local n=$1 d
	shift
	ina "$LOPS" "$A" source-begin "$U" "live$n" >"$T/begin.$n" 2>&1 ||
		fail "attempt $n: source-begin: $(cat "$T/begin.$n")"
	for d in disk0 disk1; do
		cp --sparse=always "$A/zones/.snapshots/$U-$d/@live$n/disk.raw" "$B/zones/$U-$d/disk.raw" ||
			fail "attempt $n: copy snapshot of $d"
	done
	if ! inb "$LOPS" "$B" target-prepare "$U" "$HB" >"$T/info.$n" 2>"$T/prep.$n"; then
		fail "attempt $n: target-prepare: $(cat "$T/prep.$n")"
		ina "$LOPS" "$A" source-cancel "$U"
		MPID=
		return 1
	fi
	(
		ina "$LOPS" "$A" source-migrate "$U" "$T/info.$n" "$@" >"$T/mig.$n.out" 2>"$T/mig.$n.err"
		rc=$?
		# As the transport does: the target resumes as soon as the
		# source completed.
		if [ "$rc" = 0 ] && [ -n "${FINISH:-}" ]; then
			"$LOPS" "$B" target-finish "$U" >"$T/finish.$n" 2>&1 || rc=2
		fi
		echo $rc >"$T/mig.$n.rc"
	) &
	MPID=$!
	MN=$n
	T_PIDS+=("$MPID")
}

# wait_progress N PATTERN TIMEOUT_S: until the migration's progress matches.
wait_progress() {
	local deadline=$((SECONDS + $3))
	while [ $SECONDS -lt $deadline ]; do
		grep -qE "$2" "$T/mig.$1.err" 2>/dev/null && return 0
		kill -0 "${MPID:-0}" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# source_intact LABEL: the source guest runs, its workload goes on, and
# nothing of the migration is left in its QEMU or run directory.
source_intact() {
	local l=$1 s1 s2
	check_eq "$l: source guest status" running "$(qmp "$A" query-status | jget status 2>&1)"
	s1=$(last_seq "$A")
	sleep 1.5
	s2=$(last_seq "$A")
	check "$l: source workload goes on (seq $s1 -> $s2)" test "$s2" -gt "$s1"
	local nodes jobs
	nodes=$(qmp "$A" query-named-block-nodes '{"flat": true}')
	check_eq "$l: no nbd node left on the source" 0 "$(echo "$nodes" | grep -c vmadm-live-nbd)"
	check_eq "$l: no overlay node left on the source" 0 "$(echo "$nodes" | grep -c vmadm-live-ovl)"
	check "$l: no overlay left on the source (zones/.live gone)" test ! -e "$A/zones/.live"
	check_eq "$l: the guest writes its own images again" "disk0 disk1" \
		"$(qmp "$A" query-block | python3 -c 'import json,sys; print(" ".join(sorted(b["inserted"]["node-name"] for b in json.load(sys.stdin) if b.get("inserted"))))')"
	jobs=$(qmp "$A" query-block-jobs)
	check_eq "$l: no block job left on the source" "[]" "$jobs"
	check "$l: no key copy left in the source run dir" test ! -e "$A/run/$U/tls"
	check_eq "$l: source migration not active" "" \
		"$(qmp "$A" query-migrate | jget status 2>/dev/null | grep -E 'active|setup|pre-switchover|cancelling')"
}

# target_clean LABEL: abort the target (the transport's job) and check
# that no QEMU and no run directory are left there.
target_clean() {
	local l=$1 pid
	pid=$(cat "$B/run/$U/qemu.pid" 2>/dev/null)
	check "$l: target-abort" "$LOPS" "$B" target-abort "$U"
	check "$l: target run dir gone" test ! -e "$B/run/$U"
	if [ -n "$pid" ]; then
		# (a zombie waiting for its reaper counts as gone: no cmdline)
		check "$l: target QEMU (pid $pid) gone" \
			sh -c "test -z \"\$(tr -d '\\0' </proc/$pid/cmdline 2>/dev/null)\""
	fi
}

# mig_result N SECONDS: wait for the background migration, print its rc.
mig_result() {
	local deadline=$((SECONDS + $2))
	[ -n "$MPID" ] || return
	while kill -0 "$MPID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
	if kill -0 "$MPID" 2>/dev/null; then
		echo "still running after $2 s: $(tail -n 3 "$T/mig.$MN.err" | cut -c1-300)"
		return
	fi
	cat "$T/mig.$MN.rc"
}

# --- Fault 1: a target with another key ------------------------------------
echo "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$B/vmadm.key"
attempt 1 --stall 5000 --timeout 30000
check_eq "wrong key: migration fails" 1 "$(mig_result 1 40)"
check "wrong key: the error is the TLS handshake and names the key" \
	grep -q "live migration of $U failed (the VM runs on here): connect to the target's disk export disk0 (do both nodes have the same key, vmadm.key?): .*TLS handshake failed" "$T/mig.1.err"
echo "# wrong key: $(grep '^live-ops:' "$T/mig.1.err" | head -c 300)"
source_intact "wrong key"
target_clean "wrong key"
echo "$KEY" >"$B/vmadm.key"

# --- Fault 2: the link cut in the disk phase -------------------------------
# A full mirror at 1 MiB/s keeps the disk phase going for a minute.
attempt 2 --full --disk-speed 1048576 --stall 3000 --timeout 60000
if wait_progress 2 'phase=disk .*disk_copied=[1-9]' 20; then
	ina ip link set "$VA" down
	ok "link cut in the disk phase"
else
	fail "link cut in the disk phase: no disk progress: $(tail -n 2 "$T/mig.2.err")"
fi
check_eq "link cut (disk): migration fails" 1 "$(mig_result 2 40)"
check "link cut (disk): the error names the stall in the disk phase" \
	grep -q "no progress for .* in the disk phase" "$T/mig.2.err"
echo "# link cut (disk): $(grep '^live-ops:' "$T/mig.2.err" | head -c 300)"
ina ip link set "$VA" up
source_intact "link cut (disk)"
target_clean "link cut (disk)"

# --- Fault 3: the link cut in the RAM phase --------------------------------
attempt 3 --bandwidth 1048576 --stall 3000 --timeout 60000
if wait_progress 3 'phase=ram .*ram_transferred=[1-9]' 30; then
	ina ip link set "$VA" down
	ok "link cut in the RAM phase"
else
	fail "link cut in the RAM phase: no RAM progress: $(tail -n 2 "$T/mig.3.err")"
fi
check_eq "link cut (RAM): migration fails" 1 "$(mig_result 3 40)"
echo "# link cut (RAM): $(grep '^live-ops:' "$T/mig.3.err" | head -c 300)"
ina ip link set "$VA" up
source_intact "link cut (RAM)"
target_clean "link cut (RAM)"

# --- Fault 4: the target QEMU killed mid-migration --------------------------
attempt 4 --bandwidth 1048576 --stall 3000 --timeout 60000
if wait_progress 4 'phase=ram .*ram_transferred=[1-9]' 30; then
	kill -KILL "$(cat "$B/run/$U/qemu.pid")"
	ok "target QEMU killed in the RAM phase"
else
	fail "target killed: no RAM progress: $(tail -n 2 "$T/mig.4.err")"
fi
check_eq "target killed: migration fails" 1 "$(mig_result 4 40)"
echo "# target killed: $(grep '^live-ops:' "$T/mig.4.err" | head -c 300)"
source_intact "target killed"
target_clean "target killed"

# --- Fault 5: no convergence within the timeout -----------------------------
attempt 5 --bandwidth 1048576 --stall 5000 --timeout 5000
check_eq "no convergence: migration fails" 1 "$(mig_result 5 30)"
check "no convergence: the error says why (remaining, dirty rate, throughput, limit)" \
	grep -q "did not converge within 5000 ms: .* bytes of RAM remaining, dirty rate .* pages/s, throughput .* downtime limit 300 ms (may rise to 3000)" "$T/mig.5.err"
echo "# no convergence: $(grep '^live-ops:' "$T/mig.5.err" | head -c 300)"
source_intact "no convergence"
target_clean "no convergence"

# --- Ctrl-C in the RAM phase --------------------------------------------------
attempt 6 --bandwidth 1048576 --stall 5000 --timeout 60000
if wait_progress 6 'phase=ram .*ram_transferred=[1-9]' 30; then
	for p in $(pgrep -P "$MPID"); do kill -INT "$p"; done
	ok "SIGINT to source-migrate in the RAM phase"
else
	fail "Ctrl-C: no RAM progress: $(tail -n 2 "$T/mig.6.err")"
fi
check_eq "Ctrl-C: migration fails" 1 "$(mig_result 6 30)"
check_grep "Ctrl-C: the error says cancelled" -q "failed (the VM runs on here): cancelled in the ram phase" "$T/mig.6.err"
source_intact "Ctrl-C"
target_clean "Ctrl-C"

# --- The migrating process killed: source-cancel recovers ---------------------
attempt 7 --bandwidth 1048576 --stall 5000 --timeout 60000
if wait_progress 7 'phase=ram .*ram_transferred=[1-9]' 30; then
	for p in $(pgrep -P "$MPID"); do kill -KILL "$p"; done
	ok "SIGKILL to source-migrate in the RAM phase"
else
	fail "killed: no RAM progress: $(tail -n 2 "$T/mig.7.err")"
fi
mig_result 7 10 >/dev/null
check "source-cancel after the migrating process died" "$LOPS" "$A" source-cancel "$U"
source_intact "source-cancel after a kill"
target_clean "source-cancel after a kill"

# --- The send of the snapshots failed: cancel after begin -------------------
check "begin, then cancel (as after a failed send)" sh -c \
	"$LOPS $A source-begin $U live17 && $LOPS $A source-cancel $U"
check "cancel keeps the snapshot (a base for an incremental send)" \
	test -f "$A/zones/.snapshots/$U-disk0/@live17/disk.raw"
source_intact "cancel after begin"
check_fails "begin twice is refused while an overlay is in place" "already runs on an overlay" \
	sh -c "$LOPS $A source-begin $U live18 && $LOPS $A source-begin $U live19"
check "cancel that" "$LOPS" "$A" source-cancel "$U"
source_intact "cancel after a refused begin"

# --- joyent VMs do not migrate live ------------------------------------------
JU=4c5d6e7f-1a2b-4c3d-8e4f-5a6b7c8d9e0f
on "$A" "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz" >/dev/null 2>&1
echo "{\"brand\": \"joyent\", \"uuid\": \"$JU\", \"image_uuid\": \"c98299bc-510a-5eea-b958-3452684885a0\"}" |
	on "$A" "$VMADM" create >/dev/null 2>&1
check_fails "live migration of a joyent VM is refused" "live migration is for kvm VMs only" \
	"$LOPS" "$A" source-begin "$JU" snap

# --- The migration that succeeds --------------------------------------------
before=$(last_seq "$A")
FINISH=1 attempt 9 --downtime-limit 300 --stall 10000 --timeout 90000
check_eq "live migration completes and the target resumes" 0 "$(mig_result 9 120)"
[ "$(cat "$T/mig.9.rc" 2>/dev/null)" = 2 ] && echo "# target-finish: $(cat "$T/finish.9")"
echo "# report: $(cat "$T/mig.9.out")"
grep '^live-ops:' "$T/mig.9.err" | sed 's/^/# /'
check_grep "progress: disk phase reported" -q '^progress phase=disk' "$T/mig.9.err"
check_grep "progress: RAM phase reported with transferred bytes" -q '^progress phase=ram .*ram_transferred=[1-9]' "$T/mig.9.err"
copied=$(jget disk_copied <"$T/mig.9.out" 2>/dev/null || echo -1)
check "only the delta since the snapshot was mirrored ($copied bytes < 8 MiB)" \
	test "$copied" -ge 0 -a "$copied" -lt 8388608
# The pause the guest lived through, on the host clock: from the source's
# STOP to the target's RESUME (the guest's own clocks stop while it is
# paused under TCG, so the records cannot show it).
stopped=$(jget stopped_us <"$T/mig.9.out" 2>/dev/null || echo 0)
resumed=$(jget resumed_us <"$T/finish.9" 2>/dev/null || echo 0)
pause_ms=$(((resumed - stopped) / 1000))
echo "# guest paused (source STOP -> target RESUME, host clock): $pause_ms ms; QEMU downtime $(jget downtime_ms <"$T/mig.9.out" 2>/dev/null) ms"
check "STOP and RESUME seen" test "$stopped" -gt 0 -a "$resumed" -gt 0
check "guest paused $pause_ms ms (host clock) < 2000 ms" test "$pause_ms" -ge 0 -a "$pause_ms" -lt 2000
check "source QEMU is gone" test ! -e "$A/run/$U"
check "source overlays folded into the images and removed" test ! -e "$A/zones/.live"
check "no key copy left in the target run dir" test ! -e "$B/run/$U/tls"
check_eq "source VM is stopped" stopped "$(on "$A" "$VMADM" get "$U" | $JSON state)"
check_eq "target guest status" running "$(qmp "$B" query-status | jget status 2>&1)"
lastA=$(last_seq "$A")
check "source recorded until the switchover (seq $before -> $lastA)" test "$lastA" -gt "$before"
check "workload goes on on the target" wait_records "$B" $((lastA + 15)) 30
check "stop the VM on host b" on "$B" "$VMADM" stop "$U"

"$CHECK" --json --offset "$OFFSET" "$B/zones/$U-disk0/disk.raw" >"$T/check.json"
echo "# checker on the target: $(cat "$T/check.json")"
check_eq "target disk0: checker finds no gap" 0 "$(jget gaps <"$T/check.json")"
check_eq "target disk0: no corrupt slot" 0 "$(jget corrupt <"$T/check.json")"
check_eq "target disk0: no duplicate" 0 "$(jget duplicates <"$T/check.json")"
check_eq "target disk0: records from seq 1" 1 "$(jget first_seq <"$T/check.json")"
check_eq "guest never rebooted (one boot id)" 1 "$(jget boots <"$T/check.json")"
check_eq "workload never restarted (one run id)" 1 "$(jget runs <"$T/check.json")"
gap=$(jget max_gap_ms_same_boot <"$T/check.json")
echo "# largest gap in guest time: $gap ms (after seq $(jget max_gap_same_boot_after <"$T/check.json"); switchover after seq ~$lastA)"
check "largest guest-time gap $gap ms < 2000 ms" python3 -c "import sys; sys.exit(not $gap < 2000)"
# disk0: everything the guest wrote up to the switchover (the boot
# partition, the config sector and records 1..lastA) is byte-identical.
upto=$((OFFSET + 512 * (lastA + 1)))
check "target disk0 byte-identical to the source's up to record $lastA" \
	cmp -n "$upto" "$A/zones/$U-disk0/disk.raw" "$B/zones/$U-disk0/disk.raw"
lastB=$(jget last_seq <"$T/check.json")
tailfrom=$((OFFSET + 512 * (lastB + 1)))
check "target disk0 identical after the records" \
	cmp -i "$tailfrom" "$A/zones/$U-disk0/disk.raw" "$B/zones/$U-disk0/disk.raw"
check_eq "target disk1 byte-identical" "$(sha256sum <"$A/zones/$U-disk1/disk.raw")" \
	"$(sha256sum <"$B/zones/$U-disk1/disk.raw")"
t_done

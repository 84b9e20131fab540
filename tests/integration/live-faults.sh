#!/usr/bin/env bash
# vmadm send -L when things go wrong, between two hosts (namespaces with
# vmadmd): the link cut while the disks are mirrored, the link cut during
# the RAM precopy, the target's vmadmd and QEMU killed mid-migration. Each
# fails, leaves the source guest running with its workload going on (its
# records keep growing, nothing of the migration left in its QEMU), and the
# target without a QEMU, record or dataset of the VM; so do no convergence
# within --live-timeout and a SIGINT to vmadm send. A -L of a joyent VM
# is refused before anything is sent. The guest writes 256 KiB of scratch
# data and dirties 2 MiB of memory every 100 ms, and --bwlimit (which caps
# the snapshot stream, the mirrors and the RAM stream) keeps each phase
# long enough to be hit.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
U=6b7c8d9e-2f3a-4b4c-9d5e-6f7a8b9c0d12
JU=7c8d9e0f-3a4b-4c5d-8e6f-7a8b9c0d1e23
OFFSET=33554432
# Both vmadmds and the sends give up on a silent peer after 5 s.
export VMADM_NET_TIMEOUT=5

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi
if ! hosts_make 2 2147483648 2>"$T/hosts.err"; then
	fail "hosts_make 2: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
A=$(host_root a)
B=$(host_root b)
IPB=$(host_ip b)
DISK0=$A/zones/$U-disk0/disk.raw

check "imgadm install kvm-test on a" host_exec a "$IMGADM" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
check "create kvm VM on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$U\", \"alias\": \"lf\", \"ram\": 128,
  \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\", \"boot\": true}, {\"size\": 64}]}' |
  VMADM_ROOT=$A $VMADM create"
wl_set_conf "$DISK0" 'rate_ms=100 burst=256k mem=2M'
check "start the VM on a" host_exec a "$VMADM" start "$U"
check "workload writes records on a" wl_wait_records 10 90 --offset "$OFFSET" "$DISK0"
qpid=$(cat "$A/run/$U/qemu.pid")
# The second QMP monitor takes out-of-band commands (the rollback's yank
# goes there first: it is heard even while QEMU's main loop hangs on a
# dead NBD connection at the switchover).
check "the out-of-band QMP monitor answers exec-oob yank" python3 -c '
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
g = json.loads(f.readline())
assert "oob" in g["QMP"]["capabilities"], g
for m in ({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}},
          {"exec-oob": "yank", "arguments": {"instances": []}, "id": "y"}):
    f.write(json.dumps(m) + "\n")
    f.flush()
    r = json.loads(f.readline())
    assert r.get("return") == {}, r
' "$A/run/$U/qmp-oob.sock"

# live NAME ARGS...: start `vmadm send -L` in the background (SEND_PID);
# its exit status goes to $T/NAME.rc.
live() {
	local n=$1
	shift
	SEND_NAME=$n
	(
		host_exec a "$VMADM" send "$U" -L "$IPB" "$HOSTS_PORT" --json --timeout 5 "$@" \
			>"$T/$n.json" 2>"$T/$n.err"
		echo $? >"$T/$n.rc"
	) &
	SEND_PID=$!
	T_PIDS+=("$SEND_PID")
}
# wait_phase NAME PHASE SECS: until a progress event of that phase came.
wait_phase() {
	local deadline=$((SECONDS + $3))
	while [ $SECONDS -lt $deadline ]; do
		grep -q "\"phase\":\"$2\"" "$T/$1.json" 2>/dev/null && return 0
		kill -0 "$SEND_PID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
# send_rc SECS: wait for the send, print its exit status ("running" if it
# did not end).
send_rc() {
	local deadline=$((SECONDS + $1))
	while kill -0 "$SEND_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
	if kill -0 "$SEND_PID" 2>/dev/null; then
		echo running
		return
	fi
	cat "$T/$SEND_NAME.rc"
}
# source_intact LABEL: the guest runs on a with the same QEMU, its workload
# goes on, and no overlay is left.
source_intact() {
	local l=$1 s1 s2
	check_eq "$l: VM still running on a" running "$(on "$A" "$VMADM" get "$U" | $JSON state)"
	check_eq "$l: the same QEMU (never restarted)" "$qpid" "$(cat "$A/run/$U/qemu.pid" 2>/dev/null)"
	check "$l: no migrated_to on a" sh -c "! VMADM_ROOT=$A $VMADM get $U | grep -q migrated_to"
	s1=$(wl_records --offset "$OFFSET" "$DISK0")
	sleep 1.5
	s2=$(wl_records --offset "$OFFSET" "$DISK0")
	check "$l: workload goes on on a ($s1 -> $s2 records)" test "$s2" -gt "$s1"
	check "$l: no overlay left on a" test ! -e "$A/zones/.live"
}
# target_clean LABEL: nothing of the VM on b (its vmadmd gives up on the
# dead connection within its 5 s timeout).
target_clean() {
	local l=$1 i
	for i in $(seq 1 60); do
		[ ! -e "$B/vms/$U.json" ] && { [ "$l" = "target killed" ] || [ ! -e "$B/run/$U" ]; } && ! ls "$B/zones" | grep -q "$U" && break
		sleep 0.5
	done
	check "$l: no record of the VM on b" test ! -e "$B/vms/$U.json"
	[ "$l" = "target killed" ] ||
		check "$l: no run dir on b" test ! -e "$B/run/$U"
	check_eq "$l: no dataset of the VM on b" "" "$(ls "$B/zones" | grep "$U")"
	check "$l: no receive journal on b" test ! -e "$B/recv/$U.json"
	check "$l: no QEMU of the VM on b" sh -c "! pgrep -f '[q]emu-system.*$B/' >/dev/null"
}

# --- joyent VMs do not migrate live ------------------------------------------
check "imgadm install joyent-test on a" host_exec a "$IMGADM" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
check "create joyent VM on a" sh -c "echo '{\"brand\": \"joyent\", \"uuid\": \"$JU\", \"image_uuid\": \"$OS_IMAGE\"}' |
  VMADM_ROOT=$A $VMADM create"
check_fails "send -L of a joyent VM is refused, naming -I" \
	"live migration (-L) is for kvm VMs only: VM $JU is brand joyent; containers migrate with -I" \
	host_exec a "$VMADM" send "$JU" -L "$IPB" "$HOSTS_PORT"
check "the refusal came before connecting (b saw no migration)" \
	sh -c "! grep -q 'migration of VM $JU' '$B/log/vmadmd.log'"

# --- the link cut while the disks are mirrored -------------------------------
# At 2 MiB/s the mirror does not catch up with the guest's 2.5 MiB/s.
live disk --bwlimit 2M
if wait_phase disk disk 60; then
	sleep 1
	link_down a
	ok "link cut in the disk phase"
else
	fail "link cut in the disk phase: no disk progress: $(tail -n 3 "$T/disk.err")"
fi
rc=$(send_rc 40)
link_up a
check "link cut (disk): send fails (rc $rc)" test "$rc" != 0 -a "$rc" != running
echo "# link cut (disk): $(tail -n 2 "$T/disk.err" | tr '\n' ' ' | cut -c1-400)"
check_grep "link cut (disk): the error says the VM runs on here" -q "the VM runs on here" "$T/disk.err"
source_intact "link cut (disk)"
target_clean "link cut (disk)"

# --- the link cut during the RAM precopy -------------------------------------
live ram --bwlimit 8M
if wait_phase ram ram 90; then
	link_down a
	ok "link cut in the RAM phase"
else
	fail "link cut in the RAM phase: no RAM progress: $(tail -n 3 "$T/ram.err")"
fi
rc=$(send_rc 40)
link_up a
check "link cut (RAM): send fails (rc $rc)" test "$rc" != 0 -a "$rc" != running
echo "# link cut (RAM): $(tail -n 2 "$T/ram.err" | tr '\n' ' ' | cut -c1-400)"
source_intact "link cut (RAM)"
target_clean "link cut (RAM)"

# --- the target's vmadmd and QEMU killed mid-migration ------------------------
live kill --bwlimit 8M
if wait_phase kill ram 90; then
	tq=$(cat "$B/run/$U/qemu.pid" 2>/dev/null)
	host_vmadmd_kill b
	[ -n "$tq" ] && kill -KILL "$tq"
	ok "target vmadmd and QEMU killed in the RAM phase"
else
	fail "target killed: no RAM progress: $(tail -n 3 "$T/kill.err")"
fi
rc=$(send_rc 40)
check "target killed: send fails (rc $rc)" test "$rc" != 0 -a "$rc" != running
echo "# target killed: $(tail -n 2 "$T/kill.err" | tr '\n' ' ' | cut -c1-400)"
source_intact "target killed"
# The dead vmadmd left a record marked "migrating" (and maybe datasets):
# the next command on b removes them and says so; nothing is left to run.
check "target killed: the next command on b cleans up the VM" \
	sh -c "VMADM_ROOT=$B $VMADM list 2>&1 >/dev/null | grep -q 'interrupted live migration' || ! test -e $B/vms/$U.json"
check_eq "target killed: no record of the VM on b" "" "$(ls "$B/vms")"
check "restart b's vmadmd" host_vmadmd_start b
target_clean "target killed"

# --- no convergence within --live-timeout -------------------------------------
# 128 MiB of RAM at 8 MiB/s takes 16 s.
live conv --bwlimit 8M --live-timeout 6
rc=$(send_rc 60)
check "no convergence: send fails (rc $rc)" test "$rc" != 0 -a "$rc" != running
check_grep "no convergence: the error says why" -q "did not converge within 6000 ms: .* remaining, dirty rate" "$T/conv.err"
echo "# no convergence: $(tail -n 1 "$T/conv.err" | cut -c1-400)"
source_intact "no convergence"
target_clean "no convergence"

# --- Ctrl-C (SIGINT to vmadm send) in the RAM phase --------------------------
live int --bwlimit 8M
if wait_phase int ram 90; then
	for p in $(pgrep -P "$SEND_PID"); do kill -INT "$p"; done
	ok "SIGINT to vmadm send in the RAM phase"
else
	fail "Ctrl-C: no RAM progress: $(tail -n 3 "$T/int.err")"
fi
rc=$(send_rc 30)
check "Ctrl-C: send fails (rc $rc)" test "$rc" != 0 -a "$rc" != running
echo "# Ctrl-C: $(tail -n 1 "$T/int.err" | cut -c1-400)"
check_grep "Ctrl-C: the error says cancelled" -q "failed (the VM runs on here): cancelled in the ram phase" "$T/int.err"
source_intact "Ctrl-C"
target_clean "Ctrl-C"

# --- and after all that, the migration still works ---------------------------
live final
rc=$(send_rc 120)
check_eq "send -L after the faults succeeds" 0 "$rc"
[ "$rc" = 0 ] || echo "# $(tail -n 3 "$T/final.err")"
check_eq "VM runs on b" running "$(on "$B" "$VMADM" get "$U" 2>/dev/null | $JSON state)"
t_done

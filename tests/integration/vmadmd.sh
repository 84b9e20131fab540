#!/usr/bin/env bash
# vmadmd, the node daemon, on a dir pool:
# - -f stays in the foreground; the pidfile ROOT/run/vmadmd.pid holds its
#   pid and a second daemon for the same node is refused, naming the first;
# - it logs to ROOT/log/vmadmd.log; SIGTERM ends it and removes the pidfile;
# - the watcher: QEMU killed, or a container's init killed, behind vmadm's
#   back, and the VM's record file says "stopped" within a few seconds;
# - autoboot: after a node boot (a new kernel boot id, or -B) the VMs with
#   autoboot=true start, the others do not, a failing one is logged and
#   does not keep the others from starting; a daemon restart without a node
#   boot starts nothing;
# - without -f it daemonizes and the pidfile names the daemon.
. "$(dirname "$0")/../lib/common.sh"

IMAGES=$BUILD/images
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
K1=1a2b3c4d-0001-4e5f-8a9b-0c1d2e3f4a51 # kvm, autoboot
K2=1a2b3c4d-0002-4e5f-8a9b-0c1d2e3f4a52 # kvm, autoboot=false
K3=1a2b3c4d-0003-4e5f-8a9b-0c1d2e3f4a53 # kvm, autoboot, its disk goes missing
J1=1a2b3c4d-0004-4e5f-8a9b-0c1d2e3f4a54 # joyent, autoboot

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi

R=$(node_make node dir)
vmadm() { on "$R" "$VMADM" "$@"; }
PIDFILE=$R/run/vmadmd.pid
LOG=$R/log/vmadmd.log
DPID=

# record_state UUID: the state in the record file (not vmadm's live view).
record_state() { $JSON -f "$R/vms/$1.json" state 2>/dev/null; }

# wait_for SECS CMD...: until CMD succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

# start_daemon ARGS...: vmadmd -f ARGS in the background; DPID is its pid.
start_daemon() {
	VMADM_ROOT=$R "$VMADMD" -f -i 1 "$@" >>"$T/vmadmd.out" 2>&1 &
	DPID=$!
	T_PIDS+=("$DPID")
	wait_for 10 grep -qx "$DPID" "$PIDFILE"
}

# stop_daemon: SIGTERM, and it must exit within 5 s.
stop_daemon() {
	kill -TERM "$DPID"
	wait_for 5 bash -c "! kill -0 $DPID 2>/dev/null" && wait "$DPID"
}

check "install the joyent image" on "$R" "$IMGADM" install \
	-m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"

# --- one daemon per node ----------------------------------------------------
check "vmadmd -f starts" start_daemon
check_grep "pidfile holds its pid" -qx "$DPID" "$PIDFILE"
check "it runs in the foreground (our child)" kill -0 "$DPID"
check_fails "a second vmadmd -f is refused, naming the first" \
	"another vmadmd (pid $DPID) already serves node $R" env VMADM_ROOT="$R" "$VMADMD" -f
check_fails "a second vmadmd (daemon mode) is refused too" \
	"another vmadmd (pid $DPID) already serves node $R" env VMADM_ROOT="$R" "$VMADMD"
check_eq "the first is unharmed, pidfile unchanged" "$DPID" "$(kill -0 "$DPID" && cat "$PIDFILE")"
check_grep "logs to ROOT/log/vmadmd.log" -q "started for node $R (pid $DPID)" "$LOG"
check_grep "a fresh node counts as booted" -q "node booted: starting autoboot VMs" "$LOG"

# --- the watcher --------------------------------------------------------------
cat >"$T/k1.json" <<EOF
{"brand": "kvm", "uuid": "$K1", "alias": "k1", "ram": 128, "disks": [{"size": 16}]}
EOF
cat >"$T/k2.json" <<EOF
{"brand": "kvm", "uuid": "$K2", "alias": "k2", "ram": 128, "autoboot": false, "disks": [{"size": 16}]}
EOF
cat >"$T/k3.json" <<EOF
{"brand": "kvm", "uuid": "$K3", "alias": "k3", "ram": 128, "disks": [{"size": 16}]}
EOF
cat >"$T/j1.json" <<EOF
{"brand": "joyent", "uuid": "$J1", "alias": "j1", "image_uuid": "$OS_IMAGE", "delegate_dataset": true}
EOF
for f in k1 k2 k3 j1; do
	check "create $f" vmadm create -f "$T/$f.json"
done
check "start k1 (kvm)" vmadm start "$K1"
check "start j1 (joyent)" vmadm start "$J1"
check_eq "records say running" "running running" "$(record_state "$K1") $(record_state "$J1")"
qpid=$(vmadm get "$K1" | $JSON pid)
ipid=$(vmadm get "$J1" | $JSON pid)
sleep 1.5
check_eq "the watcher leaves running VMs alone" "running running" "$(record_state "$K1") $(record_state "$J1")"
kill -9 "$qpid"
check "QEMU killed: the record says stopped within 5 s" wait_for 5 bash -c "[ \"\$($JSON -f '$R/vms/$K1.json' state)\" = stopped ]"
check_grep "... and the daemon logged it" -q "VM $K1 exited: now stopped" "$LOG"
check_eq "... no pid or boot_timestamp left in the record" "" \
	"$($JSON -f "$R/vms/$K1.json" -a pid boot_timestamp | xargs)"
kill -9 "$ipid"
check "container init killed: the record says stopped within 5 s" wait_for 5 bash -c "[ \"\$($JSON -f '$R/vms/$J1.json' state)\" = stopped ]"
check_grep "... logged" -q "VM $J1 exited: now stopped" "$LOG"
check_eq "vmadm list agrees" "stopped stopped" "$(echo $(vmadm list -H -o state uuid="$K1") $(vmadm list -H -o state uuid="$J1"))"
check "stop a VM with vmadm while the daemon watches" bash -c "VMADM_ROOT='$R' '$VMADM' start $K2 && VMADM_ROOT='$R' '$VMADM' stop $K2 -F"
check_eq "... record stopped, nothing logged as a crash" "stopped 0" \
	"$(record_state "$K2") $(grep -c "VM $K2 exited" "$LOG")"

# A create that died: the daemon undoes it without waiting for a command.
P=1a2b3c4d-0005-4e5f-8a9b-0c1d2e3f4a55
echo "{\"brand\": \"kvm\", \"uuid\": \"$P\", \"disks\": [{\"size\": 16}]}" >"$T/p.json"
VMADM_FAULT=create-after-datasets VMADM_ROOT=$R "$VMADM" create -f "$T/p.json" >/dev/null 2>&1
check "a create killed after making its datasets leaves them" test -d "$R/zones/$P-disk0"
check "the daemon removes the dead create's record within 5 s" wait_for 5 test ! -e "$R/vms/$P.json"
check_eq "... and its datasets" "" "$(ls -d "$R/zones/$P" "$R/zones/$P-disk0" 2>/dev/null)"
check_grep "... logging it" -q "removed VM $P left behind by an interrupted create" "$LOG"

# --- SIGTERM --------------------------------------------------------------------
check "SIGTERM ends the daemon" stop_daemon
check "... and removes the pidfile" test ! -e "$PIDFILE"
check_grep "... logging it" -q "vmadmd stopping" "$LOG"

# --- autoboot -------------------------------------------------------------------
rm -rf "$R/zones/$K3-disk0" # K3 cannot start any more
check "restart without a node boot" start_daemon
sleep 2
check_eq "... starts nothing" "stopped stopped stopped" \
	"$(echo $(record_state "$K1") $(record_state "$J1") $(record_state "$K3"))"
check_eq "... and logs no boot" 1 "$(grep -c "node booted" "$LOG")"
check "stop it" stop_daemon

check "vmadmd -f -B (a node boot)" start_daemon -B
check "autoboot k1 started" wait_for 15 bash -c "[ \"\$($JSON -f '$R/vms/$K1.json' state)\" = running ]"
check "autoboot j1 started" wait_for 15 bash -c "[ \"\$($JSON -f '$R/vms/$J1.json' state)\" = running ]"
check_eq "they really run" "running running" \
	"$(echo $(vmadm list -H -o state uuid="$K1") $(vmadm list -H -o state uuid="$J1"))"
check_eq "k2 (autoboot=false) was not started" stopped "$(vmadm list -H -o state uuid="$K2")"
check_eq "k3 (disk missing) stays stopped" stopped "$(vmadm list -H -o state uuid="$K3")"
check_grep "log: autoboot of k1" -q "autoboot $K1: started" "$LOG"
check "log: k3 failed, naming the missing dataset" \
	grep -q "autoboot $K3 failed: .*disk dataset zones/$K3-disk0 is missing" "$LOG"
check "stop it" stop_daemon
check "stop k1" vmadm stop "$K1" -F
check "stop j1" vmadm stop "$J1" -F

# A real node boot: the kernel's boot id differs from the recorded one.
check_grep "ROOT/run/boot_id is recorded" -qx "$(cat /proc/sys/kernel/random/boot_id)" "$R/run/boot_id"
echo 00000000-0000-0000-0000-000000000000 >"$R/run/boot_id"
check "vmadmd after a new boot id" start_daemon
check "autoboot k1 started after the node boot" wait_for 15 bash -c "[ \"\$($JSON -f '$R/vms/$K1.json' state)\" = running ]"
check "autoboot j1 started after the node boot" wait_for 15 bash -c "[ \"\$($JSON -f '$R/vms/$J1.json' state)\" = running ]"
check "stop it" stop_daemon
check "stop k1" vmadm stop "$K1" -F
check "stop j1" vmadm stop "$J1" -F

# --- daemon mode ----------------------------------------------------------------
check "vmadmd (no -f) returns at once" timeout 10 env VMADM_ROOT="$R" "$VMADMD" -i 1
check "... its pidfile appears" wait_for 5 test -s "$PIDFILE"
bgpid=$(cat "$PIDFILE" 2>/dev/null)
case "$bgpid" in '' | *[!0-9]*) bgpid= ;; *) T_PIDS+=("$bgpid") ;; esac
check "... naming a live vmadmd" bash -c "[ -n '$bgpid' ] && tr '\0' ' ' </proc/$bgpid/cmdline | grep -q vmadmd"
check "... that has left its terminal (own session)" \
	bash -c "[ \"\$(ps -o sid= -p $bgpid | tr -d ' ')\" = '$bgpid' ] || [ \"\$(ps -o tty= -p $bgpid | tr -d ' ')\" = '?' ]"
check_fails "... and still refuses a second one" "another vmadmd (pid $bgpid)" \
	env VMADM_ROOT="$R" "$VMADMD" -f
if [ -n "$bgpid" ]; then
	kill -TERM "$bgpid"
	check "SIGTERM ends the daemonized vmadmd" wait_for 5 bash -c "! kill -0 $bgpid 2>/dev/null"
	check "... and its pidfile is gone" test ! -e "$PIDFILE"
fi

for u in "$K1" "$K2" "$K3" "$J1"; do
	vmadm delete "$u" >/dev/null 2>&1
done
check_eq "no VM left" "" "$(vmadm list -H)"
t_done

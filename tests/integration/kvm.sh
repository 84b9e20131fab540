#!/usr/bin/env bash
# Brand kvm and the QMP client against a real QEMU under TCG.
#
# The guest has blank raw disks, so SeaBIOS finds nothing to boot and sits
# there: enough to test start, QMP, info, stop, kill and the failure paths.
# Driven through tests/integration/kvm-ops (the brand alone, no vmadm CLI).
. "$(dirname "$0")/../lib/common.sh"

KOPS=${KVM_OPS_BIN:-$BUILD/tests/integration/kvm-ops}
if [ ! -x "$KOPS" ]; then
	fail "kvm-ops: not built at $KOPS"
	exit 1
fi
if ! command -v qemu-system-x86_64 >/dev/null; then
	fail "qemu-system-x86_64 is not installed"
	exit 1
fi

R=$(node_make kvm) # vmadm.conf says accel tcg
U=$(cat /proc/sys/kernel/random/uuid)
RUN=$R/run/$U
mkdir -p "$T/img"
truncate -s 64M "$T/img/$U-disk0.img"
truncate -s 32M "$T/img/$U-disk1.img"

# A VM whose boot disk is its second disk, so that names (serial=diskN)
# and boot order (boot disk first, bootindex=0) are told apart.
record() { # FILE DISK1_PATH
	cat >"$1" <<EOF
{"uuid": "$U", "brand": "kvm", "ram": 128, "vcpus": 1,
 "disks": [
   {"path": "$T/img/$U-disk0.img", "zfs_filesystem": "zones/$U-disk0", "size": 64, "model": "virtio"},
   {"path": "$2", "zfs_filesystem": "zones/$U-disk1", "size": 32, "boot": true}
 ],
 "nics": [{"mac": "02:08:20:00:00:01", "model": "virtio"}]}
EOF
}
VM=$T/vm.json
record "$VM" "$T/img/$U-disk1.img"
k() { "$KOPS" "$R" "$VM" "$@"; }

qemu_pids() { # pids of QEMUs whose command line holds our uuid
	local p
	for p in $(pgrep -f "qemu-system-x86_64 -name $U" || true); do
		echo "$p"
	done
}

# --- The command line ---------------------------------------------------
k argv >"$T/argv" 2>&1
ARGV=$(tr '\n' ' ' <"$T/argv")
echo "# argv: $ARGV"
check_grep "argv: accel tcg from the node setting" -qx 'pc,accel=tcg' "$T/argv"
check_eq "argv: -cpu max under tcg" "max" "$(grep -A1 -x -- '-cpu' "$T/argv" | tail -1)"
check_grep "argv: disk0 has serial=disk0" -q 'virtio-blk-pci,id=disk0-dev,drive=disk0,serial=disk0,' "$T/argv"
check "argv: file nodes bypass the page cache" \
	grep -q "driver=file,node-name=disk0-file,filename=$T/img/$U-disk0.img,cache.direct=true" "$T/argv"
check_grep "argv: the boot disk (disk1) has bootindex=0" -q 'drive=disk1,serial=disk1,bootindex=0$' "$T/argv"
first_dev=$(grep -A1 -x -- '-device' "$T/argv" | grep -v -- '^-' | grep -v '^--' | head -1)
check_eq "argv: the boot disk comes first" "virtio-blk-pci,id=disk1-dev,drive=disk1,serial=disk1,bootindex=0" "$first_dev"
check "argv: nic is user,restrict=on with its MAC" \
	bash -c "grep -qx 'user,id=net0,restrict=on' '$T/argv' && grep -q 'netdev=net0,mac=02:08:20:00:00:01' '$T/argv'"
check "argv: qmp and console sockets under run/UUID" \
	grep -qx "unix:$RUN/qmp.sock,server=on,wait=off" "$T/argv"
k argv incoming >"$T/argv-in" 2>&1
check "argv incoming: -incoming defer -S" bash -c "tr '\n' ' ' <'$T/argv-in' | grep -q -- '-incoming defer -S'"
check_eq "argv: default has no -incoming" "0" "$(grep -c -- '-incoming' "$T/argv")"

# ide and scsi models, no boot flag: disk0 boots.
cat >"$T/models.json" <<EOF
{"uuid": "$U", "brand": "kvm", "ram": 128, "vcpus": 1,
 "disks": [{"path": "$T/img/$U-disk0.img", "model": "ide"},
           {"path": "$T/img/$U-disk1.img", "model": "scsi"}]}
EOF
"$KOPS" "$R" "$T/models.json" argv >"$T/argv-models" 2>&1
check_grep "argv models: ide-hd disk0 boots" -qx 'ide-hd,id=disk0-dev,drive=disk0,serial=disk0,bootindex=0' "$T/argv-models"
check "argv models: virtio-scsi-pci controller then scsi-hd" \
	bash -c "grep -qx virtio-scsi-pci,id=scsi0 '$T/argv-models' && grep -qx 'scsi-hd,id=disk1-dev,bus=scsi0.0,drive=disk1,serial=disk1,bootindex=1' '$T/argv-models'"
check "argv models: no nics means -nic none" bash -c "tr '\n' ' ' <'$T/argv-models' | grep -q -- '-nic none'"
cat >"$T/badmodel.json" <<EOF
{"uuid": "$U", "disks": [{"path": "/x", "model": "floppy"}]}
EOF
check_fails "argv: unknown disk model is refused by name" "disks[0].model 'floppy'" \
	"$KOPS" "$R" "$T/badmodel.json" argv

# --- Start, state, QMP, info ------------------------------------------------
check "start" k start
st=$(k state)
pid=${st#running }
check_eq "state running after start" "running" "${st%% *}"
check "QEMU pid $pid is alive and its cmdline names the VM" \
	bash -c "kill -0 $pid && tr '\0' ' ' </proc/$pid/cmdline | grep -q -- '-uuid $U'"
check_eq "pidfile holds that pid" "$pid" "$(cat "$RUN/qemu.pid" 2>/dev/null)"
check_eq "accel recorded in run/UUID/accel" "tcg" "$(cat "$RUN/accel" 2>/dev/null)"
k qmp query-status >"$T/status" 2>&1
check_grep "qmp query-status: running" -q '"status": "running"' "$T/status"
k qmp query-version >"$T/version" 2>&1
check_eq "qmp query-version: QEMU major 7" "7" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["qemu"]["major"])' "$T/version" 2>&1)"
k pause-resume >"$T/pr" 2>&1
check "qmp events: stop gives STOP and paused, cont gives RESUME" \
	bash -c "grep -qx 'paused: paused' '$T/pr' && grep -qx resumed '$T/pr'"
check_fails "qmp error reply carries QEMU's class and message" \
	"qmp blockdev-del: GenericError: Failed to find node with node-name='nope'" \
	k qmp blockdev-del '{"node-name": "nope"}'
check_fails "qmp unknown command: CommandNotFound" "CommandNotFound" k qmp no-such-command

k info >"$T/info" 2>&1
py_info() { python3 -c "import json,sys; i=json.load(open('$T/info')); $1" 2>&1; }
check_eq "info: status running" "running" "$(py_info 'print(i["status"]["status"])')"
check_eq "info: accel tcg" "tcg" "$(py_info 'print(i["accel"])')"
check_eq "info: both block devices, cache.direct" \
	"disk0:$T/img/$U-disk0.img:True disk1:$T/img/$U-disk1.img:True" \
	"$(py_info 'print(" ".join(sorted("%s:%s:%s" % (b["inserted"]["node-name"], b["inserted"]["file"], b["inserted"]["cache"]["direct"]) for b in i["block"])))')"
check_eq "info: file nodes have cache.direct" "True True" \
	"$(py_info 'print(" ".join(str(n["cache.direct"]) for n in sorted(i["block_nodes"], key=lambda n: n["node-name"]) if n["drv"] == "file"))')"
check "info: serial chardev on the console socket" \
	bash -c "python3 -c \"import json; i=json.load(open('$T/info')); assert any(c['label']=='serial0' and '$RUN/console.sock' in c['filename'] for c in i['chardev'])\""
check_eq "info: qmp socket path" "$RUN/qmp.sock" "$(py_info 'print(i["qmp_socket"])')"

# Console: attached while stdin stays open, Ctrl-] detaches with status 0.
mkfifo "$T/cin"
k console <"$T/cin" >"$T/cout" 2>&1 &
cpid=$!
T_PIDS+=("$cpid")
exec 7>"$T/cin"
sleep 0.5
k qmp query-chardev >"$T/chardev" 2>&1
check "console: QEMU sees the serial socket connected" \
	bash -c "grep -q '\"filename\": \"unix:$RUN/console.sock' '$T/chardev' && ! grep -q 'disconnected:unix:$RUN/console.sock' '$T/chardev'"
write_fd 7 '\035'
exec 7>&-
for _ in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$cpid" 2>/dev/null; then
	fail "console: Ctrl-] did not detach"
else
	wait "$cpid"
	check_eq "console: Ctrl-] detaches with status 0" "0" "$?"
fi

check_fails "start of a running VM is refused" "already running (QEMU pid $pid)" k start
check_eq "and the VM still runs" "running $pid" "$(k state)"
check "reboot (system_reset) answers" k reboot
check_eq "still running after reboot" "running $pid" "$(k state)"

# --- Stop ----------------------------------------------------------------
t0=$(date +%s.%N)
check "stop -t 2" k stop -t 2
t1=$(date +%s.%N)
el=$(python3 -c "print(round($t1 - $t0, 1))")
echo "# stop -t 2 took ${el}s"
check "stop -t 2 returned within 4 s (took ${el}s)" python3 -c "assert $t1 - $t0 < 4.0"
check "stop: QEMU pid $pid is gone" bash -c "! tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null | grep -q $U"
check_eq "stop: state stopped" "stopped" "$(k state)"
check "stop: run/UUID removed" test ! -e "$RUN"
check "stop of a stopped VM is 0" k stop -t 1
check_eq "info of a stopped VM fails" "1" "$(k info >/dev/null 2>&1; echo $?)"

# --- Force stop ------------------------------------------------------------
check "start again" k start
pid=$(k state | awk '{print $2}')
t0=$(date +%s.%N)
check "stop -F" k stop -F
t1=$(date +%s.%N)
check "stop -F is immediate (< 2 s)" python3 -c "assert $t1 - $t0 < 2.0"
check "stop -F: QEMU gone" bash -c "! tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null | grep -q $U"

# --- Killed behind our back ---------------------------------------------------
check "start for kill -9" k start
pid=$(k state | awk '{print $2}')
kill -9 "$pid"
for _ in $(seq 50); do tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | grep -q "$U" || break; sleep 0.1; done
check_eq "kill -9 QEMU: state stopped (stale pidfile ignored)" "stopped" "$(k state)"
check "stop after kill -9 cleans up" bash -c "'$KOPS' '$R' '$VM' stop -t 1 && test ! -e '$RUN'"

# A reused pid: the pidfile names a live process that is not our QEMU.
sleep 300 &
spid=$!
T_PIDS+=("$spid")
mkdir -p "$RUN" && echo "$spid" >"$RUN/qemu.pid"
check_eq "pidfile naming a foreign live pid reads as stopped" "stopped" "$(k state)"
check "stop leaves the foreign process alone" bash -c "'$KOPS' '$R' '$VM' stop -t 1 && kill -0 $spid"
kill "$spid" 2>/dev/null

# --- ide and scsi disks run too --------------------------------------------
check "start with ide and scsi disks" "$KOPS" "$R" "$T/models.json" start
"$KOPS" "$R" "$T/models.json" qmp query-block >"$T/models-block" 2>&1
check_eq "ide/scsi: QEMU has both disks on their devices" "disk0-dev disk1-dev" \
	"$(python3 -c "import json; print(' '.join(sorted(b['qdev'].split('/')[-1] for b in json.load(open('$T/models-block')))))" 2>&1)"
check "ide/scsi: stop -F" "$KOPS" "$R" "$T/models.json" stop -F

# --- A migration target ------------------------------------------------------
check "start-incoming" k start-incoming
k qmp query-status >"$T/status-in" 2>&1
check_grep "start-incoming: QEMU waits in inmigrate" -q '"status": "inmigrate"' "$T/status-in"
check "start-incoming: stop -F" k stop -F

# --- Failures leave nothing running --------------------------------------
record "$T/missing.json" "$T/img/$U-disk1-gone.img"
check_fails "start with a missing disk names the dataset" \
	"start $U: disk dataset zones/$U-disk1 is missing" "$KOPS" "$R" "$T/missing.json" start
check_eq "missing disk: no QEMU runs" "" "$(qemu_pids)"
check "missing disk: no run dir" test ! -e "$RUN"

python3 -c "import json,sys; d=json.load(open('$VM')); d['cpu_type']='no-such-cpu'; json.dump(d, open('$T/badcpu.json','w'))"
check_fails "QEMU failing at start: its own words in the error" \
	"unable to find CPU model 'no-such-cpu'" "$KOPS" "$R" "$T/badcpu.json" start
check_eq "QEMU failure: no QEMU runs" "" "$(qemu_pids)"
check "QEMU failure: no run dir" test ! -e "$RUN"
check_grep "QEMU failure: stderr kept in log/UUID-qemu.log" -q "no-such-cpu" "$R/log/$U-qemu.log"

# QEMU starts but is not running (a wrapper adds -S): start must kill it.
printf '#!/bin/sh\nexec qemu-system-x86_64 "$@" -S\n' >"$T/qemu-paused"
chmod +x "$T/qemu-paused"
check_fails "QEMU up but not running: start fails" "QEMU status is 'prelaunch', expected 'running'" \
	env VMADM_QEMU="$T/qemu-paused" "$KOPS" "$R" "$VM" start
check_eq "not running: the QEMU it started was killed" "" "$(qemu_pids)"
check "not running: no run dir" test ! -e "$RUN"

check_eq "nothing of ours left running" "" "$(qemu_pids)"
t_done

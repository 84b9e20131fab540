#!/usr/bin/env bash
# The test images (images/build) and the guest workload:
# - both images build, their manifests parse and their sha1/size match;
# - the kvm image boots on its own under SeaBIOS (plain QEMU, TCG), finds
#   disk0 by its virtio serial although another disk comes first on the PCI
#   bus, and writes records that the checker reads back from the host;
#   a second boot continues the sequence; ACPI powerdown stops it;
# - the joyent image's tree is sane and its workload runs in file mode;
# - the checker reports gaps and corrupt records and fails on them.
. "$(dirname "$0")/../lib/common.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
OFFSET=33554432

# jget FILE PROP: one property of a JSON file, via the json tool or python.
jget() {
	if command -v json >/dev/null; then
		json -f "$1" "$2"
	else
		python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[int(k)] if isinstance(v,list) else v[k]
print(str(v).lower() if isinstance(v,bool) else v)' "$1" "$2"
	fi
}

# check_json FILE: the checker's --json output of FILE.
checker_json() {
	"$CHECK" --json "$@" >"$T/check.json" 2>"$T/check.err"
	echo $? >"$T/check.rc"
}

# --- build and manifests ------------------------------------------------------

check "images/build" "$TOP/images/build"
for name in kvm-test joyent-test; do
	m=$IMAGES/$name.json
	case $name in kvm-test) f=$IMAGES/kvm-test.img ;; *) f=$IMAGES/joyent-test.tar.gz ;; esac
	check "$name manifest parses" jget "$m" uuid
	check_eq "$name manifest v" 2 "$(jget "$m" v 2>/dev/null)"
	check_eq "$name manifest name" "$name" "$(jget "$m" name 2>/dev/null)"
	check_eq "$name manifest os" linux "$(jget "$m" os 2>/dev/null)"
	check_eq "$name file sha1" "$(sha1sum "$f" 2>/dev/null | cut -d' ' -f1)" \
		"$(jget "$m" files.0.sha1 2>/dev/null)"
	check_eq "$name file size" "$(stat -c %s "$f" 2>/dev/null)" "$(jget "$m" files.0.size 2>/dev/null)"
done
check_eq "kvm-test type" zvol "$(jget "$IMAGES/kvm-test.json" type 2>/dev/null)"
check_eq "joyent-test type" zone-dataset "$(jget "$IMAGES/joyent-test.json" type 2>/dev/null)"
check_eq "kvm-test uuid is fixed" 7020aa70-c7a8-5bdc-8ae3-24bb98294d0d \
	"$(jget "$IMAGES/kvm-test.json" uuid 2>/dev/null)"

# A second run builds nothing.
before=$(stat -c %Y.%s "$IMAGES/kvm-test.img" "$IMAGES/joyent-test.tar.gz" 2>/dev/null)
"$TOP/images/build" >/dev/null 2>&1
check_eq "images/build is idempotent" "$before" \
	"$(stat -c %Y.%s "$IMAGES/kvm-test.img" "$IMAGES/joyent-test.tar.gz" 2>/dev/null)"

# The partition ends before the workload region.
part_end=$(sfdisk -d "$IMAGES/kvm-test.img" 2>/dev/null |
	awk -F'[=,]' '/start=/ {print ($2 + $4) * 512}' | tr -d ' ')
check "kvm-test partition ends before byte $OFFSET" test "${part_end:-$((OFFSET + 1))}" -le "$OFFSET"

# --- kvm image ----------------------------------------------------------------

cp "$IMAGES/kvm-test.img" "$T/disk0.img"
truncate -s 16M "$T/disk1.img"
QPID=

# boot LOG: start QEMU on the two disks; disk1 sits before disk0 on the PCI
# bus, so the guest calls it vda and disk0 vdb.
boot() {
	qemu-system-x86_64 -accel tcg -m 256 -nographic -no-user-config -nodefaults \
		-monitor none -serial "file:$1" -qmp "unix:$T/qmp.sock,server=on,wait=off" \
		-drive "if=none,id=d1,file=$T/disk1.img,format=raw,cache=directsync" \
		-device virtio-blk-pci,drive=d1,serial=disk1,addr=0x4 \
		-drive "if=none,id=d0,file=$T/disk0.img,format=raw,cache=directsync" \
		-device virtio-blk-pci,drive=d0,serial=disk0,addr=0x5,bootindex=0 \
		>"$T/qemu.out" 2>&1 &
	QPID=$!
	T_PIDS+=("$QPID")
}

# wait_records MIN TIMEOUT_S: until the checker sees MIN records on disk0.
wait_records() {
	local min=$1 deadline=$((SECONDS + $2)) n
	while [ $SECONDS -lt $deadline ]; do
		checker_json --offset "$OFFSET" "$T/disk0.img"
		n=$(jget "$T/check.json" records 2>/dev/null || echo 0)
		[ "${n:-0}" -ge "$min" ] && return 0
		kill -0 "$QPID" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}

# wait_line FILE PATTERN TIMEOUT_S: print the seconds it took.
wait_line() {
	local start
	start=$(date +%s%N)
	while ! grep -q "$2" "$1" 2>/dev/null; do
		[ $(($(date +%s%N) - start)) -lt $(($3 * 1000000000)) ] || return 1
		kill -0 "$QPID" 2>/dev/null || return 1
		sleep 0.1
	done
	awk -v ns=$(($(date +%s%N) - start)) 'BEGIN {printf "%.1f\n", ns / 1e9}'
}

qmp() { # COMMAND: one QMP command, no arguments
	python3 - "$T/qmp.sock" "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", sys.argv[2]):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while "return" not in (r := json.loads(f.readline())) and "error" not in r:
        pass
    if "error" in r:
        sys.exit(r["error"]["desc"])
EOF
}

stop_qemu() {
	kill -KILL "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
}

boot "$T/serial1.log"
if t=$(wait_line "$T/serial1.log" 'vmadm-workload: .*started at seq 1,' 60); then
	ok "kvm boot 1: workload started after $t s"
	echo "# kvm image boot to workload: $t s (TCG, SeaBIOS)"
else
	fail "kvm boot 1: no workload start line in 60 s: $(tail -c 300 "$T/serial1.log" | tr '\n' ' ')"
fi
check "kvm boot 1: more than 10 records" wait_records 11 20
check_grep "kvm boot 1: workload found disk0 by serial on vdb" -q 'vmadm-workload: /dev/vdb:' "$T/serial1.log"
stop_qemu
checker_json --offset "$OFFSET" "$T/disk0.img"
check_eq "kvm boot 1: checker exit" 0 "$(cat "$T/check.rc")"
check_eq "kvm boot 1: no gaps" 0 "$(jget "$T/check.json" gaps 2>/dev/null)"
check_eq "kvm boot 1: first seq" 1 "$(jget "$T/check.json" first_seq 2>/dev/null)"
last1=$(jget "$T/check.json" last_seq 2>/dev/null || echo 0)
check "disk1 (first on the PCI bus) left untouched" cmp -s -n 16777216 "$T/disk1.img" /dev/zero
check "boot partition intact after the workload ran" \
	cmp -s -n "$OFFSET" "$IMAGES/kvm-test.img" "$T/disk0.img"

boot "$T/serial2.log"
if t=$(wait_line "$T/serial2.log" "started at seq $((last1 + 1))," 60); then
	ok "kvm boot 2: workload continued at seq $((last1 + 1)) after $t s"
else
	fail "kvm boot 2: no 'started at seq $((last1 + 1))' in 60 s: $(tail -c 300 "$T/serial2.log" | tr '\n' ' ')"
fi
check "kvm boot 2: 10 more records" wait_records $((last1 + 10)) 20
if command -v python3 >/dev/null; then
	# ACPI power button -> busybox acpid -> poweroff: the guest stops on
	# its own and QEMU exits.
	start=$(date +%s%N)
	qmp system_powerdown >"$T/qmp.out" 2>&1
	deadline=$((SECONDS + 15))
	while kill -0 "$QPID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
	if kill -0 "$QPID" 2>/dev/null; then
		fail "kvm boot 2: still running 15 s after system_powerdown: $(cat "$T/qmp.out")"
	else
		ok "kvm boot 2: system_powerdown powers the guest off"
		awk -v ns=$(($(date +%s%N) - start)) 'BEGIN {printf "# powerdown to QEMU exit: %.1f s\n", ns / 1e9}'
	fi
	check "kvm boot 2: the workload stopped on SIGTERM at poweroff" \
		grep -q 'vmadm-workload: /dev/vdb: stopped after seq' "$T/serial2.log"
else
	skip "kvm boot 2: system_powerdown: no python3 to speak QMP"
fi
stop_qemu
checker_json --offset "$OFFSET" "$T/disk0.img"
check_eq "kvm boot 2: checker exit" 0 "$(cat "$T/check.rc")"
check_eq "kvm boot 2: no gaps" 0 "$(jget "$T/check.json" gaps 2>/dev/null)"
check_eq "kvm boot 2: two boots" 2 "$(jget "$T/check.json" boots 2>/dev/null)"
check "kvm boot 2: sequence went on past $last1" \
	test "$(jget "$T/check.json" last_seq 2>/dev/null || echo 0)" -gt $((last1 + 5))

# --- joyent image -------------------------------------------------------------

mkdir -p "$T/rootfs" "$T/data"
check "joyent-test unpacks" tar -C "$T/rootfs" -xzf "$IMAGES/joyent-test.tar.gz"
check_eq "joyent-test files are root's" "" \
	"$(tar -tvzf "$IMAGES/joyent-test.tar.gz" --numeric-owner | awk '$2 != "0/0"')"
check_eq "joyent-test /sbin/init is busybox" /bin/busybox "$(readlink "$T/rootfs/sbin/init")"
check_grep "joyent-test inittab starts the workload" -q vmadm-workload-start "$T/rootfs/etc/inittab"
check "joyent-test workload is static" sh -c "file '$T/rootfs/usr/bin/vmadm-workload' | grep -q 'statically linked'"

W=$T/rootfs/usr/bin/vmadm-workload
REC=$T/data/workload.rec
run_workload() { # SECONDS ARGS...
	local secs=$1 pid
	shift
	"$W" --file "$REC" "$@" 2>>"$T/workload.err" &
	pid=$!
	T_PIDS+=("$pid")
	sleep "$secs"
	kill -TERM "$pid"
	wait "$pid"
}
check "workload (file mode) runs 1 s and stops on SIGTERM" run_workload 1
checker_json "$REC"
check_eq "file mode: checker exit" 0 "$(cat "$T/check.rc")"
n=$(jget "$T/check.json" records 2>/dev/null || echo 0)
check "file mode: 8..12 records in 1 s at 100 ms (got $n)" test "$n" -ge 8 -a "$n" -le 12
check "file mode, restart with --burst: runs" run_workload 0.5 --burst 64k
checker_json "$REC"
check_eq "file mode restart: checker exit" 0 "$(cat "$T/check.rc")"
check_eq "file mode restart: continues (one boot, two runs)" "1 2" \
	"$(jget "$T/check.json" boots 2>/dev/null) $(jget "$T/check.json" runs 2>/dev/null)"
check "file mode --burst: scratch file written" test "$(stat -c %s "$REC.scratch" 2>/dev/null || echo 0)" -ge 65536

# --- the checker finds damage ---------------------------------------------------

# Drop record 3: a gap.
{ head -c 1024 "$REC"; tail -c +1537 "$REC"; } >"$T/gap.rec"
check_fails "checker: a missing record is a gap" "gaps: 1 (1 records missing): 3..3" "$CHECK" "$T/gap.rec"
# Flip one byte of record 2: corrupt.
cp "$REC" "$T/bad.rec"
printf 'X' | dd of="$T/bad.rec" bs=1 seek=600 conv=notrunc status=none
check_fails "checker: a flipped byte is a corrupt record" "1 corrupt" "$CHECK" "$T/bad.rec"
check_fails "checker: no records is a failure" "no records" "$CHECK" --offset 0 "$T/disk1.img"

t_done

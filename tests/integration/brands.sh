#!/usr/bin/env bash
# Both brands through the real commands, on a btrfs pool and on a dir pool:
# imgadm install the test images; vmadm create a kvm VM (two disks, disk0
# cloned from the kvm image) and a joyent VM (from the joyent image, with a
# delegated dataset); start both (their guests boot concurrently); list,
# get and info show them running, on the tcg accelerator; the workloads
# write records; console attaches and detaches; reboot; stop; the checker
# finds a growing, gap-free sequence. Then: a kvm guest that ignores the
# ACPI power button (acpi=ignore in its workload config sector) is killed
# when stop's -t runs out; QEMU or the container's init killed behind
# vmadm's back reads as stopped; a start with a disk dataset missing fails
# naming it and leaves the VM stopped.
. "$(dirname "$0")/../lib/common.sh"

CHECK=$BUILD/tools/vmadm-workload-check
IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0
KVM_UUID=4a1c6e02-9d3b-4f57-8e21-6b0c5a7d3e91
OS_UUID=b83f0d14-2c6a-4e9f-a175-0d4e8b2c6f37
OFFSET=33554432
BOOT_WAIT=90 # seconds a TCG guest may take to write its first records

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi



# elapsed_since NS: seconds (one decimal) since date +%s%N gave NS.
elapsed_since() {
	awk -v ns=$(($(date +%s%N) - $1)) 'BEGIN {printf "%.1f\n", ns / 1e9}'
}

brands() {
	local type=$1 root
	root=$(node_make "n-$type" "$type" 2147483648)
	local vmadm=(on "$root" "$VMADM") imgadm=(on "$root" "$IMGADM")
	local disk0=$root/zones/$KVM_UUID-disk0/disk.raw
	local rec=$root/zones/$OS_UUID/data/workload.rec

	check "$type: imgadm install kvm-test" "${imgadm[@]}" install \
		-m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
	check "$type: imgadm install joyent-test" "${imgadm[@]}" install \
		-m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"

	cat >"$T/kvm.json" <<JSON
{"brand": "kvm", "uuid": "$KVM_UUID", "alias": "k-$type", "ram": 256, "autoboot": false,
 "disks": [{"image_uuid": "$KVM_IMAGE", "boot": true}, {"size": 64}]}
JSON
	cat >"$T/os.json" <<JSON
{"brand": "joyent", "uuid": "$OS_UUID", "alias": "j-$type", "image_uuid": "$OS_IMAGE",
 "delegate_dataset": true, "autoboot": false}
JSON
	check "$type: create kvm VM from the image, two disks" "${vmadm[@]}" create -f "$T/kvm.json"
	check "$type: create joyent VM from the image" "${vmadm[@]}" create -f "$T/os.json"
	check_eq "$type: disk0 is the image's size" 67108864 "$(stat -c %s "$disk0" 2>&1)"
	check "$type: disk0 holds the image's boot sector" \
		cmp -n 512 "$disk0" "$IMAGES/kvm-test.img"
	check "$type: joyent root holds the image's init" test -L "$root/zones/$OS_UUID/root/sbin/init"

	# --- start both; their guests boot at the same time --------------------
	check "$type: start kvm" "${vmadm[@]}" start "$KVM_UUID"
	check "$type: start joyent" "${vmadm[@]}" start "$OS_UUID"
	"${vmadm[@]}" list >"$T/list" 2>&1
	check "$type: list shows kvm running" grep -Eq "^$KVM_UUID +KVM +256 +running +k-$type\$" "$T/list"
	check "$type: list shows joyent running" grep -Eq "^$OS_UUID +OS +[0-9]+ +running +j-$type\$" "$T/list"
	check_eq "$type: record file says running (kvm)" running "$($JSON -f "$root/vms/$KVM_UUID.json" state 2>&1)"
	check_eq "$type: get: state zone_state accel" "running running tcg" \
		"$("${vmadm[@]}" get "$KVM_UUID" | $JSON -a state zone_state accel)"
	local qpid ipid
	qpid=$("${vmadm[@]}" get "$KVM_UUID" | $JSON pid)
	ipid=$("${vmadm[@]}" get "$OS_UUID" | $JSON pid)
	check "$type: kvm pid $qpid is a QEMU naming the VM" \
		bash -c "tr '\0' ' ' </proc/$qpid/cmdline | grep -q 'qemu-system-x86_64 -name $KVM_UUID'"
	check "$type: joyent pid $ipid is the container's init" \
		bash -c "[ \"\$(readlink /proc/$ipid/root)\" = '$root/zones/$OS_UUID/root' ] || tr '\0' ' ' </proc/$ipid/cmdline | grep -q init"
	check_eq "$type: info: accelerator" tcg "$("${vmadm[@]}" info "$KVM_UUID" | $JSON accel)"
	check_eq "$type: info: QEMU status" running "$("${vmadm[@]}" info "$KVM_UUID" | $JSON status.status)"
	check_eq "$type: info (joyent): lxc state" RUNNING "$("${vmadm[@]}" info "$OS_UUID" | $JSON lxc_state)"
	check_fails "$type: start of a running VM is refused" "already running" \
		"${vmadm[@]}" start "$KVM_UUID"

	check "$type: kvm workload writes records (guest booted)" \
		wl_wait_records 10 "$BOOT_WAIT" --offset "$OFFSET" "$disk0"
	check "$type: joyent workload writes records" wl_wait_records 10 30 "$rec"

	# --- console ------------------------------------------------------------
	mkfifo "$T/cin-$type"
	"${vmadm[@]}" console "$KVM_UUID" <"$T/cin-$type" >"$T/cout-$type" 2>&1 &
	local cpid=$!
	T_PIDS+=("$cpid")
	exec 7>"$T/cin-$type"
	sleep 0.5
	write_fd 7 '\necho CONSOLE-$((6 * 7))\n'
	local i
	for i in $(seq 50); do grep -q CONSOLE-42 "$T/cout-$type" && break; sleep 0.1; done
	check_grep "$type: console: the guest's shell ran a command" -q CONSOLE-42 "$T/cout-$type"
	write_fd 7 '\035'
	for i in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$cpid" 2>/dev/null; then
		fail "$type: console: Ctrl-] did not detach"
	else
		wait "$cpid"
		check_eq "$type: console: Ctrl-] detaches, status 0" 0 "$?"
	fi
	exec 7>&-
	# On a terminal (script gives it a pty): raw mode, the banner, and
	# Ctrl-] still detaches.
	rm -f "$T/cin-$type"
	mkfifo "$T/cin-$type"
	script -q -e -c "VMADM_ROOT=$root $VMADM console $KVM_UUID" /dev/null \
		<"$T/cin-$type" >"$T/ctty-$type" 2>&1 &
	cpid=$!
	T_PIDS+=("$cpid")
	exec 7>"$T/cin-$type"
	sleep 0.5
	write_fd 7 '\recho TTY-$((6 * 7))\r'
	for i in $(seq 50); do grep -q TTY-42 "$T/ctty-$type" && break; sleep 0.1; done
	check_grep "$type: console on a pty: the guest's shell ran a command" -q TTY-42 "$T/ctty-$type"
	write_fd 7 '\035'
	for i in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$cpid" 2>/dev/null; then
		fail "$type: console on a pty: Ctrl-] did not detach"
	else
		wait "$cpid"
		check_eq "$type: console on a pty: banner, Ctrl-] detaches, status 0" "0:1:1" \
			"$?:$(grep -c 'Detach with Ctrl-]' "$T/ctty-$type"):$(grep -c '^Detached' "$T/ctty-$type")"
	fi
	exec 7>&-
	rm -f "$T/cin-$type"
	mkfifo "$T/cin-$type"
	"${vmadm[@]}" console "$OS_UUID" <"$T/cin-$type" >"$T/cout-os-$type" 2>&1 &
	cpid=$!
	T_PIDS+=("$cpid")
	exec 7>"$T/cin-$type"
	sleep 0.5
	write_fd 7 '\035q'
	for i in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$cpid" 2>/dev/null; then
		fail "$type: joyent console: Ctrl-] q did not detach"
	else
		wait "$cpid"
		check_eq "$type: joyent console: attaches, Ctrl-] q detaches, status 0" "0:1" \
			"$?:$(grep -c 'Connected to tty 0' "$T/cout-os-$type")"
	fi
	exec 7>&-

	# --- reboot: a new boot, the sequence goes on ----------------------------
	local before
	before=$(wl_records --offset "$OFFSET" "$disk0")
	local bt
	bt=$("${vmadm[@]}" get "$KVM_UUID" | $JSON boot_timestamp)
	check "$type: reboot kvm" "${vmadm[@]}" reboot "$KVM_UUID"
	check "$type: reboot sets a new boot_timestamp" test "$bt" != "$("${vmadm[@]}" get "$KVM_UUID" | $JSON boot_timestamp)"
	check "$type: reboot joyent" "${vmadm[@]}" reboot "$OS_UUID"
	check_eq "$type: kvm still running after reboot, same QEMU" "running $qpid" \
		"$("${vmadm[@]}" get "$KVM_UUID" | $JSON -a state pid)"
	check "$type: kvm workload continues after reboot" \
		wl_wait_records $((before + 10)) "$BOOT_WAIT" --offset "$OFFSET" "$disk0"
	check_eq "$type: kvm: two boots on disk0" 2 \
		"$("$CHECK" --json --offset "$OFFSET" "$disk0" | $JSON boots)"
	check "$type: joyent workload continues after reboot" \
		wl_wait_records "$(($(wl_records "$rec") + 10))" 30 "$rec"
	check_eq "$type: joyent: two runs (init restarted it)" 2 "$("$CHECK" --json "$rec" | $JSON runs)"

	# --- stop: the guests shut down on request ------------------------------
	local t0 el
	t0=$(date +%s%N)
	check "$type: stop kvm (ACPI powerdown)" "${vmadm[@]}" stop "$KVM_UUID" -t 30
	el=$(elapsed_since "$t0")
	check "$type: the guest powered off on its own (${el}s < 25s)" awk "BEGIN {exit !($el < 25)}"
	check "$type: stop joyent" "${vmadm[@]}" stop "$OS_UUID" -t 30
	"${vmadm[@]}" list >"$T/list" 2>&1
	check "$type: list shows kvm stopped" grep -Eq "^$KVM_UUID +KVM +256 +stopped " "$T/list"
	check "$type: list shows joyent stopped" grep -Eq "^$OS_UUID +OS +[0-9]+ +stopped " "$T/list"
	check_eq "$type: record files say stopped" "stopped stopped" \
		"$($JSON -f "$root/vms/$KVM_UUID.json" state) $($JSON -f "$root/vms/$OS_UUID.json" state)"
	check "$type: QEMU $qpid is gone" bash -c "! tr '\0' ' ' </proc/$qpid/cmdline 2>/dev/null | grep -q $KVM_UUID"
	check_eq "$type: get of a stopped VM has no pid and no accel" "" \
		"$("${vmadm[@]}" get "$KVM_UUID" | $JSON -a pid accel | xargs)"
	check "$type: kvm records: gap-free" "$CHECK" --offset "$OFFSET" "$disk0"
	check "$type: joyent records: gap-free" "$CHECK" "$rec"
	local nk no
	nk=$(wl_records --offset "$OFFSET" "$disk0")
	no=$(wl_records "$rec")
	echo "# $type: $nk kvm records, $no joyent records"
	check "$type: kvm sequence grew past the reboot ($nk)" test "$nk" -ge 20
	check "$type: joyent sequence grew past the reboot ($no)" test "$no" -ge 20
	check_fails "$type: stop of a stopped VM" "is not running" "${vmadm[@]}" stop "$KVM_UUID"

	# --- a guest that ignores ACPI: stop -t kills it after t seconds ---------
	printf 'VMWLCONF acpi=ignore\n' | dd of="$disk0" bs=512 seek=$((OFFSET / 512)) conv=notrunc status=none
	check "$type: start the kvm VM that ignores ACPI" "${vmadm[@]}" start "$KVM_UUID"
	qpid=$("${vmadm[@]}" get "$KVM_UUID" | $JSON pid)
	# Once records grow, acpid runs (rc started it before the workload).
	check "$type: noacpi guest booted" wl_wait_records $((nk + 5)) "$BOOT_WAIT" --offset "$OFFSET" "$disk0"
	# Watch the console to see the guest get the button press and ignore it;
	# the console ends when QEMU goes.
	rm -f "$T/cin-$type"
	mkfifo "$T/cin-$type"
	"${vmadm[@]}" console "$KVM_UUID" <"$T/cin-$type" >"$T/cout-acpi-$type" 2>&1 &
	cpid=$!
	T_PIDS+=("$cpid")
	exec 7>"$T/cin-$type"
	sleep 0.3
	t0=$(date +%s%N)
	check "$type: stop -t 3 of a guest ignoring ACPI" "${vmadm[@]}" stop "$KVM_UUID" -t 3
	el=$(elapsed_since "$t0")
	echo "# $type: stop -t 3 took ${el}s"
	check "$type: stop waited -t, then killed (3 <= ${el}s < 6)" awk "BEGIN {exit !($el >= 3 && $el < 6)}"
	for i in $(seq 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
	exec 7>&-
	check "$type: the guest got the power button and ignored it" \
		grep -q "vmadm-power-button: ignored" "$T/cout-acpi-$type"
	check "$type: console ended when QEMU went" bash -c "! kill -0 $cpid 2>/dev/null"
	check_eq "$type: stopped after the kill" stopped "$("${vmadm[@]}" list -H -o state uuid="$KVM_UUID")"
	check "$type: QEMU $qpid is gone after the kill" \
		bash -c "! tr '\0' ' ' </proc/$qpid/cmdline 2>/dev/null | grep -q $KVM_UUID"
	check "$type: records still gap-free after the kill" "$CHECK" --offset "$OFFSET" "$disk0"

	# --- killed behind vmadm's back: the next list says stopped -------------
	check "$type: start kvm again" "${vmadm[@]}" start "$KVM_UUID"
	check "$type: start joyent again" "${vmadm[@]}" start "$OS_UUID"
	qpid=$("${vmadm[@]}" get "$KVM_UUID" | $JSON pid)
	ipid=$("${vmadm[@]}" get "$OS_UUID" | $JSON pid)
	kill -9 "$qpid"
	for i in $(seq 50); do [ -e "/proc/$qpid" ] || break; sleep 0.1; done
	check_eq "$type: QEMU killed: next list says stopped" stopped \
		"$("${vmadm[@]}" list -H -o state uuid="$KVM_UUID")"
	check_eq "$type: QEMU killed: get says stopped/installed" "stopped installed" \
		"$("${vmadm[@]}" get "$KVM_UUID" | $JSON -a state zone_state)"
	kill -9 "$ipid"
	for i in $(seq 100); do
		[ "$("${vmadm[@]}" list -H -o state uuid="$OS_UUID")" = stopped ] && break
		sleep 0.1
	done
	check_eq "$type: container init killed: list says stopped" stopped \
		"$("${vmadm[@]}" list -H -o state uuid="$OS_UUID")"
	check "$type: start after the crash works" "${vmadm[@]}" start "$KVM_UUID"
	qpid=$("${vmadm[@]}" get "$KVM_UUID" | $JSON pid)
	kill -9 "$qpid"
	for i in $(seq 50); do [ -e "/proc/$qpid" ] || break; sleep 0.1; done
	# No vmadmd here: the records still say running (vmadmd.sh tests that).
	check_eq "$type: after the crashes the records still say running" "running running" \
		"$($JSON -f "$root/vms/$KVM_UUID.json" state) $($JSON -f "$root/vms/$OS_UUID.json" state)"

	# --- a disk dataset missing: start fails naming it, VM stays stopped ----
	if [ "$type" = btrfs ]; then
		btrfs subvolume delete "$root/zones/$KVM_UUID-disk1" >/dev/null 2>&1
		btrfs subvolume delete "$root/zones/$OS_UUID/data" >/dev/null 2>&1
	else
		rm -rf "$root/zones/$KVM_UUID-disk1" "$root/zones/$OS_UUID/data"
	fi
	check_fails "$type: start with disk1's dataset gone names it" \
		"disk dataset zones/$KVM_UUID-disk1 is missing" "${vmadm[@]}" start "$KVM_UUID"
	check_eq "$type: ... and the VM stays stopped (list, record)" "stopped stopped" \
		"$("${vmadm[@]}" list -H -o state uuid="$KVM_UUID") $($JSON -f "$root/vms/$KVM_UUID.json" state)"
	check_eq "$type: ... no QEMU was left" "" "$(pgrep -f "qemu-system-x86_64 -name $KVM_UUID")"
	check "$type: ... no run dir was left" test ! -e "$root/run/$KVM_UUID"
	check_fails "$type: joyent start with its data dataset gone names it" \
		"dataset zones/$OS_UUID/data is missing" "${vmadm[@]}" start "$OS_UUID"
	check_eq "$type: ... and the joyent VM stays stopped (list, record)" "stopped stopped" \
		"$("${vmadm[@]}" list -H -o state uuid="$OS_UUID") $($JSON -f "$root/vms/$OS_UUID.json" state)"
	check_fails "$type: stop of the crashed container says not running" "is not running" \
		"${vmadm[@]}" stop "$OS_UUID"

	check "$type: delete kvm VM (a dataset already gone)" "${vmadm[@]}" delete "$KVM_UUID"
	check "$type: delete joyent VM" "${vmadm[@]}" delete "$OS_UUID"
	check_eq "$type: nothing left but the images" "$KVM_IMAGE $OS_IMAGE" \
		"$(ls "$root/zones" | grep -v '^\.' | sort | xargs)"
}

brands btrfs
brands dir

# --- "provisioning": a create under way shows it; a dead one is undone ------
R=$T/n-dir
P_UUID=2c7d9e1f-3a4b-4c5d-8e6f-7a8b9c0d1e2f
echo "{\"brand\": \"kvm\", \"uuid\": \"$P_UUID\", \"disks\": [{\"size\": 16}]}" >"$T/p.json"
VMADM_FAULT=create-after-record VMADM_ROOT=$R "$VMADM" create -f "$T/p.json" >/dev/null 2>&1
check_eq "a create killed after writing the record: its record says provisioning" provisioning \
	"$($JSON -f "$R/vms/$P_UUID.json" state 2>&1)"
# While a command holds the VM's lock, the create counts as under way.
flock "$R/locks/$P_UUID.lock" sleep 3 &
T_PIDS+=("$!")
sleep 0.3
check_eq "list shows a create under way as provisioning" provisioning \
	"$(VMADM_ROOT=$R "$VMADM" list -H -o state uuid=$P_UUID)"
wait
check_eq "once nobody holds it, the next command undoes the dead create" "" \
	"$(VMADM_ROOT=$R "$VMADM" list -H -o uuid uuid=$P_UUID; ls "$R/vms" | grep "$P_UUID")"
t_done

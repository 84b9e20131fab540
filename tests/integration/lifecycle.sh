#!/usr/bin/env bash
# vmadm create/list/lookup/get/update/delete on a btrfs pool (a loop file)
# and on a dir pool: kvm VMs with several disks, joyent VMs with a delegated
# data dataset; the datasets exist, then are gone.
. "$(dirname "$0")/../lib/common.sh"

KVM_UUID=0c9d2a3e-5b1f-4c6e-9a47-3f2e1d0b7a61
OS_UUID=7e3b9f12-8a4d-4e2b-b6c1-2d5f8e9a0c34

lifecycle() {
	local type=$1 root
	root=$(node_make "n-$type" "$type" 1073741824)
	local vmadm=(on "$root" "$VMADM")

	cat >"$T/kvm.json" <<JSON
{"brand": "kvm", "uuid": "$KVM_UUID", "alias": "web-$type", "ram": 256, "vcpus": 2,
 "disks": [{"size": 64, "boot": true}, {"size": 32, "model": "ide"}],
 "nics": [{"nic_tag": "admin", "ip": "10.88.0.5", "netmask": "255.255.255.0"}],
 "customer_metadata": {"role": "web"}}
JSON
	cat >"$T/os.json" <<JSON
{"brand": "joyent", "uuid": "$OS_UUID", "alias": "db-$type", "max_physical_memory": 128,
 "delegate_dataset": true, "tags": {"tier": "db"}}
JSON
	check "$type: create kvm VM with two disks" "${vmadm[@]}" create -f "$T/kvm.json"
	check "$type: create joyent VM from stdin" sh -c "VMADM_ROOT=$root $VMADM create < $T/os.json"

	# Datasets really exist in the pool.
	check "$type: zones/UUID of kvm VM exists" test -d "$root/zones/$KVM_UUID"
	check_eq "$type: disk0 volume is 64 MiB" 67108864 "$(stat -c %s "$root/zones/$KVM_UUID-disk0/disk.raw" 2>&1)"
	check_eq "$type: disk1 volume is 32 MiB" 33554432 "$(stat -c %s "$root/zones/$KVM_UUID-disk1/disk.raw" 2>&1)"
	check_eq "$type: disk0 is sparse" 0 "$(stat -c %b "$root/zones/$KVM_UUID-disk0/disk.raw" 2>&1)"
	check "$type: joyent root dir exists" test -d "$root/zones/$OS_UUID/root"
	check "$type: delegated data dataset exists" test -d "$root/zones/$OS_UUID/data"
	if [ "$type" = btrfs ]; then
		check "btrfs: datasets are subvolumes" sh -c "btrfs subvolume list $root/zones | grep -q ' $KVM_UUID-disk1\$' && btrfs subvolume list $root/zones | grep -q ' $OS_UUID/data\$'"
		check "btrfs: pool is a loop-mounted btrfs" sh -c "findmnt -n -o FSTYPE $root/zones | grep -qx btrfs && test -f $root/pool.img"
	fi

	# list
	"${vmadm[@]}" list >"$T/list.out" 2>&1
	check_grep "$type: list has a header" -q '^UUID  *TYPE  *RAM  *STATE  *ALIAS' "$T/list.out"
	check "$type: list shows the kvm VM" grep -Eq "^$KVM_UUID +KVM +256 +stopped +web-$type\$" "$T/list.out"
	check "$type: list shows the joyent VM" grep -Eq "^$OS_UUID +OS +128 +stopped +db-$type\$" "$T/list.out"
	check_eq "$type: list -p -o filters" "$OS_UUID:db-$type" "$("${vmadm[@]}" list -p -o uuid,alias brand=joyent)"
	check_eq "$type: list -H -s -ram" "$KVM_UUID $OS_UUID" "$("${vmadm[@]}" list -H -o uuid -s -ram | xargs)"
	check_eq "$type: list regex filter" "$KVM_UUID" "$("${vmadm[@]}" list -H -o uuid 'alias=~^web')"
	check_eq "$type: list dotted filter" "$OS_UUID" "$("${vmadm[@]}" list -H -o uuid tags.tier=db)"

	# lookup
	check_eq "$type: lookup -1" "$KVM_UUID" "$("${vmadm[@]}" lookup -1 alias=web-$type)"
	check_fails "$type: lookup -1 with two matches fails" "2 VMs match" "${vmadm[@]}" lookup -1
	check_eq "$type: lookup -j -o" "db-$type" "$("${vmadm[@]}" lookup -j -o alias brand=joyent | $JSON 0.alias)"

	# get | json, as the SmartOS note does
	local disks
	disks=$("${vmadm[@]}" get "$KVM_UUID" | $JSON disks zfs_filesystem)
	check "$type: get | json disks zfs_filesystem shows disk0" grep -q "\"zfs_filesystem\": \"zones/$KVM_UUID-disk0\"" <<<"$disks"
	check "$type: ... and disk1" grep -q "\"zfs_filesystem\": \"zones/$KVM_UUID-disk1\"" <<<"$disks"
	check_eq "$type: ... then the VM's own zfs_filesystem" "zones/$KVM_UUID" "$(tail -n 1 <<<"$disks")"
	check_eq "$type: disk paths point at the volumes" "$root/zones/$KVM_UUID-disk1/disk.raw" \
		"$("${vmadm[@]}" get "$KVM_UUID" | $JSON disks.1.path)"
	local os
	os=$("${vmadm[@]}" get "$OS_UUID" | $JSON zfs_filesystem datasets filesystems)
	check_eq "$type: get | json zfs_filesystem datasets" "zones/$OS_UUID" "$(head -n 1 <<<"$os")"
	check "$type: datasets lists zones/UUID/data" grep -q "\"zones/$OS_UUID/data\"" <<<"$os"
	check_eq "$type: zonepath" "$root/zones/$OS_UUID" "$("${vmadm[@]}" get "$OS_UUID" | $JSON zonepath)"
	check_eq "$type: nic got a MAC" 1 "$("${vmadm[@]}" get "$KVM_UUID" | $JSON nics.0.mac | grep -Ec '^([0-9a-f]{2}:){5}[0-9a-f]{2}$')"

	# update
	check "$type: update PROP=VALUE" "${vmadm[@]}" update "$KVM_UUID" alias=renamed ram=512 autoboot=false
	check_eq "$type: update took" "renamed 512 false" \
		"$("${vmadm[@]}" get "$KVM_UUID" | $JSON -a alias ram autoboot)"
	echo '{"set_customer_metadata": {"a": "1"}, "remove_customer_metadata": ["role"], "set_tags": {"x": true}}' >"$T/upd.json"
	check "$type: update -f with set_/remove_" "${vmadm[@]}" update "$KVM_UUID" -f "$T/upd.json"
	check_eq "$type: metadata updated" '{"a":"1"}' "$("${vmadm[@]}" get "$KVM_UUID" | $JSON -o json-0 customer_metadata)"
	check_fails "$type: update of brand refused" "property 'brand' cannot be updated" \
		"${vmadm[@]}" update "$KVM_UUID" brand=joyent

	# delete
	check "$type: delete kvm VM" "${vmadm[@]}" delete "$KVM_UUID"
	check "$type: delete joyent VM" "${vmadm[@]}" delete "$OS_UUID"
	check_eq "$type: no datasets left" "" "$(ls "$root/zones" | grep -v '^\.' | xargs)"
	check_eq "$type: no records left" "" "$(ls "$root/vms" | xargs)"
	check_eq "$type: list is empty" "" "$("${vmadm[@]}" list -H)"
	check_fails "$type: get of a deleted VM" "VM $KVM_UUID not found" "${vmadm[@]}" get "$KVM_UUID"
	if [ "$type" = btrfs ]; then
		check_eq "btrfs: no subvolumes left" "" "$(btrfs subvolume list -o "$root/zones" | grep -v '\.snapshots' | xargs)"
	fi
}

lifecycle btrfs
lifecycle dir
t_done

#!/usr/bin/env bash
# Bad input to vmadm: a clear message naming the property and the reason, a
# non-zero exit, and nothing created. Also: interrupted creates and deletes
# are cleaned up by the next command, and the per-VM lock serialises
# commands.
. "$(dirname "$0")/../lib/common.sh"

root=$(node_make n btrfs 1073741824)
vmadm() { VMADM_ROOT=$root "$VMADM" "$@"; }
U=3d6f1c2a-9b8e-4f7d-a5c3-1e2b4d6f8a90

# nothing_left NAME: no VM record, no dataset, no temp file in the pool.
nothing_left() {
	check_eq "$1: nothing left behind" "" \
		"$(ls "$root/vms"; ls "$root/zones" | grep -v '^\.snapshots$')"
}

bad() { # NAME EXPECTED PAYLOAD
	local name=$1 want=$2
	printf '%s' "$3" >"$T/p.json"
	check_fails "$name" "$want" vmadm create -f "$T/p.json"
	nothing_left "$name"
}

bad "invalid JSON" "invalid JSON at line 1" '{"brand": "kvm",'
bad "not an object" "JSON object" '[1,2]'
bad "unknown brand" "unknown brand \"bhyve\"" '{"brand": "bhyve"}'
bad "missing brand" "missing required property 'brand'" '{"alias": "x"}'
bad "unknown property" "unknown property 'flavour'" '{"brand": "joyent", "flavour": "x"}'
bad "computed property" "property 'state'" '{"brand": "joyent", "state": "running"}'
bad "bad UUID" "property 'uuid'" '{"brand": "joyent", "uuid": "not-a-uuid"}'
bad "negative disk size" "disks[0].size" '{"brand": "kvm", "disks": [{"size": -5}]}'
bad "absurd disk size" "disks[0].size" '{"brand": "kvm", "disks": [{"size": 99999999999}]}'
bad "string as ram" "property 'ram'" '{"brand": "kvm", "ram": "lots"}'
bad "disks on joyent" "property 'disks' is not valid for brand joyent" '{"brand": "joyent", "disks": [{"size": 10}]}'
bad "two boot disks" "boot" '{"brand": "kvm", "disks": [{"size": 8, "boot": true}, {"size": 8, "boot": true}]}'
bad "disk that does not fit" "does not fit in pool zones" \
	"{\"brand\": \"kvm\", \"uuid\": \"$U\", \"disks\": [{\"size\": 512}, {\"size\": 4096}]}"
bad "missing image" "is not installed" \
	'{"brand": "kvm", "disks": [{"image_uuid": "11111111-2222-4333-8444-555555555555"}]}'

# A duplicate UUID: the first create works, the second is refused and the
# first VM is untouched.
printf '{"brand": "joyent", "uuid": "%s", "alias": "first"}' "$U" >"$T/p.json"
check "create for the duplicate test" vmadm create -f "$T/p.json"
printf '{"brand": "joyent", "uuid": "%s", "alias": "second"}' "$U" >"$T/p.json"
check_fails "duplicate UUID" "VM $U already exists" vmadm create -f "$T/p.json"
check_eq "duplicate: first VM untouched" first "$(vmadm get $U | $JSON alias)"
check_fails "get with a bad UUID" "invalid UUID" vmadm get nope
check_fails "validate reports the property" "property 'vcpus'" \
	sh -c "echo '{\"brand\":\"kvm\",\"vcpus\":0}' | VMADM_ROOT=$root $VMADM validate create"
check "validate a good payload" sh -c "echo '{\"brand\":\"kvm\",\"vcpus\":2}' | VMADM_ROOT=$root $VMADM validate create | grep -q VALID"
check "delete for the duplicate test" vmadm delete $U
nothing_left "after delete"

# A crash between the steps of create (after the datasets, before the record
# is final) leaves a half VM; the next command removes it and says so.
printf '{"brand": "kvm", "uuid": "%s", "disks": [{"size": 16}]}' "$U" >"$T/p.json"
VMADM_FAULT=create-after-datasets vmadm create -f "$T/p.json" >/dev/null 2>&1
check "crashed create left its datasets (precondition)" test -d "$root/zones/$U-disk0"
check_fails "next command reports the cleanup" "interrupted create" sh -c "VMADM_ROOT=$root $VMADM list >/dev/null 2>$T/err; cat $T/err; false"
nothing_left "crashed create"

# Same for delete.
check "create for the delete crash" vmadm create -f "$T/p.json"
VMADM_FAULT=delete-after-datasets vmadm delete $U >/dev/null 2>&1
check "next command finishes the delete" sh -c "VMADM_ROOT=$root $VMADM list 2>&1 >/dev/null | grep -q 'interrupted delete'"
nothing_left "crashed delete"

# The per-VM lock: an update waits for a holder of the VM's lock.
check "create for the lock test" vmadm create -f "$T/p.json"
flock "$root/locks/$U.lock" sleep 2 &
T_PIDS+=($!)
sleep 0.3
start=$(date +%s%N)
check "update waits for the lock, then works" vmadm update $U alias=locked
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
if [ "$elapsed" -ge 1200 ]; then ok "update waited for the lock (${elapsed} ms)"; else fail "update did not wait (${elapsed} ms)"; fi
check "delete after the lock test" vmadm delete $U
nothing_left "end"
t_done

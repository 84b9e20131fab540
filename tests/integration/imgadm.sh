#!/usr/bin/env bash
# imgadm on a btrfs pool and on a dir pool: install the two test images,
# list, get; delete refused while a VM was created from the image, done
# after; a file whose sha1 or size does not match its manifest is refused
# before anything is made; manifests with bad fields are refused naming the
# field; a gzip-compressed zvol image installs to the same volume.
. "$(dirname "$0")/../lib/common.sh"

IMAGES=$BUILD/images
KVM_IMAGE=7020aa70-c7a8-5bdc-8ae3-24bb98294d0d
OS_IMAGE=c98299bc-510a-5eea-b958-3452684885a0

if ! "$TOP/images/build" >"$T/images.log" 2>&1; then
	fail "images/build: $(tail -n 3 "$T/images.log" | tr '\n' ' ')"
	exit 1
fi

# edit_manifest IN OUT PYTHON: OUT is IN with the statement applied to m.
edit_manifest() {
	python3 -c "import json,sys
m = json.load(open(sys.argv[1]))
$3
json.dump(m, open(sys.argv[2], 'w'))" "$1" "$2"
}

# nothing_of ROOT UUID: what an image UUID may have left: dataset,
# snapshot, manifest (prints them; empty when clean).
nothing_of() {
	local root=$1 u=$2
	ls -d "$root/zones/$u" "$root/images/$u.json" 2>/dev/null
	find "$root/zones/.snapshots" -name "*$u*" 2>/dev/null
	if [ -f "$root/pool.img" ]; then
		btrfs subvolume list "$root/zones" 2>/dev/null | grep "$u"
	fi
	ls "$root/zones/.recv" 2>/dev/null
}

images() {
	local type=$1 root
	root=$(node_make "n-$type" "$type" 1073741824)
	local imgadm=(on "$root" "$IMGADM") vmadm=(on "$root" "$VMADM")

	# --- hash and size mismatches: refused, nothing made -------------------
	cp "$IMAGES/kvm-test.img" "$T/bad.img"
	# Flip one byte in the middle of the boot partition.
	printf '\xff' | dd of="$T/bad.img" bs=1 seek=$((4 << 20)) conv=notrunc status=none
	local want got
	want=$($JSON -f "$IMAGES/kvm-test.json" files.0.sha1)
	got=$(sha1sum "$T/bad.img" | cut -d' ' -f1)
	check "$type: the flipped copy really differs" test "$want" != "$got"
	check_fails "$type: sha1 mismatch refused" \
		"$T/bad.img: sha1 mismatch: the manifest says $want, the file has $got" \
		"${imgadm[@]}" install -m "$IMAGES/kvm-test.json" -f "$T/bad.img"
	check_eq "$type: sha1 mismatch: no dataset, snapshot or manifest" "" "$(nothing_of "$root" "$KVM_IMAGE")"
	check_eq "$type: sha1 mismatch: imgadm list is empty" "0" "$("${imgadm[@]}" list -j | $JSON length)"

	head -c $((32 << 20)) "$IMAGES/kvm-test.img" >"$T/short.img"
	check_fails "$type: size mismatch refused" \
		"$T/short.img: size mismatch: the manifest says 67108864 bytes, the file has 33554432" \
		"${imgadm[@]}" install -m "$IMAGES/kvm-test.json" -f "$T/short.img"
	check_eq "$type: size mismatch: nothing left" "" "$(nothing_of "$root" "$KVM_IMAGE")"

	cp "$IMAGES/joyent-test.tar.gz" "$T/bad.tar.gz"
	printf '\x00' | dd of="$T/bad.tar.gz" bs=1 seek=1000 conv=notrunc status=none
	check_fails "$type: joyent image sha1 mismatch refused" "sha1 mismatch" \
		"${imgadm[@]}" install -m "$IMAGES/joyent-test.json" -f "$T/bad.tar.gz"
	check_eq "$type: joyent mismatch: nothing left" "" "$(nothing_of "$root" "$OS_IMAGE")"
	check_fails "$type: missing file" "open $T/nope.img" \
		"${imgadm[@]}" install -m "$IMAGES/kvm-test.json" -f "$T/nope.img"

	# --- manifests with bad fields --------------------------------------
	local m=$IMAGES/kvm-test.json bad=$T/bad.json
	local -a cases=(
		"del m['uuid']|'uuid' is missing or not a UUID"
		"m['uuid'] = 'not-a-uuid'|'uuid' is missing or not a UUID"
		"del m['name']|'name' is missing"
		"m['version'] = ''|'version' is missing"
		"m['type'] = 'lx-dataset'|'type' must be \"zvol\" or \"zone-dataset\""
		"m['files'] = []|'files' must list exactly one file"
		"m['files'].append(dict(m['files'][0]))|'files' must list exactly one file"
		"m['files'][0]['sha1'] = 'xyz'|'files[0].sha1' is not a SHA-1"
		"m['files'][0]['size'] = -1|'files[0].size' is not a size"
		"m['files'][0]['size'] = '64M'|'files[0].size' is not a size"
		"m['files'][0]['compression'] = 'zip'|'files[0].compression' \"zip\" unknown"
	)
	local c
	for c in "${cases[@]}"; do
		edit_manifest "$m" "$bad" "${c%%|*}"
		check_fails "$type: manifest ${c%%|*}: refused" "${c#*|}" \
			"${imgadm[@]}" install -m "$bad" -f "$IMAGES/kvm-test.img"
	done
	echo '{"uuid": ' >"$bad"
	check_fails "$type: manifest that is not JSON: refused" "invalid JSON" \
		"${imgadm[@]}" install -m "$bad" -f "$IMAGES/kvm-test.img"
	check_eq "$type: bad manifests: nothing left" "" "$(nothing_of "$root" "$KVM_IMAGE")"

	# --- hostile archives: refused, nothing written outside, nothing left ----
	local hostile=9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a name
	for name in ../evil-$type /tmp/evil-$type ok/../../evil-$type; do
		python3 -c "import io,sys,tarfile
t = tarfile.open(sys.argv[1], 'w:gz')
for n in ('sbin', sys.argv[2]):
    i = tarfile.TarInfo(n); d = b'x'; i.size = len(d); t.addfile(i, io.BytesIO(d))
t.close()" "$T/hostile.tar.gz" "$name"
		edit_manifest "$IMAGES/joyent-test.json" "$T/hostile.json" \
			"m.update(uuid='$hostile'); m['files'][0].update(sha1='$(sha1sum "$T/hostile.tar.gz" | cut -d' ' -f1)', size=$(stat -c %s "$T/hostile.tar.gz"))"
		check_fails "$type: archive entry $name: refused" "entry \"$name\" escapes the root" \
			"${imgadm[@]}" install -m "$T/hostile.json" -f "$T/hostile.tar.gz"
		check_eq "$type: archive entry $name: nothing left, nothing written outside" "" \
			"$(nothing_of "$root" "$hostile"; ls -d "$root/zones/evil-$type" "$root/zones/$hostile/evil-$type" "/tmp/evil-$type" "$T/evil-$type" 2>/dev/null)"
	done

	# --- install, list, get ---------------------------------------------
	check "$type: install kvm-test" "${imgadm[@]}" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
	check "$type: install joyent-test" "${imgadm[@]}" install -m "$IMAGES/joyent-test.json" -f "$IMAGES/joyent-test.tar.gz"
	check_fails "$type: install twice refused" "image $KVM_IMAGE is already installed" \
		"${imgadm[@]}" install -m "$IMAGES/kvm-test.json" -f "$IMAGES/kvm-test.img"
	"${imgadm[@]}" list >"$T/list" 2>&1
	check "$type: list header" grep -Eq '^UUID +NAME +VERSION +OS +TYPE$' "$T/list"
	check_eq "$type: list sorted by name" "joyent-test kvm-test" "$(awk 'NR > 1 {print $2}' "$T/list" | xargs)"
	check "$type: list shows kvm-test" grep -Eq "^$KVM_IMAGE +kvm-test +1.0.0 +linux +zvol\$" "$T/list"
	check "$type: list shows joyent-test" grep -Eq "^$OS_IMAGE +joyent-test +1.0.0 +linux +zone-dataset\$" "$T/list"
	check_eq "$type: list -j" "$OS_IMAGE $KVM_IMAGE" "$("${imgadm[@]}" list -j | $JSON -a uuid | xargs)"
	check_eq "$type: get: name state image_size" "kvm-test active 64" \
		"$("${imgadm[@]}" get "$KVM_IMAGE" | $JSON -a name state image_size)"
	check_eq "$type: get keeps the manifest's sha1" "$want" "$("${imgadm[@]}" get "$KVM_IMAGE" | $JSON files.0.sha1)"
	check_fails "$type: get of an unknown image" "image 00000000-0000-4000-8000-000000000000 is not installed" \
		"${imgadm[@]}" get 00000000-0000-4000-8000-000000000000
	check_fails "$type: get of a bad uuid" 'invalid image UUID "nope"' "${imgadm[@]}" get nope
	check "$type: kvm image volume equals the file" cmp "$root/zones/$KVM_IMAGE/disk.raw" "$IMAGES/kvm-test.img"
	check "$type: joyent image root has busybox" test -x "$root/zones/$OS_IMAGE/root/bin/busybox"
	check_eq "$type: joyent image root files owned by root" "" \
		"$(find "$root/zones/$OS_IMAGE/root" ! -user 0 | head -3)"
	if [ "$type" = btrfs ]; then
		check "btrfs: image dataset is a subvolume" bash -c \
			"btrfs subvolume list '$root/zones' | grep -q ' $KVM_IMAGE\$'"
		check_eq "btrfs: its @final is a read-only snapshot" "ro=true" \
			"$(btrfs property get -ts "$root/zones/.snapshots/$KVM_IMAGE/@final" ro 2>&1)"
	fi

	# --- delete refused while a VM uses the image, done after ---------
	echo "{\"brand\": \"kvm\", \"uuid\": \"5d0b1c3e-7a2f-4e8d-9b61-3c4f5a6e7d80\", \"disks\": [{\"image_uuid\": \"$KVM_IMAGE\"}]}" >"$T/k.json"
	echo "{\"brand\": \"joyent\", \"uuid\": \"6e1c2d4f-8b3a-4f9e-8c72-4d5e6b7f8e91\", \"image_uuid\": \"$OS_IMAGE\"}" >"$T/j.json"
	check "$type: create a kvm VM from the image" "${vmadm[@]}" create -f "$T/k.json"
	check "$type: create a joyent VM from the image" "${vmadm[@]}" create -f "$T/j.json"
	check_fails "$type: delete of an image a kvm VM uses: refused" \
		"image $KVM_IMAGE is in use by VM 5d0b1c3e-7a2f-4e8d-9b61-3c4f5a6e7d80" \
		"${imgadm[@]}" delete "$KVM_IMAGE"
	check_fails "$type: delete of an image a joyent VM uses: refused" \
		"image $OS_IMAGE is in use by VM 6e1c2d4f-8b3a-4f9e-8c72-4d5e6b7f8e91" \
		"${imgadm[@]}" delete "$OS_IMAGE"
	check "$type: ... the image is still there" test -f "$root/zones/$KVM_IMAGE/disk.raw"
	check_eq "$type: ... and listed" 2 "$("${imgadm[@]}" list -j | $JSON length)"
	check "$type: delete the VMs" "${vmadm[@]}" delete 5d0b1c3e-7a2f-4e8d-9b61-3c4f5a6e7d80
	check "$type: ..." "${vmadm[@]}" delete 6e1c2d4f-8b3a-4f9e-8c72-4d5e6b7f8e91
	check "$type: delete kvm image" "${imgadm[@]}" delete "$KVM_IMAGE"
	check "$type: delete joyent image" "${imgadm[@]}" delete "$OS_IMAGE"
	check_eq "$type: deleted: nothing left of kvm-test" "" "$(nothing_of "$root" "$KVM_IMAGE")"
	check_eq "$type: deleted: nothing left of joyent-test" "" "$(nothing_of "$root" "$OS_IMAGE")"
	check_eq "$type: list is empty" "0" "$("${imgadm[@]}" list -j | $JSON length)"
	check_fails "$type: delete of a deleted image" "image $KVM_IMAGE is not installed" \
		"${imgadm[@]}" delete "$KVM_IMAGE"

	# --- a gzip-compressed zvol image -----------------------------------
	gzip -c "$IMAGES/kvm-test.img" >"$T/kvm.img.gz"
	edit_manifest "$IMAGES/kvm-test.json" "$T/gz.json" \
		"m['files'][0].update(sha1='$(sha1sum "$T/kvm.img.gz" | cut -d' ' -f1)', size=$(stat -c %s "$T/kvm.img.gz"), compression='gzip')"
	check "$type: install a gzip zvol image" "${imgadm[@]}" install -m "$T/gz.json" -f "$T/kvm.img.gz"
	check "$type: gzip image: volume equals the raw image" cmp "$root/zones/$KVM_IMAGE/disk.raw" "$IMAGES/kvm-test.img"
	check "$type: gzip image: delete" "${imgadm[@]}" delete "$KVM_IMAGE"
	check_eq "$type: pool is empty at the end" "" "$(ls "$root/zones" | xargs)"
}

images btrfs
images dir
t_done

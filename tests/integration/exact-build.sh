#!/usr/bin/env bash
# An exact build (issue 12, item 5): the meson.build files name exactly the
# sources and tests that exist, with no "build it if it exists" guards.
#
# In a copy of the tree under $T (the tree itself is never touched): every C
# source and every integration test is named by a meson.build; the copy as
# it is sets up; and removing one named file at a time (a source of each
# library part, of each program, a tool, a fuzz harness, a unit test, an
# integration test and one of their drivers) makes `meson setup` fail naming
# it, and makes the build of a copy already set up (what `make` runs) fail
# naming it too. Nothing is compiled: `ninja -n` plans the build.
. "$(dirname "$0")/../lib/common.sh"

SRC=$T/tree
mkdir -p "$SRC"
tar -C "$TOP" --exclude=./.git --exclude='./build*' --exclude=./images/cache -cf - . |
	tar -C "$SRC" -xf -
check "the tree is copied" test -f "$SRC/meson.build"

# not_named FILE...: each FILE (a path under $SRC) that the nearest
# meson.build above it does not name as 'PATH' (PATH relative to that
# meson.build's folder).
not_named() {
	local f d
	for f in "$@"; do
		d=$(dirname "$f")
		while [ ! -f "$d/meson.build" ]; do d=$(dirname "$d"); done
		grep -qF "'${f#"$d/"}'" "$d/meson.build" || echo "${f#"$SRC/"}"
	done
}
mapfile -t sources < <(find "$SRC" -name '*.c' | LC_ALL=C sort)
check "the tree has C sources (${#sources[@]})" test "${#sources[@]}" -gt 50
check_eq "every C source is named by a meson.build" "" "$(not_named "${sources[@]}" | tr '\n' ' ')"
check_eq "every integration test is named by tests/integration/meson.build" "" \
	"$(not_named "$SRC"/tests/integration/*.sh | tr '\n' ' ')"
check_eq "no meson.build builds a file only if it exists" "" \
	"$(cd "$SRC" && grep -rln --include=meson.build 'fs\.exists' . | tr '\n' ' ')"

check "the copy sets up" meson setup "$T/build" "$SRC"
check "the copy's build plans" ninja -C "$T/build" -n

# without REL: the copy without the file REL (relative to $SRC) neither sets
# up nor builds, and both say which file is missing.
without() {
	local rel=$1 name
	name=$(basename "$rel")
	if [ ! -f "$SRC/$rel" ]; then
		fail "without $rel: no such file in the tree"
		return
	fi
	mv "$SRC/$rel" "$T/aside"
	check_fails "without $rel: meson setup fails naming it" "$name does not exist" \
		meson setup "$T/build-without" "$SRC"
	check_fails "without $rel: the build of a tree set up fails naming it" \
		"$rel', needed by" ninja -C "$T/build" -n
	mv "$T/aside" "$SRC/$rel"
	rm -rf "$T/build-without"
}
# first DIR PATTERN: the first file of DIR (relative to $SRC) that matches.
first() {
	(cd "$SRC" && find "$1" -name "$2" | LC_ALL=C sort | head -n 1)
}

for part in "$SRC"/src/libvmadm/*/; do
	without "$(first "src/libvmadm/$(basename "$part")" '*.c')"
done
# migrate/'s layers are folders of their own
for layer in "$SRC"/src/libvmadm/migrate/*/; do
	without "$(first "src/libvmadm/migrate/$(basename "$layer")" '*.c')"
done
without "$(first src/vmadm 'cmd-*.c')"
without src/vmadm/main.c
without src/vmadmd/main.c
without src/imgadm/main.c
without "$(first tools '*.c')"
without "$(first fuzz 'fuzz-*.c')"
without "$(first tests/unit 'test-*.c')"
without "$(first tests/integration '*.sh')"
without "$(first tests/integration '*-ops.c')"

check "with every file back, the build plans again" ninja -C "$T/build" -n
t_done

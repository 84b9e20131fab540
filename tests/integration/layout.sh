#!/usr/bin/env bash
# The shape of the tree that docs/architecture.md describes (issue 12), kept
# true by the suite: migrate/ reaches QEMU, LXC and the pools only through
# the brand and storage ops tables; no include cycle between two modules of
# one folder; no file of migrate/ over 800 lines, no library function over
# 150; every file docs/architecture.md names exists. tests/lib/layout.py
# finds the breaches; it is first shown to find planted ones.
. "$(dirname "$0")/../lib/common.sh"

LAYOUT=$TOP/tests/lib/layout.py
LIB=$TOP/src/libvmadm

# The checker finds what it is for, in a planted tree under $T.
# finds NAME PATTERN CMD...: CMD's output has a line matching PATTERN.
finds() {
	local name=$1 pattern=$2
	shift 2
	"$@" >"$T/finds.out" 2>&1
	check_grep "$name" -e "$pattern" "$T/finds.out"
}
P=$T/planted
mkdir -p "$P/part"
printf '#include "part/b.h"\nint a(void) { return 0; }\n' >"$P/part/a.c"
printf '#include "part/a.h"\nint b(void) { return 0; }\n' >"$P/part/b.c"
printf '#include "part/c.h"\n' >"$P/part/c.c"
touch "$P/part/a.h" "$P/part/b.h"
printf '#include "part/a.h"\n' >"$P/part/c.h"
{
	echo 'static int long_one(void)'
	echo '{'
	for i in $(seq 1 150); do echo "	x($i);"; done
	echo '}'
} >"$P/part/long.c"
finds "planted: a.c and b.c including each other is a cycle" \
	"include cycle: part/a -> part/b -> part/a" python3 "$LAYOUT" cycles "$P"
check_eq "planted: c.c through its own header is no cycle" "" \
	"$(python3 "$LAYOUT" cycles "$P" | grep 'part/c' || true)"
finds "planted: a 153-line function is found" "part/long.c: long_one is 153 lines" \
	python3 "$LAYOUT" long-functions "$P" 150
finds "planted: a 155-line file is found" "part/long.c is 15[0-9] lines" \
	python3 "$LAYOUT" long-files "$P" 100
printf 'See `src/libvmadm/nowhere.c` and `README.md`.\n' >"$P/doc.md"
check_eq "planted: a doc naming a missing file" \
	"doc.md names src/libvmadm/nowhere.c, which does not exist" \
	"$(python3 "$LAYOUT" doc-names "$P/doc.md" "$TOP")"

# The tree.
check_eq "no include cycle between two modules of one folder of libvmadm" "" \
	"$(python3 "$LAYOUT" cycles "$LIB" | tr '\n' ' ')"
check_eq "no library function over 150 lines" "" \
	"$(python3 "$LAYOUT" long-functions "$LIB" 150 | tr '\n' ' ')"
check_eq "no file of migrate/ over 800 lines" "" \
	"$(python3 "$LAYOUT" long-files "$LIB/migrate" 800 | tr '\n' ' ')"
check_eq "migrate/ includes no liblxc, QMP or brand-private header" "" \
	"$(grep -rln 'lxccontainer.h\|brand/kvm.h\|brand/joyent.h\|qmp/' "$LIB/migrate" | tr '\n' ' ')"
check_eq "migrate/ compares no brand name" "" \
	"$(grep -rn '"kvm"\|"joyent"' "$LIB/migrate" | tr '\n' ' ')"
check_eq "only storage/ sees the pools' insides and encodings" "" \
	"$(grep -rln 'pool-private.h\|VM_ENC_BTRFS\|pool_snappath' "$LIB" | grep -v "$LIB/storage/" | tr '\n' ' ')"
check_eq "migrate/ has its three layers and nothing beside them but its API" \
	"local migrate.h modes transport" "$(ls "$LIB/migrate" | tr '\n' ' ' | sed 's/ $//')"
check "docs/architecture.md exists" test -s "$TOP/docs/architecture.md"
check_eq "every file docs/architecture.md names exists" "" \
	"$(python3 "$LAYOUT" doc-names "$TOP/docs/architecture.md" "$TOP" | tr '\n' ' ')"
t_done

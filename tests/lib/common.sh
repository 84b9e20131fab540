# Shared helpers for integration tests. Source it first:
#     . "$(dirname "$0")/../lib/common.sh"
#
# Everything a test makes lives under $T (a fresh temporary directory):
# node roots, loop files and their mounts. The EXIT trap stops the processes
# the test registered (by PID), unmounts what is mounted under $T, deletes the
# network namespaces the test registered, and removes $T. Nothing else is
# touched.

set -u
TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-$TOP/build}
VMADM=${VMADM_BIN:-$BUILD/src/vmadm/vmadm}
VMADMD=${VMADMD_BIN:-$BUILD/src/vmadmd/vmadmd}
IMGADM=${IMGADM_BIN:-$BUILD/src/imgadm/imgadm}
T=$(mktemp -d /tmp/vmadm-test.XXXXXX)
T_PIDS=()
T_NETNS=()
T_CLEANUPS=()
T_FAILED=0

t_cleanup() {
	local i pid
	for ((i = ${#T_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${T_CLEANUPS[$i]}" >/dev/null 2>&1 || true
	done
	for pid in "${T_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
	done
	# Processes the product started for our nodes (QEMU, containers,
	# vmadmd) write pidfiles under their node root; stop those only.
	for pidf in $(find "$T" -name '*.pid' 2>/dev/null); do
		pid=$(cat "$pidf" 2>/dev/null)
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		# Only if that process really belongs to this test: its command
		# line or cwd mentions $T.
		if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q "$T"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	# Containers the product started for our nodes: LXC keeps no pidfile,
	# and lxc-stop cannot reach a monitor started in another network
	# namespace (its socket is abstract). A monitor whose command line names
	# our $T is ours: kill its child, the container's init (the rest of the
	# container dies with it), then the monitor. A running container would
	# keep its pool busy, and with it the pool's loop device.
	for pid in $(pgrep -f "^\[lxc monitor\] $T/"); do
		pkill -KILL -P "$pid" 2>/dev/null || true
		kill -KILL "$pid" 2>/dev/null || true
	done
	sleep 0.2
	# zfs nodes: destroy the zpools this test's nodes named (only those, and
	# only while they exist), then stop the zfs-fuse daemon if this test
	# started it (by its PID), before the mounts under $T go.
	zfs_cleanup
	# Unmount everything under $T, deepest first.
	awk -v t="$T" '$5 ~ "^"t {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	for ns in "${T_NETNS[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	# Loop devices of files under $T that autoclear did not release.
	losetup -nO NAME,BACK-FILE 2>/dev/null | awk -v t="$T" 'index($2, t) == 1 {print $1}' |
		while read -r dev; do losetup -d "$dev" 2>/dev/null; done
	rm -rf "$T"
}
trap t_cleanup EXIT
trap 'exit 130' INT TERM

t_defer() { T_CLEANUPS+=("$*"); }

ok() { echo "ok - $*"; }
fail() {
	echo "not ok - $*"
	T_FAILED=1
}
skip() { echo "skip - $*"; }

# check NAME CMD...: ok when CMD succeeds.
check() {
	local name=$1
	shift
	if "$@" >"$T/.check.out" 2>&1; then
		ok "$name"
	else
		fail "$name: $(tail -n 5 "$T/.check.out" | tr '\n' ' ')"
	fi
}

# write_fd FD TEXT: printf TEXT (a printf format) to file descriptor FD (a
# fifo to a console, say). A reader that died makes it fail, so that the
# check after it says what was missing, instead of SIGPIPE killing the test.
write_fd() { (trap '' PIPE; printf "$2" >&"$1") 2>/dev/null; }

# check_grep NAME GREP_ARGS... FILE: FILE must match; on failure the check
# shows the end of FILE, so a CI log says what was there instead.
check_grep() {
	local name=$1 file=${!#}
	shift
	if grep "$@" >/dev/null 2>&1; then
		ok "$name"
	else
		fail "$name: $file ends: $(tail -n 3 "$file" 2>&1 | tr '\n' ' ' | head -c 400)"
	fi
}

# check_fails NAME EXPECTED_SUBSTRING CMD...: CMD must fail and print the
# substring (stdout or stderr).
check_fails() {
	local name=$1 want=$2 rc
	shift 2
	"$@" >"$T/.check.out" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$name: succeeded, expected failure"
	elif ! grep -qF -- "$want" "$T/.check.out"; then
		fail "$name: exit $rc, but output lacks '$want': $(head -c 400 "$T/.check.out" | tr '\n' ' ')"
	else
		ok "$name"
	fi
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# zfs pools run on zfs-fuse, whose daemon is one per machine. State lives in
# files under $T/.zfs (node_make runs in a command substitution, a subshell):
# pid, the daemon's pidfile when this test started it, and zpools, the
# names of the zpools this test's nodes use (vmt-PID-NAME: unique to the run).
T_ZFS=$T/.zfs

# zfs_daemon: start the zfs-fuse daemon when none runs, and wait until it
# answers. One already running (another test's, the machine's) is used and
# never stopped.
zfs_daemon() {
	local i
	mkdir -p "$T_ZFS"
	if ! pgrep -x zfs-fuse >/dev/null; then
		zfs-fuse -p "$T_ZFS/pid" --no-kstat-mount </dev/null >/dev/null 2>&1 || return 1
	fi
	for ((i = 0; i < 50; i++)); do
		zpool list >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "zfs-fuse does not answer" >&2
	return 1
}

# zfs_cleanup: what t_cleanup does for zfs (see there).
zfs_cleanup() {
	local z pid
	[ -d "$T_ZFS" ] || return 0
	if [ -f "$T_ZFS/zpools" ]; then
		while read -r z; do
			[ -n "$z" ] || continue
			zpool list -H -o name "$z" >/dev/null 2>&1 || continue
			# zfs-fuse finds a pool busy when it unmounts the datasets
			# itself: unmount them first, deepest first, then destroy
			# (again while a file closed a moment ago keeps it busy).
			zfs list -H -o name -r "$z" | sort -r | xargs -r -n 1 zfs umount
			for ((pid = 0; pid < 20; pid++)); do
				zpool destroy -f "$z" && break
				sleep 0.25
			done
		done <"$T_ZFS/zpools"
	fi
	pid=$(cat "$T_ZFS/pid" 2>/dev/null)
	case "$pid" in '' | *[!0-9]*) return 0 ;; esac
	kill "$pid" 2>/dev/null || return 0
	for ((z = 0; z < 50; z++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null
}

# zfs_pool_of ROOT: the zpool a zfs node made by node_make uses.
zfs_pool_of() { "$JSON" -f "$1/vmadm.conf" zfs_pool 2>/dev/null; }

# node NAME [POOL_TYPE] [POOL_SIZE_BYTES]: make a node root $T/NAME with
# the given pool type (default btrfs on a 2 GiB loop file) and print its path.
# A zfs node has its own zpool vmt-PID-NAME (on ROOT/zfs.img), with the
# zfs-fuse daemon started if none runs; t_cleanup destroys that zpool.
node_make() {
	local name=$1 type=${2:-btrfs} size=${3:-2147483648}
	local root=$T/$name
	mkdir -p "$root"
	if [ "$type" = zfs ]; then
		# its own zpool, made by vmadm on ROOT/zfs.img on first use
		zfs_daemon >&2 || return 1
		echo "vmt-$$-$name" >>"$T_ZFS/zpools"
		printf '{"pool_type": "zfs", "zfs_pool": "vmt-%s-%s", "pool_size": %s, "accel": "tcg"}\n' \
			"$$" "$name" "$size" >"$root/vmadm.conf"
		echo "$root"
		return
	fi
	printf '{"pool_type": "%s", "pool_size": %s, "accel": "tcg"}\n' "$type" "$size" >"$root/vmadm.conf"
	echo "$root"
}

# on ROOT CMD...: run CMD with VMADM_ROOT=ROOT.
on() {
	local root=$1
	shift
	VMADM_ROOT=$root "$@"
}

# The `json` tool from npm, as the SmartOS note uses it.
JSON=$(command -v json || echo json)

t_done() {
	[ "$T_FAILED" -eq 0 ]
}

# tree_hash DIR: a hash of a tree's names, types, modes, owners, sizes,
# symlink targets and file contents and mtimes, leaving out vmadm's own
# bookkeeping (the dir pool's dataset marker).
# tree_xattrs DIR: every extended attribute under DIR (symlinks not
# followed), one "path|name=0xVALUE" line each, sorted.
tree_xattrs() {
	(cd "$1" && getfattr -h -R -d -m - -e hex . 2>/dev/null) |
		awk '/^# file: /{f = substr($0, 9); next} /=/{print f "|" $0}' | sort
}

tree_hash() {
	(
		cd "$1" || exit 1
		find . -path ./.vmadm-dataset -prune -o -printf '%P|%y|%m|%U|%G|%l\n' | sort
		find . -type f ! -name .vmadm-dataset -printf '%P|%s|%T@\n' | sort
		find . -type f ! -name .vmadm-dataset -exec sha256sum {} + | sort -k 2
		tree_xattrs .
	) | sha256sum | cut -d' ' -f1
}

# vm_get_comparable ROOT UUID: `vmadm get` without what must differ between
# nodes (pid, boot, modification and receive times) and with the node root
# replaced by ROOT, so records of two nodes compare equal.
vm_get_comparable() {
	VMADM_ROOT=$1 "$VMADM" get "$2" |
		$JSON -e 'delete this.last_modified; delete this.pid; delete this.boot_timestamp;
			delete this.received_at' |
		sed "s|$1/|NODEROOT/|g"
}

# leftovers ROOT: what a failed receive or create must not leave: VM records,
# receive journals, datasets, snapshots, temporary receive directories.
leftovers() {
	local root=$1
	find "$root/vms" "$root/recv" -mindepth 1 2>/dev/null
	find "$root/zones" -mindepth 1 -maxdepth 1 ! -name .snapshots ! -name .recv 2>/dev/null
	find "$root/zones/.snapshots" "$root/zones/.recv" -mindepth 1 -maxdepth 1 2>/dev/null
}

# The guest workload (docs/workload.md), read with the checker.
# Guest workload records (docs/workload.md), for tests that move running VMs.
# wl_records ARGS...: how many valid records vmadm-workload-check finds (0 on
# any error), ARGS as the checker's (--offset N DISK, or a record file).
wl_records() {
	"$BUILD/tools/vmadm-workload-check" --json "$@" 2>/dev/null | $JSON records 2>/dev/null || echo 0
}
# wl_wait_records MIN SECS ARGS...: wait until there are MIN records.
wl_wait_records() {
	local min=$1 secs=$2 deadline=$((SECONDS + $2)) n
	shift 2
	while [ $SECONDS -lt $deadline ]; do
		n=$(wl_records "$@")
		[ "${n:-0}" -ge "$min" ] && return 0
		sleep 0.5
	done
	echo "only ${n:-0} records after $secs s" >&2
	return 1
}
# wl_set_conf DISK0 'rate_ms=20 burst=1M': the kvm test guest's workload
# config sector (read when the workload starts).
wl_set_conf() {
	printf 'VMWLCONF %s\n' "$2" | dd of="$1" bs=512 seek=65536 conv=notrunc status=none
}

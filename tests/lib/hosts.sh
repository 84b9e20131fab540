# Hosts on one machine, for tests, the demo and benchmarks. Source it after
# common.sh:
#     . "$(dirname "$0")/../lib/common.sh"
#     . "$(dirname "$0")/../lib/hosts.sh"
#     hosts_make 2            # hosts a and b
#     host_exec a "$VMADM" list
#
# Each host is a network namespace (vmt<PID><name>, registered in T_NETNS so
# the EXIT trap deletes it) with its own node root $T/<name> (a btrfs pool on
# a loop file), the shared key, and a vmadmd listening on <ip>:9777
# (registered in T_PIDS). Every pair of hosts is joined by a veth pair; each
# host has one address, 10.99.0.<i>, on its loopback, with a route to each
# peer's address over their veth (so that `link_down a` cuts a from all).
#
# Commands run "on a host" with `nsenter --net=...` (not `ip netns exec`,
# whose private mount namespace would hide the pool mounts).

HOSTS=()
HOSTS_PORT=${HOSTS_PORT:-9777}

_host_ns() { echo "vmt$$$1"; }
host_ip() { cat "$T/.hosts/$1.ip"; }
host_root() { echo "$T/$1"; }

# host_exec NAME CMD...: run CMD in host NAME's network namespace with its
# node root.
host_exec() {
	local name=$1
	shift
	nsenter --net="/run/netns/$(_host_ns "$name")" -- env VMADM_ROOT="$(host_root "$name")" "$@"
}

# host_spawn NAME CMD...: like host_exec, in the background; HOST_PID is the
# command's own PID (nsenter and env exec it), for wait and kill.
host_spawn() {
	local name=$1
	shift
	nsenter --net="/run/netns/$(_host_ns "$name")" -- env VMADM_ROOT="$(host_root "$name")" "$@" &
	HOST_PID=$!
}

# hosts_make N [POOL_SIZE_BYTES]: make hosts a, b, c... (at most 9). Their
# pool types: HOSTS_POOLS="btrfs btrfs dir ..." (one word per host; default
# btrfs).
hosts_make() {
	local n=$1 size=${2:-2147483648} i j names=(a b c d e f g h i)
	mkdir -p "$T/.hosts"
	# As an operator would: generate the key on one node, copy it to the others.
	mkdir -p "$T/.hosts/keygen"
	VMADM_ROOT=$T/.hosts/keygen "$VMADM" key generate >/dev/null || return 1
	cp "$T/.hosts/keygen/vmadm.key" "$T/.hosts/vmadm.key"
	for ((i = 0; i < n; i++)); do
		local name=${names[$i]} ns
		ns=$(_host_ns "$name")
		ip netns add "$ns" || return 1
		T_NETNS+=("$ns")
		ip -n "$ns" link set lo up
		echo "10.99.0.$((i + 1))" >"$T/.hosts/$name.ip"
		ip -n "$ns" addr add "10.99.0.$((i + 1))/32" dev lo
		local pools=(${HOSTS_POOLS:-})
		node_make "$name" "${pools[$i]:-btrfs}" "$size" >/dev/null
		install -m 0600 "$T/.hosts/vmadm.key" "$(host_root "$name")/vmadm.key"
		: >"$T/.hosts/$name.routes"
		HOSTS+=("$name")
	done
	for ((i = 0; i < n; i++)); do
		for ((j = i + 1; j < n; j++)); do
			local a=${names[$i]} b=${names[$j]}
			local da="v$$$a$b" db="v$$$b$a"
			ip link add "$da" type veth peer name "$db" || return 1
			ip link set "$da" netns "$(_host_ns "$a")"
			ip link set "$db" netns "$(_host_ns "$b")"
			echo "$da $(host_ip "$b")" >>"$T/.hosts/$a.routes"
			echo "$db $(host_ip "$a")" >>"$T/.hosts/$b.routes"
		done
	done
	for ((i = 0; i < n; i++)); do
		link_up "${names[$i]}" || return 1
		# The node root is made here; its pool on first use (the pool's
		# open is locked, so vmadmd and commands may race to it).
		host_exec "${names[$i]}" "$VMADM" list >/dev/null || return 1
		host_vmadmd_start "${names[$i]}" || return 1
	done
}

# host_vmadmd_start NAME: start NAME's vmadmd (foreground, registered in
# T_PIDS; its PID in $T/.hosts/NAME.pid) and wait until it listens.
host_vmadmd_start() {
	local name=$1 ns ip root i
	ns=$(_host_ns "$name")
	ip=$(host_ip "$name")
	root=$(host_root "$name")
	nsenter --net="/run/netns/$ns" -- env VMADM_ROOT="$root" "$VMADMD" -f -l "$ip:$HOSTS_PORT" \
		>>"$T/.hosts/$name.vmadmd.out" 2>&1 &
	local pid=$!
	disown "$pid" # the trap kills it by PID; no "Killed" notice from bash
	T_PIDS+=("$pid")
	echo "$pid" >"$T/.hosts/$name.pid"
	for ((i = 0; i < 100; i++)); do
		if grep -q "listening for migrations on $ip:$HOSTS_PORT" "$root/log/vmadmd.log" 2>/dev/null &&
			nsenter --net="/run/netns/$ns" -- ss -Hltn "sport = :$HOSTS_PORT" | grep -q .; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "vmadmd on host $name did not start: $(tail -n 3 "$T/.hosts/$name.vmadmd.out")" >&2
	return 1
}

# host_vmadmd_kill NAME: kill -9 NAME's vmadmd.
host_vmadmd_kill() {
	local pid
	pid=$(cat "$T/.hosts/$1.pid")
	kill -KILL "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}

# link_down NAME / link_up NAME: cut / restore every link of host NAME.
link_down() {
	local ns dev peer
	ns=$(_host_ns "$1")
	while read -r dev peer; do
		ip -n "$ns" link set "$dev" down
	done <"$T/.hosts/$1.routes"
}
link_up() {
	local name=$1 ns dev peer
	ns=$(_host_ns "$name")
	while read -r dev peer; do
		ip -n "$ns" link set "$dev" up || return 1
		# Routes go with the link: put them back.
		ip -n "$ns" route replace "$peer/32" dev "$dev" src "$(host_ip "$name")" || return 1
	done <"$T/.hosts/$name.routes"
	# The peer's end too, if it was downed by link_down on the peer.
	return 0
}


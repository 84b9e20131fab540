#!/usr/bin/env bash
# vmadmd under hostile peers (issue 11, finding 7): host c attacks b's
# vmadmd while a sends a real VM to b. Each attack is performed for real and
# a real `vmadm send` made during it must succeed within a bounded time:
# - 10, then 50, unauthenticated connections trickling a byte every 3 s
#   (each from a source address of its own, and 10 more from one address):
#   b closes each at the handshake deadline (10 s), logging why, or at once
#   past the per-address bound;
# - 50 connections that complete TCP and never speak;
# - a flood of 200 connects from one address: most closed at once, the log
#   stays bounded;
# - every handshake slot kept full by reconnecting tricklers (max_handshakes
#   16): the oldest is dropped for a newcomer, so a real peer gets in;
# - a wrong key in a loop;
# - peers holding the key that stall or trickle mid-HELLO (cut at the
#   handshake deadline) and mid-BEGIN (cut at net_timeout, whole);
# - authenticated connections past max_receives + 8: REFUSE "busy" at once,
#   not a hang; the send goes through once they are cut;
# - BEGINs at the 1 MiB frame limit, of 90000 disks or 19000 datasets:
#   answered within seconds (the checks after parsing are linear);
# - a peer of another protocol version: refused, saying so.
# After all that b's vmadmd still runs, its node lists, creates and deletes
# VMs, and holds nothing of the attacks.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/hosts.sh"

PEER=$BUILD/tools/vmadm-peer
# A source's HELLO, for the steps that send it piecemeal.
HELLO='{"type":"hello","protocol":1,"node":"c","version":"0","encodings":["tar","blocks"],"compression":["zstd"]}'
V=5e1f0a22-7b3c-4d5e-8f60-0a1b2c3d4e71
SEND_MAX=60 # seconds a send of V may take, attack or not

if ! HOSTS_POOLS="btrfs btrfs dir" hosts_make 3 1073741824 2>"$T/hosts.err"; then
	fail "hosts_make 3: $(tail -n 3 "$T/hosts.err" | tr '\n' ' ')"
	exit 1
fi
A=$(host_root a)
B=$(host_root b)
C=$(host_root c)
IPA=$(host_ip a)
IPB=$(host_ip b)
LOG=$B/log/vmadmd.log

# Source addresses for the attacker: 10.99.3.1-60 on c, routed back from b.
for i in $(seq 1 60); do
	ip -n "$(_host_ns c)" addr add "10.99.3.$i/32" dev lo
done
read -r BC_DEV _ < <(grep " $(host_ip c)\$" "$T/.hosts/b.routes")
ip -n "$(_host_ns b)" route add 10.99.3.0/24 dev "$BC_DEV" src "$IPB"
SRC10=$(seq -f '10.99.3.%g' 1 10)
SRC50=$(seq -f '10.99.3.%g' 11 50)
SRC_ONE=$(for i in $(seq 1 10); do echo 10.99.3.60; done)

# The unauthenticated attacker: trickle.py OUT MODE EVERY SRC... opens one
# connection to b's vmadmd from each source address given (repeat one for
# several) and, MODE trickle, sends each a byte of a TLS ClientHello every
# EVERY seconds; silent, nothing; reconnect, like trickle and opens a new
# connection whenever one is closed. OUT gets "open I SRC", "ready" once
# all are open, and "closed I SRC after SECS" as b closes them.
cat >"$T/trickle.py" <<'EOF'
import select, socket, sys, time
out, dst, port, mode, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
srcs = sys.argv[6:]
hello = bytes([0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3]) + bytes(1000)
f = open(out, 'a', buffering=1)
conns = {}
def connect(i, src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    try:
        s.connect((dst, port))
    except OSError as e:
        f.write(f"refused {i} {src} {e}\n")
        s.close()
        return
    s.setblocking(False)
    conns[s] = [i, src, time.monotonic(), 0]
    f.write(f"open {i} {src}\n")
for i, src in enumerate(srcs):
    connect(i, src)
f.write("ready\n")
next_send = time.monotonic()
while True:
    wait = max(0.0, min(next_send - time.monotonic(), 0.5))
    r = select.select(list(conns), [], [], wait)[0] if conns else time.sleep(wait) or []
    for s in r:
        try:
            d = s.recv(4096)
        except OSError:
            d = b''
        if d:
            continue
        i, src, t, _ = conns.pop(s)
        f.write(f"closed {i} {src} after {time.monotonic() - t:.1f}\n")
        s.close()
        if mode == 'reconnect':
            connect(i, src)
    if mode != 'silent' and time.monotonic() >= next_send:
        for s, c in list(conns.items()):
            try:
                s.send(hello[c[3] % len(hello):][:1])
                c[3] += 1
            except OSError:
                pass
        next_send += every
EOF

ATTACK_PID=
# attack OUT MODE EVERY SRC...: start trickle.py on c, wait until its
# connections are open.
attack() {
	local out=$1 i
	shift
	: >"$out"
	host_spawn c python3 "$T/trickle.py" "$out" "$IPB" 9777 "$@"
	ATTACK_PID=$HOST_PID
	T_PIDS+=("$ATTACK_PID")
	for ((i = 0; i < 300; i++)); do
		grep -qx ready "$out" && return 0
		sleep 0.1
	done
	echo "the attacker did not get its connections open: $(tail -n 3 "$out")" >&2
	return 1
}
attack_stop() {
	kill "$ATTACK_PID" 2>/dev/null
	wait "$ATTACK_PID" 2>/dev/null
	ATTACK_PID=
}
# closes_between OUT LO HI N: at least N connections of OUT were closed, each
# after LO to HI seconds.
closes_between() {
	local n
	n=$(awk -v lo="$2" -v hi="$3" '$1 == "closed" { if ($5 >= lo && $5 <= hi) ok++; else bad++ }
		END { print ok + 0, bad + 0 }' "$1")
	[ "${n% *}" -ge "$4" ] && [ "${n#* }" -eq 0 ] || {
		echo "closed in [$2, $3] s, and outside: $n; $(grep -c '^closed' "$1") closes in all" >&2
		return 1
	}
}
# wait_closes OUT N SECS: until N connections of OUT were closed.
wait_closes() {
	local deadline=$((SECONDS + $3))
	while [ "$(grep -c '^closed' "$1")" -lt "$2" ]; do
		[ $SECONDS -lt $deadline ] || {
			echo "$(grep -c '^closed' "$1") of $2 closed after $3 s" >&2
			return 1
		}
		sleep 0.5
	done
}
# established_from PREFIX: b's connections on 9777 from PREFIX still open.
established_from() {
	host_exec b ss -Htn state established "( sport = :9777 )" | awk '{print $4}' |
		grep -c "^$1" || true
}
log_count() { grep -c -- "$1" "$LOG" || true; }
# wait_for_log TEXT SECS: until b's log has TEXT.
wait_for_log() {
	local deadline=$((SECONDS + $2))
	until grep -qF -- "$1" "$LOG"; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.5
	done
}

# send_v FROM TO NAME: `vmadm send` of V from FROM to TO within SEND_MAX
# seconds; then the VM is on TO only (deleted on FROM, as after `&& vmadm
# delete`).
send_v() {
	local from=$1 to=$2 name=$3 t0 rc
	t0=$SECONDS
	host_exec "$from" timeout $SEND_MAX "$VMADM" send $V "$(host_ip "$to")" 9777 \
		>"$T/send.out" 2>&1
	rc=$?
	check_eq "$name: the send exits 0 within $SEND_MAX s ($((SECONDS - t0)) s)" "0" \
		"$(echo $rc $(grep -v '^Successfully' "$T/send.out" | head -3))"
	[ "$rc" -eq 0 ] || return 1
	check_eq "$name: V's data arrived whole" "$V_HASH" \
		"$(sha256sum <"$(host_root "$to")/zones/$V-disk0/disk.raw" | cut -c1-64)"
	host_exec "$from" "$VMADM" delete $V >/dev/null 2>&1
}
# back_to_a: V from b back to a (b is not under attack then).
back_to_a() {
	host_exec b "$VMADM" send $V "$IPA" 9777 >"$T/back.out" 2>&1 &&
		host_exec b "$VMADM" delete $V >/dev/null 2>&1 || {
		echo "V back to a: $(tail -n 2 "$T/back.out")" >&2
		return 1
	}
}
# b_conf KEY JSON|-: set (or with -, remove) a key of b's vmadm.conf.
b_conf() {
	if [ "$2" = - ]; then
		$JSON -I -f "$B/vmadm.conf" -e "delete this.$1" 2>/dev/null
	else
		$JSON -I -f "$B/vmadm.conf" -e "this.$1 = $2" 2>/dev/null
	fi
}
restart_b() {
	host_vmadmd_kill b
	host_vmadmd_start b
}

check "create V on a" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$V\", \"alias\": \"v\", \"ram\": 128,
  \"disks\": [{\"size\": 16}]}' | VMADM_ROOT=$A $VMADM create"
head -c 4000000 /dev/urandom | dd of="$A/zones/$V-disk0/disk.raw" bs=1M seek=2 conv=notrunc status=none
V_HASH=$(sha256sum <"$A/zones/$V-disk0/disk.raw" | cut -c1-64)
check_grep "b's vmadmd logs its limits" -q "handshake_timeout 10 s, max_handshakes 64, max_handshakes_per_address 8" "$LOG"

# --- 1. 10 trickling connections ---------------------------------------------
if attack "$T/a1.out" trickle 3 $SRC10; then
	ok "10 trickling connections open"
	send_v a b "10 tricklers"
	check "10 tricklers: all closed by b" wait_closes "$T/a1.out" 10 25
	check "10 tricklers: each at the handshake deadline (10 s)" closes_between "$T/a1.out" 9 14 10
	check_eq "10 tricklers: b holds none of their sockets" 0 "$(established_from 10.99.3.)"
	check "10 tricklers: b logged each, with the deadline" \
		test "$(log_count "did not complete within 10 s (handshake_timeout)")" -ge 10
else
	fail "10 trickling connections open"
fi
attack_stop
check "V back to a" back_to_a

# --- 2. 50 trickling connections, and 10 from one address --------------------
if attack "$T/a2.out" trickle 3 $SRC10 $SRC50 $SRC_ONE; then
	ok "60 trickling connections open"
	send_v a b "60 tricklers"
	check "60 tricklers: all closed by b" wait_closes "$T/a2.out" 60 25
	check "60 tricklers: 2 from the one address closed at once" closes_between \
		<(grep ' 10\.99\.3\.60 ' "$T/a2.out" | sort -n -k5 | head -n 2) 0 1 2
	check "60 tricklers: the other 58 at the handshake deadline" closes_between \
		<(grep '^closed' "$T/a2.out" | sort -n -k5 | tail -n 58) 9 14 58
	check_grep "60 tricklers: b logged the per-address bound" -q \
		"from 10.99.3.60 closed: 8 handshakes from that address are in progress (max_handshakes_per_address)" "$LOG"
	check_eq "60 tricklers: b holds none of their sockets" 0 "$(established_from 10.99.3.)"
else
	fail "60 trickling connections open"
fi
attack_stop
check "V back to a" back_to_a

# --- 3. 50 connections that never speak --------------------------------------
if attack "$T/a3.out" silent 0 $SRC10 $SRC50; then
	ok "50 silent connections open"
	send_v a b "50 silent"
	check "50 silent: all closed by b at the deadline" wait_closes "$T/a3.out" 50 25
	check "50 silent: each at the handshake deadline" closes_between "$T/a3.out" 9 14 50
else
	fail "50 silent connections open"
fi
attack_stop
check "V back to a" back_to_a

# --- 4. A flood of 200 connects from one address ------------------------------
n0=$(log_count "max_handshakes_per_address)")
if attack "$T/a4.out" silent 0 $(for i in $(seq 1 200); do echo 10.99.3.59; done); then
	ok "200 connects from one address made"
	send_v a b "200 connects"
	check "200 connects: all closed by b" wait_closes "$T/a4.out" 200 25
	check "200 connects: 192 of them at once" closes_between \
		<(grep '^closed' "$T/a4.out" | sort -n -k5 | head -n 192) 0 2 192
	check "200 connects: the log stays bounded (at most 100 lines per 10 s)" \
		test $(($(log_count "max_handshakes_per_address)") - n0)) -le 100
	check "200 connects: ... and counts the rest" wait_for_log "more migration connections were closed in the last 10 s" 15
	check "200 connects: b's vmadmd still runs" kill -0 "$(cat "$T/.hosts/b.pid")"
else
	fail "200 connects from one address made"
fi
attack_stop
check "V back to a" back_to_a

# --- 5. Every handshake slot kept full -----------------------------------------
b_conf max_handshakes 16
restart_b
if attack "$T/a5.out" reconnect 3 $SRC10 $SRC50; then
	ok "50 reconnecting tricklers for 16 handshake slots"
	sleep 2
	send_v a b "slots full"
	check_grep "slots full: b dropped the oldest handshakes for newcomers" -q \
		"dropped: all 16 handshake slots are taken (max_handshakes) and it is the oldest handshake" "$LOG"
else
	fail "50 reconnecting tricklers for 16 handshake slots"
fi
attack_stop
b_conf max_handshakes -
restart_b
check "V back to a" back_to_a

# --- 6. A wrong key in a loop --------------------------------------------------
mkdir -p "$T/wrong"
VMADM_ROOT=$T/wrong "$VMADM" key generate >/dev/null 2>&1
(
	for i in $(seq 1 30); do
		host_exec c "$PEER" -k "$T/wrong/vmadm.key" "$IPB:9777" hello
	done
) >"$T/a6.out" 2>&1 &
wrong_pid=$!
T_PIDS+=("$wrong_pid")
send_v a b "wrong keys"
wait "$wrong_pid"
check_eq "wrong keys: all 30 attempts failed with a different key" 30 \
	"$(grep -c 'the peer has a different key' "$T/a6.out")"
check "wrong keys: b logged them" test "$(log_count "different key")" -ge 30
check "V back to a" back_to_a

# --- 7. Peers holding the key that stall or trickle mid-HELLO ------------------
KEY=$C/vmadm.key
host_exec c timeout 40 "$PEER" -k "$KEY" "$IPB:9777" "partial:3:$HELLO" closed >"$T/a7.out" 2>&1
check_grep "stall mid-HELLO: b closes the connection" -q "^closed after" "$T/a7.out"
check "stall mid-HELLO: at the handshake deadline" awk '/^closed after/ { exit !($3 >= 9 && $3 <= 14) }' "$T/a7.out"
host_exec c timeout 40 "$PEER" -k "$KEY" "$IPB:9777" "trickle:2:$HELLO" closed >"$T/a7b.out" 2>&1
check_grep "trickle mid-HELLO (a byte every 2 s): b closes the connection" -q "^closed after" "$T/a7b.out"
check "trickle mid-HELLO: at the handshake deadline" awk '/^closed after/ { exit !($3 >= 9 && $3 <= 14) }' "$T/a7b.out"
check_grep "mid-HELLO: b logged it" -q "the handshake (TLS and HELLO) did not complete within 10 s" "$LOG"

# --- 8. A peer holding the key that trickles its BEGIN --------------------------
b_conf net_timeout 6
cat >"$T/begin.json" <<EOF
{"type": "begin", "mode": "cold", "uuid": "$V", "config": {"brand": "kvm", "uuid": "$V"},
 "estimate": {}, "total": 0, "encoding": "portable", "compression": "none", "instant": "x@y"}
EOF
host_exec c timeout 40 "$PEER" -k "$KEY" "$IPB:9777" hello "trickle:1:@$T/begin.json" closed >"$T/a8.out" 2>&1
check_grep "trickle mid-BEGIN (a byte a second): b closes the connection" -q "^closed after" "$T/a8.out"
check "trickle mid-BEGIN: within net_timeout (6 s) of the HELLO" awk '/^closed after/ { exit !($3 >= 5 && $3 <= 11) }' "$T/a8.out"
check_grep "mid-BEGIN: b logged it" -q "the BEGIN message did not complete within 6 s" "$LOG"

# --- 9. More authenticated connections than max_receives + 8 -------------------
idle_pids=()
for i in $(seq 1 10); do
	host_spawn c "$PEER" -k "$KEY" "$IPB:9777" hello closed >"$T/idle.$i.out" 2>&1
	idle_pids+=("$HOST_PID")
	T_PIDS+=("$HOST_PID")
done
# all_idle: every idle peer is past its HELLO.
all_idle() { [ "$(cat "$T"/idle.*.out | grep -c '"type":"hello"')" -eq 10 ]; }
for ((i = 0; i < 300; i++)); do all_idle && break; sleep 0.1; done
check "10 idle authenticated peers are past their HELLO" all_idle
t0=$SECONDS
check_fails "10 idle authenticated peers: a send is refused as busy, at once" \
	"this node is busy: 10 migrations in progress or starting (at most 10)" \
	host_exec a timeout $SEND_MAX "$VMADM" send $V "$IPB" 9777
check "... within 5 s ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -le 5
check_eq "... V still on a, stopped" stopped "$(host_exec a "$VMADM" get $V | $JSON state)"
for p in "${idle_pids[@]}"; do wait "$p"; done
check_eq "the idle peers were cut at net_timeout" 10 "$(cat "$T"/idle.*.out | grep -c '^closed after')"
b_conf net_timeout -
send_v a b "after the busy refusal"
check "V back to a" back_to_a

# --- 10. BEGINs at the frame limit ------------------------------------------------
# big_begin BRAND KEY N: a BEGIN whose config has N entries in array KEY.
big_begin() {
	python3 - "$V" "$@" <<'EOF'
import json, sys
u, brand, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
entry = (lambda i: {"size": 1}) if key == "disks" else (lambda i: "zones/%s/d%d" % (u, i))
cfg = {"brand": brand, "uuid": u, key: [entry(i) for i in range(n)]}
begin = {"type": "begin", "mode": "cold", "uuid": u, "config": cfg, "estimate": {},
         "total": 0, "encoding": "portable", "compression": "none", "instant": "x@y"}
text = json.dumps(begin, separators=(",", ":"))
assert 900000 < len(text) < 1 << 20, len(text)
print(text)
EOF
}
for what in "kvm disks 90000" "joyent datasets 19000"; do
	set -- $what
	if ! big_begin "$@" >"$T/big.json"; then
		fail "a BEGIN of $3 $2: could not make it"
		continue
	fi
	t0=$SECONDS
	host_exec c timeout 60 "$PEER" -k "$KEY" "$IPB:9777" hello "send:@$T/big.json" recv >"$T/a10.out" 2>&1
	took=$((SECONDS - t0))
	check_grep "a BEGIN of $3 $2 (~1 MiB) gets an answer" -q '"type":"\(refuse\|accept\)"' "$T/a10.out"
	check "... within 5 s ($took s, connect and HELLO included)" test "$took" -le 5
	echo "# $(head -c 300 "$T/a10.out")"
done

# --- 11. A peer of another protocol version -------------------------------------
check_fails "a peer speaking protocol 2 is refused with the reason" \
	"speaks migration protocol 2, this vmadmd 1" host_exec c "$PEER" -k "$KEY" "$IPB:9777" hello:2
check_grep "... and b logged it" -q "migration refused: .* speaks migration protocol 2, this vmadmd 1" "$LOG"

# --- b after all that ----------------------------------------------------------
check "b's vmadmd still runs" kill -0 "$(cat "$T/.hosts/b.pid")"
send_v a b "a send after the attacks"
check "b lists its VMs" host_exec b "$VMADM" list
W=5e1f0a22-7b3c-4d5e-8f60-0a1b2c3d4e72
check "b creates a VM" sh -c "echo '{\"brand\": \"kvm\", \"uuid\": \"$W\", \"ram\": 128,
  \"disks\": [{\"size\": 8}]}' | VMADM_ROOT=$B $VMADM create"
check "b deletes it" host_exec b "$VMADM" delete $W
check "b deletes V" host_exec b "$VMADM" delete $V
check_eq "b holds nothing of the attacks" "" "$(leftovers "$B")"
check_eq "b holds no connection from c" 0 "$(established_from 10.99.)"
t_done

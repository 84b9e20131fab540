#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""zfs-forge: rewrite a real `zfs send` stream into a hostile one, for the
attack tests (tests/integration/hostile-zfs.sh).

The stream format is OpenZFS's (include/sys/zfs_ioctl.h, dmu_replay_record_t
as pool version 23 writes it): records of 312 bytes, little-endian here (a
u32 type, a u32 payload length that only BEGIN uses, the union), some followed
by a payload (BEGIN of a compound stream: its packed nvlist; OBJECT: its bonus
buffer rounded up to 8; WRITE and SPILL: their data).

    zfs-forge.py --extract NAME < VMS > ZS   the data of dataset NAME ("",
                                             "/data", "-disk0") of a vmadm
                                             stream written without -z
    zfs-forge.py --show ZS                   one line per record
    zfs-forge.py ZS EDIT... > OUT            ZS with the edits, in order

Edits of the substream's BEGIN (the compound header's with --compound):
    --flags +N|-N|=N        set, clear or assign bits of drr_flags
    --features +N|-N|=N     the same for the feature bits (versioninfo >> 2)
    --hdrtype N             the header type (versioninfo & 3)
    --toname NAME           drr_toname
    --fromguid G            drr_fromguid
    --toguid G              drr_toguid (and the substream END's, so that only
                            BEGIN's check can tell)
    --objtype N             drr_type (2 a filesystem, 3 a volume)
    --magic M               drr_magic
    --compound              the BEGIN edits after it go to the compound
                            header's BEGIN instead
Edits of the whole:
    --props-len N           the compound BEGIN's payload length (the nvlist
                            stays as it is)
    --insert TYPE@POS       a record of TYPE (a name: WRITE_BYREF, or a
                            number) before position POS, zero but its type
                            and the substream's toguid where the type has one
    --dup-substream         the substream again after its END, as an -R
                            stream would carry another dataset
    --dup-substream-as NAME the same, NAME its toname
    --poke POS:SIZE=VALUE   write VALUE as a SIZE-byte integer at POS
    --fix-checksum          recompute the fletcher-4 checksums the END records
                            carry (each over its part of the stream), so that
                            `zfs receive` gets past them; do it before the
                            byte-level edits below
    --append HEX            bytes after the last END
    --cut POS               the stream up to POS
    --flip POS              XOR the byte at POS with 0xff

POS is a byte offset, or TYPE#K[.payload][+N|-N]: the K-th record of TYPE
(0 the first, -1 the last), its payload's start with .payload, plus or minus
N bytes. E.g. END#-1 (the last END), WRITE#0.payload+100.
"""
import array
import json
import re
import struct
import sys

REC = 312
TYPES = {
    "BEGIN": 0, "OBJECT": 1, "FREEOBJECTS": 2, "WRITE": 3, "FREE": 4, "END": 5,
    "WRITE_BYREF": 6, "SPILL": 7, "WRITE_EMBEDDED": 8, "OBJECT_RANGE": 9, "REDACT": 10,
}
NAMES = {v: k for k, v in TYPES.items()}
# Offsets in a record (the union starts at 8).
B_MAGIC, B_VI, B_OBJTYPE, B_FLAGS, B_TOGUID, B_FROMGUID, B_TONAME = 8, 16, 32, 36, 40, 48, 56
E_CKSUM, E_TOGUID = 8, 40
# where a record type carries the snapshot's guid (drr_toguid)
TOGUID_AT = {1: 48, 2: 24, 3: 40, 4: 32, 6: 40, 7: 24, 8: 32}


def die(msg):
    sys.exit(f"zfs-forge: {msg}")


def payload_len(rec):
    t, plen = struct.unpack_from("<II", rec, 0)
    if t == 0:
        return plen
    if t == 1:
        return (struct.unpack_from("<I", rec, 28)[0] + 7) & ~7
    if t == 3:
        return struct.unpack_from("<Q", rec, 32)[0]
    if t == 7:
        return struct.unpack_from("<Q", rec, 16)[0]
    return 0


def parse(data):
    """[[type, offset, record bytearray, payload bytes]]; a cut stream's last
    record or payload is taken as far as it goes."""
    recs, pos = [], 0
    while pos < len(data):
        rec = bytearray(data[pos:pos + REC])
        if len(rec) < REC:
            die(f"stream cut in a record at byte {pos}")
        n = payload_len(rec)
        recs.append([struct.unpack_from("<I", rec, 0)[0], pos, rec, data[pos + REC:pos + REC + n]])
        pos += REC + n
    return recs


def join(recs):
    return b"".join(bytes(r[2]) + bytes(r[3]) for r in recs)


def fletcher4(data, state=(0, 0, 0, 0)):
    """ZFS's fletcher_4_incremental_native over 32-bit little-endian words."""
    a, b, c, d = state
    words = array.array("I")
    words.frombytes(bytes(data))
    if sys.byteorder != "little":
        words.byteswap()
    for w in words:
        a += w
        b += a
        c += b
        d += c
    m = (1 << 64) - 1
    return (a & m, b & m, c & m, d & m)


def show(path):
    with open(path, "rb") as f:
        recs = parse(f.read())
    for i, (t, off, rec, pl) in enumerate(recs):
        out = [f"{i}", f"@{off}", NAMES.get(t, str(t)), f"payload={len(pl)}"]
        if t == 0:
            vi = struct.unpack_from("<Q", rec, B_VI)[0]
            out += [f"hdrtype={vi & 3}", f"features={vi >> 2:#x}",
                    f"objtype={struct.unpack_from('<I', rec, B_OBJTYPE)[0]}",
                    f"flags={struct.unpack_from('<I', rec, B_FLAGS)[0]:#x}",
                    f"toguid={struct.unpack_from('<Q', rec, B_TOGUID)[0]:#x}",
                    f"fromguid={struct.unpack_from('<Q', rec, B_FROMGUID)[0]:#x}",
                    "toname=" + bytes(rec[B_TONAME:B_TONAME + 256]).split(b"\0")[0].decode()]
        elif t == 5:
            out.append(f"toguid={struct.unpack_from('<Q', rec, E_TOGUID)[0]:#x}")
        print(" ".join(out))


def extract(name):
    """The DS_DATA payloads of dataset name (docs/stream-format.md)."""
    data = sys.stdin.buffer.read()
    pos, cur, out = 0, None, bytearray()
    while pos + 32 <= len(data):
        t, flags, length = struct.unpack_from("<IIQ", data, pos)
        payload = data[pos + 32:pos + 32 + length]
        if t == 3:
            cur = json.loads(payload)["name"]
        elif t == 4 and cur == name:
            if flags & 2:
                die("the stream compresses its data (send it without -z)")
            out += payload
        pos += 32 + length
    if cur is None:
        die("no dataset in the stream")
    sys.stdout.buffer.write(out)


def position(recs, spec):
    """A byte offset in the stream recs make, from POS (see above)."""
    try:
        return int(spec, 0)
    except ValueError:
        pass
    m = re.fullmatch(r"(\w+)(?:#(-?\d+))?(\.payload)?(?:([+-])(\w+))?", spec)
    if not m:
        die(f"position {spec}: not TYPE#K[.payload][+N|-N]")
    tname, k, payload, sign, delta = m.groups()
    t = TYPES.get(tname.upper())
    if t is None:
        die(f"position {spec}: unknown record type {tname}")
    of_type = [r for r in recs if r[0] == t]
    try:
        r = of_type[int(k or 0)]
    except IndexError:
        die(f"position {spec}: the stream has {len(of_type)} {tname} records")
    delta = int(delta, 0) if delta else 0
    return r[1] + (REC if payload else 0) + (-delta if sign == "-" else delta)


def sub_begin(recs, compound):
    """The index of the compound header's BEGIN, or of the substream's."""
    begins = [i for i, r in enumerate(recs) if r[0] == 0]
    vi = struct.unpack_from("<Q", recs[begins[0]][2], B_VI)[0]
    is_compound = vi & 3 == 2
    if compound:
        if not is_compound:
            die("--compound: not a compound stream")
        return begins[0]
    return begins[1] if is_compound and len(begins) > 1 else begins[0]


def bits(old, spec):
    v = int(spec[1:], 0) if spec[0] in "+-=" else int(spec, 0)
    if spec[0] == "+":
        return old | v
    if spec[0] == "-":
        return old & ~v
    return v


def fix_checksums(recs):
    """Each END's checksum: fletcher-4 of its part of the stream, from the
    BEGIN that opened it (the compound header, or a substream) to the END
    record. A compound stream's final END carries none."""
    state, open_ = (0, 0, 0, 0), False
    for r in recs:
        if r[0] == 0:
            state, open_ = (0, 0, 0, 0), True
        if r[0] == 5:
            if open_:
                struct.pack_into("<QQQQ", r[2], E_CKSUM, *state)
            open_ = False
            continue
        if open_:
            state = fletcher4(bytes(r[2]) + bytes(r[3]), state)


def main(argv):
    if len(argv) == 2 and argv[0] == "--show":
        return show(argv[1])
    if len(argv) == 2 and argv[0] == "--extract":
        return extract(argv[1])
    if not argv:
        die("usage: zfs-forge.py ZS EDIT... > OUT (see its header)")
    with open(argv[0], "rb") as f:
        recs = parse(f.read())
    compound, tail, i = False, None, 1
    while i < len(argv):
        a, arg = argv[i], None
        i += 1
        if a == "--compound":
            compound = True
            continue
        if a == "--fix-checksum":
            fix_checksums(recs)
            continue
        if a != "--dup-substream":
            if i == len(argv):
                die(f"{a} wants an argument")
            arg = argv[i]
            i += 1
        if tail is not None and a not in ("--append", "--cut", "--flip"):
            die(f"{a} after a byte-level edit")
        b = recs[sub_begin(recs, compound)][2] if recs else None
        if a == "--flags":
            struct.pack_into("<I", b, B_FLAGS, bits(struct.unpack_from("<I", b, B_FLAGS)[0], arg))
        elif a == "--features":
            vi = struct.unpack_from("<Q", b, B_VI)[0]
            struct.pack_into("<Q", b, B_VI, (bits(vi >> 2, arg) << 2) | (vi & 3))
        elif a == "--hdrtype":
            vi = struct.unpack_from("<Q", b, B_VI)[0]
            struct.pack_into("<Q", b, B_VI, (vi & ~3) | int(arg, 0))
        elif a == "--toname":
            name = arg.encode()
            if len(name) > 255:
                die("--toname: at most 255 bytes")
            b[B_TONAME:B_TONAME + 256] = name.ljust(256, b"\0")
        elif a == "--fromguid":
            struct.pack_into("<Q", b, B_FROMGUID, int(arg, 0))
        elif a == "--toguid":
            old = struct.unpack_from("<Q", b, B_TOGUID)[0]
            struct.pack_into("<Q", b, B_TOGUID, int(arg, 0))
            for r in recs:
                at = E_TOGUID if r[0] == 5 else TOGUID_AT.get(r[0])
                if at and struct.unpack_from("<Q", r[2], at)[0] == old:
                    struct.pack_into("<Q", r[2], at, int(arg, 0))
        elif a == "--objtype":
            struct.pack_into("<I", b, B_OBJTYPE, int(arg, 0))
        elif a == "--magic":
            struct.pack_into("<Q", b, B_MAGIC, int(arg, 0))
        elif a == "--props-len":
            struct.pack_into("<I", recs[sub_begin(recs, True)][2], 4, int(arg, 0))
        elif a == "--insert":
            tname, _, pos = arg.partition("@")
            t = TYPES.get(tname.upper())
            if t is None and not re.fullmatch(r"\d+", tname):
                die(f"--insert: unknown record type {tname}")
            t = int(tname) if t is None else t
            at = position(recs, pos)
            idx = next((k for k, r in enumerate(recs) if r[1] == at), None)
            if idx is None:
                die(f"--insert: {pos} is not the start of a record")
            rec = bytearray(REC)
            struct.pack_into("<I", rec, 0, t)
            if t in TOGUID_AT:
                sub = recs[sub_begin(recs, False)][2]
                rec[TOGUID_AT[t]:TOGUID_AT[t] + 8] = sub[B_TOGUID:B_TOGUID + 8]
            recs.insert(idx, [t, at, rec, b""])
        elif a in ("--dup-substream", "--dup-substream-as"):
            s = sub_begin(recs, False)
            e = next(k for k in range(s, len(recs)) if recs[k][0] == 5)
            dup = [[r[0], r[1], bytearray(r[2]), r[3]] for r in recs[s:e + 1]]
            if arg:
                dup[0][2][B_TONAME:B_TONAME + 256] = arg.encode().ljust(256, b"\0")
            recs[e + 1:e + 1] = dup
        elif a == "--poke":
            pos, _, val = arg.partition("=")
            pos, _, size = pos.rpartition(":")
            data = bytearray(join(recs))
            at = position(recs, pos)
            data[at:at + int(size)] = int(val, 0).to_bytes(int(size), "little")
            recs = parse(bytes(data))
        elif a in ("--append", "--cut", "--flip"):
            if tail is None:
                tail = bytearray(join(recs))
            if a == "--append":
                tail += bytes.fromhex(arg)
            elif a == "--cut":
                del tail[position(recs, arg):]
            else:
                tail[position(recs, arg)] ^= 0xFF
        else:
            die(f"unknown edit {a}")
        # offsets follow the records (after an insert or a duplicate)
        off = 0
        for r in recs:
            r[1] = off
            off += REC + len(r[3])
    sys.stdout.buffer.write(bytes(tail) if tail is not None else join(recs))


if __name__ == "__main__":
    main(sys.argv[1:])

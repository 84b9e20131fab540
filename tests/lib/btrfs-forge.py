#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""btrfs-forge: write a btrfs send stream with chosen (hostile) commands, for
the attack tests (tests/integration/hostile-btrfs.sh).

Every command gets a correct CRC-32C, so that `btrfs receive` (and vmadm's
checker) see a well-formed stream whose only defect is what the commands do.

    btrfs-forge.py [--from REAL] [--keep first|all|none] [--parent UUID:CTRANSID]
                   [--uuid UUID] [--no-end] [--version N] CMD... > OUT
    btrfs-forge.py --show REAL        # one line per command, for tests

--from REAL   a stream from `btrfs send`: its header and commands are the start
              of OUT (--keep: only its SUBVOL/SNAPSHOT, all of it but END, or
              none of it; default first)
--parent      rewrite the kept SNAPSHOT's parent (CLONE_UUID, CLONE_CTRANSID)
--uuid        rewrite the kept SUBVOL's or SNAPSHOT's own UUID (what becomes the
              received subvolume's received uuid)
--no-end      leave out the END command (a stream cut before its end)

CMD is one argument: a command name and attributes, e.g.
    'mkfile path=o300 ino=300'
    'write path=x file_offset=0 data=PWNED'
    'clone path=x file_offset=0 clone_len=5 clone_uuid=UUID clone_ctransid=7
           clone_path=secret clone_offset=0'
Values are typed by the attribute's name: uuids as 8-4-4-4-12 hex, numbers
as Python integer literals (0o644, 0x10), times as seconds, everything else
as text (data=@FILE takes a file's bytes).
"""
import struct
import sys
import uuid as uuidlib

CMDS = {
    "subvol": 1, "snapshot": 2, "mkfile": 3, "mkdir": 4, "mknod": 5, "mkfifo": 6,
    "mksock": 7, "symlink": 8, "rename": 9, "link": 10, "unlink": 11, "rmdir": 12,
    "set_xattr": 13, "remove_xattr": 14, "write": 15, "clone": 16, "truncate": 17,
    "chmod": 18, "chown": 19, "utimes": 20, "end": 21, "update_extent": 22,
    "fallocate": 23, "fileattr": 24, "encoded_write": 25, "enable_verity": 26,
}
CMD_NAMES = {v: k for k, v in CMDS.items()}

# name: (number, kind)
ATTRS = {
    "uuid": (1, "uuid"), "ctransid": (2, "u64"), "ino": (3, "u64"), "size": (4, "u64"),
    "mode": (5, "u64"), "uid": (6, "u64"), "gid": (7, "u64"), "rdev": (8, "u64"),
    "ctime": (9, "time"), "mtime": (10, "time"), "atime": (11, "time"),
    "otime": (12, "time"), "xattr_name": (13, "str"), "xattr_data": (14, "str"),
    "path": (15, "str"), "path_to": (16, "str"), "path_link": (17, "str"),
    "file_offset": (18, "u64"), "data": (19, "str"), "clone_uuid": (20, "uuid"),
    "clone_ctransid": (21, "u64"), "clone_path": (22, "str"), "clone_offset": (23, "u64"),
    "clone_len": (24, "u64"), "fallocate_mode": (25, "u32"), "fileattr": (26, "u64"),
    "unencoded_file_len": (27, "u64"), "unencoded_len": (28, "u64"),
    "unencoded_offset": (29, "u64"), "compression": (30, "u32"), "encryption": (31, "u32"),
}
ATTR_NAMES = {v[0]: k for k, v in ATTRS.items()}


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = _crc32c_table()


def crc32c_raw(data, crc=0):
    """CRC-32C as btrfs send computes it: seed 0, no inversion."""
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def encode_value(name, value):
    kind = ATTRS[name][1]
    if kind == "uuid":
        return uuidlib.UUID(value).bytes
    if kind == "u64":
        return struct.pack("<Q", int(value, 0))
    if kind == "u32":
        return struct.pack("<I", int(value, 0))
    if kind == "time":
        return struct.pack("<QI", int(value, 0), 0)
    if value.startswith("@"):
        with open(value[1:], "rb") as f:
            return f.read()
    return value.encode()


def command(cmd, attrs):
    """One command: header (len, cmd, crc) and TLVs, DATA last (v1 TLV)."""
    body = b""
    for num, val in attrs:
        body += struct.pack("<HH", num, len(val)) + val
    hdr = struct.pack("<IHI", len(body), cmd, 0)
    crc = crc32c_raw(hdr + body)
    return struct.pack("<IHI", len(body), cmd, crc) + body


def parse_arg(arg):
    words = arg.split()
    if words[0] not in CMDS:
        sys.exit(f"btrfs-forge: unknown command {words[0]!r}")
    attrs = []
    for w in words[1:]:
        name, _, value = w.partition("=")
        if name not in ATTRS:
            sys.exit(f"btrfs-forge: unknown attribute {name!r}")
        attrs.append((ATTRS[name][0], encode_value(name, value)))
    return command(CMDS[words[0]], attrs)


def read_stream(path):
    """(header bytes, version, [(cmd, raw bytes, {attr: value})])"""
    with open(path, "rb") as f:
        data = f.read()
    if data[:13] != b"btrfs-stream\0":
        sys.exit(f"btrfs-forge: {path} is not a btrfs send stream")
    version = struct.unpack_from("<I", data, 13)[0]
    pos, cmds = 17, []
    while pos < len(data):
        length, cmd, _ = struct.unpack_from("<IHI", data, pos)
        body = data[pos + 10:pos + 10 + length]
        attrs, p = {}, 0
        while p < len(body):
            t = struct.unpack_from("<H", body, p)[0]
            if version >= 2 and t == 19:
                attrs[t] = body[p + 2:]
                break
            ln = struct.unpack_from("<H", body, p + 2)[0]
            attrs[t] = body[p + 4:p + 4 + ln]
            p += 4 + ln
        cmds.append((cmd, data[pos:pos + 10 + length], attrs))
        pos += 10 + length
    return data[:17], version, cmds


def show(path):
    _, version, cmds = read_stream(path)
    print(f"version {version}")
    for cmd, _, attrs in cmds:
        out = [CMD_NAMES.get(cmd, str(cmd))]
        for t, v in attrs.items():
            name = ATTR_NAMES.get(t, str(t))
            kind = ATTRS[name][1] if name in ATTRS else "str"
            if kind == "uuid":
                out.append(f"{name}={uuidlib.UUID(bytes=v)}")
            elif kind in ("u64", "u32"):
                out.append(f"{name}={int.from_bytes(v, 'little')}")
            elif name in ("data", "xattr_data"):
                out.append(f"{name}=<{len(v)} bytes>")
            elif kind == "str":
                out.append(f"{name}={v.decode(errors='replace')}")
        print(" ".join(out))


def main(argv):
    src, keep, parent, newuuid, end, version, cmds = None, "first", None, None, True, 1, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--show":
            show(argv[i + 1])
            return
        if a == "--from":
            src, i = argv[i + 1], i + 2
        elif a == "--keep":
            keep, i = argv[i + 1], i + 2
        elif a == "--parent":
            parent, i = argv[i + 1], i + 2
        elif a == "--uuid":
            newuuid, i = argv[i + 1], i + 2
        elif a == "--no-end":
            end, i = False, i + 1
        elif a == "--version":
            version, i = int(argv[i + 1]), i + 2
        else:
            cmds.append(parse_arg(a))
            i += 1
    out = b"btrfs-stream\0" + struct.pack("<I", version)
    if src:
        hdr, _, real = read_stream(src)
        out = hdr
        kept = [] if keep == "none" else real[:1] if keep == "first" else \
            [c for c in real if c[0] != CMDS["end"]]
        for cmd, raw, attrs in kept:
            if cmd in (CMDS["subvol"], CMDS["snapshot"]) and (parent or newuuid):
                attrs = dict(attrs)
                if parent and cmd == CMDS["snapshot"]:
                    u, _, t = parent.partition(":")
                    attrs[20] = uuidlib.UUID(u).bytes
                    attrs[21] = struct.pack("<Q", int(t, 0))
                if newuuid:
                    attrs[1] = uuidlib.UUID(newuuid).bytes
                raw = command(cmd, sorted(attrs.items()))
            out += raw
    for c in cmds:
        out += c
    if end:
        out += command(CMDS["end"], [])
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main(sys.argv[1:])

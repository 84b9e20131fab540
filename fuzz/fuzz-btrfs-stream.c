/* SPDX-License-Identifier: MIT */
/*
 * fuzz-btrfs-stream: the input is a btrfs send stream, as the native
 * receive hands it, command by command, to the checker of
 * storage/btrfs-stream.h before `btrfs receive` may apply it. Each input is
 * checked three ways:
 *
 *   as a full stream (no base);
 *   as an incremental one whose base is the parent its first command
 *   names (so that mutations get past the parent check to the commands);
 *   as an incremental one with a base it does not name.
 *
 * Besides ASan and UBSan, the harness holds the checker to its promises
 * with an oracle of its own, written from the format, not from the
 * checker: a stream it accepts builds its subvolume first (SUBVOL when
 * full, SNAPSHOT of the base when incremental), ends with END and nothing
 * after it, and names no path that is absolute or has a ".." component.
 */
#include <inttypes.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "storage/btrfs-stream.h"
#include "util/macros.h"

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* A path the receiver would resolve outside the subvolume: absolute, or
 * with a ".." component. */
static bool path_escapes(const uint8_t *p, size_t n)
{
	size_t start = 0;

	if (n > 0 && p[0] == '/')
		return true;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && p[i] != '/')
			continue;
		if (i - start == 2 && p[start] == '.' && p[start + 1] == '.')
			return true;
		start = i + 1;
	}
	return false;
}

/* Walk the attributes of the command at cmd (len bytes of attributes), in
 * stream version version: calls back for each, stops at a malformed one
 * (which the checker must have refused: reported as false). */
static bool each_attr(const uint8_t *attrs, size_t len, uint32_t version, uint16_t cmd,
		      bool (*fn)(uint16_t cmd, uint16_t type, const uint8_t *v, size_t n, void *u),
		      void *u)
{
	size_t pos = 0;

	while (pos < len) {
		uint16_t type, n;

		if (len - pos < 2)
			return false;
		type = le16(attrs + pos);
		if (type == BTRFS_SEND_A_DATA && version >= 2) {
			fn(cmd, type, attrs + pos + 2, len - pos - 2, u);
			return true;
		}
		if (len - pos < 4)
			return false;
		n = le16(attrs + pos + 2);
		if (len - pos - 4 < n)
			return false;
		if (!fn(cmd, type, attrs + pos + 4, n, u))
			return false;
		pos += 4 + (size_t)n;
	}
	return true;
}

static bool no_escape(uint16_t cmd, uint16_t type, const uint8_t *v, size_t n, void *u)
{
	(void)u;
	if (type == BTRFS_SEND_A_PATH_LINK && cmd == BTRFS_SEND_C_SYMLINK)
		return true; /* a symlink's target is its data */
	if ((type == BTRFS_SEND_A_PATH || type == BTRFS_SEND_A_PATH_TO ||
	     type == BTRFS_SEND_A_PATH_LINK || type == BTRFS_SEND_A_CLONE_PATH) &&
	    path_escapes(v, n))
		fuzz_die("the checker accepted command %u with path attribute %u \"%.*s\"", cmd,
			 type, (int)n, (const char *)v);
	return true;
}

static bool find_parent(uint16_t cmd, uint16_t type, const uint8_t *v, size_t n, void *u)
{
	struct btrfs_stream_subvol *base = u;

	(void)cmd;
	if (type == BTRFS_SEND_A_CLONE_UUID && n == BTRFS_STREAM_UUID_SIZE)
		memcpy(base->uuid, v, n);
	else if (type == BTRFS_SEND_A_CLONE_CTRANSID && n == 8)
		base->ctransid = le64(v);
	return true;
}

/* What the oracle asks of a stream the checker accepted. */
static void check_accepted(const uint8_t *data, size_t size, const struct btrfs_stream_subvol *base)
{
	size_t pos = BTRFS_STREAM_HEADER_SIZE;
	uint32_t version = le32(data + 13);
	uint16_t last = 0;

	for (uint64_t i = 0; pos < size; i++) {
		const uint8_t *c = data + pos;
		uint32_t len;

		if (size - pos < BTRFS_STREAM_CMD_HEADER_SIZE)
			fuzz_die("accepted, but a command header is cut at byte %zu", pos);
		len = le32(c);
		if (size - pos - BTRFS_STREAM_CMD_HEADER_SIZE < len)
			fuzz_die("accepted, but command %" PRIu64 " is cut", i);
		last = le16(c + 4);
		if (i == 0 && last != (base ? BTRFS_SEND_C_SNAPSHOT : BTRFS_SEND_C_SUBVOL))
			fuzz_die("accepted a %s stream whose first command is %u",
				 base ? "incremental" : "full", last);
		if (i == 0 && base) {
			struct btrfs_stream_subvol named = {0};

			each_attr(c + BTRFS_STREAM_CMD_HEADER_SIZE, len, version, last, find_parent,
				  &named);
			if (memcmp(named.uuid, base->uuid, sizeof(named.uuid)) != 0 ||
			    named.ctransid != base->ctransid)
				fuzz_die("accepted a SNAPSHOT of a parent that is not the base");
		}
		if (!each_attr(c + BTRFS_STREAM_CMD_HEADER_SIZE, len, version, last, no_escape,
			       NULL))
			fuzz_die("accepted command %" PRIu64 " with malformed attributes", i);
		pos += BTRFS_STREAM_CMD_HEADER_SIZE + len;
		if (last == BTRFS_SEND_C_END && pos != size)
			fuzz_die("accepted bytes after END");
	}
	if (last != BTRFS_SEND_C_END)
		fuzz_die("accepted a stream that does not end with END");
}

static void run(const uint8_t *data, size_t size, const struct btrfs_stream_subvol *base,
		const char *what)
{
	struct vm_error err = {0};
	int r = btrfs_stream_check_buffer(data, size, base, &err);

	fuzz_check_error(r, &err, what);
	if (r >= 0)
		check_accepted(data, size, base);
}

/* Set the CRC of every whole command of buf as the format computes it: a
 * CRC-32C, seed 0 and no final inversion, of the header (its CRC field
 * zero) and the attributes. */
static void fix_crcs(uint8_t *buf, size_t size)
{
	size_t pos = BTRFS_STREAM_HEADER_SIZE;

	while (size >= pos && size - pos >= BTRFS_STREAM_CMD_HEADER_SIZE) {
		uint8_t *c = buf + pos;
		size_t len = le32(c);
		uint32_t crc;

		if (size - pos - BTRFS_STREAM_CMD_HEADER_SIZE < len)
			return;
		memset(c + 6, 0, 4);
		crc = crc32_iscsi(c, (int)(BTRFS_STREAM_CMD_HEADER_SIZE + len), 0);
		c[6] = crc;
		c[7] = crc >> 8;
		c[8] = crc >> 16;
		c[9] = crc >> 24;
		pos += BTRFS_STREAM_CMD_HEADER_SIZE + len;
	}
}

static void run_all(const uint8_t *data, size_t size)
{
	struct btrfs_stream_subvol named = {0}, other = {.ctransid = 7};

	run(data, size, NULL, "btrfs_stream_check_buffer (full)");
	if (size >= BTRFS_STREAM_HEADER_SIZE + BTRFS_STREAM_CMD_HEADER_SIZE) {
		const uint8_t *c = data + BTRFS_STREAM_HEADER_SIZE;
		size_t len = le32(c);

		if (len <= size - BTRFS_STREAM_HEADER_SIZE - BTRFS_STREAM_CMD_HEADER_SIZE)
			each_attr(c + BTRFS_STREAM_CMD_HEADER_SIZE, len, le32(data + 13),
				  le16(c + 4), find_parent, &named);
	}
	run(data, size, &named, "btrfs_stream_check_buffer (its own parent)");
	memset(other.uuid, 0xa5, sizeof(other.uuid));
	run(data, size, &other, "btrfs_stream_check_buffer (another base)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ uint8_t *fixed = malloc(size ? size : 1);

	if (!fixed)
		fuzz_die("out of memory");
	run_all(data, size);
	memcpy(fixed, data, size);
	fix_crcs(fixed, size);
	run_all(fixed, size);
	return 0;
}

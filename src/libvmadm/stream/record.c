/* SPDX-License-Identifier: MIT */
/* Record headers, CRC-32C, and the names a stream may carry. */
#include "stream/stream.h"

#include <ctype.h>
#include <errno.h>
#include <isa-l/crc.h>
#include <stdio.h>
#include <string.h>

#include "stream/stream-private.h"
#include "util/macros.h"
#include "util/uuid.h"

/* CRC-32C through ISA-L (Intel's storage library, Debian's libisal): its
 * crc32_iscsi picks the fastest code the CPU allows at run time (PCLMUL
 * folding, ~50 GB/s here, where a single chain of SSE4.2 crc32 instructions
 * gave ~6 GB/s) and keeps the raw register: no pre- or post-inversion. */
uint32_t stream_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint32_t c = ~crc;

	while (len > 0) {
		int n = len > (1u << 30) ? (1 << 30) : (int)len;

		c = crc32_iscsi((unsigned char *)p, n, c);
		p += n;
		len -= n;
	}
	return ~c;
}

void stream_header_encode(struct stream_header *h, uint8_t out[STREAM_HEADER_SIZE])
{
	put_le32(out, h->type);
	put_le32(out + 4, h->flags);
	put_le64(out + 8, h->length);
	put_le64(out + 16, h->seq);
	put_le32(out + 24, h->payload_crc);
	h->header_crc = stream_crc32c(0, out, 28);
	put_le32(out + 28, h->header_crc);
}

bool stream_header_decode(const uint8_t in[STREAM_HEADER_SIZE], struct stream_header *h)
{
	h->type = get_le32(in);
	h->flags = get_le32(in + 4);
	h->length = get_le64(in + 8);
	h->seq = get_le64(in + 16);
	h->payload_crc = get_le32(in + 24);
	h->header_crc = get_le32(in + 28);
	return stream_crc32c(0, in, 28) == h->header_crc;
}

const char *stream_record_type_name(uint32_t type)
{
	static const char *const names[] = {
		[STREAM_REC_BEGIN] = "BEGIN",	    [STREAM_REC_CONFIG] = "CONFIG",
		[STREAM_REC_DS_BEGIN] = "DS_BEGIN", [STREAM_REC_DS_DATA] = "DS_DATA",
		[STREAM_REC_DS_END] = "DS_END",	    [STREAM_REC_END] = "END",
	};

	if (type < ARRAY_SIZE(names) && names[type])
		return names[type];
	return "unknown";
}

const char *stream_encoding_name(enum stream_encoding enc)
{
	switch (enc) {
	case STREAM_ENC_BTRFS:
		return "btrfs";
	case STREAM_ENC_ZFS:
		return "zfs";
	case STREAM_ENC_TAR:
		return "tar";
	case STREAM_ENC_BLOCKS:
		return "blocks";
	case STREAM_ENC_BLOCKS_DELTA:
		return "blocks-delta";
	case STREAM_ENC_TAR_DELTA:
		return "tar-delta";
	}
	return "unknown";
}

enum stream_encoding stream_encoding_by_name(const char *name)
{
	for (enum stream_encoding e = STREAM_ENC_BTRFS; e <= STREAM_ENC_TAR_DELTA; e++)
		if (name && streq(stream_encoding_name(e), name))
			return e;
	return 0;
}

const char *stream_kind_name(enum stream_ds_kind kind)
{
	switch (kind) {
	case STREAM_KIND_FILESYSTEM:
		return "filesystem";
	case STREAM_KIND_VOLUME:
		return "volume";
	}
	return "unknown";
}

static bool child_char_ok(char c)
{
	return isascii((unsigned char)c) &&
	       (isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':' || c == '-');
}

int stream_dataset_name_check(const char *uuid, const char *rel, struct vm_error *err)
{
	size_t len;

	if (!uuid || !vm_uuid_valid(uuid))
		return vm_error_setx(err, EINVAL, "dataset name check: \"%s\" is not a VM uuid",
				     uuid ? uuid : "(none)");
	if (!rel)
		return vm_error_setx(err, EINVAL, "dataset name missing");
	len = strlen(rel);
	if (len > STREAM_NAME_MAX)
		return vm_error_setx(err, EINVAL,
				     "dataset name of %zu bytes is longer than %u bytes", len,
				     STREAM_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if (iscntrl((unsigned char)rel[i]) || !isascii((unsigned char)rel[i]))
			return vm_error_setx(err, EINVAL,
					     "dataset name \"%.*s...\" has a control or non-ASCII "
					     "character: it must belong to zones/%s",
					     (int)i, rel, uuid);
	if (len == 0)
		return 0; /* zones/UUID itself */
	for (const char *p = rel; (p = strstr(p, "..")); p += 2)
		if ((p == rel || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return vm_error_setx(err, EINVAL,
					     "dataset name \"%s\" leaves zones/%s (\"..\")", rel,
					     uuid);
	if (rel[0] == '/') {
		const char *c = rel + 1;

		if (!*c)
			return vm_error_setx(err, EINVAL,
					     "dataset name \"/\" names no dataset of zones/%s",
					     uuid);
		if (streq(c, ".") || streq(c, ".."))
			return vm_error_setx(
				err, EINVAL,
				"dataset name \"%s\" leaves zones/%s (\"..\" or \".\")", rel, uuid);
		for (; *c; c++)
			if (!child_char_ok(*c))
				return vm_error_setx(
					err, EINVAL,
					"dataset name \"%s\" is not a single child of zones/%s "
					"(bad character '%c')",
					rel, uuid, *c);
		return 0;
	}
	if (strncmp(rel, "-disk", 5) == 0) {
		const char *n = rel + 5;
		size_t digits = strspn(n, "0123456789");

		if (digits >= 1 && digits <= 3 && n[digits] == '\0' && !(n[0] == '0' && digits > 1))
			return 0;
	}
	return vm_error_setx(err, EINVAL,
			     "dataset name \"%s\" does not belong to VM %s (allowed: \"\", "
			     "\"/CHILD\", \"-diskN\")",
			     rel, uuid);
}

void stream_dataset_full_name(const char *uuid, const char *rel, char *out, size_t size)
{
	snprintf(out, size, "zones/%s%s", uuid, rel);
}

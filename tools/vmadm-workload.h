/* SPDX-License-Identifier: MIT */
/* The record format that vmadm-workload writes and vmadm-workload-check
 * reads. See docs/workload.md for the layout; this header is the
 * definition, shared by both programs (header-only, so that the static
 * guest binary and the host checker need no common library).
 *
 * A record is one 512-byte sector, little-endian:
 *
 *   off size field
 *     0    4 magic "VMWL"
 *     4    2 version (1)
 *     6    2 record size (512)
 *     8    8 seq, from 1, +1 per record, continued across restarts
 *    16    8 guest CLOCK_MONOTONIC, ns
 *    24    8 guest CLOCK_REALTIME, ns
 *    32   16 boot id (kernel's /proc/sys/kernel/random/boot_id, binary)
 *    48   16 run id (random, new each time the workload starts)
 *    64    4 interval, ms
 *    68    4 flags (WL_FLAG_*)
 *    72  436 zero
 *   508    4 CRC-32 (IEEE, as zlib's crc32()) of bytes 0..507
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WL_MAGIC "VMWL"
#define WL_VERSION 1
#define WL_RECORD_SIZE 512
/* Disk mode: records live in [offset + 512, offset + WL_DEFAULT_AREA); the
 * sector at offset holds an optional text config ("VMWLCONF ..."), and
 * the scratch area for --burst starts at offset + WL_DEFAULT_AREA. */
#define WL_DEFAULT_OFFSET (32ull << 20)
#define WL_DEFAULT_AREA (16ull << 20)
#define WL_CONF_MAGIC "VMWLCONF"

/* The first record written by a run of the workload. */
#define WL_FLAG_START 0x1u

struct wl_record {
	uint64_t seq;
	uint64_t mono_ns;
	uint64_t real_ns;
	uint8_t boot_id[16];
	uint8_t run_id[16];
	uint32_t interval_ms;
	uint32_t flags;
};

enum wl_slot {
	WL_SLOT_EMPTY,	 /* all zero: never written */
	WL_SLOT_VALID,	 /* magic, version and checksum match */
	WL_SLOT_CORRUPT, /* anything else */
};

static inline uint32_t wl_crc32(const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	static bool ready;
	uint32_t crc = 0xffffffffu;

	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = true;
	}
	while (n--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

static inline void wl_put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static inline void wl_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static inline void wl_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

static inline uint16_t wl_get16(const uint8_t *p)
{
	return p[0] | (uint16_t)p[1] << 8;
}

static inline uint32_t wl_get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t wl_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline void wl_encode(const struct wl_record *r, uint8_t out[WL_RECORD_SIZE])
{
	memset(out, 0, WL_RECORD_SIZE);
	memcpy(out, WL_MAGIC, 4);
	wl_put16(out + 4, WL_VERSION);
	wl_put16(out + 6, WL_RECORD_SIZE);
	wl_put64(out + 8, r->seq);
	wl_put64(out + 16, r->mono_ns);
	wl_put64(out + 24, r->real_ns);
	memcpy(out + 32, r->boot_id, 16);
	memcpy(out + 48, r->run_id, 16);
	wl_put32(out + 64, r->interval_ms);
	wl_put32(out + 68, r->flags);
	wl_put32(out + 508, wl_crc32(out, 508));
}

/* Classify one 512-byte slot; fill *ret only for a valid record. */
static inline enum wl_slot wl_decode(const uint8_t in[WL_RECORD_SIZE], struct wl_record *ret)
{
	bool zero = true;

	for (size_t i = 0; i < WL_RECORD_SIZE && zero; i++)
		zero = in[i] == 0;
	if (zero)
		return WL_SLOT_EMPTY;
	if (memcmp(in, WL_MAGIC, 4) != 0 || wl_get16(in + 4) != WL_VERSION ||
	    wl_get16(in + 6) != WL_RECORD_SIZE || wl_get32(in + 508) != wl_crc32(in, 508) ||
	    wl_get64(in + 8) == 0)
		return WL_SLOT_CORRUPT;
	ret->seq = wl_get64(in + 8);
	ret->mono_ns = wl_get64(in + 16);
	ret->real_ns = wl_get64(in + 24);
	memcpy(ret->boot_id, in + 32, 16);
	memcpy(ret->run_id, in + 48, 16);
	ret->interval_ms = wl_get32(in + 64);
	ret->flags = wl_get32(in + 68);
	return WL_SLOT_VALID;
}

/* SPDX-License-Identifier: MIT */
/* Helpers shared by the stream's files; not part of the API. */
#pragma once

#include <stdint.h>
#include <string.h>

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define STREAM_SHA256_LEN 32

/* Read exactly len bytes of the current dataset's data; returns len, 0 when
 * the dataset ended before the first byte, or a negative errno (a dataset
 * ending inside the len bytes is an error naming what). */
struct stream_reader;
struct vm_error;
ssize_t stream_read_exact(struct stream_reader *r, void *buf, size_t len, const char *what,
			  struct vm_error *err);

/* The reader's current dataset description (NULL outside a dataset). */
const struct stream_dataset *stream_reader_current(const struct stream_reader *r);

/* The full name of the writer's current dataset ("zones/UUID-disk0"). */
struct stream_writer;
const char *stream_writer_dataset_name(const struct stream_writer *w);

/* SPDX-License-Identifier: MIT */
/*
 * Raw records: read and write framed records without interpreting them, for
 * tools that inspect a stream up to where it is damaged (vmadm-stream dump)
 * or forge one defect into a valid stream (vmadm-stream rewrite). The
 * receive path uses reader.c, which enforces every rule.
 */
#include "stream/stream.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "stream/stream-private.h"
#include "util/fs.h"
#include "util/macros.h"

DEFINE_CLEANUP(EVP_MD_CTX, EVP_MD_CTX_free)

bool stream_record_limits(uint32_t type, uint64_t *ret_min, uint64_t *ret_max)
{
	uint64_t min = 1, max;

	switch (type) {
	case STREAM_REC_BEGIN:
		min = 32;
		max = STREAM_BEGIN_MAX;
		break;
	case STREAM_REC_CONFIG:
		max = STREAM_CONFIG_MAX;
		break;
	case STREAM_REC_DS_BEGIN:
		max = STREAM_DS_BEGIN_MAX;
		break;
	case STREAM_REC_DS_DATA:
		max = STREAM_WIRE_MAX;
		break;
	case STREAM_REC_DS_END:
		min = max = STREAM_DS_END_SIZE;
		break;
	case STREAM_REC_END:
		min = max = STREAM_END_SIZE;
		break;
	default:
		*ret_min = 0;
		*ret_max = STREAM_WIRE_MAX;
		return false;
	}
	*ret_min = min;
	*ret_max = max;
	return true;
}

struct stream_raw_reader {
	int fd;
	uint64_t offset;
	bool stuck;		 /* the last record left us unable to find the next */
	EVP_MD_CTX *hash, *last; /* all bytes so far; all bytes before the last header */
	uint8_t hdr[STREAM_HEADER_SIZE];
	uint8_t *payload;
	size_t cap;
};

void stream_raw_reader_free(struct stream_raw_reader *r)
{
	if (!r)
		return;
	EVP_MD_CTX_free(r->hash);
	EVP_MD_CTX_free(r->last);
	free(r->payload);
	free(r);
}

int stream_raw_reader_open(int fd, struct stream_raw_reader **ret, struct vm_error *err)
{
	_cleanup_stream_raw_reader_ struct stream_raw_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return vm_error_set(err, ENOMEM, "stream raw reader");
	r->fd = fd;
	r->hash = EVP_MD_CTX_new();
	r->last = EVP_MD_CTX_new();
	if (!r->hash || !r->last)
		return vm_error_set(err, ENOMEM, "stream raw reader");
	if (EVP_DigestInit_ex(r->hash, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(r->last, EVP_sha256(), NULL) != 1)
		return vm_error_setx(err, EIO, "stream raw reader: SHA-256 unavailable");
	*ret = TAKE_PTR(r);
	return 0;
}

static int raw_read(struct stream_raw_reader *r, void *buf, size_t len, size_t *ret_n,
		    struct vm_error *err)
{
	ssize_t n = fs_read_full(r->fd, buf, len);

	if (n < 0)
		return vm_error_set(err, (int)n, "read stream at byte %llu",
				    (unsigned long long)r->offset);
	r->offset += n;
	*ret_n = n;
	return 0;
}

int stream_raw_next(struct stream_raw_reader *r, struct stream_raw_record *rec,
		    struct vm_error *err)
{
	uint64_t min, max;
	size_t n = 0;
	int k;

	if (r->stuck)
		return vm_error_setx(err, EPROTO,
				     "stream at byte %llu: no record boundary after a damaged "
				     "record",
				     (unsigned long long)r->offset);
	memset(rec, 0, sizeof(*rec));
	rec->offset = r->offset;
	if (EVP_MD_CTX_copy_ex(r->last, r->hash) != 1)
		return vm_error_setx(err, EIO, "stream raw reader: SHA-256 copy");
	k = raw_read(r, r->hdr, sizeof(r->hdr), &n, err);
	if (k < 0)
		return k;
	if (n == 0)
		return 0;
	rec->header_len = n;
	EVP_DigestUpdate(r->hash, r->hdr, n);
	if (n < sizeof(r->hdr)) {
		r->stuck = true;
		return 1;
	}
	rec->header_ok = stream_header_decode(r->hdr, &rec->h);
	stream_record_limits(rec->h.type, &min, &max);
	rec->length_ok = rec->h.length >= min && rec->h.length <= max;
	if (!rec->header_ok || !rec->length_ok) {
		r->stuck = true;
		return 1;
	}
	if (rec->h.length > r->cap) {
		/* bounded by max: at most 16 MiB */
		uint8_t *p = realloc(r->payload, rec->h.length);

		if (!p)
			return vm_error_set(err, ENOMEM, "stream raw reader");
		r->payload = p;
		r->cap = rec->h.length;
	}
	k = raw_read(r, r->payload, rec->h.length, &n, err);
	if (k < 0)
		return k;
	/* The stream hash covers every payload but DS_DATA's (the dataset
	 * hash in DS_END covers those). */
	if (rec->h.type != STREAM_REC_DS_DATA)
		EVP_DigestUpdate(r->hash, r->payload, n);
	rec->payload = r->payload;
	rec->payload_len = n;
	rec->complete = n == rec->h.length;
	if (!rec->complete)
		r->stuck = true;
	rec->payload_ok = rec->complete && stream_crc32c(0, r->payload, n) == rec->h.payload_crc;
	return 1;
}

void stream_raw_reader_hash(struct stream_raw_reader *r, uint8_t out[32])
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len = 0;

	memset(out, 0, 32);
	if (c && EVP_MD_CTX_copy_ex(c, r->last) == 1)
		EVP_DigestFinal_ex(c, out, &len);
}

uint64_t stream_raw_reader_bytes(const struct stream_raw_reader *r)
{
	return r->offset;
}

struct stream_raw_writer {
	int fd;
	uint64_t bytes;
	EVP_MD_CTX *hash;
};

void stream_raw_writer_free(struct stream_raw_writer *w)
{
	if (!w)
		return;
	EVP_MD_CTX_free(w->hash);
	free(w);
}

int stream_raw_writer_open(int fd, struct stream_raw_writer **ret, struct vm_error *err)
{
	_cleanup_stream_raw_writer_ struct stream_raw_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return vm_error_set(err, ENOMEM, "stream raw writer");
	w->fd = fd;
	w->hash = EVP_MD_CTX_new();
	if (!w->hash || EVP_DigestInit_ex(w->hash, EVP_sha256(), NULL) != 1)
		return vm_error_setx(err, EIO, "stream raw writer: SHA-256 unavailable");
	*ret = TAKE_PTR(w);
	return 0;
}

static int raw_write(struct stream_raw_writer *w, const void *buf, size_t len, bool hashed,
		     struct vm_error *err)
{
	int k = fs_write_all(w->fd, buf, len);

	if (k < 0)
		return vm_error_set(err, k, "write stream at byte %llu",
				    (unsigned long long)w->bytes);
	if (hashed)
		EVP_DigestUpdate(w->hash, buf, len);
	w->bytes += len;
	return 0;
}

int stream_raw_write(struct stream_raw_writer *w, struct stream_header *h, const void *payload,
		     size_t len, struct vm_error *err)
{
	uint8_t hdr[STREAM_HEADER_SIZE];
	int k;

	h->payload_crc = stream_crc32c(0, payload, len);
	stream_header_encode(h, hdr);
	k = raw_write(w, hdr, sizeof(hdr), true, err);
	if (k < 0 || len == 0)
		return k;
	return raw_write(w, payload, len, h->type != STREAM_REC_DS_DATA, err);
}

void stream_raw_writer_hash(struct stream_raw_writer *w, uint8_t out[32])
{
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int len = 0;

	memset(out, 0, 32);
	if (c && EVP_MD_CTX_copy_ex(c, w->hash) == 1)
		EVP_DigestFinal_ex(c, out, &len);
}

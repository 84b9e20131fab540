/* SPDX-License-Identifier: MIT */
/* The stream writer: BEGIN, CONFIG, datasets in DS_* records, END. */
#include "stream/stream.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "stream/stream-private.h"
#include "util/fs.h"
#include "util/macros.h"
#include "util/uuid.h"

#define ZSTD_LEVEL 3

struct stream_writer {
	int fd;
	unsigned flags;
	uint64_t seq;
	uint64_t bytes;
	EVP_MD_CTX *stream_hash; /* what END covers: headers, non-DS_DATA payloads */
	struct stream_digest *ds_hash; /* the current dataset's data: XXH3-128 */
	ZSTD_CCtx *zc;
	uint8_t *chunk; /* pending data of the current dataset */
	size_t chunk_len;
	uint8_t *zbuf;
	size_t zbuf_size;
	char uuid[VM_UUID_LEN + 1];
	bool config_written, in_dataset, finished, broken;
	char ds_full[128];
	uint64_t ds_bytes;
	uint64_t ds_count;
	char **names; /* datasets written, to refuse duplicates */
};

static int write_bytes(struct stream_writer *w, const void *buf, size_t len, struct vm_error *err)
{
	int r;

	r = fs_write_all(w->fd, buf, len);
	if (r < 0) {
		w->broken = true;
		if (r == -EPIPE)
			return vm_error_setx(
				err, EPIPE, "write stream at byte %llu: the reader closed the pipe",
				(unsigned long long)w->bytes);
		return vm_error_set(err, r, "write stream at byte %llu",
				    (unsigned long long)w->bytes);
	}
	w->bytes += len;
	return 0;
}

static int write_record(struct stream_writer *w, uint32_t type, uint32_t flags, const void *payload,
			size_t len, struct vm_error *err)
{
	struct stream_header h = {
		.type = type,
		.flags = flags,
		.length = len,
		.seq = w->seq,
		.payload_crc = stream_crc32c(0, payload, len),
	};
	uint8_t hdr[STREAM_HEADER_SIZE];
	int r;

	if (w->broken)
		return vm_error_setx(err, EIO, "write stream: an earlier write failed");
	stream_header_encode(&h, hdr);
	/* The stream hash binds every header (seq, CRC) and every payload but
	 * DS_DATA's, whose bytes the dataset hash covers already. */
	if (!w->finished) {
		EVP_DigestUpdate(w->stream_hash, hdr, sizeof(hdr));
		if (type != STREAM_REC_DS_DATA)
			EVP_DigestUpdate(w->stream_hash, payload, len);
	}
	r = write_bytes(w, hdr, sizeof(hdr), err);
	if (r < 0)
		return r;
	if (len > 0) {
		r = write_bytes(w, payload, len, err);
		if (r < 0)
			return r;
	}
	w->seq++;
	return 0;
}

void stream_writer_free(struct stream_writer *w)
{
	if (!w)
		return;
	EVP_MD_CTX_free(w->stream_hash);
	stream_digest_free(w->ds_hash);
	ZSTD_freeCCtx(w->zc);
	free(w->chunk);
	free(w->zbuf);
	strv_free(w->names);
	free(w);
}

int stream_writer_open(int fd, unsigned flags, struct stream_writer **ret, struct vm_error *err)
{
	_cleanup_stream_writer_ struct stream_writer *w = calloc(1, sizeof(*w));
	uint8_t begin[32] = {0};
	int r;

	if (!w)
		return vm_error_set(err, ENOMEM, "stream writer");
	w->fd = fd;
	w->flags = flags;
	stream_pipe_grow(fd);
	w->stream_hash = EVP_MD_CTX_new();
	w->ds_hash = stream_digest_new();
	w->chunk = malloc(STREAM_CHUNK_MAX);
	w->names = calloc(1, sizeof(char *));
	if (!w->stream_hash || !w->ds_hash || !w->chunk || !w->names)
		return vm_error_set(err, ENOMEM, "stream writer");
	if (EVP_DigestInit_ex(w->stream_hash, EVP_sha256(), NULL) != 1)
		return vm_error_setx(err, EIO, "stream writer: SHA-256 unavailable");
	if (flags & STREAM_WRITE_ZSTD) {
		w->zc = ZSTD_createCCtx();
		w->zbuf_size = ZSTD_compressBound(STREAM_CHUNK_MAX);
		w->zbuf = malloc(w->zbuf_size);
		if (!w->zc || !w->zbuf)
			return vm_error_set(err, ENOMEM, "stream writer: zstd");
		ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, ZSTD_LEVEL);
		ZSTD_CCtx_setParameter(w->zc, ZSTD_c_contentSizeFlag, 1);
	}

	memcpy(begin, STREAM_MAGIC, 8);
	put_le32(begin + 8, STREAM_VERSION);
	put_le64(begin + 16,
		 STREAM_FEATURE_XXH3 | ((flags & STREAM_WRITE_ZSTD) ? STREAM_FEATURE_ZSTD : 0));
	put_le64(begin + 24, 0);
	r = write_record(w, STREAM_REC_BEGIN, 0, begin, sizeof(begin), err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(w);
	return 0;
}

int stream_write_config(struct stream_writer *w, json_t *config, struct vm_error *err)
{
	_cleanup_free_ char *text = NULL;
	const char *uuid;
	size_t len;

	if (w->config_written)
		return vm_error_setx(err, EINVAL, "stream: config written twice");
	uuid = json_string_value(json_object_get(config, "uuid"));
	if (!json_is_object(config) || !uuid || !vm_uuid_valid(uuid))
		return vm_error_setx(err, EINVAL, "stream: the config has no valid \"uuid\"");
	text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return vm_error_set(err, ENOMEM, "stream: serialize config");
	len = strlen(text);
	if (len > STREAM_CONFIG_MAX)
		return vm_error_setx(err, EFBIG, "stream: config of %zu bytes exceeds %u bytes",
				     len, STREAM_CONFIG_MAX);
	snprintf(w->uuid, sizeof(w->uuid), "%s", uuid);
	w->config_written = true;
	return write_record(w, STREAM_REC_CONFIG, 0, text, len, err);
}

int stream_begin_dataset(struct stream_writer *w, const struct stream_dataset *ds,
			 struct vm_error *err)
{
	_cleanup_json_ json_t *o = NULL;
	_cleanup_free_ char *text = NULL;
	size_t n;
	char **names;
	int r;

	if (!w->config_written || w->in_dataset || w->finished)
		return vm_error_setx(err, EINVAL, "stream: dataset \"%s\" begun %s", ds->name,
				     w->in_dataset ? "inside another dataset"
						   : "before the config or after the end");
	r = stream_dataset_name_check(w->uuid, ds->name, err);
	if (r < 0)
		return vm_error_prefix(err, "send");
	for (n = 0; w->names[n]; n++)
		if (streq(w->names[n], ds->name))
			return vm_error_setx(err, EEXIST, "stream: dataset \"%s\" sent twice",
					     ds->name);
	if (!ds->snapshot || !*ds->snapshot)
		return vm_error_setx(err, EINVAL, "stream: dataset \"%s\" has no snapshot name",
				     ds->name);
	if (streq(stream_kind_name(ds->kind), "unknown") ||
	    streq(stream_encoding_name(ds->encoding), "unknown"))
		return vm_error_setx(err, EINVAL, "stream: dataset \"%s\": bad kind or encoding",
				     ds->name);

	o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s?}", "name", ds->name, "kind",
		      stream_kind_name(ds->kind), "size", (json_int_t)ds->size, "encoding",
		      stream_encoding_name(ds->encoding), "compression",
		      (w->flags & STREAM_WRITE_ZSTD) ? "zstd" : "none", "snapshot", ds->snapshot,
		      "from_snapshot", ds->from_snapshot);
	if (o && ds->has_used &&
	    json_object_set_new(o, "used", json_integer((json_int_t)ds->used)) < 0)
		o = (json_decref(o), NULL);
	if (o && ds->resume_token &&
	    json_object_set_new(o, "resume_token", json_string(ds->resume_token)) < 0)
		o = (json_decref(o), NULL);
	if (!o)
		return vm_error_setx(err, EINVAL, "stream: dataset \"%s\": cannot encode",
				     ds->name);
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return vm_error_set(err, ENOMEM, "stream: dataset \"%s\"", ds->name);
	if (strlen(text) > STREAM_DS_BEGIN_MAX)
		return vm_error_setx(err, EFBIG, "stream: dataset \"%s\": DS_BEGIN too large",
				     ds->name);

	names = realloc(w->names, (n + 2) * sizeof(char *));
	if (!names)
		return vm_error_set(err, ENOMEM, "stream");
	w->names = names;
	names[n] = strdup(ds->name);
	names[n + 1] = NULL;
	if (!names[n])
		return vm_error_set(err, ENOMEM, "stream");

	r = write_record(w, STREAM_REC_DS_BEGIN, 0, text, strlen(text), err);
	if (r < 0)
		return r;
	stream_dataset_full_name(w->uuid, ds->name, w->ds_full, sizeof(w->ds_full));
	if (stream_digest_init(w->ds_hash, STREAM_DIGEST_XXH3) < 0)
		return vm_error_setx(err, EIO, "stream: dataset \"%s\": XXH3 unavailable",
				     ds->name);
	w->in_dataset = true;
	w->ds_bytes = 0;
	w->chunk_len = 0;
	return 0;
}

static int flush_record(struct stream_writer *w, size_t len, struct vm_error *err);

/* Write the pending chunk as a DS_DATA record and add it to the dataset
 * hash (XXH3 runs at memory speed: no helper thread needed). */
static int flush_chunk(struct stream_writer *w, struct vm_error *err)
{
	size_t len = w->chunk_len;
	int r;

	if (len == 0)
		return 0;
	stream_digest_update(w->ds_hash, w->chunk, len);
	r = flush_record(w, len, err);
	if (r < 0)
		return r;
	w->chunk_len = 0;
	return 0;
}

static int flush_record(struct stream_writer *w, size_t len, struct vm_error *err)
{
	const void *payload = w->chunk;
	uint32_t flags = 0;
	int r;

	if (w->zc) {
		size_t z = ZSTD_compress2(w->zc, w->zbuf, w->zbuf_size, w->chunk, len);

		if (ZSTD_isError(z))
			return vm_error_setx(err, EIO, "send %s: zstd: %s", w->ds_full,
					     ZSTD_getErrorName(z));
		if (z < len) {
			payload = w->zbuf;
			len = z;
			flags |= STREAM_FLAG_ZSTD;
		}
	}
	r = write_record(w, STREAM_REC_DS_DATA, flags, payload, len, err);
	if (r < 0)
		return vm_error_prefix(err, "send %s", w->ds_full);
	return 0;
}

int stream_write_data(struct stream_writer *w, const void *buf, size_t len, struct vm_error *err)
{
	const uint8_t *p = buf;
	int r;

	if (!w->in_dataset)
		return vm_error_setx(err, EINVAL, "stream: data written outside a dataset");
	w->ds_bytes += len; /* hashed chunk by chunk in flush_chunk */
	while (len > 0) {
		size_t n = STREAM_CHUNK_MAX - w->chunk_len;

		if (n > len)
			n = len;
		memcpy(w->chunk + w->chunk_len, p, n);
		w->chunk_len += n;
		p += n;
		len -= n;
		if (w->chunk_len == STREAM_CHUNK_MAX) {
			r = flush_chunk(w, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int stream_writer_space(struct stream_writer *w, void **ret_buf, size_t *ret_len,
			struct vm_error *err)
{
	if (!w->in_dataset)
		return vm_error_setx(err, EINVAL, "stream: data written outside a dataset");
	*ret_buf = w->chunk + w->chunk_len; /* never full: a full chunk is flushed */
	*ret_len = STREAM_CHUNK_MAX - w->chunk_len;
	return 0;
}

int stream_writer_commit(struct stream_writer *w, size_t len, struct vm_error *err)
{
	w->ds_bytes += len;
	w->chunk_len += len;
	if (w->chunk_len == STREAM_CHUNK_MAX)
		return flush_chunk(w, err);
	return 0;
}

int stream_end_dataset(struct stream_writer *w, struct vm_error *err)
{
	uint8_t end[STREAM_DS_END_SIZE];
	int r;

	if (!w->in_dataset)
		return vm_error_setx(err, EINVAL, "stream: no dataset to end");
	r = flush_chunk(w, err);
	if (r < 0)
		return r;
	put_le64(end, w->ds_bytes);
	stream_digest_final(w->ds_hash, end + 8);
	r = write_record(w, STREAM_REC_DS_END, 0, end, sizeof(end), err);
	if (r < 0)
		return vm_error_prefix(err, "send %s", w->ds_full);
	w->in_dataset = false;
	w->ds_count++;
	return 0;
}

int stream_finish(struct stream_writer *w, struct vm_error *err)
{
	uint8_t end[STREAM_END_SIZE];
	unsigned int mdlen = 0;

	if (w->in_dataset || !w->config_written || w->finished)
		return vm_error_setx(err, EINVAL, "stream: finished %s",
				     w->in_dataset ? "inside a dataset" : "too early or twice");
	put_le64(end, w->ds_count);
	EVP_DigestFinal_ex(w->stream_hash, end + 8, &mdlen);
	w->finished = true;
	return write_record(w, STREAM_REC_END, 0, end, sizeof(end), err);
}

uint64_t stream_writer_bytes(const struct stream_writer *w)
{
	return w->bytes;
}

const char *stream_writer_dataset_name(const struct stream_writer *w)
{
	return w->ds_full;
}

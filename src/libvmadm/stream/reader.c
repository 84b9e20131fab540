/* SPDX-License-Identifier: MIT */
/*
 * The stream reader. It trusts nothing it reads: a header's CRC is checked
 * before its length is believed, the length is checked against the record
 * type's limit before anything is allocated, the payload's CRC before the
 * payload is parsed or handed out, and names before anyone acts on them.
 */
#include "stream/stream.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "stream/stream-private.h"
#include "util/fs.h"
#include "util/macros.h"
#include "util/uuid.h"

enum reader_state {
	ST_CONFIG,   /* BEGIN read, CONFIG next */
	ST_DATASETS, /* between datasets */
	ST_DATA,     /* inside a dataset, before its DS_END */
	ST_DONE,     /* END and end of input checked */
	ST_FAILED,   /* an error was reported; the stream is unusable */
};

struct stream_reader {
	int fd;
	uint8_t prefix[64]; /* bytes the caller read from fd before opening */
	size_t prefix_len, prefix_used;
	uint64_t offset; /* bytes consumed from fd */
	uint64_t seq;	 /* number of the next record */
	uint32_t version;
	uint64_t features_req, features_opt;
	enum reader_state state;
	EVP_MD_CTX *stream_hash;       /* headers and non-DS_DATA payloads before END */
	struct stream_digest *ds_hash; /* XXH3-128, or SHA-256 in older streams */
	ZSTD_DCtx *zd;

	/* the record just read */
	struct stream_header h;
	uint64_t rec_off;
	uint8_t *payload;
	size_t payload_cap;

	uint8_t *chunk;	    /* decompressed DS_DATA payload */
	const uint8_t *cur; /* unread part of the current chunk (stream_read_data) */
	size_t cur_len;

	char uuid[VM_UUID_LEN + 1];
	struct stream_dataset ds;
	char *snapshot, *from_snapshot, *resume_token;
	bool cut; /* the input ended or failed early: nothing in it was wrong */
	char ds_full[128];
	uint64_t ds_bytes, ds_count;
	uint64_t ds_limit; /* data bytes the dataset may carry */
	json_t *names;	   /* the datasets seen: a set, one lookup per DS_BEGIN */
};

void stream_reader_free(struct stream_reader *r)
{
	if (!r)
		return;
	EVP_MD_CTX_free(r->stream_hash);
	stream_digest_free(r->ds_hash);
	ZSTD_freeDCtx(r->zd);
	free(r->payload);
	free(r->chunk);
	free(r->snapshot);
	free(r->from_snapshot);
	free(r->resume_token);
	json_decref(r->names);
	free(r);
}

bool stream_reader_was_cut(const struct stream_reader *r)
{
	return r->cut;
}

uint64_t stream_reader_bytes(const struct stream_reader *r)
{
	return r->offset;
}

const char *stream_reader_uuid(const struct stream_reader *r)
{
	return r->uuid;
}

const char *stream_reader_dataset_name(const struct stream_reader *r)
{
	return r->ds_full;
}

uint64_t stream_dataset_declared(const struct stream_dataset *ds)
{
	return ds->has_used ? ds->used : ds->size;
}

uint64_t stream_dataset_data_limit(const struct stream_dataset *ds)
{
	uint64_t d = stream_dataset_declared(ds), eighth = d / 8;

	/* saturating: a declaration near 2^64 means no limit, not a wrap */
	if (d > UINT64_MAX - eighth - STREAM_DATA_SLACK)
		return UINT64_MAX;
	return d + eighth + STREAM_DATA_SLACK;
}

const struct stream_dataset *stream_reader_current(const struct stream_reader *r)
{
	return r->ds_full[0] ? &r->ds : NULL;
}

/* " (inside dataset zones/UUID-disk0)" while in a dataset, else "". */
static const char *where(struct stream_reader *r, char *buf, size_t size)
{
	if (r->state == ST_DATA)
		snprintf(buf, size, " (inside dataset %s)", r->ds_full);
	else
		buf[0] = '\0';
	return buf;
}

/* Every error goes through here so that the reader refuses to go on. */
#define fail(r, code, ...)                                                                         \
	({                                                                                         \
		int _k = vm_error_setx(err, code, __VA_ARGS__);                                    \
		(r)->state = ST_FAILED;                                                            \
		_k;                                                                                \
	})

static int read_in(struct stream_reader *r, void *buf, size_t len, size_t *ret_n,
		   struct vm_error *err)
{
	size_t from_prefix = 0;
	ssize_t n;

	if (len == 0) {
		/* an empty payload; buf may be NULL (no payload buffer yet) */
		*ret_n = 0;
		return 0;
	}
	if (r->prefix_used < r->prefix_len) {
		from_prefix = r->prefix_len - r->prefix_used;
		if (from_prefix > len)
			from_prefix = len;
		memcpy(buf, r->prefix + r->prefix_used, from_prefix);
		r->prefix_used += from_prefix;
	}
	n = fs_read_full(r->fd, (uint8_t *)buf + from_prefix, len - from_prefix);
	if (n >= 0)
		n += from_prefix;
	if (n < 0) {
		r->state = ST_FAILED;
		r->cut = true;
		return vm_error_set(err, (int)n, "read stream at byte %llu",
				    (unsigned long long)r->offset);
	}
	r->offset += n;
	*ret_n = n;
	return 0;
}

static const char *compressed_input_hint(const uint8_t *b, size_t n)
{
	if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return ": this is gzip data, decompress it first (gunzip -c)";
	if (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
		return ": this is zstd data, decompress it first (zstd -dc)";
	if (n >= 3 && memcmp(b, "BZh", 3) == 0)
		return ": this is bzip2 data, decompress it first (bzip2 -dc)";
	if (n >= 6 && memcmp(b,
			     "\xfd"
			     "7zXZ",
			     5) == 0)
		return ": this is xz data, decompress it first (xz -dc)";
	return "";
}

/* Read the next record into r->h / r->payload, skipping unknown skippable
 * ones. Returns 1, 0 at end of input on a record boundary, or -errno. */
static int read_record(struct stream_reader *r, struct vm_error *err)
{
	char w[200];

	for (;;) {
		uint8_t hdr[STREAM_HEADER_SIZE];
		struct stream_header *h = &r->h;
		uint64_t min, max;
		bool known;
		size_t n = 0;
		int k;

		if (r->state == ST_FAILED)
			return vm_error_setx(err, EIO, "stream: unusable after an earlier error");
		r->rec_off = r->offset;
		k = read_in(r, hdr, sizeof(hdr), &n, err);
		if (k < 0)
			return k;
		if (n == 0)
			return 0;
		if (n < sizeof(hdr)) {
			if (r->seq == 0 && compressed_input_hint(hdr, n)[0])
				return fail(r, EINVAL, "not a vmadm stream%s",
					    compressed_input_hint(hdr, n));
			r->cut = true;
			return fail(r, EPROTO,
				    "stream truncated at byte %llu%s: the header of record %llu "
				    "is incomplete",
				    (unsigned long long)r->offset, where(r, w, sizeof(w)),
				    (unsigned long long)r->seq);
		}
		if (!stream_header_decode(hdr, h)) {
			if (r->seq == 0)
				return fail(r, EINVAL,
					    "not a vmadm stream: the first record is not a valid "
					    "BEGIN record%s",
					    compressed_input_hint(hdr, n));
			return fail(r, EBADMSG,
				    "checksum mismatch in the header of record %llu at byte %llu%s",
				    (unsigned long long)r->seq, (unsigned long long)r->rec_off,
				    where(r, w, sizeof(w)));
		}
		if (h->seq != r->seq)
			return fail(r, EPROTO,
				    "record at byte %llu is out of sequence: numbered %llu, "
				    "expected %llu%s",
				    (unsigned long long)r->rec_off, (unsigned long long)h->seq,
				    (unsigned long long)r->seq, where(r, w, sizeof(w)));
		known = stream_record_limits(h->type, &min, &max);
		if (!known && !(h->flags & STREAM_FLAG_SKIPPABLE))
			return fail(r, EPROTO,
				    "record %llu at byte %llu has unknown type %u: the stream "
				    "needs a newer vmadm",
				    (unsigned long long)r->seq, (unsigned long long)r->rec_off,
				    h->type);
		if ((h->flags & ~STREAM_FLAGS_KNOWN) ||
		    ((h->flags & STREAM_FLAG_ZSTD) &&
		     (h->type != STREAM_REC_DS_DATA || !(r->features_req & STREAM_FEATURE_ZSTD))))
			return fail(r, EPROTO,
				    "record %llu (type %s) at byte %llu has invalid flags 0x%x%s",
				    (unsigned long long)r->seq, stream_record_type_name(h->type),
				    (unsigned long long)r->rec_off, h->flags,
				    where(r, w, sizeof(w)));
		if (h->length < min || h->length > max)
			return fail(r, EPROTO,
				    "record %llu (type %s) at byte %llu declares a payload of "
				    "%llu bytes, %s the %llu allowed%s",
				    (unsigned long long)r->seq, stream_record_type_name(h->type),
				    (unsigned long long)r->rec_off, (unsigned long long)h->length,
				    h->length < min ? "less than" : "more than",
				    (unsigned long long)(h->length < min ? min : max),
				    where(r, w, sizeof(w)));
		/* bounded above: at most 16 MiB */
		if (h->length > r->payload_cap) {
			uint8_t *p = realloc(r->payload, h->length);

			if (!p)
				return fail(r, ENOMEM, "stream: out of memory for record %llu",
					    (unsigned long long)r->seq);
			r->payload = p;
			r->payload_cap = h->length;
		}
		k = read_in(r, r->payload, h->length, &n, err);
		if (k < 0)
			return k;
		if (n < h->length)
			return r->cut = true,
			       fail(r, EPROTO,
				    "stream truncated at byte %llu%s: the payload of record %llu "
				    "(type %s) is incomplete",
				    (unsigned long long)r->offset, where(r, w, sizeof(w)),
				    (unsigned long long)r->seq, stream_record_type_name(h->type));
		if (stream_crc32c(0, r->payload, h->length) != h->payload_crc)
			return fail(r, EBADMSG,
				    "checksum mismatch in record %llu (type %s) at byte %llu%s",
				    (unsigned long long)r->seq, stream_record_type_name(h->type),
				    (unsigned long long)r->rec_off, where(r, w, sizeof(w)));
		/* The stream hash binds every header (seq, CRC) and every payload
		 * but DS_DATA's, whose bytes the dataset hash covers. */
		if (h->type != STREAM_REC_END) {
			EVP_DigestUpdate(r->stream_hash, hdr, sizeof(hdr));
			if (h->type != STREAM_REC_DS_DATA)
				EVP_DigestUpdate(r->stream_hash, r->payload, h->length);
		}
		r->seq++;
		/* unknown and skippable: next; but record 0 must be BEGIN, which
		 * the caller then says it is not */
		if (known || r->seq == 1)
			return 1;
	}
}

int stream_reader_open(int fd, struct stream_reader **ret, struct vm_error *err)
{
	return stream_reader_open_prefix(fd, NULL, 0, ret, err);
}

int stream_reader_open_prefix(int fd, const void *prefix, size_t prefix_len,
			      struct stream_reader **ret, struct vm_error *err)
{
	_cleanup_stream_reader_ struct stream_reader *r = calloc(1, sizeof(*r));
	const uint8_t *p;
	uint64_t unknown;
	int k;

	if (!r)
		return vm_error_set(err, ENOMEM, "stream reader");
	r->fd = fd;
	stream_pipe_grow(fd);
	if (prefix_len > sizeof(r->prefix))
		return vm_error_setx(err, EINVAL, "stream reader: prefix too long");
	if (prefix_len)
		memcpy(r->prefix, prefix, prefix_len);
	r->prefix_len = prefix_len;
	r->stream_hash = EVP_MD_CTX_new();
	r->ds_hash = stream_digest_new();
	r->zd = ZSTD_createDCtx();
	r->chunk = malloc(STREAM_CHUNK_MAX);
	r->names = json_object();
	if (!r->stream_hash || !r->ds_hash || !r->zd || !r->chunk || !r->names)
		return vm_error_set(err, ENOMEM, "stream reader");
	if (EVP_DigestInit_ex(r->stream_hash, EVP_sha256(), NULL) != 1)
		return vm_error_setx(err, EIO, "stream reader: SHA-256 unavailable");

	k = read_record(r, err);
	if (k < 0)
		return k;
	if (k == 0)
		return vm_error_setx(err, EINVAL, "not a vmadm stream: the input is empty");
	if (r->h.type != STREAM_REC_BEGIN)
		return vm_error_setx(err, EINVAL,
				     "not a vmadm stream: the first record is %s, not BEGIN",
				     stream_record_type_name(r->h.type));
	p = r->payload;
	if (memcmp(p, STREAM_MAGIC, 8) != 0) {
		char m[9];

		for (int i = 0; i < 8; i++)
			m[i] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"') ? (char)p[i] : '?';
		m[8] = '\0';
		return vm_error_setx(err, EINVAL, "not a vmadm stream: bad magic \"%s\"", m);
	}
	r->version = get_le32(p + 8);
	r->features_req = get_le64(p + 16);
	r->features_opt = get_le64(p + 24);
	if (r->version == 0)
		return vm_error_setx(err, EPROTO, "stream: invalid format version 0");
	if (r->version > STREAM_VERSION)
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "stream format version %u is newer than this vmadm reads "
				     "(up to %u): upgrade vmadm on the receiving host",
				     r->version, STREAM_VERSION);
	unknown = r->features_req & ~STREAM_FEATURES_REQUIRED_KNOWN;
	if (unknown)
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "stream requires unknown features 0x%llx: upgrade vmadm on "
				     "the receiving host",
				     (unsigned long long)unknown);
	r->state = ST_CONFIG;
	*ret = TAKE_PTR(r);
	return 0;
}

static int truncated_at_boundary(struct stream_reader *r, const char *before, struct vm_error *err)
{
	char w[200];

	r->cut = true;
	return fail(r, EPROTO, "stream truncated at byte %llu%s: it ends before its %s record",
		    (unsigned long long)r->offset, where(r, w, sizeof(w)), before);
}

static int unexpected(struct stream_reader *r, const char *where_txt, struct vm_error *err)
{
	return fail(r, EPROTO, "record %llu at byte %llu: unexpected %s record %s",
		    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off,
		    stream_record_type_name(r->h.type), where_txt);
}

int stream_read_config(struct stream_reader *r, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *config = NULL;
	json_error_t jerr;
	const char *uuid;
	int k;

	if (r->state != ST_CONFIG)
		return vm_error_setx(err, EINVAL, "stream: config read twice or out of order");
	k = read_record(r, err);
	if (k < 0)
		return k;
	if (k == 0)
		return truncated_at_boundary(r, "CONFIG", err);
	if (r->h.type != STREAM_REC_CONFIG)
		return unexpected(r, "where the CONFIG record belongs", err);
	config = json_loadb((const char *)r->payload, r->h.length, JSON_REJECT_DUPLICATES, &jerr);
	if (!config)
		return fail(r, EPROTO, "CONFIG record at byte %llu: invalid JSON: %s",
			    (unsigned long long)r->rec_off, jerr.text);
	uuid = json_string_value(json_object_get(config, "uuid"));
	if (!json_is_object(config) || !uuid || !vm_uuid_valid(uuid))
		return fail(r, EPROTO,
			    "CONFIG record at byte %llu: the config has no valid \"uuid\"",
			    (unsigned long long)r->rec_off);
	snprintf(r->uuid, sizeof(r->uuid), "%s", uuid);
	r->state = ST_DATASETS;
	*ret = TAKE_PTR(config);
	return 0;
}

static bool snapshot_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr("_.:-", *s)))
			return false;
	return true;
}

static int parse_ds_begin(struct stream_reader *r, struct vm_error *err)
{
	_cleanup_json_ json_t *o = NULL;
	json_error_t jerr;
	json_t *v;
	const char *name, *kind, *enc, *comp, *snap, *from = NULL, *tok = NULL;
	int k;

#define bad(...)                                                                                   \
	fail(r, EPROTO, "DS_BEGIN record %llu at byte %llu: %s", (unsigned long long)(r->seq - 1), \
	     (unsigned long long)r->rec_off, __VA_ARGS__)

	o = json_loadb((const char *)r->payload, r->h.length, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o))
		return bad("not a JSON object");
	name = json_string_value(json_object_get(o, "name"));
	kind = json_string_value(json_object_get(o, "kind"));
	enc = json_string_value(json_object_get(o, "encoding"));
	comp = json_string_value(json_object_get(o, "compression"));
	snap = json_string_value(json_object_get(o, "snapshot"));
	v = json_object_get(o, "from_snapshot");
	if (!name)
		return bad("no \"name\"");
	k = stream_dataset_name_check(r->uuid, name, err);
	if (k < 0) {
		r->state = ST_FAILED;
		return vm_error_prefix(err, "DS_BEGIN record %llu at byte %llu",
				       (unsigned long long)(r->seq - 1),
				       (unsigned long long)r->rec_off);
	}
	if (json_object_get(r->names, name))
		return fail(r, EPROTO,
			    "DS_BEGIN record %llu at byte %llu: dataset \"%s\" "
			    "appears twice",
			    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off, name);
	if (kind && streq(kind, "filesystem"))
		r->ds.kind = STREAM_KIND_FILESYSTEM;
	else if (kind && streq(kind, "volume"))
		r->ds.kind = STREAM_KIND_VOLUME;
	else
		return bad("missing or unknown \"kind\"");
	if (!enc)
		return bad("no \"encoding\"");
	if (streq(enc, "btrfs"))
		r->ds.encoding = STREAM_ENC_BTRFS;
	else if (streq(enc, "zfs"))
		r->ds.encoding = STREAM_ENC_ZFS;
	else if (streq(enc, "tar") && r->ds.kind == STREAM_KIND_FILESYSTEM)
		r->ds.encoding = STREAM_ENC_TAR;
	else if (streq(enc, "blocks") && r->ds.kind == STREAM_KIND_VOLUME)
		r->ds.encoding = STREAM_ENC_BLOCKS;
	else if (streq(enc, "blocks-delta") && r->ds.kind == STREAM_KIND_VOLUME)
		r->ds.encoding = STREAM_ENC_BLOCKS_DELTA;
	else if (streq(enc, "tar-delta") && r->ds.kind == STREAM_KIND_FILESYSTEM)
		r->ds.encoding = STREAM_ENC_TAR_DELTA;
	else
		return fail(r, EPROTO,
			    "DS_BEGIN record %llu at byte %llu: unknown encoding \"%s\" "
			    "for a %s",
			    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off, enc,
			    kind);
	v = json_object_get(o, "size");
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return bad("missing or negative \"size\"");
	r->ds.size = (uint64_t)json_integer_value(v);
	v = json_object_get(o, "used");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
		return bad("invalid \"used\"");
	r->ds.has_used = v != NULL;
	r->ds.used = v ? (uint64_t)json_integer_value(v) : 0;
	if (comp && !streq(comp, "none") && !streq(comp, "zstd"))
		return bad("unknown \"compression\"");
	if (!snap || !snapshot_name_ok(snap))
		return bad("missing or invalid \"snapshot\"");
	v = json_object_get(o, "from_snapshot");
	if (v && !json_is_null(v)) {
		from = json_string_value(v);
		if (!from || !snapshot_name_ok(from))
			return bad("invalid \"from_snapshot\"");
	}
	if (!from &&
	    (r->ds.encoding == STREAM_ENC_BLOCKS_DELTA || r->ds.encoding == STREAM_ENC_TAR_DELTA))
		return bad("a delta encoding without \"from_snapshot\"");
	v = json_object_get(o, "resume_token");
	if (v && !json_is_null(v)) {
		tok = json_string_value(v);
		if (!tok || !*tok || r->ds.encoding != STREAM_ENC_ZFS)
			return bad("a \"resume_token\" that is not a string, or not of a zfs "
				   "dataset");
	}
#undef bad

	free(r->snapshot);
	free(r->from_snapshot);
	free(r->resume_token);
	r->snapshot = strdup(snap);
	r->from_snapshot = from ? strdup(from) : NULL;
	r->resume_token = tok ? strdup(tok) : NULL;
	if (!r->snapshot || (from && !r->from_snapshot) || (tok && !r->resume_token) ||
	    json_object_set_new(r->names, name, json_true()) < 0)
		return fail(r, ENOMEM, "stream: out of memory");
	snprintf(r->ds.name, sizeof(r->ds.name), "%s", name);
	r->ds.snapshot = r->snapshot;
	r->ds.from_snapshot = r->from_snapshot;
	r->ds.resume_token = r->resume_token;
	r->ds.compressed = comp && streq(comp, "zstd");
	stream_dataset_full_name(r->uuid, name, r->ds_full, sizeof(r->ds_full));
	if (stream_digest_init(r->ds_hash, stream_digest_alg_of(r->features_req)) < 0)
		return fail(r, EIO, "stream: the %s hash is unavailable",
			    stream_digest_name(stream_digest_alg_of(r->features_req)));
	r->ds_bytes = 0;
	r->ds_limit = stream_dataset_data_limit(&r->ds);
	r->cur_len = 0;
	r->state = ST_DATA;
	return 0;
}

static int check_end(struct stream_reader *r, struct vm_error *err)
{
	uint8_t md[STREAM_SHA256_LEN], extra;
	unsigned int mdlen = 0;
	size_t n = 0;
	int k;

	if (get_le64(r->payload) != r->ds_count)
		return fail(r, EPROTO,
			    "END record %llu at byte %llu: it counts %llu datasets, the stream "
			    "had %llu",
			    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off,
			    (unsigned long long)get_le64(r->payload),
			    (unsigned long long)r->ds_count);
	EVP_DigestFinal_ex(r->stream_hash, md, &mdlen);
	if (memcmp(md, r->payload + 8, sizeof(md)) != 0)
		return fail(r, EBADMSG, "stream hash mismatch in END record %llu at byte %llu",
			    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off);
	k = read_in(r, &extra, 1, &n, err);
	if (k < 0)
		return k;
	if (n != 0)
		return fail(r, EPROTO, "trailing data after the END record at byte %llu",
			    (unsigned long long)(r->offset - 1));
	r->state = ST_DONE;
	return 0;
}

int stream_next_dataset(struct stream_reader *r, const struct stream_dataset **ret,
			struct vm_error *err)
{
	int k;

	if (r->state == ST_CONFIG)
		return vm_error_setx(err, EINVAL, "stream: read the config first");
	while (r->state == ST_DATA) {
		const void *buf;
		size_t len;

		k = stream_read_chunk(r, &buf, &len, err);
		if (k < 0)
			return k;
	}
	if (r->state == ST_DONE)
		return 0;
	k = read_record(r, err);
	if (k < 0)
		return k;
	if (k == 0)
		return truncated_at_boundary(r, "END", err);
	switch (r->h.type) {
	case STREAM_REC_DS_BEGIN:
		k = parse_ds_begin(r, err);
		if (k < 0)
			return k;
		*ret = &r->ds;
		return 1;
	case STREAM_REC_END:
		k = check_end(r, err);
		return k < 0 ? k : 0;
	default:
		return unexpected(r, "between datasets", err);
	}
}

static int check_ds_end(struct stream_reader *r, struct vm_error *err)
{
	uint8_t md[STREAM_DIGEST_LEN];
	uint64_t count = get_le64(r->payload);

	if (count != r->ds_bytes)
		return fail(r, EPROTO,
			    "dataset %s: %llu data bytes read, DS_END record %llu at byte %llu "
			    "says %llu",
			    r->ds_full, (unsigned long long)r->ds_bytes,
			    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off,
			    (unsigned long long)count);
	stream_digest_final(r->ds_hash, md);
	if (memcmp(md, r->payload + 8, sizeof(md)) != 0)
		return fail(
		    r, EBADMSG, "dataset %s: data hash mismatch (DS_END record %llu at byte %llu)",
		    r->ds_full, (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off);
	r->ds_count++;
	r->state = ST_DATASETS;
	return 0;
}

int stream_read_chunk(struct stream_reader *r, const void **ret_buf, size_t *ret_len,
		      struct vm_error *err)
{
	const uint8_t *data;
	size_t len;
	int k;

	if (r->state == ST_DATASETS || r->state == ST_DONE)
		return 0; /* the dataset has ended */
	if (r->state != ST_DATA)
		return vm_error_setx(err, EINVAL, "stream: no dataset to read");
	if (r->cur_len > 0) {
		/* what stream_read_data left of the last chunk comes first */
		*ret_buf = r->cur;
		*ret_len = r->cur_len;
		r->cur_len = 0;
		return 1;
	}
	k = read_record(r, err);
	if (k < 0)
		return k;
	if (k == 0)
		return truncated_at_boundary(r, "DS_END", err);
	if (r->h.type == STREAM_REC_DS_END) {
		k = check_ds_end(r, err);
		return k < 0 ? k : 0;
	}
	if (r->h.type != STREAM_REC_DS_DATA)
		return unexpected(r, "inside a dataset", err);

	data = r->payload;
	len = r->h.length;
	if (r->h.flags & STREAM_FLAG_ZSTD) {
		unsigned long long csize = ZSTD_getFrameContentSize(r->payload, r->h.length);
		size_t fsize = ZSTD_findFrameCompressedSize(r->payload, r->h.length);
		size_t d;

#define badz(why)                                                                                  \
	fail(r, EBADMSG,                                                                           \
	     "record %llu (type DS_DATA) at byte %llu (inside dataset %s): bad zstd "              \
	     "frame: %s",                                                                          \
	     (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off, r->ds_full, why)
		if (csize == ZSTD_CONTENTSIZE_ERROR || csize == ZSTD_CONTENTSIZE_UNKNOWN)
			return badz("no content size");
		if (csize == 0 || csize > STREAM_CHUNK_MAX)
			return badz("content size out of bounds");
		if (ZSTD_isError(fsize) || fsize != r->h.length)
			return badz("the frame does not fill the record");
		d = ZSTD_decompressDCtx(r->zd, r->chunk, STREAM_CHUNK_MAX, r->payload, r->h.length);
		if (ZSTD_isError(d))
			return badz(ZSTD_getErrorName(d));
		if (d != csize)
			return badz("short output");
#undef badz
		data = r->chunk;
		len = d;
	} else if (len > STREAM_CHUNK_MAX) {
		return fail(r, EPROTO,
			    "record %llu (type DS_DATA) at byte %llu (inside dataset %s): "
			    "uncompressed chunk of %zu bytes exceeds %u",
			    (unsigned long long)(r->seq - 1), (unsigned long long)r->rec_off,
			    r->ds_full, len, STREAM_CHUNK_MAX);
	}
	/* Before the bytes go anywhere: more data than the dataset declared
	 * would write past what the receiver's free-space check let in. */
	if (len > r->ds_limit - r->ds_bytes)
		return fail(r, EFBIG,
			    "dataset %s: record %llu at byte %llu takes its data past %llu "
			    "bytes, more than its DS_BEGIN declares (%s %llu, plus 1/8 and %llu "
			    "MiB for the encoding)",
			    r->ds_full, (unsigned long long)(r->seq - 1),
			    (unsigned long long)r->rec_off, (unsigned long long)r->ds_limit,
			    r->ds.has_used ? "used" : "size",
			    (unsigned long long)stream_dataset_declared(&r->ds),
			    (unsigned long long)(STREAM_DATA_SLACK >> 20));
	stream_digest_update(r->ds_hash, data, len);
	r->ds_bytes += len;
	*ret_buf = data;
	*ret_len = len;
	return 1;
}

ssize_t stream_read_data(struct stream_reader *r, void *buf, size_t len, struct vm_error *err)
{
	size_t n = 0;

	if (r->cur_len == 0) {
		const void *b;
		int k = stream_read_chunk(r, &b, &r->cur_len, err);

		if (k <= 0) {
			r->cur_len = 0;
			return k;
		}
		r->cur = b;
	}
	n = len < r->cur_len ? len : r->cur_len;
	memcpy(buf, r->cur, n);
	r->cur += n;
	r->cur_len -= n;
	return n;
}

ssize_t stream_read_exact(struct stream_reader *r, void *buf, size_t len, const char *what,
			  struct vm_error *err)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = stream_read_data(r, (uint8_t *)buf + done, len - done, err);

		if (n < 0)
			return n;
		if (n == 0) {
			if (done == 0)
				return 0;
			return vm_error_setx(err, EPROTO, "dataset %s: its data ends inside %s",
					     r->ds_full, what);
		}
		done += n;
	}
	return done;
}

/* SPDX-License-Identifier: MIT */
/*
 * The stream's framing (docs/stream-format.md): record headers, CRCs, and
 * every way a reader must refuse a bad stream — flipped bytes in headers,
 * payloads and the config, a wrong magic, a future version, unknown
 * features and record types, absurd lengths, truncation at every offset,
 * names outside the VM, trailing bytes — each with the message it must give.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "check.h"
#include "stream/stream.h"
#include "stream/stream-private.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/macros.h"

#define UUID "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
#define OTHER "11111111-2222-4333-8444-555555555555"

/* ---- helpers ---- */

static int memfd_with(const void *buf, size_t len)
{
	int fd = memfd_create("stream", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (len && fs_write_all(fd, buf, len) < 0)
		abort();
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static uint8_t *slurp(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t *buf = malloc(end + 1);

	lseek(fd, 0, SEEK_SET);
	if (fs_read_full(fd, buf, end) != end)
		abort();
	*len = end;
	return buf;
}

/* A small valid stream: config, "" with 100 bytes, "-disk0" with 50. */
static uint8_t *small_stream(unsigned flags, size_t *len)
{
	struct stream_writer *w = NULL;
	struct vm_error err;
	json_t *config = json_pack("{s:s, s:s}", "uuid", UUID, "brand", "kvm");
	struct stream_dataset a = {.name = "",
				   .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_TAR,
				   .snapshot = "s1"};
	struct stream_dataset b = {.name = "-disk0",
				   .kind = STREAM_KIND_VOLUME,
				   .size = 4096,
				   .encoding = STREAM_ENC_BLOCKS,
				   .snapshot = "s1"};
	uint8_t data[100];
	int fd = memfd_with(NULL, 0);
	uint8_t *out;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)('a' + i % 10); /* compressible: a zstd record */
	if (stream_writer_open(fd, flags, &w, &err) < 0 ||
	    stream_write_config(w, config, &err) < 0 || stream_begin_dataset(w, &a, &err) < 0 ||
	    stream_write_data(w, data, 100, &err) < 0 || stream_end_dataset(w, &err) < 0 ||
	    stream_begin_dataset(w, &b, &err) < 0 || stream_write_data(w, data, 50, &err) < 0 ||
	    stream_end_dataset(w, &err) < 0 || stream_finish(w, &err) < 0) {
		fprintf(stderr, "small_stream: %s\n", err.msg);
		abort();
	}
	stream_writer_free(w);
	json_decref(config);
	out = slurp(fd, len);
	close(fd);
	return out;
}

/* Read a whole stream the way a receiver does. Returns 0 or -errno with err
 * set; *ndatasets and *nbytes count what was read. */
static int read_all(const uint8_t *buf, size_t len, struct vm_error *err, int *ndatasets,
		    uint64_t *nbytes)
{
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	json_t *config = NULL;
	int fd = memfd_with(buf, len), k;

	*ndatasets = 0;
	*nbytes = 0;
	vm_error_clear(err);
	k = stream_reader_open(fd, &r, err);
	if (k < 0)
		goto out;
	k = stream_read_config(r, &config, err);
	if (k < 0)
		goto out;
	while ((k = stream_next_dataset(r, &ds, err)) == 1) {
		const void *b;
		size_t n;

		(*ndatasets)++;
		while ((k = stream_read_chunk(r, &b, &n, err)) == 1)
			*nbytes += n;
		if (k < 0)
			goto out;
	}
out:
	json_decref(config);
	stream_reader_free(r);
	close(fd);
	return k;
}

/* A stream built by hand, for records a writer never makes. */
struct raw {
	uint8_t buf[8192];
	size_t len;
	uint64_t seq;
};

static void raw_rec(struct raw *s, uint32_t type, uint32_t flags, const void *payload, size_t len)
{
	struct stream_header h = {.type = type,
				  .flags = flags,
				  .length = len,
				  .seq = s->seq++,
				  .payload_crc = stream_crc32c(0, payload, len)};

	stream_header_encode(&h, s->buf + s->len);
	s->len += STREAM_HEADER_SIZE;
	memcpy(s->buf + s->len, payload, len);
	s->len += len;
}

static void raw_begin(struct raw *s, const char *magic, uint32_t version, uint64_t req,
		      uint64_t opt)
{
	uint8_t b[32] = {0};

	memcpy(b, magic, 8);
	put_le32(b + 8, version);
	put_le64(b + 16, req);
	put_le64(b + 24, opt);
	raw_rec(s, STREAM_REC_BEGIN, 0, b, sizeof(b));
}

static void raw_json(struct raw *s, uint32_t type, const char *json)
{
	raw_rec(s, type, 0, json, strlen(json));
}

static void raw_sha(const uint8_t *buf, size_t len, uint8_t out[32])
{
	unsigned int n;

	EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

static void raw_ds_end(struct raw *s, const uint8_t *data, size_t len)
{
	uint8_t e[40];

	put_le64(e, len);
	raw_sha(data, len, e + 8);
	raw_rec(s, STREAM_REC_DS_END, 0, e, sizeof(e));
}

/* The stream hash as docs/stream-format.md section 1 defines it, computed
 * apart from the writer: every header, every payload but DS_DATA's. */
static void raw_stream_hash(const uint8_t *buf, size_t len, uint8_t out[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n;

	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (size_t off = 0; off + STREAM_HEADER_SIZE <= len;) {
		uint32_t type = get_le32(buf + off);
		uint64_t plen = get_le64(buf + off + 8);

		EVP_DigestUpdate(c, buf + off, STREAM_HEADER_SIZE);
		off += STREAM_HEADER_SIZE;
		if (plen > len - off)
			plen = len - off;
		if (type != STREAM_REC_DS_DATA)
			EVP_DigestUpdate(c, buf + off, plen);
		off += plen;
	}
	EVP_DigestFinal_ex(c, out, &n);
	EVP_MD_CTX_free(c);
}

static void raw_end(struct raw *s, uint64_t count)
{
	uint8_t e[40];

	put_le64(e, count);
	raw_stream_hash(s->buf, s->len, e + 8);
	raw_rec(s, STREAM_REC_END, 0, e, sizeof(e));
}

static void raw_start(struct raw *s)
{
	memset(s, 0, sizeof(*s));
	raw_begin(s, STREAM_MAGIC, 1, 0, 0);
	raw_json(s, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
}

#define DSB(name)                                                                                  \
	"{\"name\":\"" name "\",\"kind\":\"volume\",\"size\":4096,\"encoding\":\"blocks\","        \
	"\"snapshot\":\"s1\"}"

static int read_raw(struct raw *s, struct vm_error *err)
{
	int n;
	uint64_t b;

	return read_all(s->buf, s->len, err, &n, &b);
}

/* ---- tests ---- */

/* CRC-32C bit by bit, continuing from crc (0 to start): the definition,
 * against which the library's fast code is checked. */
static uint32_t crc_ref_from(uint32_t crc, const uint8_t *p, size_t n)
{
	uint32_t c = ~crc;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static uint32_t crc_ref(const uint8_t *p, size_t n)
{
	return crc_ref_from(0, p, n);
}

static void crc32c_vectors(void)
{
	static uint8_t big[(1 << 20) + 64];
	uint8_t buf[1000];

	CHECK(stream_crc32c(0, "123456789", 9) == 0xE3069283u);
	CHECK(stream_crc32c(0, "", 0) == 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	for (size_t n = 0; n < sizeof(buf); n += 37)
		CHECK(stream_crc32c(0, buf, n) == crc_ref(buf, n));
	/* continuing a computation equals computing at once */
	CHECK(stream_crc32c(stream_crc32c(0, buf, 100), buf + 100, 900) ==
	      stream_crc32c(0, buf, 1000));
	/* the definition, at every alignment, at short lengths (where the
	 * library runs byte and word loops) ... */
	srand(42);
	for (int i = 0; i < 2000; i++) {
		size_t off = (size_t)rand() % 16, n = (size_t)rand() % (sizeof(buf) - 16);
		uint32_t seed = (uint32_t)rand();

		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = (uint8_t)rand();
		CHECK(stream_crc32c(seed, buf + off, n) == crc_ref_from(seed, buf + off, n));
	}
	/* ... and at a record's size, where it folds with PCLMUL */
	for (size_t k = 0; k < sizeof(big); k++)
		big[k] = (uint8_t)rand();
	for (size_t n = (1 << 20) - 3; n <= (1 << 20) + 5; n += 4)
		CHECK(stream_crc32c(7, big + n % 16, n) == crc_ref_from(7, big + n % 16, n));
}

static void header_round_trip(void)
{
	struct stream_header h = {.type = 4,
				  .flags = 2,
				  .length = 123456789012ull,
				  .seq = 42,
				  .payload_crc = 0xdeadbeef},
			     d;
	uint8_t b[STREAM_HEADER_SIZE];

	stream_header_encode(&h, b);
	/* little endian on the wire */
	CHECK(b[0] == 4 && b[1] == 0 && b[4] == 2 && b[16] == 42 && b[24] == 0xef);
	CHECK(stream_header_decode(b, &d));
	CHECK(d.type == 4 && d.flags == 2 && d.length == 123456789012ull && d.seq == 42 &&
	      d.payload_crc == 0xdeadbeef && d.header_crc == h.header_crc);
	/* every single-bit flip is caught */
	for (int i = 0; i < STREAM_HEADER_SIZE * 8; i++) {
		b[i / 8] ^= 1 << (i % 8);
		CHECK(!stream_header_decode(b, &d));
		b[i / 8] ^= 1 << (i % 8);
	}
}

static void valid_stream_reads(void)
{
	struct vm_error err;
	size_t len;
	uint8_t *s = small_stream(0, &len);
	int n;
	uint64_t bytes;

	CHECK(read_all(s, len, &err, &n, &bytes) == 0);
	CHECK(n == 2);
	CHECK(bytes == 150);
	CHECK(memcmp(s + 32, STREAM_MAGIC, 8) == 0);
	free(s);
	s = small_stream(STREAM_WRITE_ZSTD, &len);
	CHECK(read_all(s, len, &err, &n, &bytes) == 0);
	CHECK(n == 2 && bytes == 150);
	free(s);
}

/* A caller that read the first bytes itself (to tell a stream from other
 * input) hands them over; a prefix cut anywhere reads the same stream. */
static void open_with_prefix(void)
{
	size_t len;
	uint8_t *s = small_stream(STREAM_WRITE_ZSTD, &len);
	struct vm_error err = {0};

	for (size_t cut = 0; cut <= 64; cut += 8) {
		struct stream_reader *r = NULL;
		const struct stream_dataset *ds;
		json_t *config = NULL;
		int fd = memfd_with(s + cut, len - cut), n = 0, k;

		CHECK(stream_reader_open_prefix(fd, s, cut, &r, &err) == 0);
		CHECK(stream_read_config(r, &config, &err) == 0);
		while ((k = stream_next_dataset(r, &ds, &err)) == 1)
			n++;
		CHECK(k == 0 && n == 2);
		CHECK(stream_reader_bytes(r) == len);
		stream_reader_free(r);
		json_decref(config);
		close(fd);
	}
	{
		struct stream_reader *r = NULL;
		int fd = memfd_with(NULL, 0);

		CHECK(stream_reader_open_prefix(fd, "\x1f\x8b\x08\x00", 4, &r, &err) == -EINVAL);
		CHECK_HAS(err.msg, "gzip data, decompress it first");
		CHECK(stream_reader_open_prefix(fd, s, 65, &r, &err) == -EINVAL);
		close(fd);
	}
	free(s);
}

/* A receiver may skip a dataset's data, or read part of it: the next
 * stream_next_dataset reads and checks the rest. */
static void skip_and_partial_reads(void)
{
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	struct vm_error err = {0};
	json_t *config = NULL;
	size_t len;
	uint8_t *s = small_stream(STREAM_WRITE_ZSTD, &len), buf[7];
	int fd = memfd_with(s, len);

	CHECK(stream_reader_open(fd, &r, &err) == 0);
	CHECK(stream_read_config(r, &config, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK_STR(ds->name, "");
	CHECK(stream_read_data(r, buf, sizeof(buf), &err) == 7);
	CHECK(memcmp(buf, "abcdefg", 7) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK_STR(ds->name, "-disk0");
	CHECK_STR(stream_reader_dataset_name(r), "zones/" UUID "-disk0");
	CHECK(stream_next_dataset(r, &ds, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 0); /* stays at the end */
	CHECK(stream_reader_bytes(r) == len);
	CHECK_STR(err.msg, "");
	stream_reader_free(r);
	json_decref(config);
	close(fd);
	free(s);
}

/* Offsets of the records of a stream, by walking the headers. */
static int record_offsets(const uint8_t *s, size_t len, size_t *offs, uint32_t *types, int max)
{
	int n = 0;

	for (size_t o = 0; o < len && n < max; n++) {
		struct stream_header h;

		stream_header_decode(s + o, &h);
		offs[n] = o;
		types[n] = h.type;
		o += STREAM_HEADER_SIZE + h.length;
	}
	return n;
}

static void flipped_header_byte(void)
{
	struct vm_error err;
	size_t len, offs[16];
	uint32_t types[16];
	uint8_t *s = small_stream(0, &len);
	int nrec = record_offsets(s, len, offs, types, 16), n;
	uint64_t b;
	char want[200];

	CHECK(nrec == 9);
	for (int i = 1; i < nrec; i++) {
		for (int byte = 0; byte < STREAM_HEADER_SIZE; byte += 5) {
			s[offs[i] + byte] ^= 0x10;
			CHECK(read_all(s, len, &err, &n, &b) == -EBADMSG);
			snprintf(want, sizeof(want),
				 "checksum mismatch in the header of record %d at byte %zu", i,
				 offs[i]);
			CHECK_HAS(err.msg, want);
			s[offs[i] + byte] ^= 0x10;
		}
	}
	/* in the first record: not a stream at all */
	s[3] ^= 1;
	CHECK(read_all(s, len, &err, &n, &b) == -EINVAL);
	CHECK_HAS(err.msg, "not a vmadm stream");
	free(s);
}

static void flipped_payload_byte(void)
{
	struct vm_error err;
	size_t len, offs[16];
	uint32_t types[16];
	uint8_t *s = small_stream(0, &len);
	int nrec = record_offsets(s, len, offs, types, 16), n;
	uint64_t b;
	char want[200];

	for (int i = 0; i < nrec; i++) {
		size_t at = offs[i] + STREAM_HEADER_SIZE + 3;

		s[at] ^= 0x01;
		CHECK(read_all(s, len, &err, &n, &b) < 0);
		snprintf(want, sizeof(want), "checksum mismatch in record %d (type %s) at byte %zu",
			 i, stream_record_type_name(types[i]), offs[i]);
		CHECK_HAS(err.msg, want);
		if (types[i] == STREAM_REC_DS_DATA && i > 5)
			CHECK_HAS(err.msg, "(inside dataset zones/" UUID "-disk0)");
		s[at] ^= 0x01;
	}
	CHECK(types[1] == STREAM_REC_CONFIG); /* the config case is covered */
	free(s);
}

static void wrong_magic(void)
{
	struct vm_error err;
	struct raw s;

	memset(&s, 0, sizeof(s));
	raw_begin(&s, "VMADMSTX", 1, 0, 0);
	CHECK(read_raw(&s, &err) == -EINVAL);
	CHECK_HAS(err.msg, "not a vmadm stream: bad magic \"VMADMSTX\"");

	/* gzip'ed stream given as is */
	memset(&s, 0, sizeof(s));
	memcpy(s.buf, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
	s.len = 200;
	CHECK(read_raw(&s, &err) == -EINVAL);
	CHECK_HAS(err.msg, "gzip data, decompress it first");

	memset(&s, 0, sizeof(s));
	CHECK(read_raw(&s, &err) == -EINVAL);
	CHECK_HAS(err.msg, "not a vmadm stream: the input is empty");
}

static void future_version(void)
{
	struct vm_error err;
	struct raw s;

	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 2, 0, 0);
	CHECK(read_raw(&s, &err) == -EPROTONOSUPPORT);
	CHECK_HAS(err.msg, "stream format version 2 is newer than this vmadm reads (up to 1)");
}

static void unknown_features(void)
{
	struct vm_error err;
	struct raw s;

	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 1, STREAM_FEATURE_ZSTD | 0x4, 0);
	CHECK(read_raw(&s, &err) == -EPROTONOSUPPORT);
	CHECK_HAS(err.msg, "stream requires unknown features 0x4");

	/* unknown optional features are fine */
	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 1, 0, 0x8000);
	raw_json(&s, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
	raw_end(&s, 0);
	CHECK(read_raw(&s, &err) == 0);
}

static void huge_length_refused(void)
{
	struct vm_error err;
	struct raw s;
	struct stream_header h = {.type = STREAM_REC_DS_DATA, .length = 1ull << 62};

	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	h.seq = s.seq;
	stream_header_encode(&h, s.buf + s.len);
	s.len += STREAM_HEADER_SIZE + 100;
	/* had the reader tried to allocate 2^62 bytes it would have failed with
	 * ENOMEM and another message: EPROTO and this message mean refused first */
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "record 3 (type DS_DATA) at byte");
	CHECK_HAS(err.msg, "declares a payload of 4611686018427387904 bytes, more than the "
			   "4194304 allowed (inside dataset zones/" UUID "-disk0)");

	/* the same for a CONFIG */
	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 1, 0, 0);
	h.type = STREAM_REC_CONFIG;
	h.seq = 1;
	stream_header_encode(&h, s.buf + s.len);
	s.len += STREAM_HEADER_SIZE;
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "declares a payload of 4611686018427387904 bytes, more than the "
			   "16777216 allowed");
}

static void truncated_everywhere(void)
{
	struct vm_error err;
	size_t len;
	uint8_t *s = small_stream(0, &len);
	int n, bad = 0;
	uint64_t b;
	char want[100];

	for (size_t cut = 0; cut < len; cut++) {
		int k = read_all(s, cut, &err, &n, &b);

		if (cut == 0) {
			CHECK(k == -EINVAL);
			CHECK_HAS(err.msg, "the input is empty");
			continue;
		}
		snprintf(want, sizeof(want), "stream truncated at byte %zu", cut);
		if (k >= 0 || !strstr(err.msg, want)) {
			if (!bad++)
				fprintf(stderr, "cut at %zu: %d %s\n", cut, k, err.msg);
		}
	}
	CHECK(bad == 0);
	/* inside a dataset, the message names it */
	CHECK(read_all(s, len - 40 - 32 - 40 - 32 - 10, &err, &n, &b) < 0);
	CHECK_HAS(err.msg, "(inside dataset zones/" UUID "-disk0)");
	free(s);
}

static void trailing_bytes(void)
{
	struct vm_error err;
	size_t len;
	uint8_t *s = small_stream(0, &len), *t = malloc(len + 1);
	int n;
	uint64_t b;

	memcpy(t, s, len);
	t[len] = 0;
	CHECK(read_all(t, len + 1, &err, &n, &b) == -EPROTO);
	CHECK_HAS(err.msg, "trailing data after the END record");
	free(s);
	free(t);
}

static void skippable_and_unknown_records(void)
{
	struct vm_error err;
	struct raw s;

	raw_start(&s);
	raw_rec(&s, 77, STREAM_FLAG_SKIPPABLE, "future", 6);
	raw_end(&s, 0);
	CHECK(read_raw(&s, &err) == 0);

	raw_start(&s);
	raw_rec(&s, 77, 0, "future", 6);
	raw_end(&s, 0);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "record 2 at byte");
	CHECK_HAS(err.msg, "has unknown type 77: the stream needs a newer vmadm");

	/* BEGIN comes first, even after a skippable record; an empty one
	 * (no payload buffer yet: UBSan saw NULL + 0 there, fuzz-records) */
	memset(&s, 0, sizeof(s));
	raw_rec(&s, 77, STREAM_FLAG_SKIPPABLE, "", 0);
	raw_begin(&s, STREAM_MAGIC, 1, 0, 0);
	raw_json(&s, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
	raw_end(&s, 0);
	CHECK(read_raw(&s, &err) == -EINVAL);
	CHECK_HAS(err.msg, "not a vmadm stream: the first record is unknown, not BEGIN");

	/* unknown flag bits */
	raw_start(&s);
	raw_rec(&s, STREAM_REC_DS_BEGIN, 0x100, DSB("-disk0"), strlen(DSB("-disk0")));
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "has invalid flags 0x100");

	/* zstd flag in a stream that did not declare the feature */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, STREAM_FLAG_ZSTD, "xxxx", 4);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "record 3 (type DS_DATA) at byte");
}

static void out_of_order(void)
{
	struct vm_error err;
	struct raw s;
	uint8_t data[8] = "abcdefgh";

	/* a record numbered wrong (a duplicated or dropped record) */
	raw_start(&s);
	s.seq = 5;
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "is out of sequence: numbered 5, expected 2");

	/* DS_DATA between datasets */
	raw_start(&s);
	raw_rec(&s, STREAM_REC_DS_DATA, 0, data, 8);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "unexpected DS_DATA record between datasets");

	/* END inside a dataset */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_end(&s, 0);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "unexpected END record inside a dataset");

	/* a second CONFIG */
	raw_start(&s);
	raw_json(&s, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "unexpected CONFIG record between datasets");
}

static void hashes_checked(void)
{
	struct vm_error err;
	struct raw s;
	uint8_t data[8] = "abcdefgh", other[8] = "abcdefgX";
	uint8_t e[40];

	/* DS_END with the hash of other data (every CRC fine) */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, 0, data, 8);
	raw_ds_end(&s, other, 8);
	raw_end(&s, 1);
	CHECK(read_raw(&s, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "dataset zones/" UUID "-disk0: data hash mismatch (DS_END record 4");

	/* DS_END counting other bytes */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, 0, data, 8);
	raw_ds_end(&s, data, 7);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "8 data bytes read, DS_END record 4");

	/* END with a wrong dataset count */
	raw_start(&s);
	raw_end(&s, 3);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "it counts 3 datasets, the stream had 0");

	/* the stream hash leaves DS_DATA payloads out: a valid stream with
	 * data reads, and one whose END hashes every byte is refused */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, 0, data, 8);
	raw_ds_end(&s, data, 8);
	raw_end(&s, 1);
	CHECK(read_raw(&s, &err) == 0);
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, 0, data, 8);
	raw_ds_end(&s, data, 8);
	put_le64(e, 1);
	raw_sha(s.buf, s.len, e + 8);
	raw_rec(&s, STREAM_REC_END, 0, e, 40);
	CHECK(read_raw(&s, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "stream hash mismatch in END record 5");

	/* END with a wrong stream hash */
	raw_start(&s);
	put_le64(e, 0);
	memset(e + 8, 0xab, 32);
	raw_rec(&s, STREAM_REC_END, 0, e, 40);
	CHECK(read_raw(&s, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "stream hash mismatch in END record 2");
}

/* The "xxh3" required feature: DS_END then holds XXH3-128 (canonical,
 * big-endian, then 16 zero bytes), computed here with libxxhash apart from
 * the stream code; without the feature it holds SHA-256. */
static void ds_end_xxh3(uint8_t e[40], const uint8_t *data, size_t len)
{
	XXH128_canonical_t c;

	memset(e, 0, 40);
	put_le64(e, len);
	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	memcpy(e + 8, c.digest, 16);
}

static void ds_end_sha(uint8_t e[40], const uint8_t *data, size_t len)
{
	put_le64(e, len);
	raw_sha(data, len, e + 8);
}

/* A stream with these required features and one dataset, -disk0, holding
 * data, whose DS_END payload is end; read back. */
static int read_one_ds(uint64_t features, const uint8_t *data, size_t len, const uint8_t end[40],
		       struct vm_error *err)
{
	struct raw s;

	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 1, features, 0);
	raw_json(&s, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, 0, data, len);
	raw_rec(&s, STREAM_REC_DS_END, 0, end, 40);
	raw_end(&s, 1);
	return read_raw(&s, err);
}

static void xxh3_hashes_checked(void)
{
	static const uint8_t empty_kat[16] = {0x99, 0xaa, 0x06, 0xd3, 0x01, 0x47, 0x98, 0xd8,
					      0x60, 0x01, 0xc3, 0x24, 0x46, 0x8d, 0x49, 0x7f};
	struct stream_digest *d = stream_digest_new();
	uint8_t data[8] = "abcdefgh", md[STREAM_DIGEST_LEN], zero[16] = {0}, e[40];
	struct vm_error err;

	/* the published XXH3-128 of the empty input, zero-padded to 32 bytes */
	CHECK(d && stream_digest_init(d, STREAM_DIGEST_XXH3) == 0);
	stream_digest_final(d, md);
	CHECK(memcmp(md, empty_kat, 16) == 0 && memcmp(md + 16, zero, 16) == 0);
	/* update in pieces == at once */
	stream_digest_init(d, STREAM_DIGEST_XXH3);
	stream_digest_update(d, data, 3);
	stream_digest_update(d, data + 3, 5);
	stream_digest_final(d, md);
	ds_end_xxh3(e, data, 8);
	CHECK(memcmp(md, e + 8, 32) == 0);
	stream_digest_free(d);
	CHECK(stream_digest_alg_of(STREAM_FEATURE_ZSTD) == STREAM_DIGEST_SHA256);
	CHECK(stream_digest_alg_of(STREAM_FEATURE_XXH3) == STREAM_DIGEST_XXH3);

	/* an xxh3 stream with XXH3 dataset hashes reads, and so does one
	 * without the feature with SHA-256 */
	ds_end_xxh3(e, data, 8);
	CHECK(read_one_ds(STREAM_FEATURE_XXH3, data, 8, e, &err) == 0);
	ds_end_sha(e, data, 8);
	CHECK(read_one_ds(0, data, 8, e, &err) == 0);

	/* SHA-256 in an xxh3 stream's DS_END (every CRC fine) is refused ... */
	CHECK(read_one_ds(STREAM_FEATURE_XXH3, data, 8, e, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "dataset zones/" UUID "-disk0: data hash mismatch (DS_END record 4");
	/* ... as is XXH3 in a stream without the feature (read as SHA-256) */
	ds_end_xxh3(e, data, 8);
	CHECK(read_one_ds(0, data, 8, e, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "data hash mismatch");
	/* the XXH3 of other data is refused */
	ds_end_xxh3(e, (const uint8_t *)"abcdefgX", 8);
	CHECK(read_one_ds(STREAM_FEATURE_XXH3, data, 8, e, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "data hash mismatch");
	/* the 16 bytes after an XXH3 hash must be zero */
	ds_end_xxh3(e, data, 8);
	e[39] = 1;
	CHECK(read_one_ds(STREAM_FEATURE_XXH3, data, 8, e, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "data hash mismatch");

	/* what the writer writes: the feature, and XXH3 in DS_END */
	{
		size_t len, offs[16];
		uint32_t types[16];
		uint8_t *w = small_stream(0, &len);
		uint8_t want[100];

		for (size_t i = 0; i < sizeof(want); i++)
			want[i] = (uint8_t)('a' + i % 10);
		record_offsets(w, len, offs, types, 16);
		CHECK(get_le64(w + STREAM_HEADER_SIZE + 16) == STREAM_FEATURE_XXH3);
		CHECK(types[4] == STREAM_REC_DS_END);
		ds_end_xxh3(e, want, 100);
		CHECK(memcmp(w + offs[4] + STREAM_HEADER_SIZE, e, 40) == 0);
		free(w);
	}
}

/* DS_BEGIN's "used" (bytes at the sender, for the free-space check): written
 * when the writer has it, read back, absent otherwise; a bad one refused. */
static void ds_begin_used(void)
{
	struct stream_writer *w = NULL;
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	struct vm_error err;
	json_t *config = json_pack("{s:s}", "uuid", UUID), *c2 = NULL;
	struct stream_dataset a = {.name = "", .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_TAR, .snapshot = "s1"};
	struct stream_dataset b = {.name = "-disk0", .kind = STREAM_KIND_VOLUME,
				   .size = 1ull << 31, .used = 12288, .has_used = true,
				   .encoding = STREAM_ENC_BLOCKS, .snapshot = "s1"};
	int fd = memfd_with(NULL, 0);
	uint8_t *buf;
	size_t len;
	struct raw s;

	CHECK(stream_writer_open(fd, 0, &w, &err) == 0);
	CHECK(stream_write_config(w, config, &err) == 0);
	CHECK(stream_begin_dataset(w, &a, &err) == 0);
	CHECK(stream_end_dataset(w, &err) == 0);
	CHECK(stream_begin_dataset(w, &b, &err) == 0);
	CHECK(stream_end_dataset(w, &err) == 0);
	CHECK(stream_finish(w, &err) == 0);
	stream_writer_free(w);
	buf = slurp(fd, &len);
	CHECK(memmem(buf, len, "\"used\":12288", 12) != NULL);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	CHECK(stream_reader_open(fd, &r, &err) == 0);
	CHECK(stream_read_config(r, &c2, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK(!ds->has_used);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK(ds->has_used && ds->used == 12288 && ds->size == 1ull << 31);
	CHECK(stream_next_dataset(r, &ds, &err) == 0);
	stream_reader_free(r);
	free(buf);
	close(fd);
	json_decref(config);
	json_decref(c2);

	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN,
		 "{\"name\":\"-disk0\",\"kind\":\"volume\",\"size\":4096,\"used\":-1,"
		 "\"encoding\":\"blocks\",\"snapshot\":\"s1\"}");
	raw_ds_end(&s, NULL, 0);
	raw_end(&s, 1);
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "invalid \"used\"");
}

static void names_checked(void)
{
	struct vm_error err;
	static const char *const good[] = {"",	     "/data",  "/cores",  "/a.b_c:d-e",
					   "-disk0", "-disk1", "-disk12", "-disk999"};
	static const char *const bad[] = {
		"..",
		"/..",
		"/.",
		"/",
		"/a/b",
		"-disk",
		"-disk01",
		"-diskx",
		"-disk1000",
		"/../" OTHER,
		"-" OTHER,
		"@snap",
		"zones/x",
		OTHER,
		"/da\nta",
		"/da ta",
		"-disk0/..",
		"/data/",
		"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		if (stream_dataset_name_check(UUID, good[i], &err) != 0)
			CHECK_STR(good[i], "(accepted)");
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		vm_error_clear(&err);
		if (stream_dataset_name_check(UUID, bad[i], &err) != -EINVAL)
			CHECK_STR(bad[i], "(refused)");
		CHECK(err.msg[0] != '\0');
	}
	CHECK(stream_dataset_name_check("not-a-uuid", "", &err) == -EINVAL);
	CHECK(stream_dataset_name_check(UUID, "/../" OTHER, &err) == -EINVAL);
	CHECK_HAS(err.msg, "leaves zones/" UUID);
}

static void name_outside_vm_refused_on_read(void)
{
	struct vm_error err;
	struct raw s;

	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("/../" OTHER));
	CHECK(read_raw(&s, &err) == -EINVAL);
	CHECK_HAS(err.msg, "DS_BEGIN record 2 at byte");
	CHECK_HAS(err.msg, "dataset name \"/../" OTHER "\"");

	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-" OTHER "-disk0"));
	CHECK(read_raw(&s, &err) == -EINVAL);
	CHECK_HAS(err.msg, "does not belong to VM " UUID);

	/* the same dataset twice */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_ds_end(&s, NULL, 0);
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "dataset \"-disk0\" appears twice");

	/* a config without a uuid */
	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 1, 0, 0);
	raw_json(&s, STREAM_REC_CONFIG, "{\"uuid\":\"../etc\"}");
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "the config has no valid \"uuid\"");

	/* a DS_BEGIN with an unknown encoding or a bad snapshot name */
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN,
		 "{\"name\":\"\",\"kind\":\"filesystem\",\"size\":0,\"encoding\":\"cpio\","
		 "\"snapshot\":\"s1\"}");
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "unknown encoding \"cpio\"");
	raw_start(&s);
	raw_json(&s, STREAM_REC_DS_BEGIN,
		 "{\"name\":\"\",\"kind\":\"filesystem\",\"size\":0,\"encoding\":\"tar\","
		 "\"snapshot\":\"s1/../x\"}");
	CHECK(read_raw(&s, &err) == -EPROTO);
	CHECK_HAS(err.msg, "missing or invalid \"snapshot\"");
}

static void bad_zstd_frames(void)
{
	struct vm_error err;
	struct raw s;
	uint8_t junk[16] = {0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4};

	memset(&s, 0, sizeof(s));
	raw_begin(&s, STREAM_MAGIC, 1, STREAM_FEATURE_ZSTD, 0);
	raw_json(&s, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
	raw_json(&s, STREAM_REC_DS_BEGIN, DSB("-disk0"));
	raw_rec(&s, STREAM_REC_DS_DATA, STREAM_FLAG_ZSTD, junk, sizeof(junk));
	CHECK(read_raw(&s, &err) == -EBADMSG);
	CHECK_HAS(err.msg, "bad zstd frame");
}

static const char *golden_path(const char *name)
{
	static char path[4096];
	const char *top = getenv("TOP");

	snprintf(path, sizeof(path), "%s/tests/unit/data/streams/%s", top ? top : ".", name);
	return path;
}

/* Streams kept in the tree: the reader must read them forever (a later
 * vmadm reads an older stream), and the writer must still produce the plain
 * one it writes today byte for byte (a change of format is a new version or
 * a new required feature). The v1-small* ones come from the writer before
 * the "xxh3" feature (SHA-256 dataset hashes) and are never rewritten;
 * STREAM_WRITE_GOLDEN=1 rewrites the current writer's ones. */
static void golden_v1(void)
{
	static const struct {
		const char *file;
		unsigned flags;
		bool current;	 /* made by today's writer */
		bool same_bytes; /* zstd output may change with the zstd version */
	} goldens[] = {
		{"v1-small.vms", 0, false, false},
		{"v1-small-zstd.vms", STREAM_WRITE_ZSTD, false, false},
		{"v1-xxh3-small.vms", 0, true, true},
		{"v1-xxh3-small-zstd.vms", STREAM_WRITE_ZSTD, true, false},
	};
	struct vm_error err;

	for (size_t i = 0; i < ARRAY_SIZE(goldens); i++) {
		const char *path = golden_path(goldens[i].file);
		size_t len, oldlen = 0;
		uint8_t *now = small_stream(goldens[i].flags, &len);
		char *old = NULL;
		uint64_t b;
		int n;

		if (getenv("STREAM_WRITE_GOLDEN") && goldens[i].current)
			CHECK(fs_write_atomic(path, now, len, 0644, &err) == 0);
		if (fs_read_file(path, 1 << 20, &old, &oldlen, &err) < 0) {
			CHECK_STR(err.msg, "(golden file readable)");
			free(now);
			continue;
		}
		CHECK(read_all((uint8_t *)old, oldlen, &err, &n, &b) == 0);
		CHECK(n == 2 && b == 150);
		/* BEGIN's required features say which dataset hash DS_END has */
		CHECK(oldlen > 64 &&
		      (get_le64((uint8_t *)old + 48) & STREAM_FEATURE_XXH3) ==
			      (goldens[i].current ? STREAM_FEATURE_XXH3 : 0));
		if (goldens[i].same_bytes)
			CHECK(oldlen == len && memcmp(old, now, len) == 0);
		free(old);
		free(now);
	}
}

/* Bad streams kept in the tree, each refused with its message. */
enum { G_TRUNC, G_DATA, G_HEADER, G_CONFIG, G_MAGIC, G_VERSION, G_NAME, G_HUGE, G_COUNT };

static void golden_bad_make(int which, uint8_t **ret, size_t *ret_len)
{
	size_t len, offs[16];
	uint32_t types[16];
	uint8_t *s = small_stream(0, &len);
	struct raw *r = calloc(1, sizeof(*r));
	struct stream_header h = {.type = STREAM_REC_DS_DATA, .length = 1ull << 62};

	record_offsets(s, len, offs, types, 16);
	switch (which) {
	case G_TRUNC: /* inside the -disk0 data */
		len = offs[6] + STREAM_HEADER_SIZE + 20;
		break;
	case G_DATA:
		s[offs[3] + STREAM_HEADER_SIZE + 50] ^= 0x04;
		break;
	case G_HEADER:
		s[offs[5] + 9] ^= 0x80; /* the DS_BEGIN's length */
		break;
	case G_CONFIG:
		s[offs[1] + STREAM_HEADER_SIZE + 10] ^= 0x20;
		break;
	case G_MAGIC:
		raw_begin(r, "VMADMSTZ", 1, 0, 0);
		break;
	case G_VERSION:
		raw_begin(r, STREAM_MAGIC, 2, 0, 0);
		raw_json(r, STREAM_REC_CONFIG, "{\"uuid\":\"" UUID "\"}");
		break;
	case G_NAME:
		raw_start(r);
		raw_json(r, STREAM_REC_DS_BEGIN, DSB("/../" OTHER));
		raw_ds_end(r, NULL, 0);
		raw_end(r, 1);
		break;
	case G_HUGE:
		raw_start(r);
		raw_json(r, STREAM_REC_DS_BEGIN, DSB("-disk0"));
		h.seq = r->seq;
		stream_header_encode(&h, r->buf + r->len);
		r->len += STREAM_HEADER_SIZE + 64;
		break;
	}
	if (r->len) {
		free(s);
		s = malloc(r->len);
		memcpy(s, r->buf, r->len);
		len = r->len;
	}
	free(r);
	*ret = s;
	*ret_len = len;
}

static void golden_bad(void)
{
	static const struct {
		const char *file;
		const char *want;
	} bad[G_COUNT] = {
		[G_TRUNC] = {"bad-truncated.vms",
			     "stream truncated at byte 715 (inside dataset zones/" UUID
			     "-disk0): the payload of record 6 (type DS_DATA) is incomplete"},
		[G_DATA] = {"bad-flipped-data.vms",
			    "checksum mismatch in record 3 (type DS_DATA) at byte"},
		[G_HEADER] = {"bad-flipped-header.vms",
			      "checksum mismatch in the header of record 5 at byte"},
		[G_CONFIG] = {"bad-flipped-config.vms",
			      "checksum mismatch in record 1 (type CONFIG) at byte 64"},
		[G_MAGIC] = {"bad-magic.vms", "not a vmadm stream: bad magic \"VMADMSTZ\""},
		[G_VERSION] = {"bad-future-version.vms",
			       "stream format version 2 is newer than this vmadm reads"},
		[G_NAME] = {"bad-name-outside-vm.vms",
			    "dataset name \"/../" OTHER "\" leaves zones/" UUID},
		[G_HUGE] = {"bad-huge-length.vms",
			    "declares a payload of 4611686018427387904 bytes, more than the "
			    "4194304 allowed"},
	};
	struct vm_error err;

	for (int i = 0; i < G_COUNT; i++) {
		const char *path = golden_path(bad[i].file);
		char *old = NULL;
		size_t oldlen = 0;
		uint64_t b;
		int n;

		if (getenv("STREAM_WRITE_GOLDEN")) {
			uint8_t *s;
			size_t len;

			golden_bad_make(i, &s, &len);
			CHECK(fs_write_atomic(path, s, len, 0644, &err) == 0);
			free(s);
		}
		if (fs_read_file(path, 1 << 20, &old, &oldlen, &err) < 0) {
			CHECK_STR(err.msg, "(golden file readable)");
			continue;
		}
		CHECK(read_all((uint8_t *)old, oldlen, &err, &n, &b) < 0);
		CHECK_HAS(err.msg, bad[i].want);
		free(old);
	}
}

int main(void)
{
	RUN(crc32c_vectors);
	RUN(header_round_trip);
	RUN(valid_stream_reads);
	RUN(skip_and_partial_reads);
	RUN(open_with_prefix);
	RUN(flipped_header_byte);
	RUN(flipped_payload_byte);
	RUN(wrong_magic);
	RUN(future_version);
	RUN(unknown_features);
	RUN(huge_length_refused);
	RUN(truncated_everywhere);
	RUN(trailing_bytes);
	RUN(skippable_and_unknown_records);
	RUN(out_of_order);
	RUN(hashes_checked);
	RUN(xxh3_hashes_checked);
	RUN(ds_begin_used);
	RUN(names_checked);
	RUN(name_outside_vm_refused_on_read);
	RUN(bad_zstd_frames);
	RUN(golden_v1);
	RUN(golden_bad);
	CHECK_EXIT();
}

/* SPDX-License-Identifier: MIT */
/*
 * vmadm-stream: look inside a migration stream (docs/stream-format.md), in
 * the spirit of OpenZFS's `zstream dump`, and forge streams with one defect
 * for testing receivers.
 *
 *   vmadm-stream dump [FILE]            list every record, checking CRCs,
 *                                       sequence, DS_END and END hashes;
 *                                       shows a damaged stream up to the damage
 *   vmadm-stream rewrite [OPTIONS] < IN > OUT
 *                                       re-frame a valid stream with one change,
 *                                       recomputing every CRC and the END hash
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "stream/stream.h"
#include "util/fs.h"
#include "util/macros.h"

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void hex(const uint8_t *md, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

/* ---- dump ---- */

struct dump {
	uint64_t seq, datasets, ds_bytes;
	bool in_ds;
	char uuid[64];
	struct stream_digest *ds_hash;
	enum stream_digest_alg alg; /* from BEGIN's required features */
	ZSTD_DCtx *zd;
	uint8_t *chunk;
	int damaged;
	char msg[1024]; /* the first damage found, printed after the listing */
};

static void damage(struct dump *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void damage(struct dump *d, const char *fmt, ...)
{
	va_list ap;

	if (d->damaged)
		return;
	va_start(ap, fmt);
	vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
	va_end(ap);
	d->damaged = 1;
}

static void summary(struct dump *d, struct stream_raw_reader *rr,
		    const struct stream_raw_record *rec, char *out, size_t size)
{
	const uint8_t *p = rec->payload;
	char md[65], want[65];
	uint8_t h[32];

	out[0] = '\0';
	switch (rec->h.type) {
	case STREAM_REC_BEGIN: {
		char m[9];

		for (int i = 0; i < 8; i++)
			m[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
		m[8] = '\0';
		snprintf(out, size,
			 "magic \"%s\" version %u required 0x%" PRIx64 " optional 0x%" PRIx64, m,
			 le32(p + 8), le64(p + 16), le64(p + 24));
		if (memcmp(p, STREAM_MAGIC, 8) != 0)
			damage(d, "BEGIN record at byte %" PRIu64 ": bad magic \"%s\"", rec->offset,
			       m);
		else if (le32(p + 8) > STREAM_VERSION || le32(p + 8) == 0)
			damage(d, "BEGIN record: format version %u (this tool reads 1..%u)",
			       le32(p + 8), STREAM_VERSION);
		else if (le64(p + 16) & ~STREAM_FEATURES_REQUIRED_KNOWN)
			damage(d, "BEGIN record: unknown required features 0x%" PRIx64,
			       (uint64_t)(le64(p + 16) & ~STREAM_FEATURES_REQUIRED_KNOWN));
		d->alg = stream_digest_alg_of(le64(p + 16));
		break;
	}
	case STREAM_REC_CONFIG: {
		_cleanup_json_ json_t *c = json_loadb((const char *)p, rec->payload_len, 0, NULL);
		const char *s;

		if (!json_is_object(c)) {
			snprintf(out, size, "(invalid JSON)");
			damage(d, "CONFIG record at byte %" PRIu64 ": invalid JSON", rec->offset);
			break;
		}
		s = json_string_value(json_object_get(c, "uuid"));
		snprintf(d->uuid, sizeof(d->uuid), "%s", s ? s : "");
		snprintf(out, size, "uuid %s brand %s alias %s", s ? s : "(none)",
			 json_string_value(json_object_get(c, "brand")) ?: "(none)",
			 json_string_value(json_object_get(c, "alias")) ?: "(none)");
		break;
	}
	case STREAM_REC_DS_BEGIN: {
		_cleanup_json_ json_t *o = json_loadb((const char *)p, rec->payload_len, 0, NULL);
		struct vm_error nerr = {0};

		if (!json_is_object(o)) {
			snprintf(out, size, "(invalid JSON)");
			damage(d, "DS_BEGIN record at byte %" PRIu64 ": invalid JSON", rec->offset);
			break;
		}
		snprintf(out, size,
			 "name \"%s\" %s size %" JSON_INTEGER_FORMAT " encoding %s%s snapshot %s",
			 json_string_value(json_object_get(o, "name")) ?: "?",
			 json_string_value(json_object_get(o, "kind")) ?: "?",
			 json_integer_value(json_object_get(o, "size")),
			 json_string_value(json_object_get(o, "encoding")) ?: "?",
			 streq(json_string_value(json_object_get(o, "compression")) ?: "", "zstd")
			     ? " zstd"
			     : "",
			 json_string_value(json_object_get(o, "snapshot")) ?: "?");
		if (d->in_ds)
			damage(d, "DS_BEGIN record at byte %" PRIu64 " inside a dataset",
			       rec->offset);
		else if (stream_dataset_name_check(
			     d->uuid, json_string_value(json_object_get(o, "name")), &nerr) < 0)
			damage(d, "DS_BEGIN record at byte %" PRIu64 ": %s", rec->offset, nerr.msg);
		d->in_ds = true;
		d->ds_bytes = 0;
		stream_digest_init(d->ds_hash, d->alg);
		break;
	}
	case STREAM_REC_DS_DATA: {
		const void *data = p;
		size_t len = rec->payload_len;

		if (!d->in_ds)
			damage(d, "DS_DATA record at byte %" PRIu64 " outside a dataset",
			       rec->offset);
		if (rec->h.flags & STREAM_FLAG_ZSTD) {
			size_t n = ZSTD_decompressDCtx(d->zd, d->chunk, STREAM_CHUNK_MAX, p, len);

			if (ZSTD_isError(n)) {
				damage(d, "DS_DATA record at byte %" PRIu64 ": bad zstd frame: %s",
				       rec->offset, ZSTD_getErrorName(n));
				break;
			}
			snprintf(out, size, "zstd, %zu bytes uncompressed", n);
			data = d->chunk;
			len = n;
		}
		stream_digest_update(d->ds_hash, data, len);
		d->ds_bytes += len;
		break;
	}
	case STREAM_REC_DS_END: {
		stream_digest_final(d->ds_hash, h);
		hex(p + 8, 32, want);
		snprintf(out, size, "bytes %" PRIu64 " %s %.16s... %s", le64(p),
			 stream_digest_name(d->alg), want,
			 !d->in_ds		  ? "(no dataset open)"
			 : le64(p) != d->ds_bytes ? "COUNT MISMATCH"
			 : memcmp(h, p + 8, 32)	  ? "HASH MISMATCH"
						  : "ok");
		if (!d->in_ds)
			damage(d, "DS_END record at byte %" PRIu64 " outside a dataset",
			       rec->offset);
		else if (le64(p) != d->ds_bytes)
			damage(d,
			       "DS_END record at byte %" PRIu64 " counts %" PRIu64
			       " bytes, the data had %" PRIu64,
			       rec->offset, le64(p), d->ds_bytes);
		else if (memcmp(h, p + 8, 32)) {
			hex(h, 32, md);
			damage(d,
			       "DS_END record at byte %" PRIu64
			       ": dataset hash mismatch (%s, data %s)",
			       rec->offset, want, md);
		}
		d->in_ds = false;
		d->datasets++;
		break;
	}
	case STREAM_REC_END:
		stream_raw_reader_hash(rr, h);
		hex(p + 8, 32, want);
		snprintf(out, size, "datasets %" PRIu64 " sha256 %.16s... %s", le64(p), want,
			 le64(p) != d->datasets ? "COUNT MISMATCH"
			 : memcmp(h, p + 8, 32) ? "HASH MISMATCH"
						: "ok");
		if (le64(p) != d->datasets)
			damage(d, "END record counts %" PRIu64 " datasets, the stream had %" PRIu64,
			       le64(p), d->datasets);
		else if (memcmp(h, p + 8, 32))
			damage(d, "stream hash mismatch in END record at byte %" PRIu64,
			       rec->offset);
		break;
	default:
		snprintf(out, size, "unknown type%s",
			 (rec->h.flags & STREAM_FLAG_SKIPPABLE) ? ", skippable"
								: " (not skippable)");
		if (!(rec->h.flags & STREAM_FLAG_SKIPPABLE))
			damage(d, "record at byte %" PRIu64 " has unknown type %u", rec->offset,
			       rec->h.type);
	}
}

static int cmd_dump(int argc, char **argv)
{
	_cleanup_stream_raw_reader_ struct stream_raw_reader *rr = NULL;
	_cleanup_close_ int fd = 0;
	struct vm_error err = {0};
	struct stream_raw_record rec;
	struct dump d = {0};
	bool ended = false;
	int k;

	if (argc > 2) {
		fprintf(stderr, "usage: vmadm-stream dump [FILE]\n");
		return 2;
	}
	if (argc == 2 && !streq(argv[1], "-")) {
		fd = open(argv[1], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "vmadm-stream: open %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
	} else {
		fd = dup(0);
	}
	d.ds_hash = stream_digest_new();
	d.zd = ZSTD_createDCtx();
	d.chunk = malloc(STREAM_CHUNK_MAX);
	if (!d.ds_hash || !d.zd || !d.chunk || stream_raw_reader_open(fd, &rr, &err) < 0) {
		fprintf(stderr, "vmadm-stream: out of memory\n");
		return 1;
	}
	stream_digest_init(d.ds_hash, STREAM_DIGEST_SHA256);
	printf("%-12s %-6s %-8s %-5s %-9s %s\n", "OFFSET", "SEQ", "TYPE", "FLAGS", "LENGTH",
	       "SUMMARY");
	while (!d.damaged && (k = stream_raw_next(rr, &rec, &err)) == 1) {
		char sum[512] = "";

		if (ended) {
			damage(&d, "trailing data after the END record at byte %" PRIu64,
			       rec.offset);
			break;
		}
		if (rec.header_len < STREAM_HEADER_SIZE) {
			damage(&d,
			       "stream truncated at byte %" PRIu64 ": the header of record %" PRIu64
			       " is incomplete (%zu of 32 bytes)",
			       stream_raw_reader_bytes(rr), d.seq, rec.header_len);
			break;
		}
		printf("%-12" PRIu64 " %-6" PRIu64 " %-8s 0x%-3x %-9" PRIu64, rec.offset, rec.h.seq,
		       rec.h.type == 0 || streq(stream_record_type_name(rec.h.type), "unknown")
			   ? "?"
			   : stream_record_type_name(rec.h.type),
		       rec.h.flags, rec.h.length);
		if (!rec.header_ok) {
			printf(" HEADER CRC MISMATCH\n");
			damage(&d,
			       "checksum mismatch in the header of record %" PRIu64
			       " at byte %" PRIu64,
			       d.seq, rec.offset);
			break;
		}
		if (!rec.length_ok) {
			uint64_t min, max;

			stream_record_limits(rec.h.type, &min, &max);
			printf(" LENGTH OUT OF BOUNDS\n");
			damage(&d,
			       "record %" PRIu64 " (type %s) at byte %" PRIu64
			       " declares a payload of %" PRIu64 " bytes, allowed %" PRIu64
			       "..%" PRIu64,
			       d.seq, stream_record_type_name(rec.h.type), rec.offset, rec.h.length,
			       min, max);
			break;
		}
		if (!rec.complete) {
			printf(" TRUNCATED (%zu of %" PRIu64 " bytes)\n", rec.payload_len,
			       rec.h.length);
			damage(&d,
			       "stream truncated at byte %" PRIu64
			       ": the payload of record %" PRIu64 " (type %s) is incomplete",
			       stream_raw_reader_bytes(rr), d.seq,
			       stream_record_type_name(rec.h.type));
			break;
		}
		if (!rec.payload_ok) {
			printf(" PAYLOAD CRC MISMATCH\n");
			damage(&d,
			       "checksum mismatch in record %" PRIu64 " (type %s) at byte %" PRIu64,
			       d.seq, stream_record_type_name(rec.h.type), rec.offset);
			break;
		}
		if (rec.h.seq != d.seq) {
			printf(" OUT OF SEQUENCE\n");
			damage(&d,
			       "record at byte %" PRIu64 " is numbered %" PRIu64
			       ", expected %" PRIu64,
			       rec.offset, rec.h.seq, d.seq);
			break;
		}
		if ((d.seq == 0) != (rec.h.type == STREAM_REC_BEGIN)) {
			printf("\n");
			damage(&d, "record %" PRIu64 " at byte %" PRIu64 ": %s", d.seq, rec.offset,
			       d.seq == 0 ? "the first record is not BEGIN"
					  : "a second BEGIN record");
			break;
		}
		summary(&d, rr, &rec, sum, sizeof(sum));
		printf(" %s\n", sum);
		d.seq++;
		if (rec.h.type == STREAM_REC_END)
			ended = true;
	}
	if (!d.damaged && k < 0) {
		damage(&d, "%s", err.msg);
	} else if (!d.damaged && !ended) {
		damage(&d, "stream truncated at byte %" PRIu64 ": it ends before its END record",
		       stream_raw_reader_bytes(rr));
	}
	fflush(stdout);
	if (d.damaged)
		fprintf(stderr, "vmadm-stream: %s\n", d.msg);
	else
		printf("%" PRIu64 " records, %" PRIu64 " datasets, %" PRIu64
		       " bytes: every checksum and hash matches\n",
		       d.seq, d.datasets, stream_raw_reader_bytes(rr));
	stream_digest_free(d.ds_hash);
	ZSTD_freeDCtx(d.zd);
	free(d.chunk);
	return d.damaged ? 1 : 0;
}

/* ---- rewrite ---- */

struct change {
	const char *magic;
	long long version, features; /* -1: keep */
	long long length_seq;
	uint64_t length;
	const char *cfg_key;
	json_t *cfg_value;
	const char *data_ds, *data_file; /* --dataset-data: new data for data_ds */
	const char *set_ds, *set_key;	 /* --dataset-set (and --dataset-name): a DS_BEGIN
					  * member of set_ds */
	json_t *set_value;
	bool done;
};

/* Write the contents of path as the current dataset's DS_DATA records
 * (uncompressed, 1 MiB chunks) and its DS_END, numbered from *seq, with
 * the dataset hash the stream's features ask for. */
static int write_dataset_data(struct stream_raw_writer *rw, const char *path, uint64_t *seq,
			      enum stream_digest_alg alg, struct vm_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *chunk = malloc(STREAM_CHUNK_MAX);
	struct stream_digest *dg = stream_digest_new();
	uint8_t end[STREAM_DS_END_SIZE];
	uint64_t total = 0;
	int r = 0;

	if (fd < 0)
		r = vm_error_set(err, errno, "open %s", path);
	else if (!chunk || !dg || stream_digest_init(dg, alg) < 0)
		r = vm_error_set(err, ENOMEM, "read %s", path);
	while (r >= 0) {
		ssize_t n = fs_read_full(fd, chunk, STREAM_CHUNK_MAX);
		struct stream_header h = {.type = STREAM_REC_DS_DATA};

		if (n < 0) {
			r = vm_error_set(err, (int)n, "read %s", path);
			break;
		}
		if (n == 0)
			break;
		stream_digest_update(dg, chunk, n);
		total += n;
		h.length = n;
		h.seq = (*seq)++;
		r = stream_raw_write(rw, &h, chunk, n, err);
	}
	if (r >= 0) {
		struct stream_header h = {.type = STREAM_REC_DS_END, .length = sizeof(end)};

		put64(end, total);
		stream_digest_final(dg, end + 8);
		h.seq = (*seq)++;
		r = stream_raw_write(rw, &h, end, sizeof(end), err);
	}
	stream_digest_free(dg);
	return r;
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmadm-stream rewrite: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static bool parse_u64(const char *s, uint64_t *ret)
{
	char *end;

	errno = 0;
	*ret = strtoull(s, &end, 0);
	return errno == 0 && end != s && *end == '\0' && s[0] != '-';
}

static int cmd_rewrite(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"magic", required_argument, NULL, 'm'},
	    {"version", required_argument, NULL, 'v'},
	    {"required-features", required_argument, NULL, 'f'},
	    {"dataset-name", required_argument, NULL, 'd'},
	    {"length", required_argument, NULL, 'l'},
	    {"config-set", required_argument, NULL, 'c'},
	    {"dataset-data", required_argument, NULL, 'D'},
	    {"dataset-set", required_argument, NULL, 'S'},
	    {},
	};
	_cleanup_stream_raw_reader_ struct stream_raw_reader *rr = NULL;
	_cleanup_stream_raw_writer_ struct stream_raw_writer *rw = NULL;
	struct change c = {.version = -1, .features = -1, .length_seq = -1};
	struct vm_error err = {0};
	struct stream_raw_record rec;
	_cleanup_free_ uint8_t *buf = NULL;
	int nchanges = 0, o, k;
	bool ended = false, in_data_ds = false;
	enum stream_digest_alg alg = STREAM_DIGEST_SHA256;
	uint64_t seq = 0;
	uint64_t v;
	char *eq;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		nchanges++;
		switch (o) {
		case 'm':
			c.magic = optarg;
			break;
		case 'v':
			if (!parse_u64(optarg, &v) || v > UINT32_MAX)
				return die("--version %s: not a 32-bit number", optarg);
			c.version = v;
			break;
		case 'f':
			if (!parse_u64(optarg, &v))
				return die("--required-features %s: not a number", optarg);
			c.features = v;
			break;
		case 'd':
			eq = strchr(optarg, '=');
			if (!eq)
				return die("--dataset-name wants OLD=NEW");
			*eq = '\0';
			/* the same as --dataset-set OLD:name="NEW" */
			c.set_ds = optarg;
			c.set_key = "name";
			c.set_value = json_string(eq + 1);
			if (!c.set_value)
				return die("--dataset-name %s: not UTF-8", eq + 1);
			break;
		case 'l':
			eq = strchr(optarg, '=');
			if (!eq)
				return die("--length wants SEQ=N");
			*eq = '\0';
			if (!parse_u64(optarg, &v) || !parse_u64(eq + 1, &c.length))
				return die("--length %s=%s: not numbers", optarg, eq + 1);
			c.length_seq = v;
			break;
		case 'c': {
			json_error_t jerr;

			eq = strchr(optarg, '=');
			if (!eq)
				return die("--config-set wants KEY=JSON");
			*eq = '\0';
			c.cfg_key = optarg;
			c.cfg_value = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
			if (!c.cfg_value)
				return die("--config-set %s: invalid JSON: %s", optarg, jerr.text);
			break;
		}
		case 'S': {
			json_error_t jerr;
			char *colon = strchr(optarg, ':');

			eq = colon ? strchr(colon, '=') : NULL;
			if (!eq)
				return die("--dataset-set wants NAME:KEY=JSON");
			*colon = '\0';
			*eq = '\0';
			c.set_ds = optarg;
			c.set_key = colon + 1;
			c.set_value = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
			if (!c.set_value)
				return die("--dataset-set %s: invalid JSON: %s", c.set_key,
					   jerr.text);
			break;
		}
		case 'D':
			eq = strchr(optarg, '=');
			if (!eq)
				return die("--dataset-data wants NAME=FILE");
			*eq = '\0';
			c.data_ds = optarg;
			c.data_file = eq + 1;
			break;
		default:
			return 2;
		}
	}
	if (optind != argc || nchanges != 1)
		return die("usage: vmadm-stream rewrite --magic STR | --version N | "
			   "--required-features N | --dataset-name OLD=NEW | --length SEQ=N | "
			   "--config-set KEY=JSON | --dataset-data NAME=FILE | --dataset-set "
			   "NAME:KEY=JSON < IN > OUT "
			   "(exactly one change)");
	if (isatty(1))
		return die("refusing to write a stream to a terminal");
	if (stream_raw_reader_open(0, &rr, &err) < 0 || stream_raw_writer_open(1, &rw, &err) < 0)
		return die("%s", err.msg);
	buf = malloc(STREAM_CONFIG_MAX + 1);
	if (!buf)
		return die("out of memory");

	while ((k = stream_raw_next(rr, &rec, &err)) == 1) {
		struct stream_header h = rec.h;
		const uint8_t *payload = rec.payload;
		_cleanup_free_ char *text = NULL;
		size_t len = rec.payload_len;

		if (!rec.header_ok || !rec.length_ok || !rec.payload_ok)
			return die("the input is damaged at byte %" PRIu64
				   " (run vmadm-stream dump): rewrite needs a valid stream",
				   rec.offset);
		if (ended)
			return die("the input has data after its END record");
		switch (h.type) {
		case STREAM_REC_BEGIN:
			memcpy(buf, payload, len);
			if (c.magic) {
				memset(buf, ' ', 8);
				memcpy(buf, c.magic, strlen(c.magic) < 8 ? strlen(c.magic) : 8);
				c.done = true;
			}
			if (c.version >= 0) {
				buf[8] = (uint8_t)c.version;
				buf[9] = (uint8_t)(c.version >> 8);
				buf[10] = (uint8_t)(c.version >> 16);
				buf[11] = (uint8_t)(c.version >> 24);
				c.done = true;
			}
			if (c.features >= 0) {
				put64(buf + 16, (uint64_t)c.features);
				c.done = true;
			}
			alg = stream_digest_alg_of(le64(buf + 16));
			payload = buf;
			break;
		case STREAM_REC_CONFIG:
			if (c.cfg_key) {
				_cleanup_json_ json_t *cfg =
				    json_loadb((const char *)payload, len, 0, NULL);

				if (!json_is_object(cfg))
					return die("the CONFIG record is not a JSON object");
				json_object_set(cfg, c.cfg_key, c.cfg_value);
				text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
				if (!text)
					return die("out of memory");
				payload = (const uint8_t *)text;
				len = strlen(text);
				h.length = len;
				c.done = true;
			}
			break;
		case STREAM_REC_DS_BEGIN:
			if (c.data_ds) {
				_cleanup_json_ json_t *o =
				    json_loadb((const char *)payload, len, 0, NULL);

				in_data_ds =
				    streq(json_string_value(json_object_get(o, "name")) ?: "\x01",
					  c.data_ds);
			}
			if (c.set_ds) {
				_cleanup_json_ json_t *o =
				    json_loadb((const char *)payload, len, 0, NULL);

				if (streq(json_string_value(json_object_get(o, "name")) ?: "\x01",
					  c.set_ds)) {
					json_object_set(o, c.set_key, c.set_value);
					text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
					if (!text)
						return die("out of memory");
					payload = (const uint8_t *)text;
					len = strlen(text);
					h.length = len;
					c.done = true;
				}
			}
			break;
		case STREAM_REC_END:
			/* the hash of what we wrote, not of what we read */
			memcpy(buf, payload, len);
			stream_raw_writer_hash(rw, buf + 8);
			payload = buf;
			ended = true;
			break;
		}
		if (in_data_ds && h.type == STREAM_REC_DS_DATA)
			continue; /* replaced at its DS_END */
		if (in_data_ds && h.type == STREAM_REC_DS_END) {
			if (write_dataset_data(rw, c.data_file, &seq, alg, &err) < 0)
				return die("%s", err.msg);
			in_data_ds = false;
			c.done = true;
			continue;
		}
		if (c.length_seq >= 0 && h.seq == (uint64_t)c.length_seq) {
			h.length = c.length;
			c.done = true;
		}
		h.seq = seq++; /* renumbered: --dataset-data changes the count */
		if (stream_raw_write(rw, &h, payload, len, &err) < 0)
			return die("%s", err.msg);
	}
	if (k < 0)
		return die("%s", err.msg);
	if (!ended)
		return die("the input ends before its END record");
	if (!c.done)
		return die("nothing to change: no record matched");
	json_decref(c.cfg_value);
	json_decref(c.set_value);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && streq(argv[1], "dump"))
		return cmd_dump(argc - 1, argv + 1);
	if (argc >= 2 && streq(argv[1], "rewrite"))
		return cmd_rewrite(argc - 1, argv + 1);
	fprintf(stderr, "usage: vmadm-stream dump [FILE]\n"
			"       vmadm-stream rewrite [--magic STR | --version N | "
			"--required-features N |\n"
			"                             --dataset-name OLD=NEW | --length SEQ=N | "
			"--config-set KEY=JSON | --dataset-data NAME=FILE |\n"
			"                             --dataset-set NAME:KEY=JSON] < IN > OUT\n");
	return 2;
}

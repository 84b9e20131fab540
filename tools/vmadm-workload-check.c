/* SPDX-License-Identifier: MIT */
/* vmadm-workload-check: read back what vmadm-workload wrote and judge it.
 *
 *   vmadm-workload-check [--offset N | --disk] [--area N] [--json] PATH
 *
 * Without --offset, PATH is a record file (file mode: records from byte 0,
 * every slot must be a valid record). With --offset (or --disk, which is
 * --offset 33554432), PATH is a raw disk or disk image and the records are
 * in [offset + 512, offset + area) (area 16 MiB), where unwritten slots are
 * zero.
 *
 * Reports the record count, first and last seq, gaps in seq, corrupt slots,
 * duplicate seqs, the number of boots (distinct boot ids) and runs (distinct
 * run ids), the largest gap in guest monotonic time between consecutive
 * records of the same boot, and the largest realtime gap across a boot
 * change. Exit 0 when there is at least one record and no gap, no corrupt
 * slot and no duplicate; 1 when there is a problem; 2 on a usage or I/O
 * error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmadm-workload.h"

#define MAX_LISTED_GAPS 10

struct gap {
	uint64_t after, next;
};

struct result {
	uint64_t records, corrupt, duplicates, first_seq, last_seq;
	uint64_t gaps, missing;
	struct gap gap_list[MAX_LISTED_GAPS];
	uint64_t boots, runs;
	double max_mono_gap_ms; /* same boot */
	uint64_t max_mono_gap_after;
	double max_boot_gap_ms; /* across a boot change, realtime */
	uint64_t max_boot_gap_after;
	double span_s; /* realtime, first to last record */
};

static struct wl_record *recs;
static size_t nrecs, caprecs;

static int cmp_seq(const void *a, const void *b)
{
	const struct wl_record *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static bool parse_u64(const char *s, uint64_t *ret)
{
	char *end;

	errno = 0;
	*ret = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		*ret <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		*ret <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		*ret <<= 30;
		end++;
		break;
	}
	return *end == '\0';
}

static void add_record(const struct wl_record *r)
{
	if (nrecs == caprecs) {
		caprecs = caprecs ? 2 * caprecs : 4096;
		recs = realloc(recs, caprecs * sizeof(*recs));
		if (!recs) {
			fprintf(stderr, "vmadm-workload-check: out of memory\n");
			exit(2);
		}
	}
	recs[nrecs++] = *r;
}

static bool in_list(uint8_t (*ids)[16], uint64_t n, const uint8_t *id)
{
	for (uint64_t i = 0; i < n; i++)
		if (memcmp(ids[i], id, 16) == 0)
			return true;
	return false;
}

/* Distinct 16-byte ids at the given offset in struct wl_record. */
static uint64_t count_distinct(size_t field)
{
	uint8_t(*ids)[16] = calloc(nrecs ? nrecs : 1, 16);
	uint64_t n = 0;

	for (size_t i = 0; i < nrecs; i++) {
		const uint8_t *id = (const uint8_t *)&recs[i] + field;
		/* Records come sorted by seq, so ids repeat in runs: check the
		 * last one first, the full list only on a change. */
		if (n && memcmp(ids[n - 1], id, 16) == 0)
			continue;
		if (!in_list(ids, n, id))
			memcpy(ids[n++], id, 16);
	}
	free(ids);
	return n;
}

static void analyse(struct result *res)
{
	res->records = nrecs;
	if (!nrecs)
		return; /* recs is NULL then, which qsort may not be given */
	qsort(recs, nrecs, sizeof(*recs), cmp_seq);
	res->first_seq = recs[0].seq;
	res->last_seq = recs[nrecs - 1].seq;
	res->span_s = ((double)recs[nrecs - 1].real_ns - (double)recs[0].real_ns) / 1e9;
	for (size_t i = 1; i < nrecs; i++) {
		const struct wl_record *a = &recs[i - 1], *b = &recs[i];
		if (b->seq == a->seq) {
			res->duplicates++;
			continue;
		}
		if (b->seq > a->seq + 1) {
			if (res->gaps < MAX_LISTED_GAPS)
				res->gap_list[res->gaps] = (struct gap){ a->seq, b->seq };
			res->gaps++;
			res->missing += b->seq - a->seq - 1;
		}
		if (memcmp(a->boot_id, b->boot_id, 16) == 0) {
			double ms = ((double)b->mono_ns - (double)a->mono_ns) / 1e6;
			if (ms > res->max_mono_gap_ms) {
				res->max_mono_gap_ms = ms;
				res->max_mono_gap_after = a->seq;
			}
		} else {
			double ms = ((double)b->real_ns - (double)a->real_ns) / 1e6;
			if (ms > res->max_boot_gap_ms || !res->max_boot_gap_after) {
				res->max_boot_gap_ms = ms;
				res->max_boot_gap_after = a->seq;
			}
		}
	}
	res->boots = count_distinct(offsetof(struct wl_record, boot_id));
	res->runs = count_distinct(offsetof(struct wl_record, run_id));
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_json(const char *path, const struct result *r, bool ok)
{
	printf("{\"path\": ");
	json_str(path);
	printf(", \"ok\": %s, \"records\": %" PRIu64 ", \"first_seq\": %" PRIu64
	       ", \"last_seq\": %" PRIu64 ", \"corrupt\": %" PRIu64 ", \"duplicates\": %" PRIu64
	       ", \"gaps\": %" PRIu64 ", \"missing\": %" PRIu64 ", \"gap_list\": [",
	       ok ? "true" : "false", r->records, r->first_seq, r->last_seq, r->corrupt,
	       r->duplicates, r->gaps, r->missing);
	for (uint64_t i = 0; i < r->gaps && i < MAX_LISTED_GAPS; i++)
		printf("%s{\"after\": %" PRIu64 ", \"next\": %" PRIu64 "}", i ? ", " : "",
		       r->gap_list[i].after, r->gap_list[i].next);
	printf("], \"boots\": %" PRIu64 ", \"runs\": %" PRIu64
	       ", \"max_gap_ms_same_boot\": %.3f, \"max_gap_same_boot_after\": %" PRIu64
	       ", \"max_gap_ms_boot_change\": %.3f, \"max_gap_boot_change_after\": %" PRIu64
	       ", \"span_s\": %.3f}\n",
	       r->boots, r->runs, r->max_mono_gap_ms, r->max_mono_gap_after, r->max_boot_gap_ms,
	       r->max_boot_gap_after, r->span_s);
}

static void print_text(const char *path, const struct result *r, bool ok)
{
	printf("%s: %" PRIu64 " records", path, r->records);
	if (r->records)
		printf(", seq %" PRIu64 "..%" PRIu64 " over %.1f s", r->first_seq, r->last_seq,
		       r->span_s);
	printf(", %" PRIu64 " corrupt, %" PRIu64 " duplicate\n", r->corrupt, r->duplicates);
	printf("gaps: %" PRIu64 " (%" PRIu64 " records missing)", r->gaps, r->missing);
	for (uint64_t i = 0; i < r->gaps && i < MAX_LISTED_GAPS; i++)
		printf("%s%" PRIu64 "..%" PRIu64, i ? ", " : ": ", r->gap_list[i].after + 1,
		       r->gap_list[i].next - 1);
	if (r->gaps > MAX_LISTED_GAPS)
		printf(", ...");
	printf("\nboots: %" PRIu64 ", runs: %" PRIu64 "\n", r->boots, r->runs);
	if (r->records > 1)
		printf("largest gap within a boot: %.1f ms (after seq %" PRIu64 ")\n",
		       r->max_mono_gap_ms, r->max_mono_gap_after);
	if (r->boots > 1)
		printf("largest gap across a boot change: %.1f ms (after seq %" PRIu64 ")\n",
		       r->max_boot_gap_ms, r->max_boot_gap_after);
	puts(ok ? "OK" : r->records ? "FAILED" : "FAILED: no records");
}

static void usage(FILE *f)
{
	fputs("usage: vmadm-workload-check [--offset N | --disk] [--area N] [--json] PATH\n", f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "offset", required_argument, NULL, 'o' },
		{ "disk", no_argument, NULL, 'd' },
		{ "area", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t offset = 0, area = WL_DEFAULT_AREA, start, end, size;
	bool disk = false, json = false, ok;
	struct result res = { 0 };
	struct stat st;
	const char *path;
	uint8_t buf[64 * WL_RECORD_SIZE];
	int c, fd;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			if (!parse_u64(optarg, &offset)) {
				fprintf(stderr,
					"vmadm-workload-check: --offset: '%s' is not a number\n",
					optarg);
				return 2;
			}
			disk = true;
			break;
		case 'd':
			offset = WL_DEFAULT_OFFSET;
			disk = true;
			break;
		case 'a':
			if (!parse_u64(optarg, &area) || area < 2 * WL_RECORD_SIZE) {
				fprintf(stderr,
					"vmadm-workload-check: --area: '%s' is not a size\n",
					optarg);
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	path = argv[optind];
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "vmadm-workload-check: %s: %m\n", path);
		return 2;
	}
	size = st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) < 0) {
		fprintf(stderr, "vmadm-workload-check: size of %s: %m\n", path);
		return 2;
	}
	if (disk) {
		if (size < offset + 2 * WL_RECORD_SIZE) {
			fprintf(stderr,
				"vmadm-workload-check: %s: %" PRIu64 " bytes, no record area at "
				"offset %" PRIu64 "\n",
				path, size, offset);
			return 2;
		}
		start = offset + WL_RECORD_SIZE;
		end = offset + area < size ? offset + area : size;
	} else {
		start = 0;
		end = size;
		if (size % WL_RECORD_SIZE)
			res.corrupt++; /* a torn last record */
		end = size / WL_RECORD_SIZE * WL_RECORD_SIZE;
	}

	for (uint64_t pos = start; pos < end;) {
		size_t want = end - pos < sizeof(buf) ? end - pos : sizeof(buf);
		ssize_t n = pread(fd, buf, want, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "vmadm-workload-check: read %s at byte %" PRIu64 ": %s\n",
				path, pos, n < 0 ? strerror(errno) : "unexpected end");
			return 2;
		}
		n -= n % WL_RECORD_SIZE;
		if (n == 0) {
			fprintf(stderr,
				"vmadm-workload-check: read %s at byte %" PRIu64 ": short read\n",
				path, pos);
			return 2;
		}
		for (ssize_t i = 0; i < n; i += WL_RECORD_SIZE) {
			struct wl_record r;
			switch (wl_decode(buf + i, &r)) {
			case WL_SLOT_VALID:
				add_record(&r);
				break;
			case WL_SLOT_EMPTY:
				/* Unwritten slots are normal on a disk; in a file
				 * of appended records a zero slot is a lost write. */
				if (!disk)
					res.corrupt++;
				break;
			case WL_SLOT_CORRUPT:
				res.corrupt++;
				break;
			}
		}
		pos += n;
	}
	close(fd);

	analyse(&res);
	ok = res.records > 0 && res.gaps == 0 && res.corrupt == 0 && res.duplicates == 0;
	if (json)
		print_json(path, &res, ok);
	else
		print_text(path, &res, ok);
	free(recs);
	return ok ? 0 : 1;
}

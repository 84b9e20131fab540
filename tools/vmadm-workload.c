/* SPDX-License-Identifier: MIT */
/* vmadm-workload: the guest workload of the test images.
 *
 * Every --rate-ms (100) it writes one 512-byte record (see vmadm-workload.h
 * and docs/workload.md) and makes it durable before the next one, so that
 * the host can read back, after a stop, a restart or a migration, exactly
 * which records the guest believed were written, and when.
 *
 *   vmadm-workload --disk DEV [--offset N] [--area N] [options]
 *       records at offset + 512 * (1 + (seq - 1) % slots), O_DIRECT|O_SYNC;
 *       the sector at offset may hold a config line "VMWLCONF key=value...";
 *       the scratch area for --burst is [offset + area, end of DEV).
 *   vmadm-workload --file PATH [options]
 *       records appended to PATH, fdatasync after each; scratch PATH.scratch.
 *
 * Options: --rate-ms N, --burst BYTES (random data per tick to the scratch
 * area), --mem BYTES (dirty that much RAM per tick, for live migration),
 * --count N (stop after N records), --scratch-size BYTES (file mode).
 *
 * On start it scans the existing records and continues at the highest
 * valid seq + 1. It is built static so that it runs in the initramfs and the
 * container root, which hold nothing but busybox. SIGTERM/SIGINT stop it
 * between two records.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmadm-workload.h"

#ifndef GRND_INSECURE
#define GRND_INSECURE 0x0004
#endif

#define SCAN_CHUNK (1u << 20)
#define BURST_CHUNK (1u << 20)
/* File mode: a crash during append + fdatasync leaves at most a torn record
 * and a filesystem block of zeros; more than this is not a torn tail. */
#define MAX_TORN_TAIL (64u << 10)

static volatile sig_atomic_t stop_requested;

struct opts {
	const char *disk;
	const char *file;
	uint64_t offset;
	uint64_t area;
	uint64_t rate_ms;
	uint64_t burst;
	uint64_t mem;
	uint64_t count;
	uint64_t scratch_size;
	bool set_rate, set_burst, set_mem;
};

struct target {
	int fd;
	bool direct;	    /* fd has O_DIRECT: buffers and sizes aligned */
	uint64_t rec_base;  /* disk: byte of slot 0 (the config sector); file: 0 */
	uint64_t slots;	    /* disk: record slots after the config sector; file: 0 */
	uint64_t append_at; /* file: where the next record goes */
	int scratch_fd;	    /* -1 without --burst */
	uint64_t scratch_base, scratch_size, scratch_pos;
};

static void on_signal(int sig)
{
	stop_requested = 1;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("vmadm-workload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* "4096", "4k", "16M", "1G" */
static bool parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		v <<= 10;
		end++;
		break;
	case 'm':
	case 'M':
		v <<= 20;
		end++;
		break;
	case 'g':
	case 'G':
		v <<= 30;
		end++;
		break;
	}
	if (*end)
		return false;
	*ret = v;
	return true;
}

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void read_boot_id(uint8_t out[16])
{
	char buf[64] = "";
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	int n = 0;

	memset(out, 0, 16);
	if (fd >= 0) {
		ssize_t r = read(fd, buf, sizeof(buf) - 1);
		buf[r > 0 ? r : 0] = '\0';
		close(fd);
	}
	for (const char *p = buf; *p && n < 32; p++) {
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else
			continue;
		out[n / 2] |= v << (n % 2 ? 0 : 4);
		n++;
	}
}

static void random_bytes(uint8_t *out, size_t n)
{
	/* Early in a guest's boot the pool may not be ready; an id needs to be
	 * unique, not secret, so never block. */
	if (getrandom(out, n, GRND_INSECURE) == (ssize_t)n ||
	    getrandom(out, n, GRND_NONBLOCK) == (ssize_t)n)
		return;
	uint64_t x = now_ns(CLOCK_REALTIME) ^ now_ns(CLOCK_MONOTONIC) << 17 ^ getpid();
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		out[i] = x;
	}
}

static void *aligned_buf(size_t n)
{
	void *p;

	if (posix_memalign(&p, 4096, n) != 0)
		die("out of memory (%zu bytes)", n);
	memset(p, 0, n);
	return p;
}

static void preadall(int fd, void *buf, size_t n, uint64_t off, const char *what)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, off + done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read %s at byte %" PRIu64 ": %m", what, off + done);
		if (r == 0)
			die("read %s at byte %" PRIu64 ": unexpected end", what, off + done);
		done += r;
	}
}

static int pwriteall(int fd, const void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pwrite(fd, (const char *)buf + done, n - done, off + done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += r;
	}
	return 0;
}

/* Open for writing durably: O_DIRECT|O_SYNC where the filesystem allows it
 * (tmpfs does not), else plain O_SYNC. */
static int open_durable(const char *path, int flags, bool *ret_direct)
{
	int fd = open(path, flags | O_DIRECT | O_SYNC | O_CLOEXEC, 0644);

	*ret_direct = fd >= 0;
	if (fd < 0 && errno == EINVAL)
		fd = open(path, flags | O_SYNC | O_CLOEXEC, 0644);
	return fd;
}

static uint64_t fd_size(int fd, const char *what)
{
	struct stat st;
	uint64_t sz;

	if (fstat(fd, &st) < 0)
		die("stat %s: %m", what);
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &sz) < 0)
			die("size of %s: %m", what);
		return sz;
	}
	return st.st_size;
}

/* "VMWLCONF rate_ms=20 burst=1M mem=64M" in the sector at offset: defaults
 * that the command line overrides. A test writes it into the volume before
 * boot to change what a guest does without rebuilding the image. */
static void apply_config(struct opts *o, const uint8_t *sector)
{
	char line[WL_RECORD_SIZE + 1];
	char *save = NULL;

	if (memcmp(sector, WL_CONF_MAGIC, strlen(WL_CONF_MAGIC)) != 0)
		return;
	memcpy(line, sector, WL_RECORD_SIZE);
	line[WL_RECORD_SIZE] = '\0';
	line[strcspn(line, "\n")] = '\0';
	for (char *w = strtok_r(line + strlen(WL_CONF_MAGIC), " \t", &save); w;
	     w = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(w, '=');
		uint64_t v;
		if (!eq || !parse_size(eq + 1, &v)) {
			fprintf(stderr, "vmadm-workload: config: ignoring '%s'\n", w);
			continue;
		}
		*eq = '\0';
		if (strcmp(w, "rate_ms") == 0 && v > 0) {
			if (!o->set_rate)
				o->rate_ms = v;
		} else if (strcmp(w, "burst") == 0) {
			if (!o->set_burst)
				o->burst = v;
		} else if (strcmp(w, "mem") == 0) {
			if (!o->set_mem)
				o->mem = v;
		} else {
			fprintf(stderr, "vmadm-workload: config: ignoring '%s'\n", w);
		}
	}
}

/* Disk mode: read the config sector and every slot; return the next seq. */
static uint64_t open_disk(struct opts *o, struct target *t)
{
	uint64_t size, area, max_seq = 0, corrupt = 0;
	uint8_t *buf;

	t->fd = open_durable(o->disk, O_RDWR, &t->direct);
	if (t->fd < 0)
		die("open %s: %m", o->disk);
	size = fd_size(t->fd, o->disk);
	if (o->offset % 4096)
		die("%s: offset %" PRIu64 " is not a multiple of 4096", o->disk, o->offset);
	if (size < o->offset + 2 * WL_RECORD_SIZE)
		die("%s: %" PRIu64 " bytes, too small for records at offset %" PRIu64, o->disk,
		    size, o->offset);
	area = o->area ? o->area : WL_DEFAULT_AREA;
	if (area > size - o->offset)
		area = (size - o->offset) & ~4095ull;
	t->rec_base = o->offset;
	t->slots = area / WL_RECORD_SIZE - 1;

	buf = aligned_buf(SCAN_CHUNK);
	for (uint64_t pos = 0; pos < area; pos += SCAN_CHUNK) {
		size_t n = area - pos < SCAN_CHUNK ? area - pos : SCAN_CHUNK;
		preadall(t->fd, buf, n, o->offset + pos, o->disk);
		for (size_t i = 0; i < n; i += WL_RECORD_SIZE) {
			struct wl_record r;
			if (pos + i == 0) {
				apply_config(o, buf);
				continue;
			}
			switch (wl_decode(buf + i, &r)) {
			case WL_SLOT_VALID:
				if (r.seq > max_seq)
					max_seq = r.seq;
				break;
			case WL_SLOT_CORRUPT:
				corrupt++;
				break;
			case WL_SLOT_EMPTY:
				break;
			}
		}
	}
	free(buf);
	if (corrupt)
		fprintf(stderr, "vmadm-workload: %s: %" PRIu64 " corrupt record slots\n", o->disk,
			corrupt);

	t->scratch_fd = -1;
	if (o->burst) {
		t->scratch_fd = t->fd;
		t->scratch_base = o->offset + area;
		t->scratch_size = (size - t->scratch_base) & ~4095ull;
		if (t->scratch_size < o->burst)
			die("%s: --burst %" PRIu64 " needs a scratch area that big after byte "
			    "%" PRIu64 ", the disk has %" PRIu64 " bytes there",
			    o->disk, o->burst, t->scratch_base, t->scratch_size);
	}
	return max_seq + 1;
}

/* File mode: read all records, drop a torn or corrupt tail, return the next
 * seq. A non-empty file that does not start with a valid record, or whose
 * invalid tail is longer than a crash leaves, is refused rather than
 * truncated: it is probably not ours. */
static uint64_t open_file(struct opts *o, struct target *t)
{
	uint64_t size, max_seq = 0, last_valid_end = 0, nvalid = 0;
	bool first_valid = false;
	uint8_t *buf;

	t->fd = open(o->file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (t->fd < 0)
		die("open %s: %m", o->file);
	t->direct = false;
	size = fd_size(t->fd, o->file) / WL_RECORD_SIZE * WL_RECORD_SIZE;
	buf = aligned_buf(SCAN_CHUNK);
	for (uint64_t pos = 0; pos < size; pos += SCAN_CHUNK) {
		size_t n = size - pos < SCAN_CHUNK ? size - pos : SCAN_CHUNK;
		preadall(t->fd, buf, n, pos, o->file);
		for (size_t i = 0; i < n; i += WL_RECORD_SIZE) {
			struct wl_record r;
			if (wl_decode(buf + i, &r) != WL_SLOT_VALID)
				continue;
			if (pos + i == 0)
				first_valid = true;
			nvalid++;
			if (r.seq > max_seq)
				max_seq = r.seq;
			last_valid_end = pos + i + WL_RECORD_SIZE;
		}
	}
	free(buf);
	if (fd_size(t->fd, o->file) > 0 && (nvalid == 0 || !first_valid))
		die("%s: not empty and does not start with a workload record; refusing to append",
		    o->file);
	if (fd_size(t->fd, o->file) - last_valid_end > MAX_TORN_TAIL)
		die("%s: %" PRIu64 " bytes after the last valid record, more than a crash leaves; "
		    "refusing to truncate",
		    o->file, fd_size(t->fd, o->file) - last_valid_end);
	if (fd_size(t->fd, o->file) != last_valid_end) {
		fprintf(stderr, "vmadm-workload: %s: dropping %" PRIu64 " bytes of torn tail\n",
			o->file, fd_size(t->fd, o->file) - last_valid_end);
		if (ftruncate(t->fd, last_valid_end) < 0)
			die("truncate %s: %m", o->file);
	}
	t->append_at = last_valid_end;

	t->scratch_fd = -1;
	if (o->burst) {
		char path[4096];
		snprintf(path, sizeof(path), "%s.scratch", o->file);
		t->scratch_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (t->scratch_fd < 0)
			die("open %s: %m", path);
		t->scratch_base = 0;
		t->scratch_size = o->scratch_size < o->burst ? o->burst : o->scratch_size;
	}
	return max_seq + 1;
}

static void fill_random(uint8_t *p, size_t n, uint64_t *state)
{
	uint64_t x = *state;

	for (size_t i = 0; i + 8 <= n; i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	*state = x;
}

static int write_burst(struct target *t, uint8_t *buf, uint64_t bytes, uint64_t *rng)
{
	int r;

	if (t->direct)
		bytes = (bytes + 4095) & ~4095ull;
	while (bytes > 0) {
		uint64_t n = bytes < BURST_CHUNK ? bytes : BURST_CHUNK;
		if (t->scratch_pos + n > t->scratch_size)
			t->scratch_pos = 0;
		fill_random(buf, n, rng);
		r = pwriteall(t->scratch_fd, buf, n, t->scratch_base + t->scratch_pos);
		if (r < 0)
			return r;
		t->scratch_pos += n;
		bytes -= n;
	}
	if (!t->direct && fdatasync(t->scratch_fd) < 0)
		return -errno;
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: vmadm-workload --disk DEV [--offset N] [--area N] [OPTIONS]\n"
	      "       vmadm-workload --file PATH [--scratch-size N] [OPTIONS]\n"
	      "options: --rate-ms N (100)  --burst BYTES  --mem BYTES  --count N\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "disk", required_argument, NULL, 'd' },
		{ "file", required_argument, NULL, 'f' },
		{ "offset", required_argument, NULL, 'o' },
		{ "area", required_argument, NULL, 'a' },
		{ "rate-ms", required_argument, NULL, 'r' },
		{ "burst", required_argument, NULL, 'b' },
		{ "mem", required_argument, NULL, 'm' },
		{ "count", required_argument, NULL, 'c' },
		{ "scratch-size", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct opts o = { .offset = WL_DEFAULT_OFFSET, .rate_ms = 100, .scratch_size = 64 << 20 };
	struct target t = { .fd = -1, .scratch_fd = -1 };
	struct wl_record rec = { 0 };
	uint8_t *sector, *burst_buf = NULL, *mem = NULL;
	uint64_t seq, written = 0, next, rng;
	const char *what;
	int c, idx = 0;

	while ((c = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
		uint64_t *dst = NULL;
		switch (c) {
		case 'd':
			o.disk = optarg;
			continue;
		case 'f':
			o.file = optarg;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		case 'o':
			dst = &o.offset;
			break;
		case 'a':
			dst = &o.area;
			break;
		case 'r':
			dst = &o.rate_ms;
			o.set_rate = true;
			break;
		case 'b':
			dst = &o.burst;
			o.set_burst = true;
			break;
		case 'm':
			dst = &o.mem;
			o.set_mem = true;
			break;
		case 'c':
			dst = &o.count;
			break;
		case 's':
			dst = &o.scratch_size;
			break;
		default:
			usage(stderr);
			return 2;
		}
		if (!parse_size(optarg, dst))
			die("--%s: '%s' is not a size", longopts[idx].name, optarg);
	}
	if (optind != argc || !o.disk == !o.file) {
		usage(stderr);
		return 2;
	}
	if (o.rate_ms == 0)
		die("--rate-ms must be at least 1");
	if (o.area && (o.area % 4096 || o.area < 4096))
		die("--area must be a multiple of 4096");

	seq = o.disk ? open_disk(&o, &t) : open_file(&o, &t);
	what = o.disk ? o.disk : o.file;

	read_boot_id(rec.boot_id);
	random_bytes(rec.run_id, sizeof(rec.run_id));
	random_bytes((uint8_t *)&rng, sizeof(rng));
	rng |= 1;
	rec.interval_ms = o.rate_ms;
	rec.flags = WL_FLAG_START;
	sector = aligned_buf(4096);
	if (o.burst)
		burst_buf = aligned_buf(BURST_CHUNK);
	if (o.mem) {
		mem = mmap(NULL, o.mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			die("--mem %" PRIu64 ": %m", o.mem);
	}

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr,
		"vmadm-workload: %s: started at seq %" PRIu64 ", every %" PRIu64
		" ms, burst %" PRIu64 ", mem %" PRIu64 "%s\n",
		what, seq, o.rate_ms, o.burst, o.mem, t.direct ? " (O_DIRECT)" : "");

	next = now_ns(CLOCK_MONOTONIC);
	while (!stop_requested && (!o.count || written < o.count)) {
		uint64_t off;
		int r;

		rec.seq = seq;
		rec.mono_ns = now_ns(CLOCK_MONOTONIC);
		rec.real_ns = now_ns(CLOCK_REALTIME);
		wl_encode(&rec, sector);
		if (o.disk)
			off = t.rec_base + WL_RECORD_SIZE * (1 + (seq - 1) % t.slots);
		else
			off = t.append_at;
		r = pwriteall(t.fd, sector, WL_RECORD_SIZE, off);
		if (r == 0 && !t.direct && fdatasync(t.fd) < 0)
			r = -errno;
		if (r < 0) {
			errno = -r;
			die("write record %" PRIu64 " to %s at byte %" PRIu64 ": %m", seq, what,
			    off);
		}
		if (!o.disk)
			t.append_at += WL_RECORD_SIZE;
		rec.flags = 0;
		seq++;
		written++;

		if (o.burst) {
			r = write_burst(&t, burst_buf, o.burst, &rng);
			if (r < 0) {
				errno = -r;
				die("write %" PRIu64 " scratch bytes to %s: %m", o.burst, what);
			}
		}
		for (uint64_t i = 0; mem && i < o.mem; i += 4096)
			mem[i] = (uint8_t)(mem[i] + seq + 1);

		next += o.rate_ms * 1000000ull;
		if (next < now_ns(CLOCK_MONOTONIC))
			next = now_ns(CLOCK_MONOTONIC); /* fell behind: don't catch up in a burst */
		struct timespec ts = { .tv_sec = next / 1000000000ull,
				       .tv_nsec = next % 1000000000ull };
		while (!stop_requested &&
		       clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	fprintf(stderr, "vmadm-workload: %s: stopped after seq %" PRIu64 "\n", what, seq - 1);
	return 0;
}

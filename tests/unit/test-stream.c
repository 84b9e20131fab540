/* SPDX-License-Identifier: MIT */
/*
 * Writer -> pipe -> reader round trips of whole VMs: a config, a filesystem
 * in the tar encoding (hard link, symlink, fifo, device, xattr, sparse file,
 * modes, owners, times; a child dataset's mount point left out and sent on
 * its own), a 64 MiB sparse volume in the blocks encoding, with zstd off and
 * on; the native pass-through pumps; and hostile streams (names outside the
 * VM, archive entries escaping the root, blocks beyond the volume).
 * Everything lives in a mktemp -d directory that is removed at the end.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "stream/stream-private.h"
#include "stream/stream.h"
#include "util/error.h"
#include "util/fs.h"
#include "util/macros.h"

#define UUID "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
#define MiB  (1024 * 1024)

static char tmp[] = "/tmp/test-stream.XXXXXX";
static bool have_xattr;
static char xattr_why[256];

static char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *P(const char *fmt, ...)
{
	static char bufs[8][4096];
	static int i;
	char rel[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	i = (i + 1) % 8;
	snprintf(bufs[i], sizeof(bufs[i]), "%s/%s", tmp, rel);
	return bufs[i];
}

static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
	uint64_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

static void write_at(const char *path, off_t off, size_t n, uint32_t seed)
{
	uint8_t *buf = malloc(n);
	int fd = open(path, O_WRONLY | O_CREAT, 0644);

	if (fd < 0 || !buf)
		abort();
	if (seed)
		fill_random(buf, n, seed);
	else
		memset(buf, 0, n);
	if (pwrite(fd, buf, n, off) != (ssize_t)n)
		abort();
	close(fd);
	free(buf);
}

static bool same_content(const char *a, const char *b)
{
	char *x = NULL, *y = NULL;
	size_t xl = 0, yl = 0;
	struct vm_error err;
	bool same;

	if (fs_read_file(a, 256 * MiB, &x, &xl, &err) < 0 ||
	    fs_read_file(b, 256 * MiB, &y, &yl, &err) < 0) {
		free(x);
		return false;
	}
	same = xl == yl && memcmp(x, y, xl) == 0;
	free(x);
	free(y);
	return same;
}

static void set_times(const char *path, time_t sec)
{
	struct timespec ts[2] = {{sec, 0}, {sec, 0}};

	utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

/* ---- the VM on the sending side ---- */

static void make_source(void)
{
	char root[4096];

	snprintf(root, sizeof(root), "%s", P("src/root")); /* P's buffers rotate */

	fs_mkdir_p(P("src/root/etc/sub"), 0755, &(struct vm_error){0});
	fs_mkdir_p(P("src/root/data"), 0755, &(struct vm_error){0});

	write_at(P("src/root/etc/passwd"), 0, 3000, 11);
	chmod(P("src/root/etc/passwd"), 0640);
	chown(P("src/root/etc/passwd"), 1234, 5678);
	set_times(P("src/root/etc/passwd"), 1000000000);

	if (link(P("src/root/etc/passwd"), P("src/root/etc/passwd.hard")) < 0)
		abort();
	if (symlink("../etc/passwd", P("src/root/etc/sub/link")) < 0 ||
	    symlink("/nonexistent/target", P("src/root/dangling")) < 0)
		abort();
	if (mkfifo(P("src/root/fifo"), 0620) < 0)
		abort();
	if (mknod(P("src/root/null"), S_IFCHR | 0666, makedev(1, 3)) < 0)
		abort();
	write_at(P("src/root/empty"), 0, 0, 0);
	{
		/* a socket left behind by a server: not sent */
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		int sk = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", P("src/root/sock"));
		if (sk < 0 || bind(sk, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			abort();
		close(sk);
	}
	chmod(P("src/root/etc/sub"), 0700);
	chown(P("src/root/etc/sub"), 42, 43);

	/* 16 MiB sparse file: data at 1 MiB and in the last 4 KiB */
	write_at(P("src/root/sparse"), 1 * MiB, 8192, 12);
	write_at(P("src/root/sparse"), 16 * MiB - 4096, 4096, 13);

	have_xattr = setxattr(P("src/root/etc/passwd"), "user.vmadm.test", "hello", 5, 0) == 0;
	if (!have_xattr)
		snprintf(xattr_why, sizeof(xattr_why), "setxattr user.* on %s: %s", tmp,
			 strerror(errno));

	/* the child dataset zones/UUID/data, mounted at root/data */
	write_at(P("src/root/data/db"), 0, 5000, 14);
	set_times(P("src/root/data/db"), 1200000000);
	set_times(P("src/root/data"), 1250000000);

	chmod(root, 0711);
	set_times(P("src/root/etc"), 1100000000);
	set_times(root, 1300000000);

	/* the 64 MiB volume: random data at a few offsets, a run of written
	 * zeros (allocated, must be skipped), holes elsewhere */
	write_at(P("src/disk.raw"), 0, 4096, 21);
	write_at(P("src/disk.raw"), 10 * MiB + 123, 100000, 22);
	write_at(P("src/disk.raw"), 20 * MiB, 2 * MiB, 0);
	write_at(P("src/disk.raw"), 33 * MiB, 3 * MiB / 2, 23);
	write_at(P("src/disk.raw"), 64 * MiB - 4096, 4096, 24);
}

/* ---- send in a child, receive here, over a pipe ---- */

static int send_vm(int fd, unsigned flags, struct vm_error *err)
{
	struct stream_writer *w = NULL;
	json_t *config = json_pack("{s:s, s:s, s:i}", "uuid", UUID, "brand", "kvm", "ram", 256);
	static const char *const skip[] = {"data", NULL};
	struct stream_dataset root = {.name = "", .snapshot = "vmadm-send-1"};
	struct stream_dataset data = {.name = "/data", .snapshot = "vmadm-send-1"};
	struct stream_dataset disk = {.name = "-disk0", .snapshot = "vmadm-send-1"};
	/* what a pool hands out: the trees' roots, the volume's image */
	int rootfd = open(P("src/root"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int datafd = open(P("src/root/data"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int diskfd = open(P("src/disk.raw"), O_RDONLY | O_CLOEXEC);
	int r;

	if (rootfd < 0 || datafd < 0 || diskfd < 0)
		abort();
	r = stream_writer_open(fd, flags, &w, err);
	if (r >= 0)
		r = stream_write_config(w, config, err);
	if (r >= 0)
		r = stream_send_tree(w, &root, rootfd, skip, err);
	if (r >= 0)
		r = stream_send_tree(w, &data, datafd, NULL, err);
	if (r >= 0)
		r = stream_send_volume(w, &disk, diskfd, err);
	if (r >= 0)
		r = stream_finish(w, err);
	stream_writer_free(w);
	json_decref(config);
	close(rootfd);
	close(datafd);
	close(diskfd);
	return r;
}

/* fork a sender writing into a pipe; returns the read end */
static int start_sender(unsigned flags, pid_t *pid)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		abort();
	*pid = fork();
	if (*pid == 0) {
		struct vm_error err;

		close(p[0]);
		if (send_vm(p[1], flags, &err) < 0) {
			fprintf(stderr, "sender: %s\n", err.msg);
			_exit(1);
		}
		_exit(0);
	}
	close(p[1]);
	return p[0];
}

static bool sender_ok(pid_t pid)
{
	int st;

	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void check_same_meta(const char *a, const char *b)
{
	struct stat x, y;

	CHECK(lstat(a, &x) == 0);
	if (lstat(b, &y) != 0) {
		CHECK_STR(b, "(exists)");
		return;
	}
	if (x.st_mode != y.st_mode || x.st_uid != y.st_uid || x.st_gid != y.st_gid)
		CHECK_STR(b, "(same mode and owner)");
	if (!S_ISLNK(x.st_mode) && x.st_mtime != y.st_mtime) {
		fprintf(stderr, "%s %ld %ld\n", b, (long)x.st_mtime, (long)y.st_mtime);
		CHECK_STR(b, "(same mtime)");
	}
	if (S_ISREG(x.st_mode)) {
		CHECK(x.st_size == y.st_size);
		if (!same_content(a, b))
			CHECK_STR(b, "(same content)");
	}
}

static void round_trip(unsigned flags)
{
	const char *dst = P("dst-%u", flags);
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	json_t *config = NULL;
	struct vm_error err = {0};
	struct stat st;
	char buf[64];
	pid_t pid;
	int fd = start_sender(flags, &pid), k;

	fs_mkdir_p(P("dst-%u/root", flags), 0755, &err);
	k = stream_reader_open(fd, &r, &err);
	CHECK_STR(err.msg, "");
	if (k < 0)
		goto out;
	k = stream_read_config(r, &config, &err);
	CHECK(k == 0);
	CHECK_STR(stream_reader_uuid(r), UUID);
	CHECK(json_integer_value(json_object_get(config, "ram")) == 256);

	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK_STR(ds->name, "");
	CHECK(ds->kind == STREAM_KIND_FILESYSTEM && ds->encoding == STREAM_ENC_TAR);
	CHECK_STR(ds->snapshot, "vmadm-send-1");
	CHECK(ds->from_snapshot == NULL);
	CHECK(ds->compressed == !!(flags & STREAM_WRITE_ZSTD));
	CHECK_STR(stream_reader_dataset_name(r), "zones/" UUID);
	k = stream_receive_tree(r, P("dst-%u/root", flags), &err);
	CHECK_STR(err.msg, "");

	/* the child dataset's mount point is not in its parent's archive */
	fs_mkdir_p(P("dst-%u/data", flags), 0755, &err);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK_STR(ds->name, "/data");
	k = stream_receive_tree(r, P("dst-%u/data", flags), &err);
	CHECK_STR(err.msg, "");

	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK_STR(ds->name, "-disk0");
	CHECK(ds->kind == STREAM_KIND_VOLUME && ds->encoding == STREAM_ENC_BLOCKS);
	CHECK(ds->size == 64 * MiB);
	k = stream_receive_volume(r, P("dst-%u/disk.raw", flags), &err);
	CHECK_STR(err.msg, "");

	CHECK(stream_next_dataset(r, &ds, &err) == 0);
	CHECK_STR(err.msg, "");
	CHECK(stream_reader_bytes(r) > 3 * MiB / 2);

	/* the tree */
	CHECK(!fs_exists(P("dst-%u/root/data", flags)));
	CHECK(!fs_exists(P("dst-%u/root/sock", flags)));
	check_same_meta(P("src/root"), P("dst-%u/root", flags));
	check_same_meta(P("src/root/etc"), P("dst-%u/root/etc", flags));
	check_same_meta(P("src/root/etc/sub"), P("dst-%u/root/etc/sub", flags));
	check_same_meta(P("src/root/etc/passwd"), P("dst-%u/root/etc/passwd", flags));
	check_same_meta(P("src/root/etc/passwd.hard"), P("dst-%u/root/etc/passwd.hard", flags));
	check_same_meta(P("src/root/etc/sub/link"), P("dst-%u/root/etc/sub/link", flags));
	check_same_meta(P("src/root/dangling"), P("dst-%u/root/dangling", flags));
	check_same_meta(P("src/root/fifo"), P("dst-%u/root/fifo", flags));
	check_same_meta(P("src/root/null"), P("dst-%u/root/null", flags));
	check_same_meta(P("src/root/empty"), P("dst-%u/root/empty", flags));
	check_same_meta(P("src/root/sparse"), P("dst-%u/root/sparse", flags));
	check_same_meta(P("src/root/data/db"), P("dst-%u/data/db", flags));
	check_same_meta(P("src/root/data"), P("dst-%u/data", flags));
	{
		struct stat a, b;

		CHECK(stat(P("dst-%u/root/etc/passwd", flags), &a) == 0);
		CHECK(stat(P("dst-%u/root/etc/passwd.hard", flags), &b) == 0);
		CHECK(a.st_ino == b.st_ino && a.st_nlink == 2);
		CHECK(lstat(P("dst-%u/root/fifo", flags), &a) == 0 && S_ISFIFO(a.st_mode));
		CHECK(lstat(P("dst-%u/root/null", flags), &a) == 0 && S_ISCHR(a.st_mode) &&
		      a.st_rdev == makedev(1, 3));
		CHECK(readlink(P("dst-%u/root/etc/sub/link", flags), buf, sizeof(buf)) == 13 &&
		      memcmp(buf, "../etc/passwd", 13) == 0);
		/* the sparse file stays sparse: 12 KiB of data in 16 MiB */
		CHECK(stat(P("dst-%u/root/sparse", flags), &a) == 0);
		CHECK(a.st_size == 16 * MiB);
		CHECK(a.st_blocks * 512 < 1 * MiB);
	}
	if (have_xattr) {
		ssize_t n = getxattr(P("dst-%u/root/etc/passwd", flags), "user.vmadm.test", buf,
				     sizeof(buf));

		CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
	}

	/* the volume: identical bytes, sparse */
	CHECK(same_content(P("src/disk.raw"), P("dst-%u/disk.raw", flags)));
	CHECK(stat(P("dst-%u/disk.raw", flags), &st) == 0);
	CHECK(st.st_size == 64 * MiB);
	/* 4 KiB + 100 KB + 1.5 MiB + 4 KiB of data, in 64 KiB grains */
	CHECK(st.st_blocks * 512 <= 2 * MiB);
out:
	CHECK(sender_ok(pid));
	json_decref(config);
	stream_reader_free(r);
	close(fd);
	(void)dst;
}

static void round_trip_plain(void)
{
	round_trip(0);
}

static void round_trip_zstd(void)
{
	round_trip(STREAM_WRITE_ZSTD);
}

static void xattr_kept(void)
{
	char buf[16];

	for (unsigned z = 0; z <= STREAM_WRITE_ZSTD; z++)
		CHECK(getxattr(P("dst-%u/root/etc/passwd", z), "user.vmadm.test", buf,
			       sizeof(buf)) == 5 &&
		      memcmp(buf, "hello", 5) == 0);
}

/* The zstd stream is much smaller than the plain one on compressible data. */
static void zstd_compresses(void)
{
	struct stream_writer *w = NULL;
	struct vm_error err;
	json_t *config = json_pack("{s:s}", "uuid", UUID);
	struct stream_dataset d = {.name = "-disk1",
				   .kind = STREAM_KIND_VOLUME,
				   .encoding = STREAM_ENC_BLOCKS,
				   .size = 8 * MiB,
				   .snapshot = "s"};
	uint64_t sizes[2];
	char *text = malloc(4 * MiB);

	for (size_t i = 0; i < 4 * MiB; i++)
		text[i] = "the quick brown fox "[i % 20];
	for (int z = 0; z < 2; z++) {
		int fd = memfd_create("s", MFD_CLOEXEC);

		CHECK(stream_writer_open(fd, z ? STREAM_WRITE_ZSTD : 0, &w, &err) == 0);
		CHECK(stream_write_config(w, config, &err) == 0);
		CHECK(stream_begin_dataset(w, &d, &err) == 0);
		CHECK(stream_write_data(w, text, 4 * MiB, &err) == 0);
		CHECK(stream_end_dataset(w, &err) == 0);
		CHECK(stream_finish(w, &err) == 0);
		sizes[z] = stream_writer_bytes(w);
		CHECK((off_t)sizes[z] == lseek(fd, 0, SEEK_END));
		stream_writer_free(w);
		close(fd);
	}
	CHECK(sizes[0] > 4 * MiB);
	CHECK(sizes[1] < sizes[0] / 20);
	json_decref(config);
	free(text);
}

static void pumps(void)
{
	struct stream_writer *w = NULL;
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	json_t *config = json_pack("{s:s}", "uuid", UUID), *c2 = NULL;
	struct vm_error err = {0};
	struct stream_dataset d = {.name = "",
				   .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_BTRFS,
				   .snapshot = "s2",
				   .from_snapshot = "s1"};
	size_t n = 3 * MiB + 17;
	uint8_t *data = malloc(n);
	int s = memfd_create("s", MFD_CLOEXEC), p[2], out;
	pid_t pid;

	fill_random(data, n, 99);
	/* a producer writing into a pipe in odd-sized pieces, like btrfs send */
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		for (size_t o = 0; o < n; o += 70001)
			fs_write_all(p[1], data + o, n - o < 70001 ? n - o : 70001);
		_exit(0);
	}
	close(p[1]);
	CHECK(stream_writer_open(s, 0, &w, &err) == 0);
	CHECK(stream_write_config(w, config, &err) == 0);
	CHECK(stream_begin_dataset(w, &d, &err) == 0);
	CHECK(stream_pump_fd_to_records(w, p[0], &err) == 0);
	CHECK(stream_end_dataset(w, &err) == 0);
	CHECK(stream_finish(w, &err) == 0);
	CHECK(sender_ok(pid));
	close(p[0]);
	stream_writer_free(w);

	lseek(s, 0, SEEK_SET);
	out = open(P("pumped"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(stream_reader_open(s, &r, &err) == 0);
	CHECK(stream_read_config(r, &c2, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK(ds->encoding == STREAM_ENC_BTRFS);
	CHECK_STR(ds->from_snapshot, "s1");
	CHECK(stream_pump_records_to_fd(r, out, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 0);
	CHECK_STR(err.msg, "");
	close(out);
	stream_reader_free(r);
	{
		char *back = NULL;
		size_t bl = 0;

		CHECK(fs_read_file(P("pumped"), 8 * MiB, &back, &bl, &err) == 0);
		CHECK(bl == n && back && memcmp(back, data, n) == 0);
		free(back);
	}

	/* a consumer that exits at once: EPIPE, named */
	lseek(s, 0, SEEK_SET);
	CHECK(stream_reader_open(s, &r, &err) == 0);
	json_decref(c2);
	CHECK(stream_read_config(r, &c2, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == 1);
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	close(p[0]);
	CHECK(stream_pump_records_to_fd(r, p[1], &err) == -EPIPE);
	CHECK_HAS(err.msg, "receive zones/" UUID ": the receiving program closed its input");
	close(p[1]);
	stream_reader_free(r);
	json_decref(c2);
	json_decref(config);
	close(s);
	free(data);
}

static void writer_reports_closed_pipe(void)
{
	struct stream_writer *w = NULL;
	struct vm_error err = {0};
	int p[2];

	CHECK(pipe2(p, O_CLOEXEC) == 0);
	close(p[0]);
	CHECK(stream_writer_open(p[1], 0, &w, &err) == -EPIPE);
	CHECK_HAS(err.msg, "write stream at byte 0: the reader closed the pipe");
	close(p[1]);
	stream_writer_free(w);
	w = NULL;

	/* a full disk */
	p[0] = open("/dev/full", O_WRONLY | O_CLOEXEC);
	CHECK(p[0] >= 0);
	CHECK(stream_writer_open(p[0], 0, &w, &err) == -ENOSPC);
	CHECK_HAS(err.msg, "write stream at byte 0: No space left on device");
	close(p[0]);
	stream_writer_free(w);
}

static void writer_refuses_bad_names(void)
{
	struct stream_writer *w = NULL;
	struct vm_error err = {0};
	json_t *config = json_pack("{s:s}", "uuid", UUID);
	struct stream_dataset d = {.name = "/../x",
				   .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_TAR,
				   .snapshot = "s"};
	int fd = memfd_create("s", MFD_CLOEXEC);

	CHECK(stream_writer_open(fd, 0, &w, &err) == 0);
	CHECK(stream_write_config(w, config, &err) == 0);
	CHECK(stream_begin_dataset(w, &d, &err) == -EINVAL);
	CHECK_HAS(err.msg, "dataset name \"/../x\" leaves zones/" UUID);
	strcpy(d.name, "/data");
	CHECK(stream_begin_dataset(w, &d, &err) == 0);
	CHECK(stream_end_dataset(w, &err) == 0);
	CHECK(stream_begin_dataset(w, &d, &err) == -EEXIST);
	stream_writer_free(w);
	json_decref(config);
	close(fd);
}

/* A valid stream whose DS_BEGIN name is rewritten (CRCs fixed up, as an
 * attacker would) to leave the VM: refused on read, before any data. */
static void name_outside_vm_refused(void)
{
	struct stream_writer *w = NULL;
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	struct vm_error err = {0};
	json_t *config = json_pack("{s:s}", "uuid", UUID), *c2 = NULL;
	struct stream_dataset d = {.name = "/data",
				   .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_TAR,
				   .snapshot = "s"};
	int fd = memfd_create("s", MFD_CLOEXEC);
	uint8_t buf[4096];
	ssize_t len;
	size_t off = 0;

	CHECK(stream_writer_open(fd, 0, &w, &err) == 0);
	CHECK(stream_write_config(w, config, &err) == 0);
	CHECK(stream_begin_dataset(w, &d, &err) == 0);
	CHECK(stream_write_data(w, "x", 1, &err) == 0);
	CHECK(stream_end_dataset(w, &err) == 0);
	CHECK(stream_finish(w, &err) == 0);
	stream_writer_free(w);
	len = pread(fd, buf, sizeof(buf), 0);
	CHECK(len > 0);
	for (int i = 0; i < 2; i++) { /* skip BEGIN and CONFIG */
		struct stream_header h;

		stream_header_decode(buf + off, &h);
		off += STREAM_HEADER_SIZE + h.length;
	}
	{
		struct stream_header h;
		char *name;

		stream_header_decode(buf + off, &h);
		CHECK(h.type == STREAM_REC_DS_BEGIN);
		name = memmem(buf + off + 32, h.length, "\"/data\"", 7);
		CHECK(name != NULL);
		if (!name)
			goto out;
		memcpy(name, "\"/../x\"", 7);
		h.payload_crc = stream_crc32c(0, buf + off + 32, h.length);
		stream_header_encode(&h, buf + off);
	}
	CHECK(pwrite(fd, buf, len, 0) == len);
	lseek(fd, 0, SEEK_SET);
	CHECK(stream_reader_open(fd, &r, &err) == 0);
	CHECK(stream_read_config(r, &c2, &err) == 0);
	CHECK(stream_next_dataset(r, &ds, &err) == -EINVAL);
	CHECK_HAS(err.msg, "DS_BEGIN record 2 at byte");
	CHECK_HAS(err.msg, "dataset name \"/../x\" leaves zones/" UUID);
out:
	stream_reader_free(r);
	json_decref(config);
	json_decref(c2);
	close(fd);
}

/* ---- hostile archives and blocks, from a well-framed stream ---- */

struct mem {
	uint8_t *buf;
	size_t len;
};

static la_ssize_t mem_write(struct archive *a, void *ctx, const void *buf, size_t n)
{
	struct mem *m = ctx;

	m->buf = realloc(m->buf, m->len + n);
	memcpy(m->buf + m->len, buf, n);
	m->len += n;
	return n;
}

/* A pax archive: each entry "NAME" (file with "evil"), "NAME->TARGET"
 * (symlink), "NAME=>TARGET" (hard link) or "NAME/" (directory). */
static struct mem hostile_tar(const char *const *entries)
{
	struct archive *a = archive_write_new();
	struct mem m = {0};

	archive_write_set_format_pax_restricted(a);
	archive_write_open(a, &m, NULL, mem_write, NULL);
	for (; *entries; entries++) {
		struct archive_entry *e = archive_entry_new();
		char name[256];
		char *arrow;

		snprintf(name, sizeof(name), "%s", *entries);
		arrow = strstr(name, "->");
		if (strstr(name, "=>")) {
			arrow = strstr(name, "=>");
			*arrow = '\0';
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_hardlink(e, arrow + 2);
			archive_entry_set_perm(e, 0644);
		} else if (arrow) {
			*arrow = '\0';
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, arrow + 2);
			archive_entry_set_perm(e, 0777);
		} else {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, 4);
		}
		archive_entry_set_pathname(e, name);
		archive_write_header(a, e);
		if (!arrow)
			archive_write_data(a, "evil", 4);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	return m;
}

/* Frame data as the only dataset of a stream and try to receive it. */
static int receive_hostile(const struct stream_dataset *d, const void *data, size_t len,
			   const char *target, struct vm_error *err)
{
	struct stream_writer *w = NULL;
	struct stream_reader *r = NULL;
	const struct stream_dataset *ds;
	json_t *config = json_pack("{s:s}", "uuid", UUID), *c2 = NULL;
	int fd = memfd_create("s", MFD_CLOEXEC), k;

	if (stream_writer_open(fd, 0, &w, err) < 0 || stream_write_config(w, config, err) < 0 ||
	    stream_begin_dataset(w, d, err) < 0 || stream_write_data(w, data, len, err) < 0 ||
	    stream_end_dataset(w, err) < 0 || stream_finish(w, err) < 0)
		abort();
	stream_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	k = stream_reader_open(fd, &r, err);
	if (k >= 0)
		k = stream_read_config(r, &c2, err);
	if (k >= 0)
		k = stream_next_dataset(r, &ds, err);
	if (k >= 0)
		k = d->kind == STREAM_KIND_VOLUME ? stream_receive_volume(r, target, err)
						  : stream_receive_tree(r, target, err);
	stream_reader_free(r);
	json_decref(config);
	json_decref(c2);
	close(fd);
	return k;
}

static void tar_escapes_refused(void)
{
	struct stream_dataset d = {.name = "",
				   .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_TAR,
				   .snapshot = "s"};
	struct vm_error err = {0};
	static const char *const dotdot[] = {"ok", "../evil", NULL};
	static const char *const absolute[] = {"/tmp/evil-abs", NULL};
	const char *via_link[] = {"link->", "link/evil", NULL};
	char linkspec[4200];
	struct mem m;

	fs_mkdir_p(P("hostile/root"), 0755, &err);
	fs_mkdir_p(P("hostile/outside"), 0755, &err);

	m = hostile_tar(dotdot);
	CHECK(receive_hostile(&d, m.buf, m.len, P("hostile/root"), &err) == -EPROTO);
	CHECK_HAS(err.msg, "receive zones/" UUID ": archive entry \"../evil\" has a \"..\" "
			   "component");
	CHECK(!fs_exists(P("hostile/evil")));
	free(m.buf);

	m = hostile_tar(absolute);
	CHECK(receive_hostile(&d, m.buf, m.len, P("hostile/root"), &err) == -EPROTO);
	CHECK_HAS(err.msg, "archive entry \"/tmp/evil-abs\" is absolute");
	free(m.buf);

	/* a symlink pointing outside, then a file through it */
	snprintf(linkspec, sizeof(linkspec), "link->%s", P("hostile/outside"));
	via_link[0] = linkspec;
	m = hostile_tar(via_link);
	CHECK(receive_hostile(&d, m.buf, m.len, P("hostile/root"), &err) < 0);
	CHECK_HAS(err.msg, "receive zones/" UUID ": link/evil");
	CHECK(!fs_exists(P("hostile/outside/evil")));
	free(m.buf);

	/* a hard link, through that symlink, to a file outside */
	write_at(P("hostile/outside/secret"), 0, 10, 5);
	snprintf(linkspec, sizeof(linkspec), "link2->%s", P("hostile/outside"));
	via_link[0] = linkspec;
	via_link[1] = "grab=>link2/secret";
	m = hostile_tar(via_link);
	CHECK(receive_hostile(&d, m.buf, m.len, P("hostile/root"), &err) < 0);
	CHECK_HAS(err.msg, "receive zones/" UUID ": grab");
	CHECK(!fs_exists(P("hostile/root/grab")));
	free(m.buf);

	/* the root replaced by a symlink */
	via_link[0] = "./->/";
	via_link[1] = NULL;
	m = hostile_tar(via_link);
	CHECK(receive_hostile(&d, m.buf, m.len, P("hostile/root"), &err) == -EPROTO);
	CHECK_HAS(err.msg, "(the root) is not a directory");
	CHECK(fs_is_dir(P("hostile/root")));
	free(m.buf);
}

/* The names the pool reserves (issue 11, finding 6), as entry names and as
 * hard-link targets; and file flags: only nodump and noatime are applied. */
static void tar_reserved_names_and_flags(void)
{
	struct stream_dataset d = {.name = "",
				   .kind = STREAM_KIND_FILESYSTEM,
				   .encoding = STREAM_ENC_TAR,
				   .snapshot = "s"};
	static const struct {
		const char *entries[3], *want;
	} refused[] = {
	    {{".vmadm-dataset", NULL}, "archive entry \".vmadm-dataset\": the name .vmadm-dataset"},
	    {{"ok", "a//./.vmadm-dataset", NULL},
	     "archive entry \"a//./.vmadm-dataset\": the name"},
	    {{"ok", "grab=>.vmadm-dataset", NULL}, "hard link target \".vmadm-dataset\": the name"},
	    {{"./disk.raw", NULL}, "\"./disk.raw\": the name disk.raw at the root of a filesystem"},
	};
	static const char *const below[] = {"a/disk.raw", NULL};
	struct vm_error err = {0};
	struct archive *a;
	struct mem m = {0};
	int fd, flags = -1;

	fs_mkdir_p(P("reserved/root"), 0755, &err);
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		m = hostile_tar(refused[i].entries);
		CHECK(receive_hostile(&d, m.buf, m.len, P("reserved/root"), &err) == -EPROTO);
		CHECK_HAS(err.msg, refused[i].want);
		free(m.buf);
	}
	CHECK(!fs_exists(P("reserved/root/.vmadm-dataset")));
	CHECK(!fs_exists(P("reserved/root/disk.raw")));
	m = hostile_tar(below);
	CHECK(receive_hostile(&d, m.buf, m.len, P("reserved/root"), &err) == 0);
	CHECK(fs_exists(P("reserved/root/a/disk.raw")));
	free(m.buf);

	/* schg (immutable), sappnd (append-only) and nodump on one file */
	m = (struct mem){0};
	a = archive_write_new();
	archive_write_set_format_pax(a);
	archive_write_open(a, &m, NULL, mem_write, NULL);
	{
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, "flagged");
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_copy_fflags_text(e, "schg,sappnd,nodump");
		archive_write_header(a, e);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
	CHECK(receive_hostile(&d, m.buf, m.len, P("reserved/root"), &err) == 0);
	free(m.buf);
	fd = open(P("reserved/root/flagged"), O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0);
	if (fd >= 0)
		close(fd);
	if (flags == -1 || !(flags & FS_NODUMP_FL))
		printf("skip - the filesystem of %s keeps no file flags\n", tmp);
	else
		CHECK(!(flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)));
	CHECK(fs_rm_rf(P("reserved"), &err) == 0);
}

static void blocks_outside_volume_refused(void)
{
	struct stream_dataset d = {.name = "-disk0",
				   .kind = STREAM_KIND_VOLUME,
				   .encoding = STREAM_ENC_BLOCKS,
				   .size = 1 * MiB,
				   .snapshot = "s"};
	struct vm_error err = {0};
	uint8_t rec[16 + 4096] = {0};
	const char *target = P("hostile/vol.raw");

	/* offset + length beyond the declared size */
	rec[0] = 0x00, rec[1] = 0xf8, rec[2] = 0x0f; /* 0x0ff800 */
	rec[9] = 0x10;				     /* length 4096 */
	memset(rec + 16, 0xee, 4096);
	CHECK(receive_hostile(&d, rec, sizeof(rec), target, &err) == -EPROTO);
	CHECK_HAS(err.msg, "receive zones/" UUID "-disk0: block at offset 1046528 length 4096 "
			   "lies beyond the volume's size 1048576");
	CHECK(!fs_exists(target)); /* the file it created is gone */

	/* a length of 2^62 */
	memset(rec, 0, 16);
	rec[15] = 0x40;
	CHECK(receive_hostile(&d, rec, sizeof(rec), target, &err) == -EPROTO);
	CHECK_HAS(err.msg, "has length 4611686018427387904, not 1..1048576");

	/* a block header cut short by the dataset's end */
	CHECK(receive_hostile(&d, rec, 10, target, &err) == -EPROTO);
	CHECK_HAS(err.msg, "its data ends inside a block header");
	CHECK(!fs_exists(target));
}

/* A dataset's data may not pass what its DS_BEGIN declares plus 1/8 and
 * 16 MiB: the reader refuses the record that would, before the receiver
 * writes it. */
static void data_past_declaration_refused(void)
{
	struct stream_dataset d = {.name = "-disk0",
				   .kind = STREAM_KIND_VOLUME,
				   .encoding = STREAM_ENC_BLOCKS,
				   .size = 64 * MiB,
				   .used = 4096,
				   .has_used = true,
				   .snapshot = "s"};
	size_t blk = 16 + MiB, n = 24, len = n * blk;
	uint8_t *data = malloc(len);
	struct vm_error err = {0};
	const char *target = P("hostile/declared.raw");
	int k;

	CHECK(data != NULL);
	if (!data)
		return;
	for (size_t i = 0; i < n; i++) {
		uint8_t *h = data + i * blk;
		uint64_t off = (uint64_t)i * MiB, l = MiB;

		for (int b = 0; b < 8; b++)
			h[b] = (uint8_t)(off >> (8 * b)), h[8 + b] = (uint8_t)(l >> (8 * b));
		memset(h + 16, 0x5a, MiB);
	}
	CHECK(stream_dataset_data_limit(&d) == 4096 + 512 + STREAM_DATA_SLACK);
	k = receive_hostile(&d, data, len, target, &err);
	CHECK(k == -EFBIG);
	CHECK_HAS(err.msg, "dataset zones/" UUID "-disk0: record ");
	CHECK_HAS(err.msg, "more than its DS_BEGIN declares (used 4096, plus 1/8 and 16 MiB");
	CHECK(!fs_exists(target));
	/* within the allowance: 8 MiB of blocks where 4 KiB were declared */
	vm_error_clear(&err);
	k = receive_hostile(&d, data, 8 * blk, target, &err);
	CHECK_STR(err.msg, "");
	CHECK(k == 0);
	unlink(target);
	/* a stream without "used": its size is the declaration */
	d.has_used = false;
	CHECK(stream_dataset_data_limit(&d) == 72 * MiB + STREAM_DATA_SLACK);
	/* no wrap-around near 2^64 */
	d.has_used = true;
	d.used = UINT64_MAX - 1;
	CHECK(stream_dataset_data_limit(&d) == UINT64_MAX);
	free(data);
}

/* ---- reading a tree by fd (stream_walk) ---- */

struct walk_log {
	char buf[512];
	size_t len;
};

static int log_cb(const struct stream_walk_entry *e, void *ud)
{
	struct walk_log *l = ud;

	l->len += snprintf(l->buf + l->len, sizeof(l->buf) - l->len, "%s%s", l->len ? " " : "",
			   *e->rel ? e->rel : ".");
	return streq(e->rel, "skip") ? STREAM_WALK_SKIP : 0;
}

static void walk_orders(void)
{
	struct walk_log pre = {0}, list = {0};
	struct vm_error err = {0};
	int fd;

	/* a/ (x, b/ (y)), c, skip/ (z), made in that order: readdir order
	 * on tmpfs and ext4 is not creation order, so only what each order
	 * guarantees is checked */
	CHECK(mkdir(P("walk"), 0755) == 0);
	CHECK(mkdir(P("walk/a"), 0755) == 0 && mkdir(P("walk/a/b"), 0755) == 0);
	CHECK(mkdir(P("walk/skip"), 0755) == 0);
	write_at(P("walk/a/x"), 0, 1, 1);
	write_at(P("walk/a/b/y"), 0, 1, 1);
	write_at(P("walk/c"), 0, 1, 1);
	write_at(P("walk/skip/z"), 0, 1, 1);
	fd = open(P("walk"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(stream_walk(fd, STREAM_WALK_PREORDER, 0, log_cb, &pre, &err) == 0);
	CHECK(stream_walk(fd, STREAM_WALK_LISTING, 0, log_cb, &list, &err) == 0);
	close(fd);
	/* both: the root first, every entry once, nothing below "skip" */
	CHECK(strncmp(pre.buf, ". ", 2) == 0 && strncmp(list.buf, ". ", 2) == 0);
	CHECK(strlen(pre.buf) == strlen(list.buf));
	CHECK(!strstr(pre.buf, "skip/z") && !strstr(list.buf, "skip/z"));
	CHECK(strstr(pre.buf, "a/b/y") && strstr(list.buf, "a/b/y"));
	/* preorder: a directory's entries right after it; listing: the
	 * root's entries before anything below them */
	CHECK(strstr(pre.buf, "a/b a/b/y") != NULL);
	CHECK(strstr(list.buf, "a/x") > strstr(list.buf, " c"));
	CHECK(strstr(list.buf, "a/b/y") > strstr(list.buf, "a/x"));
}

/* Deeper than PATH_MAX would let a walk by path go. */
static void walk_deep(void)
{
	enum { DEPTH = 200 };
	static const char name[] = "a-rather-long-directory-name-to-pass-path-max";
	struct vm_error err = {0};
	uint64_t used = 0;
	int fd, d;

	CHECK(mkdir(P("deep"), 0755) == 0);
	d = open(P("deep"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; i < DEPTH && d >= 0; i++) {
		int n;
		CHECK(mkdirat(d, name, 0755) == 0);
		n = openat(d, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		close(d);
		d = n;
	}
	CHECK(d >= 0);
	close(d);
	fd = open(P("deep"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(stream_declare_tree(fd, -1, &used, &err) == 0);
	/* the root and DEPTH directories, each declared with its headers */
	CHECK(used >= (DEPTH + 1) * 2048ull);
	close(fd);
	CHECK(fs_rm_rf(P("deep"), &err) == 0);
}

static void encoding_names(void)
{
	for (enum stream_encoding e = STREAM_ENC_BTRFS; e <= STREAM_ENC_TAR_DELTA; e++)
		CHECK(stream_encoding_by_name(stream_encoding_name(e)) == e);
	CHECK(stream_encoding_by_name("unknown") == 0);
	CHECK(stream_encoding_by_name(NULL) == 0);
}

/* DS_BEGIN's resume_token: carried for a zfs dataset, absent otherwise,
 * and refused on any other encoding (a receiver could take it for the rest
 * of a cut stream). */
static const struct stream_dataset *one_dataset(struct stream_dataset *d, struct stream_reader **r,
						int fd, struct vm_error *err)
{
	struct stream_writer *w = NULL;
	json_t *config = json_pack("{s:s}", "uuid", UUID), *c2 = NULL;
	const struct stream_dataset *ds = NULL;

	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
	    stream_writer_open(fd, 0, &w, err) < 0 || stream_write_config(w, config, err) < 0 ||
	    stream_begin_dataset(w, d, err) < 0 || stream_write_data(w, "x", 1, err) < 0 ||
	    stream_end_dataset(w, err) < 0 || stream_finish(w, err) < 0)
		abort();
	stream_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	if (stream_reader_open(fd, r, err) < 0 || stream_read_config(*r, &c2, err) < 0 ||
	    stream_next_dataset(*r, &ds, err) != 1)
		ds = NULL;
	json_decref(config);
	json_decref(c2);
	return ds;
}

static void resume_token_field(void)
{
	struct stream_dataset d = {.name = "-disk0",
				   .kind = STREAM_KIND_VOLUME,
				   .size = 1,
				   .encoding = STREAM_ENC_ZFS,
				   .snapshot = "s1",
				   .resume_token = "1-e604ea4bf-e0-789c63a2"};
	struct stream_reader *r = NULL;
	struct vm_error err = {0};
	const struct stream_dataset *ds;
	int fd = memfd_create("s", MFD_CLOEXEC);

	ds = one_dataset(&d, &r, fd, &err);
	CHECK(ds && ds->resume_token);
	if (ds)
		CHECK_STR(ds->resume_token, "1-e604ea4bf-e0-789c63a2");
	stream_reader_free(r);

	d.resume_token = NULL;
	ds = one_dataset(&d, &r, fd, &err);
	CHECK(ds && !ds->resume_token);
	stream_reader_free(r);

	/* on a dataset of another encoding: refused */
	d.encoding = STREAM_ENC_BLOCKS;
	d.resume_token = "1-e604ea4bf-e0-789c63a2";
	ds = one_dataset(&d, &r, fd, &err);
	CHECK(ds == NULL);
	CHECK_HAS(err.msg, "resume_token");
	stream_reader_free(r);
	close(fd);
}

int main(void)
{
	struct vm_error err;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmp)) {
		printf("not ok - setup: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	make_source();
	RUN(round_trip_plain);
	RUN(round_trip_zstd);
	if (have_xattr)
		RUN(xattr_kept);
	else
		printf("skip - xattr_kept: %s\n", xattr_why);
	RUN(zstd_compresses);
	RUN(pumps);
	RUN(writer_reports_closed_pipe);
	RUN(resume_token_field);
	RUN(writer_refuses_bad_names);
	RUN(name_outside_vm_refused);
	RUN(tar_escapes_refused);
	RUN(tar_reserved_names_and_flags);
	RUN(blocks_outside_volume_refused);
	RUN(data_past_declaration_refused);
	RUN(walk_orders);
	RUN(walk_deep);
	RUN(encoding_names);
	fs_rm_rf(tmp, &err);
	CHECK_EXIT();
}

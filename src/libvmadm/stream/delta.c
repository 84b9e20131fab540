/* SPDX-License-Identifier: MIT */
/*
 * The incremental encodings (docs/stream-format.md, section 3):
 *
 * "blocks-delta" (volumes): block records as in "blocks", whose length word
 * may carry bit 63, STREAM_DELTA_ZERO: then the record has no data and the
 * range [offset, offset + length) becomes zeros (a hole where the receiver
 * can punch one). Bytes not covered keep what the receiver's copy of
 * from_snapshot holds.
 *
 * "tar-delta" (filesystems): a deletion list, each entry a u32 length and
 * that many bytes of a relative path, ended by a zero length, then a pax
 * archive as in "tar" of what changed.
 */
#include "stream/stream.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/sparse.h"
#include "stream/stream-private.h"
#include "util/archive.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/xattr.h"

#define STREAM_DELTA_ZERO     (1ull << 63)
#define STREAM_DELTA_NAME_MAX 4096u

static bool all_zero(const uint8_t *p, size_t len)
{
	static const uint8_t zeros[256];

	while (len >= sizeof(zeros)) {
		if (memcmp(p, zeros, sizeof(zeros)) != 0)
			return false;
		p += sizeof(zeros);
		len -= sizeof(zeros);
	}
	return memcmp(p, zeros, len) == 0;
}

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off, uint64_t fsize)
{
	size_t done = 0;

	/* past the end of an older, smaller image: zeros */
	while (done < len) {
		ssize_t n;

		if (off + done >= fsize) {
			memset(buf + done, 0, len - done);
			return 0;
		}
		n = pread(fd, buf + done, MIN(len - done, fsize - (off + done)), off + done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += n;
	}
	return 0;
}

/* ---- blocks-delta: send ---- */

struct vol_delta {
	struct stream_writer *w;
	struct vm_error *err;
	int old_fd, new_fd;
	uint64_t old_size;
	const char *new_path;
	uint8_t *run, *oldbuf; /* run: pending data, up to STREAM_BLOCK_MAX */
	uint64_t run_off, run_len;
	uint64_t zero_off, zero_len;
};

static int put_header(struct vol_delta *d, uint64_t off, uint64_t word)
{
	uint8_t hdr[STREAM_BLOCK_HEADER_SIZE];

	put_le64(hdr, off);
	put_le64(hdr + 8, word);
	return stream_write_data(d->w, hdr, sizeof(hdr), d->err);
}

static int flush_data(struct vol_delta *d)
{
	int r;

	if (!d->run_len)
		return 0;
	r = put_header(d, d->run_off, d->run_len);
	if (r >= 0)
		r = stream_write_data(d->w, d->run, d->run_len, d->err);
	d->run_len = 0;
	return r;
}

static int flush_zero(struct vol_delta *d)
{
	int r;

	if (!d->zero_len)
		return 0;
	r = put_header(d, d->zero_off, d->zero_len | STREAM_DELTA_ZERO);
	d->zero_len = 0;
	return r;
}

/* Compare [start, end) grain by grain; emit what differs. Records stay in
 * ascending order: a run is flushed before one of the other kind starts. */
static int vol_delta_range(uint64_t start, uint64_t end, void *ud)
{
	struct vol_delta *d = ud;
	int r;

	for (uint64_t off = start; off < end;) {
		size_t len = MIN((uint64_t)SPARSE_DIFF_GRAIN, end - off);
		uint8_t *nb;

		/* read the new grain straight into the data run */
		if (d->run_len + len > STREAM_BLOCK_MAX ||
		    (d->run_len && d->run_off + d->run_len != off)) {
			r = flush_data(d);
			if (r < 0)
				return r;
		}
		nb = d->run + d->run_len;
		r = pread_full(d->new_fd, nb, len, off, UINT64_MAX);
		if (r < 0)
			return vm_error_set(d->err, r, "send %s: read at offset %llu", d->new_path,
					    (unsigned long long)off);
		r = pread_full(d->old_fd, d->oldbuf, len, off, d->old_size);
		if (r < 0)
			return vm_error_set(d->err, r, "send %s: read the base snapshot at %llu",
					    d->new_path, (unsigned long long)off);
		if (memcmp(nb, d->oldbuf, len) == 0) {
			r = flush_data(d);
			if (r >= 0)
				r = flush_zero(d);
		} else if (all_zero(nb, len)) {
			r = flush_data(d);
			if (r >= 0 && d->zero_len && d->zero_off + d->zero_len != off)
				r = flush_zero(d);
			if (r >= 0) {
				if (!d->zero_len)
					d->zero_off = off;
				d->zero_len += len;
			}
		} else {
			r = flush_zero(d);
			if (!d->run_len)
				d->run_off = off;
			d->run_len += len;
		}
		if (r < 0)
			return r;
		off += len;
	}
	return 0;
}

int stream_send_volume_delta(struct stream_writer *w, const struct stream_dataset *ds,
			     const char *old_path, const char *new_path, uint64_t *ret_shared,
			     struct vm_error *err)
{
	_cleanup_close_ int ofd = open(old_path, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int nfd = open(new_path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *run = malloc(STREAM_BLOCK_MAX);
	_cleanup_free_ uint8_t *oldbuf = malloc(SPARSE_DIFF_GRAIN);
	struct stream_dataset d = *ds;
	struct stat ost, nst;
	struct vol_delta vd;
	uint64_t shared = 0;
	int r;

	if (!ds->from_snapshot)
		return vm_error_setx(err, EINVAL, "send %s: a delta needs a base snapshot",
				     new_path);
	if (ofd < 0)
		return vm_error_set(err, errno, "send volume delta: open %s", old_path);
	if (nfd < 0)
		return vm_error_set(err, errno, "send volume delta: open %s", new_path);
	if (!run || !oldbuf)
		return vm_error_set(err, ENOMEM, "send volume delta %s", new_path);
	if (fstat(ofd, &ost) < 0 || fstat(nfd, &nst) < 0)
		return vm_error_set(err, errno, "send volume delta: stat %s", new_path);
	if (!S_ISREG(ost.st_mode) || !S_ISREG(nst.st_mode))
		return vm_error_setx(err, EINVAL, "send volume delta: %s or %s is not a file",
				     old_path, new_path);
	d.kind = STREAM_KIND_VOLUME;
	d.encoding = STREAM_ENC_BLOCKS_DELTA;
	d.size = nst.st_size;
	r = stream_begin_dataset(w, &d, err);
	if (r < 0)
		return r;
	vd = (struct vol_delta){.w = w,
				.err = err,
				.old_fd = ofd,
				.new_fd = nfd,
				.old_size = ost.st_size,
				.new_path = new_path,
				.run = run,
				.oldbuf = oldbuf};
	r = sparse_changed_ranges(ofd, nfd, nst.st_size, vol_delta_range, &vd, &shared, err);
	if (r >= 0)
		r = flush_data(&vd);
	if (r >= 0)
		r = flush_zero(&vd);
	if (r < 0)
		return r;
	vm_debug("send %s@%s from %s: %llu bytes left unread (extents shared with the base)",
		 stream_writer_dataset_name(w), ds->snapshot, ds->from_snapshot,
		 (unsigned long long)shared);
	if (ret_shared)
		*ret_shared = shared;
	return stream_end_dataset(w, err);
}

/* ---- blocks-delta: receive ---- */

static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 << 10];

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	while (len > 0) {
		ssize_t n = pwrite(fd, zeros, MIN(len, sizeof(zeros)), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		off += n;
		len -= n;
	}
	return 0;
}

int stream_receive_volume_delta(struct stream_reader *r, const char *path, struct vm_error *err)
{
	const struct stream_dataset *ds = stream_reader_current(r);
	const char *name = stream_reader_dataset_name(r);
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = -1;
	uint64_t next = 0;
	int k;

	if (!ds || ds->kind != STREAM_KIND_VOLUME || ds->encoding != STREAM_ENC_BLOCKS_DELTA)
		return vm_error_setx(err, EINVAL,
				     "receive %s: not a volume in the blocks-delta encoding",
				     ds ? name : "(no dataset)");
	buf = malloc(STREAM_BLOCK_MAX);
	if (!buf)
		return vm_error_set(err, ENOMEM, "receive %s", name);
	fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return vm_error_set(err, errno, "receive %s: open %s (the base of the delta)", name,
				    path);
	if (ftruncate(fd, (off_t)ds->size) < 0)
		return vm_error_set(err, errno, "receive %s: make %s %llu bytes", name, path,
				    (unsigned long long)ds->size);
	for (;;) {
		uint8_t hdr[STREAM_BLOCK_HEADER_SIZE];
		uint64_t off, len;
		bool zero;
		ssize_t n = stream_read_exact(r, hdr, sizeof(hdr), "a block header", err);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		off = get_le64(hdr);
		len = get_le64(hdr + 8);
		zero = len & STREAM_DELTA_ZERO;
		len &= ~STREAM_DELTA_ZERO;
		if (len == 0 || (!zero && len > STREAM_BLOCK_MAX))
			return vm_error_setx(err, EPROTO,
					     "receive %s: %s at offset %llu has length %llu, not "
					     "1..%u",
					     name, zero ? "zero range" : "block",
					     (unsigned long long)off, (unsigned long long)len,
					     zero ? 0 : STREAM_BLOCK_MAX);
		if (off > ds->size || len > ds->size - off)
			return vm_error_setx(
			    err, EPROTO,
			    "receive %s: %s at offset %llu length %llu lies beyond "
			    "the volume's size %llu",
			    name, zero ? "zero range" : "block", (unsigned long long)off,
			    (unsigned long long)len, (unsigned long long)ds->size);
		if (off < next)
			return vm_error_setx(
			    err, EPROTO,
			    "receive %s: record at offset %llu overlaps or precedes "
			    "the previous one (ending at %llu)",
			    name, (unsigned long long)off, (unsigned long long)next);
		if (zero) {
			k = write_zeros(fd, off, len);
			if (k < 0)
				return vm_error_set(err, k, "receive %s: zero %s at offset %llu",
						    name, path, (unsigned long long)off);
		} else {
			n = stream_read_exact(r, buf, len, "a block", err);
			if (n <= 0)
				return n < 0
					   ? n
					   : vm_error_setx(err, EPROTO,
							   "receive %s: block data missing", name);
			for (uint64_t done = 0; done < len;) {
				ssize_t wn = pwrite(fd, buf + done, len - done, off + done);
				if (wn < 0 && errno == EINTR)
					continue;
				if (wn <= 0)
					return vm_error_set(err, wn < 0 ? errno : EIO,
							    "receive %s: write %s at offset %llu",
							    name, path,
							    (unsigned long long)(off + done));
				done += wn;
			}
		}
		next = off + len;
	}
	if (fsync(fd) < 0)
		return vm_error_set(err, errno, "receive %s: fsync %s", name, path);
	return 0;
}

/* ---- tar-delta: send ---- */

struct walk_entry {
	char *rel; /* "" for the root */
	bool send;
};

/* nftw has no user pointer: the walk's state, one walk per thread. */
static __thread struct {
	const char *const *skip;
	const char *other; /* the other tree's root */
	size_t rootlen;
	struct walk_entry *v;
	size_t n, cap;
	size_t stack[256]; /* index of the directory at each level */
	char *forced;	   /* a new/retyped dir: everything below is sent */
	size_t forced_len;
	int error;
} walk;

static bool top_skipped(const char *rel, const char *const *skip)
{
	if (!skip || strchr(rel, '/'))
		return false;
	for (; *skip; skip++)
		if (streq(rel, *skip))
			return true;
	return false;
}

static bool same_entry(const char *opath, const char *npath, const struct stat *o,
		       const struct stat *n)
{
	if ((o->st_mode & S_IFMT) != (n->st_mode & S_IFMT) || o->st_mode != n->st_mode ||
	    o->st_uid != n->st_uid || o->st_gid != n->st_gid ||
	    o->st_mtim.tv_sec != n->st_mtim.tv_sec || o->st_mtim.tv_nsec != n->st_mtim.tv_nsec)
		return false;
	/* the same inode in two snapshots of one filesystem (btrfs) keeps its
	 * ctime unless it changed, xattrs included; copies (dir pool) don't */
	if (o->st_ino == n->st_ino &&
	    (o->st_ctim.tv_sec != n->st_ctim.tv_sec || o->st_ctim.tv_nsec != n->st_ctim.tv_nsec))
		return false;
	if (!S_ISDIR(n->st_mode)) {
		if (o->st_size != n->st_size || o->st_nlink != n->st_nlink ||
		    o->st_rdev != n->st_rdev)
			return false;
		if (S_ISLNK(n->st_mode)) {
			char a[PATH_MAX], b[PATH_MAX];
			ssize_t la = readlink(opath, a, sizeof(a));
			ssize_t lb = readlink(npath, b, sizeof(b));
			if (la < 0 || la != lb || memcmp(a, b, la) != 0)
				return false;
		}
	}
	/* copies: an attribute change moves only the ctime, which a copy
	 * does not share, so compare the attributes themselves (last: it
	 * costs system calls the tests above may spare) */
	return o->st_ino == n->st_ino || xattr_equal(opath, npath);
}

static int walk_new_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *rel = path + walk.rootlen;
	_cleanup_free_ char *opath = NULL;
	struct stat ost;
	bool send;

	(void)flag;
	while (*rel == '/')
		rel++;
	if (ftw->level == 1 && top_skipped(rel, walk.skip))
		return FTW_SKIP_SUBTREE;
	if (ftw->level >= (int)ARRAY_SIZE(walk.stack)) {
		walk.error = -ENAMETOOLONG;
		return FTW_STOP;
	}
	if (S_ISSOCK(st->st_mode))
		return FTW_CONTINUE;
	if (walk.forced && strncmp(rel, walk.forced, walk.forced_len) == 0 &&
	    rel[walk.forced_len] == '/') {
		send = true;
	} else {
		free(walk.forced);
		walk.forced = NULL;
		opath = strdup_printf("%s/%s", walk.other, rel);
		if (!opath) {
			walk.error = -ENOMEM;
			return FTW_STOP;
		}
		if (ftw->level == 0)
			send = true; /* the root: always, for its times */
		else if (lstat(opath, &ost) < 0 ||
			 (ost.st_mode & S_IFMT) != (st->st_mode & S_IFMT)) {
			send = true;
			if (S_ISDIR(st->st_mode)) {
				walk.forced = strdup(rel);
				walk.forced_len = strlen(rel);
			}
		} else
			send = !same_entry(opath, path, &ost, st);
	}
	if (walk.n == walk.cap) {
		size_t nc = walk.cap ? walk.cap * 2 : 256;
		struct walk_entry *nv = realloc(walk.v, nc * sizeof(*nv));
		if (!nv) {
			walk.error = -ENOMEM;
			return FTW_STOP;
		}
		walk.v = nv;
		walk.cap = nc;
	}
	walk.v[walk.n] = (struct walk_entry){.rel = strdup(rel), .send = send};
	if (!walk.v[walk.n].rel) {
		walk.error = -ENOMEM;
		return FTW_STOP;
	}
	if (S_ISDIR(st->st_mode))
		walk.stack[ftw->level] = walk.n;
	/* the directories above a sent entry: their times change on the
	 * receiver when it replaces the entry, so they are sent too */
	if (send)
		for (int l = ftw->level - 1; l >= 0 && !walk.v[walk.stack[l]].send; l--)
			walk.v[walk.stack[l]].send = true;
	walk.n++;
	return FTW_CONTINUE;
}

/* Paths of the old tree gone from (or retyped in) the new one. */
static __thread struct stream_writer *del_w;
static __thread struct vm_error *del_err;

static int put_name(struct stream_writer *w, const char *rel, struct vm_error *err)
{
	uint8_t len[4];
	int r;

	put_le32(len, strlen(rel));
	r = stream_write_data(w, len, sizeof(len), err);
	if (r >= 0 && *rel)
		r = stream_write_data(w, rel, strlen(rel), err);
	return r;
}

static int walk_old_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	const char *rel = path + walk.rootlen;
	_cleanup_free_ char *npath = NULL;
	struct stat nst;

	(void)flag;
	while (*rel == '/')
		rel++;
	if (ftw->level == 0)
		return FTW_CONTINUE;
	if (ftw->level == 1 && top_skipped(rel, walk.skip))
		return FTW_SKIP_SUBTREE;
	npath = strdup_printf("%s/%s", walk.other, rel);
	if (!npath) {
		walk.error = -ENOMEM;
		return FTW_STOP;
	}
	if (lstat(npath, &nst) == 0 && (nst.st_mode & S_IFMT) == (st->st_mode & S_IFMT))
		return FTW_CONTINUE;
	if (strlen(rel) > STREAM_DELTA_NAME_MAX) {
		walk.error = -ENAMETOOLONG;
		return FTW_STOP;
	}
	if (put_name(del_w, rel, del_err) < 0) {
		walk.error = -del_err->code;
		return FTW_STOP;
	}
	return S_ISDIR(st->st_mode) ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
}

static void walk_reset(void)
{
	for (size_t i = 0; i < walk.n; i++)
		free(walk.v[i].rel);
	free(walk.v);
	free(walk.forced);
	memset(&walk, 0, sizeof(walk));
}

struct tree_out {
	struct stream_writer *w;
	struct vm_error *err;
	bool failed;
};

static la_ssize_t tree_write_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct tree_out *t = ctx;

	if (stream_write_data(t->w, buf, len, t->err) < 0) {
		t->failed = true;
		archive_set_error(a, EIO, "stream write failed");
		return -1;
	}
	return len;
}

static int arch_error(struct vm_error *err, struct tree_out *t, struct archive *a, const char *ds,
		      const char *entry)
{
	if (t && t->failed)
		return -err->code;
	return vm_error_setx(err, archive_errno(a) > 0 ? archive_errno(a) : EIO, "send %s: %s%s%s",
			     ds, entry ? entry : "", entry ? ": " : "",
			     archive_error_string(a) ? archive_error_string(a) : "archive error");
}

/* The file's bytes, holes fed as zeros (the pax writer drops them by the
 * entry's sparse map). */
static int write_file_data(struct archive *a, struct tree_out *t, int fd, uint64_t size,
			   const char *ds, const char *name, struct vm_error *err)
{
	static const uint8_t zeros[64 << 10];
	_cleanup_free_ uint8_t *buf = malloc(1 << 20);
	uint64_t pos = 0;

	if (!buf)
		return vm_error_set(err, ENOMEM, "send %s", ds);
	while (pos < size) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0)
			data = errno == ENXIO ? (off_t)size : (off_t)pos;
		hole = data < (off_t)size ? lseek(fd, data, SEEK_HOLE) : (off_t)size;
		if (hole < 0 || hole > (off_t)size)
			hole = size;
		for (; pos < (uint64_t)data; pos += MIN(sizeof(zeros), data - pos))
			if (archive_write_data(a, zeros, MIN(sizeof(zeros), data - pos)) < 0)
				return arch_error(err, t, a, ds, name);
		while (pos < (uint64_t)hole) {
			ssize_t n = pread(fd, buf, MIN((uint64_t)(1 << 20), hole - pos), pos);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return vm_error_set(err, n < 0 ? errno : EIO, "send %s: read %s",
						    ds, name);
			if (archive_write_data(a, buf, n) < 0)
				return arch_error(err, t, a, ds, name);
			pos += n;
		}
	}
	return 0;
}

int stream_send_tree_delta(struct stream_writer *w, const struct stream_dataset *ds,
			   const char *old_dir, const char *new_dir, const char *const *skip_names,
			   struct vm_error *err)
{
	_cleanup_(archive_read_freep) struct archive *disk = NULL;
	_cleanup_(archive_write_freep) struct archive *a = NULL;
	_cleanup_(archive_entry_linkresolver_freep) struct archive_entry_linkresolver *links = NULL;
	_cleanup_free_ char *nroot = realpath(new_dir, NULL), *oroot = realpath(old_dir, NULL);
	struct stream_dataset d = *ds;
	struct tree_out t = {.w = w, .err = err};
	char full[128];
	int r;

	if (!ds->from_snapshot)
		return vm_error_setx(err, EINVAL, "send %s: a delta needs a base snapshot",
				     new_dir);
	if (!nroot || !oroot)
		return vm_error_set(err, errno, "send tree delta: %s", !nroot ? new_dir : old_dir);

	/* what to send */
	walk_reset();
	walk.skip = skip_names;
	walk.other = oroot;
	walk.rootlen = strlen(nroot);
	if (nftw(nroot, walk_new_cb, 32, FTW_PHYS | FTW_ACTIONRETVAL) < 0 || walk.error) {
		r = walk.error ? walk.error : -errno;
		walk_reset();
		return vm_error_set(err, r, "send tree delta: walk %s", nroot);
	}

	d.kind = STREAM_KIND_FILESYSTEM;
	d.encoding = STREAM_ENC_TAR_DELTA;
	d.size = 0;
	r = stream_begin_dataset(w, &d, err);
	if (r < 0)
		goto out;
	snprintf(full, sizeof(full), "%s", stream_writer_dataset_name(w));

	/* the deletions */
	{
		struct walk_entry *keep = walk.v;
		size_t keep_n = walk.n, keep_cap = walk.cap;
		walk.v = NULL;
		walk.n = walk.cap = 0;
		walk.other = nroot;
		walk.rootlen = strlen(oroot);
		del_w = w;
		del_err = err;
		if (nftw(oroot, walk_old_cb, 32, FTW_PHYS | FTW_ACTIONRETVAL) < 0 || walk.error) {
			r = walk.error ? walk.error : -errno;
			walk.v = keep;
			walk.n = keep_n;
			if (err->code && r == -err->code)
				goto out;
			r = vm_error_set(err, r, "send tree delta: walk %s", oroot);
			goto out;
		}
		walk.v = keep;
		walk.n = keep_n;
		walk.cap = keep_cap;
		r = put_name(w, "", err);
		if (r < 0)
			goto out;
	}

	disk = archive_read_disk_new();
	a = archive_write_new();
	links = archive_entry_linkresolver_new();
	if (!disk || !a || !links) {
		r = vm_error_set(err, ENOMEM, "send tree delta %s", nroot);
		goto out;
	}
	archive_read_disk_set_symlink_physical(disk);
	if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
		r = vm_error_setx(err, EIO, "send tree delta: %s", archive_error_string(a));
		goto out;
	}
	archive_entry_linkresolver_set_strategy(links, archive_format(a));
	if (archive_write_open(a, &t, NULL, tree_write_cb, NULL) != ARCHIVE_OK) {
		r = arch_error(err, &t, a, full, NULL);
		goto out;
	}
	for (size_t i = 0; i < walk.n; i++) {
		struct archive_entry *entry = NULL, *spare = NULL;
		_cleanup_free_ char *path = NULL;
		_cleanup_close_ int fd = -1;
		const char *rel = walk.v[i].rel;
		struct stat st;

		if (!walk.v[i].send)
			continue;
		path = *rel ? strdup_printf("%s/%s", nroot, rel) : strdup(nroot);
		if (!path || lstat(path, &st) < 0) {
			r = vm_error_set(err, path ? errno : ENOMEM, "send %s: stat %s", full,
					 path ? path : rel);
			goto out;
		}
		if (S_ISREG(st.st_mode)) {
			fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				r = vm_error_set(err, errno, "send %s: open %s", full, path);
				goto out;
			}
		}
		entry = archive_entry_new();
		if (!entry) {
			r = vm_error_set(err, ENOMEM, "send %s", full);
			goto out;
		}
		archive_entry_copy_sourcepath(entry, path);
		archive_entry_copy_pathname(entry, path);
		if (archive_read_disk_entry_from_file(disk, entry, fd, &st) != ARCHIVE_OK) {
			r = arch_error(err, NULL, disk, full, rel);
			archive_entry_free(entry);
			goto out;
		}
		archive_entry_copy_pathname(entry, *rel ? rel : ".");
		archive_entry_set_uname(entry, NULL);
		archive_entry_set_gname(entry, NULL);
		archive_entry_linkify(links, &entry, &spare);
		if (spare)
			archive_entry_free(spare);
		if (!entry)
			continue;
		if (archive_write_header(a, entry) != ARCHIVE_OK) {
			r = arch_error(err, &t, a, full, rel);
			archive_entry_free(entry);
			goto out;
		}
		if (S_ISREG(st.st_mode) && st.st_size > 0 && !archive_entry_hardlink(entry)) {
			r = write_file_data(a, &t, fd, st.st_size, full, rel, err);
			if (r < 0) {
				archive_entry_free(entry);
				goto out;
			}
		}
		archive_entry_free(entry);
		if (archive_write_finish_entry(a) != ARCHIVE_OK) {
			r = arch_error(err, &t, a, full, rel);
			goto out;
		}
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		r = arch_error(err, &t, a, full, NULL);
		goto out;
	}
	r = stream_end_dataset(w, err);
out:
	walk_reset();
	return r;
}

/* ---- tar-delta: receive ---- */

/* Remove root/rel, refusing to go through a symlink on the way. */
static int remove_below(const char *root, const char *rel, const char *ds, struct vm_error *err)
{
	_cleanup_free_ char *copy = strdup(rel);
	char buf[STREAM_MSG_NAME_MAX];
	_cleanup_close_ int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *p, *slash;
	int r;

	if (!copy || dfd < 0)
		return vm_error_set(err, copy ? errno : ENOMEM, "receive %s: open %s", ds, root);
	for (p = copy; (slash = strchr(p, '/'));) {
		int nfd;
		*slash = '\0';
		if (*p) {
			nfd = openat(dfd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (nfd < 0) {
				if (errno == ENOENT)
					return 0; /* already gone */
				return vm_error_set(
				    err, errno,
				    "receive %s: remove \"%s\": its parent is not a "
				    "directory",
				    ds, stream_msg_name(rel, buf));
			}
			close(dfd);
			dfd = nfd;
		}
		p = slash + 1;
	}
	if (!*p || streq(p, "."))
		return 0;
	/* no symlink above it; fs_rm_rf_at follows none below, and clears
	 * what would stop it (immutable flags) */
	r = fs_rm_rf_at(dfd, p, err);
	if (r < 0)
		return vm_error_prefix(err, "receive %s: delete \"%s\"", ds,
				       stream_msg_name(rel, buf));
	return 0;
}

int stream_receive_tree_delta(struct stream_reader *r, const char *dir,
			      const char *const *skip_names, struct vm_error *err)
{
	const struct stream_dataset *ds = stream_reader_current(r);
	const char *dsname = stream_reader_dataset_name(r);
	_cleanup_free_ char *root = NULL, *name = malloc(STREAM_DELTA_NAME_MAX + 1);
	int k;

	if (!ds || ds->kind != STREAM_KIND_FILESYSTEM || ds->encoding != STREAM_ENC_TAR_DELTA)
		return vm_error_setx(err, EINVAL,
				     "receive %s: not a filesystem in the tar-delta encoding",
				     ds ? dsname : "(no dataset)");
	if (!name)
		return vm_error_set(err, ENOMEM, "receive %s", dsname);
	root = realpath(dir, NULL);
	if (!root || !fs_is_dir(root))
		return vm_error_set(err, root ? ENOTDIR : errno, "receive %s: %s", dsname, dir);
	for (;;) {
		uint8_t lenb[4];
		uint32_t len;
		ssize_t n = stream_read_exact(r, lenb, sizeof(lenb), "a deletion", err);

		if (n < 0)
			return n;
		if (n == 0)
			return vm_error_setx(err, EPROTO,
					     "receive %s: the data ends inside the deletion list",
					     dsname);
		len = get_le32(lenb);
		if (len == 0)
			break;
		if (len > STREAM_DELTA_NAME_MAX)
			return vm_error_setx(err, EPROTO,
					     "receive %s: deleted path of %u bytes, more than %u",
					     dsname, len, STREAM_DELTA_NAME_MAX);
		n = stream_read_exact(r, name, len, "a deletion", err);
		if (n <= 0)
			return n < 0 ? n
				     : vm_error_setx(err, EPROTO, "receive %s: deletion cut short",
						     dsname);
		name[len] = '\0';
		if (memchr(name, '\0', len))
			return vm_error_setx(err, EPROTO, "receive %s: deleted path has a NUL byte",
					     dsname);
		k = stream_entry_name_check(dsname, "deleted path", name, err);
		if (k < 0)
			return k;
		{
			size_t top = strcspn(name, "/");
			char first[256], buf[STREAM_MSG_NAME_MAX];
			snprintf(first, sizeof(first), "%.*s", (int)MIN(top, sizeof(first) - 1),
				 name);
			if (streq(first, ".") || top_skipped(first, skip_names))
				return vm_error_setx(err, EPROTO,
						     "receive %s: refusing to delete \"%s\" (the "
						     "root or a child dataset)",
						     dsname, stream_msg_name(name, buf));
		}
		k = remove_below(root, name, dsname, err);
		if (k < 0)
			return k;
	}
	return stream_tree_extract(r, root, err);
}

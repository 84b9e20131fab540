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

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/sparse.h"
#include "stream/stream-private.h"
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
	const char *name;      /* the dataset, for messages */
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
			return vm_error_set(d->err, r, "send %s: read at offset %llu", d->name,
					    (unsigned long long)off);
		r = pread_full(d->old_fd, d->oldbuf, len, off, d->old_size);
		if (r < 0)
			return vm_error_set(d->err, r, "send %s: read the base snapshot at %llu",
					    d->name, (unsigned long long)off);
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

int stream_send_volume_delta(struct stream_writer *w, const struct stream_dataset *ds, int old_fd,
			     int new_fd, uint64_t *ret_shared, struct vm_error *err)
{
	_cleanup_free_ uint8_t *run = malloc(STREAM_BLOCK_MAX);
	_cleanup_free_ uint8_t *oldbuf = malloc(SPARSE_DIFF_GRAIN);
	struct stream_dataset d = *ds;
	struct stat ost, nst;
	struct vol_delta vd;
	uint64_t shared = 0;
	int r;

	if (!ds->from_snapshot)
		return vm_error_setx(err, EINVAL, "send %s: a delta needs a base snapshot",
				     ds->snapshot);
	if (!run || !oldbuf)
		return vm_error_set(err, ENOMEM, "send volume delta %s", ds->snapshot);
	if (fstat(old_fd, &ost) < 0 || fstat(new_fd, &nst) < 0)
		return vm_error_set(err, errno, "send volume delta: stat %s", ds->snapshot);
	if (!S_ISREG(ost.st_mode) || !S_ISREG(nst.st_mode))
		return vm_error_setx(err, EINVAL, "send volume delta: %s or %s is not a file",
				     ds->from_snapshot, ds->snapshot);
	d.kind = STREAM_KIND_VOLUME;
	d.encoding = STREAM_ENC_BLOCKS_DELTA;
	d.size = nst.st_size;
	r = stream_begin_dataset(w, &d, err);
	if (r < 0)
		return r;
	vd = (struct vol_delta){.w = w,
				.err = err,
				.old_fd = old_fd,
				.new_fd = new_fd,
				.old_size = ost.st_size,
				.name = stream_writer_dataset_name(w),
				.run = run,
				.oldbuf = oldbuf};
	r = sparse_changed_ranges(old_fd, new_fd, nst.st_size, vol_delta_range, &vd, &shared, err);
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
	fd = fs_open_image(path, O_RDWR);
	if (fd < 0)
		return vm_error_set(err, -fd, "receive %s: open %s (the base of the delta)", name,
				    path);
	k = fs_image_resize(fd, ds->size);
	if (k < 0)
		return vm_error_set(err, -k, "receive %s: make %s %llu bytes", name, path,
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

#define DELTA_DEPTH_MAX 256

struct walk_entry {
	char *rel; /* "" for the root */
	bool send;
};

/* A tar-delta in the making: the walk of the new tree (what to send), then
 * of the old one (what is gone). */
struct tree_delta {
	const char *const *skip;
	int other; /* the other tree's root: the old one while the new is walked */
	struct walk_entry *v;
	size_t n, cap;
	size_t stack[DELTA_DEPTH_MAX]; /* index of the directory at each level */
	char *forced;		       /* a new/retyped dir: everything below is sent */
	size_t forced_len;
	struct stream_writer *w;
	struct vm_error *err;
};

static void tree_delta_done(struct tree_delta *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i].rel);
	free(d->v);
	free(d->forced);
}

static bool top_skipped(const char *rel, const char *const *skip)
{
	if (!skip || strchr(rel, '/'))
		return false;
	for (; *skip; skip++)
		if (streq(rel, *skip))
			return true;
	return false;
}

/* Is entry n of the new tree (e) what o was in the old one, at the same
 * path from the old root? */
static bool same_entry(const struct tree_delta *d, const struct stream_walk_entry *e,
		       const struct stat *o)
{
	const struct stat *n = e->st;
	_cleanup_free_ char *opath = NULL, *npath = NULL;

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
			ssize_t la = readlinkat(d->other, e->rel, a, sizeof(a));
			ssize_t lb = readlinkat(e->dirfd, e->name, b, sizeof(b));
			if (la < 0 || la != lb || memcmp(a, b, la) != 0)
				return false;
		}
	}
	if (o->st_ino == n->st_ino)
		return true;
	/* copies: an attribute change moves only the ctime, which a copy
	 * does not share, so compare the attributes themselves (last: it
	 * costs system calls the tests above may spare) */
	opath = stream_fd_path(d->other, e->rel);
	npath = stream_fd_path(e->dirfd, e->name);
	return opath && npath && xattr_equal(opath, npath);
}

static int delta_add(struct tree_delta *d, const char *rel, bool send)
{
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 256;
		struct walk_entry *nv = realloc(d->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		d->v = nv;
		d->cap = nc;
	}
	d->v[d->n] = (struct walk_entry){.rel = strdup(rel), .send = send};
	if (!d->v[d->n].rel)
		return -ENOMEM;
	d->n++;
	return 0;
}

/* What to send: an entry of the new tree that the old one lacks, has with
 * another type or otherwise than it is now. */
static int walk_new_cb(const struct stream_walk_entry *e, void *ud)
{
	struct tree_delta *d = ud;
	const char *rel = e->rel;
	struct stat ost;
	bool send;
	int r;

	if (e->level == 1 && top_skipped(rel, d->skip))
		return STREAM_WALK_SKIP;
	if (e->level >= DELTA_DEPTH_MAX)
		return vm_error_set(d->err, ENAMETOOLONG, "send tree delta: walk %s", rel);
	if (S_ISSOCK(e->st->st_mode))
		return 0;
	if (d->forced && strncmp(rel, d->forced, d->forced_len) == 0 && rel[d->forced_len] == '/') {
		send = true;
	} else {
		free(d->forced);
		d->forced = NULL;
		if (e->level == 0)
			send = true; /* the root: always, for its times */
		else if (fstatat(d->other, rel, &ost, AT_SYMLINK_NOFOLLOW) < 0 ||
			 (ost.st_mode & S_IFMT) != (e->st->st_mode & S_IFMT)) {
			send = true;
			if (S_ISDIR(e->st->st_mode)) {
				d->forced = strdup(rel);
				d->forced_len = strlen(rel);
			}
		} else
			send = !same_entry(d, e, &ost);
	}
	r = delta_add(d, rel, send);
	if (r < 0)
		return vm_error_set(d->err, r, "send tree delta: walk %s", rel);
	if (S_ISDIR(e->st->st_mode))
		d->stack[e->level] = d->n - 1;
	/* the directories above a sent entry: their times change on the
	 * receiver when it replaces the entry, so they are sent too */
	if (send)
		for (int l = e->level - 1; l >= 0 && !d->v[d->stack[l]].send; l--)
			d->v[d->stack[l]].send = true;
	return 0;
}

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

/* Paths of the old tree gone from (or retyped in) the new one. */
static int walk_old_cb(const struct stream_walk_entry *e, void *ud)
{
	struct tree_delta *d = ud;
	struct stat nst;
	int r;

	if (e->level == 0)
		return 0;
	if (e->level == 1 && top_skipped(e->rel, d->skip))
		return STREAM_WALK_SKIP;
	if (fstatat(d->other, e->rel, &nst, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (nst.st_mode & S_IFMT) == (e->st->st_mode & S_IFMT))
		return 0;
	if (strlen(e->rel) > STREAM_DELTA_NAME_MAX)
		return vm_error_set(d->err, ENAMETOOLONG, "send tree delta: walk %s", e->rel);
	r = put_name(d->w, e->rel, d->err);
	if (r < 0)
		return r;
	return S_ISDIR(e->st->st_mode) ? STREAM_WALK_SKIP : 0;
}

/* The archive of what the walk of the new tree marked. */
static int tree_delta_archive(struct tree_delta *d, int new_dirfd)
{
	struct stream_tree_out t;
	int r;

	r = stream_tree_out_open(&t, d->w, d->err);
	for (size_t i = 0; r >= 0 && i < d->n; i++) {
		const char *rel = d->v[i].rel;
		struct stat st;

		if (!d->v[i].send)
			continue;
		if ((*rel ? fstatat(new_dirfd, rel, &st, AT_SYMLINK_NOFOLLOW)
			  : fstat(new_dirfd, &st)) < 0)
			r = vm_error_set(d->err, errno, "send %s: stat %s", t.ds, *rel ? rel : ".");
		else
			r = stream_tree_out_entry(&t, new_dirfd, *rel ? rel : NULL, rel, &st);
	}
	if (r >= 0)
		r = stream_tree_out_close(&t);
	stream_tree_out_done(&t);
	return r;
}

int stream_send_tree_delta(struct stream_writer *w, const struct stream_dataset *ds, int old_dirfd,
			   int new_dirfd, const char *const *skip_names, struct vm_error *err)
{
	struct tree_delta d = {.skip = skip_names, .other = old_dirfd, .w = w, .err = err};
	struct stream_dataset sd = *ds;
	int r;

	if (!ds->from_snapshot)
		return vm_error_setx(err, EINVAL, "send %s: a delta needs a base snapshot",
				     ds->snapshot);
	/* what to send */
	r = stream_walk(new_dirfd, STREAM_WALK_PREORDER, 0, walk_new_cb, &d, err);
	if (r >= 0) {
		sd.kind = STREAM_KIND_FILESYSTEM;
		sd.encoding = STREAM_ENC_TAR_DELTA;
		sd.size = 0;
		r = stream_begin_dataset(w, &sd, err);
	}
	/* the deletions, then the archive */
	if (r >= 0) {
		d.other = new_dirfd;
		r = stream_walk(old_dirfd, STREAM_WALK_PREORDER, 0, walk_old_cb, &d, err);
	}
	if (r >= 0)
		r = put_name(w, "", err);
	if (r >= 0)
		r = tree_delta_archive(&d, new_dirfd);
	tree_delta_done(&d);
	if (r < 0)
		return r;
	return stream_end_dataset(w, err);
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

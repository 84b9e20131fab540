/* SPDX-License-Identifier: MIT */
#include "storage/sparse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/macros.h"
#include "util/xattr.h"

#define COPY_CHUNK (1024 * 1024)

int sparse_next_data(int fd, off_t from, off_t *ret_start, off_t *ret_end)
{
	struct stat st;
	off_t start, end;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (from >= st.st_size)
		return 0;
	start = lseek(fd, from, SEEK_DATA);
	if (start < 0) {
		if (errno == ENXIO)
			return 0;
		if (errno != EINVAL && errno != EOPNOTSUPP)
			return -errno;
		/* No SEEK_DATA here: everything is data. */
		*ret_start = from;
		*ret_end = st.st_size;
		return 1;
	}
	end = lseek(fd, start, SEEK_HOLE);
	if (end < 0)
		return -errno;
	if (end > st.st_size)
		end = st.st_size;
	if (start >= end)
		return 0;
	*ret_start = start;
	*ret_end = end;
	return 1;
}

static int copy_range(int in_fd, int out_fd, off_t start, off_t end, const char *what,
		      struct vm_error *err)
{
	_cleanup_free_ char *buf = NULL;
	bool try_cfr = true;

	while (start < end) {
		size_t want = end - start > COPY_CHUNK ? COPY_CHUNK : (size_t)(end - start);
		ssize_t n;

		if (try_cfr) {
			loff_t in_off = start, out_off = start;
			n = copy_file_range(in_fd, &in_off, out_fd, &out_off, want, 0);
			if (n > 0) {
				start += n;
				continue;
			}
			if (n == 0)
				return vm_error_setx(err, EIO, "copy %s: file shrank while copying",
						     what);
			if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP &&
			    errno != ENOSYS)
				return vm_error_set(err, errno, "copy %s", what);
			try_cfr = false;
		}
		if (!buf && !(buf = malloc(COPY_CHUNK)))
			return vm_error_set(err, ENOMEM, "copy %s", what);
		n = pread(in_fd, buf, want, start);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vm_error_set(err, errno, "read %s", what);
		}
		if (n == 0)
			return vm_error_setx(err, EIO, "copy %s: file shrank while copying", what);
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(out_fd, buf + done, n - done, start + done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return vm_error_set(err, errno, "write copy of %s", what);
			}
			done += w;
		}
		start += n;
	}
	return 0;
}

int sparse_copy_fd(int in_fd, int out_fd, const char *what, struct vm_error *err)
{
	struct stat st;
	off_t pos = 0, s, e;
	int r;

	if (fstat(in_fd, &st) < 0)
		return vm_error_set(err, errno, "stat %s", what);
	if (st.st_size == 0)
		return 0;
	if (ioctl(out_fd, FICLONE, in_fd) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EXDEV && errno != EINVAL && errno != ENOTTY &&
	    errno != EPERM)
		return vm_error_set(err, errno, "reflink %s", what);
	while ((r = sparse_next_data(in_fd, pos, &s, &e)) > 0) {
		r = copy_range(in_fd, out_fd, s, e, what, err);
		if (r < 0)
			return r;
		pos = e;
	}
	if (r < 0)
		return vm_error_set(err, r, "seek data in %s", what);
	if (ftruncate(out_fd, st.st_size) < 0)
		return vm_error_set(err, errno, "truncate copy of %s", what);
	return 0;
}

struct link_seen {
	dev_t dev;
	ino_t ino;
	char *dst;
};

struct copy_ctx {
	bool (*skip)(int dirfd, const char *name, const struct stat *st);
	char **kept; /* top-level names not copied (sparse_reset_tree) */
	size_t nkept;
	struct link_seen *links;
	size_t nlinks, caplinks;
};

static void copy_ctx_done(struct copy_ctx *c)
{
	for (size_t i = 0; i < c->nlinks; i++)
		free(c->links[i].dst);
	free(c->links);
	for (size_t i = 0; i < c->nkept; i++)
		free(c->kept[i]);
	free(c->kept);
}

static bool is_kept(const struct copy_ctx *c, const char *name)
{
	for (size_t i = 0; i < c->nkept; i++)
		if (streq(c->kept[i], name))
			return true;
	return false;
}

static int copy_meta(const char *src, const char *dst, const struct stat *st, bool is_link,
		     struct vm_error *err)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	int r;

	if (lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM)
		return vm_error_set(err, errno, "chown %s", dst);
	/* after the chown, which drops security.capability */
	r = xattr_copy(src, dst, err);
	if (r < 0)
		return r;
	if (!is_link && chmod(dst, st->st_mode & 07777) < 0)
		return vm_error_set(err, errno, "chmod %s", dst);
	if (utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) < 0 && errno != EOPNOTSUPP)
		return vm_error_set(err, errno, "set times of %s", dst);
	return 0;
}

static int copy_file(const char *src, const char *dst, const struct stat *st,
		     struct vm_error *err)
{
	_cleanup_close_ int in = -1, out = -1;

	in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return vm_error_set(err, errno, "open %s", src);
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		return vm_error_set(err, errno, "create %s", dst);
	return sparse_copy_fd(in, out, src, err);
}

static int copy_dir(struct copy_ctx *c, const char *src, const char *dst, const struct stat *st,
		    bool top, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = NULL;
	struct dirent *de;
	int r;

	if (!top && mkdir(dst, 0700) < 0)
		return vm_error_set(err, errno, "mkdir %s", dst);
	d = opendir(src);
	if (!d)
		return vm_error_set(err, errno, "open %s", src);
	while ((errno = 0, de = readdir(d))) {
		_cleanup_free_ char *s = NULL, *t = NULL;
		struct stat cst;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &cst, AT_SYMLINK_NOFOLLOW) < 0)
			return vm_error_set(err, errno, "stat %s/%s", src, de->d_name);
		if (cst.st_dev != st->st_dev)
			continue; /* a mount point inside: not ours to copy */
		if (S_ISDIR(cst.st_mode) && c->skip && c->skip(dirfd(d), de->d_name, &cst))
			continue;
		if (top && is_kept(c, de->d_name))
			continue;
		s = strdup_printf("%s/%s", src, de->d_name);
		t = strdup_printf("%s/%s", dst, de->d_name);
		if (!s || !t)
			return vm_error_set(err, ENOMEM, "copy %s", src);

		if (!S_ISDIR(cst.st_mode) && cst.st_nlink > 1) {
			size_t i;
			for (i = 0; i < c->nlinks; i++)
				if (c->links[i].dev == cst.st_dev && c->links[i].ino == cst.st_ino)
					break;
			if (i < c->nlinks) {
				if (link(c->links[i].dst, t) < 0)
					return vm_error_set(err, errno, "link %s", t);
				continue;
			}
			if (c->nlinks == c->caplinks) {
				size_t nc = c->caplinks ? c->caplinks * 2 : 16;
				struct link_seen *nl = realloc(c->links, nc * sizeof(*nl));
				if (!nl)
					return vm_error_set(err, ENOMEM, "copy %s", src);
				c->links = nl;
				c->caplinks = nc;
			}
			c->links[c->nlinks++] = (struct link_seen){ cst.st_dev, cst.st_ino,
								    strdup(t) };
		}

		if (S_ISDIR(cst.st_mode))
			r = copy_dir(c, s, t, &cst, false, err);
		else if (S_ISREG(cst.st_mode))
			r = copy_file(s, t, &cst, err);
		else if (S_ISLNK(cst.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlink(s, target, sizeof(target) - 1);
			if (n < 0)
				return vm_error_set(err, errno, "readlink %s", s);
			target[n] = '\0';
			r = symlink(target, t) < 0 ? vm_error_set(err, errno, "symlink %s", t) : 0;
		} else if (S_ISFIFO(cst.st_mode) || S_ISCHR(cst.st_mode) || S_ISBLK(cst.st_mode) ||
			   S_ISSOCK(cst.st_mode)) {
			r = mknod(t, cst.st_mode, cst.st_rdev) < 0
				    ? vm_error_set(err, errno, "mknod %s", t)
				    : 0;
		} else
			continue;
		if (r < 0)
			return r;
		if (!S_ISDIR(cst.st_mode)) {
			r = copy_meta(s, t, &cst, S_ISLNK(cst.st_mode), err);
			if (r < 0)
				return r;
		}
	}
	if (errno)
		return vm_error_set(err, errno, "read %s", src);
	return copy_meta(src, dst, st, false, err);
}

int sparse_copy_tree(const char *src, const char *dst,
		     bool (*skip)(int dirfd, const char *name, const struct stat *st),
		     struct vm_error *err)
{
	struct copy_ctx c = { .skip = skip };
	struct vm_error e2;
	struct stat st;
	int r;

	if (lstat(src, &st) < 0)
		return vm_error_set(err, errno, "stat %s", src);
	if (!S_ISDIR(st.st_mode))
		return vm_error_setx(err, ENOTDIR, "copy %s: not a directory", src);
	if (mkdir(dst, 0700) < 0)
		return vm_error_set(err, errno, "mkdir %s", dst);
	r = copy_dir(&c, src, dst, &st, true, err);
	copy_ctx_done(&c);
	if (r < 0)
		fs_rm_rf(dst, &e2);
	return r;
}

/* ---- incremental sends ---- */

struct sparse_extent {
	uint64_t logical, physical, length;
};

/* The file's extents from FIEMAP (after a sync), only those whose physical
 * address means something for sharing. -EOPNOTSUPP where there is no
 * FIEMAP. */
static int fiemap_extents(int fd, struct sparse_extent **ret, size_t *ret_n)
{
	enum { BATCH = 256 };
	const uint32_t unusable = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
				  FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL |
				  FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_ENCODED;
	_cleanup_free_ struct fiemap *fm = NULL;
	_cleanup_free_ struct sparse_extent *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t start = 0;
	bool last = false;

	fm = calloc(1, sizeof(*fm) + BATCH * sizeof(struct fiemap_extent));
	if (!fm)
		return -ENOMEM;
	while (!last) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = FIEMAP_MAX_OFFSET - start;
		fm->fm_flags = FIEMAP_FLAG_SYNC;
		fm->fm_extent_count = BATCH;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) < 0)
			return errno == ENOTTY || errno == EINVAL ? -EOPNOTSUPP : -errno;
		if (fm->fm_mapped_extents == 0)
			break;
		for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *e = &fm->fm_extents[i];
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
			start = e->fe_logical + e->fe_length;
			if ((e->fe_flags & unusable) || e->fe_physical == 0)
				continue;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct sparse_extent *nv = realloc(v, nc * sizeof(*nv));
				if (!nv)
					return -ENOMEM;
				v = nv;
				cap = nc;
			}
			v[n++] = (struct sparse_extent){ e->fe_logical, e->fe_physical,
							 e->fe_length };
		}
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* The extent of v (sorted, not overlapping) holding byte off, or NULL. */
static const struct sparse_extent *extent_at(const struct sparse_extent *v, size_t n, uint64_t off)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (off < v[mid].logical)
			hi = mid;
		else if (off >= v[mid].logical + v[mid].length)
			lo = mid + 1;
		else
			return &v[mid];
	}
	return NULL;
}

/* Do both files map every byte of [off, off + len) to the same place? */
static bool same_blocks(const struct sparse_extent *a, size_t na, const struct sparse_extent *b,
			size_t nb, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;

	while (off < end) {
		const struct sparse_extent *x = extent_at(a, na, off), *y = extent_at(b, nb, off);
		uint64_t step;

		if (!x || !y || x->physical + (off - x->logical) != y->physical + (off - y->logical))
			return false;
		step = MIN(x->logical + x->length, y->logical + y->length);
		off = MIN(step, end);
	}
	return true;
}

struct range {
	uint64_t start, end;
};

/* Append fd's data ranges within [0, limit), grain-aligned outward, to
 * *v. */
static int data_ranges(int fd, uint64_t limit, uint64_t size, struct range **v, size_t *n,
		       size_t *cap)
{
	off_t pos = 0, s, e;
	int r = 0;

	while ((uint64_t)pos < limit && (r = sparse_next_data(fd, pos, &s, &e)) > 0) {
		uint64_t a = (uint64_t)s / SPARSE_DIFF_GRAIN * SPARSE_DIFF_GRAIN;
		uint64_t b = MIN((uint64_t)e, limit);

		if (a >= b)
			break;
		b = MIN((b + SPARSE_DIFF_GRAIN - 1) / SPARSE_DIFF_GRAIN * SPARSE_DIFF_GRAIN, size);
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 64;
			struct range *nv = realloc(*v, nc * sizeof(**v));
			if (!nv)
				return -ENOMEM;
			*v = nv;
			*cap = nc;
		}
		(*v)[(*n)++] = (struct range){ a, b };
		pos = e;
	}
	return r < 0 ? r : 0;
}

static int range_cmp(const void *x, const void *y)
{
	const struct range *a = x, *b = y;
	return a->start < b->start ? -1 : a->start > b->start;
}

int sparse_changed_ranges(int old_fd, int new_fd, uint64_t size,
			  int (*fn)(uint64_t start, uint64_t end, void *ud), void *ud,
			  uint64_t *ret_shared, struct vm_error *err)
{
	_cleanup_free_ struct range *v = NULL;
	_cleanup_free_ struct sparse_extent *xa = NULL, *xb = NULL;
	size_t n = 0, cap = 0, na = 0, nb = 0, k = 0;
	uint64_t shared = 0, run_start = 0, run_end = 0;
	bool fiemap = false;
	struct stat ost;
	int r;

	if (fstat(old_fd, &ost) < 0)
		return vm_error_set(err, errno, "stat the base snapshot");
	r = data_ranges(new_fd, size, size, &v, &n, &cap);
	if (r >= 0)
		r = data_ranges(old_fd, MIN((uint64_t)ost.st_size, size), size, &v, &n, &cap);
	if (r < 0)
		return vm_error_set(err, r, "find the data of the volume");
	qsort(v, n, sizeof(*v), range_cmp);
	/* merge into a union */
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && v[i].start <= v[k - 1].end)
			v[k - 1].end = MAX(v[k - 1].end, v[i].end);
		else
			v[k++] = v[i];
	}
	n = k;
	if (fiemap_extents(old_fd, &xa, &na) >= 0 && fiemap_extents(new_fd, &xb, &nb) >= 0)
		fiemap = na > 0 && nb > 0;

	for (size_t i = 0; i < n; i++) {
		for (uint64_t g = v[i].start; g < v[i].end;) {
			uint64_t ge = MIN(g + SPARSE_DIFF_GRAIN, v[i].end);

			if (fiemap && ge <= (uint64_t)ost.st_size &&
			    same_blocks(xa, na, xb, nb, g, ge - g)) {
				shared += ge - g;
			} else if (run_end == g && run_end > run_start) {
				run_end = ge;
			} else {
				if (run_end > run_start && (r = fn(run_start, run_end, ud)) < 0)
					return r;
				run_start = g;
				run_end = ge;
			}
			g = ge;
		}
	}
	if (run_end > run_start && (r = fn(run_start, run_end, ud)) < 0)
		return r;
	if (ret_shared)
		*ret_shared = shared;
	return 0;
}

/* Remember a top-level name of the reset's target that is not replaced. */
static int keep_name(struct copy_ctx *c, const char *name)
{
	char **nk = realloc(c->kept, (c->nkept + 1) * sizeof(char *));

	if (!nk)
		return -ENOMEM;
	c->kept = nk;
	c->kept[c->nkept] = strdup(name);
	if (!c->kept[c->nkept])
		return -ENOMEM;
	c->nkept++;
	return 0;
}

int sparse_reset_tree(const char *src, const char *dst,
		      bool (*skip)(int dirfd, const char *name, const struct stat *st),
		      struct vm_error *err)
{
	_cleanup_(copy_ctx_done) struct copy_ctx c = {.skip = skip};
	_cleanup_closedir_ DIR *d = NULL;
	struct stat sst, dst_st;
	struct dirent *de;
	int r;

	if (lstat(src, &sst) < 0)
		return vm_error_set(err, errno, "stat %s", src);
	if (!S_ISDIR(sst.st_mode))
		return vm_error_setx(err, ENOTDIR, "reset %s: %s is not a directory", dst, src);
	d = opendir(dst);
	if (!d || fstat(dirfd(d), &dst_st) < 0)
		return vm_error_set(err, errno, "open %s", dst);
	while ((errno = 0, de = readdir(d))) {
		_cleanup_free_ char *p = NULL;
		struct stat st;

		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return vm_error_set(err, errno, "stat %s/%s", dst, de->d_name);
		if (S_ISDIR(st.st_mode) &&
		    (st.st_dev != dst_st.st_dev || (skip && skip(dirfd(d), de->d_name, &st)))) {
			/* a child dataset stays; src may show an empty
			 * directory in its place (btrfs), not copied over it */
			r = keep_name(&c, de->d_name);
			if (r < 0)
				return vm_error_set(err, -r, "reset %s", dst);
			continue;
		}
		p = strdup_printf("%s/%s", dst, de->d_name);
		if (!p)
			return vm_error_set(err, ENOMEM, "reset %s", dst);
		r = fs_rm_rf(p, err);
		if (r < 0)
			return r;
	}
	if (errno)
		return vm_error_set(err, errno, "read %s", dst);
	return copy_dir(&c, src, dst, &sst, true, err);
}

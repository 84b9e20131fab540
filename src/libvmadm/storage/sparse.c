/* SPDX-License-Identifier: MIT */
#include "storage/sparse.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/macros.h"

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
	struct link_seen *links;
	size_t nlinks, caplinks;
};

static void copy_ctx_done(struct copy_ctx *c)
{
	for (size_t i = 0; i < c->nlinks; i++)
		free(c->links[i].dst);
	free(c->links);
}

static int copy_meta(const char *dst, const struct stat *st, bool is_link, struct vm_error *err)
{
	struct timespec ts[2] = { st->st_atim, st->st_mtim };

	if (lchown(dst, st->st_uid, st->st_gid) < 0 && errno != EPERM)
		return vm_error_set(err, errno, "chown %s", dst);
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
			r = copy_meta(t, &cst, S_ISLNK(cst.st_mode), err);
			if (r < 0)
				return r;
		}
	}
	if (errno)
		return vm_error_set(err, errno, "read %s", src);
	return copy_meta(dst, st, false, err);
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

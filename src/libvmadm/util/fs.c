/* SPDX-License-Identifier: MIT */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "macros.h"

void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

char *strdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

int fs_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/* One read(2) (buf set) or splice(2) (buf NULL) of up to len bytes. */
static ssize_t move_some(int in, int out, char *buf, size_t len)
{
	return buf ? read(in, buf, len) : splice(in, NULL, out, NULL, len, SPLICE_F_MOVE);
}

/* len bytes by move_some, again after EINTR and short counts: the number
 * moved, short only at the end of in, or a negative errno. */
static ssize_t move_full(int in, int out, char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = move_some(in, out, buf ? buf + done : NULL, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

ssize_t fs_read_full(int fd, void *buf, size_t len)
{
	return move_full(fd, -1, buf, len);
}

ssize_t fs_splice_full(int in, int out, size_t len)
{
	return move_full(in, out, NULL, len);
}

static int fsync_dir_of(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	_cleanup_close_ int fd = -1;
	char *slash;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct vm_error *err)
{
	_cleanup_free_ char *tmp = strdup_printf("%s.tmp.%d", path, getpid());
	_cleanup_close_ int fd = -1;
	int r;

	if (!tmp)
		return vm_error_set(err, ENOMEM, "write %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return vm_error_set(err, errno, "create %s", tmp);
	r = fs_write_all(fd, data, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && close(TAKE_FD(fd)) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return vm_error_set(err, r, "write %s", path);
	}
	fsync_dir_of(path);
	return 0;
}

int fs_read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct vm_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	if (fd < 0)
		return vm_error_set(err, errno, "open %s", path);
	for (;;) {
		ssize_t n;
		if (len + 4096 + 1 > cap) {
			char *nb;
			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb)
				return vm_error_set(err, ENOMEM, "read %s", path);
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vm_error_set(err, errno, "read %s", path);
		}
		if (n == 0)
			break;
		len += n;
		if (len > max)
			return vm_error_setx(err, EFBIG, "read %s: larger than %zu bytes", path,
					     max);
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int fs_mkdir_p(const char *path, mode_t mode, struct vm_error *err)
{
	_cleanup_free_ char *p = strdup(path);

	if (!p)
		return vm_error_set(err, ENOMEM, "mkdir %s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return vm_error_set(err, errno, "mkdir %s", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return vm_error_set(err, errno, "mkdir %s", p);
	return 0;
}

/* ---- removal ---- */

#define FS_NOCHANGE_FLAGS (FS_IMMUTABLE_FL | FS_APPEND_FL)

int fs_clear_nochange_flags(int fd)
{
	int flags;

	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		return errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL ? 0 : -errno;
	if (!(flags & FS_NOCHANGE_FLAGS))
		return 0;
	flags &= ~FS_NOCHANGE_FLAGS;
	if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
		return -errno;
	return 1;
}

/* fs_clear_nochange_flags on dfd/name, opened without following a symlink
 * and only when it is a regular file or a directory: the flags cannot be set
 * on anything else (not through ioctl, not with file_setattr on ext4 or
 * btrfs), and opening a device or a fifo is not harmless. */
static int clear_nochange_flags_at(int dfd, const char *name)
{
	_cleanup_close_ int fd = -1;
	struct stat before, st;

	if (fstatat(dfd, name, &before, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(before.st_mode) && !S_ISDIR(before.st_mode))
		return 0;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_dev != before.st_dev || st.st_ino != before.st_ino)
		return -ESTALE;
	return fs_clear_nochange_flags(fd);
}

/* unlinkat, and on EPERM (an immutable or append-only entry or directory)
 * once more after clearing those flags on both. A missing entry is success. */
static int unlink_forced(int dfd, const char *name, bool dir)
{
	int flags = dir ? AT_REMOVEDIR : 0, a, b;

	if (unlinkat(dfd, name, flags) == 0 || errno == ENOENT)
		return 0;
	if (errno != EPERM)
		return -errno;
	a = clear_nochange_flags_at(dfd, name);
	b = fs_clear_nochange_flags(dfd);
	if (a <= 0 && b <= 0)
		return -EPERM; /* not because of the flags */
	if (unlinkat(dfd, name, flags) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* A directory being emptied: its name in the one above, its identity (to
 * check the way back up), and its stream while it is open. */
struct rm_level {
	DIR *d;
	char *name;
	dev_t dev;
	ino_t ino;
};

/* Directory streams kept open at once; deeper levels are closed and found
 * again through "..", so that the depth of a tree costs memory, not file
 * descriptors or stack. */
#define RM_OPEN_MAX 32

struct rm_state {
	struct rm_level *v;
	size_t n, cap;
	const char *top; /* for messages */
	dev_t dev;
	uint64_t mnt_id; /* 0 where statx does not tell */
};

/* "TOP/a/b/NAME" for a message (NAME NULL: the current directory). */
static char *rm_where(const struct rm_state *s, const char *name)
{
	size_t len = strlen(s->top) + 1;
	char *p, *out;

	for (size_t i = 1; i < s->n; i++)
		len += strlen(s->v[i].name) + 1;
	len += name ? strlen(name) + 1 : 0;
	out = p = malloc(len);
	if (!out)
		return NULL;
	p = stpcpy(p, s->top);
	for (size_t i = 1; i < s->n; i++)
		p = stpcpy(stpcpy(p, "/"), s->v[i].name);
	if (name)
		stpcpy(stpcpy(p, "/"), name);
	return out;
}

static int rm_fail(const struct rm_state *s, const char *name, int r, struct vm_error *err,
		   const char *why)
{
	_cleanup_free_ char *where = rm_where(s, name);

	if (why)
		return vm_error_setx(err, -r, "remove %s: %s", where ? where : s->top, why);
	return vm_error_set(err, -r, "remove %s", where ? where : s->top);
}

static uint64_t mount_id_at(int dfd, const char *name)
{
	struct statx stx;

	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH),
		  STATX_MNT_ID, &stx) < 0 ||
	    !(stx.stx_mask & STATX_MNT_ID))
		return 0;
	return stx.stx_mnt_id;
}

/* A read-only btrfs subvolume (or snapshot) inside a tree, which a
 * container on a dir pool on btrfs can make of its own files, refuses every
 * unlink below it (EROFS): make the directory open as fd writable if it is
 * one. 0 if it was not read-only or is no subvolume. */
static int make_subvol_writable(int fd, const struct stat *st)
{
	struct statfs sfs;
	uint64_t flags;

	if (st->st_ino != BTRFS_FIRST_FREE_OBJECTID || fstatfs(fd, &sfs) < 0 ||
	    sfs.f_type != BTRFS_SUPER_MAGIC)
		return 0;
	if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0 || !(flags & BTRFS_SUBVOL_RDONLY))
		return 0;
	flags &= ~BTRFS_SUBVOL_RDONLY;
	if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) < 0)
		return -errno;
	return 1;
}

/* Open directory dfd/name, which must still be the one st describes, and
 * push it. */
static int rm_push(struct rm_state *s, int dfd, const char *name, const struct stat *st,
		   struct vm_error *err)
{
	_cleanup_close_ int fd = -1;
	struct stat fst;
	uint64_t mnt;
	DIR *d;
	int r;

	/* Where the mount id is known it alone draws the line: a btrfs
	 * subvolume in the tree has a device of its own but is on the same
	 * mount, and goes like any directory. */
	if (!s->mnt_id && st->st_dev != s->dev)
		return rm_fail(s, name, -EXDEV, err, "another filesystem is mounted there");
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return rm_fail(s, name, -errno, err, NULL);
	if (fstat(fd, &fst) < 0)
		return rm_fail(s, name, -errno, err, NULL);
	if (fst.st_dev != st->st_dev || fst.st_ino != st->st_ino)
		return rm_fail(s, name, -ESTALE, err, "it changed while being removed");
	mnt = mount_id_at(fd, "");
	if (s->mnt_id && mnt != s->mnt_id)
		return rm_fail(s, name, -EXDEV, err, "a mount point");
	r = make_subvol_writable(fd, &fst);
	if (r < 0)
		return rm_fail(s, name, r, err, "make the read-only btrfs subvolume writable");
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		struct rm_level *nv = realloc(s->v, nc * sizeof(*nv));
		if (!nv)
			return rm_fail(s, name, -ENOMEM, err, NULL);
		s->v = nv;
		s->cap = nc;
	}
	s->v[s->n] = (struct rm_level){.name = strdup(name), .dev = fst.st_dev, .ino = fst.st_ino};
	if (!s->v[s->n].name)
		return rm_fail(s, name, -ENOMEM, err, NULL);
	d = fdopendir(fd);
	if (!d) {
		free(s->v[s->n].name);
		return rm_fail(s, name, -errno, err, NULL);
	}
	TAKE_FD(fd);
	s->v[s->n++].d = d;
	if (s->n > RM_OPEN_MAX && s->v[s->n - 1 - RM_OPEN_MAX].d) {
		closedir(s->v[s->n - 1 - RM_OPEN_MAX].d);
		s->v[s->n - 1 - RM_OPEN_MAX].d = NULL;
	}
	return 0;
}

/* The current directory is empty: back to its parent (opened again through
 * ".." if its stream was closed, and checked to be the same directory) and
 * remove it there. */
static int rm_pop(struct rm_state *s, struct vm_error *err)
{
	struct rm_level *cur = &s->v[s->n - 1], *up = &s->v[s->n - 2];
	int r;

	if (!up->d) {
		_cleanup_close_ int fd =
		    openat(dirfd(cur->d), "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;

		if (fd < 0 || fstat(fd, &st) < 0)
			return rm_fail(s, NULL, -errno, err, NULL);
		if (st.st_dev != up->dev || st.st_ino != up->ino)
			return rm_fail(s, NULL, -ESTALE, err, "it moved while being removed");
		up->d = fdopendir(fd);
		if (!up->d)
			return rm_fail(s, NULL, -errno, err, NULL);
		TAKE_FD(fd);
	}
	closedir(cur->d);
	s->n--;
	r = unlink_forced(dirfd(up->d), cur->name, true);
	if (r < 0)
		r = rm_fail(s, cur->name, r, err, NULL);
	free(cur->name);
	return r;
}

/* Empty the directory dfd/name (a stat st of it in hand), depth first,
 * without recursion. */
static int rm_tree_at(int dfd, const char *name, const struct stat *st, const char *top,
		      struct vm_error *err)
{
	struct rm_state s = {.top = top, .dev = st->st_dev, .mnt_id = mount_id_at(dfd, name)};
	int r;

	r = rm_push(&s, dfd, name, st, err);
	while (r >= 0 && s.n > 0) {
		struct rm_level *cur = &s.v[s.n - 1];
		struct dirent *de;
		struct stat cst;

		errno = 0;
		de = readdir(cur->d);
		if (!de) {
			if (errno) {
				r = rm_fail(&s, NULL, -errno, err, NULL);
				break;
			}
			if (s.n == 1)
				break; /* the top: its caller removes it */
			r = rm_pop(&s, err);
			continue;
		}
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(cur->d), de->d_name, &cst, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				r = rm_fail(&s, de->d_name, -errno, err, NULL);
			continue;
		}
		if (S_ISDIR(cst.st_mode)) {
			r = rm_push(&s, dirfd(cur->d), de->d_name, &cst, err);
			continue;
		}
		r = unlink_forced(dirfd(cur->d), de->d_name, false);
		if (r < 0)
			r = rm_fail(&s, de->d_name, r, err, NULL);
	}
	for (size_t i = 0; i < s.n; i++) {
		if (s.v[i].d)
			closedir(s.v[i].d);
		free(s.v[i].name);
	}
	free(s.v);
	return r < 0 ? r : 0;
}

static int rm_rf_at(int dfd, const char *name, const char *top, struct vm_error *err)
{
	struct stat st;
	int r;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "remove %s", top);
	if (S_ISDIR(st.st_mode)) {
		r = rm_tree_at(dfd, name, &st, top, err);
		if (r < 0)
			return r;
	}
	r = unlink_forced(dfd, name, S_ISDIR(st.st_mode));
	if (r < 0)
		return vm_error_set(err, -r, "remove %s", top);
	return 0;
}

int fs_rm_rf_at(int dfd, const char *name, struct vm_error *err)
{
	return rm_rf_at(dfd, name, name, err);
}

int fs_rm_rf(const char *path, struct vm_error *err)
{
	_cleanup_free_ char *dir = strdup(path);
	_cleanup_close_ int dfd = -1;
	const char *base;
	char *slash;
	size_t len;

	if (!dir)
		return vm_error_set(err, ENOMEM, "remove %s", path);
	/* "a/b/" is "a/b"; "/" has no parent to be removed from */
	for (len = strlen(dir); len > 1 && dir[len - 1] == '/'; len--)
		dir[len - 1] = '\0';
	slash = strrchr(dir, '/');
	if (!slash) {
		base = dir;
		dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		*slash = '\0';
		base = slash + 1;
		dfd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (!*base || streq(base, ".") || streq(base, ".."))
		return vm_error_setx(err, EINVAL, "remove %s: not a removable path", path);
	if (dfd < 0)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "remove %s", path);
	return rm_rf_at(dfd, base, path, err);
}

bool fs_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

bool fs_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fs_is_mountpoint(const char *path)
{
	char real[PATH_MAX], line[8192];
	_cleanup_fclose_ FILE *f = NULL;

	if (!realpath(path, real))
		return false;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX];
		/* id parent major:minor root mountpoint ... */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) == 1 && streq(mnt, real))
			return true;
	}
	return false;
}

int fs_image_size(int fd, uint64_t *ret)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*ret = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, ret) < 0 ? -errno : 0;
	return -EINVAL;
}

int fs_image_resize(int fd, uint64_t size)
{
	struct stat st;
	uint64_t have;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode))
		return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
	r = fs_image_size(fd, &have);
	if (r < 0)
		return r;
	return have == size ? 0 : -EINVAL;
}

int fs_image_clear(int fd, uint64_t size)
{
	struct stat st;
	uint64_t range[2] = {0, size};
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode))
		return ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
	r = fs_image_resize(fd, size);
	if (r < 0)
		return r;
	if (size == 0 ||
	    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) == 0)
		return 0;
	return ioctl(fd, BLKZEROOUT, range) < 0 ? -errno : 0;
}

int fs_open_image(const char *path, int flags)
{
	struct stat st;
	int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	if (errno != ELOOP || strncmp(path, "/dev/", 5) != 0)
		return -errno;
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode)) {
		close(fd);
		return -ENOTBLK;
	}
	return fd;
}

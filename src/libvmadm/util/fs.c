/* SPDX-License-Identifier: MIT */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

ssize_t fs_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);
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

int fs_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
		 struct vm_error *err)
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
			return vm_error_setx(err, EFBIG, "read %s: larger than %zu bytes", path, max);
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

static int rm_rf_at(int dfd, const char *name, dev_t dev, struct vm_error *err,
		    const char *top)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "remove %s/%s", top, name);
	if (S_ISDIR(st.st_mode)) {
		_cleanup_closedir_ DIR *d = NULL;
		int fd;
		struct dirent *de;

		if (st.st_dev != dev)
			return vm_error_setx(err, EXDEV, "remove %s: %s is another filesystem",
					     top, name);
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vm_error_set(err, errno, "remove %s/%s", top, name);
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return vm_error_set(err, errno, "remove %s/%s", top, name);
		}
		while ((de = readdir(d))) {
			int r;
			if (streq(de->d_name, ".") || streq(de->d_name, ".."))
				continue;
			r = rm_rf_at(dirfd(d), de->d_name, dev, err, top);
			if (r < 0)
				return r;
		}
		if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			return vm_error_set(err, errno, "remove %s/%s", top, name);
		return 0;
	}
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return vm_error_set(err, errno, "remove %s/%s", top, name);
	return 0;
}

int fs_rm_rf(const char *path, struct vm_error *err)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "remove %s", path);
	return rm_rf_at(AT_FDCWD, path, st.st_dev, err, path);
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

/* SPDX-License-Identifier: MIT */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/macros.h"

int brand_pidfile_read(const char *path, pid_t *ret, struct vm_error *err)
{
	_cleanup_free_ char *text = NULL;
	char *end;
	long v;
	int r;

	r = fs_read_file(path, 64, &text, NULL, err);
	if (r < 0)
		return r;
	errno = 0;
	v = strtol(text, &end, 10);
	while (*end == '\n' || *end == ' ')
		end++;
	if (errno || end == text || *end || v <= 1 || v > 0x7fffffff)
		return vm_error_setx(err, EBADMSG, "pidfile %s: no valid pid in it", path);
	*ret = (pid_t)v;
	return 0;
}

static bool is_zombie(pid_t pid)
{
	char path[64], buf[512], *paren;
	_cleanup_close_ int fd = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* gone */
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	/* "PID (COMM) S ...": COMM may hold spaces and parens; the state
	 * follows the last ')'. */
	paren = strrchr(buf, ')');
	return !paren || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X';
}

bool brand_pid_is_vm(pid_t pid, const char *uuid)
{
	char path[64];
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 64 * 1024;
	ssize_t n;

	if (pid <= 1 || !uuid || !*uuid)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	buf = malloc(cap + 1);
	if (!buf)
		return false;
	while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
		len += n;
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[len] = '\0';
	if (!strstr(buf, uuid))
		return false;
	return !is_zombie(pid);
}

pid_t brand_running_pid(const char *pidfile, const char *uuid)
{
	struct vm_error err = { 0 };
	pid_t pid;

	if (brand_pidfile_read(pidfile, &pid, &err) < 0)
		return 0;
	return brand_pid_is_vm(pid, uuid) ? pid : 0;
}

int brand_wait_pid_gone(pid_t pid, const char *uuid, int timeout_ms)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	for (int waited = 0;; waited += 50) {
		if (!brand_pid_is_vm(pid, uuid))
			return 0;
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&ts, NULL);
	}
}

/* SPDX-License-Identifier: MIT */
/* zfs command lines (see zfs-cmd.h). */
#include "storage/zfs-cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"

/* Fill a->argv with the NULL-terminated words given. */
#define SET_ARGV(a, ...)                                                                           \
	do {                                                                                       \
		const char *w_[] = {__VA_ARGS__, NULL};                                            \
		_Static_assert(sizeof(w_) / sizeof(w_[0]) <= ZFS_ARGV_MAX, "argv too long");       \
		memset((a)->argv, 0, sizeof((a)->argv));                                           \
		memcpy((a)->argv, w_, sizeof(w_));                                                 \
	} while (0)

void zfs_cmd_create_volume(struct zfs_argv *a, const char *zds, uint64_t size)
{
	snprintf(a->buf[0], sizeof(a->buf[0]), "%" PRIu64, size);
	/* zfs create -s -V SIZE ZDS */
	SET_ARGV(a, "zfs", "create", "-s", "-V", a->buf[0], zds);
}

void zfs_cmd_set_volsize(struct zfs_argv *a, const char *zds, uint64_t size)
{
	snprintf(a->buf[0], sizeof(a->buf[0]), "volsize=%" PRIu64, size);
	/* zfs set volsize=SIZE ZDS */
	SET_ARGV(a, "zfs", "set", a->buf[0], zds);
}

void zfs_cmd_set_quota(struct zfs_argv *a, const char *zds, uint64_t bytes)
{
	if (bytes)
		snprintf(a->buf[0], sizeof(a->buf[0]), "quota=%" PRIu64, bytes);
	else
		snprintf(a->buf[0], sizeof(a->buf[0]), "quota=none");
	/* zfs set quota=BYTES|none ZDS */
	SET_ARGV(a, "zfs", "set", a->buf[0], zds);
}

void zfs_cmd_send(struct zfs_argv *a, const char *zsnap, const char *from_snap)
{
	if (from_snap) {
		snprintf(a->buf[0], sizeof(a->buf[0]), "@%s", from_snap);
		/* zfs send -p -i @FROM ZDS@SNAP */
		SET_ARGV(a, "zfs", "send", "-p", "-i", a->buf[0], zsnap);
	} else {
		/* zfs send -p ZDS@SNAP */
		SET_ARGV(a, "zfs", "send", "-p", zsnap);
	}
}

void zfs_cmd_send_resume(struct zfs_argv *a, const char *token)
{
	/* zfs send -t TOKEN */
	SET_ARGV(a, "zfs", "send", "-t", token);
}

void zfs_cmd_receive(struct zfs_argv *a, const char *zsnap, bool incremental, bool resumable)
{
	if (incremental && resumable)
		/* zfs receive -u -F -s ZDS@SNAP */
		SET_ARGV(a, "zfs", "receive", "-u", "-F", "-s", zsnap);
	else if (incremental)
		/* zfs receive -u -F ZDS@SNAP */
		SET_ARGV(a, "zfs", "receive", "-u", "-F", zsnap);
	else if (resumable)
		/* zfs receive -u -s ZDS@SNAP */
		SET_ARGV(a, "zfs", "receive", "-u", "-s", zsnap);
	else
		/* zfs receive -u ZDS@SNAP */
		SET_ARGV(a, "zfs", "receive", "-u", zsnap);
}

void zfs_cmd_receive_abort(struct zfs_argv *a, const char *zds)
{
	/* zfs receive -A ZDS */
	SET_ARGV(a, "zfs", "receive", "-A", zds);
}

void zfs_cmd_resume_token(struct zfs_argv *a, const char *zds)
{
	/* zfs get -H -o value receive_resume_token ZDS */
	SET_ARGV(a, "zfs", "get", "-H", "-o", "value", "receive_resume_token", zds);
}

void zfs_cmd_snapshot_size(struct zfs_argv *a, const char *zsnap, bool openzfs)
{
	/* zfs get -Hp -o value logicalreferenced ZDS@SNAP (OpenZFS)
	 * zfs get -Hp -o value referenced,compressratio ZDS@SNAP (zfs-fuse) */
	SET_ARGV(a, "zfs", "get", "-Hp", "-o", "value",
		 openzfs ? "logicalreferenced" : "referenced,compressratio", zsnap);
}

int zfs_snapshot_size_parse(const char *text, bool openzfs, uint64_t *ret)
{
	unsigned long long n;
	double ratio;
	char x, nl;
	int end = 0;

	if (!text || text[0] < '0' || text[0] > '9')
		return -EINVAL;
	if (openzfs) {
		if (sscanf(text, "%llu%n", &n, &end) != 1 ||
		    (text[end] && !(text[end] == '\n' && !text[end + 1])))
			return -EINVAL;
		*ret = n;
		return 0;
	}
	if (sscanf(text, "%llu%c%lf%c%n", &n, &nl, &ratio, &x, &end) != 4 || nl != '\n' ||
	    x != 'x' || (text[end] && !(text[end] == '\n' && !text[end + 1])))
		return -EINVAL;
	if (!(ratio >= 1.0) || ratio > 32768.0)
		return -EINVAL;
	*ret = ratio * (double)n >= 0x1p64 ? UINT64_MAX : (uint64_t)(ratio * (double)n);
	return 0;
}

void zfs_cmd_version(struct zfs_argv *a)
{
	/* zfs version */
	SET_ARGV(a, "zfs", "version");
}

char *zfs_zvol_path(const char *zds)
{
	return strdup_printf("/dev/zvol/%s", zds);
}

bool zfs_resume_token_ok(const char *token)
{
	size_t n = token ? strnlen(token, 65537) : 0;

	if (n < 3 || n > 65536 || strncmp(token, "1-", 2) != 0)
		return false;
	for (size_t i = 2; i < n; i++)
		if (!(token[i] == '-' || (token[i] >= '0' && token[i] <= '9') ||
		      (token[i] >= 'a' && token[i] <= 'f')))
			return false;
	return true;
}

void zfs_cmd_resume_contents(struct zfs_argv *a, const char *token)
{
	/* zfs send -nvt TOKEN */
	SET_ARGV(a, "zfs", "send", "-nvt", token);
}

/* The value of "NAME = VALUE" on a line of its own in text (leading blanks
 * allowed), up to the end of the line; NULL when absent. */
static const char *nv_value(const char *text, const char *name, size_t *ret_len)
{
	size_t n = strlen(name);

	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		const char *p = l;

		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, name, n) == 0 && strncmp(p + n, " = ", 3) == 0) {
			p += n + 3;
			*ret_len = strcspn(p, "\n");
			return p;
		}
	}
	return NULL;
}

int zfs_resume_contents_parse(const char *text, char *toname, size_t len, uint64_t *ret_fromguid)
{
	size_t n = 0;
	const char *v = nv_value(text, "toname", &n);
	char guid[32], *end;

	if (!v || n == 0 || n >= len)
		return -EINVAL;
	memcpy(toname, v, n);
	toname[n] = '\0';
	*ret_fromguid = 0;
	v = nv_value(text, "fromguid", &n);
	if (v) {
		if (n >= sizeof(guid))
			return -EINVAL;
		memcpy(guid, v, n);
		guid[n] = '\0';
		errno = 0;
		*ret_fromguid = strtoull(guid, &end, 0);
		if (errno || end == guid || *end)
			return -EINVAL;
	}
	return 0;
}

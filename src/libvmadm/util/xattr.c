/* SPDX-License-Identifier: MIT */
#include "util/xattr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/xattr.h>

#include "util/macros.h"

/* The value of attribute name of path, or with name NULL the
 * NUL-separated list of its attribute names, in a malloc'd buffer; NULL
 * with a negative errno in *len on failure (-ENODATA: no such attribute). */
static void *fetch(const char *path, const char *name, ssize_t *len)
{
	for (int tries = 0; tries < 4; tries++) {
		ssize_t n = name ? lgetxattr(path, name, NULL, 0) : llistxattr(path, NULL, 0);
		void *buf;

		if (n < 0) {
			*len = -errno;
			return NULL;
		}
		buf = malloc(n ? n : 1);
		if (!buf) {
			*len = -ENOMEM;
			return NULL;
		}
		*len = name ? lgetxattr(path, name, buf, n) : llistxattr(path, buf, n);
		if (*len >= 0)
			return buf;
		*len = -errno;
		free(buf);
		if (*len != -ERANGE) /* ERANGE: it grew meanwhile: again */
			return NULL;
	}
	return NULL;
}

/* The names list; a filesystem without attributes has none (*len 0). */
static char *list_names(const char *path, ssize_t *len)
{
	char *names = fetch(path, NULL, len);

	if (*len == -ENOTSUP)
		*len = 0;
	return names;
}

int xattr_copy(const char *src, const char *dst, struct vm_error *err)
{
	ssize_t len;
	_cleanup_free_ char *names = list_names(src, &len);

	if (len < 0)
		return vm_error_set(err, (int)-len, "list the extended attributes of %s", src);
	for (ssize_t i = 0; i < len; i += strlen(names + i) + 1) {
		ssize_t vlen;
		_cleanup_free_ void *v = fetch(src, names + i, &vlen);

		if (vlen == -ENODATA)
			continue; /* removed since the listing */
		if (vlen < 0)
			return vm_error_set(err, (int)-vlen, "read extended attribute %s of %s",
					    names + i, src);
		if (lsetxattr(dst, names + i, v, vlen, 0) < 0)
			return vm_error_set(err, errno, "set extended attribute %s on %s",
					    names + i, dst);
	}
	return 0;
}

bool xattr_equal(const char *a, const char *b)
{
	ssize_t alen, blen;
	_cleanup_free_ char *an = list_names(a, &alen);
	_cleanup_free_ char *bn = list_names(b, &blen);
	size_t acount = 0, bcount = 0;

	if (alen < 0 || blen < 0 || alen != blen)
		return false;
	for (ssize_t i = 0; i < alen; i += strlen(an + i) + 1)
		acount++;
	for (ssize_t i = 0; i < blen; i += strlen(bn + i) + 1) {
		ssize_t la, lb;
		_cleanup_free_ void *va = fetch(a, bn + i, &la);
		_cleanup_free_ void *vb = fetch(b, bn + i, &lb);

		if (la < 0 || lb < 0 || la != lb || memcmp(va, vb, la) != 0)
			return false;
		bcount++;
	}
	/* every name of b is in a, and both have as many: the same set */
	return acount == bcount;
}

/* SPDX-License-Identifier: MIT */
/*
 * pool-ops: drive one storage pool operation from a test script.
 *
 *   pool-ops ROOT open | available
 *   pool-ops ROOT create-fs DS | create-vol DS SIZE
 *   pool-ops ROOT snapshot DS SNAP | list-snapshots DS | destroy-snapshot DS SNAP
 *   pool-ops ROOT clone DS@SNAP NEWDS [SIZE]
 *   pool-ops ROOT destroy [-r] DS | rename FROM TO
 *   pool-ops ROOT kind DS | used DS | path DS | volpath DS
 *   pool-ops ROOT send DS SNAP [FROM] > stream | receive DS SNAP [FROM] < stream
 *   pool-ops ROOT open-snapshot DS SNAP   what the fd holds: "directory NAME..."
 *                                         (its top level, sorted) or "image SIZE"
 *   pool-ops ROOT rollback DS SNAP
 *
 * The pool is opened with vm_pool_open(ROOT, ROOT/vmadm.conf). Errors print
 * as "pool-ops: MSG" and exit 1. SIZE takes a K, M or G suffix.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/pool.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

static void log_stderr(int level, const char *line, void *ud)
{
	fprintf(stderr, "debug: %s\n", line);
}

static int usage(void)
{
	fprintf(stderr, "usage: pool-ops ROOT COMMAND ARGS... (see the source)\n");
	return 2;
}

static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s)
		return -EINVAL;
	switch (*end) {
	case 'K': v <<= 10; end++; break;
	case 'M': v <<= 20; end++; break;
	case 'G': v <<= 30; end++; break;
	case 'T': v <<= 40; end++; break;
	}
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What open_snapshot's fd holds, read only through the fd. */
static int print_snapshot_fd(int fd, struct vm_error *err)
{
	_cleanup_closedir_ DIR *d = NULL;
	char *names[256];
	struct dirent *de;
	struct stat st;
	size_t n = 0;

	if (fstat(fd, &st) < 0)
		return vm_error_set(err, errno, "stat the snapshot's fd");
	if (!S_ISDIR(st.st_mode)) {
		printf("image %lld\n", (long long)st.st_size);
		return 0;
	}
	d = fdopendir(fcntl(fd, F_DUPFD_CLOEXEC, 3));
	if (!d)
		return vm_error_set(err, errno, "read the snapshot's fd");
	while ((de = readdir(d)) && n < ARRAY_SIZE(names))
		if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
			names[n++] = strdup(de->d_name);
	qsort(names, n, sizeof(char *), cmp_names);
	printf("directory");
	for (size_t i = 0; i < n; i++) {
		printf(" %s", names[i]);
		free(names[i]);
	}
	printf("\n");
	return 0;
}

static const char *kind_name(enum vm_dataset_kind k)
{
	return k == VM_DS_VOLUME ? "volume" : k == VM_DS_FILESYSTEM ? "filesystem" : "none";
}

int main(int argc, char **argv)
{
	_cleanup_(vm_pool_freep) struct vm_pool *pool = NULL;
	_cleanup_free_ char *confpath = NULL;
	struct vm_error err = { 0 };
	const char *root, *cmd;
	json_t *conf;
	json_error_t jerr;
	uint64_t a = 0, b = 0;
	int r = 0;

	if (argc < 3)
		return usage();
	if (getenv("VMADM_DEBUG"))
		vm_log_set_handler(log_stderr, NULL);
	root = argv[1];
	cmd = argv[2];
	argv += 3;
	argc -= 3;
	if (asprintf(&confpath, "%s/vmadm.conf", root) < 0)
		return 1;
	conf = json_load_file(confpath, 0, &jerr);
	if (!conf)
		conf = json_object();
	r = vm_pool_open(root, conf, &pool, &err);
	if (r < 0)
		goto out;

#define NEED(n)                                                                            \
	do {                                                                               \
		if (argc < (n))                                                            \
			return usage();                                                    \
	} while (0)

	if (streq(cmd, "open")) {
		printf("%s %s\n", pool->ops->name, pool->mountpoint);
	} else if (streq(cmd, "available")) {
		r = vm_pool_available(pool, &a, &err);
		if (r >= 0)
			printf("%" PRIu64 "\n", a);
	} else if (streq(cmd, "create-fs")) {
		NEED(1);
		r = vm_pool_create_filesystem(pool, argv[0], &err);
	} else if (streq(cmd, "create-vol")) {
		NEED(2);
		if (parse_size(argv[1], &a) < 0)
			return usage();
		r = vm_pool_create_volume(pool, argv[0], a, &err);
	} else if (streq(cmd, "snapshot")) {
		NEED(2);
		r = vm_pool_snapshot(pool, argv[0], argv[1], &err);
	} else if (streq(cmd, "list-snapshots")) {
		_cleanup_strv_ char **v = NULL;
		NEED(1);
		r = vm_pool_list_snapshots(pool, argv[0], &v, &err);
		for (size_t i = 0; r >= 0 && v[i]; i++)
			printf("%s\n", v[i]);
	} else if (streq(cmd, "destroy-snapshot")) {
		NEED(2);
		r = vm_pool_destroy_snapshot(pool, argv[0], argv[1], &err);
	} else if (streq(cmd, "clone")) {
		NEED(2);
		if (argc > 2 && parse_size(argv[2], &a) < 0)
			return usage();
		r = vm_pool_clone(pool, argv[0], argv[1], a, &err);
	} else if (streq(cmd, "destroy")) {
		bool rec = argc > 0 && streq(argv[0], "-r");
		NEED(rec ? 2 : 1);
		r = vm_pool_destroy(pool, argv[rec ? 1 : 0], rec, &err);
	} else if (streq(cmd, "rename")) {
		NEED(2);
		r = vm_pool_rename(pool, argv[0], argv[1], &err);
	} else if (streq(cmd, "kind")) {
		NEED(1);
		printf("%s\n", kind_name(vm_pool_kind(pool, argv[0])));
	} else if (streq(cmd, "used")) {
		NEED(1);
		r = vm_pool_used(pool, argv[0], &a, &b, &err);
		if (r >= 0)
			printf("%" PRIu64 " %" PRIu64 "\n", a, b);
	} else if (streq(cmd, "path") || streq(cmd, "volpath")) {
		_cleanup_free_ char *p = NULL;
		NEED(1);
		r = vm_dataset_name_check(argv[0], &err);
		if (r >= 0) {
			p = streq(cmd, "path") ? vm_pool_dataset_path(pool, argv[0])
					       : vm_pool_volume_path(pool, argv[0]);
			printf("%s\n", p);
		}
	} else if (streq(cmd, "send")) {
		NEED(2);
		fflush(stdout);
		r = vm_pool_send(pool, argv[0], argv[1], argc > 2 ? argv[2] : NULL, 1, &err);
	} else if (streq(cmd, "open-snapshot")) {
		_cleanup_close_ int fd = -1;
		NEED(2);
		r = vm_pool_open_snapshot(pool, argv[0], argv[1], &fd, &err);
		if (r >= 0)
			r = print_snapshot_fd(fd, &err);
	} else if (streq(cmd, "rollback")) {
		NEED(2);
		r = vm_pool_rollback(pool, argv[0], argv[1], &err);
	} else if (streq(cmd, "receive")) {
		NEED(2);
		r = vm_pool_receive(pool, argv[0], argv[1], argc > 2 ? argv[2] : NULL, 0, &err);
	} else
		return usage();
out:
	json_decref(conf);
	if (r < 0) {
		fprintf(stderr, "pool-ops: %s\n", err.msg);
		return 1;
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/* Dataset and snapshot name checks, path mapping and backend choice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/macros.h"

static int ds_check(const char *ds)
{
	struct vm_error err = { 0 };
	return vm_dataset_name_check(ds, &err);
}

static void test_good_names(void)
{
	CHECK(ds_check("zones/x") == 0);
	CHECK(ds_check("zones/0b2ac7b3-61f5-4f4e-8e43-5ad9cd5b1b2a") == 0);
	CHECK(ds_check("zones/0b2ac7b3-61f5-4f4e-8e43-5ad9cd5b1b2a/data") == 0);
	CHECK(ds_check("zones/0b2ac7b3-61f5-4f4e-8e43-5ad9cd5b1b2a-disk0") == 0);
	CHECK(ds_check("zones/a.b_c:d-e/F9") == 0);
	CHECK(ds_check("zones/a..b") == 0); /* dots inside a component are fine */
}

static void test_bad_names(void)
{
	struct vm_error err = { 0 };

	CHECK(ds_check("") == -EINVAL);
	CHECK(ds_check(NULL) == -EINVAL);
	CHECK(ds_check("zones") == -EINVAL);
	CHECK(ds_check("zones/") == -EINVAL);
	CHECK(ds_check("zones//x") == -EINVAL);
	CHECK(ds_check("zones/x/") == -EINVAL);
	CHECK(ds_check("zones/..") == -EINVAL);
	CHECK(ds_check("zones/.") == -EINVAL);
	CHECK(ds_check("zones/../x") == -EINVAL);
	CHECK(ds_check("zones/x/../../etc") == -EINVAL);
	CHECK(ds_check("zones/.snapshots") == -EINVAL);
	CHECK(ds_check("zones/x/.vmadm-dataset") == -EINVAL);
	CHECK(ds_check("other/x") == -EINVAL);
	CHECK(ds_check("zonesx/y") == -EINVAL);
	CHECK(ds_check("/zones/x") == -EINVAL);
	CHECK(ds_check("zones/x@snap") == -EINVAL);
	CHECK(ds_check("zones/a b") == -EINVAL);
	CHECK(ds_check("zones/a\nb") == -EINVAL);
	CHECK(ds_check("zones/é") == -EINVAL);

	CHECK(vm_dataset_name_check("zones/../x", &err) == -EINVAL);
	CHECK(err.code == EINVAL);
	CHECK_HAS(err.msg, "zones/../x");
	CHECK(vm_dataset_name_check("other/x", &err) == -EINVAL);
	CHECK_HAS(err.msg, "must begin with 'zones/'");
	CHECK(vm_dataset_name_check("zones/a$b", &err) == -EINVAL);
	CHECK_HAS(err.msg, "'$'");
	CHECK(vm_dataset_name_check("zones/a//b", &err) == -EINVAL);
	CHECK_HAS(err.msg, "empty component");
}

static void test_length(void)
{
	char name[300];

	strcpy(name, "zones/");
	memset(name + 6, 'a', 249);
	name[255] = '\0'; /* exactly 255 */
	CHECK(ds_check(name) == 0);
	strcat(name, "a");
	CHECK(ds_check(name) == -EINVAL);
}

static void test_snapshot_names(void)
{
	struct vm_error err = { 0 };
	char longname[250];

	CHECK(vm_snapshot_name_check("s1", &err) == 0);
	CHECK(vm_snapshot_name_check("vmadm-migrate-2026.11.27:10-00", &err) == 0);
	CHECK(vm_snapshot_name_check("", &err) == -EINVAL);
	CHECK(vm_snapshot_name_check(NULL, &err) == -EINVAL);
	CHECK(vm_snapshot_name_check("@s1", &err) == -EINVAL);
	CHECK(vm_snapshot_name_check("a@b", &err) == -EINVAL);
	CHECK(vm_snapshot_name_check("a/b", &err) == -EINVAL);
	CHECK(vm_snapshot_name_check("..", &err) == -EINVAL);
	CHECK(vm_snapshot_name_check(".hidden", &err) == -EINVAL);
	CHECK_HAS(err.msg, ".hidden");
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK(vm_snapshot_name_check(longname, &err) == -EINVAL);
}

static void test_paths(void)
{
	struct vm_pool pool = {.ops = &dir_storage_ops, .mountpoint = (char *)"/var/lib/vmadm/zones"};
	_cleanup_free_ char *a = vm_pool_dataset_path(&pool, "zones/abc");
	_cleanup_free_ char *b = vm_pool_dataset_path(&pool, "zones/abc/data");
	_cleanup_free_ char *c = vm_pool_volume_path(&pool, "zones/abc-disk0");

	CHECK_STR(a, "/var/lib/vmadm/zones/abc");
	CHECK_STR(b, "/var/lib/vmadm/zones/abc/data");
	CHECK_STR(c, "/var/lib/vmadm/zones/abc-disk0/" VOLUME_FILE);
}

static void test_backends(void)
{
	CHECK(vm_storage_ops_by_name("btrfs") == &btrfs_storage_ops);
	CHECK(vm_storage_ops_by_name("dir") == &dir_storage_ops);
	CHECK(vm_storage_ops_by_name("zfs") == &zfs_storage_ops);
	CHECK(vm_storage_ops_by_name("nope") == NULL);
	CHECK(vm_storage_ops_by_name(NULL) == NULL);
	CHECK_STR(btrfs_storage_ops.native_encoding, "btrfs");
	CHECK(dir_storage_ops.native_encoding == NULL);
	CHECK(btrfs_storage_ops.send && btrfs_storage_ops.receive);
	CHECK(!dir_storage_ops.send && !dir_storage_ops.receive);
	CHECK_STR(zfs_storage_ops.native_encoding, "zfs");
	CHECK(zfs_storage_ops.send && zfs_storage_ops.receive);
	/* only zfs keeps some volumes elsewhere (zvols) */
	CHECK(zfs_storage_ops.volume_path && !btrfs_storage_ops.volume_path &&
	      !dir_storage_ops.volume_path);
	{
		struct vm_pool b = {.ops = &btrfs_storage_ops}, d = {.ops = &dir_storage_ops};
		CHECK_STR(vm_pool_native_encoding(&b), "btrfs");
		CHECK(vm_pool_native_encoding(&d) == NULL);
		CHECK(vm_pool_speaks(&b, "btrfs"));
		CHECK(!vm_pool_speaks(&b, "zfs") && !vm_pool_speaks(&b, "tar"));
		CHECK(!vm_pool_speaks(&b, NULL));
		CHECK(!vm_pool_speaks(&d, "btrfs") && !vm_pool_speaks(&d, NULL));
	}
}

static void test_unknown_type(void)
{
	struct vm_error err = { 0 };
	struct vm_pool *pool = NULL;
	json_t *conf = json_pack("{s:s}", "pool_type", "lvm");

	unsetenv("VMADM_POOL_TYPE");
	CHECK(vm_pool_open("/nonexistent-root", conf, &pool, &err) == -EINVAL);
	CHECK(pool == NULL);
	CHECK_HAS(err.msg, "'lvm'");
	CHECK_HAS(err.msg, "btrfs");
	CHECK_HAS(err.msg, "dir");
	/* the environment wins over the config */
	setenv("VMADM_POOL_TYPE", "nosuch", 1);
	CHECK(vm_pool_open("/nonexistent-root", conf, &pool, &err) == -EINVAL);
	CHECK_HAS(err.msg, "'nosuch'");
	unsetenv("VMADM_POOL_TYPE");
	json_decref(conf);
}

/* The wrappers check names before any backend runs, and a missing op
 * says which backend lacks it. */
static void test_wrappers_on_dir_pool(void)
{
	char root[] = "/tmp/test-pool-names.XXXXXX";
	struct vm_error err = { 0 };
	struct vm_pool *pool = NULL;
	json_t *conf = json_pack("{s:s}", "pool_type", "dir");
	char **snaps = NULL;

	CHECK(mkdtemp(root) != NULL);
	CHECK(vm_pool_open(root, conf, &pool, &err) == 0);
	if (!pool)
		goto out;
	CHECK_STR(pool->ops->name, "dir");
	CHECK(vm_pool_create_filesystem(pool, "zones/../escape", &err) == -EINVAL);
	CHECK(vm_pool_create_filesystem(pool, "zones/ok", &err) == 0);
	CHECK(vm_pool_kind(pool, "zones/ok") == VM_DS_FILESYSTEM);
	CHECK(vm_pool_kind(pool, "zones/../ok") == VM_DS_NONE);
	CHECK(vm_pool_snapshot(pool, "zones/ok", "bad/name", &err) == -EINVAL);
	CHECK(vm_pool_snapshot(pool, "zones/ok", "s1", &err) == 0);
	CHECK(vm_pool_list_snapshots(pool, "zones/ok", &snaps, &err) == 0);
	CHECK(snaps && snaps[0] && streq(snaps[0], "s1") && !snaps[1]);
	CHECK(vm_pool_clone(pool, "zones/ok", "zones/c", 0, &err) == -EINVAL);
	CHECK(vm_pool_send(pool, "zones/ok", "s1", NULL, 1, &err) == -EOPNOTSUPP);
	CHECK_HAS(err.msg, "dir");
	CHECK(vm_pool_rename(pool, "zones/ok", "zones/ok/inner", &err) == -EINVAL);
	CHECK(vm_pool_destroy(pool, "zones/ok", false, &err) == 0);
	CHECK(vm_pool_kind(pool, "zones/ok") == VM_DS_NONE);
out:
	strv_free(snaps);
	vm_pool_free(pool);
	json_decref(conf);
	fs_rm_rf(root, &err);
}

int main(void)
{
	RUN(test_good_names);
	RUN(test_bad_names);
	RUN(test_length);
	RUN(test_snapshot_names);
	RUN(test_paths);
	RUN(test_backends);
	RUN(test_unknown_type);
	RUN(test_wrappers_on_dir_pool);
	CHECK_EXIT();
}

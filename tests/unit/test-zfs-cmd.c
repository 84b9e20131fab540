/* SPDX-License-Identifier: MIT */
/*
 * The zfs command lines of storage/zfs-cmd.h, word for word. The
 * OpenZFS-only ones (zvols, resumable receives) cannot run on these
 * machines (zfs-fuse has neither): these checks are what holds them to
 * zfs-create(8), zfs-set(8), zfs-send(8) and zfs-receive(8). The others run
 * in tests/integration/zfs.sh as well.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "storage/zfs-cmd.h"

/* The argv joined with single spaces (static buffer). */
static const char *joined(const struct zfs_argv *a)
{
	static char buf[1024];
	size_t n = 0;

	buf[0] = '\0';
	for (int i = 0; i < ZFS_ARGV_MAX && a->argv[i]; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", a->argv[i]);
	return buf;
}

/* argv is NULL-terminated within ZFS_ARGV_MAX */
static bool terminated(const struct zfs_argv *a)
{
	for (int i = 0; i < ZFS_ARGV_MAX; i++)
		if (!a->argv[i])
			return true;
	return false;
}

static void test_create_volume(void)
{
	struct zfs_argv a;

	zfs_cmd_create_volume(&a, "zones/u-disk0", 10737418240ull);
	CHECK_STR(joined(&a), "zfs create -s -V 10737418240 zones/u-disk0");
	CHECK(terminated(&a));
}

static void test_set_volsize(void)
{
	struct zfs_argv a;

	zfs_cmd_set_volsize(&a, "tank/u-disk1", 1ull << 40);
	CHECK_STR(joined(&a), "zfs set volsize=1099511627776 tank/u-disk1");
}

static void test_set_quota(void)
{
	struct zfs_argv a;

	zfs_cmd_set_quota(&a, "zones/u", 10ull << 30);
	CHECK_STR(joined(&a), "zfs set quota=10737418240 zones/u");
	zfs_cmd_set_quota(&a, "zones/u", 0);
	CHECK_STR(joined(&a), "zfs set quota=none zones/u");
}

static void test_send(void)
{
	struct zfs_argv a;

	zfs_cmd_send(&a, "zones/u@vmadm-1", NULL);
	CHECK_STR(joined(&a), "zfs send -p zones/u@vmadm-1");
	zfs_cmd_send(&a, "zones/u@vmadm-2", "vmadm-1");
	CHECK_STR(joined(&a), "zfs send -p -i @vmadm-1 zones/u@vmadm-2");
	/* refilled: nothing of the longer argv stays behind */
	zfs_cmd_send(&a, "zones/u@s", NULL);
	CHECK_STR(joined(&a), "zfs send -p zones/u@s");
	CHECK(a.argv[4] == NULL && a.argv[5] == NULL);
}

static void test_send_resume(void)
{
	struct zfs_argv a;

	zfs_cmd_send_resume(&a, "1-e604ea4bf-e0-789c63a2");
	CHECK_STR(joined(&a), "zfs send -t 1-e604ea4bf-e0-789c63a2");
}

static void test_receive(void)
{
	struct zfs_argv a;

	zfs_cmd_receive(&a, "zones/u.recv@s", false, false);
	CHECK_STR(joined(&a), "zfs receive -u zones/u.recv@s");
	zfs_cmd_receive(&a, "zones/u.recv@s", true, false);
	CHECK_STR(joined(&a), "zfs receive -u -F zones/u.recv@s");
	zfs_cmd_receive(&a, "zones/u.recv@s", false, true);
	CHECK_STR(joined(&a), "zfs receive -u -s zones/u.recv@s");
	zfs_cmd_receive(&a, "zones/u.recv@s", true, true);
	CHECK_STR(joined(&a), "zfs receive -u -F -s zones/u.recv@s");
	/* never a name taken from the stream */
	for (int i = 0; a.argv[i]; i++)
		CHECK(strcmp(a.argv[i], "-d") != 0 && strcmp(a.argv[i], "-e") != 0);
}

static void test_resume_state(void)
{
	struct zfs_argv a;

	zfs_cmd_resume_token(&a, "zones/u.recv-disk0");
	CHECK_STR(joined(&a), "zfs get -H -o value receive_resume_token zones/u.recv-disk0");
	zfs_cmd_receive_abort(&a, "zones/u.recv-disk0");
	CHECK_STR(joined(&a), "zfs receive -A zones/u.recv-disk0");
	zfs_cmd_version(&a);
	CHECK_STR(joined(&a), "zfs version");
}

static void test_zvol_path(void)
{
	char *p = zfs_zvol_path("zones/u-disk0");

	CHECK_STR(p, "/dev/zvol/zones/u-disk0");
	free(p);
}

static void test_token_ok(void)
{
	char big[70000];

	CHECK(zfs_resume_token_ok("1-e604ea4bf-e0-789c63a2"));
	CHECK(!zfs_resume_token_ok(NULL));
	CHECK(!zfs_resume_token_ok(""));
	CHECK(!zfs_resume_token_ok("-"));		      /* zfs get's "none" */
	CHECK(!zfs_resume_token_ok("2-abc"));		      /* another version */
	CHECK(!zfs_resume_token_ok("1-abc -o mountpoint=/")); /* a space: not one word */
	CHECK(!zfs_resume_token_ok("1-ABC"));		      /* zfs writes lower case */
	CHECK(!zfs_resume_token_ok("1-ab\ncd"));
	memset(big, 'a', sizeof(big));
	big[0] = '1';
	big[1] = '-';
	big[sizeof(big) - 1] = '\0';
	CHECK(!zfs_resume_token_ok(big)); /* more than 64 KiB */
}

/* `zfs send -nvt TOKEN`'s report, as OpenZFS prints it. */
static void test_resume_contents(void)
{
	const char *full = "resume token contents:\nnvlist version: 0\n\tobject = 0x6\n"
			   "\toffset = 0x3c0000\n\tbytes = 0x3c4f48\n"
			   "\ttoguid = 0x4d3bb0b8ef02321f\n\ttoname = tank/u-disk0@vmadm-1\n"
			   "full send of tank/u-disk0@vmadm-1 estimated size is 10.2M\n";
	const char *incr = "resume token contents:\nnvlist version: 0\n"
			   "\tfromguid = 0xc0b1551148241d5a\n\tobject = 0x1\n"
			   "\ttoguid = 0x4d3bb0b8ef02321f\n\ttoname = tank/u@vmadm-2\n";
	struct zfs_argv a;
	char name[64];
	uint64_t from = 1;

	zfs_cmd_resume_contents(&a, "1-abc");
	CHECK_STR(joined(&a), "zfs send -nvt 1-abc");
	CHECK(zfs_resume_contents_parse(full, name, sizeof(name), &from) == 0);
	CHECK_STR(name, "tank/u-disk0@vmadm-1");
	CHECK(from == 0);
	CHECK(zfs_resume_contents_parse(incr, name, sizeof(name), &from) == 0);
	CHECK_STR(name, "tank/u@vmadm-2");
	CHECK(from == 0xc0b1551148241d5aull);
	/* no toname, a name too long, a bad guid */
	CHECK(zfs_resume_contents_parse("resume token contents:\n", name, sizeof(name), &from) ==
	      -EINVAL);
	CHECK(zfs_resume_contents_parse(full, name, 8, &from) == -EINVAL);
	CHECK(zfs_resume_contents_parse("\tfromguid = 0xzz\n\ttoname = a@b\n", name, sizeof(name),
					&from) == -EINVAL);
	/* "toname" only as a whole name at the start of a line */
	CHECK(zfs_resume_contents_parse("\tnottoname = x@y\n", name, sizeof(name), &from) ==
	      -EINVAL);
}

/* The measure of a snapshot a native send declares: the command, and its
 * output read as zfs-fuse and OpenZFS print it; anything else refused. */
static void test_snapshot_size(void)
{
	struct zfs_argv a;
	uint64_t v = 7;

	zfs_cmd_snapshot_size(&a, "zones/u@s", true);
	CHECK_STR(joined(&a), "zfs get -Hp -o value logicalreferenced zones/u@s");
	zfs_cmd_snapshot_size(&a, "zones/u@s", false);
	CHECK_STR(joined(&a), "zfs get -Hp -o value referenced,compressratio zones/u@s");
	CHECK(zfs_snapshot_size_parse("1074913280\n", true, &v) == 0 && v == 1074913280ull);
	CHECK(zfs_snapshot_size_parse("1074913280\n1.00x\n", false, &v) == 0 && v == 1074913280ull);
	CHECK(zfs_snapshot_size_parse("1744896\n224.56x\n", false, &v) == 0 &&
	      v == (uint64_t)(1744896 * 224.56));
	CHECK(zfs_snapshot_size_parse("1000\n2.50x", false, &v) == 0 && v == 2500);
	v = 7;
	CHECK(zfs_snapshot_size_parse("", false, &v) == -EINVAL);
	CHECK(zfs_snapshot_size_parse("-5\n1.00x\n", false, &v) == -EINVAL);
	CHECK(zfs_snapshot_size_parse("1000\n", false, &v) == -EINVAL);	       /* no ratio */
	CHECK(zfs_snapshot_size_parse("1000\n0.50x\n", false, &v) == -EINVAL); /* below 1 */
	CHECK(zfs_snapshot_size_parse("1000\n40000.00x\n", false, &v) == -EINVAL);
	CHECK(zfs_snapshot_size_parse("1000\nnanx\n", false, &v) == -EINVAL);
	CHECK(zfs_snapshot_size_parse("1000\n1.00\n", false, &v) == -EINVAL); /* no x */
	CHECK(zfs_snapshot_size_parse("1000\n1.00x\nmore\n", false, &v) == -EINVAL);
	CHECK(zfs_snapshot_size_parse("1000\n1.00x\n", true, &v) == -EINVAL); /* two lines */
	CHECK(zfs_snapshot_size_parse("none\n", true, &v) == -EINVAL);
	CHECK(v == 7); /* untouched by a refusal */
	/* a ratio times a count past 2^64 saturates */
	CHECK(zfs_snapshot_size_parse("18446744073709551615\n2.00x\n", false, &v) == 0 &&
	      v == UINT64_MAX);
}

int main(void)
{
	RUN(test_create_volume);
	RUN(test_set_volsize);
	RUN(test_set_quota);
	RUN(test_send);
	RUN(test_send_resume);
	RUN(test_receive);
	RUN(test_resume_state);
	RUN(test_zvol_path);
	RUN(test_token_ok);
	RUN(test_resume_contents);
	RUN(test_snapshot_size);
	CHECK_EXIT();
}

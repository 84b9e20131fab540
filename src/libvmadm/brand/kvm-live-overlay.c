/* SPDX-License-Identifier: MIT */
/*
 * Live migration of kvm VMs, the source's disks on overlays
 * (brand/kvm-live.h): source_begin puts every disk under a fresh qcow2
 * overlay at the snapshot instant, and the overlays are folded back into
 * the disk images afterwards, with QEMU running or not.
 */
#include "kvm-live.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brand/kvm.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/spawn.h"

/* The overlay of a disk lives in the pool (it survives a stop, unlike the
 * run directory), under the reserved name .live: ROOT/zones/.live/UUID-diskN.qcow2 */
static char *overlay_path(struct vm_node *node, const char *uuid, const char *disk)
{
	return vm_node_path(node, "zones/.live/%s-%s.qcow2", uuid, disk);
}

/* Remove ROOT/zones/.live when no overlay is left in it. */
static void overlay_dir_tidy(struct vm_node *node)
{
	_cleanup_free_ char *dir = vm_node_path(node, "zones/.live");

	if (dir)
		(void)rmdir(dir); /* ENOTEMPTY: another VM's migration */
}

void kvm_live_overlay_node(char *buf, size_t len, const char *disk)
{
	snprintf(buf, len, KVM_LIVE_OVL_NODE_FMT, disk);
}

void kvm_live_nbd_node(char *buf, size_t len, const char *disk)
{
	snprintf(buf, len, KVM_LIVE_NBD_NODE_FMT, disk);
}

int kvm_live_overlays_commit(struct vm_node *node, struct qmp *q, const char *uuid,
			     const struct live_disk *disks, size_t n, struct vm_error *err)
{
	char ovl[64], job[64];
	int64_t deadline = kvm_live_now_ms() + 120000;
	bool committing[KVM_LIVE_MAX_DISKS] = {false};
	int r;

	for (size_t i = 0; i < n; i++) {
		kvm_live_overlay_node(ovl, sizeof(ovl), disks[i].node);
		if (!kvm_live_node_exists(q, ovl))
			continue;
		snprintf(job, sizeof(job), KVM_LIVE_COMMIT_PREFIX "%s", disks[i].node);
		/* block-commit {"job-id": J, "device": OVL} (top: the active
		 * layer, base: its backing, the disk node) */
		r = kvm_live_qcmd(q, "block-commit",
				  json_pack("{s:s, s:s}", "job-id", job, "device", ovl), NULL, err);
		if (r < 0)
			return vm_error_prefix(err, "put %s back on its image", disks[i].node);
		committing[i] = true;
	}
	for (;;) {
		_cleanup_json_ json_t *jobs = NULL;
		json_t *j;
		size_t k;

		r = kvm_live_our_jobs(q, KVM_LIVE_COMMIT_PREFIX, &jobs, err);
		if (r < 0)
			return r;
		if (json_array_size(jobs) == 0)
			break;
		json_array_foreach (jobs, k, j) {
			if (json_is_true(json_object_get(j, "ready")))
				kvm_live_qcmd_quiet(
				    q, "job-complete",
				    json_pack("{s:O}", "id", json_object_get(j, "device")));
		}
		if (kvm_live_now_ms() > deadline)
			return vm_error_setx(err, ETIMEDOUT,
					     "put the disks of %s back on their images: commit "
					     "still running after 120 s",
					     uuid);
		usleep(50 * 1000);
	}
	{
		_cleanup_free_ char *why = kvm_live_job_error(q, KVM_LIVE_COMMIT_PREFIX);
		if (why)
			return vm_error_setx(
			    err, EIO, "put the disks of %s back on their images: %s", uuid, why);
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);
		struct vm_error ignore = {0};

		if (!committing[i])
			continue;
		kvm_live_overlay_node(ovl, sizeof(ovl), disks[i].node);
		r = kvm_live_qcmd(q, "blockdev-del", json_pack("{s:s}", "node-name", ovl), NULL,
				  err);
		if (r < 0)
			return vm_error_prefix(err, "put %s back on its image", disks[i].node);
		if (path)
			fs_rm_rf(path, &ignore);
	}
	overlay_dir_tidy(node);
	return 0;
}

/* qemu-img commit -d OVERLAY: into the backing named in its header. */
int kvm_live_overlays_commit_offline(struct vm_node *node, const char *uuid,
				     const struct live_disk *disks, size_t n, struct vm_error *err)
{
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);
		struct vm_error ignore = {0};
		int r;

		if (!path)
			return vm_error_set(err, ENOMEM, "commit overlay");
		if (!fs_exists(path))
			continue;
		{
			/* qemu-img commit -q -d -f qcow2 OVERLAY */
			/* clang-format off */
			const char *argv[] = { "qemu-img", "commit", "-q", "-d", "-f", "qcow2",
					       path, NULL };
			/* clang-format on */
			struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
			r = vm_spawn_run(&sp, err);
			vm_spawn_clear(&sp);
		}
		if (r < 0)
			return vm_error_prefix(err, "fold the writes of the migration into %s's %s",
					       uuid, disks[i].node);
		fs_rm_rf(path, &ignore);
	}
	overlay_dir_tidy(node);
	return 0;
}

/* --- Source: begin -------------------------------------------------------- */

int kvm_live_load_running(struct vm_node *node, json_t *vm, struct live_disk *disks, size_t *ndisks,
			  struct qmp **ret_q, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	_cleanup_json_ json_t *status = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	const char *st;
	int r;

	if (!uuid)
		return vm_error_setx(err, EINVAL, "live migration: VM record has no uuid");
	r = kvm_live_record_disks(vm, disks, ndisks, err);
	if (r >= 0)
		r = kvm_qmp_open(node, uuid, &q, err);
	if (r >= 0)
		r = kvm_live_qcmd(q, "query-status", NULL, &status, err);
	if (r < 0)
		return r;
	st = json_string_value(json_object_get(status, "status"));
	if (!st || !streq(st, "running"))
		return vm_error_setx(err, EINVAL, "VM %s is '%s', live migration needs it running",
				     uuid, st ? st : "?");
	*ret_q = TAKE_PTR(q);
	return 0;
}

/* Every disk has a dataset and a path, and runs on no overlay yet. */
static int begin_check(struct vm_node *node, struct qmp *q, const char *uuid,
		       const struct live_disk *disks, size_t ndisks, struct vm_error *err)
{
	char ovl[64];

	for (size_t i = 0; i < ndisks; i++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);

		kvm_live_overlay_node(ovl, sizeof(ovl), disks[i].node);
		if (!disks[i].ds || !disks[i].path)
			return vm_error_setx(err, EINVAL,
					     "live migration of %s: %s has no dataset or path",
					     uuid, disks[i].node);
		if (!path)
			return vm_error_set(err, ENOMEM, "live migration of %s", uuid);
		if (fs_exists(path) || kvm_live_node_exists(q, ovl))
			return vm_error_setx(err, EBUSY,
					     "live migration of %s: %s already runs on an overlay "
					     "(%s): another migration is under way, or cancel the "
					     "last one",
					     uuid, disks[i].node, path);
	}
	return 0;
}

/* The overlay file of disk d, backed by its image, as large. */
static int overlay_create(struct vm_node *node, const char *uuid, const struct live_disk *d,
			  struct vm_error *err)
{
	_cleanup_free_ char *path = overlay_path(node, uuid, d->node);
	struct stat st;
	_cleanup_free_ char *size = strdup_printf(
	    "%lld", stat(d->path, &st) == 0 ? (long long)st.st_size : (long long)d->size);
	/* qemu-img create -q -f qcow2 -u -b DISK.raw -F raw OVERLAY SIZE
	 * (-u: QEMU holds the image; the size is given) */
	/* clang-format off */
	const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u",
			       "-b", d->path, "-F", "raw", path, size, NULL };
	/* clang-format on */
	struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
	int r;

	if (!path || !size)
		return vm_error_set(err, ENOMEM, "overlay");
	r = vm_spawn_run(&sp, err);
	vm_spawn_clear(&sp);
	return r;
}

/* The overlay file of disk d as a block node of QEMU (not yet in the
 * guest's path: the transaction puts it there). */
static int overlay_add(struct vm_node *node, struct qmp *q, const char *uuid,
		       const struct live_disk *d, struct vm_error *err)
{
	_cleanup_free_ char *path = overlay_path(node, uuid, d->node);
	char ovl[64];

	kvm_live_overlay_node(ovl, sizeof(ovl), d->node);
	/* blockdev-add {"driver": "qcow2", "node-name": OVL,
	 *   "file": {"driver": "file", "filename": PATH, "aio": "threads",
	 *            "cache": {"direct": true}},
	 *   "cache": {"direct": true}, "backing": null} */
	return kvm_live_qcmd(q, "blockdev-add",
			     json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:{s:b}}, s:{s:b}, s:n}",
				       "driver", "qcow2", "node-name", ovl, "file", "driver",
				       "file", "filename", path ? path : "", "aio", "threads",
				       "cache", "direct", 1, "cache", "direct", 1, "backing"),
			     NULL, err);
}

/* How far a begin got, for its undo. */
struct begin {
	struct vm_node *node;
	struct qmp *q;
	struct vm_pool *pool;
	const char *uuid, *snap;
	const struct live_disk *disks;
	size_t nsnap, nfile, nnode; /* snapshots, overlay files, overlay nodes made */
	bool paused;
};

/* Undo a failed begin: the overlay nodes and files, the snapshots, and
 * the guest runs again. */
static void begin_undo(struct begin *b)
{
	struct vm_error ignore = {0};
	char ovl[64];

	for (size_t i = 0; i < b->nnode; i++) {
		kvm_live_overlay_node(ovl, sizeof(ovl), b->disks[i].node);
		kvm_live_qcmd_quiet(b->q, "blockdev-del", json_pack("{s:s}", "node-name", ovl));
	}
	for (size_t i = 0; i < b->nfile; i++) {
		_cleanup_free_ char *path = overlay_path(b->node, b->uuid, b->disks[i].node);
		kvm_live_overlay_node(ovl, sizeof(ovl), b->disks[i].node);
		if (path && !kvm_live_node_exists(b->q, ovl))
			fs_rm_rf(path, &ignore);
	}
	overlay_dir_tidy(b->node);
	for (size_t i = 0; i < b->nsnap; i++)
		vm_pool_destroy_snapshot(b->pool, b->disks[i].ds, b->snap, &ignore);
	if (b->paused)
		kvm_live_qcmd_quiet(b->q, "cont", NULL);
}

/* source_begin: stop, a pool snapshot of every disk, an overlay file and
 * node per disk, one transaction of blockdev-snapshot, cont. */
int kvm_live_source_begin(struct vm_node *node, json_t *vm, const char *snap, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	struct live_disk disks[KVM_LIVE_MAX_DISKS];
	_cleanup_json_ json_t *actions = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	_cleanup_free_ char *dir = vm_node_path(node, "zones/.live");
	struct begin b = {.node = node, .uuid = uuid, .snap = snap, .disks = disks};
	size_t ndisks;
	char ovl[64];
	int r;

	r = vm_snapshot_name_check(snap, err);
	if (r >= 0)
		r = kvm_live_load_running(node, vm, disks, &ndisks, &q, err);
	if (r >= 0)
		r = vm_node_pool(node, &b.pool, err);
	if (r >= 0 && !dir)
		r = vm_error_set(err, ENOMEM, "overlay directory");
	if (r >= 0)
		r = fs_mkdir_p(dir, 0700, err);
	if (r < 0)
		return vm_error_prefix(err, "live migration of %s: begin", uuid ? uuid : "?");
	b.q = q;
	r = begin_check(node, q, uuid, disks, ndisks, err);
	if (r < 0)
		return r;

	actions = json_array();
	for (size_t i = 0; actions && i < ndisks; i++) {
		kvm_live_overlay_node(ovl, sizeof(ovl), disks[i].node);
		json_array_append_new(actions,
				      json_pack("{s:s, s:{s:s, s:s}}", "type", "blockdev-snapshot",
						"data", "node", disks[i].node, "overlay", ovl));
	}
	if (!actions)
		return vm_error_set(err, ENOMEM, "live migration of %s: begin", uuid);

	/* stop drains the guest's I/O: the disk files (cache.direct) are then
	 * exactly what the guest wrote, and stay so until the overlays take
	 * the writes. */
	r = kvm_live_qcmd(q, "stop", NULL, NULL, err);
	if (r < 0)
		goto fail;
	b.paused = true;
	for (; b.nsnap < ndisks; b.nsnap++) {
		r = vm_pool_snapshot(b.pool, disks[b.nsnap].ds, snap, err);
		if (r < 0)
			goto fail;
	}
	for (; b.nfile < ndisks; b.nfile++) {
		r = overlay_create(node, uuid, &disks[b.nfile], err);
		if (r < 0)
			goto fail;
	}
	for (; b.nnode < ndisks; b.nnode++) {
		r = overlay_add(node, q, uuid, &disks[b.nnode], err);
		if (r < 0)
			goto fail;
	}
	r = kvm_live_qcmd(q, "transaction", json_pack("{s:O}", "actions", actions), NULL, err);
	if (r < 0)
		goto fail;
	r = kvm_live_qcmd(q, "cont", NULL, NULL, err);
	if (r < 0) {
		/* The overlays are in place: commit them back, then resume. */
		struct vm_error ignore = {0};
		b.nnode = 0;
		kvm_live_overlays_commit(node, q, uuid, disks, ndisks, &ignore);
		goto fail;
	}
	return 0;

fail:
	vm_error_prefix(err, "live migration of %s: begin", uuid);
	begin_undo(&b);
	return r;
}

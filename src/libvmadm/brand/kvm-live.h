/* SPDX-License-Identifier: MIT */
/*
 * Live migration of a kvm VM with its local disks: the QEMU side of
 * brand/live.h, shared by kvm-live.c (QMP helpers, TLS, the target),
 * kvm-live-overlay.c (the source's disks on overlays: begin, fold back) and
 * kvm-live-source.c (the migration itself, its rollback, cancel). Not API:
 * callers go through kvm_brand_ops.live.
 *
 * Disks. At the snapshot instant (guest paused) each disk node diskN gets
 * a qcow2 overlay (ROOT/zones/.live/UUID-diskN.qcow2, backing: the disk
 * image) through blockdev-snapshot: from then on the guest's writes land in
 * the overlay, so the overlay holds exactly what changed since the pool
 * snapshot. blockdev-mirror sync "top" of the overlay to an NBD client node
 * on the target's export then copies only that, and mirrors new writes as
 * they come (background mode: guest writes never wait for the network).
 * At pre-switchover (guest paused, I/O drained) block-job-cancel of the
 * ready mirrors completes them with the target consistent.
 *
 * Why not a dirty bitmap: QEMU 7.2's blockdev-mirror takes no bitmap
 * (Proxmox patches drive-mirror for that), and blockdev-backup
 * sync=bitmap, which does, puts a copy-before-write filter in the guest's
 * write path whose failure (link cut) fails the guest's write with EIO:
 * measured, the guest's workload died. The overlay keeps the guest's writes
 * local whatever the network does.
 *
 * The overlay goes away on every path: on failure an active block-commit
 * folds it back into the disk image (the guest runs on), on success
 * `qemu-img commit` folds it in after the source QEMU quit, so the stopped
 * source VM's images hold every write up to the switchover.
 *
 * The target info (target_prepare's JSON, source_migrate's input):
 *   {"host": H, "migrate_port": P, "nbd_port": Q,
 *    "disks": [{"node": "disk0", "export": "disk0"}, ...]}
 *
 * Security: QEMU's migration stream and NBD traffic use TLS with a
 * pre-shared key, the node key ROOT/vmadm.key (64 hex chars), through
 * tls-creds-psk objects (user "vmadm"); a peer with another key fails the
 * handshake.
 *
 * Failure: anything before the target resumes cancels the migration
 * (yank first, so nothing waits on a dead link), ends the mirrors, removes
 * the NBD nodes and the TLS object, folds the overlays back on the source
 * (whose guest runs on as if nothing happened), and the caller aborts the
 * target. Stalls (no byte moved for stall_ms) and the timeout are ours:
 * QEMU itself waits forever on a cut link.
 *
 * A link cut in the few ms between QEMU pausing the guest for the
 * switchover and the mirrors' end can leave QEMU's main loop in a drain of
 * an NBD write until TCP gives up (~15 min, guest paused), deaf to QMP. The
 * rollback therefore yanks out of band first: exec-oob "yank" on the
 * second monitor (RUN/qmp-oob.sock, oob negotiated), which QEMU runs in the
 * monitor's own thread; the stuck request fails and the main loop goes on.
 * (The command that noticed the hang waits KVM_LIVE_QMP_MS first.)
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "brand/live.h"
#include "node/node.h"
#include "qmp/qmp.h"
#include "util/error.h"

#define KVM_LIVE_QMP_MS	       10000
#define KVM_LIVE_TICK_MS       100
#define KVM_LIVE_RAM_TICK_MS   10
#define KVM_LIVE_JOB_PREFIX    "vmadm-live-"
#define KVM_LIVE_MIRROR_PREFIX "vmadm-live-mirror-"
#define KVM_LIVE_COMMIT_PREFIX "vmadm-live-commit-"
#define KVM_LIVE_NBD_NODE_FMT  "vmadm-live-nbd-%s"
#define KVM_LIVE_OVL_NODE_FMT  "vmadm-live-ovl-%s"

/* Names QEMU objects carry (for tests and for cleanup). */
#define KVM_LIVE_TLS_ID	  "vmadm-live-tls"
#define KVM_LIVE_PSK_USER "vmadm"

#define KVM_LIVE_MAX_DISKS 64

static inline int64_t kvm_live_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- QMP (kvm-live.c) ----------------------------------------------------- */

/* qmp_command with args taken (a json_pack result; NULL when it failed). */
int kvm_live_qcmd(struct qmp *q, const char *cmd, json_t *args, json_t **ret, struct vm_error *err);

/* Best effort, for cleanup paths: the error is logged, never returned. */
void kvm_live_qcmd_quiet(struct qmp *q, const char *cmd, json_t *args);

/* query-migrate's status of m, "none" when it has none. */
const char *kvm_live_migrate_status(json_t *m);

/* The realtime of a QMP event, in microseconds. */
int64_t kvm_live_event_us(json_t *ev);

/* Is there a block node of that name? */
bool kvm_live_node_exists(struct qmp *q, const char *name);

/* Our block jobs (prefix) as a JSON array (query-block-jobs filtered). */
int kvm_live_our_jobs(struct qmp *q, const char *prefix, json_t **ret, struct vm_error *err);

/* The error of a finished job of ours, from its queued BLOCK_JOB_COMPLETED
 * event (NULL when none or when it ended well); malloc'ed. */
char *kvm_live_job_error(struct qmp *q, const char *prefix);

/* "tcp:HOST:PORT" ("tcp:[HOST]:PORT" for IPv6); malloc'ed. */
char *kvm_live_tcp_uri(const char *host, int port);

/* --- The VM's disks and the node key (kvm-live.c) -------------------------- */

struct live_disk {
	char node[32];	  /* disk0 */
	const char *ds;	  /* zones/UUID-disk0, borrowed from the record */
	const char *path; /* its image file, borrowed from the record */
	int64_t size;	  /* bytes */
};

/* The disks of a kvm record that move: not cdroms. -EOPNOTSUPP for a VM of
 * another brand. ret holds KVM_LIVE_MAX_DISKS. */
int kvm_live_record_disks(json_t *vm, struct live_disk *ret, size_t *ret_n, struct vm_error *err);

/* Write RUN/tls/keys.psk ("vmadm:HEXKEY") from ROOT/vmadm.key and add the
 * tls-creds-psk object KVM_LIVE_TLS_ID for endpoint ("client" | "server"). */
int kvm_live_tls_setup(struct vm_node *node, struct qmp *q, const char *uuid, const char *endpoint,
		       struct vm_error *err);

/* Remove the TLS object (q may be NULL: QEMU is gone) and RUN/tls. */
void kvm_live_tls_teardown(struct vm_node *node, struct qmp *q, const char *uuid);

/* --- Overlays (kvm-live-overlay.c) ---------------------------------------- */

/* The block node of disk's overlay, and of its NBD client to the target. */
void kvm_live_overlay_node(char *buf, size_t len, const char *disk);
void kvm_live_nbd_node(char *buf, size_t len, const char *disk);

/* Put each disk back on its own image while QEMU runs: an active
 * block-commit of the overlay into the disk node (the guest writes on
 * meanwhile), job-complete at READY, blockdev-del of the overlay node, the
 * file removed. Disks without an overlay node are skipped. */
int kvm_live_overlays_commit(struct vm_node *node, struct qmp *q, const char *uuid,
			     const struct live_disk *disks, size_t n, struct vm_error *err);

/* With QEMU gone: fold each overlay file left into its disk image
 * (qemu-img commit) and remove it. */
int kvm_live_overlays_commit_offline(struct vm_node *node, const char *uuid,
				     const struct live_disk *disks, size_t n, struct vm_error *err);

/* The running VM vm's disks and a QMP connection to it; -EINVAL when the
 * guest does not run. */
int kvm_live_load_running(struct vm_node *node, json_t *vm, struct live_disk *disks, size_t *ndisks,
			  struct qmp **ret_q, struct vm_error *err);

/* --- The slots (brand/live.h) --------------------------------------------- */

int kvm_live_source_begin(struct vm_node *node, json_t *vm, const char *snap, struct vm_error *err);
int kvm_live_source_migrate(struct vm_node *node, json_t *vm, json_t *info,
			    const struct vm_live_opts *o, struct vm_live_report *rep,
			    struct vm_error *err);
int kvm_live_source_cancel(struct vm_node *node, json_t *vm, struct vm_error *err);

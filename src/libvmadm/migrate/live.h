/* SPDX-License-Identifier: MIT */
/*
 * Live migration of a kvm VM with its local disks: the QEMU side.
 *
 * The transport (vmadmd) calls these in this order:
 *
 *   source                                    target
 *   vm_live_source_begin(snap)                  (pause, pool snapshots of
 *                                                every disk + an overlay per
 *                                                disk, at one instant)
 *   send the snapshots (pool stream) ------->  receive the datasets
 *                                              vm_live_target_prepare()
 *                                <----------- target info (JSON)
 *   vm_live_source_migrate(info)
 *     disk phase: mirror what the guest wrote since the snapshot
 *     RAM phase: precopy, convergence (mirrors follow new writes)
 *     switchover: mirrors end while paused, then complete
 *   ok ------------------------------------->  vm_live_target_finish()
 *   failure -------------------------------->  vm_live_target_abort()
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
 * (The command that noticed the hang waits QMP_MS first.)
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdint.h>

#include "node/node.h"
#include "util/error.h"

/* Names QEMU objects and block jobs carry (for tests and for cleanup). */
#define VM_LIVE_TLS_ID	 "vmadm-live-tls"
#define VM_LIVE_PSK_USER "vmadm"

/* Where the target listens: host is an address of the target node that the
 * source reaches; a port of 0 picks a free one. */
struct vm_live_params {
	const char *host;
	int migrate_port;
	int nbd_port;
};

/* What the source needs from the target: vm_live_target_prepare's JSON
 *   {"host": H, "migrate_port": P, "nbd_port": Q,
 *    "disks": [{"node": "disk0", "export": "disk0"}, ...]}
 * parsed by vm_live_target_info_from_json (strings borrowed from the JSON,
 * which must outlive the struct). */
#define VM_LIVE_MAX_DISKS 64
struct vm_live_target_info {
	const char *host;
	int migrate_port;
	int nbd_port;
	size_t ndisks;
	struct {
		const char *node;   /* the disk's format node, on both sides */
		const char *export; /* the NBD export name on the target */
	} disks[VM_LIVE_MAX_DISKS];
};

int vm_live_target_info_from_json(json_t *j, struct vm_live_target_info *ret, struct vm_error *err);

/* A progress event; phase is "disk", "ram" or "switchover". */
struct vm_live_progress {
	const char *phase;
	int64_t elapsed_ms;
	int64_t disk_dirty;	 /* bytes the mirrors still have to copy */
	int64_t disk_copied;	 /* bytes the mirrors copied so far */
	int64_t ram_transferred; /* query-migrate ram.transferred */
	int64_t ram_remaining;
	int64_t ram_total;
	int64_t dirty_rate;  /* pages/s (ram.dirty-pages-rate) */
	int64_t dirty_syncs; /* ram.dirty-sync-count */
	double mbps;
	int64_t downtime_limit_ms; /* current limit (raised when not converging) */
};

struct vm_live_opts {
	int64_t downtime_limit_ms; /* --downtime-limit; 0: 300 */
	int64_t max_downtime_ms;   /* the limit is raised up to this; 0: 10 x the limit */
	int64_t max_bandwidth;	   /* bytes/s for RAM; 0: unlimited (10 GiB/s) */
	int64_t disk_speed;	   /* bytes/s per disk mirror; 0: unlimited */
	int64_t timeout_ms;	   /* whole migration; 0: 600 s */
	int64_t stall_ms;	   /* no byte moved for this long is a failure; 0: 10 s */
	int full_copy;		   /* the target has no base: mirror whole disks */
	/* Polled every tick: non-zero cancels the migration (a SIGINT
	 * handler sets it); NULL: never. */
	const volatile sig_atomic_t *cancel;
	void (*progress)(const struct vm_live_progress *p, void *userdata);
	void *userdata;
};

struct vm_live_report {
	int64_t total_ms;	    /* from vm_live_source_migrate's start to completion */
	int64_t downtime_ms;	    /* QEMU's "downtime" */
	int64_t setup_ms;	    /* QEMU's "setup-time" */
	int64_t ram_transferred;    /* bytes */
	int64_t disk_copied;	    /* bytes the mirrors copied */
	int64_t downtime_limit_ms;  /* the last limit in force */
	int64_t switchover_disk_ms; /* ending the mirrors, guest paused */
	/* When QEMU paused the guest for the switchover: the host's realtime
	 * in microseconds, from the STOP event (0 if not seen). With the
	 * target's resumed_us (same clock on one host) it gives the pause the
	 * guest lived through: under TCG the guest's own clocks stop while it
	 * is paused, so records in guest time do not show it. */
	int64_t stopped_us;
};

/* --- Target -------------------------------------------------------------- */

/* Start QEMU for the VM record vm (its datasets already received) with
 * -incoming defer -S, TLS with the node key, migrate-incoming on
 * tcp:HOST:MPORT, an NBD server on HOST:NPORT exporting every disk node
 * writable. *ret_info gets the target info JSON (see above). On failure
 * QEMU is killed and its run directory removed. */
int vm_live_target_prepare(struct vm_node *node, json_t *vm, const struct vm_live_params *p,
			   json_t **ret_info, struct vm_error *err);

/* After the source reported completion: wait for the incoming migration to
 * complete (timeout_ms), stop the NBD server, resume the guest and check it
 * runs. *ret_resumed_us (may be NULL) gets the host realtime in
 * microseconds of QEMU's RESUME event (0 if not seen). On failure the
 * caller aborts. */
int vm_live_target_finish(struct vm_node *node, const char *uuid, int timeout_ms,
			  int64_t *ret_resumed_us, struct vm_error *err);

/* Kill the target QEMU of uuid (if ours) and remove its run directory.
 * Idempotent. */
int vm_live_target_abort(struct vm_node *node, const char *uuid, struct vm_error *err);

/* --- Source -------------------------------------------------------------- */

/* With the guest paused for the instant: take pool snapshot DS@snap of
 * every disk volume and put every disk node under a fresh overlay (one QMP
 * transaction), then resume. -EBUSY when an overlay is there already. On
 * failure the snapshots and overlays are removed and the guest runs on. */
int vm_live_source_begin(struct vm_node *node, const char *uuid, const char *snap,
			 struct vm_error *err);

/* Put the source back as it was before vm_live_source_begin, whatever is
 * left: a migration, mirrors, NBD nodes (the same rollback as after a
 * failure, for a caller whose send failed, or whose migrating process
 * died), then the overlays folded into the images (online with
 * block-commit, or with qemu-img when the VM is not running). The snapshots
 * stay (a base for a later incremental send). -EALREADY when the migration
 * had completed (the VM runs on the target). Idempotent. */
int vm_live_source_cancel(struct vm_node *node, const char *uuid, struct vm_error *err);

/* Migrate the running VM uuid to the target t (see the top of this file).
 * On success the source QEMU has been quit and its run directory removed,
 * rep is filled, and the caller lets the target finish. On failure the
 * source guest runs as before (no job, NBD node, bitmap or TLS object of
 * ours left, the overlays folded back), rep holds what was measured, and err says why (for no
 * convergence: the remaining bytes, dirty rate, throughput and the last
 * downtime limit). */
int vm_live_source_migrate(struct vm_node *node, const char *uuid,
			   const struct vm_live_target_info *t, const struct vm_live_opts *o,
			   struct vm_live_report *rep, struct vm_error *err);

/* SPDX-License-Identifier: MIT */
/*
 * Live migration, the hypervisor's side: the sub-table a brand fills when
 * its VMs can move while they run (struct vm_brand_ops.live; only kvm,
 * brand/kvm-live*.c). The transport (migrate/modes/live.c) calls the slots in
 * this order:
 *
 *   source                                    target
 *   source_begin(snap)                          (the guest paused for an
 *                                                instant: a pool snapshot of
 *                                                every disk, then the guest
 *                                                runs on, its new writes
 *                                                kept apart)
 *   send the snapshots (pool stream) ------->  receive the datasets
 *                                              target_prepare()
 *                                <----------- target info (JSON)
 *   source_migrate(info)
 *     disk phase: copy what the guest wrote since the snapshot
 *     RAM phase: precopy, convergence
 *     switchover: the guest paused, the rest copied
 *   ok ------------------------------------->  target_finish()
 *   failure -------------------------------->  target_abort()
 *
 * A failed or abandoned source goes back with source_cancel. The target
 * info is the brand's business: the transport carries it as it is.
 */
#pragma once

#include <jansson.h>
#include <signal.h>
#include <stdint.h>

#include "node/node.h"
#include "util/error.h"

/* Where the target listens: host is an address of the target node that the
 * source reaches; a port of 0 picks a free one. */
struct vm_live_params {
	const char *host;
	int migrate_port;
	int nbd_port;
};

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
	int64_t total_ms;	    /* from source_migrate's start to completion */
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

struct vm_brand_live_ops {
	/* --- Source ------------------------------------------------------ */

	/* With the guest of the running VM vm (its record) paused for the
	 * instant: take pool snapshot DS@snap of every disk volume and keep
	 * the guest's writes from then on apart from them, then resume.
	 * -EBUSY when an earlier migration left its state in place. On
	 * failure the snapshots and that state are removed and the guest
	 * runs on. */
	int (*source_begin)(struct vm_node *node, json_t *vm, const char *snap,
			    struct vm_error *err);

	/* Migrate the running VM vm to the target that target_prepare
	 * described in info (see above). On success the source hypervisor
	 * has been quit, the VM's runtime files are gone, its disks hold
	 * every write up to the switchover, rep is filled, and the caller
	 * lets the target finish. On failure (info unusable included) the
	 * source guest runs as before, with what source_begin set up undone
	 * (as source_cancel does), rep holds what was measured, and err says
	 * why (for no convergence: the remaining bytes, dirty rate,
	 * throughput and the last downtime limit). */
	int (*source_migrate)(struct vm_node *node, json_t *vm, json_t *info,
			      const struct vm_live_opts *o, struct vm_live_report *rep,
			      struct vm_error *err);

	/* Put the source back as it was before source_begin, whatever is
	 * left (for a caller whose send failed, or whose migrating process
	 * died): the VM runs on its own disks again, holding every write,
	 * online or not. The snapshots stay (a base for a later incremental
	 * send). -EALREADY when the migration had completed (the VM runs on
	 * the target). Idempotent. */
	int (*source_cancel)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* --- Target ------------------------------------------------------ */

	/* Start the hypervisor for the VM record vm (its datasets already
	 * received and installed under their final names) waiting for the
	 * incoming migration on p's host, with the node key (ROOT/vmadm.key)
	 * as the secret both sides must hold. *ret_info gets what the source
	 * needs to reach it (JSON, for source_migrate). On failure nothing of
	 * it runs and its runtime files are gone. */
	int (*target_prepare)(struct vm_node *node, json_t *vm, const struct vm_live_params *p,
			      json_t **ret_info, struct vm_error *err);

	/* After the source reported completion: wait for the incoming
	 * migration of uuid to complete (timeout_ms), resume the guest and
	 * check it runs. *ret_resumed_us (may be NULL) gets the host realtime
	 * in microseconds of the resume (0 if not seen). On failure the
	 * caller aborts. */
	int (*target_finish)(struct vm_node *node, const char *uuid, int timeout_ms,
			     int64_t *ret_resumed_us, struct vm_error *err);

	/* Kill the target hypervisor of uuid (if ours) and remove its runtime
	 * files; the record may not exist yet. Idempotent. */
	int (*target_abort)(struct vm_node *node, const char *uuid, struct vm_error *err);
};

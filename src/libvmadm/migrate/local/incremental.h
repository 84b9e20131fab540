/* SPDX-License-Identifier: MIT */
/*
 * Incremental migration (`vmadm send -I`): the building blocks that the
 * network mode ops put together.
 *
 * Source                                    Target
 *   vm_incr_snapshot_all(S1)                 -
 *   vm_incr_send_pass(NULL, S1) ---stream--> vm_incr_receive_pass: VM held
 *   vm_incr_snapshot_all(S2)                   ("receiving", datasets under
 *   vm_incr_send_pass(S1, S2)  ---stream-->    zones/UUID.recv..., @S2)
 *   vm_incr_drop_snapshot(S1)                  (its @S1 is gone)
 *   ... (vm_incr_should_stop decides) ...
 *   stop the VM, snapshot, last pass  ------>  vm_incr_finish: installed
 *
 * Pass 1 is a full stream; every later pass carries, per dataset, only what
 * changed since the previous pass's snapshot: `btrfs send -p` for native
 * streams, the "blocks-delta" and "tar-delta" encodings otherwise
 * (docs/stream-format.md, section 3).
 *
 * The target keeps a held receive in its journal ROOT/recv/UUID.json with
 * phase "held", "snapshot": the snapshot its temps hold, and "declared":
 * what each temp's last pass declared it takes (DS_BEGIN "used"; a delta
 * may grow it by the pool's free space). A held receive
 * survives other vmadm commands (recovery leaves it alone); it ends with
 * vm_incr_finish (installed) or vm_incr_abort (removed).
 *
 * Migration snapshots are named "vmadm-send-I..." so that the cold path's
 * clean-up (recv_commit) also removes any left on the installed datasets.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/migrate.h"
#include "node/node.h"
#include "util/error.h"

#define VM_INCR_SNAP_PREFIX "vmadm-send-I"

/* ---- the stop rule (pure) ---- */

/* One pass made while the VM ran: its stream bytes and how long it took. */
struct vm_incr_pass {
	uint64_t bytes;
	double seconds;
};

struct vm_incr_rule {
	unsigned downtime_target_ms; /* 0: default 2000 */
	unsigned max_passes;	     /* passes while the VM runs; 0: default 8 */
};

#define VM_INCR_DEFAULT_DOWNTIME_MS 2000u
#define VM_INCR_DEFAULT_MAX_PASSES  8u

/* Given the n passes made so far while the VM runs (passes[0] the full one),
 * should the source stop the VM and make the final pass now? True when the
 * last pass's bytes could be sent within the downtime target at the rate
 * measured over all passes (bytes / seconds; no measurable time counts as
 * instant), when n has
 * reached max_passes, or when the last delta is not smaller than the one
 * before (the guest writes at least as fast as we send). False, i.e. make
 * another pass, otherwise; n == 0 is always false. *ret_why (may be NULL)
 * gets a sentence saying why, valid until the next call in this thread. */
bool vm_incr_should_stop(const struct vm_incr_pass *passes, size_t n,
			 const struct vm_incr_rule *rule, const char **ret_why);

/* ---- source side ---- */

/* A snapshot name for pass number pass (1-based), unique over time:
 * "vmadm-send-I<pass>-<unix time>-<pid>". */
void vm_incr_snapshot_name(unsigned pass, char *buf, size_t size);

/* Snapshot every dataset of VM uuid as name, at one instant: a running kvm
 * guest is paused over QMP (stop ... cont), a running joyent container is
 * frozen (liblxc freeze ... unfreeze) around the snapshots; a stopped VM is
 * snapshotted as it is. On failure no snapshot called name is left and the
 * guest runs again as before. */
int vm_incr_snapshot_all(struct vm_node *node, const char *uuid, const char *name,
			 struct vm_error *err);

/* Remove snapshot name of every dataset of VM uuid (missing ones are
 * fine): a pass's snapshot once the next pass landed, or all of them
 * after a failure. */
int vm_incr_drop_snapshot(struct vm_node *node, const char *uuid, const char *name,
			  struct vm_error *err);

/* Write a stream of VM uuid to fd whose datasets come from snapshot snap
 * (taken by vm_incr_snapshot_all), incremental from from_snap (NULL: full,
 * for pass 1). opts->portable picks the portable encodings; opts->compress
 * zstd. The VM is neither stopped nor changed and no snapshot is removed.
 * *ret_bytes (may be NULL) gets the stream bytes written. */
int vm_incr_send_pass(struct vm_node *node, const char *uuid, const char *from_snap,
		      const char *snap, int fd, const struct vm_send_opts *opts,
		      uint64_t *ret_bytes, struct vm_error *err);

/* ---- target side ---- */

/* What a pass left on the target. */
struct vm_incr_held {
	char uuid[37];
	char snapshot[201]; /* the snapshot the held datasets now hold */
	uint64_t bytes;	    /* stream bytes read by this pass */
};

/* Read one pass from fd (prefix as vm_receive). A full stream (no
 * from_snapshot) starts a held receive like vm_receive, but stops short of
 * installing: the datasets stay under their temp names with the pass's
 * snapshot, the record is a placeholder in state "receiving", the journal
 * phase is "held". A full stream for a VM that is already held restarts it
 * from zero. An incremental stream needs a held receive of that VM whose
 * snapshot is the stream's from_snapshot: each dataset's delta is applied
 * and the old snapshot destroyed. opts->force as for vm_receive (pass 1
 * only); opts->uuid and ->brand, when set, the VM every pass must carry.
 * On failure of pass 1 nothing is left; on failure of a later pass
 * the held receive is dropped too (its datasets may be half-applied), so a
 * re-run starts from a full pass. */
int vm_incr_receive_pass(struct vm_node *node, int fd, const void *prefix, size_t prefix_len,
			 const struct vm_recv_opts *opts, struct vm_incr_held *ret,
			 struct vm_error *err);

/* The snapshot a held receive of uuid holds (malloc'ed into *ret), or
 * -ENOENT when there is none: where a resumed migration continues from. */
int vm_incr_held_snapshot(struct vm_node *node, const char *uuid, char **ret, struct vm_error *err);

/* Install the held VM: temps renamed into place, migration snapshots
 * removed, record written in state "stopped". *ret_vm (may be NULL) gets
 * the record. */
int vm_incr_finish(struct vm_node *node, const char *uuid, json_t **ret_vm, struct vm_error *err);

/* Drop a held receive of uuid: its temps and placeholder record go. 0 when
 * there was none. */
int vm_incr_abort(struct vm_node *node, const char *uuid, struct vm_error *err);

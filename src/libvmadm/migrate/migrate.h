/* SPDX-License-Identifier: MIT */
/*
 * Moving a VM: `vmadm send` writes a VM (config + every dataset) as a stream
 * (docs/stream-format.md) to an fd; `vmadm receive` reads one and installs
 * the VM. The network transport (vmadmd) carries the same stream.
 *
 * Promises:
 * - send snapshots every dataset of a stopped VM at one instant, and leaves
 *   the source VM intact whatever happens; its snapshots are removed at the
 *   end;
 * - receive lands every dataset under a temporary name (zones/UUID.recv...),
 *   checks every checksum and the END record, and only then renames them
 *   into place and writes the record; on failure nothing is left, and a
 *   receive that was killed is rolled back (or, past the point of no return,
 *   forward) by the next vmadm command (vm_recv_recover).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "node/node.h"
#include "util/error.h"

/* Progress of a transfer, for the front end to show. */
struct vm_progress {
	const char *phase;   /* "stop", "snapshot", "send", "receive", "install", "done" */
	const char *dataset; /* full name of the dataset moving, or NULL */
	uint64_t bytes;	     /* stream bytes so far */
	uint64_t total;	     /* estimated stream bytes, 0 if unknown */
};
typedef void (*vm_progress_fn)(const struct vm_progress *p, void *userdata);

/* The options of a send, to a file (vm_send) or, inside struct
 * migrate_send_opts, to a node. */
struct vm_send_opts {
	bool portable;	      /* portable encodings even where the pool has a native one */
	bool compress;	      /* zstd inside the records */
	int stop_timeout;     /* seconds a running VM gets to shut down (default 60) */
	const char *snapshot; /* a fixed name for the send snapshots: reused if every
			       * dataset has it, never destroyed by vm_send (the
			       * caller drops them: vm_send_drop_snapshots) */
	bool own_fd;	      /* vm_send closes fd before it returns: as soon as the
			       * stream is written (fsync'ed first where fd is a
			       * file), before the snapshots go, so that a reader
			       * sees the stream's end without waiting for that */
	json_t *skip;	      /* dataset names to leave out of the stream, or NULL */
	json_t *resume;	      /* dataset name -> the receiver's token of a cut resumable
			       * native receive of it: only its rest is sent (zfs
			       * send -t), or NULL */
	vm_progress_fn progress;
	void *userdata;
};

/* Stop the VM if it runs, snapshot its datasets, write the stream to fd,
 * remove the snapshots. The VM stays, stopped. *ret_was_running (may be
 * NULL) tells whether it was running before. While the snapshots of a send
 * without opts->snapshot exist, ROOT/run/send-snap-UUID names them, so that
 * vm_send_recover removes them if the sender is killed. */
int vm_send(struct vm_node *node, const char *uuid, int fd, const struct vm_send_opts *opts,
	    bool *ret_was_running, struct vm_error *err);

/* Undo what killed senders left: the snapshots of a send to a file
 * (ROOT/run/send-snap-UUID whose VM is not locked by a running send), and
 * the overlays of a live source (its brand's live source_cancel, when its
 * ROOT/locks/UUID.live.lock is no longer held). Appends a line per VM it
 * cleaned to *notes. */
int vm_send_recover(struct vm_node *node, json_t **notes, struct vm_error *err);

/* Destroy the send snapshots snap of the VM's datasets (those that exist). */
int vm_send_drop_snapshots(struct vm_node *node, const char *uuid, const char *snap,
			   struct vm_error *err);

/* Estimated stream size of each dataset of the VM (JSON object name ->
 * bytes) and the total. */
int vm_send_estimate(struct vm_node *node, const char *uuid, json_t **ret, uint64_t *ret_total,
		     struct vm_error *err);

struct vm_recv_opts {
	bool force; /* replace an existing stopped VM of the same UUID */
	/* Network receives (migrate/transport/session.c): on failure, keep the datasets
	 * already complete for a resume (journal phase "kept", expiring
	 * hold_secs later, tagged with instant) instead of undoing them. */
	bool hold;
	int64_t hold_secs;
	const char *instant;
	/* A kept journal (recv_journal_load) to continue: its complete
	 * datasets are not in the stream. The caller holds no lock. */
	json_t *resume;
	/* A migration's BEGIN named the VM (uuid) and its brand: a stream of
	 * another VM, or of another brand, is refused before anything is
	 * made. NULL: any (a file, `vmadm receive`). */
	const char *uuid;
	const char *brand;
	vm_progress_fn progress;
	void *userdata;
};

/* Receive a stream from fd. prefix/prefix_len are bytes of the stream the
 * caller already read from fd (to tell a stream from JSON), or NULL/0.
 * Returns the installed record (state "stopped"). */
int vm_receive(struct vm_node *node, int fd, const void *prefix, size_t prefix_len,
	       const struct vm_recv_opts *opts, json_t **ret_vm, struct vm_error *err);

/* The low-level flow: create the record of a bare JSON config in state
 * "receiving", with its datasets to be received by hand. */
int vm_receive_config(struct vm_node *node, json_t *config, bool force, json_t **ret_vm,
		      struct vm_error *err);

/* `vmadm install UUID`: every dataset of a "receiving" VM is there -> make it
 * "stopped"; else fail listing the missing datasets. */
int vm_install(struct vm_node *node, const char *uuid, struct vm_error *err);

/* Roll back (or forward) receives that were killed; see above. Appends a
 * line per receive it cleaned to *notes. */
int vm_recv_recover(struct vm_node *node, json_t **notes, struct vm_error *err);

/* Accept a record that came from another node, and rewrite it for this
 * one. Refused (naming the property and the reason) unless it passes
 * vm_validate_received (create's rules) and this node's policy: its nics
 * name only tags the node defines (vmadm.conf nic_tags), a joyent VM's
 * filesystems only host paths under receive_filesystem_roots (the
 * brand's check_received). Then: paths under this node's pool
 * and dataset names derived from the UUID, nic interfaces by position,
 * runtime fields and migrated_to dropped, received_at set to now, state
 * receiving. */
int vm_record_localize(struct vm_node *node, json_t *vm, struct vm_error *err);

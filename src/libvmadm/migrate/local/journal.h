/* SPDX-License-Identifier: MIT */
/*
 * The receive journal ROOT/recv/UUID.json, written before a receive makes
 * anything and removed when it is done or undone:
 *   { "uuid", "phase": "receiving" | "committing", "temps": [names],
 *     "finals": [names], "old_datasets": [names] (a replaced VM's),
 *     "record": the record to install, "placeholder": bool }
 *   "done": [finals complete], and for a partial kept for a resume:
 *   "phase": "kept", "expires": unix time, "instant": the source's snapshot
 * While "receiving", a dead receive is undone (temps destroyed, placeholder
 * record removed); once "committing" (every checksum verified) it is
 * finished (temps renamed into place, record written).
 */
#pragma once

#include <jansson.h>

#include "node/node.h"
#include "storage/pool.h"
#include "util/error.h"

/* "zones/UUID..." -> "zones/UUID.recv..." (malloc'ed). */
char *recv_temp_name(const char *uuid, const char *final);

/* ROOT/recv/UUID.json, or *ret NULL (and 0) when there is none. */
int recv_journal_load(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err);

/* Keep a failed receive's complete datasets for a resume: destroy the temps
 * not listed in "done" (nor in "resume": the kept part of a cut resumable
 * receive, final name -> its token), and write the journal as phase
 * "kept" until now + secs (the placeholder record stays). */
int recv_hold(struct vm_node *node, struct vm_pool *pool, json_t *journal, int64_t secs,
	      struct vm_error *err);

int recv_journal_write(struct vm_node *node, json_t *journal, struct vm_error *err);
void recv_journal_remove(struct vm_node *node, const char *uuid);

/* Undo a receive in phase "receiving": destroy the temps that exist, remove
 * the placeholder record. */
int recv_rollback(struct vm_node *node, struct vm_pool *pool, json_t *journal,
		  struct vm_error *err);

/* The owner lock ROOT/locks/UUID.KIND.lock of a migration that outlives
 * the VM's own lock: held while the migration runs, by the vmadmd of a
 * network incremental receive (KIND "incr": between passes the VM's lock is
 * free and its held receive is in use) and by the `vmadm send -L` of a
 * live source (KIND "live": the VM runs on overlays). When that process
 * dies the file stays, unlocked, for the next command's recovery.
 * migrate_owner_lock returns the locked fd, or -EBUSY when another process
 * holds it; migrate_owner_unlock removes the file and closes fd;
 * migrate_owner_dead returns the fd of a file left by a dead owner, now
 * locked by us, or -1 (no file, or its owner lives). */
int migrate_owner_lock(struct vm_node *node, const char *uuid, const char *kind,
		       struct vm_error *err);
void migrate_owner_unlock(struct vm_node *node, const char *uuid, const char *kind, int fd);
int migrate_owner_dead(struct vm_node *node, const char *uuid, const char *kind);

/* Finish a receive in phase "committing": destroy the replaced VM's
 * datasets, rename temps into place, write the record. Idempotent, so that
 * it can be resumed after a crash at any point. */
int recv_commit(struct vm_node *node, struct vm_pool *pool, json_t *journal, struct vm_error *err);

/* Put every temp of a held receive's journal back to its snapshot base (a
 * pass that failed or died half-way), first removing the staging a native
 * receive of the pass left, and drop a snapshot called partial that the
 * pass may have taken (partial may be NULL). */
int recv_journal_reset(struct vm_pool *pool, json_t *journal, const char *base, const char *partial,
		       struct vm_error *err);

/* Recovery of a held receive whose owner died (the caller holds the VM's
 * lock): a pass that died half-way ("applying") is undone, its temps back
 * to the held snapshot and the staging a native receive left removed; the
 * journal object loses "applying" (the caller writes it). */
int recv_journal_undo_pass(struct vm_pool *pool, json_t *journal, struct vm_error *err);

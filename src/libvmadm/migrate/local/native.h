/* SPDX-License-Identifier: MIT */
/* Native (btrfs/zfs send) streams carried inside our records: the pool's
 * tool runs in a thread on one end of a pipe, the stream code pumps the
 * other end. */
#pragma once

#include "storage/pool.h"
#include "stream/stream.h"
#include "util/error.h"

/* Write the native stream of ds@snap (incremental from from_snap if not
 * NULL) into the writer's current dataset. Fails if the tool fails (its
 * stderr in the message) or the writer does. */
int migrate_native_send(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, struct stream_writer *w, struct vm_error *err);

/* Feed the reader's current dataset into the pool's native receive of ds.
 * On failure of either side, ds is not left behind. */
int migrate_native_receive(struct vm_pool *pool, const char *ds, const char *snap,
			   const char *from_snap, struct stream_reader *r, struct vm_error *err);

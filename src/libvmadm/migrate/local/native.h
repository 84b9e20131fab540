/* SPDX-License-Identifier: MIT */
/* Native (btrfs/zfs send) streams carried inside our records: the pool's
 * tool runs in a thread on one end of a pipe, the stream code pumps the
 * other end. */
#pragma once

#include "storage/pool.h"
#include "stream/stream.h"
#include "util/error.h"

/* Write the native stream of ds@snap (incremental from from_snap if not
 * NULL) into the writer's current dataset; with token (the receiver's, of
 * a cut receive of it), only the rest of it (vm_pool_send_resume). Fails if
 * the tool fails (its stderr in the message) or the writer does. */
int migrate_native_send(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, const char *token, struct stream_writer *w,
			struct vm_error *err);

/* Feed the reader's current dataset into the pool's native receive of ds.
 * With ret_token, the receive is resumable (vm_pool_receive_resumable):
 * one cut by the end of the reader's data fails with -EAGAIN and keeps its
 * state, *ret_token its token; with token, the data is the rest of the
 * receive cut at token. Otherwise, on failure of either side, ds is not
 * left behind. */
int migrate_native_receive(struct vm_pool *pool, const char *ds, const char *snap,
			   const char *from_snap, const char *token, char **ret_token,
			   struct stream_reader *r, struct vm_error *err);

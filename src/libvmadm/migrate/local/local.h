/* SPDX-License-Identifier: MIT */
/* Pieces of send.c and receive.c shared with incremental.c; not API. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "migrate/migrate.h"
#include "node/node.h"
#include "storage/pool.h"
#include "stream/stream.h"
#include "util/error.h"
#include "util/uuid.h"

/* Write dataset ds (of VM uuid, whose datasets are names) from snapshot
 * snap into the stream: as vm_send does when from_snap is NULL, else
 * incremental from ds@from_snap (`btrfs send -p`, or the "blocks-delta" /
 * "tar-delta" encodings when portable or the pool has no native stream).
 * token (NULL: none): the receiver's, of a cut resumable native receive of
 * it; in the native encoding only its rest is sent. */
int migrate_send_dataset(struct vm_pool *pool, struct stream_writer *w, json_t *names,
			 const char *uuid, const char *ds, const char *snap, const char *from_snap,
			 bool portable, const char *token, struct vm_error *err);

/* Top-level names a tree send of ds leaves out: the dataset marker and its
 * child datasets' mount points. NULL-terminated, malloc'ed. */
char **migrate_child_names(json_t *names, const char *ds);

/* vm_receive's receive of one full dataset of the stream into temp, as
 * the VM's config makes dataset final (migrate_check_shape), refusing one
 * whose declared "used" does not fit in the pool, checked once it landed
 * (migrate_check_landed). */
int migrate_receive_full(struct vm_pool *pool, struct stream_reader *rd,
			 const struct stream_dataset *sd, json_t *config, const char *final,
			 const char *temp, struct vm_error *err);

/* A dataset in a native encoding into temp (incremental from from_snap
 * when not NULL; token, ret_token as for migrate_native_receive, NULL for
 * a receive that is not resumable): 0 when the pool's own receive took it,
 * -EPROTONOSUPPORT when it is another backend's encoding, 1 when sd is in
 * a portable encoding, for the caller to take. */
int migrate_receive_native(struct vm_pool *pool, struct stream_reader *rd,
			   const struct stream_dataset *sd, const char *temp, const char *from_snap,
			   const char *token, char **ret_token, struct vm_error *err);

/* Is sd what config makes dataset final: a filesystem, or a volume of
 * the size its disk has (zones/UUID-diskN: disks[N].size MiB)? -EINVAL
 * saying why not, or when the config has no size for that disk. */
int migrate_check_shape(json_t *config, const struct stream_dataset *sd, const char *final,
			struct vm_error *err);

/* After a dataset's data landed in temp (a full or an incremental one): a
 * volume is exactly its config's size, the VM's own dataset passes its
 * brand's check_received_zone (a joyent VM's has a real root directory). */
int migrate_check_landed(struct vm_pool *pool, json_t *config, const char *final, const char *temp,
			 struct vm_error *err);

/* May VM uuid be (re)placed on this node (force: replace a stopped one)?
 * *ret_old gets the record being replaced, or NULL. */
int migrate_check_target(struct vm_node *node, const char *uuid, bool force, json_t **ret_old,
			 struct vm_error *err);

/* Is the full dataset name one of the VM's volumes ("zones/UUID-diskN")? */
bool migrate_is_volume_name(const char *uuid, const char *name);

/* The start every receive shares: open the stream (prefix: bytes already
 * read from fd), read its config, check it is the VM opts->uuid and brand
 * opts->brand announced (when set), localize it for this node (its policy
 * included), take the VM's lock, open the pool. opts may be NULL. The
 * caller owns *ret_rd, *ret_config and *ret_lock on success. */
int migrate_recv_begin(struct vm_node *node, int fd, const void *prefix, size_t prefix_len,
		       const struct vm_recv_opts *opts, struct stream_reader **ret_rd,
		       json_t **ret_config, char ret_uuid[VM_UUID_LEN + 1], int *ret_lock,
		       struct vm_pool **ret_pool, struct vm_error *err);

/* Destroy snapshot snap of each dataset in names (missing ones are fine). */
void migrate_drop_snapshots(struct vm_pool *pool, json_t *names, const char *snap);

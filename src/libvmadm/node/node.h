/* SPDX-License-Identifier: MIT */
/*
 * A node: everything one vmadm host owns, under one root directory
 * ($VMADM_ROOT, default /var/lib/vmadm):
 *
 *   ROOT/vmadm.conf      node settings (JSON object)
 *   ROOT/vms/UUID.json   VM records
 *   ROOT/locks/UUID.lock per-VM locks (UUID.incr.lock, UUID.live.lock: a
 *                        migration's owner, migrate/local/journal.h)
 *   ROOT/run/            sockets, pidfiles (QMP, console, vmadmd)
 *   ROOT/log/            logs
 *   ROOT/images/UUID.json installed image manifests (see image/image.h)
 *   ROOT/recv/UUID.json  journals of receives in progress (migrate/local/journal.h)
 *   ROOT/zones/          the pool's mount point: dataset zones/X is ROOT/zones/X
 *   ROOT/pool.img        the btrfs loop file, when the root is not on btrfs
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "storage/pool.h"
#include "util/error.h"
#include "util/macros.h"

#define VM_DEFAULT_ROOT "/var/lib/vmadm"

struct vm_node {
	char *root;           /* absolute path */
	json_t *conf;         /* contents of vmadm.conf ({} when absent) */
	struct vm_pool *pool; /* opened on first vm_node_pool() */
};

/* Open the node at $VMADM_ROOT (or the default), creating the root and its
 * directories on first use and reading vmadm.conf. Does not touch the pool. */
int vm_node_open(struct vm_node **ret, struct vm_error *err);
void vm_node_free(struct vm_node *node);
DEFINE_CLEANUP(struct vm_node, vm_node_free)
#define _cleanup_node_ _cleanup_(vm_node_freep)

/* The node's pool, opened (and created or mounted) on first call. */
int vm_node_pool(struct vm_node *node, struct vm_pool **ret, struct vm_error *err);

/* Path under the root (malloc'ed): vm_node_path(node, "vms/%s.json", uuid). */
char *vm_node_path(struct vm_node *node, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Settings: the environment variable env (if not NULL and set) wins over the
 * config key, which wins over def. */
const char *vm_node_conf_str(struct vm_node *node, const char *key, const char *env,
			     const char *def);
int64_t vm_node_conf_int(struct vm_node *node, const char *key, const char *env, int64_t def);

/* The node's nic tags, vmadm.conf "nic_tags": {"TAG": "BRIDGE", ...}, the
 * Linux bridge each tag's nics join. *ret is borrowed from the node's
 * config, NULL when the node defines none (then no nic joins a host
 * network). A malformed setting is -EINVAL naming it. */
int vm_node_nic_tags(struct vm_node *node, json_t **ret, struct vm_error *err);

/* Set a config key and write vmadm.conf atomically. */
int vm_node_conf_set(struct vm_node *node, const char *key, json_t *value,
		     struct vm_error *err);

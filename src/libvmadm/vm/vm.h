/* SPDX-License-Identifier: MIT */
/*
 * VM lifecycle on a node: create, get, update, delete, start, stop. Each call
 * takes the VM's lock for its duration and leaves the VM whole or gone.
 */
#pragma once

struct vm_pool;

#include <jansson.h>
#include <stdbool.h>

#include "node/node.h"
#include "util/error.h"
#include "vm/props.h"

/* Create a VM from a create payload (validated here). Makes the record and
 * every dataset (cloning images where the payload names one) and returns the
 * record with state "stopped". On failure nothing is left: no record, no
 * dataset. */
int vm_create(struct vm_node *node, json_t *payload, json_t **ret_vm, struct vm_error *err);

/* The record of uuid with its live state (state, zone_state, pid) filled in
 * from the brand. */
int vm_get(struct vm_node *node, const char *uuid, json_t **ret_vm, struct vm_error *err);

/* Every VM's record with live state, as a JSON array. */
int vm_get_all(struct vm_node *node, json_t **ret, struct vm_error *err);

/* Apply an update payload (validated here); returns the new record. */
/* Give the VM's own dataset (zfs_filesystem, with its children) the VM's
 * "quota" (GiB, 0: none) where the pool enforces quotas (zfs); nothing
 * where it does not, or the VM has no quota. */
int vm_quota_apply(struct vm_pool *pool, json_t *vm, struct vm_error *err);

int vm_update(struct vm_node *node, const char *uuid, json_t *payload, json_t **ret_vm,
	      struct vm_error *err);

/* Stop the VM if it runs (at once, as SmartOS does), destroy its datasets
 * and remove its record. */
int vm_delete(struct vm_node *node, const char *uuid, struct vm_error *err);

/* Start / stop / reboot through the VM's brand. */
int vm_start(struct vm_node *node, const char *uuid, struct vm_error *err);
int vm_stop(struct vm_node *node, const char *uuid, int timeout_secs, bool force,
	    struct vm_error *err);
int vm_reboot(struct vm_node *node, const char *uuid, struct vm_error *err);


/* Fill the live state of a record from its brand. */
void vm_fill_runtime(struct vm_node *node, json_t *vm);

/* Record a VM as stopped: state, zone_state, no pid or boot time. */
void vm_record_set_stopped(json_t *vm);


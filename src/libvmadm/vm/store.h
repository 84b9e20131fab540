/* SPDX-License-Identifier: MIT */
/*
 * VM records on a node: ROOT/vms/UUID.json, written atomically, guarded by a
 * per-VM lock ROOT/locks/UUID.lock.
 *
 * A record carries "transition" while a create, delete, receive or the
 * target side of a live migration is under way ("creating", "deleting",
 * "receiving", "migrating"). A record found with a transition
 * whose lock is free belongs to a command that died: vm_store_recover()
 * finishes the delete or undoes the create, so that a VM is either whole or
 * gone.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "node/node.h"
#include "util/error.h"

/* Load the record of uuid. -ENOENT with "VM UUID not found" if none. */
int vm_store_load(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err);

/* Write the record atomically (sets last_modified). */
int vm_store_save(struct vm_node *node, json_t *vm, struct vm_error *err);

/* Remove the record (the datasets are the caller's business). */
int vm_store_remove(struct vm_node *node, const char *uuid, struct vm_error *err);

/* All records, as a JSON array, sorted by create_timestamp then uuid. */
int vm_store_list(struct vm_node *node, json_t **ret, struct vm_error *err);

bool vm_store_exists(struct vm_node *node, const char *uuid);

/* How long a command waits for another command's lock on the same VM. */
#define VM_LOCK_WAIT_SECS 30

/* Take the VM's lock, waiting up to wait_secs. Returns the lock fd. */
int vm_store_lock(struct vm_node *node, const char *uuid, int wait_secs, struct vm_error *err);

/* Take the VM's lock (waiting up to VM_LOCK_WAIT_SECS) and load its record
 * under it: what every command that changes a VM starts with. On success the
 * caller owns *ret_lock (close it to release) and *ret_vm. */
int vm_store_lock_load(struct vm_node *node, const char *uuid, int *ret_lock, json_t **ret_vm,
		       struct vm_error *err);

/* Clean up after commands that died mid-transition (see above). Appends a
 * line per VM it cleaned to *notes (a JSON array of strings, created if
 * NULL), for the front end to print. */
int vm_store_recover(struct vm_node *node, json_t **notes, struct vm_error *err);

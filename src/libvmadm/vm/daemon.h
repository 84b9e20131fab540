/* SPDX-License-Identifier: MIT */
/* Node-wide tasks vmadmd runs: autoboot after a node boot, and keeping the
 * records' state in line with the real processes. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "node/node.h"
#include "util/error.h"

/* Has the node booted since the last call (the kernel's boot_id differs
 * from the one recorded in ROOT/run/boot_id)? Records the current one. */
bool vm_node_booted(struct vm_node *node);

/* Start every VM with autoboot=true that is not running. Failures do not
 * stop the others: each start's outcome is appended to *log (strings). */
int vm_autoboot_all(struct vm_node *node, json_t *log, struct vm_error *err);

/* For each VM whose record says running but whose process is gone, record
 * it as stopped and append a line to *log. VMs locked by a command are
 * skipped (the command owns them). First undoes creates and deletes whose
 * command died (vm_store_recover()), as the next vmadm command would. */
int vm_reconcile_states(struct vm_node *node, json_t *log, struct vm_error *err);

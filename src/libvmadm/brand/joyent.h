/* SPDX-License-Identifier: MIT */
/*
 * Brand joyent: the checks of a received container's host side, which
 * joyent_brand_ops offers the receive path as its check_received and
 * check_received_zone slots and the start repeats (brand/joyent.c has the
 * brand itself).
 */
#pragma once

#include <jansson.h>

#include "node/node.h"
#include "util/error.h"

/* The vmadm.conf setting that lists the host directories under which a
 * received VM's filesystems[] (lofs, bind) may lie: none by default. */
#define JOYENT_ROOTS_SETTING "receive_filesystem_roots"

/* A VM that came from another node may mount host paths only under the
 * node's receive_filesystem_roots: every lofs/bind source of vm's
 * filesystems[] must resolve (realpath: every symlink and ".." followed)
 * to a path under one of them (compared up to a '/'), and tmpfs is the only
 * other type. -EPERM naming the property, the path, what it resolved to and
 * the setting otherwise. The start of a received VM (received_at set) does
 * the same again, and mounts the paths it resolved. */
int joyent_check_received_filesystems(struct vm_node *node, json_t *vm, struct vm_error *err);

/* The root of a joyent VM's dataset, DATASET_DIR/root, must be a directory
 * of its own: not missing, not a symlink (liblxc would mount what it points
 * to), not a file. ds names the dataset in messages. */
int joyent_check_root(const char *dataset_dir, const char *ds, struct vm_error *err);

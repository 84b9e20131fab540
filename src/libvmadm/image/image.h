/* SPDX-License-Identifier: MIT */
/*
 * Images, SmartOS-style: an image is a dataset zones/IMAGE_UUID with an
 * @final snapshot, plus its manifest at ROOT/images/IMAGE_UUID.json. VMs
 * clone @final (a btrfs snapshot or a reflink copy: no data copied on btrfs).
 *
 * Two types, as in SmartOS manifests:
 *   zvol          the file is a raw disk image (optionally gzip-compressed,
 *                 files[0].compression); it becomes a volume.
 *   zone-dataset  the file is a tar archive (any compression libarchive
 *                 reads) of a root filesystem; it is unpacked into
 *                 zones/IMAGE_UUID/root, the layout of a joyent VM.
 */
#pragma once

#include <jansson.h>

#include "node/node.h"
#include "util/error.h"

/* Check a manifest: v, uuid, name, version, type, os, files[0] with sha1 and
 * size. The message names the field. */
int vm_image_manifest_check(json_t *manifest, struct vm_error *err);

/* Install an image: check the manifest, check the file's size and SHA-1
 * against it before anything is made, create and fill the dataset, snapshot
 * @final, record the manifest. On failure nothing is left. */
int vm_image_install(struct vm_node *node, const char *manifest_path, const char *file_path,
		     json_t **ret_manifest, struct vm_error *err);

/* Installed images' manifests, sorted by name then version. */
int vm_image_list(struct vm_node *node, json_t **ret, struct vm_error *err);

int vm_image_get(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err);

/* Delete an image; refused (-EBUSY, naming the VM) while a VM was created
 * from it. */
int vm_image_delete(struct vm_node *node, const char *uuid, struct vm_error *err);

/* SHA-1 of a file as 40 lower-case hex digits, and its size. */
int vm_file_sha1(const char *path, char out[41], uint64_t *ret_size, struct vm_error *err);

/* SPDX-License-Identifier: MIT */
/*
 * Brand kvm: one QEMU process per VM, daemonized, driven over QMP.
 *
 * Runtime files, under ROOT/run/UUID/:
 *   qemu.pid      QEMU's pidfile (written by QEMU itself)
 *   qmp.sock      QMP server socket
 *   console.sock  serial console (chardev socket server)
 *   accel         the accelerator QEMU was started with ("kvm" or "tcg")
 * QEMU's stderr goes to ROOT/log/UUID-qemu.log.
 *
 * Networking: the node defines its nic tags in vmadm.conf, "nic_tags":
 * {"TAG": "BRIDGE", ...} (vm_node_nic_tags). A nic whose nic_tag is one of
 * them is attached to that Linux bridge with `-netdev bridge`
 * (qemu-bridge-helper); the start fails if the tag is not defined (any
 * more) or its bridge does not exist. A nic without a tag, and every nic on
 * a node that defines no tags, gets `-netdev user,restrict=on`: the guest
 * sees a NIC with its MAC, but no packet leaves the host. So a VM never
 * touches a host network the node did not name for its tag; a record's
 * tag never names a bridge by itself.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "brand/brand.h"
#include "brand/live.h"
#include "qmp/qmp.h"

/* The accelerator to use on this node: the setting `accel` (env
 * VMADM_ACCEL), kvm | tcg | auto (default). auto is kvm when /dev/kvm opens
 * read-write and answers KVM_GET_API_VERSION with 12, tcg otherwise. *ret is
 * a static string. */
int kvm_pick_accel(struct vm_node *node, const char **ret, struct vm_error *err);

/* Build QEMU's argv (NULL-terminated, malloc'ed: free with strv_free) for
 * the VM record vm with accelerator accel. incoming adds `-incoming defer
 * -S` for the target of a live migration. Fails with -EINVAL naming the
 * property (disks[1].model) when the record cannot be run. */
int kvm_build_argv(struct vm_node *node, json_t *vm, const char *accel, bool incoming,
		   char ***ret_argv, struct vm_error *err);

/* Start QEMU for vm (kvm_brand_ops.start is this with incoming = false).
 * With incoming, QEMU waits paused in state "inmigrate" for
 * migrate-incoming. Same guarantees as the start slot. */
int kvm_start_vm(struct vm_node *node, json_t *vm, bool incoming, struct vm_error *err);

/* Open a QMP connection to the running VM uuid (capabilities negotiated). */
int kvm_qmp_open(struct vm_node *node, const char *uuid, struct qmp **ret, struct vm_error *err);

/* Paths of the VM's runtime files (malloc'ed; NULL on ENOMEM). */
char *kvm_run_path(struct vm_node *node, const char *uuid, const char *file);

/* Live migration of a kvm VM with its local disks (brand/kvm-live*.c):
 * kvm_brand_ops.live. */
extern const struct vm_brand_live_ops kvm_live_ops;

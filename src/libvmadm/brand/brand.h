/* SPDX-License-Identifier: MIT */
/*
 * Brands: how a VM runs. kvm.c runs QEMU/KVM over QMP; joyent.c runs a system
 * container through liblxc. Each fills struct vm_brand_ops; callers find it
 * with vm_brand_ops_by_name(vm's "brand").
 *
 * Runtime files of a VM live under ROOT/run/UUID/ (pidfile, QMP socket,
 * console socket, LXC config) and logs under ROOT/log/.
 *
 * Migration (migrate/) drives a VM only through these slots: it pauses
 * and resumes it around snapshots, quiesces it for the last pass of -I,
 * asks the brand's policy of a received VM, and moves a running VM
 * through the live sub-table (brand/live.h).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "node/node.h"
#include "util/error.h"

struct vm_brand_live_ops;

/* Live state as SmartOS shows it in "state" and "zone_state". */
struct vm_runtime {
	const char *state;      /* "running", "stopped", "stopping", "failed", ... */
	const char *zone_state; /* "running", "installed", ... */
	pid_t pid;              /* 0 when not running */
	char accel[8];          /* kvm: "kvm" or "tcg" while running, else "" */
};

struct vm_brand_ops {
	const char *name; /* "kvm", "joyent" */

	/* Start the VM described by vm (its record). The caller holds the VM's
	 * lock and has checked that it is not running. Checks that every dataset
	 * the VM needs exists and names the missing one if not. On success the
	 * VM runs; on failure nothing of it runs and no runtime file is left. */
	int (*start)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* Stop: ask the guest (ACPI powerdown / container init's SIGPWR or
	 * lxc shutdown), wait up to timeout_secs, then kill; with force, kill at
	 * once. Returns when the VM no longer runs. Stopping a stopped VM is 0. */
	int (*stop)(struct vm_node *node, json_t *vm, int timeout_secs, bool force,
		    struct vm_error *err);

	/* Reboot a running VM. */
	int (*reboot)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* The live state, from the real process (a dead pid is "stopped"). Never
	 * fails: unknown conditions read as "stopped". */
	void (*runtime)(struct vm_node *node, json_t *vm, struct vm_runtime *ret);

	/* QEMU's or LXC's view of a running VM, as a JSON object
	 * (`vmadm info`). */
	int (*info)(struct vm_node *node, json_t *vm, json_t **ret, struct vm_error *err);

	/* Attach the caller's terminal (in_fd/out_fd) to the VM's console until
	 * the user detaches (Ctrl-]) or the VM stops. */
	int (*console)(struct vm_node *node, json_t *vm, int in_fd, int out_fd,
		       struct vm_error *err);

	/* --- Migration ----------------------------------------------------- */

	/* Hold the running VM still for an instant, so that snapshots of all
	 * its datasets show one moment: kvm stops the guest's CPUs (QMP stop:
	 * QEMU drains the guest's I/O first), joyent freezes the container's
	 * cgroup. The VM's processes stay. The caller holds the VM's lock and
	 * has seen it running; it calls resume as soon as the snapshots are
	 * taken. On failure the VM runs as before, and err says what failed
	 * (the caller prefixes which VM, and what for). */
	int (*pause)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* Let a VM that pause or quiesce held run on where it stood. On
	 * failure err says what failed, as for pause. */
	int (*resume)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* The final stop of an incremental migration (-I) with --final-stop
	 * pause: stop the running VM's guest where it stands, every write it
	 * completed on its disks, so that the caller snapshots the disks and
	 * then ends the VM with a forced stop (crash-consistent, like a power
	 * cut after the last completed write, and no guest shutdown in the
	 * downtime); a caller that cannot go on calls resume. On failure the
	 * guest runs on; err says what failed. NULL: the brand has no such
	 * stop (joyent), its final stop is the guest's shutdown. */
	int (*quiesce)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* The brand's policy for a VM record that came from another node,
	 * after vm_validate_received and the node's nic tags accepted it and
	 * before anything of it is made (joyent: every lofs/bind filesystem
	 * under the node's receive_filesystem_roots). Otherwise -EPERM (or
	 * another -errno) naming the VM, the property and why. NULL: none. */
	int (*check_received)(struct vm_node *node, json_t *vm, struct vm_error *err);

	/* The VM's own dataset (zones/UUID, its zonepath) of a received VM
	 * landed in the directory dir, not yet under its final name ds (for
	 * messages): check what the brand will run from it (joyent: dir/root
	 * a directory of its own, not a symlink that liblxc would follow).
	 * -errno naming ds otherwise. NULL: nothing to check. */
	int (*check_received_zone)(const char *dir, const char *ds, struct vm_error *err);

	/* Live migration (-L): brand/live.h. NULL: the brand's VMs do not
	 * migrate while they run (joyent: they move with -I). */
	const struct vm_brand_live_ops *live;
};

const struct vm_brand_ops *vm_brand_ops_by_name(const char *name);

extern const struct vm_brand_ops kvm_brand_ops;
extern const struct vm_brand_ops joyent_brand_ops;

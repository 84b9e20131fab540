/* SPDX-License-Identifier: MIT */
/*
 * Live migration of kvm VMs, the source (brand/kvm-live.h): mirror the
 * disks' overlays to the target's NBD exports, migrate RAM, switch over;
 * on failure, or when the caller cancels, roll back so that the guest runs
 * on here.
 */
#include "kvm-live.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brand/kvm.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

/* What the source needs from the target: target_prepare's JSON (see
 * kvm-live.h), parsed by target_info_from_json (strings borrowed from the
 * JSON, which must outlive the struct). */
struct kvm_live_target_info {
	const char *host;
	int migrate_port;
	int nbd_port;
	size_t ndisks;
	struct {
		const char *node;   /* the disk's format node, on both sides */
		const char *export; /* the NBD export name on the target */
	} disks[KVM_LIVE_MAX_DISKS];
};

static int target_info_from_json(json_t *j, struct kvm_live_target_info *ret, struct vm_error *err)
{
	json_t *disks = json_object_get(j, "disks"), *d;
	size_t i;

	memset(ret, 0, sizeof(*ret));
	ret->host = json_string_value(json_object_get(j, "host"));
	ret->migrate_port = (int)json_integer_value(json_object_get(j, "migrate_port"));
	ret->nbd_port = (int)json_integer_value(json_object_get(j, "nbd_port"));
	if (!ret->host || ret->migrate_port <= 0 || ret->migrate_port > 65535 ||
	    ret->nbd_port <= 0 || ret->nbd_port > 65535 || !json_is_array(disks))
		return vm_error_setx(err, EBADMSG,
				     "live target info: needs host, migrate_port, nbd_port and "
				     "disks");
	if (json_array_size(disks) > KVM_LIVE_MAX_DISKS)
		return vm_error_setx(err, E2BIG, "live target info: too many disks");
	json_array_foreach (disks, i, d) {
		ret->disks[i].node = json_string_value(json_object_get(d, "node"));
		ret->disks[i].export = json_string_value(json_object_get(d, "export"));
		if (!ret->disks[i].node || !ret->disks[i].export)
			return vm_error_setx(
			    err, EBADMSG, "live target info: disks[%zu] needs node and export", i);
	}
	ret->ndisks = i;
	return 0;
}

enum phase { PH_DISK, PH_RAM, PH_COMPLETING };

struct live {
	struct vm_node *node;
	const char *uuid;
	struct qmp *q;
	const struct kvm_live_target_info *t;
	const struct vm_live_opts *o;
	struct vm_live_report *rep;
	struct live_disk *disks;
	size_t ndisks;
	bool nbd_added[KVM_LIVE_MAX_DISKS];
	bool migrating; /* migrate was issued */
	bool continued; /* migrate-continue was issued */
	bool tls;
	int64_t start_ms;
	int64_t disk_copied; /* the mirrors' offsets, last seen */
	int64_t downtime_limit;
	/* run_migration's settings and what its ticks remember */
	const char *uri; /* QEMU's migration URI of the target */
	int64_t timeout, stall, max_downtime;
	enum phase ph, last_emit_ph;
	int64_t last_emit_ms;
	int64_t last_mark, last_move_ms; /* bytes moved, and when they last moved */
	int64_t last_raise_ms;		 /* when the downtime limit last rose */
	int64_t last_syncs, last_remaining;
};

static const char *phase_name(enum phase ph)
{
	switch (ph) {
	case PH_DISK:
		return "disk";
	case PH_RAM:
		return "ram";
	default:
		return "switchover";
	}
}

/* Undo everything on the source after a failure, so the guest runs on.
 * Returns 1 when the migration turned out to have completed (it cannot be
 * undone then: the caller treats it as success), 0 otherwise. */
static int rollback(struct live *l)
{
	struct vm_error ignore = {0};
	_cleanup_json_ json_t *instances = json_array();
	int64_t deadline;
	char nbd[64], job[64];

	/* yank first: it shuts the connections down at once, so nothing
	 * waits on a cut link (TCP would retransmit for minutes, and QEMU
	 * would hold its main loop in a drain meanwhile). */
	if (l->migrating && instances)
		json_array_append_new(instances, json_pack("{s:s}", "type", "migration"));
	for (size_t i = 0; instances && i < l->ndisks; i++) {
		if (!l->nbd_added[i])
			continue;
		kvm_live_nbd_node(nbd, sizeof(nbd), l->disks[i].node);
		json_array_append_new(
		    instances, json_pack("{s:s, s:s}", "type", "block-node", "node-name", nbd));
	}
	if (json_array_size(instances) > 0) {
		/* Out of band first, on the second monitor: it is heard even
		 * when QEMU's main loop hangs in a drain of an NBD write on a
		 * cut link (at the switchover, guest paused). */
		_cleanup_free_ char *oob = kvm_run_path(l->node, l->uuid, "qmp-oob.sock");
		_cleanup_qmp_ struct qmp *qo = NULL;
		if (oob && qmp_connect_oob(oob, 1000, &qo, &ignore) >= 0 &&
		    qmp_command_oob(qo, "yank", json_pack("{s:O}", "instances", instances), NULL,
				    2000, &ignore) >= 0)
			vm_debug("live %s: out-of-band yank done", l->uuid);
		else
			vm_debug("live %s: out-of-band yank: %s", l->uuid, ignore.msg);
		vm_error_clear(&ignore);
		kvm_live_qcmd_quiet(l->q, "yank", json_pack("{s:O}", "instances", instances));
	}
	if (l->migrating)
		kvm_live_qcmd_quiet(l->q, "migrate_cancel", NULL);
	for (size_t i = 0; i < l->ndisks; i++) {
		snprintf(job, sizeof(job), KVM_LIVE_MIRROR_PREFIX "%s", l->disks[i].node);
		kvm_live_qcmd_quiet(l->q, "block-job-cancel",
				    json_pack("{s:s, s:b}", "device", job, "force", 1));
	}
	/* Wait for the mirrors to go and the migration to settle. */
	deadline = kvm_live_now_ms() + 15000;
	for (;;) {
		_cleanup_json_ json_t *m = NULL, *jobs = NULL;
		const char *st = "none";
		size_t running = 0;

		if (kvm_live_our_jobs(l->q, KVM_LIVE_MIRROR_PREFIX, &jobs, &ignore) >= 0)
			running = json_array_size(jobs);
		if (l->migrating && kvm_live_qcmd(l->q, "query-migrate", NULL, &m, &ignore) >= 0)
			st = kvm_live_migrate_status(m);
		if (streq(st, "completed"))
			return 1;
		if (running == 0 && !streq(st, "cancelling") && !streq(st, "active") &&
		    !streq(st, "pre-switchover") && !streq(st, "device") && !streq(st, "setup"))
			break;
		if (kvm_live_now_ms() > deadline) {
			vm_warn("live migration of %s: source still has %zu mirrors, migration "
				"'%s' after rollback",
				l->uuid, running, st);
			break;
		}
		usleep(50 * 1000);
	}
	qmp_flush_events(l->q);
	for (size_t i = 0; i < l->ndisks; i++) {
		if (!l->nbd_added[i])
			continue;
		kvm_live_nbd_node(nbd, sizeof(nbd), l->disks[i].node);
		kvm_live_qcmd_quiet(l->q, "blockdev-del", json_pack("{s:s}", "node-name", nbd));
	}
	if (kvm_live_overlays_commit(l->node, l->q, l->uuid, l->disks, l->ndisks, &ignore) < 0)
		vm_warn("live migration of %s: %s (the guest runs on its overlays in %s)", l->uuid,
			ignore.msg, "zones/.live");
	kvm_live_qcmd_quiet(l->q, "migrate-set-capabilities",
			    json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
				      "pause-before-switchover", "state", 0));
	if (l->tls)
		kvm_live_tls_teardown(l->node, l->q, l->uuid);
	/* The guest ran before we began; migration restarts it on cancel, but
	 * a failure while paused at pre-switchover must not leave it paused. */
	{
		_cleanup_json_ json_t *s = NULL;
		const char *st = NULL;
		if (kvm_live_qcmd(l->q, "query-status", NULL, &s, &ignore) >= 0)
			st = json_string_value(json_object_get(s, "status"));
		if (st && !streq(st, "running") && !streq(st, "postmigrate")) {
			vm_debug("live migration of %s: guest '%s' after rollback: cont", l->uuid,
				 st);
			kvm_live_qcmd_quiet(l->q, "cont", NULL);
		}
	}
	return 0;
}

static void emit(struct live *l, enum phase ph, json_t *m, int64_t dirty)
{
	struct vm_live_progress p = {0};
	json_t *ram = json_object_get(m, "ram");

	if (!l->o->progress)
		return;
	p.phase = phase_name(ph);
	p.elapsed_ms = kvm_live_now_ms() - l->start_ms;
	p.disk_dirty = dirty;
	p.disk_copied = l->disk_copied;
	p.ram_transferred = json_integer_value(json_object_get(ram, "transferred"));
	p.ram_remaining = json_integer_value(json_object_get(ram, "remaining"));
	p.ram_total = json_integer_value(json_object_get(ram, "total"));
	p.dirty_rate = json_integer_value(json_object_get(ram, "dirty-pages-rate"));
	p.dirty_syncs = json_integer_value(json_object_get(ram, "dirty-sync-count"));
	p.mbps = json_number_value(json_object_get(ram, "mbps"));
	p.downtime_limit_ms = l->downtime_limit;
	l->o->progress(&p, l->o->userdata);
}

/* What QEMU is given for a downtime limit of ms: two thirds of it. QEMU's
 * limit bounds only its estimate of the last RAM pass; ending the mirrors,
 * the device state and the resume come on top (under TCG, 50-100 ms), and
 * the reported downtime includes them. */
static int64_t qemu_downtime(int64_t ms)
{
	return ms * 2 / 3 > 0 ? ms * 2 / 3 : 1;
}

static int set_downtime(struct live *l, int64_t ms, struct vm_error *err)
{
	l->downtime_limit = ms;
	return kvm_live_qcmd(l->q, "migrate-set-parameters",
			     json_pack("{s:I}", "downtime-limit", (json_int_t)qemu_downtime(ms)),
			     NULL, err);
}

static int connect_and_mirror(struct live *l, struct vm_error *err)
{
	const struct kvm_live_target_info *t = l->t;
	_cleanup_free_ char *port = strdup_printf("%d", t->nbd_port);
	char nbd[64], ovl[64], job[64];
	int r;

	if (!port)
		return vm_error_set(err, ENOMEM, "live migration");
	/* An NBD client node per disk on the target's export:
	 * blockdev-add {"driver": "nbd", "node-name": "vmadm-live-nbd-diskN",
	 *   "server": {"type": "inet", "host": H, "port": "P"}, "export": E,
	 *   "tls-creds": ID} */
	for (size_t i = 0; i < l->ndisks; i++) {
		kvm_live_nbd_node(nbd, sizeof(nbd), t->disks[i].node);
		r = kvm_live_qcmd(l->q, "blockdev-add",
				  json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:s}", "driver",
					    "nbd", "node-name", nbd, "server", "type", "inet",
					    "host", t->host, "port", port, "export",
					    t->disks[i].export, "tls-creds", KVM_LIVE_TLS_ID),
				  NULL, err);
		if (r < 0 && strstr(err->msg, "TLS handshake failed"))
			return vm_error_prefix(err,
					       "connect to the target's disk export %s (do both "
					       "nodes have the same key, vmadm.key?)",
					       t->disks[i].export);
		if (r < 0)
			return vm_error_prefix(err, "connect to the target's disk export %s",
					       t->disks[i].export);
		l->nbd_added[i] = true;
	}
	/* blockdev-mirror {"job-id": "vmadm-live-mirror-diskN",
	 *   "device": "vmadm-live-ovl-diskN", "target": "vmadm-live-nbd-diskN",
	 *   "sync": "top"} : what the guest wrote since the snapshot, then every
	 * new write; "full" when the target has no base. */
	for (size_t i = 0; i < l->ndisks; i++) {
		json_t *args;

		snprintf(job, sizeof(job), KVM_LIVE_MIRROR_PREFIX "%s", t->disks[i].node);
		kvm_live_nbd_node(nbd, sizeof(nbd), t->disks[i].node);
		kvm_live_overlay_node(ovl, sizeof(ovl), t->disks[i].node);
		args = json_pack("{s:s, s:s, s:s, s:s}", "job-id", job, "device", ovl, "target",
				 nbd, "sync", l->o->full_copy ? "full" : "top");
		if (args && l->o->disk_speed > 0)
			json_object_set_new(args, "speed", json_integer(l->o->disk_speed));
		r = kvm_live_qcmd(l->q, "blockdev-mirror", args, NULL, err);
		if (r < 0)
			return vm_error_prefix(err, "mirror %s to the target", t->disks[i].node);
	}
	return 0;
}

/* At pre-switchover (guest paused, its I/O drained): block-job-cancel of
 * each ready mirror completes it with the target consistent (no pivot);
 * once all are gone without error, migrate-continue. */
static int switchover(struct live *l, int64_t stall, struct vm_error *err)
{
	int64_t start = kvm_live_now_ms();
	char job[64];
	int r;

	for (size_t i = 0; i < l->ndisks; i++) {
		snprintf(job, sizeof(job), KVM_LIVE_MIRROR_PREFIX "%s", l->disks[i].node);
		r = kvm_live_qcmd(l->q, "block-job-cancel", json_pack("{s:s}", "device", job), NULL,
				  err);
		if (r < 0)
			return r;
	}
	for (;;) {
		_cleanup_json_ json_t *jobs = NULL;

		r = kvm_live_our_jobs(l->q, KVM_LIVE_MIRROR_PREFIX, &jobs, err);
		if (r < 0)
			return r;
		if (json_array_size(jobs) == 0)
			break;
		if (kvm_live_now_ms() - start > stall)
			return vm_error_setx(err, ETIMEDOUT,
					     "disk mirrors did not finish within %lld ms at "
					     "switchover",
					     (long long)stall);
		usleep(2 * 1000);
	}
	{
		_cleanup_free_ char *why = kvm_live_job_error(l->q, KVM_LIVE_MIRROR_PREFIX);
		if (why)
			return vm_error_setx(err, EIO, "disk mirror failed at switchover: %s", why);
	}
	l->rep->switchover_disk_ms = kvm_live_now_ms() - start;
	/* migrate-continue {"state": "pre-switchover"} */
	r = kvm_live_qcmd(l->q, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"),
			  NULL, err);
	if (r < 0)
		return r;
	l->continued = true;
	return 0;
}

/* --- The migration, tick by tick ------------------------------------------ */

/* Before the first tick: TLS with the node key, the capabilities and
 * parameters of the migration, then every disk mirrored to the target. */
static int prepare(struct live *l, struct vm_error *err)
{
	const struct vm_live_opts *o = l->o;
	int r;

	r = kvm_live_tls_setup(l->node, l->q, l->uuid, "client", err);
	if (r < 0)
		return r;
	l->tls = true;
	/* migrate-set-capabilities events, pause-before-switchover (the
	 * mirrors end while the guest is paused), auto-converge. */
	r = kvm_live_qcmd(l->q, "migrate-set-capabilities",
			  json_pack("{s:[{s:s, s:b}, {s:s, s:b}, {s:s, s:b}]}", "capabilities",
				    "capability", "events", "state", 1, "capability",
				    "pause-before-switchover", "state", 1, "capability",
				    "auto-converge", "state", 1),
			  NULL, err);
	if (r >= 0)
		r = kvm_live_qcmd(
		    l->q, "migrate-set-parameters",
		    json_pack(
			"{s:s, s:I, s:I}", "tls-creds", KVM_LIVE_TLS_ID, "downtime-limit",
			(json_int_t)qemu_downtime(l->downtime_limit), "max-bandwidth",
			(json_int_t)(o->max_bandwidth > 0 ? o->max_bandwidth : (int64_t)10 << 30)),
		    NULL, err);
	if (r >= 0)
		r = connect_and_mirror(l, err);
	return r;
}

/* What one look at QEMU saw. */
struct tick {
	int64_t now;
	json_t *m;	/* query-migrate's answer; NULL before migrate */
	const char *st; /* its status; "none" before migrate */
	char *why;	/* why a mirror ended on its own, from its event */
	size_t njobs, nready;
	int64_t dirty, copied; /* the mirrors' bytes still to copy, and copied */
};

static void tick_clear(struct tick *t)
{
	json_decref(t->m);
	free(t->why);
}

/* Look: the mirrors' events and state, the guest's STOP, the migration's
 * state. */
static int observe(struct live *l, struct tick *t, struct vm_error *err)
{
	_cleanup_json_ json_t *jobs = NULL;
	json_t *j;
	size_t k;
	int r;

	t->now = kvm_live_now_ms();
	/* A mirror that ended on its own failed (ours end by our cancel
	 * only); its event says why. */
	t->why = kvm_live_job_error(l->q, KVM_LIVE_MIRROR_PREFIX);
	if (l->migrating) {
		json_t *ev = NULL;
		struct vm_error ignore = {0};

		if (qmp_wait_event(l->q, "STOP", &ev, 0, &ignore) >= 0) {
			l->rep->stopped_us = kvm_live_event_us(ev);
			json_decref(ev);
		}
	}
	qmp_flush_events(l->q);
	r = kvm_live_our_jobs(l->q, KVM_LIVE_MIRROR_PREFIX, &jobs, err);
	if (r < 0)
		return r;
	t->njobs = json_array_size(jobs);
	json_array_foreach (jobs, k, j) {
		int64_t off = json_integer_value(json_object_get(j, "offset"));
		int64_t len = json_integer_value(json_object_get(j, "len"));
		t->copied += off;
		t->dirty += len > off ? len - off : 0;
		t->nready += json_is_true(json_object_get(j, "ready"));
	}
	if (t->njobs > 0)
		l->disk_copied = t->copied;
	if (l->migrating) {
		r = kvm_live_qcmd(l->q, "query-migrate", NULL, &t->m, err);
		if (r < 0)
			return r;
		t->st = kvm_live_migrate_status(t->m);
	}
	return 0;
}

/* Has it ended? 1 completed, -errno failed (QEMU's migration, or a mirror
 * that stopped), 0 not yet. */
static int ended(struct live *l, struct tick *t, struct vm_error *err)
{
	if (streq(t->st, "failed") || streq(t->st, "cancelled"))
		return vm_error_setx(err, EIO, "migration %s: %s", t->st,
				     json_string_value(json_object_get(t->m, "error-desc"))
					 ?: "QEMU gave no reason");
	if (streq(t->st, "completed")) {
		if (!l->continued)
			return vm_error_setx(err, EPROTO,
					     "migration completed before the disks did");
		return 1;
	}
	if (l->ph != PH_COMPLETING && t->njobs < l->ndisks) {
		/* its event came during query-block-jobs */
		if (!t->why)
			t->why = kvm_live_job_error(l->q, KVM_LIVE_MIRROR_PREFIX);
		return vm_error_setx(err, EIO, "disk mirror stopped: %s",
				     t->why ? t->why : "(no reason given)");
	}
	return 0;
}

/* Our limits: a stall (nothing moved for stall ms while something should:
 * the mirrors before they are ready, RAM while it is sent, the mirrors'
 * end at switchover), the user's cancel, the timeout. */
static int within_limits(struct live *l, struct tick *t, struct vm_error *err)
{
	json_t *ram = json_object_get(t->m, "ram");
	int64_t mark = t->copied + json_integer_value(json_object_get(ram, "transferred"));

	if (mark != l->last_mark || (l->ph == PH_DISK && t->nready == t->njobs) ||
	    l->ph == PH_COMPLETING) {
		l->last_mark = mark;
		l->last_move_ms = t->now;
	} else if (t->now - l->last_move_ms > l->stall) {
		return vm_error_setx(err, ETIMEDOUT,
				     "no progress for %lld ms in the %s phase (link to %s "
				     "down or target gone?)",
				     (long long)(t->now - l->last_move_ms), phase_name(l->ph),
				     l->t->host);
	}
	if (l->o->cancel && *l->o->cancel)
		return vm_error_setx(err, ECANCELED, "cancelled in the %s phase",
				     phase_name(l->ph));
	if (t->now - l->start_ms <= l->timeout)
		return 0;
	if (l->ph == PH_DISK)
		return vm_error_setx(err, ETIMEDOUT,
				     "timeout after %lld ms in the disk phase: %lld "
				     "bytes still to mirror (the guest writes faster "
				     "than the link copies?)",
				     (long long)l->timeout, (long long)t->dirty);
	return vm_error_setx(
	    err, ETIMEDOUT,
	    "did not converge within %lld ms: %lld bytes of RAM remaining, "
	    "dirty rate %lld pages/s, throughput %.1f Mbit/s, downtime limit "
	    "%lld ms (may rise to %lld)",
	    (long long)l->timeout, (long long)json_integer_value(json_object_get(ram, "remaining")),
	    (long long)json_integer_value(json_object_get(ram, "dirty-pages-rate")),
	    json_number_value(json_object_get(ram, "mbps")), (long long)l->downtime_limit,
	    (long long)l->max_downtime);
}

/* The disk phase: once every mirror is ready (source and target in sync,
 * new writes mirrored as they come), RAM. */
static int disk_tick(struct live *l, struct tick *t, struct vm_error *err)
{
	int r;

	if (t->nready < l->ndisks)
		return 0;
	/* migrate {"uri": "tcp:H:P"} */
	r = kvm_live_qcmd(l->q, "migrate", json_pack("{s:s}", "uri", l->uri), NULL, err);
	if (r < 0)
		return r;
	l->migrating = true;
	l->ph = PH_RAM;
	l->last_raise_ms = t->now;
	return 0;
}

/* The RAM phase: the switchover once QEMU reaches pre-switchover; until
 * then, a downtime limit raised when the migration does not converge. */
static int ram_tick(struct live *l, struct tick *t, struct vm_error *err)
{
	json_t *ram = json_object_get(t->m, "ram");
	int64_t rem = json_integer_value(json_object_get(ram, "remaining"));
	int64_t syncs = json_integer_value(json_object_get(ram, "dirty-sync-count"));
	int r;

	if (streq(t->st, "pre-switchover")) {
		/* Guest paused, its I/O drained: the clock of the downtime
		 * runs, so no tick sleeps from here to migrate-continue. */
		r = switchover(l, l->stall, err);
		if (r < 0)
			return r;
		l->ph = PH_COMPLETING;
		return 0;
	}
	/* Not converging (Proxmox-style): after a few rounds with the
	 * remainder not shrinking, double the limit. */
	if (syncs >= 3 && syncs != l->last_syncs && t->now - l->last_raise_ms >= 2000 &&
	    l->downtime_limit < l->max_downtime && l->last_remaining >= 0 &&
	    rem >= l->last_remaining) {
		int64_t nl = l->downtime_limit * 2;
		if (nl > l->max_downtime)
			nl = l->max_downtime;
		vm_debug("live %s: not converging (%lld bytes left), downtime limit %lld -> %lld "
			 "ms",
			 l->uuid, (long long)rem, (long long)l->downtime_limit, (long long)nl);
		r = set_downtime(l, nl, err);
		if (r < 0)
			return r;
		l->last_raise_ms = t->now;
	}
	if (syncs != l->last_syncs) {
		l->last_syncs = syncs;
		l->last_remaining = rem;
	}
	return 0;
}

/* Mirror the disks, then migrate RAM, then switch over: a tick at a time,
 * each looking at QEMU, reporting, checking the end and our limits, then
 * moving the phase on. */
static int run_migration(struct live *l, struct vm_error *err)
{
	const struct vm_live_opts *o = l->o;
	_cleanup_free_ char *uri = kvm_live_tcp_uri(l->t->host, l->t->migrate_port);
	int r;

	l->timeout = o->timeout_ms > 0 ? o->timeout_ms : 600000;
	l->stall = o->stall_ms > 0 ? o->stall_ms : 10000;
	l->downtime_limit = o->downtime_limit_ms > 0 ? o->downtime_limit_ms : 300;
	l->max_downtime = o->max_downtime_ms > 0 ? o->max_downtime_ms : 10 * l->downtime_limit;
	l->ph = PH_DISK;
	l->last_emit_ph = PH_COMPLETING;
	l->last_mark = -1;
	l->last_remaining = -1;
	if (!uri)
		return vm_error_set(err, ENOMEM, "live migration");
	l->uri = uri;
	r = prepare(l, err);
	if (r < 0)
		return r;

	l->last_move_ms = kvm_live_now_ms();
	for (;;) {
		_cleanup_(tick_clear) struct tick t = {.st = "none"};

		/* Short ticks in the RAM phase: pre-switchover is seen sooner,
		 * and the guest waits paused until then. */
		usleep((l->ph == PH_RAM ? KVM_LIVE_RAM_TICK_MS : KVM_LIVE_TICK_MS) * 1000);
		r = observe(l, &t, err);
		if (r < 0)
			return r;
		if (t.now - l->last_emit_ms >= KVM_LIVE_TICK_MS || l->ph != l->last_emit_ph) {
			emit(l, l->ph, t.m, t.dirty);
			l->last_emit_ms = t.now;
			l->last_emit_ph = l->ph;
		}
		r = ended(l, &t, err);
		if (r != 0)
			return r < 0 ? r : 0;
		r = within_limits(l, &t, err);
		if (r >= 0 && l->ph == PH_DISK)
			r = disk_tick(l, &t, err);
		else if (r >= 0 && l->ph == PH_RAM)
			r = ram_tick(l, &t, err);
		if (r < 0)
			return r;
	}
}

/* --- The slots --------------------------------------------------------------- */

/* The target's disks are the VM's, each on its overlay. */
static int check_target(struct live *l, struct vm_error *err)
{
	char ovl[64];

	if (l->t->ndisks != l->ndisks)
		return vm_error_setx(err, EINVAL, "the target exports %zu disks, the VM has %zu",
				     l->t->ndisks, l->ndisks);
	for (size_t i = 0; i < l->ndisks; i++) {
		kvm_live_overlay_node(ovl, sizeof(ovl), l->disks[i].node);
		if (!streq(l->t->disks[i].node, l->disks[i].node))
			return vm_error_setx(err, EINVAL, "target disk %zu is %s, the VM's is %s",
					     i, l->t->disks[i].node, l->disks[i].node);
		if (!kvm_live_node_exists(l->q, ovl))
			return vm_error_setx(err, EINVAL, "%s has no overlay (source_begin first)",
					     l->disks[i].node);
	}
	return 0;
}

/* Done: the guest lives on the target now. quit, make sure QEMU is gone
 * (the brand's forced stop also removes the run dir), then fold the
 * overlays into the images, so the stopped source VM's disks hold every
 * write up to the switchover. */
static void source_done(struct live *l, json_t *vm, struct qmp **q)
{
	struct vm_error e2 = {0};

	kvm_live_qcmd_quiet(*q, "quit", NULL);
	qmp_close(TAKE_PTR(*q));
	if (kvm_brand_ops.stop(l->node, vm, 5, true, &e2) < 0)
		vm_warn("live migration of %s: completed, but stopping the source QEMU: %s",
			l->uuid, e2.msg);
	else if (kvm_live_overlays_commit_offline(l->node, l->uuid, l->disks, l->ndisks, &e2) < 0)
		vm_warn("live migration of %s: completed, but %s", l->uuid, e2.msg);
}

int kvm_live_source_migrate(struct vm_node *node, json_t *vm, json_t *info,
			    const struct vm_live_opts *o, struct vm_live_report *rep,
			    struct vm_error *err)
{
	static const struct vm_live_opts defaults = {0};
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	struct live_disk disks[KVM_LIVE_MAX_DISKS];
	struct kvm_live_target_info t;
	_cleanup_json_ json_t *m = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	struct live l = {.node = node, .uuid = uuid, .t = &t, .o = o ? o : &defaults, .rep = rep};
	size_t ndisks;
	int r;

	memset(rep, 0, sizeof(*rep));
	r = target_info_from_json(info, &t, err);
	if (r < 0) {
		/* Nothing to migrate to: back as before the begin. */
		struct vm_error e = {0};
		kvm_live_source_cancel(node, vm, &e);
		return r;
	}
	l.start_ms = kvm_live_now_ms();
	r = kvm_live_load_running(node, vm, disks, &ndisks, &q, err);
	if (r < 0)
		return vm_error_prefix(err, "live migration of %s", uuid ? uuid : "?");
	l.q = q;
	l.disks = disks;
	l.ndisks = ndisks;
	/* From here on every failure goes through the rollback, which also
	 * folds the overlays back. */
	r = check_target(&l, err);
	if (r >= 0)
		r = run_migration(&l, err);
	rep->disk_copied = l.disk_copied;
	rep->downtime_limit_ms = l.downtime_limit;
	rep->total_ms = kvm_live_now_ms() - l.start_ms;
	if (r < 0) {
		char why[sizeof(err->msg)];
		int code = err->code ? err->code : EIO;

		memcpy(why, err->msg, sizeof(why));
		if (rollback(&l) == 0)
			return vm_error_setx(
			    err, code, "live migration of %s failed (the VM runs on here): %s",
			    uuid, why);
		vm_debug("live %s: failure '%s' but the migration completed", uuid, why);
	}

	if (kvm_live_qcmd(q, "query-migrate", NULL, &m, err) >= 0) {
		rep->downtime_ms = json_integer_value(json_object_get(m, "downtime"));
		rep->setup_ms = json_integer_value(json_object_get(m, "setup-time"));
		rep->ram_transferred =
		    json_integer_value(json_object_get(json_object_get(m, "ram"), "transferred"));
	}
	source_done(&l, vm, &q);
	return 0;
}

int kvm_live_source_cancel(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	struct live_disk disks[KVM_LIVE_MAX_DISKS];
	_cleanup_json_ json_t *m = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	struct vm_live_report rep;
	struct live l = {.node = node, .uuid = uuid, .rep = &rep, .tls = true};
	struct vm_error qerr = {0};
	char name[64];
	size_t ndisks;
	int r;

	if (!uuid)
		return vm_error_setx(err, EINVAL, "live migration: VM record has no uuid");
	r = kvm_live_record_disks(vm, disks, &ndisks, err);
	if (r < 0)
		return r;
	if (kvm_qmp_open(node, uuid, &q, &qerr) < 0)
		/* Not running: fold what the overlays hold into the images. */
		return kvm_live_overlays_commit_offline(node, uuid, disks, ndisks, err);

	/* Whatever a migration left (its process may have died): the same
	 * rollback as after a failure. */
	l.q = q;
	l.disks = disks;
	l.ndisks = ndisks;
	if (kvm_live_qcmd(q, "query-migrate", NULL, &m, &qerr) >= 0)
		l.migrating = !streq(kvm_live_migrate_status(m), "none");
	for (size_t i = 0; i < ndisks; i++) {
		kvm_live_nbd_node(name, sizeof(name), disks[i].node);
		l.nbd_added[i] = kvm_live_node_exists(q, name);
	}
	if (rollback(&l) == 1)
		return vm_error_setx(
		    err, EALREADY,
		    "cancel live migration of %s: it completed, the VM runs on the "
		    "target",
		    uuid);
	for (size_t i = 0; i < ndisks; i++) {
		kvm_live_overlay_node(name, sizeof(name), disks[i].node);
		if (kvm_live_node_exists(q, name))
			return vm_error_setx(err, EBUSY,
					     "cancel live migration of %s: %s still runs on its "
					     "overlay (see the log)",
					     uuid, disks[i].node);
	}
	return 0;
}

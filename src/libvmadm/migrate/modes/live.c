/* SPDX-License-Identifier: MIT */
/*
 * The "live" mode of a network migration (`vmadm send UUID -L HOST PORT`,
 * docs/migration-protocol.md, section "Live mode"): a running kvm VM moves
 * with its local disks while the guest runs.
 *
 * The hypervisor's side is the brand's live sub-table (brand/live.h; kvm's
 * is QEMU's, brand/kvm-live*.c): this file says only what the mode does.
 *
 *   source                                  target (vmadmd)
 *   live->source_begin(instant)
 *   full stream of the instant  ---DATA-->  vm_incr_receive_pass (held)
 *   DATA_END                                vm_incr_finish: installed, stopped,
 *                                           autoboot off, datasets at their
 *                                           final names
 *                                           live->target_prepare (QEMU
 *                                           -incoming on those paths)
 *                               <--------   live_ready {info}
 *   live->source_migrate(info)              (progress keepalives meanwhile)
 *   source QEMU completed, quit
 *   live_done {report}          -------->   live->target_finish (resume),
 *                                           record state running
 *                               <--------   live_resumed {resumed_us}
 *                               <--------   INSTALLED (common), CONFIRM, DONE
 *
 * Why the datasets are installed before QEMU starts: QEMU opens the disk
 * files by path, and the record's paths must be right for the next stop
 * and start; installing first (rename of the temps into place) means QEMU
 * opens the final paths and nothing is renamed under it. Until the target
 * resumes, the installed VM has autoboot off; any failure before the resume
 * kills the target QEMU and deletes the VM there (record and datasets).
 *
 * Never on two hosts: the target resumes only on live_done, which the
 * source sends only after its QEMU completed and quit. If the link dies
 * after that, the VM stays stopped on both sides (the source cannot know
 * whether the target resumed) and the error says so.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "brand/live.h"
#include "migrate/local/incremental.h"
#include "migrate/local/journal.h"
#include "migrate/local/local.h"
#include "migrate/transport/proto.h"
#include "net/net-private.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/store.h"
#include "vm/vm.h"

/* The live sub-table of vm's brand, NULL when its VMs do not migrate
 * live. */
static const struct vm_brand_live_ops *live_ops(json_t *vm)
{
	const struct vm_brand_ops *ops =
	    vm_brand_ops_by_name(json_string_value(json_object_get(vm, "brand")));

	return ops ? ops->live : NULL;
}

static int live_check(json_t *vm, struct vm_error *err)
{
	const char *brand = json_string_value(json_object_get(vm, "brand"));
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));

	if (live_ops(vm))
		return 0;
	return vm_error_setx(err, EOPNOTSUPP,
			     "live migration (-L) is for kvm VMs only: VM %s is brand %s; "
			     "containers migrate with -I (a live container migration needs "
			     "CRIU, which does not work on these kernels)",
			     uuid ? uuid : "?", brand ? brand : "(none)");
}

/* ---- source ---- */

struct live_src {
	struct migrate_source *ctx;
	pthread_mutex_t lock;
	char phase[32];
	char dataset[256];
	int fd;
	int r;
	struct vm_error err;
	double last_keep;
	volatile sig_atomic_t cancel; /* the user's or the target's */
	bool peer_failed;
};

static bool user_cancelled(struct migrate_source *ctx)
{
	return ctx->opts->cancel && *ctx->opts->cancel;
}

static void on_pass_progress(const struct vm_progress *p, void *userdata)
{
	struct live_src *s = userdata;

	pthread_mutex_lock(&s->lock);
	snprintf(s->phase, sizeof(s->phase), "%s", p->phase);
	snprintf(s->dataset, sizeof(s->dataset), "%s", p->dataset ? p->dataset : "");
	pthread_mutex_unlock(&s->lock);
}

/* Called by the pump at least once a second: a cancel cuts the connection
 * under it, so that it returns at once. */
static void pass_where(void *userdata, char phase[32], char dataset[256])
{
	struct live_src *s = userdata;

	pthread_mutex_lock(&s->lock);
	memcpy(phase, s->phase, 32);
	memcpy(dataset, s->dataset, 256);
	pthread_mutex_unlock(&s->lock);
	if (user_cancelled(s->ctx) && !s->cancel) {
		s->cancel = 1;
		shutdown(s->ctx->conn->fd, SHUT_RDWR);
	}
}

static void *pass_thread(void *arg)
{
	struct live_src *s = arg;
	struct vm_send_opts o = {
	    .portable = s->ctx->portable,
	    .compress = s->ctx->compress,
	    .progress = on_pass_progress,
	    .userdata = s,
	};

	s->r = vm_incr_send_pass(s->ctx->node, s->ctx->uuid, NULL, s->ctx->instant, s->fd, &o, NULL,
				 &s->err);
	close(s->fd);
	return NULL;
}

/* The snapshot stream of the instant, as DATA frames, then DATA_END. */
static int send_snapshots(struct live_src *s, struct vm_error *err)
{
	struct migrate_source *ctx = s->ctx;
	pthread_t th;
	int p[2], r;

	snprintf(s->phase, sizeof(s->phase), "send");
	if (pipe2(p, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "make a pipe");
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	s->fd = p[1];
	r = pthread_create(&th, NULL, pass_thread, s);
	if (r != 0) {
		close(p[0]);
		close(p[1]);
		return vm_error_set(err, r, "start the sending thread");
	}
	r = migrate_pump_to_conn(ctx, p[0], pass_where, s, err);
	close(p[0]);
	pthread_join(th, NULL);
	if (s->cancel)
		return vm_error_setx(err, ECANCELED, "cancelled while sending the disk snapshots");
	if (r < 0)
		return r;
	if (s->r < 0) {
		*err = s->err;
		return s->r;
	}
	return net_send_frame(ctx->conn, NET_FRAME_DATA_END, NULL, 0, err);
}

static void on_live_progress(const struct vm_live_progress *p, void *userdata)
{
	struct live_src *s = userdata;
	struct migrate_source *ctx = s->ctx;
	double now = migrate_now();

	if (user_cancelled(ctx))
		s->cancel = 1;
	/* The target answers only to fail (or its connection died). */
	if (!s->cancel && net_conn_readable(ctx->conn)) {
		s->peer_failed = true;
		s->cancel = 1;
	}
	if (now - s->last_keep >= 1.0) {
		_cleanup_json_ json_t *x = json_pack("{s:s}", "phase", p->phase);
		struct vm_error e = {0};
		s->last_keep = now;
		net_send_progress(ctx->conn, x, &e);
	}
	if (ctx->opts->event) {
		struct migrate_event ev = {.phase = p->phase, .eta = -1, .live = p};
		if (streq(p->phase, "disk")) {
			ev.bytes = p->disk_copied;
			ev.total = p->disk_copied + p->disk_dirty;
		} else {
			ev.bytes = p->ram_transferred;
			ev.total = p->ram_transferred + p->ram_remaining;
		}
		ev.rate = p->mbps * 1e6 / 8;
		ctx->opts->event(&ev, ctx->opts->userdata);
	}
}

static void emit(struct migrate_source *ctx, const char *phase)
{
	struct migrate_event ev = {
	    .phase = phase, .eta = -1, .bytes = ctx->meter.bytes, .total = ctx->meter.bytes};

	if (ctx->opts->event)
		ctx->opts->event(&ev, ctx->opts->userdata);
}

/* Snapshot the VM's datasets that are not disks (the zone dataset: nothing
 * of the guest's) as the instant too: the stream needs every dataset. */
static int snapshot_rest(struct migrate_source *ctx, struct vm_error *err)
{
	_cleanup_json_ json_t *names = vm_datasets(ctx->vm);
	struct vm_pool *pool;
	json_t *x;
	size_t i;
	int r;

	r = vm_node_pool(ctx->node, &pool, err);
	if (r < 0)
		return r;
	json_array_foreach (names, i, x) {
		const char *ds = json_string_value(x);
		if (migrate_is_volume_name(ctx->uuid, ds))
			continue;
		r = vm_pool_snapshot(pool, ds, ctx->instant, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The source record after its QEMU completed and quit: stopped. */
static void record_stopped(struct vm_node *node, const char *uuid)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	struct vm_error e = {0};

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, &e);
	if (lock < 0 || vm_store_load(node, uuid, &vm, &e) < 0) {
		vm_warn("VM %s: mark stopped after the live migration: %s", uuid, e.msg);
		return;
	}
	vm_record_set_stopped(vm);
	if (vm_store_save(node, vm, &e) < 0)
		vm_warn("VM %s: mark stopped after the live migration: %s", uuid, e.msg);
}

static int live_source_run(struct migrate_source *ctx, json_t **ret_record,
			   struct vm_error *err);

/* While the source runs on overlays, they are this process's; if it dies
 * (SIGKILL), the next command finds the owner lock free and puts the VM
 * back on its own disks (vm_send_recover). */
static int live_source(struct migrate_source *ctx, json_t **ret_record, struct vm_error *err)
{
	int owner = migrate_owner_lock(ctx->node, ctx->uuid, "live", err);
	int r;

	if (owner < 0)
		return owner;
	r = live_source_run(ctx, ret_record, err);
	migrate_owner_unlock(ctx->node, ctx->uuid, "live", owner);
	return r;
}

static int live_source_run(struct migrate_source *ctx, json_t **ret_record,
			   struct vm_error *err)
{
	const struct vm_brand_live_ops *live = live_ops(ctx->vm);
	struct live_src s = {.ctx = ctx};
	_cleanup_json_ json_t *ready = NULL, *resumed = NULL, *installed = NULL;
	struct vm_live_report rep = {0};
	struct vm_live_opts lo = {0};
	struct vm_error e = {0};
	double t0 = migrate_now(), t_sent;
	int timeout = net_conn_timeout(ctx->conn);
	int64_t pause_ms = -1;
	int r;

	ctx->was_running = false; /* the guest runs on here on every failure */
	ctx->keep_snapshots = false;
	pthread_mutex_init(&s.lock, NULL);
	r = live_check(ctx->vm, err);
	if (r < 0)
		goto fail_early;
	if (user_cancelled(ctx)) {
		r = vm_error_setx(err, ECANCELED, "cancelled");
		goto fail_early;
	}
	emit(ctx, "snapshot");
	r = live->source_begin(ctx->node, ctx->vm, ctx->instant, err);
	if (r < 0)
		goto fail_early;
	r = snapshot_rest(ctx, err);
	if (r >= 0)
		r = send_snapshots(&s, err);
	if (r >= 0) {
		emit(ctx, "prepare");
		r = net_expect_msg(ctx->conn, "live_ready", &ready, err);
	}
	if (r < 0) {
		live->source_cancel(ctx->node, ctx->vm, &e);
		goto fail;
	}
	t_sent = migrate_now();

	lo.downtime_limit_ms = ctx->opts->downtime_limit_ms;
	lo.timeout_ms = ctx->opts->live_timeout > 0 ? ctx->opts->live_timeout * 1000LL : 0;
	lo.stall_ms = timeout * 1000LL;
	/* --bwlimit caps the QEMU streams too: RAM, and each disk mirror. */
	lo.max_bandwidth = (int64_t)ctx->opts->bwlimit;
	lo.disk_speed = (int64_t)ctx->opts->bwlimit;
	lo.cancel = &s.cancel;
	lo.progress = on_live_progress;
	lo.userdata = &s;
	/* The target's info is the brand's: it goes to it as it came. */
	r = live->source_migrate(ctx->node, ctx->vm, json_object_get(ready, "info"), &lo, &rep,
				 err);
	if (r < 0) {
		if (s.peer_failed) {
			/* Say what the target said. */
			_cleanup_json_ json_t *m = NULL;
			char why[sizeof(err->msg)];
			snprintf(why, sizeof(why), "%s", err->msg);
			if (net_recv_msg(ctx->conn, &m, &e) < 0)
				vm_error_setx(err, ECONNABORTED, "%s (the target: %s)", why, e.msg);
			else if (json_string_value(json_object_get(m, "reason")))
				vm_error_setx(err, ECONNABORTED, "%s (the target: %s)", why,
					      json_string_value(json_object_get(m, "reason")));
		} else if (s.cancel) {
			err->code = ECANCELED; /* the brand's message says "cancelled" */
		}
		goto fail;
	}

	/* The source QEMU completed and quit: from here the guest lives only
	 * in the target's paused QEMU until it resumes. */
	record_stopped(ctx->node, ctx->uuid);
	ctx->was_running = true; /* restart here only if the target says it failed */
	{
		_cleanup_json_ json_t *m = json_pack("{s:s, s:I}", "type", "live_done",
						     "stopped_us", (json_int_t)rep.stopped_us);
		r = net_send_msg(ctx->conn, m, err);
	}
	if (r >= 0)
		r = net_recv_msg(ctx->conn, &resumed, err);
	if (r < 0) {
		ctx->was_running = false;
		return vm_error_prefix(err,
				       "live migration completed but the target's resume is "
				       "unknown (VM %s may run there: check it; it stays stopped "
				       "here)",
				       ctx->uuid);
	}
	if (!streq(json_string_value(json_object_get(resumed, "type")) ?: "", "live_resumed")) {
		/* FAILED: the target killed its QEMU before resuming it. */
		return vm_error_setx(err, EIO, "the target failed to resume VM %s: %s", ctx->uuid,
				     json_string_value(json_object_get(resumed, "reason"))
					 ?: json_string_value(json_object_get(resumed, "type")));
	}
	ctx->was_running = false; /* it runs there */
	{
		int64_t resumed_us = json_integer_value(json_object_get(resumed, "resumed_us"));
		if (resumed_us > 0 && rep.stopped_us > 0)
			pause_ms = (resumed_us - rep.stopped_us) / 1000;
	}
	emit(ctx, "install");
	r = net_expect_msg(ctx->conn, "installed", &installed, err);
	if (r < 0)
		return vm_error_prefix(err, "VM %s runs on the target, but", ctx->uuid);
	ctx->report = json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "downtime_ms",
	    (json_int_t)rep.downtime_ms, "pause_ms", (json_int_t)pause_ms, "total_ms",
	    (json_int_t)((migrate_now() - t0) * 1000), "snapshot_send_ms",
	    (json_int_t)((t_sent - t0) * 1000), "qemu_total_ms", (json_int_t)rep.total_ms,
	    "ram_transferred", (json_int_t)rep.ram_transferred, "disk_copied",
	    (json_int_t)rep.disk_copied, "downtime_limit_ms", (json_int_t)rep.downtime_limit_ms,
	    "switchover_disk_ms", (json_int_t)rep.switchover_disk_ms);
	*ret_record = json_incref(json_object_get(installed, "record"));
	pthread_mutex_destroy(&s.lock);
	return 0;

fail:
	vm_send_drop_snapshots(ctx->node, ctx->uuid, ctx->instant, &e);
fail_early:
	net_send_error(ctx->conn, err->msg);
	pthread_mutex_destroy(&s.lock);
	return r;
}

/* ---- target ---- */

struct live_recv {
	struct migrate_target *ctx;
	int fd;
	int r;
	struct vm_error err;
};

static void *recv_thread(void *arg)
{
	struct live_recv *lr = arg;
	/* the stream must carry the VM BEGIN announced */
	struct vm_recv_opts o = {.uuid = lr->ctx->uuid,
				 .brand = json_string_value(json_object_get(
				     json_object_get(lr->ctx->begin, "config"), "brand"))};
	struct vm_incr_held h;

	lr->r = vm_incr_receive_pass(lr->ctx->node, lr->fd, NULL, 0, &o, &h, &lr->err);
	close(lr->fd);
	return NULL;
}

/* The snapshot stream, held. */
static int receive_snapshots(struct migrate_target *ctx, struct vm_error *err)
{
	struct live_recv lr = {.ctx = ctx};
	struct vm_pool *pool;
	int pumped, r;

	r = vm_node_pool(ctx->node, &pool, err);
	if (r < 0)
		return r;
	r = migrate_pump_to_thread(ctx, recv_thread, &lr, &lr.fd, "receive", &pumped, err);
	if (r < 0)
		return r; /* nothing runs */
	r = pumped;
	if (r < 0 && r != -EPIPE)
		return r;
	if (lr.r < 0) {
		*err = lr.err;
		return lr.r;
	}
	return r;
}

/* The target's own address on the connection: where the source reaches it. */
static int local_address(struct net_conn *c, char *buf, size_t len, struct vm_error *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const void *a;

	if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) < 0)
		return vm_error_set(err, errno, "getsockname");
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a = &s6->sin6_addr.s6_addr[12];
			return inet_ntop(AF_INET, a, buf, len) ? 0 : -errno;
		}
		a = &s6->sin6_addr;
	} else {
		a = &((struct sockaddr_in *)&ss)->sin_addr;
	}
	if (!inet_ntop(ss.ss_family, a, buf, len))
		return vm_error_set(err, errno, "inet_ntop");
	return 0;
}

/* Set fields of the stored record (the caller holds the VM's lock); *ret
 * (may be NULL) gets it. Until the guest runs here the record carries
 * transition "migrating": if this vmadmd dies meanwhile, the next command
 * stops what is left of the VM and removes it (vm_store_recover). */
static int record_update(struct vm_node *node, const char *uuid, bool running, json_t **ret,
			 struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	int r;

	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	json_object_set_new(vm, "autoboot", json_false());
	if (!running)
		json_object_set_new(vm, "transition", json_string("migrating"));
	else
		json_object_del(vm, "transition");
	if (running) {
		char ts[32];
		vm_timestamp_now(ts);
		json_object_set_new(vm, "state", json_string("running"));
		json_object_set_new(vm, "zone_state", json_string("running"));
		json_object_set_new(vm, "boot_timestamp", json_string(ts));
	}
	r = vm_store_save(node, vm, err);
	if (r >= 0 && ret)
		*ret = TAKE_PTR(vm);
	return r;
}

static int live_target(struct migrate_target *ctx, json_t **ret_record, struct vm_error *err)
{
	const struct vm_brand_live_ops *live = live_ops(json_object_get(ctx->begin, "config"));
	_cleanup_json_ json_t *record = NULL, *info = NULL, *done = NULL, *autoboot = NULL;
	_cleanup_close_ int lock = -1;
	struct vm_live_params params = {0};
	struct vm_error e = {0};
	int64_t resumed_us = 0;
	char host[INET6_ADDRSTRLEN];
	const char *t;
	int r;

	r = live_check(json_object_get(ctx->begin, "config"), err);
	if (r < 0)
		return r;
	r = receive_snapshots(ctx, err);
	if (r < 0) {
		vm_incr_abort(ctx->node, ctx->uuid, &e);
		return r;
	}
	r = vm_incr_finish(ctx->node, ctx->uuid, &record, err);
	if (r < 0) {
		vm_incr_abort(ctx->node, ctx->uuid, &e);
		return r;
	}
	/* Installed: from here a failure deletes the VM. Autoboot off until
	 * the common CONFIRM (a reboot of this node must not start it). */
	autoboot = json_incref(json_object_get(record, "autoboot"));
	json_decref(record);
	record = NULL;
	/* Held until the guest runs here, so that no command takes the
	 * "migrating" record for a dead one. */
	lock = vm_store_lock(ctx->node, ctx->uuid, VM_LOCK_WAIT_SECS, err);
	r = lock < 0 ? lock : record_update(ctx->node, ctx->uuid, false, &record, err);
	if (r >= 0)
		r = local_address(ctx->conn, host, sizeof(host), err);
	if (r < 0)
		goto fail;
	params.host = host;
	r = live->target_prepare(ctx->node, record, &params, &info, err);
	if (r < 0)
		goto fail;
	{
		_cleanup_json_ json_t *m =
		    json_pack("{s:s, s:O}", "type", "live_ready", "info", info);
		r = net_send_msg(ctx->conn, m, err);
	}
	/* The source migrates; its progress messages keep the deadline away.
	 * A dead link or source fails here after the timeout. */
	if (r >= 0)
		r = net_recv_msg(ctx->conn, &done, err);
	if (r < 0)
		goto fail;
	t = json_string_value(json_object_get(done, "type"));
	if (!t || !streq(t, "live_done")) {
		r = vm_error_setx(err, EPROTO, "protocol error from %s: '%s' instead of live_done",
				  net_conn_peer(ctx->conn), t ? t : "?");
		goto fail;
	}
	r = live->target_finish(ctx->node, ctx->uuid, net_conn_timeout(ctx->conn) * 1000,
				&resumed_us, err);
	if (r < 0)
		goto fail;
	/* It runs here now. */
	json_decref(record);
	record = NULL;
	if (record_update(ctx->node, ctx->uuid, true, &record, &e) < 0)
		vm_warn("VM %s runs after a live migration, but its record: %s", ctx->uuid, e.msg);
	close(TAKE_FD(lock));
	{
		_cleanup_json_ json_t *m = json_pack("{s:s, s:I}", "type", "live_resumed",
						     "resumed_us", (json_int_t)resumed_us);
		net_send_msg(ctx->conn, m, &e);
	}
	if (!record)
		record = json_pack("{s:s, s:s}", "uuid", ctx->uuid, "state", "running");
	if (autoboot)
		json_object_set(record, "autoboot", autoboot);
	else
		json_object_del(record, "autoboot");
	*ret_record = TAKE_PTR(record);
	return 0;

fail:
	if (lock >= 0)
		close(TAKE_FD(lock));
	live->target_abort(ctx->node, ctx->uuid, &e);
	if (vm_delete(ctx->node, ctx->uuid, &e) < 0)
		vm_warn("VM %s: remove after the failed live migration: %s", ctx->uuid, e.msg);
	return r;
}

const struct migrate_mode_ops migrate_live_ops = {
    .mode = MIGRATE_LIVE,
    .name = "live",
    .source = live_source,
    .target = live_target,
    .check = live_check,
};

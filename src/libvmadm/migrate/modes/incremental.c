/* SPDX-License-Identifier: MIT */
/*
 * The "incremental" mode of a network migration (`vmadm send -I`), over the
 * passes of migrate/local/incremental.h. The exchange (docs/migration-protocol.md,
 * "Incremental mode"), after ACCEPT:
 *
 *   target: {"type":"incr-held","snapshot": S or null}   what it holds
 *   per pass, source: {"type":"pass","pass":n,"final":b,"from":S|null,"snapshot":T}
 *           then DATA frames (a vmadm stream of T, incremental from S), DATA_END
 *   target: {"type":"pass-done","pass":n,"bytes":N,"seconds":s,"snapshot":T}
 *           (it holds T now and dropped S); the source then drops its S
 *   after the final pass (the VM stopped): the target installs and the
 *   common code's INSTALLED / CONFIRM / DONE follow.
 *
 * Snapshots are named "vmadm-send-I" + 12 hex of sha256(host:port) + "-" +
 * a sequence number, so that a re-run to the same target finds the one the
 * target holds and continues from it. ROOT/run/send-I-UUID.json remembers
 * the last one the target acknowledged.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/local/incremental.h"
#include "migrate/local/journal.h"
#include "migrate/transport/proto.h"
#include "storage/pool.h"
#include "util/fault.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/store.h"
#include "vm/vm.h"

#define INCR_MAX_PASSES_CAP 64

/* "vmadm-send-I" + 12 hex: the prefix of our snapshots for this target. */
static void incr_prefix(const char *host, int port, char out[64])
{
	char inst[64];

	migrate_instant_name(host, port, inst); /* "vmadm-send-" + 12 hex */
	snprintf(out, 64, VM_INCR_SNAP_PREFIX "%s", inst + strlen("vmadm-send-"));
}

/* The sequence number of snapshot name under prefix, or 0. */
static unsigned snap_seq(const char *prefix, const char *name)
{
	size_t n = strlen(prefix);
	char *end;
	unsigned long v;

	if (!name || strncmp(name, prefix, n) != 0 || name[n] != '-')
		return 0;
	v = strtoul(name + n + 1, &end, 10);
	return *end ? 0 : (unsigned)v;
}

static bool has_snapshot_all(struct vm_node *node, const char *uuid, const char *snap)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL;
	struct vm_error e = {0};
	struct vm_pool *pool;
	json_t *x;
	size_t i;

	if (vm_store_load(node, uuid, &vm, &e) < 0 || vm_node_pool(node, &pool, &e) < 0)
		return false;
	names = vm_datasets(vm);
	json_array_foreach (names, i, x)
		if (!vm_pool_has_snapshot(pool, json_string_value(x), snap))
			return false;
	return json_array_size(names) > 0;
}

/* ROOT/run/send-I-UUID.json: {"prefix", "acked"}. */
static json_t *state_load(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-I-%s.json", uuid), *text = NULL;
	struct vm_error e = {0};

	if (!path || fs_read_file(path, 65536, &text, NULL, &e) < 0)
		return NULL;
	return json_loads(text, 0, NULL);
}

static void state_save(struct vm_node *node, const char *uuid, const char *prefix,
		       const char *acked)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-I-%s.json", uuid);
	_cleanup_json_ json_t *st = json_pack("{s:s, s:s}", "prefix", prefix, "acked", acked);
	_cleanup_free_ char *text = st ? json_dumps(st, JSON_COMPACT) : NULL;
	struct vm_error e = {0};

	if (path && text)
		fs_write_atomic(path, text, strlen(text), 0600, &e);
}

static void state_remove(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-I-%s.json", uuid);

	if (path)
		unlink(path);
}

/* ---- source ---- */

struct pass_job {
	struct migrate_source *ctx;
	pthread_mutex_t lock;
	char phase[32];
	char dataset[256];
	const char *from; /* NULL: full */
	const char *snap;
	bool stop_first; /* the final pass of a running VM */
	bool stopped;	 /* the VM was stopped by this job */
	double stopped_at;
	double stop_seconds; /* the stop itself */
	int fd;
	int r;
	uint64_t bytes;
	struct vm_error err;
};

static void job_phase(struct pass_job *j, const char *phase, const char *ds)
{
	pthread_mutex_lock(&j->lock);
	snprintf(j->phase, sizeof(j->phase), "%s", phase);
	snprintf(j->dataset, sizeof(j->dataset), "%s", ds ? ds : "");
	pthread_mutex_unlock(&j->lock);
}

static void on_pass_progress(const struct vm_progress *p, void *userdata)
{
	job_phase(userdata, p->phase, p->dataset);
}

static void job_where(void *userdata, char phase[32], char dataset[256])
{
	struct pass_job *j = userdata;

	pthread_mutex_lock(&j->lock);
	memcpy(phase, j->phase, 32);
	memcpy(dataset, j->dataset, 256);
	pthread_mutex_unlock(&j->lock);
}

/* Does the VM run, with a brand that can quiesce it for the final stop? */
static bool quiesces(struct migrate_source *ctx)
{
	_cleanup_json_ json_t *vm = NULL;
	const struct vm_brand_ops *ops;
	struct vm_error e = {0};

	if (vm_get(ctx->node, ctx->uuid, &vm, &e) < 0)
		return false;
	ops = vm_brand_ops_by_name(jstr(vm, "brand"));
	return ops && ops->quiesce && jstr(vm, "state") && streq(jstr(vm, "state"), "running");
}

/* Destroy snapshot snap of the first n datasets of names. */
static void drop_taken(struct vm_pool *pool, json_t *names, size_t n, const char *snap)
{
	for (size_t i = 0; i < n; i++) {
		struct vm_error e = {0};
		vm_pool_destroy_snapshot(pool, json_string_value(json_array_get(names, i)), snap,
					 &e);
	}
}

/* The final stop of a running VM whose brand quiesces: quiesce it
 * (*ret_at: when), snapshot every dataset as snap, then end it (forced:
 * the guest is paused). On a failure before it ends the guest runs on. */
static int stop_paused(struct migrate_source *ctx, const char *snap, double *ret_at,
		       struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *names = NULL;
	const struct vm_brand_ops *ops = NULL;
	struct vm_pool *pool;
	size_t i, taken = 0;
	json_t *x;
	int r;

	*ret_at = migrate_now();
	r = vm_store_load(ctx->node, ctx->uuid, &vm, err);
	if (r >= 0)
		r = vm_node_pool(ctx->node, &pool, err);
	if (r >= 0) {
		ops = vm_brand_ops_by_name(jstr(vm, "brand"));
		if (!ops || !ops->quiesce)
			r = vm_error_setx(err, EOPNOTSUPP, "its brand cannot pause it");
	}
	if (r >= 0)
		r = ops->quiesce(ctx->node, vm, err);
	if (r < 0)
		return vm_error_prefix(err, "pause VM %s for the final pass", ctx->uuid);
	*ret_at = migrate_now();
	names = vm_datasets(vm);
	json_array_foreach (names, i, x) {
		r = vm_pool_snapshot(pool, json_string_value(x), snap, err);
		if (r < 0)
			break;
		taken++;
	}
	if (r < 0) {
		struct vm_error e = {0};
		drop_taken(pool, names, taken, snap);
		ops->resume(ctx->node, vm, &e);
		return r;
	}
	r = vm_stop(ctx->node, ctx->uuid, 0, true, err);
	if (r < 0) {
		drop_taken(pool, names, taken, snap);
		return vm_error_prefix(err, "stop VM %s for the final pass", ctx->uuid);
	}
	return 0;
}

static void *pass_thread(void *arg)
{
	struct pass_job *j = arg;
	struct migrate_source *ctx = j->ctx;
	struct vm_send_opts o = {
	    .portable = ctx->portable,
	    .compress = ctx->compress,
	    .progress = on_pass_progress,
	    .userdata = j,
	};

	j->r = 0;
	if (j->stop_first && ctx->opts->final_pause && quiesces(ctx)) {
		/* --final-stop pause: the guest quiesced (kvm: paused, its
		 * last completed writes on its disks, QEMU drained them), its
		 * disks snapshotted as they are, then the VM ended; no guest
		 * shutdown in the downtime. */
		job_phase(j, "stop", NULL);
		j->r = stop_paused(ctx, j->snap, &j->stopped_at, &j->err);
		j->stop_seconds = migrate_now() - j->stopped_at;
		if (j->r >= 0)
			j->stopped = true;
		if (j->r >= 0) {
			job_phase(j, "send", NULL);
			j->r = vm_incr_send_pass(ctx->node, ctx->uuid, j->from, j->snap, j->fd, &o,
						 &j->bytes, &j->err);
		}
		close(j->fd);
		return NULL;
	}
	if (j->stop_first) {
		int t = ctx->opts->send.stop_timeout > 0 ? ctx->opts->send.stop_timeout : 60;
		job_phase(j, "stop", NULL);
		j->stopped_at = migrate_now();
		j->r = vm_stop(ctx->node, ctx->uuid, t, false, &j->err);
		j->stop_seconds = migrate_now() - j->stopped_at;
		if (j->r >= 0)
			j->stopped = true;
		else
			vm_error_prefix(&j->err, "stop VM %s for the final pass", ctx->uuid);
	}
	if (j->r >= 0) {
		job_phase(j, "snapshot", NULL);
		j->r = vm_incr_snapshot_all(ctx->node, ctx->uuid, j->snap, &j->err);
	}
	if (j->r >= 0) {
		job_phase(j, "send", NULL);
		j->r = vm_incr_send_pass(ctx->node, ctx->uuid, j->from, j->snap, j->fd, &o,
					 &j->bytes, &j->err);
	}
	close(j->fd);
	return NULL;
}

static void emit_pass(struct migrate_source *ctx, const char *phase,
		      const struct migrate_pass *pass)
{
	struct migrate_event ev = {.phase = phase,
				   .bytes = ctx->meter.bytes,
				   .total = ctx->total,
				   .eta = -1,
				   .pass = pass};

	if (ev.bytes > ev.total)
		ev.total = ev.bytes;
	migrate_meter_fill(&ctx->meter, &ev);
	ev.eta = -1;
	if (ctx->opts->event)
		ctx->opts->event(&ev, ctx->opts->userdata);
}

/* One pass: announce it, run the job in a thread feeding the conn, wait
 * for PASS_DONE. */
static int run_pass(struct migrate_source *ctx, unsigned n, bool final, struct pass_job *j,
		    json_t **ret_done, struct vm_error *err)
{
	_cleanup_json_ json_t *m = NULL;
	pthread_t th;
	int p[2], r;

	m = json_pack("{s:s, s:i, s:b, s:o, s:s}", "type", "pass", "pass", (int)n, "final", final,
		      "from", j->from ? json_string(j->from) : json_null(), "snapshot", j->snap);
	r = net_send_msg(ctx->conn, m, err);
	if (r < 0)
		return r;
	pthread_mutex_init(&j->lock, NULL);
	snprintf(j->phase, sizeof(j->phase), "snapshot");
	j->ctx = ctx;
	if (pipe2(p, O_CLOEXEC) < 0) {
		pthread_mutex_destroy(&j->lock);
		return vm_error_set(err, errno, "make a pipe");
	}
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	j->fd = p[1];
	r = pthread_create(&th, NULL, pass_thread, j);
	if (r != 0) {
		close(p[0]);
		close(p[1]);
		pthread_mutex_destroy(&j->lock);
		return vm_error_set(err, r, "start the sending thread");
	}
	r = migrate_pump_to_conn(ctx, p[0], job_where, j, err);
	close(p[0]);
	pthread_join(th, NULL);
	pthread_mutex_destroy(&j->lock);
	if (r < 0)
		return vm_error_prefix(err, "pass %u", n);
	if (j->r < 0) {
		net_send_error(ctx->conn, j->err.msg);
		*err = j->err;
		return vm_error_prefix(err, "pass %u", n);
	}
	vm_fault_point(final ? "incr-net-before-final-end" : "incr-net-before-pass-end");
	r = net_send_frame(ctx->conn, NET_FRAME_DATA_END, NULL, 0, err);
	if (r >= 0)
		r = net_expect_msg(ctx->conn, "pass-done", ret_done, err);
	if (r < 0)
		return vm_error_prefix(err, "pass %u", n);
	return 0;
}

static int incr_source(struct migrate_source *ctx, json_t **ret_record, struct vm_error *err)
{
	_cleanup_json_ json_t *held_msg = NULL, *st = NULL, *passes = json_array(), *m = NULL;
	struct vm_incr_pass meas[INCR_MAX_PASSES_CAP];
	struct vm_incr_rule rule = {.downtime_target_ms = ctx->opts->downtime_target_ms,
				    .max_passes = ctx->opts->max_passes};
	char prefix[64], base[256] = "", snap[256];
	const char *state = jstr(ctx->vm, "state"), *why = "the VM is stopped: one pass";
	const char *theirs;
	bool running = state && streq(state, "running");
	unsigned seq = 0, n = 0, max;
	uint64_t pass1 = 0;
	bool final = !running, resumed;
	char reason[256];
	int r;

	max = rule.max_passes ? rule.max_passes : VM_INCR_DEFAULT_MAX_PASSES;
	if (max > INCR_MAX_PASSES_CAP)
		max = rule.max_passes = INCR_MAX_PASSES_CAP;
	incr_prefix(ctx->host, ctx->port, prefix);
	r = net_expect_msg(ctx->conn, "incr-held", &held_msg, err);
	if (r < 0)
		return r;
	theirs = jstr(held_msg, "snapshot");
	st = state_load(ctx->node, ctx->uuid);
	{
		const char *acked = jstr(st, "acked");
		struct vm_error e = {0};
		/* Continue from what the target holds if we still have it. */
		if (theirs && snap_seq(prefix, theirs) > 0 &&
		    has_snapshot_all(ctx->node, ctx->uuid, theirs)) {
			snprintf(base, sizeof(base), "%s", theirs);
			seq = snap_seq(prefix, theirs);
		}
		if (acked && (!base[0] || !streq(acked, base)))
			vm_incr_drop_snapshot(ctx->node, ctx->uuid, acked, &e);
	}
	ctx->keep_snapshots = false;

	resumed = base[0] != '\0';
	for (;;) {
		struct pass_job j = {0};
		struct migrate_pass pass;
		_cleanup_json_ json_t *done = NULL;
		char from[256];
		double t0, secs;
		uint64_t b0, bytes;
		bool stop;

		if (n + 1 >= INCR_MAX_PASSES_CAP)
			final = true;
		snprintf(snap, sizeof(snap), "%s-%u", prefix, ++seq);
		j.from = base[0] ? base : NULL;
		j.snap = snap;
		j.stop_first = final && running;
		{
			struct vm_error e = {0};
			vm_incr_drop_snapshot(ctx->node, ctx->uuid, snap, &e); /* a stale one */
		}
		t0 = migrate_now();
		b0 = ctx->meter.bytes;
		r = run_pass(ctx, n + 1, final, &j, &done, err);
		if (j.stopped) {
			ctx->was_running = true;
			ctx->stopped_at = j.stopped_at;
		}
		if (r < 0) {
			struct vm_error e = {0};
			vm_incr_drop_snapshot(ctx->node, ctx->uuid, snap, &e);
			return r;
		}
		n++;
		secs = migrate_now() - t0;
		bytes = ctx->meter.bytes - b0;
		if (n == 1)
			pass1 = bytes;
		meas[n - 1] = (struct vm_incr_pass){.bytes = bytes, .seconds = secs};
		snprintf(from, sizeof(from), "%s", base); /* base changes below */
		pass = (struct migrate_pass){
		    .n = n,
		    .bytes = bytes,
		    .seconds = secs,
		    .rate = (uint64_t)(secs > 0 ? bytes / secs : 0),
		    .final = final,
		    .from = j.from ? from : NULL,
		    .target_seconds = json_real_value(json_object_get(done, "seconds")),
		    .stop_seconds = j.stopped ? j.stop_seconds : -1,
		};
		/* The target holds snap now and dropped base: ours goes too. */
		if (base[0]) {
			struct vm_error e = {0};
			vm_incr_drop_snapshot(ctx->node, ctx->uuid, base, &e);
		}
		snprintf(base, sizeof(base), "%s", snap);
		state_save(ctx->node, ctx->uuid, prefix, base);
		if (final) {
			json_array_append_new(passes, migrate_pass_json(&pass));
			emit_pass(ctx, "pass", &pass);
			break;
		}
		stop = vm_incr_should_stop(meas, n, &rule, &why);
		pass.stop = stop;
		pass.reason = why;
		json_array_append_new(passes, migrate_pass_json(&pass));
		emit_pass(ctx, "pass", &pass);
		if (stop) {
			_cleanup_json_ json_t *vm = NULL;
			struct vm_error e = {0};
			snprintf(reason, sizeof(reason), "%s", why);
			why = reason;
			final = true;
			/* it may have stopped by itself meanwhile */
			if (vm_get(ctx->node, ctx->uuid, &vm, &e) >= 0 && jstr(vm, "state") &&
			    !streq(jstr(vm, "state"), "running"))
				running = false;
		}
	}
	emit_pass(ctx, "install", NULL);
	r = net_expect_msg(ctx->conn, "installed", &m, err);
	if (r < 0)
		return r;
	/* Installed there: our last snapshot has no use any more. */
	{
		struct vm_error e = {0};
		vm_incr_drop_snapshot(ctx->node, ctx->uuid, base, &e);
		state_remove(ctx->node, ctx->uuid);
	}
	ctx->report = json_pack("{s:O, s:s, s:I, s:b}", "passes", passes, "stop_reason", why,
				"pass1_bytes", (json_int_t)pass1, "resumed", resumed);
	*ret_record = json_incref(json_object_get(m, "record"));
	return 0;
}

/* ---- target ---- */

struct recv_job {
	struct migrate_target *ctx;
	struct vm_node *node;
	int fd;
	int r;
	struct vm_incr_held held;
	struct vm_error err;
};

static void *recv_thread(void *arg)
{
	struct recv_job *j = arg;
	/* every pass must carry the VM BEGIN announced */
	struct vm_recv_opts o = {.uuid = j->ctx->uuid,
				 .brand = json_string_value(json_object_get(
				     json_object_get(j->ctx->begin, "config"), "brand"))};

	j->r = vm_incr_receive_pass(j->node, j->fd, NULL, 0, &o, &j->held, &j->err);
	close(j->fd);
	return NULL;
}

/* Keep the held receive (the last pass that landed) for a re-run until
 * partial_keep_secs from now. */
static void hold_for_resume(struct migrate_target *ctx)
{
	_cleanup_json_ json_t *j = NULL;
	struct vm_error e = {0};

	if (recv_journal_load(ctx->node, ctx->uuid, &j, &e) < 0 || !j)
		return;
	if (!jstr(j, "phase") || !streq(jstr(j, "phase"), "held"))
		return;
	if (ctx->hold_secs <= 0) {
		vm_incr_abort(ctx->node, ctx->uuid, &e);
		return;
	}
	json_object_set_new(j, "expires", json_integer(time(NULL) + ctx->hold_secs));
	json_object_set_new(j, "instant", json_string(jstr(ctx->begin, "instant") ?: ""));
	recv_journal_write(ctx->node, j, &e);
	vm_info("VM %s: keeping pass %s for a resume for %lld s", ctx->uuid,
		jstr(j, "snapshot") ?: "?", (long long)ctx->hold_secs);
}

static int target_pass(struct migrate_target *ctx, struct vm_incr_held *ret, struct vm_error *err)
{
	struct recv_job j = {.ctx = ctx, .node = ctx->node};
	int pumped, r;

	r = migrate_pump_to_thread(ctx, recv_thread, &j, &j.fd, "receive", &pumped, err);
	if (r < 0)
		return r; /* nothing runs */
	r = pumped;
	if (r < 0 && r != -EPIPE)
		return r;
	if (j.r < 0) {
		*err = j.err;
		return j.r;
	}
	if (r < 0)
		return r;
	*ret = j.held;
	return 0;
}

static int incr_target_run(struct migrate_target *ctx, json_t **ret_record, struct vm_error *err);

/* While this migration runs its held receive is ours (between passes the
 * VM's lock is free); if vmadmd dies, the next command finds the owner lock
 * free and keeps the receive as after a failure (migrate/local/journal.c). */
static int incr_target(struct migrate_target *ctx, json_t **ret_record, struct vm_error *err)
{
	int owner = migrate_owner_lock(ctx->node, ctx->uuid, "incr", err);
	int r;

	if (owner < 0)
		return owner;
	r = incr_target_run(ctx, ret_record, err);
	migrate_owner_unlock(ctx->node, ctx->uuid, "incr", owner);
	return r;
}

static int incr_target_run(struct migrate_target *ctx, json_t **ret_record, struct vm_error *err)
{
	_cleanup_free_ char *held = NULL;
	struct vm_error e = {0};
	int r;

	/* What an earlier run left here (migrate/transport/session.c let a held receive
	 * of this VM through): the source continues from it if it can. */
	if (vm_incr_held_snapshot(ctx->node, ctx->uuid, &held, &e) < 0)
		held = NULL;
	if (held) {
		/* In use again: no expiry while this send runs (a failure sets
		 * a new one). */
		_cleanup_json_ json_t *j = NULL;
		_cleanup_close_ int lock = vm_store_lock(ctx->node, ctx->uuid, VM_LOCK_WAIT_SECS, &e);
		if (lock >= 0 && recv_journal_load(ctx->node, ctx->uuid, &j, &e) >= 0 && j &&
		    json_object_get(j, "expires")) {
			json_object_del(j, "expires");
			recv_journal_write(ctx->node, j, &e);
		}
	}
	{
		_cleanup_json_ json_t *m = json_pack("{s:s, s:o}", "type", "incr-held", "snapshot",
						     held ? json_string(held) : json_null());
		r = net_send_msg(ctx->conn, m, err);
		if (r < 0)
			goto fail;
	}
	for (;;) {
		_cleanup_json_ json_t *m = NULL;
		struct vm_incr_held out = {0};
		double t0;
		bool final;

		r = net_expect_msg(ctx->conn, "pass", &m, err);
		if (r < 0)
			goto fail;
		final = json_is_true(json_object_get(m, "final"));
		t0 = migrate_now();
		r = target_pass(ctx, &out, err);
		if (r < 0) {
			vm_error_prefix(err, "pass %lld",
					json_integer_value(json_object_get(m, "pass")));
			goto fail;
		}
		{
			_cleanup_json_ json_t *d =
			    json_pack("{s:s, s:I, s:I, s:f, s:s}", "type", "pass-done", "pass",
				      json_integer_value(json_object_get(m, "pass")), "bytes",
				      (json_int_t)out.bytes, "seconds", migrate_now() - t0,
				      "snapshot", out.snapshot);
			r = net_send_msg(ctx->conn, d, err);
			if (r < 0)
				goto fail;
		}
		if (final)
			break;
	}
	r = vm_incr_finish(ctx->node, ctx->uuid, ret_record, err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	hold_for_resume(ctx);
	return r;
}

const struct migrate_mode_ops migrate_incremental_ops = {
    .mode = MIGRATE_INCREMENTAL,
    .name = "incremental",
    .source = incr_source,
    .target = incr_target,
};

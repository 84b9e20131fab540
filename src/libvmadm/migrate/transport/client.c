/* SPDX-License-Identifier: MIT */
/* The source of a network migration: `vmadm send UUID HOST PORT`. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/transport/proto.h"
#include "storage/pool.h"
#include "util/log.h"
#include "util/json.h"
#include "util/macros.h"
#include "vm/store.h"
#include "vm/vm.h"

static const char *node_name(struct vm_node *node, char buf[256])
{
	const char *n = vm_node_conf_str(node, "name", NULL, NULL);

	if (n)
		return n;
	if (gethostname(buf, 255) < 0)
		return "?";
	buf[255] = '\0';
	return buf;
}

json_t *migrate_hello(struct vm_node *node)
{
	struct vm_pool *pool;
	struct vm_error e = { 0 };
	char host[256];
	json_t *enc = json_array();

	if (vm_node_pool(node, &pool, &e) >= 0 && vm_pool_native_encoding(pool))
		json_array_append_new(enc, json_string(vm_pool_native_encoding(pool)));
	json_array_append_new(enc, json_string("tar"));
	json_array_append_new(enc, json_string("blocks"));
	return json_pack("{s:s, s:i, s:s, s:s, s:o, s:[s]}", "type", "hello", "protocol",
			 NET_PROTOCOL_VERSION, "node", node_name(node, host), "version",
			 VMADM_VERSION, "encodings", enc, "compression", "zstd");
}

static void emit(const struct migrate_send_opts *o, const char *phase, uint64_t bytes,
		 uint64_t total)
{
	struct migrate_event ev = {.phase = phase, .bytes = bytes, .total = total, .eta = -1};

	/* The estimate was short (stream headers): the end is the total. */
	if (bytes > total)
		ev.total = bytes;

	if (o->event)
		o->event(&ev, o->userdata);
}

/* Mark the source VM as gone to host:port: autoboot off (a reboot of this
 * node must not start a second copy), migrated_to set. */
static int mark_migrated(struct vm_node *node, const char *uuid, const char *host, int port,
			 struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	char ts[32];
	int r;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	vm_timestamp_now(ts);
	json_object_set_new(vm, "autoboot", json_false());
	json_object_set_new(vm, "migrated_to",
			    json_pack("{s:s, s:i, s:s}", "host", host, "port", port, "time", ts));
	return vm_store_save(node, vm, err);
}

/* One run of migrate_send_remote: what it holds (sender_done frees it) and
 * the source context the mode sees, filled step by step. */
struct sender {
	struct migrate_source ctx;
	const struct migrate_mode_ops *mode;
	json_t *vm, *estimate, *their, *accept;
	struct net_conn *conn;
	struct vm_pool *pool;
	bool running;	    /* the VM ran when this run began */
	bool prior_running; /* it ran before the first run of this send stopped it */
	double t_mode;	    /* when the mode began */
};

static void sender_done(struct sender *s)
{
	json_decref(s->vm);
	json_decref(s->estimate);
	json_decref(s->their);
	json_decref(s->accept);
	json_decref(s->ctx.report);
	net_conn_free(s->conn);
}

/* May the VM move, in this mode? Loads its record (ctx->vm) and estimates
 * the stream (ctx->total). */
static int send_check(struct sender *s, struct vm_error *err)
{
	struct migrate_source *ctx = &s->ctx;
	const char *state;
	json_t *to;
	int r;

	r = vm_get(ctx->node, ctx->uuid, &s->vm, err);
	if (r < 0)
		return r;
	ctx->vm = s->vm;
	state = json_string_value(json_object_get(s->vm, "state"));
	if (state && !streq(state, "stopped") && !streq(state, "running"))
		return vm_error_setx(err, EBUSY, "VM %s is %s and cannot be sent", ctx->uuid,
				     state);
	s->running = state && streq(state, "running");
	to = json_object_get(s->vm, "migrated_to");
	if (to && !json_is_null(to))
		return vm_error_setx(err, EALREADY,
				     "VM %s was already migrated to %s:%lld: delete it here, or "
				     "clear migrated_to first",
				     ctx->uuid, json_string_value(json_object_get(to, "host")),
				     json_integer_value(json_object_get(to, "port")));
	if (s->mode->check) {
		r = s->mode->check(s->vm, err);
		if (r < 0)
			return r;
	}
	r = vm_send_estimate(ctx->node, ctx->uuid, &s->estimate, &ctx->total, err);
	if (r < 0)
		return r;
	return vm_node_pool(ctx->node, &s->pool, err);
}

/* Connect to the target's vmadmd: TLS with the node key. */
static int send_connect(struct sender *s, const uint8_t key[NET_KEY_LEN], struct vm_error *err)
{
	struct migrate_source *ctx = &s->ctx;
	int timeout = ctx->opts->timeout > 0 ? ctx->opts->timeout : net_node_timeout(ctx->node);
	int r;

	emit(ctx->opts, "connect", 0, ctx->total);
	r = net_connect(ctx->host, ctx->port, key, timeout, &s->conn, err);
	if (r < 0)
		return r;
	ctx->conn = s->conn;
	return 0;
}

/* HELLO both ways: the target must speak this protocol. */
static int send_hello(struct sender *s, struct vm_error *err)
{
	struct migrate_source *ctx = &s->ctx;
	_cleanup_json_ json_t *hello = migrate_hello(ctx->node);
	json_int_t theirs;
	int r;

	r = net_request(s->conn, hello, "hello", &s->their, err);
	if (r < 0)
		return r;
	ctx->target_hello = s->their;
	theirs = json_integer_value(json_object_get(s->their, "protocol"));
	if (theirs != NET_PROTOCOL_VERSION)
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "%s speaks migration protocol %lld, this vmadm %d", ctx->host,
				     theirs, NET_PROTOCOL_VERSION);
	return 0;
}

/* Choose the encoding, the compression and the instant, and send BEGIN:
 * the target answers ACCEPT (ctx->accept: the datasets it holds already),
 * or refuses. */
static int send_begin(struct sender *s, struct vm_error *err)
{
	struct migrate_source *ctx = &s->ctx;
	const struct migrate_send_opts *opts = ctx->opts;
	_cleanup_json_ json_t *config = NULL, *begin = NULL;
	struct vm_error e = {0};
	int r;

	ctx->portable = opts->send.portable || !vm_pool_native_encoding(s->pool) ||
			jstrv_index(json_object_get(s->their, "encodings"),
				    vm_pool_native_encoding(s->pool)) < 0;
	ctx->compress =
	    opts->send.compress &&
	    jstrv_index(json_object_get(s->their, "compression"), "zstd") >= 0;
	migrate_meter_init(&ctx->meter, opts->bwlimit);
	s->prior_running = migrate_instant_choose(ctx);

	if (vm_store_load(ctx->node, ctx->uuid, &config, &e) < 0)
		config = json_deep_copy(s->vm);
	/* Runtime fields are this node's, not the VM's config. */
	json_object_del(config, "pid");
	json_object_del(config, "transition");
	json_object_del(config, "boot_timestamp");
	begin = json_pack("{s:s, s:s, s:s, s:O, s:O, s:I, s:s, s:s, s:s}", "type", "begin", "mode",
			  s->mode->name, "uuid", ctx->uuid, "config", config, "estimate",
			  s->estimate, "total", (json_int_t)ctx->total, "encoding",
			  ctx->portable ? "portable" : vm_pool_native_encoding(s->pool), "compression",
			  ctx->compress ? "zstd" : "none", "instant", ctx->instant_id);
	emit(opts, "check", 0, ctx->total);
	r = net_request(s->conn, begin, "accept", &s->accept, err);
	if (r < 0) {
		/* Nothing was stopped: nothing to resume. */
		if (!s->prior_running || s->running)
			migrate_instant_drop(ctx->node, ctx->uuid, ctx->instant);
		return vm_error_prefix(err, "%s:%d refused VM %s", ctx->host, ctx->port, ctx->uuid);
	}
	ctx->accept = s->accept;
	return 0;
}

/* The mode moves the VM and returns the target's INSTALLED record. On
 * failure the VM is put back as it was: restarted if the mode stopped it
 * (its snapshots then go: a VM that ran again is no longer as they caught
 * it), else they stay for a resume. */
static int send_run(struct sender *s, json_t **ret_record, struct vm_error *err)
{
	struct migrate_source *ctx = &s->ctx;
	struct vm_error e = {0};
	int r;

	s->t_mode = migrate_now();
	r = s->mode->source(ctx, ret_record, err);
	if (r >= 0)
		return 0;
	if (ctx->was_running)
		migrate_instant_drop(ctx->node, ctx->uuid, ctx->instant);
	vm_info("send VM %s to %s:%d failed: %s", ctx->uuid, ctx->host, ctx->port, err->msg);
	if (ctx->was_running && vm_start(ctx->node, ctx->uuid, &e) < 0) {
		char first[sizeof(err->msg)];
		snprintf(first, sizeof(first), "%s", err->msg);
		return vm_error_setx(err, err->code,
				     "send VM %s to %s:%d: %s; restarting it here failed too: %s",
				     ctx->uuid, ctx->host, ctx->port, first, e.msg);
	}
	return vm_error_prefix(err, "send VM %s to %s:%d", ctx->uuid, ctx->host, ctx->port);
}

/* The target has the whole VM, verified and installed: mark it migrated
 * here, CONFIRM (start it there if it ran here: *ret_start) and take DONE. */
static int send_confirm(struct sender *s, bool *ret_start, json_t **ret_done, struct vm_error *err)
{
	struct migrate_source *ctx = &s->ctx;
	_cleanup_json_ json_t *confirm = NULL, *done = NULL;
	const char *state, *why;
	bool start;
	int r;

	emit(ctx->opts, "confirm", ctx->meter.bytes, ctx->total);
	migrate_instant_drop(ctx->node, ctx->uuid, ctx->instant);
	r = mark_migrated(ctx->node, ctx->uuid, ctx->host, ctx->port, err);
	if (r < 0) {
		/* Without the mark, starting the VM there would make two. */
		net_send_error(s->conn, "the source could not mark its VM as migrated");
		return vm_error_prefix(err,
				       "VM %s is installed on %s:%d but stays stopped there, and "
				       "here",
				       ctx->uuid, ctx->host, ctx->port);
	}
	start = (ctx->was_running || s->prior_running) && !ctx->opts->no_start;
	confirm = json_pack("{s:s, s:b}", "type", "confirm", "start", start);
	r = net_send_msg(s->conn, confirm, err);
	if (r >= 0)
		r = net_expect_msg(s->conn, "done", &done, err);
	if (r < 0)
		return vm_error_prefix(err,
				       "VM %s is installed on %s:%d, but its start was not "
				       "confirmed: check it there",
				       ctx->uuid, ctx->host, ctx->port);
	state = json_string_value(json_object_get(done, "state"));
	why = json_string_value(json_object_get(done, "error"));
	if (start && (!state || !streq(state, "running")))
		return vm_error_setx(err, EIO, "VM %s is installed on %s:%d but did not start: %s",
				     ctx->uuid, ctx->host, ctx->port, why ? why : "unknown reason");
	*ret_start = start;
	*ret_done = TAKE_PTR(done);
	return 0;
}

/* Downtime in seconds, < 0 when there is none to tell: from the source VM's
 * stop (the start of a mode that did not say, e.g. cold, which stops
 * first) to the target VM running. Both clocks are CLOCK_MONOTONIC:
 * meaningful when both nodes share a kernel; the durations each side
 * measured are reported too. */
static double send_downtime(struct sender *s, bool start, json_t *done)
{
	double started_at = json_real_value(json_object_get(done, "started_at"));
	double stop_t, downtime;

	if (!s->ctx.was_running || !start || started_at <= 0)
		return -1;
	stop_t = s->ctx.stopped_at > 0 ? s->ctx.stopped_at : s->t_mode;
	downtime = started_at - stop_t;
	if (downtime < 0 || downtime > 86400)
		downtime = migrate_now() - stop_t; /* other clocks: an upper bound */
	return downtime;
}

/* The last event: "done", with the downtime and the durations. */
static void send_done_event(struct sender *s, json_t *done, double downtime)
{
	struct migrate_source *ctx = &s->ctx;
	struct migrate_done d = {
	    .downtime = downtime,
	    .bytes_total = ctx->meter.bytes,
	    .source_seconds = migrate_now() - s->t_mode,
	    .target_start_seconds = json_real_value(json_object_get(done, "start_seconds")),
	};
	struct migrate_event ev = {
	    .phase = "done",
	    .bytes = ctx->meter.bytes,
	    .total = ctx->meter.bytes > ctx->total ? ctx->meter.bytes : ctx->total,
	    .eta = -1,
	    .done = &d,
	};

	if (ctx->opts->event)
		ctx->opts->event(&ev, ctx->opts->userdata);
}

/* What migrate_send_remote returns. */
static json_t *send_result(struct sender *s, json_t *done, double downtime)
{
	struct migrate_source *ctx = &s->ctx;
	const char *state = json_string_value(json_object_get(done, "state"));
	json_t *have = json_object_get(s->accept, "have"), *res;

	res = json_pack("{s:s, s:s, s:i, s:s, s:I, s:I, s:O}", "uuid", ctx->uuid, "host", ctx->host,
			"port", ctx->port, "state", state ? state : "?", "bytes",
			(json_int_t)ctx->meter.bytes, "total", (json_int_t)ctx->total, "skipped",
			have ? have : json_null());
	if (!res)
		return NULL;
	json_object_set_new(res, "downtime", downtime >= 0 ? json_real(downtime) : json_null());
	json_object_set_new(res, "mode", json_string(s->mode->name));
	if (ctx->report)
		json_object_set(res, "report", ctx->report);
	return res;
}

int migrate_send_remote(struct vm_node *node, const char *uuid, const char *host, int port,
			const struct migrate_send_opts *opts, json_t **ret_result,
			struct vm_error *err)
{
	_cleanup_(sender_done) struct sender s = {
	    .ctx = {.node = node, .uuid = uuid, .host = host, .port = port, .opts = opts}};
	_cleanup_json_ json_t *record = NULL, *done = NULL;
	_cleanup_free_ char *keypath = net_key_path(node);
	uint8_t key[NET_KEY_LEN];
	bool start = false;
	double downtime;
	int r;

	s.mode = migrate_mode_get(opts->mode);
	if (!s.mode)
		return vm_error_setx(err, ENOTSUP, "unknown migration mode %d", (int)opts->mode);
	r = net_key_load(keypath, key, err);
	if (r >= 0)
		r = send_check(&s, err);
	if (r >= 0)
		r = send_connect(&s, key, err);
	explicit_bzero(key, sizeof(key));
	if (r >= 0)
		r = send_hello(&s, err);
	if (r >= 0)
		r = send_begin(&s, err);
	if (r >= 0)
		r = send_run(&s, &record, err);
	if (r >= 0)
		r = send_confirm(&s, &start, &done, err);
	if (r < 0)
		return r;
	downtime = send_downtime(&s, start, done);
	send_done_event(&s, done, downtime);
	if (ret_result)
		*ret_result = send_result(&s, done, downtime);
	return 0;
}

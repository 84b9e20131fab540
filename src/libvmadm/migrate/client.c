/* SPDX-License-Identifier: MIT */
/* The source of a network migration: `vmadm send UUID HOST PORT`. */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/proto.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/store.h"
#include "vm/vm.h"

void migrate_instant_name(const char *host, int port, char out[64])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char buf[300];

	snprintf(buf, sizeof(buf), "%s:%d", host, port);
	SHA256((const unsigned char *)buf, strlen(buf), md);
	snprintf(out, 64, "vmadm-send-%02x%02x%02x%02x%02x%02x", md[0], md[1], md[2], md[3], md[4],
		 md[5]);
}

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

	if (vm_node_pool(node, &pool, &e) >= 0 && pool->ops->native_encoding == VM_ENC_BTRFS)
		json_array_append_new(enc, json_string("btrfs"));
	json_array_append_new(enc, json_string("tar"));
	json_array_append_new(enc, json_string("blocks"));
	return json_pack("{s:s, s:i, s:s, s:s, s:o, s:[s]}", "type", "hello", "protocol",
			 NET_PROTOCOL_VERSION, "node", node_name(node, host), "version",
			 VMADM_VERSION, "encodings", enc, "compression", "zstd");
}

static bool list_has(json_t *list, const char *s)
{
	json_t *x;
	size_t i;

	json_array_foreach(list, i, x)
		if (json_is_string(x) && streq(json_string_value(x), s))
			return true;
	return false;
}

static void emit(const struct migrate_send_opts *o, const char *phase, uint64_t bytes,
		 uint64_t total)
{
	struct migrate_event ev = { .phase = phase, .bytes = bytes, .total = total, .eta = -1 };

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

/* ROOT/run/send-UUID.json remembers, across runs of one send, which taking
 * of the snapshots the target holds datasets of, and whether the VM ran
 * before the first run stopped it. */
static json_t *send_state_load(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-%s.json", uuid), *text = NULL;
	struct vm_error e = { 0 };

	if (fs_read_file(path, 65536, &text, NULL, &e) < 0)
		return NULL;
	return json_loads(text, 0, NULL);
}

static void send_state_save(struct vm_node *node, const char *uuid, json_t *st)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-%s.json", uuid);
	_cleanup_free_ char *text = json_dumps(st, JSON_COMPACT);
	struct vm_error e = { 0 };

	if (text)
		fs_write_atomic(path, text, strlen(text), 0600, &e);
}

static void send_state_remove(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-%s.json", uuid);
	unlink(path);
}

static const char *record_modified(json_t *vm)
{
	return json_string_value(json_object_get(vm, "last_modified"));
}

void migrate_send_state_stamp(struct migrate_source *ctx)
{
	_cleanup_json_ json_t *st = send_state_load(ctx->node, ctx->uuid);
	_cleanup_json_ json_t *vm = NULL;
	struct vm_error e = {0};

	if (!st || vm_store_load(ctx->node, ctx->uuid, &vm, &e) < 0 || !record_modified(vm))
		return;
	json_object_set_new(st, "record_modified", json_string(record_modified(vm)));
	send_state_save(ctx->node, ctx->uuid, st);
}

int migrate_send_remote(struct vm_node *node, const char *uuid, const char *host, int port,
			const struct migrate_send_opts *opts, json_t **ret_result,
			struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *estimate = NULL, *hello = NULL, *their = NULL;
	_cleanup_json_ json_t *begin = NULL, *accept = NULL, *record = NULL, *done = NULL;
	_cleanup_conn_ struct net_conn *conn = NULL;
	struct migrate_source ctx = { 0 };
	const struct migrate_mode_ops *mode;
	uint8_t key[NET_KEY_LEN];
	_cleanup_free_ char *keypath = net_key_path(node);
	struct vm_pool *pool;
	uint64_t total = 0;
	const char *state;
	bool start, prior_running = false;
	double t_mode = 0, downtime = -1;
	int timeout = opts->timeout > 0 ? opts->timeout : net_node_timeout(node);
	int r;

	mode = migrate_mode_get(opts->mode);
	if (!mode)
		return vm_error_setx(err, ENOTSUP, "unknown migration mode %d", (int)opts->mode);
	r = net_key_load(keypath, key, err);
	if (r < 0)
		return r;
	r = vm_get(node, uuid, &vm, err);
	if (r < 0)
		return r;
	state = json_string_value(json_object_get(vm, "state"));
	if (state && !streq(state, "stopped") && !streq(state, "running"))
		return vm_error_setx(err, EBUSY, "VM %s is %s and cannot be sent", uuid, state);
	if (json_object_get(vm, "migrated_to") && !json_is_null(json_object_get(vm, "migrated_to")))
		return vm_error_setx(err, EALREADY,
				     "VM %s was already migrated to %s:%lld: delete it here, or "
				     "clear migrated_to first",
				     uuid,
				     json_string_value(json_object_get(json_object_get(vm, "migrated_to"), "host")),
				     json_integer_value(json_object_get(json_object_get(vm, "migrated_to"), "port")));
	if (mode->check) {
		r = mode->check(vm, err);
		if (r < 0)
			return r;
	}
	r = vm_send_estimate(node, uuid, &estimate, &total, err);
	if (r < 0)
		return r;
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;

	emit(opts, "connect", 0, total);
	r = net_connect(host, port, key, timeout, &conn, err);
	memset(key, 0, sizeof(key));
	if (r < 0)
		return r;
	hello = migrate_hello(node);
	r = net_request(conn, hello, "hello", &their, err);
	if (r < 0)
		return r;
	if (json_integer_value(json_object_get(their, "protocol")) != NET_PROTOCOL_VERSION)
		return vm_error_setx(err, EPROTONOSUPPORT,
				     "%s speaks migration protocol %lld, this vmadm %d", host,
				     json_integer_value(json_object_get(their, "protocol")),
				     NET_PROTOCOL_VERSION);

	ctx.node = node;
	ctx.conn = conn;
	ctx.uuid = uuid;
	ctx.host = host;
	ctx.port = port;
	ctx.vm = vm;
	ctx.target_hello = their;
	ctx.opts = opts;
	ctx.total = total;
	ctx.portable = opts->portable || pool->ops->native_encoding != VM_ENC_BTRFS ||
		       !list_has(json_object_get(their, "encodings"), "btrfs");
	ctx.compress = !opts->no_compress && list_has(json_object_get(their, "compression"), "zstd");
	migrate_instant_name(host, port, ctx.instant);
	migrate_meter_init(&ctx.meter, opts->bwlimit);
	{
		/* Resume from the snapshots of an earlier run to the same
		 * target only if the VM stayed as they caught it: stopped,
		 * its record unchanged since they were taken (a start and a
		 * stop by hand in between would change its data); else a new
		 * taking (the target then drops what it holds). */
		_cleanup_json_ json_t *prev = send_state_load(node, uuid);
		const char *pinst = json_string_value(json_object_get(prev, "instant"));
		const char *pid = json_string_value(json_object_get(prev, "instant_id"));
		const char *pmod = json_string_value(json_object_get(prev, "record_modified"));
		bool running = state && streq(state, "running");
		if (prev && !running && pinst && pid && streq(pinst, ctx.instant) && pmod &&
		    record_modified(vm) && streq(pmod, record_modified(vm))) {
			snprintf(ctx.instant_id, sizeof(ctx.instant_id), "%s", pid);
			prior_running = json_is_true(json_object_get(prev, "was_running"));
		} else {
			struct vm_error e = { 0 };
			char ts[32];
			vm_send_drop_snapshots(node, uuid, ctx.instant, &e);
			vm_timestamp_now(ts);
			snprintf(ctx.instant_id, sizeof(ctx.instant_id), "%s@%s", ctx.instant, ts);
			prior_running = running;
		}
		_cleanup_json_ json_t *st = json_pack("{s:s, s:s, s:b}", "instant", ctx.instant,
						      "instant_id", ctx.instant_id, "was_running",
						      prior_running);
		send_state_save(node, uuid, st);
	}

	{
		_cleanup_json_ json_t *config = NULL;
		struct vm_error e = { 0 };
		if (vm_store_load(node, uuid, &config, &e) < 0)
			config = json_deep_copy(vm);
		/* Runtime fields are this node's, not the VM's config. */
		json_object_del(config, "pid");
		json_object_del(config, "transition");
		json_object_del(config, "boot_timestamp");
		begin = json_pack("{s:s, s:s, s:s, s:O, s:O, s:I, s:s, s:s, s:s}", "type", "begin",
				  "mode", mode->name, "uuid", uuid, "config", config, "estimate",
				  estimate, "total", (json_int_t)total, "encoding",
				  ctx.portable ? "portable" : "btrfs", "compression",
				  ctx.compress ? "zstd" : "none", "instant", ctx.instant_id);
	}
	emit(opts, "check", 0, total);
	r = net_request(conn, begin, "accept", &accept, err);
	if (r < 0) {
		if (!prior_running || (state && streq(state, "running"))) {
			/* Nothing was stopped: nothing to resume. */
			struct vm_error e = { 0 };
			vm_send_drop_snapshots(node, uuid, ctx.instant, &e);
			send_state_remove(node, uuid);
		}
		return vm_error_prefix(err, "%s:%d refused VM %s", host, port, uuid);
	}
	ctx.accept = accept;

	t_mode = migrate_now();
	r = mode->source(&ctx, &record, err);
	if (r < 0) {
		struct vm_error e = { 0 };
		bool restart = ctx.was_running;
		/* Keep the instant for a resume only while the VM stays as it
		 * was snapshotted (stopped). */
		if (restart) {
			vm_send_drop_snapshots(node, uuid, ctx.instant, &e);
			send_state_remove(node, uuid);
		}
		vm_info("send VM %s to %s:%d failed: %s", uuid, host, port, err->msg);
		if (restart && vm_start(node, uuid, &e) < 0) {
			char first[sizeof(err->msg)];
			snprintf(first, sizeof(first), "%s", err->msg);
			return vm_error_setx(err, err->code,
					     "send VM %s to %s:%d: %s; restarting it here failed too: %s",
					     uuid, host, port, first, e.msg);
		}
		return vm_error_prefix(err, "send VM %s to %s:%d", uuid, host, port);
	}

	/* The target has the whole VM, verified and installed. */
	emit(opts, "confirm", ctx.meter.bytes, total);
	{
		struct vm_error e = { 0 };
		vm_send_drop_snapshots(node, uuid, ctx.instant, &e);
		send_state_remove(node, uuid);
	}
	r = mark_migrated(node, uuid, host, port, err);
	if (r < 0) {
		/* Without the mark, starting the VM there would make two. */
		net_send_error(conn, "the source could not mark its VM as migrated");
		return vm_error_prefix(err,
				       "VM %s is installed on %s:%d but stays stopped there, and "
				       "here",
				       uuid, host, port);
	}
	start = (ctx.was_running || prior_running) && !opts->no_start;
	{
		_cleanup_json_ json_t *c = json_pack("{s:s, s:b}", "type", "confirm", "start", start);
		r = net_send_msg(conn, c, err);
	}
	if (r >= 0)
		r = net_expect_msg(conn, "done", &done, err);
	if (r < 0)
		return vm_error_prefix(err,
				       "VM %s is installed on %s:%d, but its start was not "
				       "confirmed: check it there",
				       uuid, host, port);
	state = json_string_value(json_object_get(done, "state"));
	if (start && (!state || !streq(state, "running")))
		return vm_error_setx(err, EIO, "VM %s is installed on %s:%d but did not start: %s",
				     uuid, host, port,
				     json_string_value(json_object_get(done, "error"))
					     ? json_string_value(json_object_get(done, "error"))
					     : "unknown reason");
	/* Downtime: from the source VM's stop (the start of a mode that did not
	 * say, e.g. cold, which stops first) to the target VM running. Both
	 * clocks are CLOCK_MONOTONIC: meaningful when both nodes share a
	 * kernel; the durations each side measured are reported too. */
	if (ctx.was_running && start && json_real_value(json_object_get(done, "started_at")) > 0) {
		double stop_t = ctx.stopped_at > 0 ? ctx.stopped_at : t_mode;
		downtime = json_real_value(json_object_get(done, "started_at")) - stop_t;
		if (downtime < 0 || downtime > 86400)
			downtime = migrate_now() - stop_t; /* other clocks: an upper bound */
	}
	{
		_cleanup_json_ json_t *d = json_pack(
			"{s:o, s:I, s:f, s:f}", "downtime",
			downtime >= 0 ? json_real(downtime) : json_null(), "bytes_total",
			(json_int_t)ctx.meter.bytes, "source_seconds", migrate_now() - t_mode,
			"target_start_seconds",
			json_real_value(json_object_get(done, "start_seconds")));
		struct migrate_event ev = { .phase = "done", .bytes = ctx.meter.bytes,
					    .total = ctx.meter.bytes > total ? ctx.meter.bytes : total,
					    .eta = -1, .detail = d };
		if (opts->event)
			opts->event(&ev, opts->userdata);
	}
	if (ret_result)
		*ret_result = json_pack("{s:s, s:s, s:i, s:s, s:I, s:I, s:O}", "uuid", uuid, "host",
					host, "port", port, "state", state ? state : "?", "bytes",
					(json_int_t)ctx.meter.bytes, "total", (json_int_t)total,
					"skipped", json_object_get(accept, "have") ?
					json_object_get(accept, "have") : json_null());
	if (ret_result && *ret_result) {
		json_object_set_new(*ret_result, "downtime",
				    downtime >= 0 ? json_real(downtime) : json_null());
		json_object_set_new(*ret_result, "mode", json_string(mode->name));
	}
	if (ret_result && ctx.report)
		json_object_set(*ret_result, "report", ctx.report);
	json_decref(ctx.report);
	return 0;
}

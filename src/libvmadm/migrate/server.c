/* SPDX-License-Identifier: MIT */
/* The target of network migrations: vmadmd's listener, a thread per
 * connection, at most max_receives receiving at once. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/journal.h"
#include "migrate/proto.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"
#include "vm/vm.h"

struct server {
	int lfd;
	uint8_t key[NET_KEY_LEN];
	int timeout;
	int max_receives;
	char spec[128];
	atomic_int receiving; /* connections past their checks */
	atomic_int threads;   /* connection threads alive */
};

struct conn_arg {
	struct server *srv;
	int fd;
};

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void refuse(struct net_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct net_conn *c, const char *fmt, ...)
{
	_cleanup_json_ json_t *m = NULL;
	struct vm_error e = { 0 };
	char reason[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	vm_info("migration from %s refused: %s", net_conn_peer(c), reason);
	m = json_pack("{s:s, s:s}", "type", "refuse", "reason", reason);
	net_send_msg(c, m, &e);
}

static void fmt_size(uint64_t b, char buf[32])
{
	if (b >= (1ull << 30))
		snprintf(buf, 32, "%.1f GiB", b / 1073741824.0);
	else
		snprintf(buf, 32, "%.1f MiB", b / 1048576.0);
}

/* The checks before any data moves. Returns 0 to accept, or sends REFUSE
 * and returns -1. */
static int check_begin(struct vm_node *node, struct net_conn *c, json_t *begin,
		       const struct migrate_mode_ops **ret_mode, json_t **ret_held)
{
	_cleanup_json_ json_t *held = NULL;
	const char *uuid = jstr(begin, "uuid"), *enc = jstr(begin, "encoding");
	_cleanup_json_ json_t *config = json_deep_copy(json_object_get(begin, "config"));
	struct vm_error e = { 0 };
	struct vm_pool *pool;
	uint64_t avail = 0, total = json_integer_value(json_object_get(begin, "total"));
	char need[32], have[32];

	*ret_mode = migrate_mode_by_name(jstr(begin, "mode"));
	if (!*ret_mode) {
		refuse(c, "migration mode '%s' is not supported by this node",
		       jstr(begin, "mode") ? jstr(begin, "mode") : "?");
		return -1;
	}
	if (!uuid || !vm_uuid_valid(uuid) || !json_is_object(config) ||
	    !jstr(config, "uuid") || !streq(jstr(config, "uuid"), uuid)) {
		refuse(c, "the begin message has no valid uuid and config");
		return -1;
	}
	if ((*ret_mode)->check && (*ret_mode)->check(config, &e) < 0) {
		refuse(c, "%s", e.msg);
		return -1;
	}
	json_object_del(config, "pid");
	json_object_del(config, "transition");
	json_object_del(config, "boot_timestamp");
	if (recv_journal_load(node, uuid, &held, &e) < 0) {
		refuse(c, "VM %s: %s", uuid, e.msg);
		return -1;
	}
	if (held) {
		const char *phase = jstr(held, "phase"), *inst = jstr(held, "instant");
		const char *want = jstr(begin, "instant");
		_cleanup_close_ int lock = vm_store_lock(node, uuid, 0, &e);
		if (lock < 0 || !phase || streq(phase, "receiving") || streq(phase, "committing")) {
			refuse(c, "a receive of VM %s is in progress on this node", uuid);
			return -1;
		}
		if (streq(phase, "held") && streq((*ret_mode)->name, "incremental") &&
		    (!json_object_get(held, "expires") ||
		     json_integer_value(json_object_get(held, "expires")) > time(NULL))) {
			/* An incremental send continues from the pass held
			 * here (migrate/incremental-net.c decides). */
			*ret_held = TAKE_PTR(held);
			return 0;
		}
		if (streq(phase, "held") && json_object_get(held, "expires") &&
		    json_integer_value(json_object_get(held, "expires")) <= time(NULL)) {
			struct vm_pool *p;
			vm_info("VM %s: removing the expired held incremental receive", uuid);
			if (vm_node_pool(node, &p, &e) < 0 || recv_rollback(node, p, held, &e) < 0) {
				refuse(c, "VM %s: remove the expired held receive: %s", uuid,
				       e.msg);
				return -1;
			}
			json_decref(held);
			held = NULL;
		} else if (!streq(phase, "kept")) {
			refuse(c, "VM %s is held here by an unfinished %s receive", uuid, phase);
			return -1;
		}
		if (held && (!inst || !want || !streq(inst, want) ||
		    json_integer_value(json_object_get(held, "expires")) <= time(NULL))) {
			struct vm_pool *p;
			/* From another instant of the VM: useless now. */
			vm_info("VM %s: removing the partial receive kept from an earlier send",
				uuid);
			if (vm_node_pool(node, &p, &e) < 0 || recv_rollback(node, p, held, &e) < 0) {
				refuse(c, "VM %s: remove the earlier partial receive: %s", uuid,
				       e.msg);
				return -1;
			}
			json_decref(held);
			held = NULL;
		}
	}
	if (!held && vm_store_exists(node, uuid)) {
		refuse(c, "VM %s already exists on this node (%s)", uuid, node->root);
		return -1;
	}
	if (vm_record_localize(node, config, &e) < 0) {
		refuse(c, "the config of VM %s does not fit this node: %s", uuid, e.msg);
		return -1;
	}
	if (vm_node_pool(node, &pool, &e) < 0) {
		refuse(c, "this node's pool is not usable: %s", e.msg);
		return -1;
	}
	if (enc && streq(enc, "btrfs") && pool->ops->native_encoding != VM_ENC_BTRFS) {
		refuse(c, "this node's %s pool cannot take btrfs streams", pool->ops->name);
		return -1;
	}
	if (vm_pool_available(pool, &avail, &e) < 0) {
		refuse(c, "pool %s: %s", pool->name, e.msg);
		return -1;
	}
	if (total > avail) {
		fmt_size(total, need);
		fmt_size(avail, have);
		refuse(c, "VM %s needs %s but pool %s on this node has %s free", uuid, need,
		       pool->name, have);
		return -1;
	}
	/* Images: vmadm streams carry every dataset whole (no clone origins),
	 * so the target needs none. */
	*ret_held = TAKE_PTR(held);
	return 0;
}

/* Drain what the source still sends after we answered FAILED, so that it
 * reads our answer instead of timing out on a full window. */
static void drain(struct net_conn *c)
{
	for (int i = 0; i < 1 << 16; i++) {
		_cleanup_free_ void *buf = NULL;
		enum net_frame_type type;
		struct vm_error e = { 0 };
		size_t len;
		if (net_recv_frame(c, &type, &buf, &len, &e) < 0 || type == NET_FRAME_DATA_END)
			return;
	}
}

static int set_autoboot(struct vm_node *node, const char *uuid, json_t *value,
			struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL;
	_cleanup_close_ int lock = -1;
	int r;

	lock = vm_store_lock(node, uuid, VM_LOCK_WAIT_SECS, err);
	if (lock < 0)
		return lock;
	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	if (value)
		json_object_set(vm, "autoboot", value);
	else
		json_object_del(vm, "autoboot");
	return vm_store_save(node, vm, err);
}

static void serve(struct server *srv, struct vm_node *node, struct net_conn *c)
{
	_cleanup_json_ json_t *hello = NULL, *their = NULL, *begin = NULL, *record = NULL;
	_cleanup_json_ json_t *confirm = NULL, *autoboot = NULL, *have = json_array();
	_cleanup_json_ json_t *held = NULL;
	const struct migrate_mode_ops *mode;
	struct migrate_target ctx = { 0 };
	struct vm_error err = { 0 };
	const char *uuid, *state = "stopped";
	char start_error[1024] = "";
	double t0 = migrate_now(), t_confirm = 0, started_at = 0;
	int max, r;

	if (net_expect_msg(c, "hello", &their, &err) < 0) {
		vm_warn("migration from %s: %s", net_conn_peer(c), err.msg);
		return;
	}
	/* Nothing of another protocol is read further: its BEGIN may mean
	 * something else here. */
	if (!json_is_integer(json_object_get(their, "protocol")) ||
	    json_integer_value(json_object_get(their, "protocol")) != NET_PROTOCOL_VERSION) {
		char theirs[32] = "(none)", why[512];

		if (json_is_integer(json_object_get(their, "protocol")))
			snprintf(theirs, sizeof(theirs), "%lld",
				 (long long)json_integer_value(json_object_get(their, "protocol")));
		snprintf(why, sizeof(why), "%s speaks migration protocol %s, this vmadmd %d",
			 net_conn_peer(c), theirs, NET_PROTOCOL_VERSION);
		vm_warn("migration refused: %s", why);
		net_send_error(c, why);
		return;
	}
	hello = migrate_hello(node);
	if (net_send_msg(c, hello, &err) < 0 || net_expect_msg(c, "begin", &begin, &err) < 0) {
		vm_warn("migration from %s: %s", net_conn_peer(c), err.msg);
		return;
	}
	uuid = jstr(begin, "uuid");
	vm_info("migration of VM %s from %s (node %s, vmadm %s, mode %s, %lld bytes)",
		uuid ? uuid : "?", net_conn_peer(c), jstr(their, "node") ? jstr(their, "node") : "?",
		jstr(their, "version") ? jstr(their, "version") : "?",
		jstr(begin, "mode") ? jstr(begin, "mode") : "?",
		json_integer_value(json_object_get(begin, "total")));
	max = vm_node_conf_int(node, "max_receives", "VMADM_MAX_RECEIVES", srv->max_receives);
	if (atomic_fetch_add(&srv->receiving, 1) >= max) {
		atomic_fetch_sub(&srv->receiving, 1);
		refuse(c, "this node is busy: %d receives in progress (max_receives)", max);
		return;
	}
	if (check_begin(node, c, begin, &mode, &held) < 0)
		goto out;
	if (held && json_object_get(held, "done")) {
		json_array_extend(have, json_object_get(held, "done"));
		vm_info("VM %s: resuming the receive from %s; %zu datasets are here already", uuid,
			net_conn_peer(c), json_array_size(have));
	}
	{
		_cleanup_json_ json_t *m = json_pack("{s:s, s:O, s:[]}", "type", "accept", "have",
						     have, "images_needed");
		if (net_send_msg(c, m, &err) < 0) {
			vm_warn("migration of VM %s from %s: %s", uuid, net_conn_peer(c), err.msg);
			goto out;
		}
	}
	ctx.node = node;
	ctx.conn = c;
	ctx.uuid = uuid;
	ctx.begin = begin;
	ctx.have = have;
	ctx.held = held;
	ctx.hold_secs = vm_node_conf_int(node, "partial_keep_secs", "VMADM_PARTIAL_KEEP_SECS", 3600);
	r = mode->target(&ctx, &record, &err);
	if (r < 0) {
		_cleanup_json_ json_t *m = json_pack("{s:s, s:s}", "type", "failed", "reason", err.msg);
		struct vm_error e = { 0 };
		vm_warn("migration of VM %s from %s failed: %s", uuid, net_conn_peer(c), err.msg);
		if (net_send_msg(c, m, &e) >= 0)
			drain(c);
		goto out;
	}
	/* Installed, stopped, and not to be booted until the source confirms
	 * (it may yet restart its own copy). */
	autoboot = json_incref(json_object_get(record, "autoboot"));
	if (set_autoboot(node, uuid, json_false(), &err) < 0)
		vm_warn("VM %s: %s", uuid, err.msg);
	json_object_set_new(record, "autoboot", json_false());
	{
		_cleanup_json_ json_t *m = json_pack("{s:s, s:O}", "type", "installed", "record",
						     record);
		if (net_send_msg(c, m, &err) < 0 || net_expect_msg(c, "confirm", &confirm, &err) < 0) {
			vm_warn("VM %s installed from %s, but the source did not confirm (%s): it "
				"stays stopped with autoboot off",
				uuid, net_conn_peer(c), err.msg);
			goto out;
		}
	}
	if (set_autoboot(node, uuid, autoboot, &err) < 0)
		vm_warn("VM %s: %s", uuid, err.msg);
	t_confirm = migrate_now();
	if (json_is_true(json_object_get(confirm, "start"))) {
		r = vm_start(node, uuid, &err);
		if (r == -EALREADY) {
			/* A live migration's VM runs already. */
			state = "running";
		} else if (r < 0) {
			snprintf(start_error, sizeof(start_error), "%s", err.msg);
			vm_warn("VM %s: start after migration: %s", uuid, err.msg);
		} else {
			state = "running";
			started_at = migrate_now();
		}
	}
	{
		_cleanup_json_ json_t *m = json_pack("{s:s, s:s, s:f, s:f}", "type", "done", "state",
						     state, "started_at", started_at,
						     "start_seconds",
						     started_at > 0 ? started_at - t_confirm : 0.0);
		if (start_error[0])
			json_object_set_new(m, "error", json_string(start_error));
		net_send_msg(c, m, &err);
	}
	vm_info("migration of VM %s from %s done in %.1f s (%llu bytes), %s", uuid,
		net_conn_peer(c), migrate_now() - t0, (unsigned long long)ctx.bytes, state);
out:
	atomic_fetch_sub(&srv->receiving, 1);
}

static void *conn_thread(void *arg)
{
	struct conn_arg *ca = arg;
	struct server *srv = ca->srv;
	_cleanup_conn_ struct net_conn *c = NULL;
	_cleanup_node_ struct vm_node *node = NULL;
	struct vm_error err = { 0 };

	/* The node's settings are read per connection: net_timeout,
	 * partial_keep_secs and max_receives changes apply at once. */
	if (vm_node_open(&node, &err) < 0) {
		vm_warn("migration connection refused: %s", err.msg);
		close(ca->fd);
	} else if (net_accept_tls(ca->fd, srv->key, net_node_timeout(node), &c, &err) < 0) {
		vm_warn("migration connection refused: %s", err.msg);
	} else {
		serve(srv, node, c);
	}
	free(ca);
	atomic_fetch_sub(&srv->threads, 1);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct server *srv = arg;

	for (;;) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
		struct conn_arg *ca;
		pthread_attr_t attr;
		pthread_t th;

		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				usleep(100 * 1000);
			continue;
		}
		/* Handshakes in flight are bounded too. */
		if (atomic_load(&srv->threads) >= srv->max_receives + 8) {
			vm_warn("migration connection dropped: too many connections");
			close(fd);
			continue;
		}
		ca = calloc(1, sizeof(*ca));
		if (!ca) {
			close(fd);
			continue;
		}
		ca->srv = srv;
		ca->fd = fd;
		atomic_fetch_add(&srv->threads, 1);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &attr, conn_thread, ca) != 0) {
			atomic_fetch_sub(&srv->threads, 1);
			close(fd);
			free(ca);
		}
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

int migrate_server_start(struct vm_node *node, const char *spec, struct vm_error *err)
{
	_cleanup_free_ char *host = NULL, *keypath = net_key_path(node);
	struct server *srv;
	pthread_t th;
	char fp[17];
	int port, r;

	if (!spec)
		spec = vm_node_conf_str(node, "listen", NULL, NULL);
	if (!spec)
		return 0;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return vm_error_set(err, ENOMEM, "listen");
	r = net_parse_hostport(spec, NET_DEFAULT_PORT, &host, &port, err);
	if (r >= 0)
		r = net_key_load(keypath, srv->key, err);
	if (r >= 0)
		r = srv->lfd = net_listen(host, port, err);
	if (r < 0) {
		free(srv);
		return r;
	}
	srv->timeout = net_node_timeout(node);
	srv->max_receives = vm_node_conf_int(node, "max_receives", "VMADM_MAX_RECEIVES", 2);
	if (srv->max_receives < 1)
		srv->max_receives = 1;
	snprintf(srv->spec, sizeof(srv->spec), "%s:%d", host, port);
	r = pthread_create(&th, NULL, accept_loop, srv);
	if (r != 0) {
		close(srv->lfd);
		free(srv);
		return vm_error_set(err, r, "start the listener");
	}
	pthread_detach(th);
	net_key_fingerprint(srv->key, fp);
	vm_info("listening for migrations on %s (key %s, timeout %d s, max_receives %d)",
		srv->spec, fp, srv->timeout, srv->max_receives);
	return 1;
}

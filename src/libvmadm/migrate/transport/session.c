/* SPDX-License-Identifier: MIT */
/*
 * One migration as the target serves it, on an authenticated connection
 * (server.c hands it over): HELLO both ways, the checks of BEGIN (what this
 * node holds of the VM, whether its config and data fit here), the mode's
 * target, the CONFIRM. A refusal is one REFUSE with the reason, sent here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/local/journal.h"
#include "migrate/transport/session.h"
#include "storage/pool.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"
#include "vm/vm.h"

void migrate_refuse(struct net_conn *c, const char *fmt, ...)
{
	_cleanup_json_ json_t *m = NULL;
	struct vm_error e = {0};
	char reason[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	vm_info("migration from %s refused: %s", net_conn_peer(c), reason);
	m = json_pack("{s:s, s:s}", "type", "refuse", "reason", reason);
	net_send_msg(c, m, &e);
}

/* A receive of VM uuid that this node holds (its journal), at a BEGIN of
 * mode for instant want. Returns 1 when an incremental send continues from
 * the pass held here (*ret_held: its journal; no more checks apply), 0 when
 * BEGIN may go on (*ret_held: a partial kept from this instant, for a
 * resume, or NULL: an expired or useless one is removed), or a negative
 * errno with the refusal's reason: a receive in progress, or held by an
 * unfinished receive of another kind. */
static int check_held(struct vm_node *node, const char *uuid, const struct migrate_mode_ops *mode,
		      const char *want, json_t **ret_held, struct vm_error *err)
{
	_cleanup_json_ json_t *held = NULL;
	_cleanup_close_ int lock = -1;
	const char *phase, *inst;
	struct vm_error e = {0};
	struct vm_pool *p;
	int r;

	r = recv_journal_load(node, uuid, &held, err);
	if (r < 0)
		return vm_error_prefix(err, "VM %s", uuid);
	if (!held) {
		*ret_held = NULL;
		return 0;
	}
	phase = jstr(held, "phase");
	inst = jstr(held, "instant");
	lock = vm_store_lock(node, uuid, 0, &e);
	if (lock < 0 || !phase || streq(phase, "receiving") || streq(phase, "committing"))
		return vm_error_setx(err, EBUSY, "a receive of VM %s is in progress on this node",
				     uuid);
	if (streq(phase, "held") && mode->mode == MIGRATE_INCREMENTAL &&
	    (!json_object_get(held, "expires") ||
	     json_integer_value(json_object_get(held, "expires")) > time(NULL))) {
		/* An incremental send continues from the pass held here
		 * (migrate/modes/incremental.c decides). */
		*ret_held = TAKE_PTR(held);
		return 1;
	}
	if (streq(phase, "held") && json_object_get(held, "expires") &&
	    json_integer_value(json_object_get(held, "expires")) <= time(NULL)) {
		vm_info("VM %s: removing the expired held incremental receive", uuid);
		if (vm_node_pool(node, &p, err) < 0 || recv_rollback(node, p, held, err) < 0)
			return vm_error_prefix(err, "VM %s: remove the expired held receive", uuid);
		json_decref(TAKE_PTR(held));
	} else if (!streq(phase, "kept")) {
		return vm_error_setx(err, EBUSY, "VM %s is held here by an unfinished %s receive",
				     uuid, phase);
	}
	if (held && (!inst || !want || !streq(inst, want) ||
		     json_integer_value(json_object_get(held, "expires")) <= time(NULL))) {
		/* From another instant of the VM: useless now. */
		vm_info("VM %s: removing the partial receive kept from an earlier send", uuid);
		if (vm_node_pool(node, &p, err) < 0 || recv_rollback(node, p, held, err) < 0)
			return vm_error_prefix(err, "VM %s: remove the earlier partial receive",
					       uuid);
		json_decref(TAKE_PTR(held));
	}
	*ret_held = TAKE_PTR(held);
	return 0;
}

/* Does the VM of BEGIN fit this node: not here already (unless a partial
 * of it is held: resuming), its config localized for this node, a pool
 * that takes the encoding and has room for the total? */
static int check_room(struct vm_node *node, json_t *begin, json_t *config, bool resuming,
		      struct vm_error *err)
{
	const char *uuid = jstr(begin, "uuid"), *enc = jstr(begin, "encoding");
	uint64_t avail = 0, total = json_integer_value(json_object_get(begin, "total"));
	struct vm_pool *pool;
	char need[FORMAT_SIZE_MAX], have[FORMAT_SIZE_MAX];
	int r;

	if (!resuming && vm_store_exists(node, uuid))
		return vm_error_setx(err, EEXIST, "VM %s already exists on this node (%s)", uuid,
				     node->root);
	r = vm_record_localize(node, config, err);
	if (r < 0)
		return vm_error_prefix(err, "the config of VM %s does not fit this node", uuid);
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return vm_error_prefix(err, "this node's pool is not usable");
	if (enc && !streq(enc, "portable") && !vm_pool_speaks(pool, enc))
		return vm_error_setx(err, EOPNOTSUPP, "this node's %s pool cannot take %s streams",
				     pool->ops->name, enc);
	r = vm_pool_available(pool, &avail, err);
	if (r < 0)
		return vm_error_prefix(err, "pool %s", pool->name);
	if (total > avail) {
		format_size(total, need);
		format_size(avail, have);
		return vm_error_setx(err, ENOSPC,
				     "VM %s needs %s but pool %s on this node has %s free", uuid,
				     need, pool->name, have);
	}
	/* Images: vmadm streams carry every dataset whole (no clone origins),
	 * so the target needs none. */
	return 0;
}

/* The checks before any data moves. Returns 0 to accept (*ret_mode, and
 * *ret_held as check_held gives it), or a negative errno with the reason
 * of the refusal in err (serve_migration sends it as REFUSE). */
static int check_begin(struct vm_node *node, json_t *begin,
		       const struct migrate_mode_ops **ret_mode, json_t **ret_held,
		       struct vm_error *err)
{
	_cleanup_json_ json_t *held = NULL;
	_cleanup_json_ json_t *config = json_deep_copy(json_object_get(begin, "config"));
	const char *uuid = jstr(begin, "uuid");
	const struct migrate_mode_ops *mode;
	int r;

	mode = migrate_mode_by_name(jstr(begin, "mode"));
	if (!mode)
		return vm_error_setx(err, EOPNOTSUPP,
				     "migration mode '%s' is not supported by this node",
				     jstr(begin, "mode") ? jstr(begin, "mode") : "?");
	if (!uuid || !vm_uuid_valid(uuid) || !json_is_object(config) || !jstr(config, "uuid") ||
	    !streq(jstr(config, "uuid"), uuid))
		return vm_error_setx(err, EPROTO, "the begin message has no valid uuid and config");
	if (mode->check) {
		r = mode->check(config, err);
		if (r < 0)
			return r;
	}
	json_object_del(config, "pid");
	json_object_del(config, "transition");
	json_object_del(config, "boot_timestamp");
	r = check_held(node, uuid, mode, jstr(begin, "instant"), &held, err);
	if (r == 0)
		r = check_room(node, begin, config, held != NULL, err);
	if (r < 0)
		return r;
	*ret_mode = mode;
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
		struct vm_error e = {0};
		size_t len;
		if (net_recv_frame(c, &type, &buf, &len, &e) < 0 || type == NET_FRAME_DATA_END)
			return;
	}
}

static int set_autoboot(struct vm_node *node, const char *uuid, json_t *value, struct vm_error *err)
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

/* HELLO both ways, then the source's BEGIN (*ret_begin), each by its
 * deadline: the HELLO by the handshake's, the BEGIN within net_timeout of
 * our HELLO (the source does its own checks in between). Logs why and
 * returns -1 when the connection ends there. */
int migrate_serve_hello(struct vm_node *node, struct net_conn *c, double hello_deadline,
			int handshake_secs, json_t **ret_begin)
{
	_cleanup_json_ json_t *hello = NULL, *their = NULL, *begin = NULL;
	struct vm_error err = {0};
	json_t *proto;
	int timeout = net_conn_timeout(c);

	if (net_conn_set_deadline(c, hello_deadline, handshake_secs,
				  "the handshake (TLS and HELLO)", &err) < 0 ||
	    net_expect_msg(c, "hello", &their, &err) < 0 ||
	    net_conn_set_deadline(c, 0, 0, NULL, &err) < 0) {
		vm_warn("migration from %s: %s", net_conn_peer(c), err.msg);
		return -1;
	}
	/* Nothing of another protocol is read further: its BEGIN may mean
	 * something else here. */
	proto = json_object_get(their, "protocol");
	if (!json_is_integer(proto) || json_integer_value(proto) != NET_PROTOCOL_VERSION) {
		char theirs[32] = "(none)", why[512];

		if (json_is_integer(proto))
			snprintf(theirs, sizeof(theirs), "%lld",
				 (long long)json_integer_value(proto));
		snprintf(why, sizeof(why), "%s speaks migration protocol %s, this vmadmd %d",
			 net_conn_peer(c), theirs, NET_PROTOCOL_VERSION);
		vm_warn("migration refused: %s", why);
		net_send_error(c, why);
		return -1;
	}
	hello = migrate_hello(node);
	if (net_send_msg(c, hello, &err) < 0 ||
	    net_conn_set_deadline(c, net_now() + timeout, timeout, "the BEGIN message", &err) < 0 ||
	    net_expect_msg(c, "begin", &begin, &err) < 0 ||
	    net_conn_set_deadline(c, 0, 0, NULL, &err) < 0) {
		vm_warn("migration from %s: %s", net_conn_peer(c), err.msg);
		return -1;
	}
	vm_info("migration of VM %s from %s (node %s, vmadm %s, mode %s, encoding %s, %lld bytes)",
		jstr(begin, "uuid") ? jstr(begin, "uuid") : "?", net_conn_peer(c),
		jstr(their, "node") ? jstr(their, "node") : "?",
		jstr(their, "version") ? jstr(their, "version") : "?",
		jstr(begin, "mode") ? jstr(begin, "mode") : "?",
		jstr(begin, "encoding") ? jstr(begin, "encoding") : "?",
		json_integer_value(json_object_get(begin, "total")));
	*ret_begin = TAKE_PTR(begin);
	return 0;
}

/* The VM is installed here, stopped: INSTALLED, with autoboot off until
 * the source's CONFIRM (it may yet restart its own copy), then the start
 * CONFIRM asks for, and DONE. t0 and bytes: for the log. */
static void serve_confirm(struct vm_node *node, struct net_conn *c, const char *uuid,
			  json_t *record, double t0, uint64_t bytes)
{
	_cleanup_json_ json_t *autoboot = NULL, *installed = NULL, *confirm = NULL, *done = NULL;
	struct vm_error err = {0};
	const char *state = "stopped";
	char start_error[1024] = "";
	double t_confirm, started_at = 0;
	int r;

	autoboot = json_incref(json_object_get(record, "autoboot"));
	if (set_autoboot(node, uuid, json_false(), &err) < 0)
		vm_warn("VM %s: %s", uuid, err.msg);
	json_object_set_new(record, "autoboot", json_false());
	installed = json_pack("{s:s, s:O}", "type", "installed", "record", record);
	if (net_send_msg(c, installed, &err) < 0 ||
	    net_expect_msg(c, "confirm", &confirm, &err) < 0) {
		vm_warn("VM %s installed from %s, but the source did not confirm (%s): it "
			"stays stopped with autoboot off",
			uuid, net_conn_peer(c), err.msg);
		return;
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
	done =
	    json_pack("{s:s, s:s, s:f, s:f}", "type", "done", "state", state, "started_at",
		      started_at, "start_seconds", started_at > 0 ? started_at - t_confirm : 0.0);
	if (start_error[0])
		json_object_set_new(done, "error", json_string(start_error));
	net_send_msg(c, done, &err);
	vm_info("migration of VM %s from %s done in %.1f s (%llu bytes), %s", uuid,
		net_conn_peer(c), migrate_now() - t0, (unsigned long long)bytes, state);
}

/* One migration past the max_receives gate: BEGIN's checks (REFUSE, with
 * the reason), ACCEPT, the mode's transfer (FAILED, with the reason), then
 * serve_confirm. */
void migrate_serve_migration(struct vm_node *node, struct net_conn *c, json_t *begin, double t0)
{
	_cleanup_json_ json_t *held = NULL, *accept = NULL, *record = NULL, *have = json_array();
	const struct migrate_mode_ops *mode = NULL;
	struct migrate_target ctx = {0};
	struct vm_error err = {0};
	const char *uuid = jstr(begin, "uuid");

	if (check_begin(node, begin, &mode, &held, &err) < 0) {
		migrate_refuse(c, "%s", err.msg);
		return;
	}
	if (held && json_object_get(held, "done")) {
		json_array_extend(have, json_object_get(held, "done"));
		vm_info("VM %s: resuming the receive from %s; %zu datasets are here already", uuid,
			net_conn_peer(c), json_array_size(have));
	}
	accept = json_pack("{s:s, s:O, s:[]}", "type", "accept", "have", have, "images_needed");
	/* cut resumable receives kept here: the sender sends only their rest */
	if (accept && held && json_object_size(json_object_get(held, "resume")) > 0)
		json_object_set(accept, "resume", json_object_get(held, "resume"));
	if (net_send_msg(c, accept, &err) < 0) {
		vm_warn("migration of VM %s from %s: %s", uuid, net_conn_peer(c), err.msg);
		return;
	}
	ctx.node = node;
	ctx.conn = c;
	ctx.uuid = uuid;
	ctx.begin = begin;
	ctx.have = have;
	ctx.held = held;
	ctx.hold_secs =
	    vm_node_conf_int(node, "partial_keep_secs", "VMADM_PARTIAL_KEEP_SECS", 3600);
	if (mode->target(&ctx, &record, &err) < 0) {
		_cleanup_json_ json_t *m =
		    json_pack("{s:s, s:s}", "type", "failed", "reason", err.msg);
		struct vm_error e = {0};
		vm_warn("migration of VM %s from %s failed: %s", uuid, net_conn_peer(c), err.msg);
		if (net_send_msg(c, m, &e) >= 0)
			drain(c);
		return;
	}
	serve_confirm(node, c, uuid, record, t0, ctx.bytes);
}

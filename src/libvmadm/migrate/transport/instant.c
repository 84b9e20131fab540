/* SPDX-License-Identifier: MIT */
/*
 * The instant of a network send: the snapshots the source takes of its VM
 * for one target ("vmadm-send-" + a hash of HOST:PORT), and what lets a
 * re-run to that target resume from them. ROOT/run/send-UUID.json
 * remembers, across runs of one send, which taking of the snapshots the
 * target holds datasets of ("instant_id"), whether the VM ran before the
 * first run stopped it, and the VM record's last_modified once the
 * snapshots exist.
 *
 * The transport (client.c) names and chooses the instant and forgets it;
 * the cold mode (modes/cold.c) stamps it. Neither calls the other for it.
 */
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "migrate/transport/proto.h"
#include "util/fs.h"
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

static json_t *state_load(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-%s.json", uuid), *text = NULL;
	struct vm_error e = {0};

	if (fs_read_file(path, 65536, &text, NULL, &e) < 0)
		return NULL;
	return json_loads(text, 0, NULL);
}

static void state_save(struct vm_node *node, const char *uuid, json_t *st)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-%s.json", uuid);
	_cleanup_free_ char *text = json_dumps(st, JSON_COMPACT);
	struct vm_error e = {0};

	if (text)
		fs_write_atomic(path, text, strlen(text), 0600, &e);
}

static const char *record_modified(json_t *vm)
{
	return json_string_value(json_object_get(vm, "last_modified"));
}

bool migrate_instant_choose(struct migrate_source *ctx)
{
	_cleanup_json_ json_t *prev = state_load(ctx->node, ctx->uuid), *st = NULL;
	const char *pinst = json_string_value(json_object_get(prev, "instant"));
	const char *pid = json_string_value(json_object_get(prev, "instant_id"));
	const char *pmod = json_string_value(json_object_get(prev, "record_modified"));
	const char *state = json_string_value(json_object_get(ctx->vm, "state"));
	bool running = state && streq(state, "running"), prior_running;

	migrate_instant_name(ctx->host, ctx->port, ctx->instant);
	/* Resume only if the VM stayed as the snapshots caught it: stopped,
	 * its record unchanged since they were taken (a start and a stop by
	 * hand in between would change its data). A new taking: the target
	 * then drops what it holds. */
	if (prev && !running && pinst && pid && streq(pinst, ctx->instant) && pmod &&
	    record_modified(ctx->vm) && streq(pmod, record_modified(ctx->vm))) {
		snprintf(ctx->instant_id, sizeof(ctx->instant_id), "%s", pid);
		prior_running = json_is_true(json_object_get(prev, "was_running"));
	} else {
		struct vm_error e = {0};
		char ts[32];
		vm_send_drop_snapshots(ctx->node, ctx->uuid, ctx->instant, &e);
		vm_timestamp_now(ts);
		snprintf(ctx->instant_id, sizeof(ctx->instant_id), "%s@%s", ctx->instant, ts);
		prior_running = running;
	}
	st = json_pack("{s:s, s:s, s:b}", "instant", ctx->instant, "instant_id", ctx->instant_id,
		       "was_running", prior_running);
	state_save(ctx->node, ctx->uuid, st);
	return prior_running;
}

void migrate_instant_stamp(struct migrate_source *ctx)
{
	_cleanup_json_ json_t *st = state_load(ctx->node, ctx->uuid);
	_cleanup_json_ json_t *vm = NULL;
	struct vm_error e = {0};

	if (!st || vm_store_load(ctx->node, ctx->uuid, &vm, &e) < 0 || !record_modified(vm))
		return;
	json_object_set_new(st, "record_modified", json_string(record_modified(vm)));
	state_save(ctx->node, ctx->uuid, st);
}

void migrate_instant_drop(struct vm_node *node, const char *uuid, const char *instant)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/send-%s.json", uuid);
	struct vm_error e = {0};

	vm_send_drop_snapshots(node, uuid, instant, &e);
	unlink(path);
}

/* SPDX-License-Identifier: MIT */
/*
 * The "cold" mode of a network migration: the VM is stopped, and the
 * vmadm stream (docs/stream-format.md) of `vmadm send` travels as DATA
 * frames into `vm_receive` on the target.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "migrate/transport/proto.h"
#include "util/macros.h"

/* ---- source ---- */

/* What the sending thread is doing, for the progress events. */
struct send_state {
	pthread_mutex_t lock;
	char phase[32];
	char dataset[256];
	struct migrate_source *ctx;
	bool stamped; /* migrate_instant_stamp done */
};

struct cold_send {
	struct migrate_source *ctx;
	struct send_state st;
	struct vm_send_opts opts;
	int fd;
	int r;
	bool was_running;
	struct vm_error err;
};

static void on_send_progress(const struct vm_progress *p, void *userdata)
{
	struct send_state *st = userdata;

	/* The first dataset starts: the instant's snapshots exist. */
	if (!st->stamped && streq(p->phase, "send")) {
		st->stamped = true;
		migrate_instant_stamp(st->ctx);
	}
	pthread_mutex_lock(&st->lock);
	snprintf(st->phase, sizeof(st->phase), "%s", p->phase);
	snprintf(st->dataset, sizeof(st->dataset), "%s", p->dataset ? p->dataset : "");
	pthread_mutex_unlock(&st->lock);
}

static void send_where(void *userdata, char phase[32], char dataset[256])
{
	struct send_state *st = userdata;

	pthread_mutex_lock(&st->lock);
	memcpy(phase, st->phase, 32);
	memcpy(dataset, st->dataset, 256);
	pthread_mutex_unlock(&st->lock);
}

static void *send_thread(void *arg)
{
	struct cold_send *cs = arg;

	cs->r =
	    vm_send(cs->ctx->node, cs->ctx->uuid, cs->fd, &cs->opts, &cs->was_running, &cs->err);
	close(cs->fd);
	return NULL;
}

static int cold_source(struct migrate_source *ctx, json_t **ret_record, struct vm_error *err)
{
	struct cold_send cs = {.ctx = ctx, .st.ctx = ctx};
	_cleanup_json_ json_t *m = NULL;
	pthread_t th;
	int p[2], r;

	pthread_mutex_init(&cs.st.lock, NULL);
	snprintf(cs.st.phase, sizeof(cs.st.phase), "stop");
	cs.opts = (struct vm_send_opts){
	    .portable = ctx->portable,
	    .compress = ctx->compress,
	    .stop_timeout = ctx->opts->send.stop_timeout > 0 ? ctx->opts->send.stop_timeout : 60,
	    .progress = on_send_progress,
	    .userdata = &cs.st,
	    .snapshot = ctx->instant,
	    .skip = json_object_get(ctx->accept, "have"),
	    .resume = json_object_get(ctx->accept, "resume"),
	};
	if (pipe2(p, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "make a pipe");
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	cs.fd = p[1];
	r = pthread_create(&th, NULL, send_thread, &cs);
	if (r != 0) {
		close(p[0]);
		close(p[1]);
		return vm_error_set(err, r, "start the sending thread");
	}
	r = migrate_pump_to_conn(ctx, p[0], send_where, &cs.st, err);
	close(p[0]); /* a sender still writing gets EPIPE and stops */
	pthread_join(th, NULL);
	pthread_mutex_destroy(&cs.st.lock);
	ctx->was_running = cs.was_running;
	if (r < 0)
		return r;
	if (cs.r < 0) {
		net_send_error(ctx->conn, cs.err.msg);
		*err = cs.err;
		return cs.r;
	}
	r = net_send_frame(ctx->conn, NET_FRAME_DATA_END, NULL, 0, err);
	if (r < 0)
		return r;
	migrate_emit(ctx, "install", NULL);
	r = net_expect_msg(ctx->conn, "installed", &m, err);
	if (r < 0)
		return r;
	*ret_record = json_incref(json_object_get(m, "record"));
	return 0;
}

/* ---- target ---- */

struct cold_recv {
	struct migrate_target *ctx;
	int fd;
	int r;
	json_t *record;
	struct vm_error err;
};

static void *recv_thread(void *arg)
{
	struct cold_recv *cr = arg;
	struct vm_recv_opts o = {
	    .hold = cr->ctx->hold_secs > 0,
	    .hold_secs = cr->ctx->hold_secs,
	    .instant = json_string_value(json_object_get(cr->ctx->begin, "instant")),
	    .resume = cr->ctx->held,
	    /* the stream must carry the VM BEGIN announced */
	    .uuid = cr->ctx->uuid,
	    .brand = json_string_value(
		json_object_get(json_object_get(cr->ctx->begin, "config"), "brand")),
	};

	cr->r = vm_receive(cr->ctx->node, cr->fd, NULL, 0, &o, &cr->record, &cr->err);
	close(cr->fd);
	return NULL;
}

static int cold_target(struct migrate_target *ctx, json_t **ret_record, struct vm_error *err)
{
	struct cold_recv cr = {.ctx = ctx};
	struct vm_pool *pool;
	int pumped, r;

	/* Open the pool here, not in the thread and the pump at once. */
	r = vm_node_pool(ctx->node, &pool, err);
	if (r < 0)
		return r;
	r = migrate_pump_to_thread(ctx, recv_thread, &cr, &cr.fd, "install", &pumped, err);
	if (r < 0)
		return r; /* nothing runs */
	r = pumped;
	if (r < 0 && r != -EPIPE) {
		json_decref(cr.record);
		return r;
	}
	if (cr.r < 0) {
		*err = cr.err;
		return cr.r;
	}
	if (r < 0) {
		json_decref(cr.record);
		return r;
	}
	*ret_record = cr.record;
	return 0;
}

const struct migrate_mode_ops migrate_cold_ops = {
    .mode = MIGRATE_COLD,
    .name = "cold",
    .source = cold_source,
    .target = cold_target,
};

/* SPDX-License-Identifier: MIT */
/*
 * The "cold" mode of a network migration: the VM is stopped, and the
 * vmadm stream (docs/stream-format.md) of `vmadm send` travels as DATA
 * frames into `vm_receive` on the target. Also the pumps other modes reuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate/proto.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

#define PUMP_CHUNK (256 * 1024)

/* What the sending thread is doing, for the progress events. */
struct send_state {
	pthread_mutex_t lock;
	char phase[32];
	char dataset[256];
	struct migrate_source *ctx;
	bool stamped; /* migrate_send_state_stamp done */
};

static void emit(struct migrate_source *ctx, const char *phase, const char *ds)
{
	struct migrate_event ev = { .phase = phase, .dataset = ds, .bytes = ctx->meter.bytes,
				    .total = ctx->total };

	if (!ctx->opts->event)
		return;
	if (ev.bytes > ev.total)
		ev.total = ev.bytes; /* the estimate leaves out the stream's headers */
	migrate_meter_fill(&ctx->meter, &ev);
	ctx->opts->event(&ev, ctx->opts->userdata);
}

/* Is there a message from the peer waiting (a FAILED while we send)? */
static bool peer_spoke(struct net_conn *c) { return net_conn_readable(c); }

int migrate_pump_to_conn(struct migrate_source *ctx, int fd, migrate_where_fn where,
			 void *userdata, struct vm_error *err)
{
	_cleanup_free_ char *buf = malloc(PUMP_CHUNK);
	double last_event = 0;
	int r;

	if (!buf)
		return vm_error_set(err, ENOMEM, "send");
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char ph[32] = "send", ds[256] = "";
		ssize_t n;

		if (where)
			where(userdata, ph, ds);
		/* Looked at every second at least (the poll below). */
		if (ctx->opts->cancel && *ctx->opts->cancel)
			return vm_error_setx(err, ECANCELED,
					     "cancelled (SIGINT or SIGTERM) in the %s phase", ph);
		if (poll(&p, 1, 1000) == 0) {
			/* The VM is stopping or being snapshotted: keep the
			 * target's deadline from firing. */
			_cleanup_json_ json_t *x = json_pack("{s:s}", "phase", ph);
			r = net_send_progress(ctx->conn, x, err);
			if (r < 0)
				return r;
			emit(ctx, ph, ds[0] ? ds : NULL);
			continue;
		}
		n = read(fd, buf, PUMP_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vm_error_set(err, errno, "read the stream");
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			size_t piece = n - off;
			if (ctx->meter.bwlimit && piece > 65536)
				piece = 65536;
			migrate_meter_take(&ctx->meter, piece);
			r = net_send_frame(ctx->conn, NET_FRAME_DATA, buf + off, piece, err);
			if (r < 0)
				return r;
			off += piece;
			if (migrate_now() - last_event >= 0.2) {
				last_event = migrate_now();
				emit(ctx, "send", ds[0] ? ds : NULL);
			}
		}
		if (peer_spoke(ctx->conn)) {
			_cleanup_json_ json_t *m = NULL;
			r = net_expect_msg(ctx->conn, "installed", &m, err);
			return r < 0 ? r
				     : vm_error_setx(err, EPROTO, "protocol error from %s: "
							      "installed before the end of the data",
						     net_conn_peer(ctx->conn));
		}
	}
	emit(ctx, "send", NULL);
	return 0;
}

int migrate_pump_from_conn(struct migrate_target *ctx, int fd, struct vm_error *err)
{
	for (;;) {
		_cleanup_free_ void *buf = NULL;
		enum net_frame_type type;
		size_t len;
		int r;

		r = net_recv_frame(ctx->conn, &type, &buf, &len, err);
		if (r < 0)
			return r;
		if (type == NET_FRAME_DATA_END)
			return 0;
		if (type == NET_FRAME_JSON) {
			_cleanup_json_ json_t *m = buf ? json_loadb(buf, len, 0, NULL) : NULL;
			const char *t = json_string_value(json_object_get(m, "type"));
			if (t && streq(t, "progress"))
				continue;
			if (t && streq(t, "error"))
				return vm_error_setx(err, ECONNABORTED, "the source failed: %s",
						     json_string_value(json_object_get(m, "reason")));
			return vm_error_setx(err, EPROTO,
					     "protocol error from %s: a '%s' message amid the data",
					     net_conn_peer(ctx->conn), t ? t : "?");
		}
		if (len == 0)
			continue;
		r = fs_write_all(fd, buf, len);
		if (r < 0)
			return vm_error_set(err, r, "feed the receive");
		ctx->bytes += len;
	}
}

int migrate_pump_to_thread(struct migrate_target *ctx, void *(*fn)(void *), void *arg,
			   int *arg_fd, const char *phase, int *ret_pumped, struct vm_error *err)
{
	pthread_t th;
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "make a pipe");
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	*arg_fd = p[0];
	r = pthread_create(&th, NULL, fn, arg);
	if (r != 0) {
		close(p[0]);
		close(p[1]);
		return vm_error_set(err, r, "start the receiving thread");
	}
	*ret_pumped = migrate_pump_from_conn(ctx, p[1], err);
	close(p[1]); /* EOF: the end of the stream, or a truncated one */
	for (;;) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (pthread_timedjoin_np(th, NULL, &ts) == 0)
			break;
		if (*ret_pumped >= 0) {
			_cleanup_json_ json_t *x = json_pack("{s:s}", "phase", phase);
			struct vm_error e = { 0 };

			net_send_progress(ctx->conn, x, &e);
		}
	}
	return 0;
}

/* ---- source ---- */

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
		migrate_send_state_stamp(st->ctx);
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

	cs->r = vm_send(cs->ctx->node, cs->ctx->uuid, cs->fd, &cs->opts, &cs->was_running,
			&cs->err);
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
		.stop_timeout = ctx->opts->stop_timeout > 0 ? ctx->opts->stop_timeout : 60,
		.progress = on_send_progress,
		.userdata = &cs.st,
		.snapshot = ctx->instant,
		.skip = json_object_get(ctx->accept, "have"),
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
	emit(ctx, "install", NULL);
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
	struct cold_recv cr = { .ctx = ctx };
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

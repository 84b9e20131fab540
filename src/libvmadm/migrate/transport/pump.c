/* SPDX-License-Identifier: MIT */
/*
 * Pumps: the bytes of a stream between an fd and a migration's DATA frames,
 * for the modes (migrate/transport/proto.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "migrate/transport/proto.h"
#include "util/fs.h"
#include "util/macros.h"

#define PUMP_CHUNK (256 * 1024)

/* Is there a message from the peer waiting (a FAILED while we send)? */
static bool peer_spoke(struct net_conn *c)
{
	return net_conn_readable(c);
}

int migrate_pump_to_conn(struct migrate_source *ctx, int fd, migrate_where_fn where, void *userdata,
			 struct vm_error *err)
{
	_cleanup_free_ char *buf = malloc(PUMP_CHUNK);
	double last_event = 0;
	int r;

	if (!buf)
		return vm_error_set(err, ENOMEM, "send");
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
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
			migrate_emit(ctx, ph, ds[0] ? ds : NULL);
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
				migrate_emit(ctx, "send", ds[0] ? ds : NULL);
			}
		}
		if (peer_spoke(ctx->conn)) {
			_cleanup_json_ json_t *m = NULL;
			r = net_expect_msg(ctx->conn, "installed", &m, err);
			return r < 0 ? r
				     : vm_error_setx(err, EPROTO,
						     "protocol error from %s: "
						     "installed before the end of the data",
						     net_conn_peer(ctx->conn));
		}
	}
	migrate_emit(ctx, "send", NULL);
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
				return vm_error_setx(
				    err, ECONNABORTED, "the source failed: %s",
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

int migrate_pump_to_thread(struct migrate_target *ctx, void *(*fn)(void *), void *arg, int *arg_fd,
			   const char *phase, int *ret_pumped, struct vm_error *err)
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
			struct vm_error e = {0};

			net_send_progress(ctx->conn, x, &e);
		}
	}
	return 0;
}

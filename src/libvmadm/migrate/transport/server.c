/* SPDX-License-Identifier: MIT */
/*
 * The target of network migrations: vmadmd's listener.
 *
 * Two kinds of connection, bounded apart (docs/migration-protocol.md,
 * "Limits"), so that no number of strangers can take what a peer holding
 * the key needs:
 * - Unauthenticated ones, from accept(2) to the end of the TLS handshake,
 *   live in one thread that runs every handshake without blocking (a
 *   connection costs a socket and an SSL object, no thread): at most
 *   max_handshakes at once, at most max_handshakes_per_address from one
 *   source address (an IPv6 /64), each cut at its deadline however it
 *   trickles. Over the per-address bound a new connection is closed at
 *   once. When every slot is taken, the oldest handshake whose peer has
 *   not shown the key is dropped for the new one: refusing newcomers
 *   instead would let a few slow sockets lock every peer out for good,
 *   while a peer holding the key shows it with its first message (the
 *   ClientHello's PSK binder) and from then on cannot be dropped. The
 *   listener defers accept(2) until a connection's first bytes are in
 *   (TCP_DEFER_ACCEPT), so a peer's ClientHello is checked the moment it
 *   is accepted, with no window in which strangers could push it out;
 *   and a socket that says nothing waits in the kernel (a second), not in
 *   a slot.
 * - Authenticated ones get a thread each, at most max_receives + 8 (read at
 *   start); more are answered REFUSE "busy" at once. The peer's HELLO is
 *   still due by the handshake's deadline; its BEGIN, whole, within
 *   net_timeout; then at most max_receives (read per connection) migrate
 *   at once, the others are refused as busy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "brand/brand.h"
#include "migrate/local/journal.h"
#include "migrate/transport/proto.h"
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

/* The limits' defaults (conf keys of the same names, read at start). */
#define HANDSHAKE_TIMEOUT	   10 /* s, accept to the peer's HELLO */
#define MAX_HANDSHAKES		   64 /* unauthenticated connections at once */
#define MAX_HANDSHAKES_PER_ADDRESS 8
#define AUTH_SPARE		   8 /* authenticated connections beyond max_receives */
/* At most this many log lines about closed connections per 10 s; the rest
 * are counted in one line (a flood must not fill the disk with the log). */
#define DROP_LOG_BURST 100

/* A connection in its TLS handshake (the handshake thread's own). */
struct handshake {
	struct net_conn *c; /* NULL: a free slot */
	double started, deadline;
	short events;
	uint8_t source[17]; /* its source address (IPv6: the /64), see source_key() */
};

struct server {
	int lfd;
	uint8_t key[NET_KEY_LEN];
	int timeout;
	int max_receives;
	int handshake_secs;
	int max_handshakes;
	int max_per_address;
	int max_workers; /* authenticated connections */
	char spec[128];
	atomic_int receiving; /* connections past their checks */
	atomic_int workers;   /* authenticated connections (threads) alive */
	/* The handshake thread's: */
	struct handshake *hs; /* max_handshakes slots */
	double log_window;
	int log_lines, log_suppressed;
};

struct worker_arg {
	struct server *srv;
	struct net_conn *c;    /* authenticated */
	double hello_deadline; /* the handshake's: the peer's HELLO is due */
};

static void serve(struct server *srv, struct vm_node *node, struct net_conn *c,
		  double hello_deadline)
{
	_cleanup_json_ json_t *begin = NULL;
	double t0 = migrate_now();
	int max;

	if (migrate_serve_hello(node, c, hello_deadline, srv->handshake_secs, &begin) < 0)
		return;
	max = vm_node_conf_int(node, "max_receives", "VMADM_MAX_RECEIVES", srv->max_receives);
	if (atomic_fetch_add(&srv->receiving, 1) >= max) {
		atomic_fetch_sub(&srv->receiving, 1);
		migrate_refuse(c, "this node is busy: %d receives in progress (max_receives)", max);
		return;
	}
	migrate_serve_migration(node, c, begin, t0);
	atomic_fetch_sub(&srv->receiving, 1);
}

static void *worker_thread(void *arg)
{
	struct worker_arg *wa = arg;
	struct server *srv = wa->srv;
	_cleanup_conn_ struct net_conn *c = wa->c;
	_cleanup_node_ struct vm_node *node = NULL;
	struct vm_error err = { 0 };

	/* The node's settings are read per connection: net_timeout,
	 * partial_keep_secs and max_receives changes apply at once. */
	if (vm_node_open(&node, &err) < 0) {
		vm_warn("migration connection from %s refused: %s", net_conn_peer(c), err.msg);
	} else {
		net_conn_set_timeout(c, net_node_timeout(node));
		serve(srv, node, c, wa->hello_deadline);
	}
	free(wa);
	atomic_fetch_sub(&srv->workers, 1);
	return NULL;
}

/* ---- the handshake thread ---- */

static void drop_log_flush(struct server *srv, double now)
{
	if (now - srv->log_window < 10)
		return;
	if (srv->log_suppressed > 0)
		vm_warn("%d more migration connections were closed in the last 10 s (not logged "
			"one by one)",
			srv->log_suppressed);
	srv->log_window = now;
	srv->log_lines = 0;
	srv->log_suppressed = 0;
}

static void drop_log(struct server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void drop_log(struct server *srv, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	drop_log_flush(srv, net_now());
	if (srv->log_lines >= DROP_LOG_BURST) {
		srv->log_suppressed++;
		return;
	}
	srv->log_lines++;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	vm_warn("%s", line);
}

/* What the per-address bound counts by: an IPv4 address (also when it comes
 * IPv4-mapped on an IPv6 socket), or an IPv6 address's /64 (one host can
 * have a whole /64). */
static void source_key(const struct sockaddr_storage *ss, uint8_t key[17],
		       char host[INET6_ADDRSTRLEN])
{
	memset(key, 0, 17);
	snprintf(host, INET6_ADDRSTRLEN, "?");
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		key[0] = 4;
		memcpy(key + 1, &s->sin_addr, 4);
		inet_ntop(AF_INET, &s->sin_addr, host, INET6_ADDRSTRLEN);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, host, INET6_ADDRSTRLEN);
		if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
			key[0] = 4;
			memcpy(key + 1, &s->sin6_addr.s6_addr[12], 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, s->sin6_addr.s6_addr, 8);
		}
	}
}

static void handshake_free(struct handshake *h)
{
	net_conn_free(h->c);
	h->c = NULL;
}

/* Authenticated: to a thread of its own, or REFUSE busy. */
static void handshake_done(struct server *srv, struct handshake *h)
{
	_cleanup_conn_ struct net_conn *c = TAKE_PTR(h->c);
	struct worker_arg *wa;
	pthread_attr_t attr;
	pthread_t th;
	int n, r;

	n = atomic_fetch_add(&srv->workers, 1);
	if (n >= srv->max_workers) {
		struct vm_error e = { 0 };
		atomic_fetch_sub(&srv->workers, 1);
		/* Never block this thread: the few bytes go to an empty socket
		 * buffer, or not at all. */
		if (net_conn_set_deadline(c, net_now() + 0.1, 0, "the refusal", &e) >= 0)
			migrate_refuse(
			    c,
			    "this node is busy: %d migrations in progress or starting (at most %d)",
			    n, srv->max_workers);
		return;
	}
	wa = calloc(1, sizeof(*wa));
	if (!wa) {
		atomic_fetch_sub(&srv->workers, 1);
		drop_log(srv, "migration connection from %s closed: out of memory",
			 net_conn_peer(c));
		return;
	}
	wa->srv = srv;
	wa->c = c;
	wa->hello_deadline = h->deadline;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&th, &attr, worker_thread, wa);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		atomic_fetch_sub(&srv->workers, 1);
		free(wa);
		drop_log(srv, "migration connection from %s closed: no thread for it: %s",
			 net_conn_peer(c), strerror(r));
		return;
	}
	TAKE_PTR(c); /* the worker's now */
}

static void handshake_step(struct server *srv, struct handshake *h)
{
	struct vm_error err = { 0 };
	short events = h->events;
	int r = net_accept_step(h->c, &events, &err);

	if (r == 0) {
		h->events = events;
	} else if (r < 0) {
		drop_log(srv, "migration connection refused: %s", err.msg);
		handshake_free(h);
	} else {
		handshake_done(srv, h);
	}
}

/* A new connection: into a free slot, else into the slot of the oldest
 * handshake whose peer has not shown the key (a stranger's, or a peer's
 * whose ClientHello is still on its way), unless its address has its share
 * already. */
static void admit(struct server *srv, int fd, const struct sockaddr_storage *ss)
{
	struct handshake *slot = NULL, *oldest = NULL;
	struct vm_error err = { 0 };
	char host[INET6_ADDRSTRLEN];
	uint8_t key[17];
	int same = 0;

	source_key(ss, key, host);
	for (int i = 0; i < srv->max_handshakes; i++) {
		struct handshake *h = &srv->hs[i];
		if (!h->c) {
			if (!slot)
				slot = h;
			continue;
		}
		if (memcmp(h->source, key, sizeof(key)) == 0)
			same++;
		if (!net_accept_keyed(h->c) && (!oldest || h->started < oldest->started))
			oldest = h;
	}
	if (same >= srv->max_per_address) {
		drop_log(srv,
			 "migration connection from %s closed: %d handshakes from that address "
			 "are in progress (max_handshakes_per_address)",
			 host, same);
		close(fd);
		return;
	}
	if (!slot && !oldest) {
		drop_log(srv,
			 "migration connection from %s closed: all %d handshake slots are taken "
			 "by peers holding the key (max_handshakes)",
			 host, srv->max_handshakes);
		close(fd);
		return;
	}
	if (!slot) {
		drop_log(srv,
			 "migration connection from %s dropped: all %d handshake slots are taken "
			 "(max_handshakes) and it is the oldest handshake",
			 net_conn_peer(oldest->c), srv->max_handshakes);
		handshake_free(oldest);
		slot = oldest;
	}
	if (net_accept_start(fd, srv->key, srv->timeout, &slot->c, &err) < 0) {
		drop_log(srv, "migration connection from %s refused: %s", host, err.msg);
		slot->c = NULL;
		return;
	}
	memcpy(slot->source, key, sizeof(key));
	slot->started = net_now();
	slot->deadline = slot->started + srv->handshake_secs;
	slot->events = POLLIN;
	/* Its ClientHello may be here already. */
	handshake_step(srv, slot);
}

/* Take connections waiting in the backlog, a quarter of the slots at most:
 * the handshakes in them get a turn in between (so that a burst cannot
 * push out a peer whose ClientHello just came). Fails (a negative errno)
 * when the process is out of file descriptors or memory: then the caller
 * waits a little (the backlog would make poll return at once). */
static int accept_waiting(struct server *srv)
{
	int most = srv->max_handshakes / 4 > 0 ? srv->max_handshakes / 4 : 1;

	for (int k = 0; k < most; k++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED || errno == EPROTO))
			continue;
		if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (fd < 0) {
			int e = errno;
			drop_log(srv, "accept a migration connection: %s", strerror(e));
			return -e;
		}
		admit(srv, fd, &ss);
	}
	return 0;
}

static void *handshake_loop(void *arg)
{
	struct server *srv = arg;
	int n = srv->max_handshakes;
	struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));
	int *slot_of = calloc(n + 1, sizeof(*slot_of));
	double accept_pause = 0;

	if (!pfd || !slot_of) {
		vm_warn("migrations: out of memory: no longer accepting connections");
		free(pfd);
		free(slot_of);
		return NULL;
	}
	for (;;) {
		double now = net_now(), next = now + 1;
		int np = 0;

		if (now >= accept_pause) {
			pfd[np] = (struct pollfd){.fd = srv->lfd, .events = POLLIN};
			slot_of[np++] = -1;
		} else if (accept_pause < next) {
			next = accept_pause;
		}
		for (int i = 0; i < n; i++) {
			struct handshake *h = &srv->hs[i];
			if (!h->c)
				continue;
			pfd[np] = (struct pollfd){.fd = net_conn_fd(h->c), .events = h->events};
			slot_of[np++] = i;
			if (h->deadline < next)
				next = h->deadline;
		}
		if (poll(pfd, np, next > now ? (int)((next - now) * 1000) + 1 : 0) < 0) {
			if (errno != EINTR)
				usleep(10 * 1000);
			continue;
		}
		for (int k = 0; k < np; k++)
			if (slot_of[k] >= 0 && pfd[k].revents && srv->hs[slot_of[k]].c)
				handshake_step(srv, &srv->hs[slot_of[k]]);
		now = net_now();
		for (int i = 0; i < n; i++) {
			struct handshake *h = &srv->hs[i];
			if (!h->c || now < h->deadline)
				continue;
			drop_log(
			    srv,
			    "migration connection from %s closed: the handshake (TLS and HELLO) "
			    "did not complete within %d s (handshake_timeout)",
			    net_conn_peer(h->c), srv->handshake_secs);
			handshake_free(h);
		}
		if (np > 0 && slot_of[0] < 0 && (pfd[0].revents & POLLIN) &&
		    accept_waiting(srv) < 0)
			accept_pause = now + 0.1;
		drop_log_flush(srv, now);
	}
	return NULL;
}

/* A setting of vmadm.conf within [lo, hi], else def. */
static int conf_int(struct vm_node *node, const char *key, int def, int lo, int hi)
{
	int64_t v = vm_node_conf_int(node, key, NULL, def);

	if (v < lo || v > hi) {
		vm_warn("vmadm.conf: %s %lld is out of range [%d, %d]: using %d", key, (long long)v,
			lo, hi, def);
		return def;
	}
	return (int)v;
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
	srv->lfd = -1;
	r = net_parse_hostport(spec, NET_DEFAULT_PORT, &host, &port, err);
	if (r >= 0)
		r = net_key_load(keypath, srv->key, err);
	if (r >= 0)
		r = srv->lfd = net_listen(host, port, err);
	if (r >= 0 && fcntl(srv->lfd, F_SETFL, fcntl(srv->lfd, F_GETFL) | O_NONBLOCK) < 0)
		r = vm_error_set(err, errno, "listen on %s:%d", host, port);
	if (r >= 0) {
		/* accept(2) a connection once its first bytes are in: a peer's
		 * whole ClientHello is then there to be checked at once (see
		 * admit), and a socket that says nothing waits in the kernel
		 * for a second, not in a handshake slot. */
		int one = 1;
		setsockopt(srv->lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one));
	}
	srv->timeout = net_node_timeout(node);
	srv->max_receives = vm_node_conf_int(node, "max_receives", "VMADM_MAX_RECEIVES", 2);
	if (srv->max_receives < 1)
		srv->max_receives = 1;
	srv->max_workers = srv->max_receives + AUTH_SPARE;
	srv->handshake_secs = conf_int(node, "handshake_timeout", HANDSHAKE_TIMEOUT, 1, 3600);
	srv->max_handshakes = conf_int(node, "max_handshakes", MAX_HANDSHAKES, 1, 512);
	srv->max_per_address = conf_int(node, "max_handshakes_per_address",
					MAX_HANDSHAKES_PER_ADDRESS, 1, srv->max_handshakes);
	if (r >= 0) {
		srv->hs = calloc(srv->max_handshakes, sizeof(*srv->hs));
		if (!srv->hs)
			r = vm_error_set(err, ENOMEM, "listen");
	}
	if (r >= 0) {
		snprintf(srv->spec, sizeof(srv->spec), "%s:%d", host, port);
		r = -pthread_create(&th, NULL, handshake_loop, srv);
		if (r < 0)
			vm_error_set(err, -r, "start the listener");
	}
	if (r < 0) {
		if (srv->lfd >= 0)
			close(srv->lfd);
		free(srv->hs);
		free(srv);
		return r;
	}
	pthread_detach(th);
	net_key_fingerprint(srv->key, fp);
	vm_info("listening for migrations on %s (key %s, timeout %d s, max_receives %d, "
		"handshake_timeout %d s, max_handshakes %d, max_handshakes_per_address %d)",
		srv->spec, fp, srv->timeout, srv->max_receives, srv->handshake_secs,
		srv->max_handshakes, srv->max_per_address);
	return 1;
}

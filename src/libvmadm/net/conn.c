/* SPDX-License-Identifier: MIT */
/* TCP sockets with deadlines, the TLS handshake, and frames. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net/net-private.h"
#include "util/fs.h"
#include "util/macros.h"

double net_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int net_node_timeout(struct vm_node *node)
{
	int64_t t = vm_node_conf_int(node, "net_timeout", "VMADM_NET_TIMEOUT", NET_DEFAULT_TIMEOUT);
	return t > 0 && t < 86400 ? (int)t : NET_DEFAULT_TIMEOUT;
}

/* Deadlines on every read and write, and a bound on unacknowledged data
 * (a cut link), so that no call blocks for longer than timeout. */
static void set_deadlines(int fd, int timeout)
{
	struct timeval tv = { .tv_sec = timeout };
	unsigned int user_timeout = timeout * 1000;
	int one = 1, idle = timeout > 3 ? timeout / 3 : 1, intvl = idle, cnt = 3;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct net_conn *conn_new(int fd, const uint8_t key[NET_KEY_LEN], int timeout)
{
	struct net_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->timeout = timeout;
	memcpy(c->key, key, NET_KEY_LEN);
	pthread_mutex_init(&c->send_lock, NULL);
	return c;
}

void net_conn_free(struct net_conn *c)
{
	if (!c)
		return;
	if (c->ssl) {
		/* A quiet close: no close_notify wait on a dead link. */
		SSL_set_quiet_shutdown(c->ssl, 1);
		SSL_free(c->ssl);
	}
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	OPENSSL_cleanse(c->key, sizeof(c->key));
	pthread_mutex_destroy(&c->send_lock);
	free(c);
}

const char *net_conn_peer(struct net_conn *c) { return c->peer; }
int net_conn_timeout(struct net_conn *c) { return c->timeout; }
int net_conn_fd(struct net_conn *c) { return c->fd; }

void net_conn_set_timeout(struct net_conn *c, int timeout_secs)
{
	c->timeout = timeout_secs;
	set_deadlines(c->fd, timeout_secs);
}

static int set_blocking(int fd, bool blocking)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int net_conn_set_deadline(struct net_conn *c, double at, int secs, const char *what,
			  struct vm_error *err)
{
	int r = set_blocking(c->fd, at <= 0);

	if (r < 0)
		return vm_error_set(err, -r, "connection with %s: set a deadline", c->peer);
	c->deadline = at > 0 ? at : 0;
	c->deadline_secs = secs;
	c->deadline_what = what;
	return 0;
}

static int deadline_error(struct net_conn *c, const char *what, struct vm_error *err)
{
	return vm_error_setx(err, ETIMEDOUT, "%s %s: %s did not complete within %d s", what,
			     c->peer, c->deadline_what ? c->deadline_what : "the exchange",
			     c->deadline_secs);
}

/* Under an absolute deadline: wait until the socket can do what OpenSSL
 * wants (ssl_err: SSL_ERROR_WANT_READ or _WRITE), until the deadline at
 * most, and for the conn's timeout of silence at most. 0: try again. */
static int wait_ready(struct net_conn *c, int ssl_err, const char *what, struct vm_error *err)
{
	struct pollfd p = { .fd = c->fd,
			    .events = ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN };
	double left = c->deadline - net_now();
	int ms, n;

	if (left <= 0)
		return deadline_error(c, what, err);
	ms = left < c->timeout ? (int)(left * 1000) + 1 : c->timeout * 1000;
	n = poll(&p, 1, ms);
	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0)
		return vm_error_set(err, errno, "%s %s", what, c->peer);
	if (n == 0 && net_now() >= c->deadline)
		return deadline_error(c, what, err);
	if (n == 0)
		return vm_error_setx(err, ETIMEDOUT,
				     "%s %s: no progress for %d s (the peer went silent or the link "
				     "is down)",
				     what, c->peer, c->timeout);
	return 0;
}

bool net_conn_readable(struct net_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	return SSL_pending(c->ssl) > 0 || poll(&p, 1, 0) > 0;
}

/* Why the handshake failed, in the user's words. */
static int handshake_error(struct net_conn *c, int ssl_ret, struct vm_error *err)
{
	int e = SSL_get_error(c->ssl, ssl_ret), saved = errno;
	unsigned long code = ERR_peek_error();
	int reason = ERR_GET_REASON(code);
	char buf[256] = "";

	ERR_clear_error();
	if (reason == SSL_R_TLSV1_ALERT_DECRYPT_ERROR || reason == SSL_R_BINDER_DOES_NOT_VERIFY ||
	    reason == SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC ||
	    reason == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE || reason == SSL_R_NO_SHARED_CIPHER ||
	    reason == SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER)
		return vm_error_setx(err, EACCES,
				     "TLS handshake with %s failed: the peer has a different key "
				     "(compare `vmadm key show` on both nodes)",
				     c->peer);
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		if (saved == EAGAIN || saved == EWOULDBLOCK)
			return vm_error_setx(err, ETIMEDOUT,
					     "TLS handshake with %s failed: no answer for %d s",
					     c->peer, c->timeout);
		if (saved == 0)
			return vm_error_setx(err, ECONNRESET,
					     "TLS handshake with %s failed: the peer closed the "
					     "connection (a different key, or not a vmadmd?)",
					     c->peer);
		return vm_error_set(err, saved, "TLS handshake with %s failed", c->peer);
	}
	if (code)
		ERR_error_string_n(code, buf, sizeof(buf));
	return vm_error_setx(err, EPROTO, "TLS handshake with %s failed: %s", c->peer,
			     buf[0] ? buf : "protocol error");
}

/* A TLS object for the conn, on the side given, not started. */
static int tls_setup(struct net_conn *c, bool server, struct vm_error *err)
{
	c->ctx = net_tls_ctx(server, err);
	if (!c->ctx)
		return -err->code;
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl)
		return vm_error_setx(err, ENOMEM, "create a TLS connection");
	SSL_set_app_data(c->ssl, c);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_mode(c->ssl, SSL_MODE_AUTO_RETRY);
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	return 0;
}

/* One go at the handshake on a non-blocking socket: 1 done, 0 waiting for
 * the socket (*ret_events), or the failure. */
static int tls_step(struct net_conn *c, short *ret_events, struct vm_error *err)
{
	int r, e;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return 1;
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*ret_events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
		return 0;
	}
	return handshake_error(c, r, err);
}

/* The whole handshake within the conn's timeout, however the peer trickles
 * its bytes; the socket is blocking again afterwards. */
static int tls_handshake(struct net_conn *c, bool server, struct vm_error *err)
{
	int r;

	r = tls_setup(c, server, err);
	if (r < 0)
		return r;
	r = net_conn_set_deadline(c, net_now() + c->timeout, c->timeout, "the TLS handshake", err);
	if (r < 0)
		return r;
	for (;;) {
		short events = POLLIN;
		r = tls_step(c, &events, err);
		if (r < 0)
			return r;
		if (r == 1)
			break;
		r = wait_ready(c, events == POLLOUT ? SSL_ERROR_WANT_WRITE : SSL_ERROR_WANT_READ,
			       "connection with", err);
		if (r < 0)
			return r;
	}
	return net_conn_set_deadline(c, 0, 0, NULL, err);
}

/* connect(2) that gives up after timeout. */
static int connect_deadline(int fd, const struct sockaddr *sa, socklen_t len, int timeout)
{
	int fl = fcntl(fd, F_GETFL), soerr = 0;
	socklen_t sl = sizeof(soerr);
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS)
			return -errno;
		int n = poll(&p, 1, timeout * 1000);
		if (n == 0)
			return -ETIMEDOUT;
		if (n < 0)
			return -errno;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr)
			return -soerr;
	}
	fcntl(fd, F_SETFL, fl);
	return 0;
}

int net_connect(const char *host, int port, const uint8_t key[NET_KEY_LEN], int timeout_secs,
		struct net_conn **ret, struct vm_error *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL, *a;
	_cleanup_conn_ struct net_conn *c = NULL;
	char portstr[16];
	int r = -EHOSTUNREACH, fd = -1;

	snprintf(portstr, sizeof(portstr), "%d", port);
	r = getaddrinfo(host, portstr, &hints, &ai);
	if (r != 0)
		return vm_error_setx(err, EHOSTUNREACH, "resolve %s: %s", host, gai_strerror(r));
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		set_deadlines(fd, timeout_secs);
		r = connect_deadline(fd, a->ai_addr, a->ai_addrlen, timeout_secs);
		if (r == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return vm_error_set(err, r, "connect to %s:%d", host, port);
	c = conn_new(fd, key, timeout_secs);
	if (!c) {
		close(fd);
		return vm_error_set(err, ENOMEM, "connect to %s:%d", host, port);
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	r = tls_handshake(c, false, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

int net_listen(const char *addr, int port, struct vm_error *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
	_cleanup_close_ int fd = -1;
	char portstr[16];
	int one = 1, r;

	snprintf(portstr, sizeof(portstr), "%d", port);
	r = getaddrinfo(addr && *addr ? addr : NULL, portstr, &hints, &ai);
	if (r != 0)
		return vm_error_setx(err, EINVAL, "listen on %s:%d: %s", addr, port,
				     gai_strerror(r));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return vm_error_set(err, errno, "listen on %s:%d", addr, port);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		r = errno;
		freeaddrinfo(ai);
		return vm_error_set(err, r, "listen on %s:%d", addr, port);
	}
	freeaddrinfo(ai);
	return TAKE_FD(fd);
}

int net_accept_start(int fd, const uint8_t key[NET_KEY_LEN], int timeout_secs,
		     struct net_conn **ret, struct vm_error *err)
{
	_cleanup_conn_ struct net_conn *c = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int r;

	c = conn_new(fd, key, timeout_secs);
	if (!c) {
		close(fd);
		return vm_error_set(err, ENOMEM, "accept a connection");
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
			snprintf(c->peer, sizeof(c->peer), "%s:%d", host, ntohs(s->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
			snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host, ntohs(s->sin6_port));
		}
	}
	set_deadlines(fd, timeout_secs);
	r = set_blocking(fd, false);
	if (r < 0)
		return vm_error_set(err, -r, "accept a connection from %s", c->peer);
	r = tls_setup(c, true, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

int net_accept_step(struct net_conn *c, short *ret_events, struct vm_error *err)
{
	int r = tls_step(c, ret_events, err);

	if (r == 1) {
		r = net_conn_set_deadline(c, 0, 0, NULL, err);
		return r < 0 ? r : 1;
	}
	return r;
}

bool net_accept_keyed(struct net_conn *c) { return c->psk_verified; }

int net_accept_tls(int fd, const uint8_t key[NET_KEY_LEN], int timeout_secs,
		   struct net_conn **ret, struct vm_error *err)
{
	_cleanup_conn_ struct net_conn *c = NULL;
	int r;

	r = net_accept_start(fd, key, timeout_secs, &c, err);
	if (r < 0)
		return r;
	r = net_conn_set_deadline(c, net_now() + timeout_secs, timeout_secs, "the TLS handshake",
				  err);
	for (;;) {
		short events = POLLIN;
		if (r < 0)
			return r;
		r = net_accept_step(c, &events, err);
		if (r == 1)
			break;
		if (r == 0)
			r = wait_ready(c,
				       events == POLLOUT ? SSL_ERROR_WANT_WRITE
							 : SSL_ERROR_WANT_READ,
				       "connection with", err);
	}
	*ret = TAKE_PTR(c);
	return 0;
}

/* An I/O failure of SSL_read/SSL_write in the user's words. */
static int io_error(struct net_conn *c, int ssl_ret, const char *what, struct vm_error *err)
{
	int e = SSL_get_error(c->ssl, ssl_ret), saved = errno;
	int reason = ERR_GET_REASON(ERR_peek_error());

	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0) ||
	    (e == SSL_ERROR_SSL && reason == SSL_R_UNEXPECTED_EOF_WHILE_READING))
		return vm_error_setx(err, ECONNRESET, "%s %s: the peer closed the connection", what,
				     c->peer);
	if (saved == EAGAIN || saved == EWOULDBLOCK || saved == ETIMEDOUT ||
	    e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return vm_error_setx(err, ETIMEDOUT,
				     "%s %s: no progress for %d s (the peer went silent or the link "
				     "is down)",
				     what, c->peer, c->timeout);
	if (e == SSL_ERROR_SYSCALL)
		return vm_error_set(err, saved, "%s %s", what, c->peer);
	return vm_error_setx(err, EPROTO, "%s %s: TLS error", what, c->peer);
}

/* Did SSL_read/SSL_write fail only because the non-blocking socket was not
 * ready? *ret_ssl_err says for what. */
static bool would_block(struct net_conn *c, int ssl_ret, int *ret_ssl_err)
{
	int e = SSL_get_error(c->ssl, ssl_ret);

	*ret_ssl_err = e;
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static int write_all(struct net_conn *c, const void *buf, size_t len, struct vm_error *err)
{
	const char *p = buf;

	while (len > 0) {
		int n, r;
		if (c->deadline > 0 && net_now() >= c->deadline)
			return deadline_error(c, "send to", err);
		ERR_clear_error();
		errno = 0;
		n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n <= 0 && c->deadline > 0 && would_block(c, n, &r)) {
			r = wait_ready(c, r, "send to", err);
			if (r < 0)
				return r;
			continue;
		}
		if (n <= 0)
			return io_error(c, n, "send to", err);
		p += n;
		len -= n;
	}
	return 0;
}

static int read_all(struct net_conn *c, void *buf, size_t len, struct vm_error *err)
{
	char *p = buf;

	while (len > 0) {
		int n, r;
		if (c->deadline > 0 && net_now() >= c->deadline)
			return deadline_error(c, "receive from", err);
		ERR_clear_error();
		errno = 0;
		n = SSL_read(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n <= 0 && c->deadline > 0 && would_block(c, n, &r)) {
			r = wait_ready(c, r, "receive from", err);
			if (r < 0)
				return r;
			continue;
		}
		if (n <= 0)
			return io_error(c, n, "receive from", err);
		p += n;
		len -= n;
	}
	return 0;
}

int net_send_frame(struct net_conn *c, enum net_frame_type type, const void *buf, size_t len,
		   struct vm_error *err)
{
	unsigned char hdr[5];
	uint32_t n = len + 1;
	int r;

	if (len > NET_MAX_PAYLOAD)
		return vm_error_setx(err, EMSGSIZE, "send to %s: a message of %zu bytes is too big",
				     c->peer, len);
	hdr[0] = n >> 24;
	hdr[1] = n >> 16;
	hdr[2] = n >> 8;
	hdr[3] = n;
	hdr[4] = type;
	pthread_mutex_lock(&c->send_lock);
	r = write_all(c, hdr, sizeof(hdr), err);
	if (r >= 0 && len > 0)
		r = write_all(c, buf, len, err);
	pthread_mutex_unlock(&c->send_lock);
	return r;
}

int net_recv_frame(struct net_conn *c, enum net_frame_type *ret_type, void **ret_buf,
		   size_t *ret_len, struct vm_error *err)
{
	unsigned char hdr[5];
	_cleanup_free_ char *buf = NULL;
	uint32_t n;
	int r;

	r = read_all(c, hdr, sizeof(hdr), err);
	if (r < 0)
		return r;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n < 1 || n > NET_MAX_PAYLOAD + 1)
		return vm_error_setx(err, EMSGSIZE,
				     "protocol error from %s: a frame of %u bytes (the limit is %d)",
				     c->peer, n, NET_MAX_PAYLOAD + 1);
	if (hdr[4] < NET_FRAME_JSON || hdr[4] > NET_FRAME_DATA_END)
		return vm_error_setx(err, EPROTO, "protocol error from %s: unknown frame type %u",
				     c->peer, hdr[4]);
	if (n > 1) {
		buf = malloc(n);
		if (!buf)
			return vm_error_set(err, ENOMEM, "receive from %s", c->peer);
		r = read_all(c, buf, n - 1, err);
		if (r < 0)
			return r;
		buf[n - 1] = '\0';
	}
	*ret_type = hdr[4];
	*ret_len = n - 1;
	*ret_buf = TAKE_PTR(buf);
	return 0;
}

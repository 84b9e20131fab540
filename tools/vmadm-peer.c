/* SPDX-License-Identifier: MIT */
/*
 * vmadm-peer: a scripted peer of the migration protocol
 * (docs/migration-protocol.md), for tests that play a hostile or odd source
 * against a real vmadmd: it holds the key, so it gets past TLS, and then
 * sends exactly what it is told, in order. With -l it plays a target
 * instead: it listens on HOST:PORT, takes one connection (the TLS server
 * side), runs the steps on it and exits, so that a test can point a real
 * `vmadm send` at a peer that answers oddly (another protocol version).
 *
 *   vmadm-peer [-k KEYFILE] [-t SECS] [-l] HOST:PORT STEP...
 *
 * With -l, "listening on HOST:PORT" is printed on stderr once the socket
 * listens, so that a test knows when to start the sender.
 *
 * Steps (JSON is a JSON text, or @FILE for one read from FILE):
 *   hello[:PROTO]  the HELLO exchange as a source (saying protocol PROTO,
 *                  default ours); prints the target's HELLO
 *   send:JSON      send one JSON message as it is (no checks)
 *   stream:FILE    send FILE's bytes as DATA frames, then DATA_END
 *   data:FILE      the same without DATA_END (a stream that stops)
 *   recv           receive one message (progress keepalives skipped) and
 *                  print it as one JSON line; a "refuse" or "failed" message
 *                  is printed too, and ends the run with status 1
 *   drain          print every message until the peer closes the connection
 *   sleep:SECS     wait (the connection stays open and silent)
 *   partial:N:JSON send the first N bytes of JSON's frame, then nothing
 *   trickle:SECS:JSON
 *                  send JSON's frame one byte every SECS seconds (each byte
 *                  a TLS record of its own), until done or closed
 *   closed         wait (up to 300 s) for the peer to close the connection,
 *                  printing what it sends first, then "closed after S s"
 *                  (counted from the connect)
 *
 * Exit status: 0 when every step ran, 1 when one failed (the reason on
 * stderr), 2 on a usage error. Not installed: a test tool.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/net-private.h"
#include "net/net.h"
#include "util/fs.h"
#include "util/macros.h"

static int usage(void)
{
	fprintf(stderr, "usage: vmadm-peer [-k KEYFILE] [-t SECS] [-l] HOST:PORT "
			"{hello[:PROTO]|send:JSON|stream:FILE|data:FILE|recv|drain|sleep:SECS|\n"
			"       partial:N:JSON|trickle:SECS:JSON|closed}...  (JSON: text or "
			"@FILE)\n");
	return 2;
}

static double t0; /* when the connect began */

/* JSON text or @FILE. */
static json_t *json_arg(const char *arg)
{
	json_error_t je;
	json_t *j = arg[0] == '@' ? json_load_file(arg + 1, 0, &je) : json_loads(arg, 0, &je);

	if (!j)
		fprintf(stderr, "vmadm-peer: %s: %s\n", arg, je.text);
	return j;
}

/* The frame net_send_frame would write for msg (malloc'ed), for sending it
 * piecemeal. */
static char *frame_of(json_t *msg, size_t *ret_len)
{
	_cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
	size_t n = text ? strlen(text) : 0;
	char *f = text ? malloc(n + 5) : NULL;

	if (!f)
		return NULL;
	f[0] = (n + 1) >> 24;
	f[1] = (n + 1) >> 16;
	f[2] = (n + 1) >> 8;
	f[3] = n + 1;
	f[4] = NET_FRAME_JSON;
	memcpy(f + 5, text, n);
	*ret_len = n + 5;
	return f;
}

/* Wait up to secs for the peer: 1 when it closed the connection (the JSON
 * of what it sent first is printed), 0 when it stayed quiet. */
static int wait_close(struct net_conn *c, double secs)
{
	double end = net_now() + secs;

	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		double left = end - net_now();
		char buf[4096];
		int n;

		if (SSL_pending(c->ssl) == 0) {
			if (left <= 0)
				return 0;
			if (poll(&p, 1, (int)(left * 1000) + 1) == 0)
				continue;
		}
		n = SSL_read(c->ssl, buf, sizeof(buf) - 1);
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				continue;
			return 1;
		}
		if (n > 5 && buf[4] == NET_FRAME_JSON) {
			buf[n] = '\0';
			printf("%s\n", buf + 5);
			fflush(stdout);
		}
	}
}

/* Send len bytes of p one at a time, every secs seconds: 0 when all went,
 * 1 when the peer closed the connection first. */
static int trickle(struct net_conn *c, const char *p, size_t len, double secs)
{
	for (size_t i = 0; i < len; i++) {
		if (SSL_write(c->ssl, p + i, 1) != 1)
			return 1;
		if (wait_close(c, secs))
			return 1;
	}
	return 0;
}

/* Our HELLO, as a source of protocol proto. */
static int hello(struct net_conn *c, int proto, struct vm_error *err)
{
	_cleanup_json_ json_t *m = json_pack(
	    "{s:s, s:i, s:s, s:s, s:[s,s], s:[s]}", "type", "hello", "protocol", proto, "node",
	    "vmadm-peer", "version", "0", "encodings", "tar", "blocks", "compression", "zstd");
	_cleanup_json_ json_t *their = NULL;
	_cleanup_free_ char *text = NULL;
	int r;

	r = net_send_msg(c, m, err);
	if (r < 0)
		return r;
	r = net_expect_msg(c, "hello", &their, err);
	if (r < 0)
		return r;
	text = json_dumps(their, JSON_COMPACT | JSON_SORT_KEYS);
	printf("%s\n", text ? text : "?");
	fflush(stdout);
	return 0;
}

static int fail(const char *step, const char *msg)
{
	fprintf(stderr, "vmadm-peer: %s: %s\n", step, msg);
	return 1;
}

/* Send path's bytes as DATA frames of at most NET_MAX_PAYLOAD. */
static int send_file(struct net_conn *c, const char *path, bool end, struct vm_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = malloc(NET_MAX_PAYLOAD);
	ssize_t n;
	int r;

	if (fd < 0)
		return vm_error_set(err, errno, "open %s", path);
	if (!buf)
		return vm_error_set(err, ENOMEM, "send %s", path);
	while ((n = fs_read_full(fd, buf, NET_MAX_PAYLOAD)) > 0) {
		r = net_send_frame(c, NET_FRAME_DATA, buf, n, err);
		if (r < 0)
			return r;
	}
	if (n < 0)
		return vm_error_set(err, (int)n, "read %s", path);
	return end ? net_send_frame(c, NET_FRAME_DATA_END, NULL, 0, err) : 0;
}

/* Receive one message and print it; 1 when it says the peer gave up. */
static int recv_print(struct net_conn *c, struct vm_error *err)
{
	_cleanup_json_ json_t *m = NULL;
	_cleanup_free_ char *text = NULL;
	const char *t;
	int r;

	r = net_recv_msg(c, &m, err);
	if (r < 0)
		return r;
	text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
	printf("%s\n", text ? text : "?");
	fflush(stdout);
	t = json_string_value(json_object_get(m, "type"));
	if (streq(t, "error") || streq(t, "refuse") || streq(t, "failed"))
		return vm_error_setx(err, EPROTO, "the peer sent \"%s\"", t);
	return 0;
}

int main(int argc, char **argv)
{
	const char *keyfile = NULL;
	_cleanup_free_ char *host = NULL;
	_cleanup_conn_ struct net_conn *c = NULL;
	struct vm_error err = {0};
	uint8_t key[NET_KEY_LEN];
	int timeout = NET_DEFAULT_TIMEOUT, port, o;
	bool listen_mode = false;

	signal(SIGPIPE, SIG_IGN);
	while ((o = getopt(argc, argv, "+k:t:l")) != -1) {
		switch (o) {
		case 'k':
			keyfile = optarg;
			break;
		case 'l':
			listen_mode = true;
			break;
		case 't':
			timeout = atoi(optarg);
			if (timeout <= 0)
				return usage();
			break;
		default:
			return usage();
		}
	}
	if (optind >= argc)
		return usage();
	if (!keyfile) {
		const char *root = getenv("VMADM_ROOT");
		static char path[4096];

		snprintf(path, sizeof(path), "%s/vmadm.key", root ? root : "/var/lib/vmadm");
		keyfile = path;
	}
	t0 = net_now();
	if (net_key_load(keyfile, key, &err) < 0 ||
	    net_parse_hostport(argv[optind], NET_DEFAULT_PORT, &host, &port, &err) < 0)
		return fail("connect", err.msg);
	if (listen_mode) {
		_cleanup_close_ int lfd = net_listen(host, port, &err);
		int fd;

		if (lfd < 0)
			return fail("listen", err.msg);
		fprintf(stderr, "listening on %s:%d\n", host, port);
		do
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		while (fd < 0 && errno == EINTR);
		if (fd < 0)
			return fail("accept", strerror(errno));
		if (net_accept_tls(fd, key, timeout, &c, &err) < 0)
			return fail("accept", err.msg);
	} else if (net_connect(host, port, key, timeout, &c, &err) < 0) {
		return fail("connect", err.msg);
	}

	for (int i = optind + 1; i < argc; i++) {
		const char *step = argv[i];
		int r;

		if (streq(step, "hello") || strncmp(step, "hello:", 6) == 0) {
			r = hello(c, step[5] ? atoi(step + 6) : NET_PROTOCOL_VERSION, &err);
		} else if (strncmp(step, "send:", 5) == 0) {
			_cleanup_json_ json_t *m = json_arg(step + 5);
			_cleanup_free_ char *text = NULL;

			if (!m)
				return fail(step, "not JSON");
			/* as given, even without a "type": the peer is the judge */
			text = json_dumps(m, JSON_COMPACT);
			r = text ? net_send_frame(c, NET_FRAME_JSON, text, strlen(text), &err)
				 : vm_error_set(&err, ENOMEM, "encode");
		} else if (strncmp(step, "stream:", 7) == 0) {
			r = send_file(c, step + 7, true, &err);
		} else if (strncmp(step, "data:", 5) == 0) {
			r = send_file(c, step + 5, false, &err);
		} else if (streq(step, "recv")) {
			r = recv_print(c, &err);
		} else if (streq(step, "drain")) {
			while ((r = recv_print(c, &err)) >= 0)
				;
			if (r == -ECONNRESET)
				r = 0;
		} else if (strncmp(step, "sleep:", 6) == 0) {
			r = 0;
			sleep(atoi(step + 6));
		} else if (strncmp(step, "partial:", 8) == 0 || strncmp(step, "trickle:", 8) == 0) {
			const char *arg = strchr(step + 8, ':');
			_cleanup_json_ json_t *m = arg ? json_arg(arg + 1) : NULL;
			_cleanup_free_ char *f = NULL;
			size_t len = 0, n;

			if (!m || !(f = frame_of(m, &len)))
				return usage();
			if (step[0] == 'p') {
				n = strtoul(step + 8, NULL, 10);
				n = n < len ? n : len;
				r = SSL_write(c->ssl, f, n) == (int)n
					? 0
					: vm_error_setx(&err, EPIPE, "the connection is closed");
			} else {
				/* closed before the end is what the step is for */
				trickle(c, f, len, atof(step + 8));
				r = 0;
			}
		} else if (streq(step, "closed")) {
			if (!wait_close(c, 300))
				return fail(step, "the connection was still open after 300 s");
			printf("closed after %.1f s\n", net_now() - t0);
			fflush(stdout);
			r = 0;
		} else {
			return usage();
		}
		if (r < 0)
			return fail(step, err.msg);
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * peer-ops: a misbehaving migration peer that holds a key, for
 * tests/integration/hostile-peers.sh. It connects to a vmadmd with the key
 * file given (TLS 1.3 PSK, as `vmadm send` does), then:
 *
 *   peer-ops KEY HOST PORT hello [PROTOCOL]
 *       the HELLO exchange (saying protocol PROTOCOL, default ours); prints
 *       "hello NODE" (a wrong key fails here)
 *   peer-ops KEY HOST PORT trickle-hello SECS
 *       sends its HELLO one byte every SECS seconds (each byte a TLS record
 *       of its own, so that no read of the peer ever waits SECS)
 *   peer-ops KEY HOST PORT stall-hello
 *       sends the first 3 bytes of its HELLO, then nothing
 *   peer-ops KEY HOST PORT idle
 *       the HELLO exchange (then prints "hello done"), then nothing
 *   peer-ops KEY HOST PORT trickle-begin SECS FILE
 *       the HELLO exchange, then the BEGIN of FILE (a JSON object) one byte
 *       every SECS seconds
 *   peer-ops KEY HOST PORT begin FILE
 *       the HELLO exchange, then the BEGIN of FILE, whole; prints the
 *       answer's type and reason and how long it took: "answer TYPE in
 *       SECS s: REASON"
 *
 * Every mode but begin and hello then waits (up to 300 s) for vmadmd to
 * close the connection and prints "closed after SECS s" (counted from the
 * connect), with any message vmadmd sent first ("message TYPE: REASON").
 * Errors go to stderr as "peer-ops: MSG", exit status 1.
 */
#include <errno.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/proto.h"
#include "net/net-private.h"
#include "net/net.h"
#include "util/fs.h"
#include "util/macros.h"

static double t0;

static int die(const char *msg)
{
	fprintf(stderr, "peer-ops: %s\n", msg);
	return 1;
}

/* A frame as net_send_frame writes it, for sending piecemeal. */
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

/* Wait up to secs for the peer: 1 when it closed the connection (messages it
 * sent first are printed), 0 when it stayed quiet. */
static int wait_close(struct net_conn *c, double secs)
{
	double end = net_now() + secs;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
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
		if (n <= 0)
			return 1;
		/* A frame (or a piece of one): show its JSON. */
		buf[n] = '\0';
		if (n > 5 && buf[4] == NET_FRAME_JSON) {
			_cleanup_json_ json_t *m = json_loadb(buf + 5, n - 5, 0, NULL);
			printf("message %s: %s\n", json_string_value(json_object_get(m, "type")),
			       json_string_value(json_object_get(m, "reason")) ?: "");
			fflush(stdout);
		}
	}
}

static int closed(struct net_conn *c)
{
	if (!wait_close(c, 300))
		return die("the connection was still open after 300 s");
	printf("closed after %.1f s\n", net_now() - t0);
	return 0;
}

/* Send len bytes one at a time, every secs seconds, until done (0) or the
 * peer closed the connection (1). */
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

static int hello_exchange(struct vm_node *node, struct net_conn *c, json_t **ret_their,
			  int protocol)
{
	_cleanup_json_ json_t *hello = migrate_hello(node);
	struct vm_error e = { 0 };

	if (protocol > 0)
		json_object_set_new(hello, "protocol", json_integer(protocol));
	if (net_send_msg(c, hello, &e) < 0 || net_expect_msg(c, "hello", ret_their, &e) < 0)
		return die(e.msg);
	return 0;
}

static json_t *load_json(const char *path)
{
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);

	if (!j)
		fprintf(stderr, "peer-ops: %s: %s\n", path, je.text);
	return j;
}

int main(int argc, char **argv)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_conn_ struct net_conn *c = NULL;
	_cleanup_json_ json_t *their = NULL;
	struct vm_error e = { 0 };
	uint8_t key[NET_KEY_LEN];
	const char *mode;

	if (argc < 5)
		return die("usage: peer-ops KEY HOST PORT MODE [ARGS]");
	mode = argv[4];
	if (vm_node_open(&node, &e) < 0 || net_key_load(argv[1], key, &e) < 0)
		return die(e.msg);
	t0 = net_now();
	if (net_connect(argv[2], atoi(argv[3]), key, 60, &c, &e) < 0)
		return die(e.msg);

	if (streq(mode, "hello")) {
		if (hello_exchange(node, c, &their, argc > 5 ? atoi(argv[5]) : 0))
			return 1;
		printf("hello %s\n", json_string_value(json_object_get(their, "node")));
		return 0;
	}
	if (streq(mode, "trickle-hello") || streq(mode, "stall-hello")) {
		_cleanup_json_ json_t *hello = migrate_hello(node);
		_cleanup_free_ char *f = NULL;
		size_t len = 0;
		f = frame_of(hello, &len);
		if (!f)
			return die("out of memory");
		if (streq(mode, "stall-hello")) {
			if (SSL_write(c->ssl, f, 3) != 3)
				return die("send the start of the HELLO: the connection is closed");
		} else if (argc < 6 || trickle(c, f, len, atof(argv[5])) == 0) {
			return die("the whole HELLO went through");
		}
		return closed(c);
	}
	if (streq(mode, "idle")) {
		if (hello_exchange(node, c, &their, 0))
			return 1;
		printf("hello done\n");
		fflush(stdout);
		return closed(c);
	}
	if (streq(mode, "trickle-begin") && argc >= 7) {
		_cleanup_json_ json_t *begin = load_json(argv[6]);
		_cleanup_free_ char *f = NULL;
		size_t len = 0;
		if (!begin || hello_exchange(node, c, &their, 0))
			return 1;
		f = frame_of(begin, &len);
		if (!f)
			return die("out of memory");
		if (trickle(c, f, len, atof(argv[5])) == 0)
			return die("the whole BEGIN went through");
		return closed(c);
	}
	if (streq(mode, "begin") && argc >= 6) {
		_cleanup_json_ json_t *begin = load_json(argv[5]), *m = NULL;
		double t;
		if (!begin || hello_exchange(node, c, &their, 0))
			return 1;
		t = net_now();
		if (net_send_msg(c, begin, &e) < 0 || net_recv_msg(c, &m, &e) < 0)
			return die(e.msg);
		printf("answer %s in %.1f s: %s\n", json_string_value(json_object_get(m, "type")),
		       net_now() - t, json_string_value(json_object_get(m, "reason")) ?: "");
		return 0;
	}
	return die("unknown mode, or arguments missing");
}

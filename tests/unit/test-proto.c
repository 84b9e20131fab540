/* SPDX-License-Identifier: MIT */
/* The network transport: keys, the TLS-PSK handshake (right and wrong key),
 * frames and messages, deadlines, address and rate parsing. Over loopback
 * TCP on an ephemeral port. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "migrate/transport/proto.h"
#include "net/net-private.h"
#include "net/net.h"
#include "util/fs.h"
#include "util/macros.h"

static char dir[] = "/tmp/vmadm-test-proto.XXXXXX";

struct server {
	int lfd;
	uint8_t key[NET_KEY_LEN];
	int timeout;
	int mode; /* 0: echo one message and the data, 1: stay silent */
	int r;
	struct vm_error err;
	size_t data_bytes;
};

static int listen_any(int *ret_port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	struct vm_error e = { 0 };
	int fd = net_listen("127.0.0.1", 0, &e);

	if (fd < 0)
		return fd;
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*ret_port = ntohs(sa.sin_port);
	return fd;
}

static void *serve(void *arg)
{
	struct server *s = arg;
	_cleanup_conn_ struct net_conn *c = NULL;
	int fd = accept(s->lfd, NULL, NULL);

	s->r = net_accept_tls(fd, s->key, s->timeout, &c, &s->err);
	if (s->r < 0)
		return NULL;
	if (s->mode == 1) {
		sleep(3);
		return NULL;
	}
	{
		_cleanup_json_ json_t *m = NULL;
		s->r = net_expect_msg(c, "hello", &m, &s->err);
		if (s->r < 0)
			return NULL;
		s->r = net_send_msg(c, m, &s->err);
	}
	for (;;) {
		_cleanup_free_ void *buf = NULL;
		enum net_frame_type t;
		size_t len;
		s->r = net_recv_frame(c, &t, &buf, &len, &s->err);
		if (s->r < 0 || t == NET_FRAME_DATA_END)
			break;
		s->data_bytes += len;
	}
	if (s->r >= 0) {
		_cleanup_json_ json_t *m = json_pack("{s:s, s:I}", "type", "installed", "bytes",
						     (json_int_t)s->data_bytes);
		s->r = net_send_msg(c, m, &s->err);
	}
	return NULL;
}

static void key_at(const char *name, uint8_t key[NET_KEY_LEN])
{
	_cleanup_free_ char *path = strdup_printf("%s/%s", dir, name);
	struct vm_error e = { 0 };

	net_key_generate(path, true, &e);
	net_key_load(path, key, &e);
}

static void test_key_file(void)
{
	_cleanup_free_ char *path = strdup_printf("%s/k1", dir);
	uint8_t k1[NET_KEY_LEN], k2[NET_KEY_LEN];
	struct vm_error e = { 0 };
	char fp1[17], fp2[17];
	struct stat st;

	CHECK(net_key_generate(path, false, &e) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 65);
	CHECK(net_key_generate(path, false, &e) == -EEXIST);
	CHECK_HAS(e.msg, "use -f");
	CHECK(net_key_load(path, k1, &e) == 0);
	net_key_fingerprint(k1, fp1);
	CHECK(strlen(fp1) == 16);
	CHECK(net_key_generate(path, true, &e) == 0);
	CHECK(net_key_load(path, k2, &e) == 0);
	net_key_fingerprint(k2, fp2);
	CHECK(strcmp(fp1, fp2) != 0);
	{
		_cleanup_free_ char *bad = strdup_printf("%s/bad", dir);
		fs_write_atomic(bad, "abcd\n", 5, 0600, &e);
		CHECK(net_key_load(bad, k1, &e) == -EINVAL);
		CHECK(net_key_load("/nonexistent/vmadm.key", k1, &e) == -ENOENT);
		CHECK_HAS(e.msg, "vmadm key generate");
	}
}

static void test_exchange(void)
{
	struct server s = { .timeout = 5 };
	_cleanup_conn_ struct net_conn *c = NULL;
	_cleanup_json_ json_t *hello = json_pack("{s:s, s:i}", "type", "hello", "protocol", 1);
	_cleanup_json_ json_t *back = NULL, *inst = NULL;
	_cleanup_free_ char *big = calloc(1, NET_MAX_PAYLOAD + 1);
	struct vm_error e = { 0 };
	pthread_t th;
	int port;

	key_at("k", s.key);
	s.lfd = listen_any(&port);
	CHECK(s.lfd >= 0);
	pthread_create(&th, NULL, serve, &s);
	CHECK(net_connect("127.0.0.1", port, s.key, 5, &c, &e) == 0);
	CHECK(c && net_send_msg(c, hello, &e) == 0);
	CHECK(c && net_expect_msg(c, "hello", &back, &e) == 0);
	CHECK(json_integer_value(json_object_get(back, "protocol")) == 1);
	CHECK(c && net_send_frame(c, NET_FRAME_DATA, big, NET_MAX_PAYLOAD, &e) == 0);
	CHECK(c && net_send_frame(c, NET_FRAME_DATA, big, 12345, &e) == 0);
	CHECK(c && net_send_frame(c, NET_FRAME_DATA, big, NET_MAX_PAYLOAD + 1, &e) == -EMSGSIZE);
	CHECK(c && net_send_frame(c, NET_FRAME_DATA_END, NULL, 0, &e) == 0);
	CHECK(c && net_expect_msg(c, "installed", &inst, &e) == 0);
	CHECK(json_integer_value(json_object_get(inst, "bytes")) == NET_MAX_PAYLOAD + 12345);
	pthread_join(th, NULL);
	CHECK(s.r >= 0);
	close(s.lfd);
}

static void test_wrong_key(void)
{
	struct server s = { .timeout = 5 };
	_cleanup_conn_ struct net_conn *c = NULL;
	uint8_t other[NET_KEY_LEN];
	struct vm_error e = { 0 };
	pthread_t th;
	int port;

	key_at("k", s.key);
	key_at("other", other);
	s.lfd = listen_any(&port);
	pthread_create(&th, NULL, serve, &s);
	CHECK(net_connect("127.0.0.1", port, other, 5, &c, &e) < 0);
	CHECK_HAS(e.msg, "the peer has a different key (compare `vmadm key show` on both nodes)");
	pthread_join(th, NULL);
	CHECK(s.r < 0);
	CHECK_HAS(s.err.msg, "different key");
	close(s.lfd);
}

static void test_silent_peer_times_out(void)
{
	struct server s = { .timeout = 5, .mode = 1 };
	_cleanup_conn_ struct net_conn *c = NULL;
	_cleanup_json_ json_t *m = NULL;
	struct vm_error e = { 0 };
	struct timespec t0, t1;
	pthread_t th;
	int port, r;

	key_at("k", s.key);
	s.lfd = listen_any(&port);
	pthread_create(&th, NULL, serve, &s);
	CHECK(net_connect("127.0.0.1", port, s.key, 1, &c, &e) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = c ? net_recv_msg(c, &m, &e) : -1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(r == -ETIMEDOUT);
	CHECK_HAS(e.msg, "no progress for 1 s");
	CHECK(t1.tv_sec - t0.tv_sec <= 2);
	pthread_join(th, NULL);
	close(s.lfd);
}

/* A client that connects and sends bytes of a ClientHello, one every
 * 300 ms, without TLS: a stranger trickling. */
struct trickler {
	int port;
	int sent;
	volatile int stop;
};

static void *trickle(void *arg)
{
	struct trickler *t = arg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(t->port) };
	static const unsigned char hello[] = { 0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3, 0, 0, 0,
					       0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(hello) && !t->stop; i++) {
		if (send(fd, hello + i, 1, MSG_NOSIGNAL) != 1)
			break;
		t->sent++;
		usleep(300 * 1000);
	}
	close(fd);
	return NULL;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return t1.tv_sec - t0->tv_sec + (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The whole TLS handshake has one deadline: a stranger sending a byte every
 * 300 ms (well within the 1 s of silence allowed per read) is cut at 2 s. */
static void test_handshake_deadline(void)
{
	struct trickler t = { 0 };
	_cleanup_conn_ struct net_conn *c = NULL;
	uint8_t key[NET_KEY_LEN];
	struct vm_error e = { 0 };
	struct timespec t0;
	pthread_t th;
	int lfd, fd, r;

	key_at("k", key);
	lfd = listen_any(&t.port);
	pthread_create(&th, NULL, trickle, &t);
	fd = accept(lfd, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = net_accept_tls(fd, key, 1, &c, &e);
	CHECK(r == -ETIMEDOUT);
	CHECK_HAS(e.msg, "the TLS handshake did not complete within 1 s");
	CHECK(seconds_since(&t0) < 1.5);
	t.stop = 1;
	pthread_join(th, NULL);
	CHECK(t.sent >= 3);
	close(lfd);
}

/* A client holding the key that sends its message one byte (one TLS record)
 * every 300 ms: the receiver's deadline on the whole message cuts it. */
struct slow_client {
	int port;
	uint8_t key[NET_KEY_LEN];
	double closed_after;
};

static void *slow_client(void *arg)
{
	struct slow_client *s = arg;
	_cleanup_conn_ struct net_conn *c = NULL;
	static const char frame[] = "\0\0\0\x1e\x01{\"type\":\"hello\",\"protocol\":1}";
	struct vm_error e = { 0 };
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (net_connect("127.0.0.1", s->port, s->key, 5, &c, &e) < 0)
		return NULL;
	for (size_t i = 0; i < sizeof(frame) - 1; i++) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (SSL_write(c->ssl, frame + i, 1) != 1 || poll(&p, 1, 300) > 0)
			break;
	}
	s->closed_after = seconds_since(&t0);
	return NULL;
}

static void test_message_deadline(void)
{
	struct slow_client s = { 0 };
	_cleanup_conn_ struct net_conn *c = NULL;
	_cleanup_json_ json_t *m = NULL;
	struct vm_error e = { 0 };
	struct timespec t0;
	pthread_t th;
	int lfd, r;

	key_at("k", s.key);
	lfd = listen_any(&s.port);
	pthread_create(&th, NULL, slow_client, &s);
	r = net_accept_tls(accept(lfd, NULL, NULL), s.key, 1, &c, &e);
	CHECK(r == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (r == 0) {
		CHECK(net_conn_set_deadline(c, net_now() + 2, 2, "the HELLO message", &e) == 0);
		r = net_recv_msg(c, &m, &e);
		CHECK(r == -ETIMEDOUT);
		CHECK_HAS(e.msg, "the HELLO message did not complete within 2 s");
		CHECK(seconds_since(&t0) < 2.5);
		net_conn_free(TAKE_PTR(c));
	}
	pthread_join(th, NULL);
	CHECK(s.closed_after > 1.5 && s.closed_after < 3);
	close(lfd);
}

/* The steps of a server handshake: a peer with the key is "keyed" before the
 * handshake ends; a wrong key or a stranger never is. */
static void *connect_only(void *arg)
{
	struct slow_client *s = arg;
	_cleanup_conn_ struct net_conn *c = NULL;
	struct vm_error e = { 0 };

	s->closed_after = net_connect("127.0.0.1", s->port, s->key, 5, &c, &e) == 0;
	return NULL;
}

static int steps(int lfd, const uint8_t key[NET_KEY_LEN], bool *ret_keyed, struct vm_error *e)
{
	_cleanup_conn_ struct net_conn *c = NULL;
	int r;

	*ret_keyed = false;
	r = net_accept_start(accept(lfd, NULL, NULL), key, 5, &c, e);
	for (int i = 0; r == 0 && i < 10; i++) {
		struct pollfd p = { .fd = net_conn_fd(c), .events = POLLIN };
		r = net_accept_step(c, &p.events, e);
		if (r == 0 && net_accept_keyed(c))
			*ret_keyed = true;
		if (r == 0)
			poll(&p, 1, 100);
	}
	return r;
}

static void test_accept_steps(void)
{
	struct slow_client s = { 0 };
	struct trickler t = { 0 };
	uint8_t other[NET_KEY_LEN];
	struct vm_error e = { 0 };
	pthread_t th;
	bool keyed;
	int lfd;

	key_at("k", s.key);
	key_at("other", other);
	lfd = listen_any(&s.port);
	pthread_create(&th, NULL, connect_only, &s);
	CHECK(steps(lfd, s.key, &keyed, &e) == 1);
	pthread_join(th, NULL);
	CHECK(keyed);
	CHECK(s.closed_after == 1);

	pthread_create(&th, NULL, connect_only, &s);
	CHECK(steps(lfd, other, &keyed, &e) < 0);
	CHECK_HAS(e.msg, "different key");
	pthread_join(th, NULL);
	CHECK(!keyed);

	t.port = s.port;
	pthread_create(&th, NULL, trickle, &t);
	CHECK(steps(lfd, s.key, &keyed, &e) == 0); /* still waiting after 10 steps */
	CHECK(!keyed);
	t.stop = 1;
	pthread_join(th, NULL);
	close(lfd);
}

static void test_hostport(void)
{
	struct vm_error e = { 0 };
	char *h = NULL;
	int p = 0;

	CHECK(net_parse_hostport("10.0.0.1:1234", 9777, &h, &p, &e) == 0);
	CHECK_STR(h, "10.0.0.1");
	CHECK(p == 1234);
	free(h);
	CHECK(net_parse_hostport("node-b", 9777, &h, &p, &e) == 0);
	CHECK_STR(h, "node-b");
	CHECK(p == 9777);
	free(h);
	CHECK(net_parse_hostport("[fd00::1]:80", 9777, &h, &p, &e) == 0);
	CHECK_STR(h, "fd00::1");
	CHECK(p == 80);
	free(h);
	CHECK(net_parse_hostport("fd00::1", 9777, &h, &p, &e) == 0);
	CHECK_STR(h, "fd00::1");
	free(h);
	CHECK(net_parse_hostport("a:99999", 9777, &h, &p, &e) < 0);
	CHECK(net_parse_hostport(":80", 9777, &h, &p, &e) < 0);
}

static void test_rate(void)
{
	struct vm_error e = { 0 };
	uint64_t r = 0;

	CHECK(migrate_parse_rate("50M", &r, &e) == 0 && r == 50ull << 20);
	CHECK(migrate_parse_rate("1G", &r, &e) == 0 && r == 1ull << 30);
	CHECK(migrate_parse_rate("800k", &r, &e) == 0 && r == 800 * 1024);
	CHECK(migrate_parse_rate("1000", &r, &e) == 0 && r == 1000);
	CHECK(migrate_parse_rate("10MB/s", &r, &e) == 0 && r == 10ull << 20);
	CHECK(migrate_parse_rate("fast", &r, &e) < 0);
	CHECK(migrate_parse_rate("-1M", &r, &e) < 0);
	CHECK(migrate_parse_rate("5X", &r, &e) < 0);
}

static void test_bwlimit(void)
{
	struct migrate_meter m;
	struct timespec t0, t1;
	double dt;

	/* 4 MiB at 8 MiB/s: about half a second (less the first burst). */
	migrate_meter_init(&m, 8 << 20);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 64; i++)
		migrate_meter_take(&m, 65536);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	dt = t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(dt > 0.35 && dt < 0.8);
	CHECK(m.bytes == 4 << 20);
}

/* The mode table: every mode of the enum is there under its own value, and
 * BEGIN's names find the same ops (no mode: cold). */
static void test_modes(void)
{
	const enum migrate_mode all[] = {MIGRATE_COLD, MIGRATE_INCREMENTAL, MIGRATE_LIVE};

	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		const struct migrate_mode_ops *m = migrate_mode_get(all[i]);
		CHECK(m && m->mode == all[i] && m->source && m->target);
		CHECK(m && migrate_mode_by_name(m->name) == m);
	}
	CHECK_STR(migrate_mode_get(MIGRATE_COLD)->name, "cold");
	CHECK_STR(migrate_mode_get(MIGRATE_INCREMENTAL)->name, "incremental");
	CHECK_STR(migrate_mode_get(MIGRATE_LIVE)->name, "live");
	CHECK(migrate_mode_by_name(NULL) == migrate_mode_get(MIGRATE_COLD));
	CHECK(migrate_mode_by_name("warm") == NULL);
	CHECK(migrate_mode_get((enum migrate_mode)3) == NULL);
}

/* A pass's JSON, as the report lists it and `vmadm send --json` shows it:
 * its keys in this order (tests/integration/incremental.sh reads them). */
static void test_pass_json(void)
{
	struct migrate_pass p = {.n = 2,
				 .bytes = 1048576,
				 .seconds = 0.5,
				 .rate = 2097152,
				 .from = "vmadm-send-Iabc-1",
				 .target_seconds = 0.25,
				 .stop_seconds = -1,
				 .stop = true,
				 .reason = "the delta is small"};
	_cleanup_json_ json_t *j = migrate_pass_json(&p);
	_cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	CHECK_STR(s, "{\"pass\":2,\"pass_bytes\":1048576,\"seconds\":0.5,\"pass_rate\":2097152,"
		     "\"final\":false,\"from\":\"vmadm-send-Iabc-1\",\"target_seconds\":0.25,"
		     "\"stop_seconds\":null,\"reason\":\"the delta is small\",\"stop\":true}");
	/* The final pass: stopped first, from nothing; no verdict. */
	p = (struct migrate_pass){.n = 1,
				  .bytes = 10,
				  .seconds = 1,
				  .final = true,
				  .target_seconds = 1,
				  .stop_seconds = 0.75,
				  .reason = NULL};
	json_decref(j);
	free(s);
	j = migrate_pass_json(&p);
	s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	CHECK_STR(s, "{\"pass\":1,\"pass_bytes\":10,\"seconds\":1.0,\"pass_rate\":0,"
		     "\"final\":true,\"from\":null,\"target_seconds\":1.0,\"stop_seconds\":0.75}");
}

int main(void)
{
	struct vm_error e = { 0 };

	if (!mkdtemp(dir)) {
		printf("not ok - mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	RUN(test_key_file);
	RUN(test_exchange);
	RUN(test_wrong_key);
	RUN(test_silent_peer_times_out);
	RUN(test_handshake_deadline);
	RUN(test_message_deadline);
	RUN(test_accept_steps);
	RUN(test_hostport);
	RUN(test_rate);
	RUN(test_bwlimit);
	RUN(test_modes);
	RUN(test_pass_json);
	fs_rm_rf(dir, &e);
	CHECK_EXIT();
}

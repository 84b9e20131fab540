/* SPDX-License-Identifier: MIT */
/*
 * fuzz-proto: the input is what a peer sends inside the TLS session of a
 * migration (docs/migration-protocol.md): frames (u32 length, u8 type,
 * payload) carrying JSON messages and data. The frames are read by the real
 * net_recv_frame / net_recv_msg / net_expect_msg over a real TLS 1.3 PSK
 * session (net_tls_ctx, both sides in this process, joined by a memory BIO
 * pair; the handshake is done once, and each input is written by the client
 * side and read by the server side, then whatever is left is drained).
 *
 * Byte 0 picks the role of the harness, the rest is the peer's bytes:
 *
 *   even  the target (vmadmd): hello, begin and the checks server.c applies
 *         to it before accepting (below), the DATA frames until DATA_END as
 *         migrate_pump_from_conn takes them, confirm
 *   odd   the source (vmadm send): hello (the protocol version), accept
 *         ("have"), installed ("record"), done
 *
 * server.c's check_begin is static and reads the node's journal (a held
 * receive may be rolled back), so it is not called here; its checks on the
 * message alone are repeated below from its code (uuid, config and its
 * uuid, mode and the mode's check, vm_record_localize on a dir-pool node,
 * the encoding against the pool). docs/fuzzing.md names the refactor that
 * would let the harness call them instead.
 */
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "migrate/migrate.h"
#include "migrate/transport/proto.h"
#include "net/net-private.h"
#include "util/json.h"
#include "util/macros.h"
#include "util/uuid.h"

static struct net_conn *client, *server;
static int devnull = -1;

static struct net_conn *conn(bool is_server, BIO *bio, const char *peer)
{
	struct vm_error err = {0};
	struct net_conn *c = calloc(1, sizeof(*c));

	if (!c)
		fuzz_die("out of memory");
	c->fd = -1;
	c->timeout = 1;
	memset(c->key, 0x5a, sizeof(c->key));
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	pthread_mutex_init(&c->send_lock, NULL);
	c->ctx = net_tls_ctx(is_server, &err);
	if (!c->ctx)
		fuzz_die("TLS context: %s", err.msg);
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl)
		fuzz_die("SSL_new");
	SSL_set_app_data(c->ssl, c);
	SSL_set_bio(c->ssl, bio, bio);
	return c;
}

/* Both ends of one TLS session, handshake done. */
static void connect_pair(void)
{
	BIO *bc, *bs;
	int done_c = 0, done_s = 0;

	if (!BIO_new_bio_pair(&bc, 4 << 20, &bs, 4 << 20))
		fuzz_die("BIO pair");
	client = conn(false, bc, "fuzz-client");
	server = conn(true, bs, "fuzz-peer:9777");
	for (int i = 0; i < 100 && !(done_c && done_s); i++) {
		if (!done_c)
			done_c = SSL_connect(client->ssl) == 1;
		if (!done_s)
			done_s = SSL_accept(server->ssl) == 1;
	}
	if (!done_c || !done_s)
		fuzz_die("TLS handshake between the two ends failed");
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0)
		fuzz_die("open /dev/null: %m");
}

/* Read (and drop) everything still buffered on a side, so that the next
 * input starts on a frame boundary. */
static void drain(struct net_conn *c)
{
	char buf[16384];

	while (SSL_read(c->ssl, buf, sizeof(buf)) > 0)
		;
	ERR_clear_error();
}

/* check_begin's checks on the message (migrate/transport/session.c), in its order,
 * without the journal (the node has no receive in progress) and the
 * answer. Returns the mode, or NULL when refused. */
static const struct migrate_mode_ops *begin_checks(json_t *begin)
{
	const char *uuid = jstr(begin, "uuid"), *enc = jstr(begin, "encoding");
	_cleanup_json_ json_t *config = json_deep_copy(json_object_get(begin, "config"));
	const struct migrate_mode_ops *mode = migrate_mode_by_name(jstr(begin, "mode"));
	struct vm_node *node = fuzz_node();
	struct vm_error err = {0};
	struct vm_pool *pool;
	int r;

	if (!mode)
		return NULL;
	if (!uuid || !vm_uuid_valid(uuid) || !json_is_object(config) || !jstr(config, "uuid") ||
	    !streq(jstr(config, "uuid"), uuid))
		return NULL;
	if (mode->check) {
		r = mode->check(config, &err);
		fuzz_check_error(r, &err, "mode check");
		if (r < 0)
			return NULL;
	}
	json_object_del(config, "pid");
	json_object_del(config, "transition");
	json_object_del(config, "boot_timestamp");
	vm_error_clear(&err);
	r = vm_record_localize(node, config, &err);
	fuzz_check_error(r, &err, "vm_record_localize");
	if (r < 0)
		return NULL;
	if (vm_node_pool(node, &pool, &err) < 0)
		fuzz_die("the node's pool: %s", err.msg);
	if (enc && !streq(enc, "portable") && !vm_pool_speaks(pool, enc))
		return NULL;
	return mode;
}

static void as_target(void)
{
	_cleanup_json_ json_t *hello = NULL, *begin = NULL, *confirm = NULL;
	struct migrate_target ctx = {.conn = server, .node = fuzz_node()};
	struct vm_error err = {0};
	int r;

	r = net_expect_msg(server, "hello", &hello, &err);
	fuzz_check_error(r, &err, "net_expect_msg hello");
	if (r < 0)
		return;
	vm_error_clear(&err);
	r = net_expect_msg(server, "begin", &begin, &err);
	fuzz_check_error(r, &err, "net_expect_msg begin");
	if (r < 0 || !begin_checks(begin))
		return;
	vm_error_clear(&err);
	ctx.uuid = jstr(begin, "uuid");
	ctx.begin = begin;
	r = migrate_pump_from_conn(&ctx, devnull, &err);
	fuzz_check_error(r, &err, "migrate_pump_from_conn");
	if (r < 0)
		return;
	vm_error_clear(&err);
	r = net_expect_msg(server, "confirm", &confirm, &err);
	fuzz_check_error(r, &err, "net_expect_msg confirm");
}

static void as_source(void)
{
	_cleanup_json_ json_t *hello = NULL, *accept = NULL, *installed = NULL, *done = NULL;
	struct vm_error err = {0};
	json_t *x;
	size_t i;
	int r;

	r = net_expect_msg(server, "hello", &hello, &err);
	fuzz_check_error(r, &err, "net_expect_msg hello");
	if (r < 0 || json_integer_value(json_object_get(hello, "protocol")) != NET_PROTOCOL_VERSION)
		return;
	vm_error_clear(&err);
	r = net_expect_msg(server, "accept", &accept, &err);
	fuzz_check_error(r, &err, "net_expect_msg accept");
	if (r < 0)
		return;
	json_array_foreach (json_object_get(accept, "have"), i, x)
		if (!json_is_string(x))
			return;
	vm_error_clear(&err);
	r = net_expect_msg(server, "installed", &installed, &err);
	fuzz_check_error(r, &err, "net_expect_msg installed");
	if (r < 0 || !json_is_object(json_object_get(installed, "record")))
		return;
	vm_error_clear(&err);
	r = net_expect_msg(server, "done", &done, &err);
	fuzz_check_error(r, &err, "net_expect_msg done");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!client)
		connect_pair();
	if (size < 1)
		return 0;
	for (size_t off = 1; off < size;) {
		int n = SSL_write(client->ssl, data + off, (int)(size - off));

		if (n <= 0)
			fuzz_die("write the input into the TLS session");
		off += n;
	}
	if (data[0] & 1)
		as_source();
	else
		as_target();
	drain(server);
	drain(client);
	return 0;
}

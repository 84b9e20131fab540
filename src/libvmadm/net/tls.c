/* SPDX-License-Identifier: MIT */
/* The node key and the TLS 1.3 external-PSK contexts. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net-private.h"
#include "util/fs.h"
#include "util/macros.h"

#define PSK_IDENTITY "vmadm"
#define PSK_SUITE "TLS_AES_256_GCM_SHA384"
static const unsigned char psk_suite_id[2] = { 0x13, 0x02 };

char *net_key_path(struct vm_node *node) { return vm_node_path(node, "vmadm.key"); }

int net_key_generate(const char *path, bool force, struct vm_error *err)
{
	uint8_t key[NET_KEY_LEN];
	char hex[NET_KEY_LEN * 2 + 2];

	if (!force && fs_exists(path))
		return vm_error_setx(err, EEXIST,
				     "%s exists: use -f to replace it (peers holding the old key "
				     "will no longer connect)",
				     path);
	if (RAND_bytes(key, sizeof(key)) != 1)
		return vm_error_setx(err, EIO, "generate a key: no random bytes from OpenSSL");
	for (size_t i = 0; i < NET_KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	strcat(hex, "\n");
	OPENSSL_cleanse(key, sizeof(key));
	return fs_write_atomic(path, hex, strlen(hex), 0600, err);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int net_key_load(const char *path, uint8_t key[NET_KEY_LEN], struct vm_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	if (!fs_exists(path))
		return vm_error_setx(err, ENOENT,
				     "no node key at %s: run `vmadm key generate` on one node and "
				     "copy the file to its peers",
				     path);
	r = fs_read_file(path, 4096, &text, &len, err);
	if (r < 0)
		return r;
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
		len--;
	if (len != NET_KEY_LEN * 2)
		return vm_error_setx(err, EINVAL, "%s: expected %d hex characters, found %zu", path,
				     NET_KEY_LEN * 2, len);
	for (size_t i = 0; i < NET_KEY_LEN; i++) {
		int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return vm_error_setx(err, EINVAL, "%s: not a hex key", path);
		key[i] = hi << 4 | lo;
	}
	OPENSSL_cleanse(text, len);
	return 0;
}

void net_key_fingerprint(const uint8_t key[NET_KEY_LEN], char out[17])
{
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256(key, NET_KEY_LEN, md);
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* The PSK as a TLS 1.3 session: what both callbacks hand OpenSSL. */
static SSL_SESSION *psk_session(SSL *ssl)
{
	struct net_conn *c = SSL_get_app_data(ssl);
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, psk_suite_id);
	SSL_SESSION *s;

	if (!c || !cipher)
		return NULL;
	s = SSL_SESSION_new();
	if (!s)
		return NULL;
	if (!SSL_SESSION_set1_master_key(s, c->key, NET_KEY_LEN) ||
	    !SSL_SESSION_set_cipher(s, cipher) ||
	    !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
			  SSL_SESSION **sess)
{
	SSL_SESSION *s = psk_session(ssl);

	if (!s)
		return 0;
	if (md && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s))) {
		/* A HelloRetryRequest chose another hash: offer no PSK. */
		SSL_SESSION_free(s);
		*sess = NULL;
		return 1;
	}
	*id = (const unsigned char *)PSK_IDENTITY;
	*idlen = strlen(PSK_IDENTITY);
	*sess = s;
	return 1;
}

static int find_session_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct net_conn *c = SSL_get_app_data(ssl);

	if (idlen != strlen(PSK_IDENTITY) || memcmp(id, PSK_IDENTITY, idlen) != 0) {
		*sess = NULL; /* unknown identity: the handshake fails */
		return 1;
	}
	*sess = psk_session(ssl);
	/* OpenSSL checks the binder right after this (our one cipher suite
	 * has the PSK's hash, so it never skips it): if it does not verify,
	 * the handshake ends before anyone asks net_accept_keyed. */
	if (*sess && c)
		c->psk_verified = true;
	return *sess ? 1 : 0;
}

static SSL_CTX *tls_ctx_new(bool server, struct vm_error *err)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!ctx) {
		vm_error_setx(err, ENOMEM, "create a TLS context");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, PSK_SUITE)) {
		SSL_CTX_free(ctx);
		vm_error_setx(err, EINVAL, "configure TLS 1.3 with %s", PSK_SUITE);
		return NULL;
	}
	/* No tickets: every connection authenticates with the node key. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (server)
		SSL_CTX_set_psk_find_session_callback(ctx, find_session_cb);
	else
		SSL_CTX_set_psk_use_session_callback(ctx, use_session_cb);
	return ctx;
}

/* One context per side for the process: it holds no key (the callbacks take
 * it from the conn), and making one costs far more than a connection's
 * SSL object, which matters to a server taking many handshakes at once. */
SSL_CTX *net_tls_ctx(bool server, struct vm_error *err)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static SSL_CTX *ctxs[2];
	SSL_CTX *ctx;

	pthread_mutex_lock(&lock);
	if (!ctxs[server])
		ctxs[server] = tls_ctx_new(server, err);
	ctx = ctxs[server];
	if (ctx)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&lock);
	return ctx;
}

/* SPDX-License-Identifier: MIT */
/* Inside the transport: the connection object and the TLS contexts. */
#pragma once

#include <openssl/ssl.h>
#include <pthread.h>

#include "net/net.h"

struct net_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	uint8_t key[NET_KEY_LEN];
	char peer[128];
	int timeout; /* seconds, for every read and write */
	pthread_mutex_t send_lock;
	/* An absolute deadline (net_now() seconds, 0: none) on the exchange
	 * named deadline_what, which was given deadline_secs; the socket is
	 * non-blocking while it is set. */
	double deadline;
	int deadline_secs;
	const char *deadline_what;
	/* Server side: the peer's ClientHello named our PSK, and the
	 * handshake went on (OpenSSL checks the binder right after asking
	 * for the PSK, and a failed check ends the handshake). */
	bool psk_verified;
};

/* A TLS 1.3-only context with the PSK callbacks of its side: a new
 * reference to the one of the process (SSL_CTX_free it). */
SSL_CTX *net_tls_ctx(bool server, struct vm_error *err);

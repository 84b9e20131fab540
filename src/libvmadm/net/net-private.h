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
};

/* A TLS 1.3-only context with the PSK callbacks of its side. */
SSL_CTX *net_tls_ctx(bool server, struct vm_error *err);

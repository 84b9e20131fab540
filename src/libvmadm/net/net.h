/* SPDX-License-Identifier: MIT */
/*
 * The network transport between nodes (docs/migration-protocol.md): TCP with
 * TLS 1.3 authenticated by a pre-shared key (ROOT/vmadm.key), and framed
 * messages inside it (JSON control messages, DATA, DATA_END).
 *
 * Every read and write has a deadline (the conn's timeout): a silent peer
 * or a cut link makes the call fail with -ETIMEDOUT (or -ECONNRESET, -EPIPE)
 * within about that time. That bounds silence, not slowness: a peer that
 * sends a byte now and then never trips it. Where a whole exchange must end
 * in time (the TLS handshake, a HELLO or BEGIN), the conn also gets an
 * absolute deadline (net_conn_set_deadline) that no trickle extends.
 * Sends are serialized by a mutex, so two threads may send on one conn;
 * only one thread may receive, and only one thread may use a conn while it
 * has an absolute deadline.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/node.h"
#include "util/error.h"
#include "util/macros.h"

#define NET_DEFAULT_PORT 9777
#define NET_DEFAULT_TIMEOUT 30
#define NET_KEY_LEN 32
#define NET_MAX_PAYLOAD (1024 * 1024) /* JSON and DATA payloads */
#define NET_PROTOCOL_VERSION 1

enum net_frame_type {
	NET_FRAME_JSON = 1,
	NET_FRAME_DATA = 2,
	NET_FRAME_DATA_END = 3,
};

struct net_conn;

/* ---- the key (tls.c) ---- */

/* ROOT/vmadm.key (malloc'ed). */
char *net_key_path(struct vm_node *node);
/* Write a new random key (mode 0600). Fails with -EEXIST if one exists and
 * !force. */
int net_key_generate(const char *path, bool force, struct vm_error *err);
/* Read a key file; a missing file says how to make one. */
int net_key_load(const char *path, uint8_t key[NET_KEY_LEN], struct vm_error *err);
/* First 16 hex chars of SHA-256(key), NUL-terminated. */
void net_key_fingerprint(const uint8_t key[NET_KEY_LEN], char out[17]);

/* ---- connections (conn.c) ---- */

/* The deadline of the node: VMADM_NET_TIMEOUT, conf net_timeout, 30 s. */
int net_node_timeout(struct vm_node *node);

/* CLOCK_MONOTONIC in seconds: the clock of the absolute deadlines. */
double net_now(void);

/* Connect to host:port and do the TLS handshake as the client, all of it
 * within timeout_secs. A wrong key is reported as such. */
int net_connect(const char *host, int port, const uint8_t key[NET_KEY_LEN], int timeout_secs,
		struct net_conn **ret, struct vm_error *err);

/* Listen on addr ("0.0.0.0", "10.99.0.2", "::") and port; returns the fd. */
int net_listen(const char *addr, int port, struct vm_error *err);

/* Do the server side of the TLS handshake on an accepted socket, all of it
 * within timeout_secs (takes ownership of fd whatever happens). */
int net_accept_tls(int fd, const uint8_t key[NET_KEY_LEN], int timeout_secs,
		   struct net_conn **ret, struct vm_error *err);

/* The same without blocking, for a server that runs many handshakes in one
 * thread: net_accept_start takes fd (whatever happens) and prepares the
 * server side of TLS on it; net_accept_step goes as far as the peer's bytes
 * allow and returns 1 once the peer is authenticated (the conn is then
 * blocking, with the read and write deadlines of timeout_secs), 0 while it
 * waits for the peer (*ret_events: POLLIN or POLLOUT on net_conn_fd), or a
 * negative errno (a wrong key is reported as such). The caller keeps the
 * time: these never wait. */
int net_accept_start(int fd, const uint8_t key[NET_KEY_LEN], int timeout_secs,
		     struct net_conn **ret, struct vm_error *err);
int net_accept_step(struct net_conn *c, short *ret_events, struct vm_error *err);
int net_conn_fd(struct net_conn *c);
/* Has the peer of an unfinished handshake shown the key? True once its
 * ClientHello carried a PSK binder that verified (the server's Finished is
 * out; the client's is all that is missing): something no stranger can
 * reach. */
bool net_accept_keyed(struct net_conn *c);

/* An absolute deadline (at, in net_now() seconds) for the exchange named
 * what ("the HELLO message"): until it is cleared (at 0), every read and
 * write fails with -ETIMEDOUT "WHAT did not complete within SECS s" once at
 * has passed, however the peer trickles its bytes; secs is only for that
 * message. While set, the socket is non-blocking and waits in poll(2), so
 * only the thread that set it may use the conn. */
int net_conn_set_deadline(struct net_conn *c, double at, int secs, const char *what,
			  struct vm_error *err);

void net_conn_free(struct net_conn *c);
DEFINE_CLEANUP(struct net_conn, net_conn_free)
#define _cleanup_conn_ _cleanup_(net_conn_freep)

/* "HOST:PORT" of the peer, for messages. */
const char *net_conn_peer(struct net_conn *c);
int net_conn_timeout(struct net_conn *c);
/* Change the deadline of every read and write (and the socket's keepalive
 * and TCP_USER_TIMEOUT with it) to timeout_secs. */
void net_conn_set_timeout(struct net_conn *c, int timeout_secs);

/* Has the peer sent something not yet read (without blocking)? */
bool net_conn_readable(struct net_conn *c);

/* Send one frame (payload <= NET_MAX_PAYLOAD). */
int net_send_frame(struct net_conn *c, enum net_frame_type type, const void *buf, size_t len,
		   struct vm_error *err);
/* Receive one frame into a malloc'ed buffer (NUL-terminated; *ret_buf is
 * NULL for an empty payload). EOF is -ECONNRESET "closed the connection". */
int net_recv_frame(struct net_conn *c, enum net_frame_type *ret_type, void **ret_buf,
		   size_t *ret_len, struct vm_error *err);

/* ---- messages (proto.c) ---- */

/* Send a JSON object (must have a string "type"). */
int net_send_msg(struct net_conn *c, json_t *msg, struct vm_error *err);
/* Receive the next JSON message, skipping "progress" keepalives. Fails on a
 * DATA frame, on malformed JSON, and on an "error" message (whose reason
 * becomes err). */
int net_recv_msg(struct net_conn *c, json_t **ret, struct vm_error *err);
/* Receive a message whose type must be want (or fail naming what came). A
 * "refuse" or "failed" message fails with its reason. */
int net_expect_msg(struct net_conn *c, const char *want, json_t **ret, struct vm_error *err);
/* Send msg, then net_expect_msg(want). When the send fails because the
 * peer closed the connection, the reason the peer sent before closing (a
 * refuse or error message) is the error, not "Broken pipe". */
int net_request(struct net_conn *c, json_t *msg, const char *want, json_t **ret,
		struct vm_error *err);

/* Best effort {"type":"error","reason":msg}. */
void net_send_error(struct net_conn *c, const char *reason);
/* Keepalive: {"type":"progress", ...extra fields} (extra may be NULL). */
int net_send_progress(struct net_conn *c, json_t *extra, struct vm_error *err);

/* Parse "HOST:PORT", "[V6]:PORT" or "HOST" (port def). *ret_host malloc'ed. */
int net_parse_hostport(const char *s, int def_port, char **ret_host, int *ret_port,
		       struct vm_error *err);

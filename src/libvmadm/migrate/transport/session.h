/* SPDX-License-Identifier: MIT */
/* The target's side of one migration (session.c), for the listener
 * (server.c); not API. */
#pragma once

#include <jansson.h>

#include "migrate/transport/proto.h"
#include "net/net.h"
#include "node/node.h"

/* Log the formatted reason and send it as REFUSE (a send that fails is
 * the peer's loss: it is gone). */
void migrate_refuse(struct net_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* HELLO both ways, then the source's BEGIN (*ret_begin), each by its
 * deadline: the peer's HELLO by hello_deadline (handshake_secs after its
 * accept), its BEGIN within net_timeout of our HELLO. Logs why and
 * returns -1 when the connection ends there. */
int migrate_serve_hello(struct vm_node *node, struct net_conn *c, double hello_deadline,
			int handshake_secs, json_t **ret_begin);

/* BEGIN's checks, then the mode's target and the CONFIRM: the VM is
 * installed (or refused, or its receive kept as the mode says). t0: when
 * the connection came, for the log. */
void migrate_serve_migration(struct vm_node *node, struct net_conn *c, json_t *begin, double t0);

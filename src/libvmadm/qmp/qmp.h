/* SPDX-License-Identifier: MIT */
/*
 * A small QMP (QEMU Machine Protocol) client.
 *
 * QMP is line-oriented JSON over a unix socket: QEMU sends a greeting, the
 * client answers with qmp_capabilities, and then every command
 * {"execute": CMD, "arguments": {...}, "id": N} gets exactly one reply
 * carrying the same id, either {"return": ...} or {"error": {"class": ...,
 * "desc": ...}}. Asynchronous events ({"event": NAME, "data": ...,
 * "timestamp": ...}) may arrive at any time, also between a command and its
 * reply; the client queues them for qmp_wait_event().
 *
 * One struct qmp is used by one thread at a time. Every call that reads takes
 * a timeout in milliseconds (< 0: wait forever) and fails with -ETIMEDOUT
 * and a message naming what it waited for.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "util/error.h"
#include "util/macros.h"

/* A message larger than this is refused (-EMSGSIZE) and the connection is
 * then unusable: QEMU's largest replies (query-qmp-schema) are ~200 KiB. */
#define QMP_MAX_MESSAGE (16u * 1024 * 1024)

struct qmp;

/* Connect to QEMU's QMP socket at path, retrying while the socket does not
 * exist yet or refuses connections (QEMU still starting), read the greeting
 * and negotiate capabilities. Paths longer than sun_path are reached through
 * /proc/self/fd. The whole exchange is bounded by timeout_ms. */
int qmp_connect(const char *path, int timeout_ms, struct qmp **ret, struct vm_error *err);

/* Like qmp_connect on an already connected stream socket, which the qmp
 * object takes (it is closed on failure too). what names the peer in
 * messages (e.g. the socket path). */
int qmp_open_fd(int fd, const char *what, int timeout_ms, struct qmp **ret,
		struct vm_error *err);

/* Close the connection, drop queued events. NULL is fine. */
void qmp_close(struct qmp *q);
DEFINE_CLEANUP(struct qmp, qmp_close)
#define _cleanup_qmp_ _cleanup_(qmp_closep)

/* The greeting's {"qemu": {"major", "minor", "micro"}, "package"} object
 * (borrowed, valid until qmp_close). */
json_t *qmp_version(struct qmp *q);

/*
 * Run a command and wait for its reply. args is BORROWED (the caller keeps
 * its reference; NULL for no arguments). On success *ret_return (if not
 * NULL) gets a new reference to the "return" value. A QMP error reply
 * becomes a negative errno chosen from the error class (-EIO for
 * GenericError, -ENOENT for DeviceNotFound, -ENOSYS for CommandNotFound, ...)
 * with the message "qmp CMD: CLASS: DESC" in QEMU's own words. Events that
 * arrive before the reply are queued.
 */
int qmp_command(struct qmp *q, const char *cmd, json_t *args, json_t **ret_return,
		int timeout_ms, struct vm_error *err);

/* Out of band (QEMU's "oob" capability): qmp_connect_oob negotiates it, and
 * qmp_command_oob sends {"exec-oob": cmd}, which QEMU runs in the monitor's
 * own thread even while its main loop is blocked (for commands marked
 * allow-oob, e.g. "yank"). Use a monitor of its own (kvm: RUN/qmp-oob.sock):
 * a QMP socket takes one client at a time. */
int qmp_connect_oob(const char *path, int timeout_ms, struct qmp **ret, struct vm_error *err);
int qmp_command_oob(struct qmp *q, const char *cmd, json_t *args, json_t **ret_return,
		    int timeout_ms, struct vm_error *err);

/*
 * Return the oldest queued event called name (NULL: any event), removing it
 * from the queue, or read until one arrives. *ret_event (if not NULL) gets
 * the whole event object ({"event", "data", "timestamp"}); use
 * json_object_get(ev, "data") for the data. Other events stay queued.
 */
int qmp_wait_event(struct qmp *q, const char *name, json_t **ret_event, int timeout_ms,
		   struct vm_error *err);

/* Drop every queued event (e.g. before starting an operation whose events
 * one waits for). */
void qmp_flush_events(struct qmp *q);

/* --- Pure parsing, for the client and for unit tests --------------------- */

enum qmp_msg_kind {
	QMP_MSG_GREETING, /* {"QMP": {"version": ..., "capabilities": [...]}} */
	QMP_MSG_RETURN,   /* {"return": X, "id": ...} */
	QMP_MSG_ERROR,    /* {"error": {"class": C, "desc": D}, "id": ...} */
	QMP_MSG_EVENT,    /* {"event": NAME, "data": ..., "timestamp": ...} */
};

struct qmp_msg {
	enum qmp_msg_kind kind;
	json_t *root;        /* the whole message, owned: release with qmp_msg_clear */
	json_t *id;          /* borrowed from root; NULL when absent */
	json_t *value;       /* RETURN: the return value; GREETING: the "QMP"
				object; EVENT: "data" (NULL if none); borrowed */
	const char *err_class; /* ERROR */
	const char *err_desc;  /* ERROR */
	const char *event;     /* EVENT: its name */
};

/* Parse one QMP line (without or with its trailing "\r\n"), len bytes.
 * Fails with -EBADMSG and a message quoting the start of the line when it is
 * not JSON, not an object, or none of the four kinds. */
int qmp_parse_line(const char *line, size_t len, struct qmp_msg *ret, struct vm_error *err);

void qmp_msg_clear(struct qmp_msg *m);

/* The errno a QMP error class maps to (positive). */
int qmp_class_errno(const char *err_class);

/* SPDX-License-Identifier: MIT */
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

/* Events nobody waits for are dropped oldest first beyond this many. */
#define QMP_MAX_QUEUED_EVENTS 1024
#define QMP_READ_CHUNK (64 * 1024)

struct qmp {
	int fd;
	char *what; /* socket path, for messages */
	char *buf; /* bytes read and not yet consumed */
	size_t len; /* bytes in buf */
	size_t cap;
	size_t scanned; /* buf[0..scanned) holds no newline */
	json_t *events; /* array of queued event objects */
	json_t *version;
	int64_t next_id;
	bool broken; /* a framing error or EOF: refuse further use */
};

/* --- Parsing ------------------------------------------------------------- */

int qmp_class_errno(const char *c)
{
	static const struct {
		const char *cls;
		int code;
	} map[] = {
		{ "GenericError", EIO },	 { "CommandNotFound", ENOSYS },
		{ "DeviceNotFound", ENODEV },	 { "DeviceNotActive", ENXIO },
		{ "KVMMissingCap", EOPNOTSUPP },
	};

	for (size_t i = 0; c && i < ARRAY_SIZE(map); i++)
		if (streq(c, map[i].cls))
			return map[i].code;
	return EIO;
}

void qmp_msg_clear(struct qmp_msg *m)
{
	json_decref(m->root);
	memset(m, 0, sizeof(*m));
}

static int bad_line(const char *line, size_t len, const char *why, struct vm_error *err)
{
	int show = len > 120 ? 120 : (int)len;
	return vm_error_setx(err, EBADMSG, "bad QMP message (%s): %.*s%s", why, show, line,
			     len > 120 ? "..." : "");
}

int qmp_parse_line(const char *line, size_t len, struct qmp_msg *ret, struct vm_error *err)
{
	struct qmp_msg m = { 0 };
	json_error_t jerr;
	json_t *v;

	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	m.root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!m.root)
		return bad_line(line, len, jerr.text, err);
	if (!json_is_object(m.root)) {
		json_decref(m.root);
		return bad_line(line, len, "not an object", err);
	}
	m.id = json_object_get(m.root, "id");

	if ((v = json_object_get(m.root, "QMP"))) {
		m.kind = QMP_MSG_GREETING;
		m.value = v;
	} else if ((v = json_object_get(m.root, "event"))) {
		if (!json_is_string(v))
			goto bad;
		m.kind = QMP_MSG_EVENT;
		m.event = json_string_value(v);
		m.value = json_object_get(m.root, "data");
	} else if ((v = json_object_get(m.root, "error"))) {
		m.kind = QMP_MSG_ERROR;
		m.err_class = json_string_value(json_object_get(v, "class"));
		m.err_desc = json_string_value(json_object_get(v, "desc"));
		if (!m.err_class)
			m.err_class = "UnknownError";
		if (!m.err_desc)
			m.err_desc = "(no description)";
	} else if (json_object_get(m.root, "return")) {
		m.kind = QMP_MSG_RETURN;
		m.value = json_object_get(m.root, "return");
	} else
		goto bad;
	*ret = m;
	return 0;
bad:
	json_decref(m.root);
	return bad_line(line, len, "neither greeting, return, error nor event", err);
}

/* --- I/O ----------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
}

/* Milliseconds left for poll(): -1 for forever, 0 when past. */
static int remaining(int64_t deadline)
{
	int64_t left;

	if (deadline == INT64_MAX)
		return -1;
	left = deadline - now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	for (;;) {
		r = poll(&p, 1, remaining(deadline));
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int send_all(struct qmp *q, const char *data, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int r = wait_fd(q->fd, POLLOUT, deadline);
				if (r < 0)
					return r;
				continue;
			}
			return -errno;
		}
		data += n;
		len -= n;
	}
	return 0;
}

/* Read the next complete message into *ret. what_for names the wait in
 * messages ("qmp query-status", "qmp event STOP"). */
static int read_msg(struct qmp *q, int64_t deadline, int timeout_ms, const char *what_for,
		    struct qmp_msg *ret, struct vm_error *err)
{
	for (;;) {
		char *nl = NULL;

		if (q->len > q->scanned)
			nl = memchr(q->buf + q->scanned, '\n', q->len - q->scanned);
		if (nl) {
			size_t line_len = nl - q->buf, rest;
			int r = 0;
			bool blank = true;

			if (line_len > QMP_MAX_MESSAGE)
				break;

			for (size_t i = 0; i < line_len && blank; i++)
				blank = q->buf[i] == '\r' || q->buf[i] == ' ';
			if (!blank)
				r = qmp_parse_line(q->buf, line_len, ret, err);
			rest = q->len - line_len - 1;
			memmove(q->buf, nl + 1, rest);
			q->len = rest;
			q->scanned = 0;
			if (r < 0) {
				q->broken = true;
				return vm_error_prefix(err, "%s: %s", what_for, q->what);
			}
			if (!blank)
				return 0;
			continue;
		}
		q->scanned = q->len;
		if (q->len > QMP_MAX_MESSAGE)
			break;
		if (q->cap - q->len < QMP_READ_CHUNK) {
			size_t ncap = q->cap ? q->cap * 2 : 2 * QMP_READ_CHUNK;
			char *nb;
			if (ncap > QMP_MAX_MESSAGE + 2 * QMP_READ_CHUNK)
				ncap = QMP_MAX_MESSAGE + 2 * QMP_READ_CHUNK;
			nb = realloc(q->buf, ncap);
			if (!nb)
				return vm_error_set(err, ENOMEM, "%s", what_for);
			q->buf = nb;
			q->cap = ncap;
		}
		ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
		if (n > 0) {
			q->len += n;
			continue;
		}
		if (n == 0) {
			q->broken = true;
			return vm_error_setx(err, ECONNRESET,
					     "%s: QEMU closed the QMP connection %s", what_for,
					     q->what);
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			q->broken = true;
			return vm_error_set(err, errno, "%s: read from %s", what_for, q->what);
		}
		int r = wait_fd(q->fd, POLLIN, deadline);
		if (r == -ETIMEDOUT)
			return vm_error_setx(err, ETIMEDOUT,
					     "%s: no answer from QEMU on %s within %d ms", what_for,
					     q->what, timeout_ms);
		if (r < 0)
			return vm_error_set(err, r, "%s: poll %s", what_for, q->what);
	}
	q->broken = true;
	return vm_error_setx(err, EMSGSIZE, "%s: %s: message larger than %u bytes refused",
			     what_for, q->what, QMP_MAX_MESSAGE);
}

static void queue_event(struct qmp *q, struct qmp_msg *m)
{
	vm_debug("qmp %s: event %s", q->what, m->event);
	if (json_array_size(q->events) >= QMP_MAX_QUEUED_EVENTS) {
		vm_debug("qmp %s: event queue full, dropping the oldest", q->what);
		json_array_remove(q->events, 0);
	}
	json_array_append(q->events, m->root);
}

/* --- Public API ---------------------------------------------------------- */

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	free(q->what);
	free(q->buf);
	json_decref(q->events);
	json_decref(q->version);
	free(q);
}

json_t *qmp_version(struct qmp *q)
{
	return q->version;
}

void qmp_flush_events(struct qmp *q)
{
	json_array_clear(q->events);
}

/* One command, "execute" or "exec-oob" (key). */
static int command(struct qmp *q, const char *key, const char *cmd, json_t *args,
		   json_t **ret_return, int timeout_ms, struct vm_error *err)
{
	int64_t deadline = deadline_of(timeout_ms), id;
	_cleanup_json_ json_t *req = NULL;
	_cleanup_free_ char *text = NULL, *what_for = NULL;
	int r;

	what_for = strdup_printf("qmp %s", cmd);
	if (!what_for)
		return vm_error_set(err, ENOMEM, "qmp %s", cmd);
	if (q->broken)
		return vm_error_setx(err, ENOTCONN, "%s: QMP connection %s is no longer usable",
				     what_for, q->what);
	id = q->next_id++;
	req = json_pack("{s:s, s:I}", key, cmd, "id", (json_int_t)id);
	if (!req || (args && json_object_set(req, "arguments", args) < 0))
		return vm_error_set(err, ENOMEM, "%s", what_for);
	text = json_dumps(req, JSON_COMPACT);
	if (!text)
		return vm_error_set(err, ENOMEM, "%s", what_for);
	vm_debug("qmp %s: -> %s", q->what, text);
	/* One write per command, newline included. */
	size_t tlen = strlen(text);
	char *line = realloc(text, tlen + 2);
	if (!line)
		return vm_error_set(err, ENOMEM, "%s", what_for);
	text = line;
	memcpy(text + tlen, "\n", 2);
	r = send_all(q, text, tlen + 1, deadline);
	if (r == -ETIMEDOUT)
		return vm_error_setx(err, ETIMEDOUT,
				     "%s: QEMU did not take the command on %s within %d ms",
				     what_for, q->what, timeout_ms);
	if (r < 0) {
		q->broken = true;
		return vm_error_set(err, r, "%s: write to %s", what_for, q->what);
	}

	for (;;) {
		struct qmp_msg m;

		r = read_msg(q, deadline, timeout_ms, what_for, &m, err);
		if (r < 0)
			return r;
		if (m.kind == QMP_MSG_EVENT) {
			queue_event(q, &m);
			qmp_msg_clear(&m);
			continue;
		}
		if ((m.kind != QMP_MSG_RETURN && m.kind != QMP_MSG_ERROR) ||
		    !json_is_integer(m.id) || json_integer_value(m.id) != id) {
			/* A late reply to a command that timed out earlier. */
			vm_debug("qmp %s: ignoring a message that is not the reply to id %lld",
				 q->what, (long long)id);
			qmp_msg_clear(&m);
			continue;
		}
		if (m.kind == QMP_MSG_ERROR) {
			r = vm_error_setx(err, qmp_class_errno(m.err_class), "%s: %s: %s", what_for,
					  m.err_class, m.err_desc);
			qmp_msg_clear(&m);
			return r;
		}
		if (ret_return)
			*ret_return = json_incref(m.value);
		qmp_msg_clear(&m);
		return 0;
	}
}

int qmp_command(struct qmp *q, const char *cmd, json_t *args, json_t **ret_return, int timeout_ms,
		struct vm_error *err)
{
	return command(q, "execute", cmd, args, ret_return, timeout_ms, err);
}

int qmp_command_oob(struct qmp *q, const char *cmd, json_t *args, json_t **ret_return,
		    int timeout_ms, struct vm_error *err)
{
	return command(q, "exec-oob", cmd, args, ret_return, timeout_ms, err);
}

static json_t *take_queued(struct qmp *q, const char *name)
{
	size_t i;
	json_t *ev;

	json_array_foreach(q->events, i, ev) {
		const char *n = json_string_value(json_object_get(ev, "event"));
		if (!name || (n && streq(n, name))) {
			json_incref(ev);
			json_array_remove(q->events, i);
			return ev;
		}
	}
	return NULL;
}

int qmp_wait_event(struct qmp *q, const char *name, json_t **ret_event, int timeout_ms,
		   struct vm_error *err)
{
	int64_t deadline = deadline_of(timeout_ms);
	_cleanup_free_ char *what_for = strdup_printf("qmp event %s", name ? name : "(any)");
	json_t *ev;

	if (!what_for)
		return vm_error_set(err, ENOMEM, "qmp event");
	for (;;) {
		struct qmp_msg m;
		int r;

		ev = take_queued(q, name);
		if (ev) {
			if (ret_event)
				*ret_event = ev;
			else
				json_decref(ev);
			return 0;
		}
		if (q->broken)
			return vm_error_setx(err, ENOTCONN,
					     "%s: QMP connection %s is no longer usable", what_for,
					     q->what);
		r = read_msg(q, deadline, timeout_ms, what_for, &m, err);
		if (r == -ETIMEDOUT)
			return vm_error_setx(err, ETIMEDOUT,
					     "qmp: no %s event from QEMU on %s within %d ms",
					     name ? name : "(any)", q->what, timeout_ms);
		if (r < 0)
			return r;
		if (m.kind == QMP_MSG_EVENT)
			queue_event(q, &m);
		else
			vm_debug("qmp %s: ignoring a reply while waiting for an event", q->what);
		qmp_msg_clear(&m);
	}
}

static int open_fd(int fd, const char *what, int timeout_ms, bool oob, struct qmp **ret,
		   struct vm_error *err)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct qmp_msg m;
	struct qmp *q;
	int r;

	q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return vm_error_set(err, ENOMEM, "qmp %s", what);
	}
	q->fd = fd;
	q->next_id = 1;
	q->what = strdup(what);
	q->events = json_array();
	if (!q->what || !q->events) {
		qmp_close(q);
		return vm_error_set(err, ENOMEM, "qmp %s", what);
	}

	r = read_msg(q, deadline, timeout_ms, "qmp greeting", &m, err);
	if (r < 0)
		goto fail;
	if (m.kind != QMP_MSG_GREETING) {
		qmp_msg_clear(&m);
		r = vm_error_setx(err, EPROTO,
				  "qmp greeting: %s: first message is not a QMP greeting", q->what);
		goto fail;
	}
	q->version = json_incref(json_object_get(m.value, "version"));
	qmp_msg_clear(&m);

	/* qmp_capabilities {"enable": ["oob"]} for an out-of-band monitor */
	r = qmp_command(q, "qmp_capabilities", oob ? json_pack("{s:[s]}", "enable", "oob") : NULL,
			NULL, remaining(deadline), err);
	if (r < 0)
		goto fail;
	*ret = q;
	return 0;
fail:
	qmp_close(q);
	return r;
}

int qmp_open_fd(int fd, const char *what, int timeout_ms, struct qmp **ret, struct vm_error *err)
{
	return open_fd(fd, what, timeout_ms, false, ret, err);
}

static int connect_path(const char *path, int timeout_ms, bool oob, struct qmp **ret,
			struct vm_error *err)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int dirfd = -1;

	if (strlen(path) < sizeof(sa.sun_path)) {
		strcpy(sa.sun_path, path);
	} else {
		/* Too long for sun_path: go through the directory's fd. */
		_cleanup_free_ char *dir = strdup(path);
		char *slash = dir ? strrchr(dir, '/') : NULL;

		if (!slash)
			return vm_error_setx(err, ENAMETOOLONG, "qmp socket %s: path too long",
					     path);
		*slash = '\0';
		dirfd = open(*dir ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0)
			return vm_error_set(err, errno, "qmp socket %s", path);
		if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dirfd,
				     slash + 1) >= sizeof(sa.sun_path))
			return vm_error_setx(err, ENAMETOOLONG, "qmp socket %s: name too long",
					     path);
	}

	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return vm_error_set(err, errno, "qmp socket %s", path);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return open_fd(fd, path, remaining(deadline), oob, ret, err);
		int e = errno;
		close(fd);
		if (e != ENOENT && e != ECONNREFUSED && e != EAGAIN && e != EINTR)
			return vm_error_set(err, e, "connect to QMP socket %s", path);
		if (remaining(deadline) == 0)
			return vm_error_set(err, e == EINTR ? ETIMEDOUT : e,
					    "connect to QMP socket %s (gave up after %d ms)", path,
					    timeout_ms);
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

int qmp_connect(const char *path, int timeout_ms, struct qmp **ret, struct vm_error *err)
{
	return connect_path(path, timeout_ms, false, ret, err);
}

int qmp_connect_oob(const char *path, int timeout_ms, struct qmp **ret, struct vm_error *err)
{
	return connect_path(path, timeout_ms, true, ret, err);
}

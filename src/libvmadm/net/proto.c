/* SPDX-License-Identifier: MIT */
/* JSON control messages over frames. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "util/macros.h"

int net_send_msg(struct net_conn *c, json_t *msg, struct vm_error *err)
{
	_cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);

	if (!text)
		return vm_error_set(err, ENOMEM, "encode a message");
	return net_send_frame(c, NET_FRAME_JSON, text, strlen(text), err);
}

int net_send_progress(struct net_conn *c, json_t *extra, struct vm_error *err)
{
	_cleanup_json_ json_t *m = extra ? json_deep_copy(extra) : json_object();

	json_object_set_new(m, "type", json_string("progress"));
	return net_send_msg(c, m, err);
}

void net_send_error(struct net_conn *c, const char *reason)
{
	_cleanup_json_ json_t *m = json_pack("{s:s, s:s}", "type", "error", "reason", reason);
	struct vm_error e = { 0 };

	net_send_msg(c, m, &e);
}

int net_recv_msg(struct net_conn *c, json_t **ret, struct vm_error *err)
{
	for (;;) {
		_cleanup_free_ void *buf = NULL;
		_cleanup_json_ json_t *m = NULL;
		enum net_frame_type type;
		const char *t;
		size_t len;
		int r;

		r = net_recv_frame(c, &type, &buf, &len, err);
		if (r < 0)
			return r;
		if (type != NET_FRAME_JSON)
			return vm_error_setx(err, EPROTO,
					     "protocol error from %s: data where a message was due",
					     net_conn_peer(c));
		m = buf ? json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
		t = json_string_value(json_object_get(m, "type"));
		if (!json_is_object(m) || !t)
			return vm_error_setx(err, EPROTO,
					     "protocol error from %s: a message that is not a JSON "
					     "object with a type",
					     net_conn_peer(c));
		if (streq(t, "progress"))
			continue;
		if (streq(t, "error")) {
			const char *why = json_string_value(json_object_get(m, "reason"));
			return vm_error_setx(err, EPROTO, "%s", why ? why : "the peer failed");
		}
		*ret = TAKE_PTR(m);
		return 0;
	}
}

int net_expect_msg(struct net_conn *c, const char *want, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *m = NULL;
	const char *t;
	int r;

	r = net_recv_msg(c, &m, err);
	if (r < 0)
		return r;
	t = json_string_value(json_object_get(m, "type"));
	if (!streq(t, want)) {
		const char *why = json_string_value(json_object_get(m, "reason"));
		if (why && (streq(t, "refuse") || streq(t, "failed")))
			return vm_error_setx(err, streq(t, "refuse") ? EPERM : EIO, "%s", why);
		return vm_error_setx(err, EPROTO, "protocol error from %s: got '%s' instead of '%s'",
				     net_conn_peer(c), t, want);
	}
	if (ret)
		*ret = TAKE_PTR(m);
	return 0;
}

int net_request(struct net_conn *c, json_t *msg, const char *want, json_t **ret,
		struct vm_error *err)
{
	struct vm_error e2 = { 0 };
	int r;

	r = net_send_msg(c, msg, err);
	if (r == -EPIPE || r == -ECONNRESET) {
		/* A peer that refuses at once (busy, wrong version) writes its
		 * reason and closes; our message, unread there, makes its
		 * kernel reset the connection, and our send fails first. The
		 * reason is still in our socket's queue: say it instead. */
		if (net_conn_set_deadline(c, net_now() + 1, 1, "the peer's reason", &e2) >= 0 &&
		    net_expect_msg(c, want, NULL, &e2) < 0 && e2.code != ECONNRESET &&
		    e2.code != ETIMEDOUT && e2.code != EPIPE)
			return vm_error_setx(err, e2.code, "%s", e2.msg);
		return r;
	}
	if (r < 0)
		return r;
	return net_expect_msg(c, want, ret, err);
}

int net_parse_hostport(const char *s, int def_port, char **ret_host, int *ret_port,
		       struct vm_error *err)
{
	_cleanup_free_ char *host = NULL;
	const char *colon;
	char *end;
	long port = def_port;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return vm_error_setx(err, EINVAL, "bad address '%s'", s);
		host = strndup(s + 1, close - s - 1);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			colon = NULL; /* a bare IPv6 address */
		host = colon ? strndup(s, colon - s) : strdup(s);
	}
	if (colon) {
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno || *end || port < 1 || port > 65535)
			return vm_error_setx(err, EINVAL, "bad port in '%s'", s);
	}
	if (!host || !*host)
		return vm_error_setx(err, EINVAL, "bad address '%s': no host", s);
	*ret_host = TAKE_PTR(host);
	*ret_port = (int)port;
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Live migration of kvm VMs with local disks, the QEMU side
 * (brand/kvm-live.h says how): the QMP helpers, the node key, the target,
 * and kvm_live_ops.
 */
#include "kvm-live.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "brand/kvm.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

/* --- QMP ------------------------------------------------------------------ */

int kvm_live_qcmd(struct qmp *q, const char *cmd, json_t *args, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *a = args;

	return qmp_command(q, cmd, a, ret, KVM_LIVE_QMP_MS, err);
}

void kvm_live_qcmd_quiet(struct qmp *q, const char *cmd, json_t *args)
{
	struct vm_error ignore = {0};

	if (kvm_live_qcmd(q, cmd, args, NULL, &ignore) < 0)
		vm_debug("live: %s (ignored)", ignore.msg);
}

/* --- Disks --------------------------------------------------------------- */

int kvm_live_record_disks(json_t *vm, struct live_disk *ret, size_t *ret_n, struct vm_error *err)
{
	const char *brand = json_string_value(json_object_get(vm, "brand"));
	json_t *d;
	size_t i, n = 0;

	if (!brand || !streq(brand, "kvm"))
		return vm_error_setx(err, EOPNOTSUPP,
				     "live migration is for kvm VMs only (this VM is brand %s); "
				     "containers migrate with -I",
				     brand ? brand : "(none)");
	json_array_foreach (json_object_get(vm, "disks"), i, d) {
		const char *media = json_string_value(json_object_get(d, "media"));

		if (media && streq(media, "cdrom"))
			continue;
		if (n == KVM_LIVE_MAX_DISKS)
			return vm_error_setx(err, E2BIG, "live migration: more than %d disks",
					     KVM_LIVE_MAX_DISKS);
		snprintf(ret[n].node, sizeof(ret[n].node), "disk%zu", i);
		ret[n].ds = json_string_value(json_object_get(d, "zfs_filesystem"));
		ret[n].path = json_string_value(json_object_get(d, "path"));
		ret[n].size = json_integer_value(json_object_get(d, "size")) * 1048576;
		n++;
	}
	*ret_n = n;
	return 0;
}

/* --- TLS with the node key ----------------------------------------------- */

int kvm_live_tls_setup(struct vm_node *node, struct qmp *q, const char *uuid, const char *endpoint,
		       struct vm_error *err)
{
	_cleanup_free_ char *keypath = vm_node_path(node, "vmadm.key");
	_cleanup_free_ char *dir = kvm_run_path(node, uuid, "tls");
	_cleanup_free_ char *psk = NULL, *key = NULL, *line = NULL;
	json_t *args;
	size_t len = 0;
	int r;

	if (!keypath || !dir)
		return vm_error_set(err, ENOMEM, "live migration key");
	r = fs_read_file(keypath, 4096, &key, &len, err);
	if (r < 0)
		return vm_error_prefix(err,
				       "live migration needs the node key (vmadm key generate)");
	while (len > 0 && isspace((unsigned char)key[len - 1]))
		key[--len] = '\0';
	if (len != 64 || strspn(key, "0123456789abcdefABCDEF") != 64)
		return vm_error_setx(err, EINVAL, "node key %s: not 64 hex characters", keypath);
	psk = strdup_printf("%s/keys.psk", dir);
	line = strdup_printf("%s:%s\n", KVM_LIVE_PSK_USER, key);
	if (!psk || !line)
		return vm_error_set(err, ENOMEM, "live migration key");
	r = fs_mkdir_p(dir, 0700, err);
	if (r >= 0)
		r = fs_write_atomic(psk, line, strlen(line), 0600, err);
	explicit_bzero(line, strlen(line));
	explicit_bzero(key, len);
	if (r < 0)
		return r;
	/* object-add {"qom-type": "tls-creds-psk", "id": ID, "dir": DIR,
	 *   "endpoint": E, "username": "vmadm"} */
	/* (the server finds the user in keys.psk; QEMU refuses username on it) */
	kvm_live_qcmd_quiet(q, "object-del", json_pack("{s:s}", "id", KVM_LIVE_TLS_ID));
	args = json_pack("{s:s, s:s, s:s, s:s}", "qom-type", "tls-creds-psk", "id", KVM_LIVE_TLS_ID,
			 "dir", dir, "endpoint", endpoint);
	if (args && streq(endpoint, "client"))
		json_object_set_new(args, "username", json_string(KVM_LIVE_PSK_USER));
	return kvm_live_qcmd(q, "object-add", args, NULL, err);
}

void kvm_live_tls_teardown(struct vm_node *node, struct qmp *q, const char *uuid)
{
	_cleanup_free_ char *dir = kvm_run_path(node, uuid, "tls");
	struct vm_error ignore = {0};

	if (q) {
		kvm_live_qcmd_quiet(q, "migrate-set-parameters",
				    json_pack("{s:s}", "tls-creds", ""));
		kvm_live_qcmd_quiet(q, "object-del", json_pack("{s:s}", "id", KVM_LIVE_TLS_ID));
	}
	if (dir)
		fs_rm_rf(dir, &ignore);
}

char *kvm_live_tcp_uri(const char *host, int port)
{
	return strchr(host, ':') ? strdup_printf("tcp:[%s]:%d", host, port)
				 : strdup_printf("tcp:%s:%d", host, port);
}

/* --- QMP answers and events ------------------------------------------------ */

const char *kvm_live_migrate_status(json_t *m)
{
	const char *s = json_string_value(json_object_get(m, "status"));
	return s ? s : "none";
}

int64_t kvm_live_event_us(json_t *ev)
{
	json_t *ts = json_object_get(ev, "timestamp");

	return (int64_t)json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
	       json_integer_value(json_object_get(ts, "microseconds"));
}

bool kvm_live_node_exists(struct qmp *q, const char *name)
{
	_cleanup_json_ json_t *nodes = NULL;
	struct vm_error ignore = {0};
	json_t *n;
	size_t i;

	if (kvm_live_qcmd(q, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), &nodes,
			  &ignore) < 0)
		return false;
	json_array_foreach (nodes, i, n) {
		const char *nn = json_string_value(json_object_get(n, "node-name"));
		if (nn && streq(nn, name))
			return true;
	}
	return false;
}

int kvm_live_our_jobs(struct qmp *q, const char *prefix, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *jobs = NULL, *out = json_array();
	json_t *j;
	size_t i;

	if (!out)
		return vm_error_set(err, ENOMEM, "query-block-jobs");
	if (kvm_live_qcmd(q, "query-block-jobs", NULL, &jobs, err) < 0)
		return -err->code;
	json_array_foreach (jobs, i, j) {
		const char *dev = json_string_value(json_object_get(j, "device"));
		if (dev && strncmp(dev, prefix, strlen(prefix)) == 0)
			json_array_append(out, j);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

char *kvm_live_job_error(struct qmp *q, const char *prefix)
{
	struct vm_error ignore = {0};
	json_t *ev;
	char *why = NULL;

	while (qmp_wait_event(q, "BLOCK_JOB_COMPLETED", &ev, 0, &ignore) >= 0) {
		_cleanup_json_ json_t *e = ev;
		json_t *data = json_object_get(e, "data");
		const char *dev = json_string_value(json_object_get(data, "device"));
		const char *error = json_string_value(json_object_get(data, "error"));

		if (!why && dev && error && strncmp(dev, prefix, strlen(prefix)) == 0)
			why = strdup_printf("%s: %s", dev, error);
	}
	return why;
}

/* --- Target -------------------------------------------------------------- */

/* A free TCP port on host (in this network namespace), 0 if none. */
static int free_port(const char *host)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	_cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return 0;
	return ntohs(sa.sin_port);
}

/* target_abort: the brand's forced stop of our QEMU. */
static int kvm_live_target_abort(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *vm = json_pack("{s:s}", "uuid", uuid);

	if (!vm)
		return vm_error_set(err, ENOMEM, "live target %s: abort", uuid);
	/* The brand's forced stop: SIGKILL to our QEMU (checked by pidfile and
	 * command line), then the run directory goes. */
	if (kvm_brand_ops.stop(node, vm, 0, true, err) < 0)
		return vm_error_prefix(err, "live target %s: abort", uuid);
	return 0;
}

/* target_prepare: QEMU for the record with -incoming defer -S, TLS with
 * the node key, migrate-incoming on tcp:HOST:MPORT, an NBD server on
 * HOST:NPORT exporting every disk node writable. On failure QEMU is killed
 * and its run directory removed. */
static int kvm_live_target_prepare(struct vm_node *node, json_t *vm, const struct vm_live_params *p,
				   json_t **ret_info, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	struct live_disk disks[KVM_LIVE_MAX_DISKS];
	_cleanup_qmp_ struct qmp *q = NULL;
	_cleanup_json_ json_t *info = NULL, *jdisks = NULL;
	_cleanup_free_ char *uri = NULL, *nbd_port_s = NULL;
	int mport = p->migrate_port, nport = p->nbd_port;
	size_t ndisks;
	int r;

	if (!uuid)
		return vm_error_setx(err, EINVAL, "live target: VM record has no uuid");
	if (!p->host || !*p->host)
		return vm_error_setx(err, EINVAL, "live target %s: no listen address", uuid);
	r = kvm_live_record_disks(vm, disks, &ndisks, err);
	if (r < 0)
		return r;
	if (mport == 0)
		mport = free_port(p->host);
	if (nport == 0) {
		do
			nport = free_port(p->host);
		while (nport != 0 && nport == mport);
	}
	if (mport <= 0 || nport <= 0)
		return vm_error_setx(err, EADDRNOTAVAIL,
				     "live target %s: no free TCP port on %s (is it an address of "
				     "this host?)",
				     uuid, p->host);

	r = kvm_start_vm(node, vm, true, err);
	if (r < 0)
		return vm_error_prefix(err, "live target");
	r = kvm_qmp_open(node, uuid, &q, err);
	if (r < 0)
		goto fail;
	r = kvm_live_tls_setup(node, q, uuid, "server", err);
	if (r < 0)
		goto fail;
	/* migrate-set-capabilities events, late-block-activate: the target's
	 * disks stay inactive until cont, so the NBD exports may write them. */
	r = kvm_live_qcmd(q, "migrate-set-capabilities",
			  json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability",
				    "events", "state", 1, "capability", "late-block-activate",
				    "state", 1),
			  NULL, err);
	if (r >= 0)
		r = kvm_live_qcmd(q, "migrate-set-parameters",
				  json_pack("{s:s}", "tls-creds", KVM_LIVE_TLS_ID), NULL, err);
	if (r < 0)
		goto fail;
	uri = kvm_live_tcp_uri(p->host, mport);
	nbd_port_s = strdup_printf("%d", nport);
	if (!uri || !nbd_port_s) {
		r = vm_error_set(err, ENOMEM, "live target %s", uuid);
		goto fail;
	}
	r = kvm_live_qcmd(q, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err);
	if (r < 0)
		goto fail;
	/* nbd-server-start {"addr": {"type": "inet", "data": {"host": H,
	 *   "port": "P"}}, "tls-creds": ID} */
	r = kvm_live_qcmd(q, "nbd-server-start",
			  json_pack("{s:{s:s, s:{s:s, s:s}}, s:s}", "addr", "type", "inet", "data",
				    "host", p->host, "port", nbd_port_s, "tls-creds",
				    KVM_LIVE_TLS_ID),
			  NULL, err);
	if (r < 0)
		goto fail;
	jdisks = json_array();
	if (!jdisks) {
		r = vm_error_set(err, ENOMEM, "live target %s", uuid);
		goto fail;
	}
	for (size_t i = 0; i < ndisks; i++) {
		_cleanup_free_ char *id = strdup_printf(KVM_LIVE_JOB_PREFIX "%s", disks[i].node);

		/* block-export-add {"type": "nbd", "id": "vmadm-live-diskN",
		 *   "node-name": "diskN", "name": "diskN", "writable": true} */
		r = kvm_live_qcmd(q, "block-export-add",
				  json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id",
					    id ? id : "", "node-name", disks[i].node, "name",
					    disks[i].node, "writable", 1),
				  NULL, err);
		if (r < 0)
			goto fail;
		json_array_append_new(jdisks, json_pack("{s:s, s:s}", "node", disks[i].node,
							"export", disks[i].node));
	}
	info = json_pack("{s:s, s:i, s:i, s:O}", "host", p->host, "migrate_port", mport, "nbd_port",
			 nport, "disks", jdisks);
	if (!info) {
		r = vm_error_set(err, ENOMEM, "live target %s", uuid);
		goto fail;
	}
	vm_debug("live target %s: migrate on %s, nbd on port %d", uuid, uri, nport);
	*ret_info = TAKE_PTR(info);
	return 0;

fail:
	vm_error_prefix(err, "live target %s", uuid);
	{
		struct vm_error ignore = {0};
		qmp_close(TAKE_PTR(q));
		kvm_live_target_abort(node, uuid, &ignore);
	}
	return r;
}
/* target_finish: query-migrate until "completed", stop the NBD server,
 * cont; the resume time from QEMU's RESUME event. */
static int kvm_live_target_finish(struct vm_node *node, const char *uuid, int timeout_ms,
				  int64_t *ret_resumed_us, struct vm_error *err)
{
	_cleanup_qmp_ struct qmp *q = NULL;
	int64_t deadline = kvm_live_now_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
	const char *st;
	int r;

	r = kvm_qmp_open(node, uuid, &q, err);
	if (r < 0)
		return vm_error_prefix(err, "live target %s: finish", uuid);
	for (;;) {
		_cleanup_json_ json_t *m = NULL;

		r = kvm_live_qcmd(q, "query-migrate", NULL, &m, err);
		if (r < 0)
			return vm_error_prefix(err, "live target %s: finish", uuid);
		st = kvm_live_migrate_status(m);
		if (streq(st, "completed"))
			break;
		if (streq(st, "failed") || streq(st, "cancelled"))
			return vm_error_setx(err, EIO, "live target %s: incoming migration %s%s%s",
					     uuid, st, json_object_get(m, "error-desc") ? ": " : "",
					     json_string_value(json_object_get(m, "error-desc"))
						 ?: "");
		if (kvm_live_now_ms() > deadline)
			return vm_error_setx(err, ETIMEDOUT,
					     "live target %s: incoming migration still '%s' after "
					     "%d ms",
					     uuid, st, timeout_ms);
		usleep(KVM_LIVE_TICK_MS * 1000);
	}
	r = kvm_live_qcmd(q, "nbd-server-stop", NULL, NULL, err);
	if (r >= 0) {
		qmp_flush_events(q);
		r = kvm_live_qcmd(q, "cont", NULL, NULL, err);
	}
	if (r < 0)
		return vm_error_prefix(err, "live target %s: finish", uuid);
	if (ret_resumed_us) {
		json_t *ev = NULL;
		struct vm_error ignore = {0};

		*ret_resumed_us = 0;
		if (qmp_wait_event(q, "RESUME", &ev, 2000, &ignore) >= 0) {
			*ret_resumed_us = kvm_live_event_us(ev);
			json_decref(ev);
		}
	}
	{
		_cleanup_json_ json_t *s = NULL;
		r = kvm_live_qcmd(q, "query-status", NULL, &s, err);
		if (r < 0)
			return vm_error_prefix(err, "live target %s: finish", uuid);
		st = json_string_value(json_object_get(s, "status"));
		if (!st || !streq(st, "running"))
			return vm_error_setx(err, EIO,
					     "live target %s: guest status '%s' after cont, "
					     "expected running",
					     uuid, st ? st : "?");
	}
	kvm_live_tls_teardown(node, q, uuid);
	return 0;
}

const struct vm_brand_live_ops kvm_live_ops = {
    .source_begin = kvm_live_source_begin,
    .source_migrate = kvm_live_source_migrate,
    .source_cancel = kvm_live_source_cancel,
    .target_prepare = kvm_live_target_prepare,
    .target_finish = kvm_live_target_finish,
    .target_abort = kvm_live_target_abort,
};

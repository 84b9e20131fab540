/* SPDX-License-Identifier: MIT */
/*
 * Live migration of kvm VMs with local disks: the QEMU side. See live.h for
 * the sequence and for why the disk delta goes by bitmap backups.
 */
#include "live.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brand/kvm.h"
#include "brand/state.h"
#include "qmp/qmp.h"
#include "storage/pool.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/spawn.h"
#include "vm/store.h"

#define QMP_MS	      10000
#define TICK_MS	      100
#define RAM_TICK_MS   10
#define JOB_PREFIX    "vmadm-live-"
#define MIRROR_PREFIX "vmadm-live-mirror-"
#define COMMIT_PREFIX "vmadm-live-commit-"
#define NBD_NODE_FMT  "vmadm-live-nbd-%s"
#define OVL_NODE_FMT  "vmadm-live-ovl-%s"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* qmp_command with args taken (a json_pack result; NULL when it failed). */
static int qcmd(struct qmp *q, const char *cmd, json_t *args, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *a = args;

	return qmp_command(q, cmd, a, ret, QMP_MS, err);
}

/* Best effort, for cleanup paths: the error is logged, never returned. */
static void qcmd_quiet(struct qmp *q, const char *cmd, json_t *args)
{
	struct vm_error ignore = {0};

	if (qcmd(q, cmd, args, NULL, &ignore) < 0)
		vm_debug("live: %s (ignored)", ignore.msg);
}

/* --- Disks --------------------------------------------------------------- */

struct live_disk {
	char node[32];	  /* disk0 */
	const char *ds;	  /* zones/UUID-disk0, borrowed from the record */
	const char *path; /* its image file, borrowed from the record */
	int64_t size;	  /* bytes */
};

/* The disks of a kvm record that move: not cdroms. */
static int record_disks(json_t *vm, struct live_disk *ret, size_t *ret_n, struct vm_error *err)
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
		if (n == VM_LIVE_MAX_DISKS)
			return vm_error_setx(err, E2BIG, "live migration: more than %d disks",
					     VM_LIVE_MAX_DISKS);
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

/* Write RUN/tls/keys.psk ("vmadm:HEXKEY") from ROOT/vmadm.key and add the
 * tls-creds-psk object VM_LIVE_TLS_ID for endpoint ("client" | "server"). */
static int tls_setup(struct vm_node *node, struct qmp *q, const char *uuid, const char *endpoint,
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
	line = strdup_printf("%s:%s\n", VM_LIVE_PSK_USER, key);
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
	qcmd_quiet(q, "object-del", json_pack("{s:s}", "id", VM_LIVE_TLS_ID));
	args = json_pack("{s:s, s:s, s:s, s:s}", "qom-type", "tls-creds-psk", "id", VM_LIVE_TLS_ID,
			 "dir", dir, "endpoint", endpoint);
	if (args && streq(endpoint, "client"))
		json_object_set_new(args, "username", json_string(VM_LIVE_PSK_USER));
	return qcmd(q, "object-add", args, NULL, err);
}

static void tls_teardown(struct vm_node *node, struct qmp *q, const char *uuid)
{
	_cleanup_free_ char *dir = kvm_run_path(node, uuid, "tls");
	struct vm_error ignore = {0};

	if (q) {
		qcmd_quiet(q, "migrate-set-parameters", json_pack("{s:s}", "tls-creds", ""));
		qcmd_quiet(q, "object-del", json_pack("{s:s}", "id", VM_LIVE_TLS_ID));
	}
	if (dir)
		fs_rm_rf(dir, &ignore);
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

static char *tcp_uri(const char *host, int port)
{
	return strchr(host, ':') ? strdup_printf("tcp:[%s]:%d", host, port)
				 : strdup_printf("tcp:%s:%d", host, port);
}

int vm_live_target_prepare(struct vm_node *node, json_t *vm, const struct vm_live_params *p,
			   json_t **ret_info, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	struct live_disk disks[VM_LIVE_MAX_DISKS];
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
	r = record_disks(vm, disks, &ndisks, err);
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
	r = tls_setup(node, q, uuid, "server", err);
	if (r < 0)
		goto fail;
	/* migrate-set-capabilities events, late-block-activate: the target's
	 * disks stay inactive until cont, so the NBD exports may write them. */
	r = qcmd(q, "migrate-set-capabilities",
		 json_pack("{s:[{s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability", "events",
			   "state", 1, "capability", "late-block-activate", "state", 1),
		 NULL, err);
	if (r >= 0)
		r = qcmd(q, "migrate-set-parameters",
			 json_pack("{s:s}", "tls-creds", VM_LIVE_TLS_ID), NULL, err);
	if (r < 0)
		goto fail;
	uri = tcp_uri(p->host, mport);
	nbd_port_s = strdup_printf("%d", nport);
	if (!uri || !nbd_port_s) {
		r = vm_error_set(err, ENOMEM, "live target %s", uuid);
		goto fail;
	}
	r = qcmd(q, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err);
	if (r < 0)
		goto fail;
	/* nbd-server-start {"addr": {"type": "inet", "data": {"host": H,
	 *   "port": "P"}}, "tls-creds": ID} */
	r = qcmd(q, "nbd-server-start",
		 json_pack("{s:{s:s, s:{s:s, s:s}}, s:s}", "addr", "type", "inet", "data", "host",
			   p->host, "port", nbd_port_s, "tls-creds", VM_LIVE_TLS_ID),
		 NULL, err);
	if (r < 0)
		goto fail;
	jdisks = json_array();
	if (!jdisks) {
		r = vm_error_set(err, ENOMEM, "live target %s", uuid);
		goto fail;
	}
	for (size_t i = 0; i < ndisks; i++) {
		_cleanup_free_ char *id = strdup_printf(JOB_PREFIX "%s", disks[i].node);

		/* block-export-add {"type": "nbd", "id": "vmadm-live-diskN",
		 *   "node-name": "diskN", "name": "diskN", "writable": true} */
		r = qcmd(q, "block-export-add",
			 json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "nbd", "id", id ? id : "",
				   "node-name", disks[i].node, "name", disks[i].node, "writable",
				   1),
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
		vm_live_target_abort(node, uuid, &ignore);
	}
	return r;
}

static const char *migrate_status(json_t *m)
{
	const char *s = json_string_value(json_object_get(m, "status"));
	return s ? s : "none";
}

/* The realtime of an event, in microseconds. */
static int64_t event_us(json_t *ev)
{
	json_t *ts = json_object_get(ev, "timestamp");

	return (int64_t)json_integer_value(json_object_get(ts, "seconds")) * 1000000 +
	       json_integer_value(json_object_get(ts, "microseconds"));
}

int vm_live_target_finish(struct vm_node *node, const char *uuid, int timeout_ms,
			  int64_t *ret_resumed_us, struct vm_error *err)
{
	_cleanup_qmp_ struct qmp *q = NULL;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
	const char *st;
	int r;

	r = kvm_qmp_open(node, uuid, &q, err);
	if (r < 0)
		return vm_error_prefix(err, "live target %s: finish", uuid);
	for (;;) {
		_cleanup_json_ json_t *m = NULL;

		r = qcmd(q, "query-migrate", NULL, &m, err);
		if (r < 0)
			return vm_error_prefix(err, "live target %s: finish", uuid);
		st = migrate_status(m);
		if (streq(st, "completed"))
			break;
		if (streq(st, "failed") || streq(st, "cancelled"))
			return vm_error_setx(err, EIO, "live target %s: incoming migration %s%s%s",
					     uuid, st, json_object_get(m, "error-desc") ? ": " : "",
					     json_string_value(json_object_get(m, "error-desc"))
						 ?: "");
		if (now_ms() > deadline)
			return vm_error_setx(err, ETIMEDOUT,
					     "live target %s: incoming migration still '%s' after "
					     "%d ms",
					     uuid, st, timeout_ms);
		usleep(TICK_MS * 1000);
	}
	r = qcmd(q, "nbd-server-stop", NULL, NULL, err);
	if (r >= 0) {
		qmp_flush_events(q);
		r = qcmd(q, "cont", NULL, NULL, err);
	}
	if (r < 0)
		return vm_error_prefix(err, "live target %s: finish", uuid);
	if (ret_resumed_us) {
		json_t *ev = NULL;
		struct vm_error ignore = {0};

		*ret_resumed_us = 0;
		if (qmp_wait_event(q, "RESUME", &ev, 2000, &ignore) >= 0) {
			*ret_resumed_us = event_us(ev);
			json_decref(ev);
		}
	}
	{
		_cleanup_json_ json_t *s = NULL;
		r = qcmd(q, "query-status", NULL, &s, err);
		if (r < 0)
			return vm_error_prefix(err, "live target %s: finish", uuid);
		st = json_string_value(json_object_get(s, "status"));
		if (!st || !streq(st, "running"))
			return vm_error_setx(err, EIO,
					     "live target %s: guest status '%s' after cont, "
					     "expected running",
					     uuid, st ? st : "?");
	}
	tls_teardown(node, q, uuid);
	return 0;
}

int vm_live_target_abort(struct vm_node *node, const char *uuid, struct vm_error *err)
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

/* --- Source: overlays ------------------------------------------------------ */

/* The overlay of a disk lives in the pool (it survives a stop, unlike the
 * run directory), under the reserved name .live: ROOT/zones/.live/UUID-diskN.qcow2 */
static char *overlay_path(struct vm_node *node, const char *uuid, const char *disk)
{
	return vm_node_path(node, "zones/.live/%s-%s.qcow2", uuid, disk);
}

/* Remove ROOT/zones/.live when no overlay is left in it. */
static void overlay_dir_tidy(struct vm_node *node)
{
	_cleanup_free_ char *dir = vm_node_path(node, "zones/.live");

	if (dir)
		(void)rmdir(dir); /* ENOTEMPTY: another VM's migration */
}

static void overlay_node(char *buf, size_t len, const char *disk)
{
	snprintf(buf, len, OVL_NODE_FMT, disk);
}

static void nbd_node(char *buf, size_t len, const char *disk)
{
	snprintf(buf, len, NBD_NODE_FMT, disk);
}

static bool node_exists(struct qmp *q, const char *name)
{
	_cleanup_json_ json_t *nodes = NULL;
	struct vm_error ignore = {0};
	json_t *n;
	size_t i;

	if (qcmd(q, "query-named-block-nodes", json_pack("{s:b}", "flat", 1), &nodes, &ignore) < 0)
		return false;
	json_array_foreach (nodes, i, n) {
		const char *nn = json_string_value(json_object_get(n, "node-name"));
		if (nn && streq(nn, name))
			return true;
	}
	return false;
}

/* Our block jobs (prefix) as a JSON array (query-block-jobs filtered). */
static int our_jobs(struct qmp *q, const char *prefix, json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *jobs = NULL, *out = json_array();
	json_t *j;
	size_t i;

	if (!out)
		return vm_error_set(err, ENOMEM, "query-block-jobs");
	if (qcmd(q, "query-block-jobs", NULL, &jobs, err) < 0)
		return -err->code;
	json_array_foreach (jobs, i, j) {
		const char *dev = json_string_value(json_object_get(j, "device"));
		if (dev && strncmp(dev, prefix, strlen(prefix)) == 0)
			json_array_append(out, j);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* The error of a finished job of ours, from its queued BLOCK_JOB_COMPLETED
 * event (NULL when none or when it ended well); malloc'ed. */
static char *job_error(struct qmp *q, const char *prefix)
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

/* Put each disk back on its own image: an active block-commit of the
 * overlay into the disk node (the guest writes on meanwhile), job-complete
 * at READY, blockdev-del of the overlay node, the file removed. Disks
 * without an overlay node are skipped. */
static int overlays_commit(struct vm_node *node, struct qmp *q, const char *uuid,
			   const struct live_disk *disks, size_t n, struct vm_error *err)
{
	char ovl[64], job[64];
	int64_t deadline = now_ms() + 120000;
	bool committing[VM_LIVE_MAX_DISKS] = {false};
	int r;

	for (size_t i = 0; i < n; i++) {
		overlay_node(ovl, sizeof(ovl), disks[i].node);
		if (!node_exists(q, ovl))
			continue;
		snprintf(job, sizeof(job), COMMIT_PREFIX "%s", disks[i].node);
		/* block-commit {"job-id": J, "device": OVL} (top: the active
		 * layer, base: its backing, the disk node) */
		r = qcmd(q, "block-commit", json_pack("{s:s, s:s}", "job-id", job, "device", ovl),
			 NULL, err);
		if (r < 0)
			return vm_error_prefix(err, "put %s back on its image", disks[i].node);
		committing[i] = true;
	}
	for (;;) {
		_cleanup_json_ json_t *jobs = NULL;
		json_t *j;
		size_t k;

		r = our_jobs(q, COMMIT_PREFIX, &jobs, err);
		if (r < 0)
			return r;
		if (json_array_size(jobs) == 0)
			break;
		json_array_foreach (jobs, k, j) {
			if (json_is_true(json_object_get(j, "ready")))
				qcmd_quiet(q, "job-complete",
					   json_pack("{s:O}", "id", json_object_get(j, "device")));
		}
		if (now_ms() > deadline)
			return vm_error_setx(err, ETIMEDOUT,
					     "put the disks of %s back on their images: commit "
					     "still running after 120 s",
					     uuid);
		usleep(50 * 1000);
	}
	{
		_cleanup_free_ char *why = job_error(q, COMMIT_PREFIX);
		if (why)
			return vm_error_setx(
			    err, EIO, "put the disks of %s back on their images: %s", uuid, why);
	}
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);
		struct vm_error ignore = {0};

		if (!committing[i])
			continue;
		overlay_node(ovl, sizeof(ovl), disks[i].node);
		r = qcmd(q, "blockdev-del", json_pack("{s:s}", "node-name", ovl), NULL, err);
		if (r < 0)
			return vm_error_prefix(err, "put %s back on its image", disks[i].node);
		if (path)
			fs_rm_rf(path, &ignore);
	}
	overlay_dir_tidy(node);
	return 0;
}

/* With QEMU gone: fold each overlay file left into its disk image
 * (qemu-img commit -d OVERLAY: the backing named in its header) and remove
 * it. */
static int overlays_commit_offline(struct vm_node *node, const char *uuid,
				   const struct live_disk *disks, size_t n, struct vm_error *err)
{
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);
		struct vm_error ignore = {0};
		int r;

		if (!path)
			return vm_error_set(err, ENOMEM, "commit overlay");
		if (!fs_exists(path))
			continue;
		{
			/* qemu-img commit -q -d -f qcow2 OVERLAY */
			/* clang-format off */
			const char *argv[] = { "qemu-img", "commit", "-q", "-d", "-f", "qcow2",
					       path, NULL };
			/* clang-format on */
			struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
			r = vm_spawn_run(&sp, err);
			vm_spawn_clear(&sp);
		}
		if (r < 0)
			return vm_error_prefix(err, "fold the writes of the migration into %s's %s",
					       uuid, disks[i].node);
		fs_rm_rf(path, &ignore);
	}
	overlay_dir_tidy(node);
	return 0;
}

/* --- Source: begin -------------------------------------------------------- */

static int load_running(struct vm_node *node, const char *uuid, json_t **ret_vm,
			struct live_disk *disks, size_t *ndisks, struct qmp **ret_q,
			struct vm_error *err)
{
	_cleanup_json_ json_t *vm = NULL, *status = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	const char *st;
	int r;

	r = vm_store_load(node, uuid, &vm, err);
	if (r >= 0)
		r = record_disks(vm, disks, ndisks, err);
	if (r >= 0)
		r = kvm_qmp_open(node, uuid, &q, err);
	if (r >= 0)
		r = qcmd(q, "query-status", NULL, &status, err);
	if (r < 0)
		return r;
	st = json_string_value(json_object_get(status, "status"));
	if (!st || !streq(st, "running"))
		return vm_error_setx(err, EINVAL, "VM %s is '%s', live migration needs it running",
				     uuid, st ? st : "?");
	*ret_vm = TAKE_PTR(vm);
	*ret_q = TAKE_PTR(q);
	return 0;
}

int vm_live_source_begin(struct vm_node *node, const char *uuid, const char *snap,
			 struct vm_error *err)
{
	struct live_disk disks[VM_LIVE_MAX_DISKS];
	_cleanup_json_ json_t *vm = NULL, *actions = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	_cleanup_free_ char *dir = vm_node_path(node, "zones/.live");
	struct vm_pool *pool;
	size_t ndisks, nsnap = 0, nfile = 0, nnode = 0;
	bool paused = false;
	char ovl[64];
	int r;

	r = vm_snapshot_name_check(snap, err);
	if (r >= 0)
		r = load_running(node, uuid, &vm, disks, &ndisks, &q, err);
	if (r >= 0)
		r = vm_node_pool(node, &pool, err);
	if (r >= 0 && !dir)
		r = vm_error_set(err, ENOMEM, "overlay directory");
	if (r >= 0)
		r = fs_mkdir_p(dir, 0700, err);
	if (r < 0)
		return vm_error_prefix(err, "live migration of %s: begin", uuid);
	for (size_t i = 0; i < ndisks; i++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);

		overlay_node(ovl, sizeof(ovl), disks[i].node);
		if (!disks[i].ds || !disks[i].path)
			return vm_error_setx(err, EINVAL,
					     "live migration of %s: %s has no dataset or path",
					     uuid, disks[i].node);
		if (!path)
			return vm_error_set(err, ENOMEM, "live migration of %s", uuid);
		if (fs_exists(path) || node_exists(q, ovl))
			return vm_error_setx(err, EBUSY,
					     "live migration of %s: %s already runs on an overlay "
					     "(%s): another migration is under way, or cancel the "
					     "last one",
					     uuid, disks[i].node, path);
	}

	actions = json_array();
	for (size_t i = 0; actions && i < ndisks; i++) {
		overlay_node(ovl, sizeof(ovl), disks[i].node);
		json_array_append_new(actions,
				      json_pack("{s:s, s:{s:s, s:s}}", "type", "blockdev-snapshot",
						"data", "node", disks[i].node, "overlay", ovl));
	}
	if (!actions)
		return vm_error_set(err, ENOMEM, "live migration of %s: begin", uuid);

	/* stop drains the guest's I/O: the disk files (cache.direct) are then
	 * exactly what the guest wrote, and stay so until the overlays take
	 * the writes. */
	r = qcmd(q, "stop", NULL, NULL, err);
	if (r < 0)
		goto fail;
	paused = true;
	for (; nsnap < ndisks; nsnap++) {
		r = vm_pool_snapshot(pool, disks[nsnap].ds, snap, err);
		if (r < 0)
			goto fail;
	}
	for (; nfile < ndisks; nfile++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[nfile].node);
		struct stat st;
		_cleanup_free_ char *size = strdup_printf(
		    "%lld", stat(disks[nfile].path, &st) == 0 ? (long long)st.st_size
							      : (long long)disks[nfile].size);
		/* qemu-img create -q -f qcow2 -u -b DISK.raw -F raw OVERLAY SIZE
		 * (-u: QEMU holds the image; the size is given) */
		/* clang-format off */
		const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u",
				       "-b", disks[nfile].path, "-F", "raw", path, size, NULL };
		/* clang-format on */
		struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};

		if (!path || !size) {
			r = vm_error_set(err, ENOMEM, "overlay");
			goto fail;
		}
		r = vm_spawn_run(&sp, err);
		vm_spawn_clear(&sp);
		if (r < 0)
			goto fail;
	}
	for (; nnode < ndisks; nnode++) {
		_cleanup_free_ char *path = overlay_path(node, uuid, disks[nnode].node);

		overlay_node(ovl, sizeof(ovl), disks[nnode].node);
		/* blockdev-add {"driver": "qcow2", "node-name": OVL,
		 *   "file": {"driver": "file", "filename": PATH, "aio": "threads",
		 *            "cache": {"direct": true}},
		 *   "cache": {"direct": true}, "backing": null} */
		r = qcmd(q, "blockdev-add",
			 json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:{s:b}}, s:{s:b}, s:n}", "driver",
				   "qcow2", "node-name", ovl, "file", "driver", "file", "filename",
				   path ? path : "", "aio", "threads", "cache", "direct", 1,
				   "cache", "direct", 1, "backing"),
			 NULL, err);
		if (r < 0)
			goto fail;
	}
	r = qcmd(q, "transaction", json_pack("{s:O}", "actions", actions), NULL, err);
	if (r < 0)
		goto fail;
	r = qcmd(q, "cont", NULL, NULL, err);
	if (r < 0) {
		/* The overlays are in place: commit them back, then resume. */
		nnode = 0;
		goto fail_commit;
	}
	return 0;

fail_commit : {
	struct vm_error ignore = {0};
	overlays_commit(node, q, uuid, disks, ndisks, &ignore);
}
fail:
	vm_error_prefix(err, "live migration of %s: begin", uuid);
	{
		struct vm_error ignore = {0};
		for (size_t i = 0; i < nnode; i++) {
			overlay_node(ovl, sizeof(ovl), disks[i].node);
			qcmd_quiet(q, "blockdev-del", json_pack("{s:s}", "node-name", ovl));
		}
		for (size_t i = 0; i < nfile; i++) {
			_cleanup_free_ char *path = overlay_path(node, uuid, disks[i].node);
			overlay_node(ovl, sizeof(ovl), disks[i].node);
			if (path && !node_exists(q, ovl))
				fs_rm_rf(path, &ignore);
		}
		overlay_dir_tidy(node);
		for (size_t i = 0; i < nsnap; i++)
			vm_pool_destroy_snapshot(pool, disks[i].ds, snap, &ignore);
		if (paused)
			qcmd_quiet(q, "cont", NULL);
	}
	return r;
}

/* --- Source: migrate ------------------------------------------------------ */

int vm_live_target_info_from_json(json_t *j, struct vm_live_target_info *ret, struct vm_error *err)
{
	json_t *disks = json_object_get(j, "disks"), *d;
	size_t i;

	memset(ret, 0, sizeof(*ret));
	ret->host = json_string_value(json_object_get(j, "host"));
	ret->migrate_port = (int)json_integer_value(json_object_get(j, "migrate_port"));
	ret->nbd_port = (int)json_integer_value(json_object_get(j, "nbd_port"));
	if (!ret->host || ret->migrate_port <= 0 || ret->migrate_port > 65535 ||
	    ret->nbd_port <= 0 || ret->nbd_port > 65535 || !json_is_array(disks))
		return vm_error_setx(err, EBADMSG,
				     "live target info: needs host, migrate_port, nbd_port and "
				     "disks");
	if (json_array_size(disks) > VM_LIVE_MAX_DISKS)
		return vm_error_setx(err, E2BIG, "live target info: too many disks");
	json_array_foreach (disks, i, d) {
		ret->disks[i].node = json_string_value(json_object_get(d, "node"));
		ret->disks[i].export = json_string_value(json_object_get(d, "export"));
		if (!ret->disks[i].node || !ret->disks[i].export)
			return vm_error_setx(
			    err, EBADMSG, "live target info: disks[%zu] needs node and export", i);
	}
	ret->ndisks = i;
	return 0;
}

enum phase { PH_DISK, PH_RAM, PH_COMPLETING };

struct live {
	struct vm_node *node;
	const char *uuid;
	struct qmp *q;
	const struct vm_live_target_info *t;
	const struct vm_live_opts *o;
	struct vm_live_report *rep;
	struct live_disk *disks;
	size_t ndisks;
	bool nbd_added[VM_LIVE_MAX_DISKS];
	bool migrating; /* migrate was issued */
	bool continued; /* migrate-continue was issued */
	bool tls;
	int64_t start_ms;
	int64_t disk_copied; /* the mirrors' offsets, last seen */
	int64_t downtime_limit;
};

static const char *phase_name(enum phase ph)
{
	switch (ph) {
	case PH_DISK:
		return "disk";
	case PH_RAM:
		return "ram";
	default:
		return "switchover";
	}
}

/* Undo everything on the source after a failure, so the guest runs on.
 * Returns 1 when the migration turned out to have completed (it cannot be
 * undone then: the caller treats it as success), 0 otherwise. */
static int rollback(struct live *l)
{
	struct vm_error ignore = {0};
	_cleanup_json_ json_t *instances = json_array();
	int64_t deadline;
	char nbd[64], job[64];

	/* yank first: it shuts the connections down at once, so nothing
	 * waits on a cut link (TCP would retransmit for minutes, and QEMU
	 * would hold its main loop in a drain meanwhile). */
	if (l->migrating && instances)
		json_array_append_new(instances, json_pack("{s:s}", "type", "migration"));
	for (size_t i = 0; instances && i < l->ndisks; i++) {
		if (!l->nbd_added[i])
			continue;
		nbd_node(nbd, sizeof(nbd), l->disks[i].node);
		json_array_append_new(
		    instances, json_pack("{s:s, s:s}", "type", "block-node", "node-name", nbd));
	}
	if (json_array_size(instances) > 0) {
		/* Out of band first, on the second monitor: it is heard even
		 * when QEMU's main loop hangs in a drain of an NBD write on a
		 * cut link (at the switchover, guest paused). */
		_cleanup_free_ char *oob = kvm_run_path(l->node, l->uuid, "qmp-oob.sock");
		_cleanup_qmp_ struct qmp *qo = NULL;
		if (oob && qmp_connect_oob(oob, 1000, &qo, &ignore) >= 0 &&
		    qmp_command_oob(qo, "yank", json_pack("{s:O}", "instances", instances), NULL,
				    2000, &ignore) >= 0)
			vm_debug("live %s: out-of-band yank done", l->uuid);
		else
			vm_debug("live %s: out-of-band yank: %s", l->uuid, ignore.msg);
		vm_error_clear(&ignore);
		qcmd_quiet(l->q, "yank", json_pack("{s:O}", "instances", instances));
	}
	if (l->migrating)
		qcmd_quiet(l->q, "migrate_cancel", NULL);
	for (size_t i = 0; i < l->ndisks; i++) {
		snprintf(job, sizeof(job), MIRROR_PREFIX "%s", l->disks[i].node);
		qcmd_quiet(l->q, "block-job-cancel",
			   json_pack("{s:s, s:b}", "device", job, "force", 1));
	}
	/* Wait for the mirrors to go and the migration to settle. */
	deadline = now_ms() + 15000;
	for (;;) {
		_cleanup_json_ json_t *m = NULL, *jobs = NULL;
		const char *st = "none";
		size_t running = 0;

		if (our_jobs(l->q, MIRROR_PREFIX, &jobs, &ignore) >= 0)
			running = json_array_size(jobs);
		if (l->migrating && qcmd(l->q, "query-migrate", NULL, &m, &ignore) >= 0)
			st = migrate_status(m);
		if (streq(st, "completed"))
			return 1;
		if (running == 0 && !streq(st, "cancelling") && !streq(st, "active") &&
		    !streq(st, "pre-switchover") && !streq(st, "device") && !streq(st, "setup"))
			break;
		if (now_ms() > deadline) {
			vm_warn("live migration of %s: source still has %zu mirrors, migration "
				"'%s' after rollback",
				l->uuid, running, st);
			break;
		}
		usleep(50 * 1000);
	}
	qmp_flush_events(l->q);
	for (size_t i = 0; i < l->ndisks; i++) {
		if (!l->nbd_added[i])
			continue;
		nbd_node(nbd, sizeof(nbd), l->disks[i].node);
		qcmd_quiet(l->q, "blockdev-del", json_pack("{s:s}", "node-name", nbd));
	}
	if (overlays_commit(l->node, l->q, l->uuid, l->disks, l->ndisks, &ignore) < 0)
		vm_warn("live migration of %s: %s (the guest runs on its overlays in %s)", l->uuid,
			ignore.msg, "zones/.live");
	qcmd_quiet(l->q, "migrate-set-capabilities",
		   json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
			     "pause-before-switchover", "state", 0));
	if (l->tls)
		tls_teardown(l->node, l->q, l->uuid);
	/* The guest ran before we began; migration restarts it on cancel, but
	 * a failure while paused at pre-switchover must not leave it paused. */
	{
		_cleanup_json_ json_t *s = NULL;
		const char *st = NULL;
		if (qcmd(l->q, "query-status", NULL, &s, &ignore) >= 0)
			st = json_string_value(json_object_get(s, "status"));
		if (st && !streq(st, "running") && !streq(st, "postmigrate")) {
			vm_debug("live migration of %s: guest '%s' after rollback: cont", l->uuid,
				 st);
			qcmd_quiet(l->q, "cont", NULL);
		}
	}
	return 0;
}

static void emit(struct live *l, enum phase ph, json_t *m, int64_t dirty)
{
	struct vm_live_progress p = {0};
	json_t *ram = json_object_get(m, "ram");

	if (!l->o->progress)
		return;
	p.phase = phase_name(ph);
	p.elapsed_ms = now_ms() - l->start_ms;
	p.disk_dirty = dirty;
	p.disk_copied = l->disk_copied;
	p.ram_transferred = json_integer_value(json_object_get(ram, "transferred"));
	p.ram_remaining = json_integer_value(json_object_get(ram, "remaining"));
	p.ram_total = json_integer_value(json_object_get(ram, "total"));
	p.dirty_rate = json_integer_value(json_object_get(ram, "dirty-pages-rate"));
	p.dirty_syncs = json_integer_value(json_object_get(ram, "dirty-sync-count"));
	p.mbps = json_number_value(json_object_get(ram, "mbps"));
	p.downtime_limit_ms = l->downtime_limit;
	l->o->progress(&p, l->o->userdata);
}

/* What QEMU is given for a downtime limit of ms: two thirds of it. QEMU's
 * limit bounds only its estimate of the last RAM pass; ending the mirrors,
 * the device state and the resume come on top (under TCG, 50-100 ms), and
 * the reported downtime includes them. */
static int64_t qemu_downtime(int64_t ms)
{
	return ms * 2 / 3 > 0 ? ms * 2 / 3 : 1;
}

static int set_downtime(struct live *l, int64_t ms, struct vm_error *err)
{
	l->downtime_limit = ms;
	return qcmd(l->q, "migrate-set-parameters",
		    json_pack("{s:I}", "downtime-limit", (json_int_t)qemu_downtime(ms)), NULL,
		    err);
}

static int connect_and_mirror(struct live *l, struct vm_error *err)
{
	const struct vm_live_target_info *t = l->t;
	_cleanup_free_ char *port = strdup_printf("%d", t->nbd_port);
	char nbd[64], ovl[64], job[64];
	int r;

	if (!port)
		return vm_error_set(err, ENOMEM, "live migration");
	/* An NBD client node per disk on the target's export:
	 * blockdev-add {"driver": "nbd", "node-name": "vmadm-live-nbd-diskN",
	 *   "server": {"type": "inet", "host": H, "port": "P"}, "export": E,
	 *   "tls-creds": ID} */
	for (size_t i = 0; i < l->ndisks; i++) {
		nbd_node(nbd, sizeof(nbd), t->disks[i].node);
		r = qcmd(l->q, "blockdev-add",
			 json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:s}", "driver", "nbd",
				   "node-name", nbd, "server", "type", "inet", "host", t->host,
				   "port", port, "export", t->disks[i].export, "tls-creds",
				   VM_LIVE_TLS_ID),
			 NULL, err);
		if (r < 0 && strstr(err->msg, "TLS handshake failed"))
			return vm_error_prefix(err,
					       "connect to the target's disk export %s (do both "
					       "nodes have the same key, vmadm.key?)",
					       t->disks[i].export);
		if (r < 0)
			return vm_error_prefix(err, "connect to the target's disk export %s",
					       t->disks[i].export);
		l->nbd_added[i] = true;
	}
	/* blockdev-mirror {"job-id": "vmadm-live-mirror-diskN",
	 *   "device": "vmadm-live-ovl-diskN", "target": "vmadm-live-nbd-diskN",
	 *   "sync": "top"} : what the guest wrote since the snapshot, then every
	 * new write; "full" when the target has no base. */
	for (size_t i = 0; i < l->ndisks; i++) {
		json_t *args;

		snprintf(job, sizeof(job), MIRROR_PREFIX "%s", t->disks[i].node);
		nbd_node(nbd, sizeof(nbd), t->disks[i].node);
		overlay_node(ovl, sizeof(ovl), t->disks[i].node);
		args = json_pack("{s:s, s:s, s:s, s:s}", "job-id", job, "device", ovl, "target",
				 nbd, "sync", l->o->full_copy ? "full" : "top");
		if (args && l->o->disk_speed > 0)
			json_object_set_new(args, "speed", json_integer(l->o->disk_speed));
		r = qcmd(l->q, "blockdev-mirror", args, NULL, err);
		if (r < 0)
			return vm_error_prefix(err, "mirror %s to the target", t->disks[i].node);
	}
	return 0;
}

/* At pre-switchover (guest paused, its I/O drained): block-job-cancel of
 * each ready mirror completes it with the target consistent (no pivot);
 * once all are gone without error, migrate-continue. */
static int switchover(struct live *l, int64_t stall, struct vm_error *err)
{
	int64_t start = now_ms();
	char job[64];
	int r;

	for (size_t i = 0; i < l->ndisks; i++) {
		snprintf(job, sizeof(job), MIRROR_PREFIX "%s", l->disks[i].node);
		r = qcmd(l->q, "block-job-cancel", json_pack("{s:s}", "device", job), NULL, err);
		if (r < 0)
			return r;
	}
	for (;;) {
		_cleanup_json_ json_t *jobs = NULL;

		r = our_jobs(l->q, MIRROR_PREFIX, &jobs, err);
		if (r < 0)
			return r;
		if (json_array_size(jobs) == 0)
			break;
		if (now_ms() - start > stall)
			return vm_error_setx(err, ETIMEDOUT,
					     "disk mirrors did not finish within %lld ms at "
					     "switchover",
					     (long long)stall);
		usleep(2 * 1000);
	}
	{
		_cleanup_free_ char *why = job_error(l->q, MIRROR_PREFIX);
		if (why)
			return vm_error_setx(err, EIO, "disk mirror failed at switchover: %s", why);
	}
	l->rep->switchover_disk_ms = now_ms() - start;
	/* migrate-continue {"state": "pre-switchover"} */
	r = qcmd(l->q, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"), NULL,
		 err);
	if (r < 0)
		return r;
	l->continued = true;
	return 0;
}

static int run_migration(struct live *l, struct vm_error *err)
{
	const struct vm_live_opts *o = l->o;
	int64_t timeout = o->timeout_ms > 0 ? o->timeout_ms : 600000;
	int64_t stall = o->stall_ms > 0 ? o->stall_ms : 10000;
	int64_t max_downtime, last_mark = -1, last_move_ms, last_raise_ms = 0;
	int64_t last_remaining = -1, last_syncs = 0, last_emit_ms = 0;
	enum phase ph = PH_DISK, last_emit_ph = PH_COMPLETING;
	_cleanup_free_ char *uri = tcp_uri(l->t->host, l->t->migrate_port);
	int r;

	l->downtime_limit = o->downtime_limit_ms > 0 ? o->downtime_limit_ms : 300;
	max_downtime = o->max_downtime_ms > 0 ? o->max_downtime_ms : 10 * l->downtime_limit;
	if (!uri)
		return vm_error_set(err, ENOMEM, "live migration");

	r = tls_setup(l->node, l->q, l->uuid, "client", err);
	if (r < 0)
		return r;
	l->tls = true;
	/* migrate-set-capabilities events, pause-before-switchover (the
	 * mirrors end while the guest is paused), auto-converge. */
	r = qcmd(l->q, "migrate-set-capabilities",
		 json_pack("{s:[{s:s, s:b}, {s:s, s:b}, {s:s, s:b}]}", "capabilities", "capability",
			   "events", "state", 1, "capability", "pause-before-switchover", "state",
			   1, "capability", "auto-converge", "state", 1),
		 NULL, err);
	if (r >= 0)
		r = qcmd(l->q, "migrate-set-parameters",
			 json_pack("{s:s, s:I, s:I}", "tls-creds", VM_LIVE_TLS_ID, "downtime-limit",
				   (json_int_t)qemu_downtime(l->downtime_limit), "max-bandwidth",
				   (json_int_t)(o->max_bandwidth > 0 ? o->max_bandwidth
								     : (int64_t)10 << 30)),
			 NULL, err);
	if (r >= 0)
		r = connect_and_mirror(l, err);
	if (r < 0)
		return r;

	last_move_ms = now_ms();
	for (;;) {
		_cleanup_json_ json_t *m = NULL, *jobs = NULL;
		_cleanup_free_ char *why = NULL;
		int64_t now, dirty = 0, copied = 0, mark;
		size_t njobs, nready = 0, k;
		const char *st = "none";
		json_t *j;

		/* Short ticks in the RAM phase: pre-switchover is seen sooner,
		 * and the guest waits paused until then. */
		usleep((ph == PH_RAM ? RAM_TICK_MS : TICK_MS) * 1000);
		now = now_ms();
		/* A mirror that ended on its own failed (ours end by our
		 * cancel only); its event says why. */
		why = job_error(l->q, MIRROR_PREFIX);
		if (l->migrating) {
			json_t *ev = NULL;
			struct vm_error ignore = {0};

			if (qmp_wait_event(l->q, "STOP", &ev, 0, &ignore) >= 0) {
				l->rep->stopped_us = event_us(ev);
				json_decref(ev);
			}
		}
		qmp_flush_events(l->q);
		r = our_jobs(l->q, MIRROR_PREFIX, &jobs, err);
		if (r < 0)
			return r;
		njobs = json_array_size(jobs);
		json_array_foreach (jobs, k, j) {
			int64_t off = json_integer_value(json_object_get(j, "offset"));
			int64_t len = json_integer_value(json_object_get(j, "len"));
			copied += off;
			dirty += len > off ? len - off : 0;
			nready += json_is_true(json_object_get(j, "ready"));
		}
		if (njobs > 0)
			l->disk_copied = copied;
		if (l->migrating) {
			r = qcmd(l->q, "query-migrate", NULL, &m, err);
			if (r < 0)
				return r;
			st = migrate_status(m);
		}
		if (now - last_emit_ms >= TICK_MS || ph != last_emit_ph) {
			emit(l, ph, m, dirty);
			last_emit_ms = now;
			last_emit_ph = ph;
		}

		if (streq(st, "failed") || streq(st, "cancelled"))
			return vm_error_setx(err, EIO, "migration %s: %s", st,
					     json_string_value(json_object_get(m, "error-desc"))
						 ?: "QEMU gave no reason");
		if (streq(st, "completed")) {
			if (!l->continued)
				return vm_error_setx(err, EPROTO,
						     "migration completed before the disks did");
			return 0;
		}
		if (ph != PH_COMPLETING && njobs < l->ndisks) {
			/* its event came during query-block-jobs */
			if (!why)
				why = job_error(l->q, MIRROR_PREFIX);
			return vm_error_setx(err, EIO, "disk mirror stopped: %s",
					     why ? why : "(no reason given)");
		}

		/* Stalls: nothing moved for stall ms while something should:
		 * the mirrors before they are ready, RAM while it is sent,
		 * the mirrors' end at switchover. */
		mark = copied + json_integer_value(
				    json_object_get(json_object_get(m, "ram"), "transferred"));
		if (mark != last_mark || (ph == PH_DISK && nready == njobs) ||
		    ph == PH_COMPLETING) {
			last_mark = mark;
			last_move_ms = now;
		} else if (now - last_move_ms > stall) {
			return vm_error_setx(err, ETIMEDOUT,
					     "no progress for %lld ms in the %s phase (link to %s "
					     "down or target gone?)",
					     (long long)(now - last_move_ms), phase_name(ph),
					     l->t->host);
		}
		if (o->cancel && *o->cancel)
			return vm_error_setx(err, ECANCELED, "cancelled in the %s phase",
					     phase_name(ph));
		if (now - l->start_ms > timeout) {
			json_t *ram = json_object_get(m, "ram");
			if (ph == PH_DISK)
				return vm_error_setx(
				    err, ETIMEDOUT,
				    "timeout after %lld ms in the disk phase: %lld "
				    "bytes still to mirror (the guest writes faster "
				    "than the link copies?)",
				    (long long)timeout, (long long)dirty);
			return vm_error_setx(
			    err, ETIMEDOUT,
			    "did not converge within %lld ms: %lld bytes of RAM remaining, "
			    "dirty rate %lld pages/s, throughput %.1f Mbit/s, downtime limit "
			    "%lld ms (may rise to %lld)",
			    (long long)timeout,
			    (long long)json_integer_value(json_object_get(ram, "remaining")),
			    (long long)json_integer_value(json_object_get(ram, "dirty-pages-rate")),
			    json_number_value(json_object_get(ram, "mbps")),
			    (long long)l->downtime_limit, (long long)max_downtime);
		}

		switch (ph) {
		case PH_DISK:
			if (nready < l->ndisks)
				break;
			/* Every mirror is ready (source and target in sync,
			 * new writes mirrored as they come): RAM now.
			 * migrate {"uri": "tcp:H:P"} */
			r = qcmd(l->q, "migrate", json_pack("{s:s}", "uri", uri), NULL, err);
			if (r < 0)
				return r;
			l->migrating = true;
			ph = PH_RAM;
			last_raise_ms = now;
			break;
		case PH_RAM: {
			json_t *ram = json_object_get(m, "ram");
			int64_t rem = json_integer_value(json_object_get(ram, "remaining"));
			int64_t syncs =
			    json_integer_value(json_object_get(ram, "dirty-sync-count"));

			if (streq(st, "pre-switchover")) {
				/* Guest paused, its I/O drained: the clock of the
				 * downtime runs, so no tick sleeps from here to
				 * migrate-continue. */
				r = switchover(l, stall, err);
				if (r < 0)
					return r;
				ph = PH_COMPLETING;
				break;
			}
			/* Not converging (Proxmox-style): after a few rounds
			 * with the remainder not shrinking, double the limit. */
			if (syncs >= 3 && syncs != last_syncs && now - last_raise_ms >= 2000 &&
			    l->downtime_limit < max_downtime && last_remaining >= 0 &&
			    rem >= last_remaining) {
				int64_t nl = l->downtime_limit * 2;
				if (nl > max_downtime)
					nl = max_downtime;
				vm_debug("live %s: not converging (%lld bytes left), downtime "
					 "limit %lld -> %lld ms",
					 l->uuid, (long long)rem, (long long)l->downtime_limit,
					 (long long)nl);
				r = set_downtime(l, nl, err);
				if (r < 0)
					return r;
				last_raise_ms = now;
			}
			if (syncs != last_syncs) {
				last_syncs = syncs;
				last_remaining = rem;
			}
			break;
		}
		case PH_COMPLETING:
			break;
		}
	}
}

int vm_live_source_migrate(struct vm_node *node, const char *uuid,
			   const struct vm_live_target_info *t, const struct vm_live_opts *o,
			   struct vm_live_report *rep, struct vm_error *err)
{
	static const struct vm_live_opts defaults = {0};
	struct live_disk disks[VM_LIVE_MAX_DISKS];
	_cleanup_json_ json_t *vm = NULL, *m = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	struct live l = {.node = node, .uuid = uuid, .t = t, .o = o ? o : &defaults, .rep = rep};
	size_t ndisks;
	char ovl[64];
	int r;

	memset(rep, 0, sizeof(*rep));
	l.start_ms = now_ms();
	r = load_running(node, uuid, &vm, disks, &ndisks, &q, err);
	if (r < 0)
		return vm_error_prefix(err, "live migration of %s", uuid);
	l.q = q;
	l.disks = disks;
	l.ndisks = ndisks;
	/* From here on every failure goes through the rollback, which also
	 * folds the overlays back. */
	if (t->ndisks != ndisks)
		r = vm_error_setx(err, EINVAL, "the target exports %zu disks, the VM has %zu",
				  t->ndisks, ndisks);
	for (size_t i = 0; r >= 0 && i < ndisks; i++) {
		overlay_node(ovl, sizeof(ovl), disks[i].node);
		if (!streq(t->disks[i].node, disks[i].node))
			r = vm_error_setx(err, EINVAL, "target disk %zu is %s, the VM's is %s", i,
					  t->disks[i].node, disks[i].node);
		else if (!node_exists(q, ovl))
			r = vm_error_setx(err, EINVAL,
					  "%s has no overlay (vm_live_source_begin first)",
					  disks[i].node);
	}
	if (r >= 0)
		r = run_migration(&l, err);
	rep->disk_copied = l.disk_copied;
	rep->downtime_limit_ms = l.downtime_limit;
	rep->total_ms = now_ms() - l.start_ms;
	if (r < 0) {
		char why[sizeof(err->msg)];
		int code = err->code ? err->code : EIO;

		memcpy(why, err->msg, sizeof(why));
		if (rollback(&l) == 0)
			return vm_error_setx(
			    err, code, "live migration of %s failed (the VM runs on here): %s",
			    uuid, why);
		vm_debug("live %s: failure '%s' but the migration completed", uuid, why);
	}

	if (qcmd(q, "query-migrate", NULL, &m, err) >= 0) {
		rep->downtime_ms = json_integer_value(json_object_get(m, "downtime"));
		rep->setup_ms = json_integer_value(json_object_get(m, "setup-time"));
		rep->ram_transferred =
		    json_integer_value(json_object_get(json_object_get(m, "ram"), "transferred"));
	}
	/* Done: the guest lives on the target now. quit, make sure QEMU is
	 * gone (the brand's forced stop also removes the run dir), then fold
	 * the overlays into the images, so the stopped source VM's disks hold
	 * every write up to the switchover. */
	qcmd_quiet(q, "quit", NULL);
	qmp_close(TAKE_PTR(q));
	{
		struct vm_error e2 = {0};
		if (kvm_brand_ops.stop(node, vm, 5, true, &e2) < 0)
			vm_warn("live migration of %s: completed, but stopping the source QEMU: %s",
				uuid, e2.msg);
		else if (overlays_commit_offline(node, uuid, disks, ndisks, &e2) < 0)
			vm_warn("live migration of %s: completed, but %s", uuid, e2.msg);
	}
	return 0;
}

int vm_live_source_cancel(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	struct live_disk disks[VM_LIVE_MAX_DISKS];
	_cleanup_json_ json_t *vm = NULL, *m = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	struct vm_live_report rep;
	struct live l = {.node = node, .uuid = uuid, .rep = &rep, .tls = true};
	struct vm_error qerr = {0};
	char name[64];
	size_t ndisks;
	int r;

	r = vm_store_load(node, uuid, &vm, err);
	if (r >= 0)
		r = record_disks(vm, disks, &ndisks, err);
	if (r < 0)
		return r;
	if (kvm_qmp_open(node, uuid, &q, &qerr) < 0)
		/* Not running: fold what the overlays hold into the images. */
		return overlays_commit_offline(node, uuid, disks, ndisks, err);

	/* Whatever a migration left (its process may have died): the same
	 * rollback as after a failure. */
	l.q = q;
	l.disks = disks;
	l.ndisks = ndisks;
	if (qcmd(q, "query-migrate", NULL, &m, &qerr) >= 0)
		l.migrating = !streq(migrate_status(m), "none");
	for (size_t i = 0; i < ndisks; i++) {
		nbd_node(name, sizeof(name), disks[i].node);
		l.nbd_added[i] = node_exists(q, name);
	}
	if (rollback(&l) == 1)
		return vm_error_setx(
		    err, EALREADY,
		    "cancel live migration of %s: it completed, the VM runs on the "
		    "target",
		    uuid);
	for (size_t i = 0; i < ndisks; i++) {
		overlay_node(name, sizeof(name), disks[i].node);
		if (node_exists(q, name))
			return vm_error_setx(err, EBUSY,
					     "cancel live migration of %s: %s still runs on its "
					     "overlay (see the log)",
					     uuid, disks[i].node);
	}
	return 0;
}

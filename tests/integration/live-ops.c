/* SPDX-License-Identifier: MIT */
/*
 * live-ops: drive the QEMU side of live migration (kvm_brand_ops.live,
 * brand/live.h) alone, for tests/integration/live-local.sh, without vmadmd.
 *
 *   live-ops ROOT target-prepare UUID HOST [MPORT NPORT]  prints the target info JSON
 *   live-ops ROOT target-finish UUID
 *   live-ops ROOT target-abort UUID
 *   live-ops ROOT source-begin UUID SNAP
 *   live-ops ROOT source-cancel UUID
 *   live-ops ROOT source-migrate UUID INFOFILE [--downtime-limit MS] [--timeout MS]
 *            [--stall MS] [--bandwidth BYTES] [--disk-speed BYTES] [--full]
 *       progress lines on stderr ("progress phase=..."), the report JSON on
 *       stdout (also on failure, after the error line); SIGINT cancels
 *
 * The VM record comes from ROOT (vms/UUID.json). Errors go to stderr as
 * "live-ops: MSG" with exit status 1. VMADM_DEBUG=1 logs debug lines.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brand/kvm.h"
#include "brand/live.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/store.h"

static void log_stderr(int level, const char *line, void *userdata)
{
	(void)level;
	(void)userdata;
	fprintf(stderr, "debug: %s\n", line);
}

/* kvm's slots (kvm_brand_ops.live), whatever the record's brand: a
 * joyent record must be refused by them. */
static const struct vm_brand_live_ops *live;

static volatile sig_atomic_t cancelled;

static void on_sigint(int sig)
{
	(void)sig;
	cancelled = 1;
}

static void progress(const struct vm_live_progress *p, void *userdata)
{
	(void)userdata;
	fprintf(stderr,
		"progress phase=%s elapsed_ms=%lld disk_dirty=%lld disk_copied=%lld "
		"ram_transferred=%lld ram_remaining=%lld ram_total=%lld dirty_rate=%lld "
		"syncs=%lld mbps=%.1f downtime_limit=%lld\n",
		p->phase, (long long)p->elapsed_ms, (long long)p->disk_dirty,
		(long long)p->disk_copied, (long long)p->ram_transferred,
		(long long)p->ram_remaining, (long long)p->ram_total, (long long)p->dirty_rate,
		(long long)p->dirty_syncs, p->mbps, (long long)p->downtime_limit_ms);
	fflush(stderr);
}

static int source_migrate(struct vm_node *node, json_t *vm, int argc, char **argv,
			  struct vm_error *err)
{
	struct vm_live_opts o = {.progress = progress, .cancel = &cancelled};
	struct vm_live_report rep;
	_cleanup_json_ json_t *info = NULL;
	json_error_t jerr;
	int r;

	if (argc < 5)
		return vm_error_setx(err, EINVAL, "source-migrate UUID INFOFILE [options]");
	info = json_load_file(argv[4], 0, &jerr);
	if (!info)
		return vm_error_setx(err, EINVAL, "%s: %s", argv[4], jerr.text);
	for (int i = 5; i < argc; i++) {
		const char *a = argv[i];
		long long v = i + 1 < argc ? atoll(argv[i + 1]) : 0;

		if (streq(a, "--full")) {
			o.full_copy = 1;
			continue;
		}
		if (i + 1 >= argc)
			return vm_error_setx(err, EINVAL, "%s needs a value", a);
		i++;
		if (streq(a, "--downtime-limit"))
			o.downtime_limit_ms = v;
		else if (streq(a, "--timeout"))
			o.timeout_ms = v;
		else if (streq(a, "--stall"))
			o.stall_ms = v;
		else if (streq(a, "--bandwidth"))
			o.max_bandwidth = v;
		else if (streq(a, "--disk-speed"))
			o.disk_speed = v;
		else
			return vm_error_setx(err, EINVAL, "unknown option %s", a);
	}
	signal(SIGINT, on_sigint);
	r = live->source_migrate(node, vm, info, &o, &rep, err);
	if (r < 0)
		fprintf(stderr, "live-ops: %s\n", err->msg);
	printf("{\"ok\": %s, \"total_ms\": %lld, \"downtime_ms\": %lld, \"setup_ms\": %lld, "
	       "\"ram_transferred\": %lld, \"disk_copied\": %lld, "
	       "\"downtime_limit_ms\": %lld, \"switchover_disk_ms\": %lld, \"stopped_us\": %lld}\n",
	       r < 0 ? "false" : "true", (long long)rep.total_ms, (long long)rep.downtime_ms,
	       (long long)rep.setup_ms, (long long)rep.ram_transferred, (long long)rep.disk_copied,
	       (long long)rep.downtime_limit_ms, (long long)rep.switchover_disk_ms,
	       (long long)rep.stopped_us);
	return r < 0 ? 1 : 0;
}

static int run(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL;
	const char *verb = argv[2], *uuid = argv[3];
	int r;

	live = kvm_brand_ops.live;
	if (setenv("VMADM_ROOT", argv[1], 1) < 0)
		return vm_error_set(err, errno, "setenv");
	r = vm_node_open(&node, err);
	if (r < 0)
		return r;

	if (streq(verb, "target-prepare")) {
		_cleanup_json_ json_t *info = NULL;
		struct vm_live_params p = {0};
		char *s;

		if (argc < 5)
			return vm_error_setx(err, EINVAL, "target-prepare UUID HOST [MPORT NPORT]");
		p.host = argv[4];
		if (argc >= 7) {
			p.migrate_port = atoi(argv[5]);
			p.nbd_port = atoi(argv[6]);
		}
		r = vm_store_load(node, uuid, &vm, err);
		if (r >= 0)
			r = live->target_prepare(node, vm, &p, &info, err);
		if (r < 0)
			return r;
		s = json_dumps(info, JSON_SORT_KEYS);
		printf("%s\n", s ? s : "null");
		free(s);
		return 0;
	}
	if (streq(verb, "target-finish")) {
		int64_t resumed = 0;

		r = live->target_finish(node, uuid, 30000, &resumed, err);
		if (r >= 0)
			printf("{\"resumed_us\": %lld}\n", (long long)resumed);
		return r;
	}
	if (streq(verb, "target-abort"))
		return live->target_abort(node, uuid, err);
	/* The source's slots take the VM's record. */
	r = vm_store_load(node, uuid, &vm, err);
	if (r < 0)
		return r;
	if (streq(verb, "source-begin")) {
		if (argc < 5)
			return vm_error_setx(err, EINVAL, "source-begin UUID SNAP");
		return live->source_begin(node, vm, argv[4], err);
	}
	if (streq(verb, "source-cancel"))
		return live->source_cancel(node, vm, err);
	if (streq(verb, "source-migrate"))
		return source_migrate(node, vm, argc, argv, err);
	return vm_error_setx(err, EINVAL, "unknown verb %s", verb);
}

int main(int argc, char **argv)
{
	struct vm_error err = {0};
	int r;

	if (argc < 4) {
		fprintf(stderr, "usage: live-ops ROOT VERB UUID ...\n");
		return 2;
	}
	if (getenv("VMADM_DEBUG"))
		vm_log_set_handler(log_stderr, NULL);
	r = run(argc, argv, &err);
	if (r < 0) {
		fprintf(stderr, "live-ops: %s\n", err.msg);
		return 1;
	}
	return r;
}

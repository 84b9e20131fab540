/* SPDX-License-Identifier: MIT */
/*
 * incr-ops: drive the incremental-migration building blocks
 * (migrate/local/incremental.h) without the network, for
 * tests/integration/incremental-local.sh. The node is $VMADM_ROOT.
 *
 *   incr-ops snapshot UUID NAME        vm_incr_snapshot_all
 *   incr-ops drop UUID NAME            vm_incr_drop_snapshot
 *   incr-ops send UUID FROM|- SNAP [-p] [-z]
 *                                      vm_incr_send_pass to stdout ("-": full);
 *                                      -p portable, -z zstd; prints
 *                                      "bytes N" on stderr
 *   incr-ops receive                   vm_incr_receive_pass from stdin; prints
 *                                      "held UUID SNAPSHOT BYTES"
 *   incr-ops held UUID                 prints the held snapshot
 *   incr-ops finish UUID               vm_incr_finish
 *   incr-ops abort UUID                vm_incr_abort
 *   incr-ops changed-ranges OLD NEW   sparse_changed_ranges; prints
 *                                      "ranges N bytes B shared S"
 *   incr-ops forge-delta UUID FROM SNAP PATH...
 *                                      a stream (to stdout) of VM UUID's record
 *                                      whose only dataset, the VM's own, is a
 *                                      tar-delta deleting PATHs, with an empty
 *                                      archive: for hostile-input tests
 *   incr-ops should-stop TARGET_MS MAX BYTES:SECS...
 *                                      vm_incr_should_stop; prints "stop|continue: WHY"
 *
 * Errors go to stderr as "incr-ops: MSG" with exit status 1; with
 * VMADM_DEBUG set, the library's debug lines too ("debug: ...").
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate/local/incremental.h"
#include "storage/sparse.h"
#include "stream/stream.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/store.h"

struct counts {
	uint64_t ranges, bytes;
};

static int count_range(uint64_t start, uint64_t end, void *ud)
{
	struct counts *c = ud;
	c->ranges++;
	c->bytes += end - start;
	return 0;
}

static int run(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	const char *verb = argv[1];
	int r;

	if (streq(verb, "should-stop")) {
		struct vm_incr_pass p[64];
		struct vm_incr_rule rule;
		const char *why;
		size_t n = 0;
		if (argc < 4)
			return vm_error_setx(err, EINVAL,
					     "should-stop TARGET_MS MAX BYTES:SECS...");
		rule.downtime_target_ms = atoi(argv[2]);
		rule.max_passes = atoi(argv[3]);
		for (int i = 4; i < argc && n < 64; i++, n++) {
			unsigned long long b;
			double s;
			if (sscanf(argv[i], "%llu:%lf", &b, &s) != 2)
				return vm_error_setx(err, EINVAL, "bad pass %s", argv[i]);
			p[n] = (struct vm_incr_pass){b, s};
		}
		bool stop = vm_incr_should_stop(p, n, &rule, &why);
		printf("%s: %s\n", stop ? "stop" : "continue", why);
		return 0;
	}
	if (streq(verb, "changed-ranges") && argc == 4) {
		_cleanup_close_ int a = open(argv[2], O_RDONLY | O_CLOEXEC);
		_cleanup_close_ int b = open(argv[3], O_RDONLY | O_CLOEXEC);
		struct counts c = {0};
		struct stat st;
		uint64_t shared = 0;
		if (a < 0 || b < 0 || fstat(b, &st) < 0)
			return vm_error_set(err, errno, "open %s or %s", argv[2], argv[3]);
		r = sparse_changed_ranges(a, b, st.st_size, count_range, &c, &shared, err);
		if (r >= 0)
			printf("ranges %llu bytes %llu shared %llu\n", (unsigned long long)c.ranges,
			       (unsigned long long)c.bytes, (unsigned long long)shared);
		return r;
	}
	r = vm_node_open(&node, err);
	if (r < 0)
		return r;
	if (streq(verb, "snapshot") && argc == 4)
		return vm_incr_snapshot_all(node, argv[2], argv[3], err);
	if (streq(verb, "drop") && argc == 4)
		return vm_incr_drop_snapshot(node, argv[2], argv[3], err);
	if (streq(verb, "send") && argc >= 5) {
		struct vm_send_opts o = {0};
		uint64_t bytes = 0;
		for (int i = 5; i < argc; i++) {
			if (streq(argv[i], "-p"))
				o.portable = true;
			else if (streq(argv[i], "-z"))
				o.compress = true;
			else
				return vm_error_setx(err, EINVAL, "unknown option %s", argv[i]);
		}
		r = vm_incr_send_pass(node, argv[2], streq(argv[3], "-") ? NULL : argv[3], argv[4],
				      STDOUT_FILENO, &o, &bytes, err);
		if (r >= 0)
			fprintf(stderr, "bytes %llu\n", (unsigned long long)bytes);
		return r;
	}
	if (streq(verb, "receive") && argc == 2) {
		struct vm_recv_opts o = {0};
		struct vm_incr_held h;
		r = vm_incr_receive_pass(node, STDIN_FILENO, NULL, 0, &o, &h, err);
		if (r >= 0)
			printf("held %s %s %llu\n", h.uuid, h.snapshot,
			       (unsigned long long)h.bytes);
		return r;
	}
	if (streq(verb, "held") && argc == 3) {
		_cleanup_free_ char *s = NULL;
		r = vm_incr_held_snapshot(node, argv[2], &s, err);
		if (r >= 0)
			printf("%s\n", s);
		return r;
	}
	if (streq(verb, "finish") && argc == 3) {
		_cleanup_json_ json_t *vm = NULL;
		r = vm_incr_finish(node, argv[2], &vm, err);
		if (r >= 0)
			printf("%s\n", json_string_value(json_object_get(vm, "state")));
		return r;
	}
	if (streq(verb, "forge-delta") && argc >= 5) {
		_cleanup_stream_writer_ struct stream_writer *w = NULL;
		_cleanup_json_ json_t *vm = NULL;
		struct stream_dataset sd = {.name = "",
					    .kind = STREAM_KIND_FILESYSTEM,
					    .encoding = STREAM_ENC_TAR_DELTA,
					    .snapshot = argv[4],
					    .from_snapshot = argv[3]};
		static const uint8_t eof[1024];
		uint8_t len[4] = {0};
		r = vm_store_load(node, argv[2], &vm, err);
		if (r >= 0)
			r = stream_writer_open(STDOUT_FILENO, 0, &w, err);
		if (r >= 0)
			r = stream_write_config(w, vm, err);
		if (r >= 0)
			r = stream_begin_dataset(w, &sd, err);
		for (int i = 5; r >= 0 && i < argc; i++) {
			uint32_t n = strlen(argv[i]);
			uint8_t l[4] = {n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >> 24};
			r = stream_write_data(w, l, 4, err);
			if (r >= 0)
				r = stream_write_data(w, argv[i], n, err);
		}
		if (r >= 0)
			r = stream_write_data(w, len, 4, err);
		if (r >= 0)
			r = stream_write_data(w, eof, sizeof(eof), err);
		if (r >= 0)
			r = stream_end_dataset(w, err);
		if (r >= 0)
			r = stream_finish(w, err);
		return r;
	}
	if (streq(verb, "abort") && argc == 3)
		return vm_incr_abort(node, argv[2], err);
	return vm_error_setx(err, EINVAL, "usage: see the comment at the top of incr-ops.c");
}

static void log_stderr(int level, const char *line, void *userdata)
{
	fprintf(stderr, "debug: %s\n", line);
}

int main(int argc, char **argv)
{
	struct vm_error err = {0};

	if (getenv("VMADM_DEBUG"))
		vm_log_set_handler(log_stderr, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		fprintf(stderr, "incr-ops: usage: incr-ops VERB ARGS...\n");
		return 1;
	}
	if (run(argc, argv, &err) < 0) {
		fprintf(stderr, "incr-ops: %s\n", err.msg);
		return 1;
	}
	return 0;
}

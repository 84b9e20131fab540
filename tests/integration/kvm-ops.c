/* SPDX-License-Identifier: MIT */
/*
 * kvm-ops: drive brand kvm (and the QMP client) alone, for tests/integration/kvm.sh.
 *
 *   kvm-ops ROOT VMFILE start
 *   kvm-ops ROOT VMFILE start-incoming  start as a migration target (-incoming defer -S)
 *   kvm-ops ROOT VMFILE stop [-t SECS] [-F]
 *   kvm-ops ROOT VMFILE reboot
 *   kvm-ops ROOT VMFILE state          prints "running PID" or "stopped"
 *   kvm-ops ROOT VMFILE info           prints the info JSON
 *   kvm-ops ROOT VMFILE argv [incoming] prints QEMU's argv, one per line
 *   kvm-ops ROOT VMFILE qmp CMD [ARGS]  runs a QMP command, prints its return
 *   kvm-ops ROOT VMFILE pause-resume   stop + cont, waits for STOP and RESUME
 *   kvm-ops ROOT VMFILE console        relays stdin/stdout to the serial console
 *
 * VMFILE holds the VM record (JSON). Errors go to stderr as "kvm-ops: MSG"
 * with exit status 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brand/kvm.h"
#include "util/log.h"
#include "util/macros.h"

static void log_stderr(int level, const char *line, void *userdata)
{
	fprintf(stderr, "debug: %s\n", line);
}

static int print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_SORT_KEYS);
	if (!s)
		return -ENOMEM;
	printf("%s\n", s);
	free(s);
	return 0;
}

static int run(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL;
	const struct vm_brand_ops *ops = vm_brand_ops_by_name("kvm");
	const char *verb = argv[3], *uuid;
	json_error_t jerr;
	int r;

	if (setenv("VMADM_ROOT", argv[1], 1) < 0)
		return vm_error_set(err, errno, "setenv");
	vm = json_load_file(argv[2], 0, &jerr);
	if (!vm)
		return vm_error_setx(err, EINVAL, "%s: %s", argv[2], jerr.text);
	uuid = json_string_value(json_object_get(vm, "uuid"));
	r = vm_node_open(&node, err);
	if (r < 0)
		return r;
	if (!ops || ops != &kvm_brand_ops)
		return vm_error_setx(err, ENOENT, "brand kvm not found by name");

	if (streq(verb, "start"))
		return ops->start(node, vm, err);
	if (streq(verb, "start-incoming"))
		return kvm_start_vm(node, vm, true, err);
	if (streq(verb, "reboot"))
		return ops->reboot(node, vm, err);
	if (streq(verb, "console"))
		return ops->console(node, vm, 0, 1, err);
	if (streq(verb, "stop")) {
		int timeout = 60, opt;
		bool force = false;

		optind = 4;
		while ((opt = getopt(argc, argv, "t:F")) != -1) {
			if (opt == 't')
				timeout = atoi(optarg);
			else if (opt == 'F')
				force = true;
			else
				return vm_error_setx(err, EINVAL, "stop [-t SECS] [-F]");
		}
		return ops->stop(node, vm, timeout, force, err);
	}
	if (streq(verb, "state")) {
		struct vm_runtime rt;
		ops->runtime(node, vm, &rt);
		if (rt.pid)
			printf("%s %d\n", rt.state, (int)rt.pid);
		else
			printf("%s\n", rt.state);
		return 0;
	}
	if (streq(verb, "info")) {
		_cleanup_json_ json_t *info = NULL;
		r = ops->info(node, vm, &info, err);
		if (r < 0)
			return r;
		return print_json(info);
	}
	if (streq(verb, "argv")) {
		_cleanup_strv_ char **args = NULL;
		const char *accel;
		r = kvm_pick_accel(node, &accel, err);
		if (r >= 0)
			r = kvm_build_argv(node, vm, accel, argc > 4 && streq(argv[4], "incoming"),
					   &args, err);
		if (r < 0)
			return r;
		for (char **a = args; *a; a++)
			printf("%s\n", *a);
		return 0;
	}
	if (streq(verb, "qmp") || streq(verb, "pause-resume")) {
		_cleanup_qmp_ struct qmp *q = NULL;
		_cleanup_json_ json_t *args = NULL, *ret = NULL;

		r = kvm_qmp_open(node, uuid ? uuid : "", &q, err);
		if (r < 0)
			return r;
		if (streq(verb, "pause-resume")) {
			r = qmp_command(q, "stop", NULL, NULL, 5000, err);
			if (r >= 0)
				r = qmp_wait_event(q, "STOP", NULL, 5000, err);
			if (r >= 0)
				r = qmp_command(q, "query-status", NULL, &ret, 5000, err);
			if (r < 0)
				return r;
			printf("paused: %s\n", json_string_value(json_object_get(ret, "status")));
			r = qmp_command(q, "cont", NULL, NULL, 5000, err);
			if (r >= 0)
				r = qmp_wait_event(q, "RESUME", NULL, 5000, err);
			if (r >= 0)
				printf("resumed\n");
			return r;
		}
		if (argc < 5)
			return vm_error_setx(err, EINVAL, "qmp CMD [ARGS-JSON]");
		if (argc > 5) {
			args = json_loads(argv[5], 0, &jerr);
			if (!args)
				return vm_error_setx(err, EINVAL, "qmp arguments: %s", jerr.text);
		}
		r = qmp_command(q, argv[4], args, &ret, 10000, err);
		if (r < 0)
			return r;
		return print_json(ret);
	}
	return vm_error_setx(err, EINVAL, "unknown verb '%s'", verb);
}

int main(int argc, char **argv)
{
	struct vm_error err = { 0 };

	if (argc < 4) {
		fprintf(stderr, "usage: kvm-ops ROOT VMFILE start|stop [-t N] [-F]|reboot|state|"
				"info|argv [incoming]|qmp CMD [ARGS]|pause-resume|console\n");
		return 2;
	}
	if (getenv("VMADM_DEBUG"))
		vm_log_set_handler(log_stderr, NULL);
	if (run(argc, argv, &err) < 0) {
		fprintf(stderr, "kvm-ops: %s\n", err.msg);
		return 1;
	}
	return 0;
}

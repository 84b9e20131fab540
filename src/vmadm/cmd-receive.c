/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/migrate.h"
#include "util/fs.h"
#include "util/macros.h"
#include "vm/props.h"
#include "vmadm.h"

#define JSON_MAX (16 * 1024 * 1024)

/* A bare JSON config (the low-level flow): the bytes already read, then the
 * rest of stdin. */
static int receive_json(struct vm_node *node, const char *head, size_t n, bool force,
			struct vm_error *err)
{
	_cleanup_free_ char *text = malloc(JSON_MAX + 1);
	_cleanup_json_ json_t *config = NULL, *vm = NULL;
	size_t len = n;
	ssize_t k;
	int r;

	if (!text)
		return vm_error_set(err, ENOMEM, "read stdin");
	memcpy(text, head, n);
	while ((k = fs_read_full(0, text + len, JSON_MAX - len)) > 0)
		len += k;
	if (k < 0)
		return vm_error_set(err, (int)k, "read stdin");
	if (len >= JSON_MAX)
		return vm_error_setx(err, EFBIG, "JSON config on stdin larger than %d bytes",
				     JSON_MAX);
	text[len] = '\0';
	r = vm_validate_json_text(text, &config, err);
	if (r < 0)
		return r;
	r = vm_receive_config(node, config, force, &vm, err);
	if (r < 0)
		return r;
	fprintf(stderr,
		"Received the config of VM %s (state receiving). Receive its datasets, then run "
		"'vmadm install %s'.\n",
		json_string_value(json_object_get(vm, "uuid")),
		json_string_value(json_object_get(vm, "uuid")));
	return 0;
}

/* vmadm receive [-f] < STREAM | < CONFIG.json */
int cmd_receive(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL;
	struct vm_recv_opts opts = { 0 };
	char head[64];
	ssize_t n;
	size_t skip = 0;
	int c, r;

	while ((c = getopt(argc, argv, "f")) != -1) {
		if (c == 'f')
			opts.force = true;
		else
			return vmadm_usage_error("receive", err, "unknown option");
	}
	if (optind != argc)
		return vmadm_usage_error("receive", err, "unexpected argument '%s'", argv[optind]);
	if (isatty(0))
		return vm_error_setx(err, EINVAL,
				     "expected a stream from 'vmadm send' or a JSON config on stdin");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	/* A stream starts with a binary record header; a config with '{'. */
	n = read(0, head, 1);
	if (n < 0)
		return vm_error_set(err, errno, "read stdin");
	if (n == 0)
		return vm_error_setx(err, EINVAL, "stdin is empty: expected a stream or a JSON config");
	while (skip < (size_t)n && isspace((unsigned char)head[skip]))
		skip++;
	if (head[0] == '{' || (skip == (size_t)n && isspace((unsigned char)head[0])))
		return receive_json(node, head, n, opts.force, err);
	r = vm_receive(node, 0, head, n, &opts, &vm, err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully received VM %s\n",
		json_string_value(json_object_get(vm, "uuid")));
	return 0;
}

/* vmadm install UUID */
int cmd_install(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	int r;

	if (argc != 2)
		return vmadm_usage_error("install", err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_install(node, argv[1], err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully installed VM %s\n", argv[1]);
	return 0;
}

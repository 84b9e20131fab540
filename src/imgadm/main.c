/* SPDX-License-Identifier: MIT */
/*
 * imgadm: install, list, show and delete the images VMs are created from.
 * A subset of SmartOS imgadm: install -m MANIFEST -f FILE, list, get, delete.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"
#include "util/log.h"
#include "util/macros.h"

static void usage(FILE *f)
{
	fprintf(f, "Usage: imgadm COMMAND [ARGS]\n\n"
		   "Manage the images VMs are created from.\n\n"
		   "Commands:\n"
		   "  install -m MANIFEST -f FILE  check FILE against MANIFEST (size, sha1) and install it\n"
		   "  list [-j]                    list installed images (-j: as JSON)\n"
		   "  get UUID                     print an image's manifest\n"
		   "  delete UUID                  delete an image no VM uses\n\n"
		   "An image of type zvol is a raw disk (for kvm disks[].image_uuid); an image of\n"
		   "type zone-dataset is a tar archive of a root filesystem (for joyent image_uuid).\n"
		   "The node is $VMADM_ROOT (default " VM_DEFAULT_ROOT ").\n");
}

static int do_install(struct vm_node *node, int argc, char **argv, struct vm_error *err)
{
	_cleanup_json_ json_t *m = NULL;
	const char *manifest = NULL, *file = NULL;
	int c, r;

	optind = 1;
	while ((c = getopt(argc, argv, "m:f:")) != -1) {
		if (c == 'm')
			manifest = optarg;
		else if (c == 'f')
			file = optarg;
		else
			return vm_error_setx(err, EINVAL, "usage: imgadm install -m MANIFEST -f FILE");
	}
	if (!manifest || !file || optind != argc)
		return vm_error_setx(err, EINVAL, "usage: imgadm install -m MANIFEST -f FILE");
	r = vm_image_install(node, manifest, file, &m, err);
	if (r < 0)
		return r;
	printf("Installed image %s (%s@%s)\n", json_string_value(json_object_get(m, "uuid")),
	       json_string_value(json_object_get(m, "name")),
	       json_string_value(json_object_get(m, "version")));
	return 0;
}

static int do_list(struct vm_node *node, int argc, char **argv, struct vm_error *err)
{
	_cleanup_json_ json_t *list = NULL;
	json_t *m;
	size_t i;
	int r = vm_image_list(node, &list, err);

	if (r < 0)
		return r;
	if (argc > 1 && streq(argv[1], "-j")) {
		json_dumpf(list, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
		return 0;
	}
	printf("%-36s  %-16s  %-10s  %-6s  %s\n", "UUID", "NAME", "VERSION", "OS", "TYPE");
	json_array_foreach(list, i, m)
		printf("%-36s  %-16s  %-10s  %-6s  %s\n",
		       json_string_value(json_object_get(m, "uuid")),
		       json_string_value(json_object_get(m, "name")),
		       json_string_value(json_object_get(m, "version")),
		       json_string_value(json_object_get(m, "os")),
		       json_string_value(json_object_get(m, "type")));
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_node_ struct vm_node *node = NULL;
	struct vm_error err = { 0 };
	const char *cmd;
	int r;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (streq(cmd, "-h") || streq(cmd, "--help") || streq(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!streq(cmd, "install") && !streq(cmd, "list") && !streq(cmd, "get") &&
	    !streq(cmd, "delete")) {
		fprintf(stderr, "imgadm: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	r = vm_node_open(&node, &err);
	if (r >= 0) {
		if (streq(cmd, "install"))
			r = do_install(node, argc - 1, argv + 1, &err);
		else if (streq(cmd, "list"))
			r = do_list(node, argc - 1, argv + 1, &err);
		else if (argc != 3)
			r = vm_error_setx(&err, EINVAL, "usage: imgadm %s UUID", cmd);
		else if (streq(cmd, "get")) {
			_cleanup_json_ json_t *m = NULL;
			r = vm_image_get(node, argv[2], &m, &err);
			if (r >= 0) {
				json_dumpf(m, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
				putchar('\n');
			}
		} else {
			r = vm_image_delete(node, argv[2], &err);
			if (r >= 0)
				printf("Deleted image %s\n", argv[2]);
		}
	}
	if (r < 0) {
		fprintf(stderr, "imgadm %s: %s\n", cmd, err.msg);
		return 1;
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>

#include "brand/brand.h"
#include "util/macros.h"
#include "vm/vm.h"
#include "vmadm.h"

static int open_running(const char *cmd, int argc, char **argv, struct vm_node **ret_node,
			json_t **ret_vm, const struct vm_brand_ops **ret_ops,
			struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL;
	int r;

	if (argc != 2)
		return vmadm_usage_error(cmd, err, "expected one UUID");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = vm_get(node, argv[1], &vm, err);
	if (r < 0)
		return r;
	if (!streq(json_string_value(json_object_get(vm, "state")), "running"))
		return vm_error_setx(err, EINVAL, "VM %s is not running", argv[1]);
	*ret_ops = vm_brand_ops_by_name(json_string_value(json_object_get(vm, "brand")));
	if (!*ret_ops)
		return vm_error_setx(err, EINVAL, "VM %s has an unknown brand", argv[1]);
	*ret_node = TAKE_PTR(node);
	*ret_vm = TAKE_PTR(vm);
	return 0;
}

/* vmadm info UUID */
int cmd_info(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL, *info = NULL;
	const struct vm_brand_ops *ops;
	int r;

	r = open_running("info", argc, argv, &node, &vm, &ops, err);
	if (r < 0)
		return r;
	r = ops->info(node, vm, &info, err);
	if (r < 0)
		return r;
	vmadm_print_json(info);
	return 0;
}

/* vmadm console UUID */
int cmd_console(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vm = NULL;
	const struct vm_brand_ops *ops;
	struct termios saved, raw;
	bool tty = isatty(0);
	int r;

	r = open_running("console", argc, argv, &node, &vm, &ops, err);
	if (r < 0)
		return r;
	if (tty) {
		/* liblxc's console wants its escape key followed by q. */
		fprintf(stderr, "Connected to the console of VM %s. Detach with Ctrl-]%s.\n",
			argv[1], streq(ops->name, "joyent") ? " q" : "");
		tcgetattr(0, &saved);
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(0, TCSANOW, &raw);
	}
	r = ops->console(node, vm, 0, 1, err);
	if (tty) {
		tcsetattr(0, TCSANOW, &saved);
		fprintf(stderr, "\nDetached.\n");
	}
	return r;
}

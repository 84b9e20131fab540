/* SPDX-License-Identifier: MIT */
/*
 * vmadm: manage the VMs of this node. A thin front end: it parses arguments,
 * calls libvmadm and prints the library's error once.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "migrate/migrate.h"
#include "vm/props.h"
#include "vm/store.h"
#include "vmadm.h"

#define JSON_MAX (16 * 1024 * 1024)

const struct vmadm_cmd vmadm_cmds[] = {
	{ "create", cmd_create, "create [-f FILE]", "create a VM from a JSON payload",
	  "The payload is read from FILE, or from stdin. Prints the new VM's UUID on stderr.\n" },
	{ "get", cmd_get, "get UUID", "print a VM's JSON record", NULL },
	{ "list", cmd_list, "list [-H] [-p] [-o FIELD,...] [-s FIELD,...] [FIELD=VALUE ...]",
	  "list VMs in a table",
	  "  -H        no header line\n"
	  "  -p        parsable output: no header, fields separated by ':'\n"
	  "  -o FIELDS columns to show (default uuid,type,ram,state,alias)\n"
	  "  -s FIELDS sort by these fields; prefix one with '-' for descending\n"
	  "  FIELD=VALUE keeps VMs whose field equals VALUE, FIELD=~REGEX matches a regex;\n"
	  "            fields may be dotted paths: tags.role, nics.0.ip\n" },
	{ "lookup", cmd_lookup, "lookup [-j] [-1] [-o FIELD,...] [FIELD=VALUE ...]",
	  "print the UUIDs (or records) of matching VMs",
	  "  -j        print the matching records as a JSON array\n"
	  "  -1        exactly one VM must match, else fail\n"
	  "  -o FIELDS with -j, only these fields of each record\n" },
	{ "update", cmd_update, "update UUID [-f FILE | PROPERTY=VALUE ...]",
	  "change a VM's properties",
	  "The update payload is a JSON object from FILE or stdin, or PROPERTY=VALUE pairs.\n"
	  "Besides updatable properties it takes set_customer_metadata, remove_customer_metadata,\n"
	  "set_internal_metadata, remove_internal_metadata, set_tags, remove_tags, add_nics,\n"
	  "remove_nics (MACs) and update_nics (matched by mac).\n" },
	{ "delete", cmd_delete, "delete UUID", "stop a VM and remove it with its datasets",
	  NULL },
	{ "validate", cmd_validate, "validate create|update [-b BRAND] [-f FILE]",
	  "check a payload without acting on it",
	  "  -b BRAND  validate for this brand (kvm or joyent); for update it is required\n" },
	{ "start", cmd_start, "start UUID", "start a VM", NULL },
	{ "stop", cmd_stop, "stop UUID [-F] [-t SECS]", "stop a VM",
	  "Asks the guest to shut down (ACPI power button for kvm, the init's power-off\n"
	  "signal for joyent) and kills it after the timeout.\n"
	  "  -F        kill at once\n"
	  "  -t SECS   how long to wait for a clean shutdown (default 60)\n" },
	{ "reboot", cmd_reboot, "reboot UUID", "reboot a running VM", NULL },
	{ "info", cmd_info, "info UUID", "print the hypervisor's or container's view of a VM",
	  NULL },
	{ "console", cmd_console, "console UUID", "attach to a VM's serial console",
	  "Detach with Ctrl-] (for joyent VMs: Ctrl-] then q).\n" },
	{ "send", cmd_send,
	  "send UUID [-z] [--portable] [-t SECS] > FILE | send UUID [-I] HOST PORT [options]",
	  "move a VM (config and datasets) to a file, a pipe or another node; stops the VM",
	  "To a file: the stream goes to stdout (never a terminal): a file, a pipe, gzip,\n"
	  "ssh. The VM is stopped first and stays stopped and intact; 'vmadm receive' on\n"
	  "another node installs it. See docs/stream-format.md.\n"
	  "To a node (HOST PORT or HOST:PORT, its vmadmd; default port 9777): exits 0 only\n"
	  "once the target has the whole VM installed (and running, if it ran here); this\n"
	  "VM is then stopped with autoboot off and migrated_to set, so that\n"
	  "'vmadm send UUID HOST PORT && vmadm delete UUID' is safe. On failure the VM is\n"
	  "back as it was (restarted if it ran). Both nodes need the same key\n"
	  "('vmadm key'). See docs/migration-protocol.md.\n"
	  "  -z               compress the data inside the stream with zstd (to a file)\n"
	  "  --portable       portable encodings (tar for filesystems, blocks for volumes)\n"
	  "                   instead of the pool's native stream\n"
	  "  -t SECS          how long a running VM gets to shut down (default 60)\n"
	  "  -n               print each dataset's estimated size and the total, send nothing\n"
	  "  --json           one JSON progress event per line on stdout, then a result\n"
	  "  --bwlimit RATE   cap the rate (bytes per second: 800k, 50M, 1G)\n"
	  "  --no-compress    no zstd on the wire (default: zstd if both nodes take it)\n"
	  "  --no-start       leave the VM stopped on the target\n"
	  "  --timeout SECS   network deadline (default: net_timeout, VMADM_NET_TIMEOUT, 30)\n"
	  "  -I               incremental: passes while the VM runs (a full one, then what\n"
	  "                   changed since the previous), then stop it for a last small one\n"
	  "  --downtime-target MS  -I stops iterating once the last delta would take at most\n"
	  "                   MS to send (default 2000)\n"
	  "  --max-passes N   -I makes at most N passes while the VM runs (default 8); it\n"
	  "                   also stops when a delta is not smaller than the one before\n"
	  "  --final-stop shutdown|pause  -I, kvm: how the VM stops for the last delta: a\n"
	  "                   clean shutdown (default), or pause and end QEMU (crash-\n"
	  "                   consistent, a fraction of a second of downtime)\n" },
	{ "receive", cmd_receive, "receive [-f] < STREAM | < CONFIG.json",
	  "install a VM from a 'vmadm send' stream, or take a bare config",
	  "A stream is verified completely (every checksum and its end record) before the\n"
	  "VM is installed, stopped; on any failure nothing is left. A bare JSON config\n"
	  "(as printed by 'vmadm get') makes a VM in state 'receiving' whose datasets you\n"
	  "receive by hand; 'vmadm install UUID' then finishes it.\n"
	  "  -f   replace an existing, stopped VM of the same UUID (only once the new one\n"
	  "       is verified)\n" },
	{ "install", cmd_install, "install UUID",
	  "finish a VM received as a bare config once its datasets are there", NULL },
	{ "key", cmd_key, "key generate [-f] | key show",
	  "make or show the key this node shares with its migration peers",
	  "generate writes ROOT/vmadm.key (mode 0600; -f replaces an existing one). Copy it\n"
	  "to every node this one migrates VMs with. show prints its path and fingerprint,\n"
	  "for two operators to compare.\n" },
	{ NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: vmadm COMMAND [ARGS]\n\n"
		   "Manage the VMs of this node (KVM guests and system containers).\n\n"
		   "Commands:\n");
	for (const struct vmadm_cmd *c = vmadm_cmds; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fprintf(f, "\nRun 'vmadm COMMAND --help' for a command's options.\n\n"
		   "Environment:\n"
		   "  VMADM_ROOT       node root directory (default " VM_DEFAULT_ROOT ")\n"
		   "  VMADM_POOL_TYPE  storage backend: btrfs (default) or dir\n"
		   "  VMADM_ACCEL      kvm accelerator: auto (default), kvm or tcg\n"
		   "  VMADM_DEBUG      print every external command vmadm runs\n");
}

static const struct vmadm_cmd *find_cmd(const char *name)
{
	for (const struct vmadm_cmd *c = vmadm_cmds; c->name; c++)
		if (streq(c->name, name))
			return c;
	return NULL;
}

static void print_cmd_help(const struct vmadm_cmd *c)
{
	printf("Usage: vmadm %s\n\n%s.\n", c->usage, c->summary);
	if (c->help)
		printf("\n%s", c->help);
}

bool vmadm_want_help(const char *cmd, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (streq(argv[i], "-h") || streq(argv[i], "--help")) {
			print_cmd_help(find_cmd(cmd));
			return true;
		}
	return false;
}

int vmadm_usage_error(const char *cmd, struct vm_error *err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vm_error_setx(err, EINVAL, "%s\nUsage: vmadm %s", msg, find_cmd(cmd)->usage);
}

int vmadm_recover(struct vm_node *node, struct vm_error *err)
{
	_cleanup_json_ json_t *notes = NULL;
	json_t *n;
	size_t i;
	int r;

	r = vm_recv_recover(node, &notes, err);
	if (r >= 0)
		r = vm_send_recover(node, &notes, err);
	if (r >= 0)
		r = vm_store_recover(node, &notes, err);
	json_array_foreach(notes, i, n)
		fprintf(stderr, "vmadm: %s\n", json_string_value(n));
	return r;
}

int vmadm_open_node(struct vm_node **ret, struct vm_error *err)
{
	struct vm_node *node;
	int r;

	r = vm_node_open(&node, err);
	if (r < 0)
		return r;
	r = vmadm_recover(node, err);
	if (r < 0) {
		vm_node_free(node);
		return r;
	}
	*ret = node;
	return 0;
}

int vmadm_read_json(const char *file, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *text = NULL;
	const char *name = file && !streq(file, "-") ? file : "/dev/stdin";
	int r;

	if (streq(name, "/dev/stdin") && isatty(0))
		return vm_error_setx(err, EINVAL, "expected a JSON payload on stdin (or -f FILE)");
	r = fs_read_file(name, JSON_MAX, &text, NULL, err);
	if (r < 0)
		return r;
	r = vm_validate_json_text(text, ret, err);
	if (r < 0 && file && !streq(file, "-"))
		return vm_error_prefix(err, "%s", file);
	return r;
}

void vmadm_print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	fputc('\n', stdout);
}

static void log_to_stderr(int level, const char *line, void *userdata)
{
	fprintf(stderr, "vmadm: debug: %s\n", line);
}

int main(int argc, char **argv)
{
	struct vm_error err = { 0 };
	const struct vmadm_cmd *c;
	int r;

	/* A closed pipe is an error we report, not a silent death. */
	signal(SIGPIPE, SIG_IGN);
	if (getenv("VMADM_DEBUG") && *getenv("VMADM_DEBUG"))
		vm_log_set_handler(log_to_stderr, NULL);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (streq(argv[1], "-h") || streq(argv[1], "--help") || streq(argv[1], "help")) {
		if (argc > 2 && (c = find_cmd(argv[2]))) {
			print_cmd_help(c);
			return 0;
		}
		usage(stdout);
		return 0;
	}
	if (streq(argv[1], "--version")) {
		printf("vmadm " VMADM_VERSION "\n");
		return 0;
	}
	c = find_cmd(argv[1]);
	if (!c) {
		fprintf(stderr, "vmadm: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	if (vmadm_want_help(c->name, argc - 1, argv + 1))
		return 0;
	optind = 1;
	r = c->run(argc - 1, argv + 1, &err);
	fflush(stdout);
	if (r < 0) {
		fprintf(stderr, "vmadm %s: %s\n", c->name, err.msg[0] ? err.msg : strerror(-r));
		return 1;
	}
	return 0;
}

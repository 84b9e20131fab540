/* SPDX-License-Identifier: MIT */
/* The vmadm front end: argument parsing and output over libvmadm. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "node/node.h"
#include "util/error.h"

struct vmadm_cmd {
	const char *name;
	int (*run)(int argc, char **argv, struct vm_error *err);
	const char *usage;   /* "create [-f FILE]" */
	const char *summary; /* one line */
	const char *help;    /* the rest of --help, may be NULL */
};

/* Every command; NULL-name terminated. */
extern const struct vmadm_cmd vmadm_cmds[];

/* Open the node, recover from interrupted commands (printing what was
 * cleaned to stderr). */
int vmadm_open_node(struct vm_node **ret, struct vm_error *err);

/* Finish or undo what interrupted receives and creates left on the node,
 * printing a "vmadm: ..." line for each; vmadm_open_node runs it first. */
int vmadm_recover(struct vm_node *node, struct vm_error *err);

/* Print a usage error for cmd and return -EINVAL. */
int vmadm_usage_error(const char *cmd, struct vm_error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* --help for a command: print and exit 0 if argv has -h/--help. */
bool vmadm_want_help(const char *cmd, int argc, char **argv);

/* Read a JSON object from FILE or stdin ("-" or NULL). */
int vmadm_read_json(const char *file, json_t **ret, struct vm_error *err);

/* Print a record as `vmadm get` does (2-space indent, sorted keys). */
void vmadm_print_json(json_t *j);

/* Per-verb entry points (cmd-*.c). */
int cmd_create(int argc, char **argv, struct vm_error *err);
int cmd_get(int argc, char **argv, struct vm_error *err);
int cmd_list(int argc, char **argv, struct vm_error *err);
int cmd_lookup(int argc, char **argv, struct vm_error *err);
int cmd_update(int argc, char **argv, struct vm_error *err);
int cmd_delete(int argc, char **argv, struct vm_error *err);
int cmd_validate(int argc, char **argv, struct vm_error *err);
int cmd_start(int argc, char **argv, struct vm_error *err);
int cmd_stop(int argc, char **argv, struct vm_error *err);
int cmd_reboot(int argc, char **argv, struct vm_error *err);
int cmd_info(int argc, char **argv, struct vm_error *err);
int cmd_console(int argc, char **argv, struct vm_error *err);
int cmd_send(int argc, char **argv, struct vm_error *err);
int cmd_receive(int argc, char **argv, struct vm_error *err);
int cmd_install(int argc, char **argv, struct vm_error *err);
int cmd_key(int argc, char **argv, struct vm_error *err);

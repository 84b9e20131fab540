/* SPDX-License-Identifier: MIT */
/*
 * Debug tracing. The library never prints: it hands debug lines to a handler
 * that a front end installs (vmadm installs one that writes to stderr when
 * VMADM_DEBUG is set; vmadmd one that writes to its log file).
 */
#pragma once

typedef void (*vm_log_handler)(int level, const char *line, void *userdata);

enum { VM_LOG_DEBUG = 7, VM_LOG_INFO = 6, VM_LOG_WARNING = 4, VM_LOG_ERR = 3 };

void vm_log_set_handler(vm_log_handler fn, void *userdata);
void vm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define vm_debug(...) vm_log(VM_LOG_DEBUG, __VA_ARGS__)
#define vm_info(...) vm_log(VM_LOG_INFO, __VA_ARGS__)
#define vm_warn(...) vm_log(VM_LOG_WARNING, __VA_ARGS__)

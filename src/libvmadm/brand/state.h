/* SPDX-License-Identifier: MIT */
/*
 * Runtime-state helpers shared by brands: pidfiles, and a liveness check that
 * does not trust a bare pid (pids are reused): a process counts as the VM's
 * only while it lives, is not a zombie, and its command line names the VM's
 * UUID.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "util/error.h"

/* Read a pidfile holding one decimal pid. -ENOENT when absent, -EBADMSG
 * (with a message naming the file) when it holds no valid pid. */
int brand_pidfile_read(const char *path, pid_t *ret, struct vm_error *err);

/* Does pid run, not as a zombie, with uuid somewhere in /proc/PID/cmdline? */
bool brand_pid_is_vm(pid_t pid, const char *uuid);

/* The pid in pidfile if brand_pid_is_vm(pid, uuid), else 0 (missing, stale
 * or unreadable pidfiles read as 0). */
pid_t brand_running_pid(const char *pidfile, const char *uuid);

/* Wait until brand_pid_is_vm(pid, uuid) turns false, polling every 50 ms, for
 * at most timeout_ms. 0 when gone, -ETIMEDOUT otherwise. */
int brand_wait_pid_gone(pid_t pid, const char *uuid, int timeout_ms);

/* SPDX-License-Identifier: MIT */
/*
 * The one way libvmadm runs external programs (btrfs, mount, qemu-img, ...).
 * Every run logs its exact argv at debug level, and returns the exit status
 * and the captured stderr to the caller, so that errors carry the tool's own
 * words. A program started here is killed (SIGKILL) if the thread that
 * started it ends first, e.g. with its process killed: callers wait for it
 * in the thread that started it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct vm_spawn {
	const char *const *argv; /* argv[0] is looked up in PATH */
	int stdin_fd;		 /* -1: /dev/null */
	int stdout_fd;		 /* -1: /dev/null, unless capture_stdout */
	bool capture_stdout;	 /* collect stdout into out/out_len */

	/* results, owned by the struct: release with vm_spawn_clear() */
	char *out; /* captured stdout, NUL-terminated */
	size_t out_len;
	char *errout; /* captured stderr (last 16 KiB), NUL-terminated, trimmed */
	int status;   /* exit code, or 128 + signal number */
};

/* Run to completion. Returns 0 when the program exited 0; otherwise -EIO
 * (or the errno of a failed fork/exec) with err set to
 * "ARGV0 failed (exit N): STDERR". Results stay in sp either way. */
int vm_spawn_run(struct vm_spawn *sp, struct vm_error *err);

/* Free the captured output. */
void vm_spawn_clear(struct vm_spawn *sp);

/* Start a program without waiting, with the given fds as stdin/stdout
 * (-1: /dev/null) and stderr going to errfd (-1: /dev/null). Returns the
 * pid or a negative errno. */
pid_t vm_spawn_start(const char *const *argv, int in_fd, int out_fd, int err_fd,
		     struct vm_error *err);

/* Wait for a pid started by vm_spawn_start. Returns 0 if it exited 0,
 * otherwise -EIO with err saying "NAME failed (exit N)"; NAME names the
 * program in the message. */
int vm_spawn_wait(pid_t pid, const char *name, struct vm_error *err);

/* Format argv as a shell-like string for logs and messages (malloc'ed). */
char *vm_spawn_argv_string(const char *const *argv);

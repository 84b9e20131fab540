/* SPDX-License-Identifier: MIT */
#pragma once
#include "error.h"

/* Take an exclusive flock on path (created if missing). With wait_secs 0 it
 * fails at once with -EBUSY when another process holds it; otherwise it
 * waits up to wait_secs. Returns the fd holding the lock (close it to
 * release). what names the locked thing in the message. */
int vm_lock_file(const char *path, int wait_secs, const char *what, struct vm_error *err);

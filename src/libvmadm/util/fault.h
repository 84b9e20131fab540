/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for tests, in the spirit of ZFS's zinject: when the
 * environment variable VMADM_FAULT names a point ("create-after-datasets"),
 * reaching that point kills the process at once (_exit(137)), as a crash or
 * a kill -9 would. Never set in production; costs one getenv per point.
 */
#pragma once

void vm_fault_point(const char *name);

/* SPDX-License-Identifier: MIT */
/* Cleanup functions for libarchive's objects, for _cleanup_(...). */
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include "util/macros.h"

DEFINE_CLEANUP(struct archive, archive_read_free)
DEFINE_CLEANUP(struct archive, archive_write_free)
DEFINE_CLEANUP(struct archive_entry, archive_entry_free)
DEFINE_CLEANUP(struct archive_entry_linkresolver, archive_entry_linkresolver_free)

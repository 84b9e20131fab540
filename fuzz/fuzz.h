/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer harnesses of fuzz/ share (docs/fuzzing.md).
 *
 * A harness runs the library as vmadm does on a hostile input and checks,
 * besides what ASan and UBSan see, the library's own promises: a failure
 * comes with a message, a receiver writes only inside the directory it was
 * given, a refused volume leaves no file it made. A broken promise aborts
 * with a line saying which (libFuzzer then keeps the input as a crash).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/stream.h"
#include "util/error.h"

/* The harness's scratch directory, made on first use: when run as root, a
 * tmpfs mounted nodev,nosuid (so that no device node or setuid file an
 * archive makes can be used) in a mount namespace of the process's own,
 * under $FUZZ_SCRATCH (default /tmp); else a directory there. */
const char *fuzz_scratch(void);

/* A node (vmadm root) with a dir pool, under the scratch tmpfs but outside
 * the directory fuzz_scratch_empty empties: made on first call, kept. */
struct vm_node *fuzz_node(void);

/* Remove everything under the scratch directory (clearing the immutable and
 * append-only flags an archive may set); aborts if something stays. */
void fuzz_scratch_empty(void);

/* A file descriptor (the same one every call, owned by this file) that
 * reads back data[0..size) from its start. */
int fuzz_input_fd(const uint8_t *data, size_t size);

/* Abort unless a failed call (r < 0) filled err with its errno and a
 * message, as every libvmadm call promises. what names the call. With
 * FUZZ_VERBOSE set in the environment, every failure's message is printed
 * (to see what an input reaches: `FUZZ_VERBOSE=1 fuzz-NAME FILE...`). */
void fuzz_check_error(int r, const struct vm_error *err, const char *what);

/* Abort with a message (a broken promise of the library). */
void fuzz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * The receive flow of `vmadm receive` on the stream read from fd: reader
 * open, config, then each dataset into a directory of its own under the
 * scratch directory by the receiver its encoding names:
 *
 *   blocks        stream_receive_volume into DIR/disk.raw (not there before)
 *   blocks-delta  stream_receive_volume_delta into DIR/disk.raw (a base
 *                 image the harness made)
 *   tar           stream_receive_tree into DIR/root (empty)
 *   tar-delta     stream_receive_tree_delta into DIR/root (a base tree the
 *                 harness made: files, a hard link, symlinks, a child
 *                 dataset's mount point "data" in skip_names, symlinks to a
 *                 canary directory outside DIR)
 *   btrfs, zfs    read to the end (the native stream checks have a
 *                 harness of their own)
 *
 * stopping at the first failure. Then checks that nothing was written
 * outside DIR/disk.raw or DIR/root, that the canary is untouched and the
 * child dataset still there, that a volume received has its declared size
 * and a refused one left no file it made. The caller empties the scratch
 * directory afterwards.
 */
void fuzz_receive(int fd);

/* Volumes larger than this are read but not received: the receivers make
 * sparse files of the declared size, which costs nothing on the harness's
 * tmpfs (any size goes there, up to the kernel's refusal) but may on
 * another filesystem (64 MiB then). */
uint64_t fuzz_volume_max(void);

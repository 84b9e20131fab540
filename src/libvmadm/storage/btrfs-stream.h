/* SPDX-License-Identifier: MIT */
/*
 * The btrfs send stream, checked command by command before `btrfs receive`
 * applies it: storage/btrfs.c hands the tool only commands that passed.
 *
 * The format (btrfs-progs common/send-stream.c, the kernel's
 * fs/btrfs/send.h): "btrfs-stream\0" and a le32 version (1 to 3), then
 * commands, each a 10-byte header (le32 length of the attributes, le16
 * command, le32 CRC-32C with seed 0 and no final inversion of the header,
 * its CRC field zero, and the attributes) and TLV attributes (le16 type,
 * le16 length, value); from version 2 on, the DATA attribute has no length
 * and runs to the end of the command. The last command is END.
 *
 * What a stream may do here (docs/stream-format.md, section 3, "btrfs"):
 * build exactly one subvolume, named by one plain component, with SUBVOL in
 * a full stream or with SNAPSHOT of the receiver's own base in an
 * incremental one, as its first command; name paths inside that subvolume
 * only (relative, no "." or ".." component, no empty component, no NUL);
 * clone extents only from that subvolume or from the base; set no
 * immutable or append-only flag. Every command is whole (its length within
 * the version's limit, its CRC right), known to the stream's version, with
 * the attributes it needs, of the right sizes, none twice, none it does not
 * take.
 *
 * Pure code: no I/O and no allocation, so it can be unit tested and fuzzed
 * from a buffer (btrfs_stream_check_buffer).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define BTRFS_STREAM_HEADER_SIZE     17
#define BTRFS_STREAM_CMD_HEADER_SIZE 10
/* The largest command, header included: 64 KiB in version 1 (the sender's
 * buffer); from version 2, 16 KiB + 128 KiB of compressed data, rounded up
 * to the page size (192 KiB with 64 KiB pages). */
#define BTRFS_STREAM_CMD_MAX_V1 (64u * 1024)
#define BTRFS_STREAM_CMD_MAX	(192u * 1024)
#define BTRFS_STREAM_UUID_SIZE	16

/* The format's command and attribute numbers (btrfs-progs send.h; the
 * version that brought each: commands 1-22 and attributes 1-24 in 1,
 * 23-25 and 25-31 in 2, 26 and 32-35 in 3). */
enum btrfs_send_cmd {
	BTRFS_SEND_C_SUBVOL = 1,
	BTRFS_SEND_C_SNAPSHOT = 2,
	BTRFS_SEND_C_MKFILE = 3,
	BTRFS_SEND_C_MKDIR = 4,
	BTRFS_SEND_C_MKNOD = 5,
	BTRFS_SEND_C_MKFIFO = 6,
	BTRFS_SEND_C_MKSOCK = 7,
	BTRFS_SEND_C_SYMLINK = 8,
	BTRFS_SEND_C_RENAME = 9,
	BTRFS_SEND_C_LINK = 10,
	BTRFS_SEND_C_UNLINK = 11,
	BTRFS_SEND_C_RMDIR = 12,
	BTRFS_SEND_C_SET_XATTR = 13,
	BTRFS_SEND_C_REMOVE_XATTR = 14,
	BTRFS_SEND_C_WRITE = 15,
	BTRFS_SEND_C_CLONE = 16,
	BTRFS_SEND_C_TRUNCATE = 17,
	BTRFS_SEND_C_CHMOD = 18,
	BTRFS_SEND_C_CHOWN = 19,
	BTRFS_SEND_C_UTIMES = 20,
	BTRFS_SEND_C_END = 21,
	BTRFS_SEND_C_UPDATE_EXTENT = 22,
	BTRFS_SEND_C_FALLOCATE = 23,
	BTRFS_SEND_C_FILEATTR = 24,
	BTRFS_SEND_C_ENCODED_WRITE = 25,
	BTRFS_SEND_C_ENABLE_VERITY = 26,
	BTRFS_SEND_C_MAX = 26,
};

enum btrfs_send_attr {
	BTRFS_SEND_A_UUID = 1,
	BTRFS_SEND_A_CTRANSID = 2,
	BTRFS_SEND_A_INO = 3,
	BTRFS_SEND_A_SIZE = 4,
	BTRFS_SEND_A_MODE = 5,
	BTRFS_SEND_A_UID = 6,
	BTRFS_SEND_A_GID = 7,
	BTRFS_SEND_A_RDEV = 8,
	BTRFS_SEND_A_CTIME = 9,
	BTRFS_SEND_A_MTIME = 10,
	BTRFS_SEND_A_ATIME = 11,
	BTRFS_SEND_A_OTIME = 12,
	BTRFS_SEND_A_XATTR_NAME = 13,
	BTRFS_SEND_A_XATTR_DATA = 14,
	BTRFS_SEND_A_PATH = 15,
	BTRFS_SEND_A_PATH_TO = 16,
	BTRFS_SEND_A_PATH_LINK = 17,
	BTRFS_SEND_A_FILE_OFFSET = 18,
	BTRFS_SEND_A_DATA = 19,
	BTRFS_SEND_A_CLONE_UUID = 20,
	BTRFS_SEND_A_CLONE_CTRANSID = 21,
	BTRFS_SEND_A_CLONE_PATH = 22,
	BTRFS_SEND_A_CLONE_OFFSET = 23,
	BTRFS_SEND_A_CLONE_LEN = 24,
	BTRFS_SEND_A_FALLOCATE_MODE = 25,
	BTRFS_SEND_A_FILEATTR = 26,
	BTRFS_SEND_A_UNENCODED_FILE_LEN = 27,
	BTRFS_SEND_A_UNENCODED_LEN = 28,
	BTRFS_SEND_A_UNENCODED_OFFSET = 29,
	BTRFS_SEND_A_COMPRESSION = 30,
	BTRFS_SEND_A_ENCRYPTION = 31,
	BTRFS_SEND_A_VERITY_ALGORITHM = 32,
	BTRFS_SEND_A_VERITY_BLOCK_SIZE = 33,
	BTRFS_SEND_A_VERITY_SALT_DATA = 34,
	BTRFS_SEND_A_VERITY_SIG_DATA = 35,
	BTRFS_SEND_A_MAX = 35,
};

/* A subvolume as a stream names it. */
struct btrfs_stream_subvol {
	uint8_t uuid[BTRFS_STREAM_UUID_SIZE];
	uint64_t ctransid;
};

/* The state of one stream's check. Fill it with btrfs_stream_check_init. */
struct btrfs_stream_check {
	bool incremental;		   /* a base was given */
	struct btrfs_stream_subvol base;   /* what SNAPSHOT must name */
	uint32_t version;		   /* from the header, 0 before it */
	uint64_t offset;		   /* bytes of the stream checked */
	uint64_t ncmds;			   /* commands checked */
	bool have_subvol;		   /* SUBVOL or SNAPSHOT seen */
	bool ended;			   /* END seen */
	struct btrfs_stream_subvol subvol; /* the subvolume being received */
};

/* What a command that passed leaves to the caller. */
struct btrfs_stream_cmd {
	uint16_t cmd;
	/* A CLONE from the base: the source path inside the base (not
	 * NUL-terminated). The caller must check that it resolves inside the
	 * base without a symlink: `btrfs receive` opens it from the mount,
	 * outside its chroot. NULL otherwise. */
	const char *base_clone_path;
	size_t base_clone_path_len;
};

/* Start the check of a full stream (base NULL) or of an incremental one
 * whose SNAPSHOT must name base: the uuid and ctransid by which `btrfs
 * receive` finds the receiver's copy of the parent (its received uuid and
 * stransid when it was received, else its own uuid and ctransid). */
void btrfs_stream_check_init(struct btrfs_stream_check *c, const struct btrfs_stream_subvol *base);

/* Check the stream header (exactly BTRFS_STREAM_HEADER_SIZE bytes). */
int btrfs_stream_check_header(struct btrfs_stream_check *c, const uint8_t *buf, size_t len,
			      struct vm_error *err);

/* The whole size (header included) of the command whose 10-byte header is
 * hdr; -EPROTO when it is beyond the stream version's limit. */
int btrfs_stream_cmd_size(const struct btrfs_stream_check *c,
			  const uint8_t hdr[BTRFS_STREAM_CMD_HEADER_SIZE], size_t *ret_size,
			  struct vm_error *err);

/* Check one whole command (header included, len bytes) and advance. 0 when
 * it may be applied (ret, if not NULL, says what the caller must still
 * check), -EPROTO with the reason, naming the command's number, name and
 * byte offset, when not. Once a check failed, the stream is refused: do not
 * call again. */
int btrfs_stream_check_cmd(struct btrfs_stream_check *c, const uint8_t *cmd, size_t len,
			   struct btrfs_stream_cmd *ret, struct vm_error *err);

/* Check a whole stream held in a buffer: the header, every command up to
 * END, nothing after it. For tests and fuzzers; base as for init. */
int btrfs_stream_check_buffer(const uint8_t *buf, size_t len,
			      const struct btrfs_stream_subvol *base, struct vm_error *err);

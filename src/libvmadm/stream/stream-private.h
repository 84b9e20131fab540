/* SPDX-License-Identifier: MIT */
/* Helpers shared by the stream's files; not part of the API. */
#pragma once

#include <stdint.h>
#include <string.h>

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define STREAM_SHA256_LEN 32


/* Read exactly len bytes of the current dataset's data; returns len, 0 when
 * the dataset ended before the first byte, or a negative errno (a dataset
 * ending inside the len bytes is an error naming what). */
struct stream_reader;
struct stream_writer;
struct vm_error;
ssize_t stream_read_exact(struct stream_reader *r, void *buf, size_t len, const char *what,
			  struct vm_error *err);

/* The reader's current dataset description (NULL outside a dataset). */
const struct stream_dataset *stream_reader_current(const struct stream_reader *r);

/* stream_write_data without the copy: *ret_buf is room for *ret_len (>= 1)
 * bytes of the current dataset's data, valid until the next writer call;
 * stream_writer_commit(len) then takes the first len of them. */
int stream_writer_space(struct stream_writer *w, void **ret_buf, size_t *ret_len,
			struct vm_error *err);
int stream_writer_commit(struct stream_writer *w, size_t len, struct vm_error *err);

/* The full name of the writer's current dataset ("zones/UUID-disk0"). */
struct stream_writer;
const char *stream_writer_dataset_name(const struct stream_writer *w);

/* The extraction of stream_receive_tree (tree.c), for a pax archive that
 * starts at the reader's position in the current dataset: extracts it
 * under dir with the same checks, then reads the dataset to its DS_END.
 * Shared with the "tar-delta" encoding (delta.c). */
int stream_tree_extract(struct stream_reader *r, const char *dir, struct vm_error *err);

/* name as a message shows it: whole if shorter than STREAM_MSG_NAME_MAX,
 * else its start and end around "..." in buf (an archive's names may be
 * longer than a whole error message). */
#define STREAM_MSG_NAME_MAX 256
const char *stream_msg_name(const char *name, char buf[STREAM_MSG_NAME_MAX]);

/* The same name check the tar receiver applies to its entries: non-empty,
 * relative, no ".." component, not a name the pool reserves (the dir pool's
 * dataset marker anywhere, a volume's image at the root). ds names the
 * dataset and what the name ("deleted path") in the message. */
int stream_entry_name_check(const char *ds, const char *what, const char *name,
			    struct vm_error *err);

/* ---- reading a tree by fd (walk.c) ---- */

#include <stdbool.h>
#include <sys/stat.h>

/* One entry of a walk, valid during the callback. */
struct stream_walk_entry {
	int dirfd;	       /* the directory holding it; the root's own fd for the root */
	const char *name;      /* its name in dirfd; "." for the root */
	const char *rel;       /* its path from the root; "" for the root */
	const struct stat *st; /* its lstat */
	int level;	       /* 0 for the root, 1 for the root's entries ... */
};

enum stream_walk_order {
	/* a directory, then everything below it, entry by entry: nftw's order */
	STREAM_WALK_PREORDER,
	/* a directory's entries, then its subdirectories, the last listed
	 * first: the order of libarchive's read_disk, which the "tar"
	 * encoding kept since its first stream */
	STREAM_WALK_LISTING,
};

#define STREAM_WALK_SAME_DEV 0x1u /* leave out entries of other filesystems (FTW_MOUNT) */
#define STREAM_WALK_SKIP     1	  /* from the callback: do not go into this directory */

/* The callback: 0 to go on, STREAM_WALK_SKIP, or < 0 to stop the walk with
 * that value (setting err). */
typedef int (*stream_walk_fn)(const struct stream_walk_entry *e, void *ud);

/* Visit the tree at rootfd (borrowed), the root first, in readdir order
 * within a directory, never through a symlink. 0, the callback's negative
 * value, or a negative errno with err set. */
int stream_walk(int rootfd, enum stream_walk_order order, unsigned flags, stream_walk_fn fn,
		void *ud, struct vm_error *err);

/* "/proc/self/fd/DIRFD/NAME" (of dirfd itself when name is NULL),
 * malloc'ed: for the calls that have no *at form (lgetxattr, libarchive's
 * reading of a symlink's or a directory's attributes). */
char *stream_fd_path(int dirfd, const char *name);

/* ---- the pax archive of "tar" and "tar-delta" (tree.c) ---- */

struct archive;
struct archive_entry_linkresolver;

/* An archive written into the writer's current dataset (opened by the
 * caller), entry by entry from a tree read by fd. */
struct stream_tree_out {
	struct stream_writer *w;
	struct vm_error *err;
	bool failed;	      /* a write to the stream failed: err says why */
	struct archive *disk; /* reads an entry's metadata from its file */
	struct archive *a;
	struct archive_entry_linkresolver *links;
	char ds[128]; /* the dataset's full name, for messages */
};

int stream_tree_out_open(struct stream_tree_out *t, struct stream_writer *w, struct vm_error *err);

/* Write the entry at name (a path from dirfd; NULL: dirfd itself, the
 * root) as rel ("" for the root, written "."), whose lstat is st: its
 * metadata, attributes, sparse map and data. A hard link to an entry
 * written before becomes a link. */
int stream_tree_out_entry(struct stream_tree_out *t, int dirfd, const char *name, const char *rel,
			  const struct stat *st);

/* End the archive (the dataset stays open); free what it holds. */
int stream_tree_out_close(struct stream_tree_out *t);
void stream_tree_out_done(struct stream_tree_out *t);

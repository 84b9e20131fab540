/* SPDX-License-Identifier: MIT */
/*
 * The "tar" encoding of a filesystem dataset: a pax archive written by
 * libarchive from the dataset's tree (archive_read_disk: metadata, xattrs,
 * ACLs, sparse maps), carried in DS_DATA chunks, and extracted on the other
 * side with archive_write_disk under the dataset's root.
 */
#include "stream/stream.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "storage/pool.h"
#include "stream/stream-private.h"
#include "util/archive.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

/* ---- send ---- */

struct tree_out {
	struct stream_writer *w;
	struct vm_error *err;
	bool failed;
};

static la_ssize_t tree_write_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct tree_out *t = ctx;

	if (stream_write_data(t->w, buf, len, t->err) < 0) {
		t->failed = true;
		archive_set_error(a, EIO, "stream write failed");
		return -1;
	}
	return len;
}

static __thread uint64_t tree_used;
static __thread const char *const *tree_skip;

static bool skipped(const char *rel, const char *const *skip_names);

static int tree_used_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (ftw->level == 1 && skipped(path + ftw->base, tree_skip))
		return FTW_SKIP_SUBTREE;
	tree_used += (uint64_t)st->st_blocks * 512;
	return FTW_CONTINUE;
}

static bool skipped(const char *rel, const char *const *skip_names)
{
	if (!skip_names || strchr(rel, '/'))
		return false;
	for (; *skip_names; skip_names++)
		if (streq(rel, *skip_names))
			return true;
	return false;
}

/* The archive or stream error, prefixed with the dataset and the entry. */
static int tree_error(struct vm_error *err, struct tree_out *t, struct archive *a, const char *ds,
		      const char *entry)
{
	if (t && t->failed)
		return -err->code;
	return vm_error_setx(err, archive_errno(a) > 0 ? archive_errno(a) : EIO, "send %s: %s%s%s",
			     ds, entry ? entry : "", entry ? ": " : "",
			     archive_error_string(a) ? archive_error_string(a) : "archive error");
}

static int copy_file_data(struct archive *disk, struct archive *a, struct tree_out *t,
			  const char *ds, const char *name, struct vm_error *err)
{
	static const uint8_t zeros[64 << 10];
	const void *buf;
	size_t size;
	la_int64_t offset, progress = 0;
	int r;

	while ((r = archive_read_data_block(disk, &buf, &size, &offset)) == ARCHIVE_OK) {
		/* a hole before this block: the pax writer drops hole bytes
		 * according to the entry's sparse map, but must be fed them */
		while (offset > progress) {
			size_t n = offset - progress > (la_int64_t)sizeof(zeros)
					   ? sizeof(zeros)
					   : (size_t)(offset - progress);

			if (archive_write_data(a, zeros, n) < 0)
				return tree_error(err, t, a, ds, name);
			progress += n;
		}
		if (size > 0 && archive_write_data(a, buf, size) < 0)
			return tree_error(err, t, a, ds, name);
		progress = offset + size;
	}
	if (r != ARCHIVE_EOF)
		return tree_error(err, NULL, disk, ds, name);
	return 0;
}

int stream_send_tree(struct stream_writer *w, const struct stream_dataset *ds, const char *dir,
		     const char *const *skip_names, struct vm_error *err)
{
	_cleanup_(archive_read_freep) struct archive *disk = NULL;
	_cleanup_(archive_write_freep) struct archive *a = NULL;
	_cleanup_(archive_entry_linkresolver_freep) struct archive_entry_linkresolver *links = NULL;
	_cleanup_free_ char *root = NULL;
	struct stream_dataset d = *ds;
	struct tree_out t = {.w = w, .err = err};
	char full[128];
	size_t rootlen;
	int r;

	root = realpath(dir, NULL);
	if (!root)
		return vm_error_set(err, errno, "send tree: %s", dir);
	if (!fs_is_dir(root))
		return vm_error_setx(err, ENOTDIR, "send tree: %s is not a directory", dir);
	rootlen = strlen(root);

	tree_used = 0;
	tree_skip = skip_names;
	if (nftw(root, tree_used_cb, 32, FTW_PHYS | FTW_ACTIONRETVAL) < 0)
		return vm_error_set(err, errno, "send tree: walk %s", root);
	d.kind = STREAM_KIND_FILESYSTEM;
	d.encoding = STREAM_ENC_TAR;
	d.size = tree_used;

	disk = archive_read_disk_new();
	a = archive_write_new();
	links = archive_entry_linkresolver_new();
	if (!disk || !a || !links)
		return vm_error_set(err, ENOMEM, "send tree %s", root);
	/* numeric ids only: no uname/gname lookups; do not follow symlinks */
	archive_read_disk_set_symlink_physical(disk);
	if (archive_read_disk_set_behavior(disk, 0) != ARCHIVE_OK ||
	    archive_read_disk_open(disk, root) != ARCHIVE_OK)
		return vm_error_setx(err, EIO, "send tree %s: %s", root,
				     archive_error_string(disk));
	if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK)
		return vm_error_setx(err, EIO, "send tree: %s", archive_error_string(a));
	archive_entry_linkresolver_set_strategy(links, archive_format(a));

	r = stream_begin_dataset(w, &d, err);
	if (r < 0)
		return r;
	snprintf(full, sizeof(full), "%s", stream_writer_dataset_name(w));
	if (archive_write_open(a, &t, NULL, tree_write_cb, NULL) != ARCHIVE_OK)
		return tree_error(err, &t, a, full, NULL);

	for (;;) {
		_cleanup_(archive_entry_freep) struct archive_entry *entry = archive_entry_new();
		struct archive_entry *spare = NULL;
		_cleanup_free_ char *name = NULL;
		const char *path, *rel;

		if (!entry)
			return vm_error_set(err, ENOMEM, "send tree %s", root);
		r = archive_read_next_header2(disk, entry);
		if (r == ARCHIVE_EOF)
			break;
		path = archive_entry_pathname(entry);
		if (r != ARCHIVE_OK)
			return tree_error(err, NULL, disk, full, path);
		if (!path || strncmp(path, root, rootlen) != 0 ||
		    (path[rootlen] != '\0' && path[rootlen] != '/'))
			return vm_error_setx(err, EIO, "send %s: unexpected path %s under %s", full,
					     path ? path : "(null)", root);
		rel = path + rootlen;
		while (*rel == '/')
			rel++;
		if (*rel && skipped(rel, skip_names))
			continue; /* not emitted, not descended into */
		if (archive_entry_filetype(entry) == AE_IFSOCK) {
			/* tar cannot hold a socket, and a socket file means nothing
			 * without its server, which makes a new one (bsdtar skips them
			 * too) */
			vm_debug("send %s: skipping socket %s", full, rel);
			continue;
		}
		if (archive_read_disk_can_descend(disk) &&
		    archive_read_disk_descend(disk) != ARCHIVE_OK)
			return tree_error(err, NULL, disk, full, path);
		name = strdup(*rel ? rel : ".");
		if (!name)
			return vm_error_set(err, ENOMEM, "send tree");
		archive_entry_set_pathname(entry, name);
		archive_entry_set_uname(entry, NULL);
		archive_entry_set_gname(entry, NULL);

		archive_entry_linkify(links, &entry, &spare);
		if (spare)
			archive_entry_free(spare); /* only the cpio strategies defer */
		if (!entry)
			continue;
		r = archive_write_header(a, entry);
		if (r != ARCHIVE_OK)
			return tree_error(err, &t, a, full, name);
		if (archive_entry_filetype(entry) == AE_IFREG && archive_entry_size(entry) > 0 &&
		    !archive_entry_hardlink(entry)) {
			r = copy_file_data(disk, a, &t, full, name, err);
			if (r < 0)
				return r;
		}
		if (archive_write_finish_entry(a) != ARCHIVE_OK)
			return tree_error(err, &t, a, full, name);
	}
	if (archive_write_close(a) != ARCHIVE_OK)
		return tree_error(err, &t, a, full, NULL);
	return stream_end_dataset(w, err);
}

/* ---- receive ---- */

struct tree_in {
	struct stream_reader *r;
	struct vm_error *err;
	bool failed;
};

static la_ssize_t tree_read_cb(struct archive *a, void *ctx, const void **buf)
{
	struct tree_in *t = ctx;
	size_t len = 0;
	int k = stream_read_chunk(t->r, buf, &len, t->err);

	if (k < 0) {
		t->failed = true;
		archive_set_error(a, EIO, "%s", t->err->msg);
		return -1;
	}
	return k == 0 ? 0 : (la_ssize_t)len;
}

const char *stream_msg_name(const char *name, char buf[STREAM_MSG_NAME_MAX])
{
	size_t len = strlen(name);

	if (len < STREAM_MSG_NAME_MAX)
		return name;
	snprintf(buf, STREAM_MSG_NAME_MAX, "%.100s...%s", name,
		 name + len - (STREAM_MSG_NAME_MAX - 104));
	return buf;
}

static bool component_is(const char *p, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(p, name, n) == 0;
}

/* A name the receiver accepts (what: "archive entry", "hard link target",
 * "deleted path"): relative, no ".." component, and none of the names the
 * pool gives a meaning to: the dir pool's dataset marker at any depth (a
 * directory holding one is taken for a child dataset, and the dataset's own
 * at its root is what makes it one), and a volume's image at the root (a
 * filesystem holding one is taken for a volume). A sender never sends them:
 * the marker is left out, and a dataset with the image is a volume. */
static int name_check(const char *ds, const char *what, const char *name, struct vm_error *err)
{
	char buf[STREAM_MSG_NAME_MAX];
	size_t depth = 0;
	bool image = false;
	const char *p;

	if (!name || !*name)
		return vm_error_setx(err, EPROTO, "receive %s: %s without a name", ds, what);
	if (name[0] == '/')
		return vm_error_setx(err, EPROTO, "receive %s: %s \"%s\" is absolute", ds, what,
				     stream_msg_name(name, buf));
	for (p = name; *p;) {
		size_t n = strcspn(p, "/");

		if (component_is(p, n, ".."))
			return vm_error_setx(err, EPROTO,
					     "receive %s: %s \"%s\" has a \"..\" component", ds,
					     what, stream_msg_name(name, buf));
		if (component_is(p, n, VM_DATASET_MARKER))
			return vm_error_setx(err, EPROTO,
					     "receive %s: %s \"%s\": the name " VM_DATASET_MARKER
					     " is reserved for the dataset marker of the dir pool",
					     ds, what, stream_msg_name(name, buf));
		if (n && !component_is(p, n, ".")) {
			image = depth == 0 && component_is(p, n, VOLUME_FILE);
			depth++;
		}
		p += n;
		while (*p == '/')
			p++;
	}
	if (image && depth == 1)
		return vm_error_setx(err, EPROTO,
				     "receive %s: %s \"%s\": the name " VOLUME_FILE
				     " at the root of a filesystem is reserved for a volume's "
				     "image",
				     ds, what, stream_msg_name(name, buf));
	return 0;
}

int stream_entry_name_check(const char *ds, const char *what, const char *name,
			    struct vm_error *err)
{
	return name_check(ds, what, name, err);
}

/* ".", "./", "./." ...: every component "." or empty. */
static bool is_root_name(const char *name)
{
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");

		if (n && !component_is(p, n, "."))
			return false;
		p += n;
		while (*p == '/')
			p++;
	}
	return true;
}

/* A path the kernel takes whole. libarchive would otherwise reach a longer
 * one by chdir()ing along it, which changes the working directory of the
 * whole process (vmadmd's other threads too), and then fails anyway at the
 * owner of the entry (3.6: "Can't set user=0/group=0"). */
static int path_len_check(const char *ds, const char *what, const char *name, const char *full,
			  struct vm_error *err)
{
	char buf[STREAM_MSG_NAME_MAX];

	if (strlen(full) < PATH_MAX)
		return 0;
	return vm_error_setx(err, ENAMETOOLONG,
			     "receive %s: %s \"%s\": its path in the pool is longer than %d bytes",
			     ds, what, stream_msg_name(name, buf), PATH_MAX - 1);
}

/* The file flags (chattr) an archive may set: nodump and noatime, which
 * change nothing for the host. The rest are dropped, as a receiver that is
 * not root would: immutable and append-only would stop the host's root
 * from cleaning up a refused receive or deleting the VM (issue 11), sync,
 * dirsync and journal-data cost the host I/O, and compress, nocow and the
 * like fail on some filesystems, and a flag that fails fails the receive. */
#define TREE_FFLAGS_KEPT (FS_NODUMP_FL | FS_NOATIME_FL)

static void entry_drop_fflags(struct archive_entry *entry, const char *ds, const char *name)
{
	char buf[STREAM_MSG_NAME_MAX];
	unsigned long set, clear;

	archive_entry_fflags(entry, &set, &clear);
	if (!((set | clear) & ~(unsigned long)TREE_FFLAGS_KEPT))
		return;
	vm_debug("receive %s: %s: file flags %s not applied (only nodump and noatime are)", ds,
		 stream_msg_name(name, buf),
		 archive_entry_fflags_text(entry) ? archive_entry_fflags_text(entry) : "?");
	archive_entry_set_fflags(entry, set & TREE_FFLAGS_KEPT, clear & TREE_FFLAGS_KEPT);
}

static int receive_error(struct vm_error *err, struct tree_in *t, struct archive *a, const char *ds,
			 const char *entry)
{
	char buf[STREAM_MSG_NAME_MAX];

	if (t && t->failed)
		return -err->code;
	return vm_error_setx(err, archive_errno(a) > 0 ? archive_errno(a) : EIO,
			     "receive %s: %s%s%s", ds, entry ? stream_msg_name(entry, buf) : "",
			     entry ? ": " : "",
			     archive_error_string(a) ? archive_error_string(a) : "archive error");
}

int stream_receive_tree(struct stream_reader *r, const char *dir, struct vm_error *err)
{
	const struct stream_dataset *ds = stream_reader_current(r);

	if (!ds || ds->kind != STREAM_KIND_FILESYSTEM || ds->encoding != STREAM_ENC_TAR)
		return vm_error_setx(err, EINVAL,
				     "receive %s: not a filesystem in the tar encoding",
				     ds ? stream_reader_dataset_name(r) : "(no dataset)");
	return stream_tree_extract(r, dir, err);
}

int stream_tree_extract(struct stream_reader *r, const char *dir, struct vm_error *err)
{
	const char *dsname = stream_reader_dataset_name(r);
	_cleanup_(archive_read_freep) struct archive *in = NULL;
	_cleanup_(archive_write_freep) struct archive *ext = NULL;
	_cleanup_free_ char *root = NULL;
	struct tree_in t = {.r = r, .err = err};
	struct timespec root_times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
	const int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_TIME |
			  ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_ACL | ARCHIVE_EXTRACT_FFLAGS |
			  ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
			  ARCHIVE_EXTRACT_SPARSE;
	int k;

	/* No symlink in the prefix, so that SECURE_SYMLINKS judges only what
	 * the archive makes; entries are extracted as ROOT/NAME (never
	 * relative to the process's cwd, which is not ours to change). */
	root = realpath(dir, NULL);
	if (!root)
		return vm_error_set(err, errno, "receive %s: %s", dsname, dir);
	if (!fs_is_dir(root))
		return vm_error_setx(err, ENOTDIR, "receive %s: %s is not a directory", dsname,
				     dir);

	in = archive_read_new();
	ext = archive_write_disk_new();
	if (!in || !ext)
		return vm_error_set(err, ENOMEM, "receive %s", dsname);
	archive_read_support_format_tar(in);
	archive_write_disk_set_options(ext, flags);
	if (archive_read_open(in, &t, NULL, tree_read_cb, NULL) != ARCHIVE_OK)
		return receive_error(err, &t, in, dsname, NULL);

	for (;;) {
		struct archive_entry *entry;
		_cleanup_free_ char *full = NULL, *link = NULL, *name = NULL;
		char nbuf[STREAM_MSG_NAME_MAX];
		const char *hl;
		const void *buf;
		size_t size;
		la_int64_t off;

		k = archive_read_next_header(in, &entry);
		if (k == ARCHIVE_EOF)
			break;
		if (k != ARCHIVE_OK)
			return receive_error(err, &t, in, dsname, NULL);
		k = name_check(dsname, "archive entry", archive_entry_pathname(entry), err);
		if (k < 0)
			return k;
		/* a copy: set_pathname below frees the entry's string */
		name = strdup(archive_entry_pathname(entry));
		if (!name)
			return vm_error_set(err, ENOMEM, "receive %s", dsname);
		if (is_root_name(name) && archive_entry_filetype(entry) != AE_IFDIR)
			return vm_error_setx(err, EPROTO,
					     "receive %s: archive entry \"%s\" (the root) is not a "
					     "directory",
					     dsname, stream_msg_name(name, nbuf));
		if (is_root_name(name) && archive_entry_mtime_is_set(entry)) {
			root_times[0].tv_sec = archive_entry_atime(entry);
			root_times[0].tv_nsec = archive_entry_atime_nsec(entry);
			if (!archive_entry_atime_is_set(entry))
				root_times[0] = (struct timespec){0, UTIME_OMIT};
			root_times[1].tv_sec = archive_entry_mtime(entry);
			root_times[1].tv_nsec = archive_entry_mtime_nsec(entry);
		}
		full = is_root_name(name) ? strdup(root) : strdup_printf("%s/%s", root, name);
		if (!full)
			return vm_error_set(err, ENOMEM, "receive %s", dsname);
		k = path_len_check(dsname, "archive entry", name, full, err);
		if (k < 0)
			return k;
		archive_entry_set_pathname(entry, full);
		hl = archive_entry_hardlink(entry);
		if (hl) {
			k = name_check(dsname, "hard link target", hl, err);
			if (k < 0)
				return k;
			if (is_root_name(hl))
				return vm_error_setx(
				    err, EPROTO, "receive %s: \"%s\" is a hard link to the root",
				    dsname, stream_msg_name(name, nbuf));
			link = strdup_printf("%s/%s", root, hl);
			if (!link)
				return vm_error_set(err, ENOMEM, "receive %s", dsname);
			k = path_len_check(dsname, "hard link target", hl, link, err);
			if (k < 0)
				return k;
			archive_entry_set_hardlink(entry, link);
		}
		entry_drop_fflags(entry, dsname, name);
		k = archive_write_header(ext, entry);
		if (k != ARCHIVE_OK)
			return receive_error(err, NULL, ext, dsname, name);
		if (archive_entry_size(entry) > 0) {
			while ((k = archive_read_data_block(in, &buf, &size, &off)) == ARCHIVE_OK)
				if (archive_write_data_block(ext, buf, size, off) != ARCHIVE_OK)
					return receive_error(err, NULL, ext, dsname, name);
			if (k != ARCHIVE_EOF)
				return receive_error(err, &t, in, dsname, name);
		}
		if (archive_write_finish_entry(ext) != ARCHIVE_OK)
			return receive_error(err, NULL, ext, dsname, name);
	}
	/* directory modes and times are applied here */
	if (archive_write_close(ext) != ARCHIVE_OK)
		return receive_error(err, NULL, ext, dsname, NULL);
	/* libarchive sets an existing directory's times at once, not at close
	 * like the ones it creates; the entries made since changed them */
	if (utimensat(AT_FDCWD, root, root_times, AT_SYMLINK_NOFOLLOW) < 0)
		return vm_error_set(err, errno, "receive %s: set the times of %s", dsname, root);
	/* the archive's end may come before the dataset's: read (and check)
	 * the rest, up to DS_END */
	for (;;) {
		const void *buf;
		size_t len;

		k = stream_read_chunk(r, &buf, &len, err);
		if (k < 0)
			return k;
		if (k == 0)
			return 0;
	}
}

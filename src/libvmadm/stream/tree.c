/* SPDX-License-Identifier: MIT */
/*
 * The "tar" encoding of a filesystem dataset: a pax archive written by
 * libarchive from the snapshot's tree, which it reads by fd (stream_walk,
 * and archive_read_disk_entry_from_file for metadata, xattrs, ACLs and
 * sparse maps), carried in DS_DATA chunks, and extracted on the other side
 * with archive_write_disk under the dataset's root.
 */
#include "stream/stream.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/pool.h"
#include "stream/stream-private.h"
#include "util/archive.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"

/* ---- send ---- */

static la_ssize_t tree_write_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct stream_tree_out *t = ctx;

	if (stream_write_data(t->w, buf, len, t->err) < 0) {
		t->failed = true;
		archive_set_error(a, EIO, "stream write failed");
		return -1;
	}
	return len;
}

/* The archive or stream error, prefixed with the dataset and the entry. */
static int tree_error(struct stream_tree_out *t, struct archive *a, const char *entry)
{
	if (t->failed)
		return -t->err->code;
	return vm_error_setx(t->err, archive_errno(a) > 0 ? archive_errno(a) : EIO,
			     "send %s: %s%s%s", t->ds, entry ? entry : "", entry ? ": " : "",
			     archive_error_string(a) ? archive_error_string(a) : "archive error");
}

int stream_tree_out_open(struct stream_tree_out *t, struct stream_writer *w, struct vm_error *err)
{
	*t = (struct stream_tree_out){.w = w, .err = err};
	snprintf(t->ds, sizeof(t->ds), "%s", stream_writer_dataset_name(w));
	t->disk = archive_read_disk_new();
	t->a = archive_write_new();
	t->links = archive_entry_linkresolver_new();
	if (!t->disk || !t->a || !t->links)
		return vm_error_set(err, ENOMEM, "send %s", t->ds);
	/* numeric ids only: no uname/gname lookups; do not follow symlinks */
	archive_read_disk_set_symlink_physical(t->disk);
	if (archive_read_disk_set_behavior(t->disk, 0) != ARCHIVE_OK)
		return tree_error(t, t->disk, NULL);
	if (archive_write_set_format_pax(t->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(t->a, 1) != ARCHIVE_OK)
		return tree_error(t, t->a, NULL);
	archive_entry_linkresolver_set_strategy(t->links, archive_format(t->a));
	if (archive_write_open(t->a, t, NULL, tree_write_cb, NULL) != ARCHIVE_OK)
		return tree_error(t, t->a, NULL);
	return 0;
}

int stream_tree_out_close(struct stream_tree_out *t)
{
	if (archive_write_close(t->a) != ARCHIVE_OK)
		return tree_error(t, t->a, NULL);
	return 0;
}

void stream_tree_out_done(struct stream_tree_out *t)
{
	archive_read_freep(&t->disk);
	archive_write_freep(&t->a);
	archive_entry_linkresolver_freep(&t->links);
}

/* The file's bytes, holes fed as zeros (the pax writer drops them by the
 * entry's sparse map). */
static int write_file_data(struct stream_tree_out *t, int fd, uint64_t size, const char *name)
{
	static const uint8_t zeros[64 << 10];
	_cleanup_free_ uint8_t *buf = malloc(1 << 20);
	uint64_t pos = 0;

	if (!buf)
		return vm_error_set(t->err, ENOMEM, "send %s", t->ds);
	while (pos < size) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;
		if (data < 0)
			data = errno == ENXIO ? (off_t)size : (off_t)pos;
		hole = data < (off_t)size ? lseek(fd, data, SEEK_HOLE) : (off_t)size;
		if (hole < 0 || hole > (off_t)size)
			hole = size;
		for (; pos < (uint64_t)data; pos += MIN(sizeof(zeros), data - pos))
			if (archive_write_data(t->a, zeros, MIN(sizeof(zeros), data - pos)) < 0)
				return tree_error(t, t->a, name);
		while (pos < (uint64_t)hole) {
			ssize_t n = pread(fd, buf, MIN((uint64_t)(1 << 20), hole - pos), pos);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return vm_error_set(t->err, n < 0 ? errno : EIO, "send %s: read %s",
						    t->ds, name);
			if (archive_write_data(t->a, buf, n) < 0)
				return tree_error(t, t->a, name);
			pos += n;
		}
	}
	return 0;
}

int stream_tree_out_entry(struct stream_tree_out *t, int dirfd, const char *name, const char *rel,
			  const struct stat *st)
{
	_cleanup_(archive_entry_freep) struct archive_entry *entry = archive_entry_new();
	_cleanup_free_ char *src = stream_fd_path(dirfd, name);
	struct archive_entry *spare = NULL;
	_cleanup_close_ int fd = -1;
	const char *pname = *rel ? rel : ".";
	int r;

	if (!entry || !src)
		return vm_error_set(t->err, ENOMEM, "send %s", t->ds);
	/* A file's data and attributes through an fd of our own; the rest by
	 * the path of the entry in its directory's fd (libarchive reads a
	 * symlink's and a directory's attributes by path). Devices and fifos
	 * are never opened. */
	if (S_ISREG(st->st_mode)) {
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vm_error_set(t->err, errno, "send %s: open %s", t->ds, pname);
	}
	archive_entry_copy_sourcepath(entry, src);
	archive_entry_copy_pathname(entry, pname);
	if (archive_read_disk_entry_from_file(t->disk, entry, fd, st) != ARCHIVE_OK)
		return tree_error(t, t->disk, pname);
	archive_entry_copy_pathname(entry, pname);
	archive_entry_set_uname(entry, NULL);
	archive_entry_set_gname(entry, NULL);
	archive_entry_linkify(t->links, &entry, &spare);
	if (spare)
		archive_entry_free(spare); /* only the cpio strategies defer */
	if (!entry)
		return 0;
	if (archive_write_header(t->a, entry) != ARCHIVE_OK)
		return tree_error(t, t->a, pname);
	if (S_ISREG(st->st_mode) && st->st_size > 0 && !archive_entry_hardlink(entry)) {
		r = write_file_data(t, fd, st->st_size, pname);
		if (r < 0)
			return r;
	}
	if (archive_write_finish_entry(t->a) != ARCHIVE_OK)
		return tree_error(t, t->a, pname);
	return 0;
}

static bool skipped(const char *name, const char *const *skip_names)
{
	for (; skip_names && *skip_names; skip_names++)
		if (streq(name, *skip_names))
			return true;
	return false;
}

struct tree_send {
	struct stream_tree_out out;
	const char *const *skip; /* top-level names left out */
	uint64_t used;
};

static int tree_used_cb(const struct stream_walk_entry *e, void *ud)
{
	struct tree_send *s = ud;

	if (e->level == 1 && skipped(e->name, s->skip))
		return STREAM_WALK_SKIP;
	s->used += (uint64_t)e->st->st_blocks * 512;
	return 0;
}

static int tree_entry_cb(const struct stream_walk_entry *e, void *ud)
{
	struct tree_send *s = ud;

	if (e->level == 1 && skipped(e->name, s->skip))
		return STREAM_WALK_SKIP; /* not emitted, not descended into */
	if (S_ISSOCK(e->st->st_mode)) {
		/* tar cannot hold a socket, and a socket file means nothing
		 * without its server, which makes a new one (bsdtar skips them
		 * too) */
		vm_debug("send %s: skipping socket %s", s->out.ds, e->rel);
		return 0;
	}
	return stream_tree_out_entry(&s->out, e->dirfd, e->level ? e->name : NULL, e->rel, e->st);
}

int stream_send_tree(struct stream_writer *w, const struct stream_dataset *ds, int dirfd,
		     const char *const *skip_names, struct vm_error *err)
{
	struct tree_send s = {.skip = skip_names};
	struct stream_dataset d = *ds;
	int r;

	r = stream_walk(dirfd, STREAM_WALK_PREORDER, 0, tree_used_cb, &s, err);
	if (r < 0)
		return vm_error_prefix(err, "send tree");
	d.kind = STREAM_KIND_FILESYSTEM;
	d.encoding = STREAM_ENC_TAR;
	d.size = s.used;
	r = stream_begin_dataset(w, &d, err);
	if (r < 0)
		return r;
	r = stream_tree_out_open(&s.out, w, err);
	if (r >= 0)
		r = stream_walk(dirfd, STREAM_WALK_LISTING, 0, tree_entry_cb, &s, err);
	if (r >= 0)
		r = stream_tree_out_close(&s.out);
	stream_tree_out_done(&s.out);
	if (r < 0)
		return r;
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

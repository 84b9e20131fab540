/* SPDX-License-Identifier: MIT */
/*
 * Reading a snapshot's tree by fd: the walk the portable encodings share
 * (stream_walk, stream-private.h), and what a dataset declares it takes
 * (stream_declare_*, stream.h).
 *
 * The pool hands out a snapshot as an open directory (vm_pool_open_snapshot);
 * nothing here knows where it lives. The walk holds one directory open at a
 * time: it goes down with openat() and back up with "..", which in a
 * read-only snapshot is the directory it came from (checked), so that no
 * depth of tree runs it out of descriptors or past PATH_MAX.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/pool.h"
#include "stream/stream-private.h"
#include "stream/stream.h"
#include "util/fs.h"
#include "util/macros.h"

struct walk_frame {
	char **names; /* the directory's entries, as readdir gave them */
	size_t n, next;
	size_t *subdirs; /* STREAM_WALK_LISTING: indexes of names to go into */
	size_t nsub;
	size_t rel_len; /* length of the directory's own path in rel */
	dev_t dev;	/* the directory, to check the way back up */
	ino_t ino;
};

struct walk {
	int rootfd, cur; /* cur: the directory being read (rootfd or owned) */
	dev_t root_dev;
	unsigned flags;
	enum stream_walk_order order;
	stream_walk_fn fn;
	void *ud;
	struct vm_error *err;
	struct walk_frame *frames;
	size_t depth, cap;
	char *rel; /* path of the current entry from the root */
	size_t rel_cap;
};

static void frame_free(struct walk_frame *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->names[i]);
	free(f->names);
	free(f->subdirs);
	*f = (struct walk_frame){0};
}

/* rel[0..len) + "/" + name (no "/" at the top) */
static int rel_set(struct walk *w, size_t len, const char *name)
{
	size_t need = len + 1 + strlen(name) + 1;

	if (need > w->rel_cap) {
		char *n = realloc(w->rel, need * 2);
		if (!n)
			return -ENOMEM;
		w->rel = n;
		w->rel_cap = need * 2;
	}
	if (len)
		w->rel[len++] = '/';
	strcpy(w->rel + len, name);
	return 0;
}

/* The names in directory fd (not ".", ".."), in readdir order. */
static int read_names(int fd, struct walk_frame *f, struct vm_error *err)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	_cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	size_t cap = 0;
	struct dirent *de;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return vm_error_set(err, errno, "read directory");
	}
	/* a dup shares the offset: from the start, whoever read fd before */
	rewinddir(d);
	while ((errno = 0, de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		if (f->n == cap) {
			char **nv = realloc(f->names, (cap ? cap * 2 : 32) * sizeof(char *));
			if (!nv)
				return vm_error_set(err, ENOMEM, "read directory");
			f->names = nv;
			cap = cap ? cap * 2 : 32;
		}
		f->names[f->n] = strdup(de->d_name);
		if (!f->names[f->n])
			return vm_error_set(err, ENOMEM, "read directory");
		f->n++;
	}
	if (errno)
		return vm_error_set(err, errno, "read directory");
	return 0;
}

/* Go into directory name of the current one, whose path is now rel, and
 * read it. */
static int walk_enter(struct walk *w, const char *name, const struct stat *st)
{
	struct walk_frame *f;
	int fd, r;

	if (w->depth == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 16;
		struct walk_frame *nf = realloc(w->frames, nc * sizeof(*nf));
		if (!nf)
			return vm_error_set(w->err, ENOMEM, "walk %s", w->rel);
		w->frames = nf;
		w->cap = nc;
	}
	if (w->depth == 0) {
		fd = w->rootfd;
	} else {
		fd = openat(w->cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vm_error_set(w->err, errno, "walk: open %s", w->rel);
		if (w->cur != w->rootfd)
			close(w->cur);
	}
	w->cur = fd;
	f = &w->frames[w->depth++];
	*f = (struct walk_frame){.rel_len = strlen(w->rel), .dev = st->st_dev, .ino = st->st_ino};
	r = read_names(fd, f, w->err);
	if (r < 0)
		return vm_error_prefix(w->err, "walk %s", *w->rel ? w->rel : ".");
	return 0;
}

/* Done with the current directory: back to its parent. */
static int walk_leave(struct walk *w)
{
	struct walk_frame *f = &w->frames[--w->depth];
	struct walk_frame *up = w->depth > 0 ? &w->frames[w->depth - 1] : NULL;
	struct stat st;
	int fd;

	frame_free(f);
	if (!up)
		return 0;
	if (w->depth == 1) {
		fd = w->rootfd;
	} else {
		fd = openat(w->cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return vm_error_set(w->err, errno, "walk: back up from %s", w->rel);
		if (fstat(fd, &st) < 0 || st.st_dev != up->dev || st.st_ino != up->ino) {
			close(fd);
			return vm_error_setx(w->err, EIO, "walk: the tree changed under %s",
					     w->rel);
		}
	}
	if (w->cur != w->rootfd)
		close(w->cur);
	w->cur = fd;
	w->rel[up->rel_len] = '\0';
	return 0;
}

/* Visit the current frame's next entry; > 0 when it is a directory to go
 * into now (STREAM_WALK_PREORDER), after which its frame is on top. */
static int walk_visit(struct walk *w, struct walk_frame *f, const char *name, size_t idx)
{
	struct stream_walk_entry e;
	struct stat st;
	int r;

	r = rel_set(w, f->rel_len, name);
	if (r < 0)
		return vm_error_set(w->err, r, "walk");
	if (fstatat(w->cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return vm_error_set(w->err, errno, "walk: stat %s", w->rel);
	}
	if ((w->flags & STREAM_WALK_SAME_DEV) && st.st_dev != w->root_dev)
		return 0;
	e = (struct stream_walk_entry){
	    .dirfd = w->cur, .name = name, .rel = w->rel, .st = &st, .level = (int)w->depth};
	r = w->fn(&e, w->ud);
	if (r < 0)
		return r;
	if (r == STREAM_WALK_SKIP || !S_ISDIR(st.st_mode))
		return 0;
	if (w->order == STREAM_WALK_PREORDER) {
		r = walk_enter(w, name, &st);
		return r < 0 ? r : 1;
	}
	f->subdirs[f->nsub++] = idx;
	return 0;
}

/* STREAM_WALK_LISTING: the directory on top was listed; go into its
 * subdirectories, last first. */
static int walk_next_subdir(struct walk *w, bool *ret_entered)
{
	struct walk_frame *f = &w->frames[w->depth - 1];
	struct stat st;
	const char *name;

	*ret_entered = false;
	if (f->nsub == 0)
		return 0;
	name = f->names[f->subdirs[--f->nsub]];
	if (rel_set(w, f->rel_len, name) < 0)
		return vm_error_set(w->err, ENOMEM, "walk");
	if (fstatat(w->cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return vm_error_set(w->err, errno, "walk: stat %s", w->rel);
	*ret_entered = true;
	return walk_enter(w, name, &st);
}

static int walk_run(struct walk *w)
{
	int r;

	while (w->depth > 0) {
		struct walk_frame *f = &w->frames[w->depth - 1];
		bool entered;

		if (w->order == STREAM_WALK_LISTING && !f->subdirs && f->n) {
			f->subdirs = calloc(f->n, sizeof(size_t));
			if (!f->subdirs)
				return vm_error_set(w->err, ENOMEM, "walk");
		}
		if (f->next < f->n) {
			size_t i = f->next++;
			r = walk_visit(w, f, f->names[i], i);
			if (r < 0)
				return r;
			continue;
		}
		if (w->order == STREAM_WALK_LISTING) {
			r = walk_next_subdir(w, &entered);
			if (r < 0)
				return r;
			if (entered)
				continue;
		}
		r = walk_leave(w);
		if (r < 0)
			return r;
	}
	return 0;
}

int stream_walk(int rootfd, enum stream_walk_order order, unsigned flags, stream_walk_fn fn,
		void *ud, struct vm_error *err)
{
	struct walk w = {.rootfd = rootfd,
			 .cur = rootfd,
			 .flags = flags,
			 .order = order,
			 .fn = fn,
			 .ud = ud,
			 .err = err};
	struct stream_walk_entry e;
	struct stat st;
	int r;

	if (fstat(rootfd, &st) < 0)
		return vm_error_set(err, errno, "walk: stat the tree's root");
	if (!S_ISDIR(st.st_mode))
		return vm_error_setx(err, ENOTDIR, "walk: the tree's root is not a directory");
	w.root_dev = st.st_dev;
	r = rel_set(&w, 0, "");
	if (r < 0)
		return vm_error_set(err, r, "walk");
	e = (struct stream_walk_entry){
	    .dirfd = rootfd, .name = ".", .rel = w.rel, .st = &st, .level = 0};
	r = fn(&e, ud);
	if (r >= 0 && r != STREAM_WALK_SKIP) {
		r = walk_enter(&w, ".", &st);
		if (r >= 0)
			r = walk_run(&w);
	}
	while (w.depth > 0)
		frame_free(&w.frames[--w.depth]);
	if (w.cur != rootfd)
		close(w.cur);
	free(w.frames);
	free(w.rel);
	return r < 0 ? r : 0;
}

char *stream_fd_path(int dirfd, const char *name)
{
	return name ? strdup_printf("/proc/self/fd/%d/%s", dirfd, name)
		    : strdup_printf("/proc/self/fd/%d", dirfd);
}

/* ---- what a dataset declares ---- */

/*
 * DS_BEGIN's "used": what the dataset takes, declared before its data. The
 * receiver checks its free space against it, and its reader refuses data
 * past it plus 1/8 and 16 MiB (stream_dataset_data_limit). So it is
 * measured on the snapshot that is sent (not the dataset, which a running
 * VM changes meanwhile), and it bounds what every encoding writes:
 *   - each entry's allocated blocks (file data: no encoding sends more;
 *     block headers and per-write btrfs command bytes stay within 1/8),
 *   - DECLARE_ENTRY_BYTES per file, directory or link: its archive headers
 *     or btrfs commands (an empty file, a symlink or a directory takes no
 *     block but about 1.5 KiB of pax headers), and its metadata on the
 *     receiver,
 *   - for a delta, DECLARE_GONE_BYTES and twice its path per entry of the
 *     snapshot it builds on (deletion lists, unlink commands),
 *   - for a "blocks-delta" volume, every 64 KiB grain that holds data
 *     (a changed grain travels whole) and a zero-range header per grain.
 */
#define DECLARE_ENTRY_BYTES 2048u
#define DECLARE_GONE_BYTES  64u

struct declare {
	uint64_t sum;
	bool gone;
};

static int declare_cb(const struct stream_walk_entry *e, void *ud)
{
	struct declare *d = ud;

	/* "gone": its path (with the '/' before it) in a deletion list */
	if (d->gone)
		d->sum += DECLARE_GONE_BYTES + (e->level ? 2 * (1 + strlen(e->rel)) : 0);
	else
		d->sum += (uint64_t)e->st->st_blocks * 512 + DECLARE_ENTRY_BYTES;
	return 0;
}

int stream_declare_tree(int dirfd, int old_dirfd, uint64_t *ret, struct vm_error *err)
{
	struct declare d = {0};
	int r;

	/* the snapshot only: not another filesystem mounted inside */
	r = stream_walk(dirfd, STREAM_WALK_PREORDER, STREAM_WALK_SAME_DEV, declare_cb, &d, err);
	if (r >= 0 && old_dirfd >= 0) {
		d.gone = true;
		r = stream_walk(old_dirfd, STREAM_WALK_PREORDER, STREAM_WALK_SAME_DEV, declare_cb,
				&d, err);
	}
	if (r < 0)
		return vm_error_prefix(err, "declare");
	*ret = d.sum;
	return 0;
}

/* Bytes of the 64 KiB grains of fd that hold data. */
static int data_grains(int fd, const struct stat *st, uint64_t *ret)
{
	uint64_t sum = 0, counted = 0; /* grains below counted are in sum */
	off_t off = 0;

	while (off < st->st_size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;
		uint64_t from, to;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0) {
			data = off; /* no SEEK_DATA: all of it */
			hole = st->st_size;
		} else {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0)
				hole = st->st_size;
		}
		from = (uint64_t)data / STREAM_ZERO_GRAIN * STREAM_ZERO_GRAIN;
		to = ((uint64_t)hole + STREAM_ZERO_GRAIN - 1) / STREAM_ZERO_GRAIN *
		     STREAM_ZERO_GRAIN;
		if (from < counted)
			from = counted;
		if (to > from)
			sum += to - from;
		if (to > counted)
			counted = to;
		off = hole;
	}
	*ret = sum + STREAM_BLOCK_HEADER_SIZE * ((uint64_t)st->st_size / STREAM_ZERO_GRAIN + 1);
	return 0;
}

int stream_declare_volume(int fd, int old_fd, bool blocks_delta, uint64_t *ret,
			  struct vm_error *err)
{
	struct stat st;
	uint64_t grains = 0;

	if (fstat(fd, &st) < 0)
		return vm_error_set(err, errno, "declare: stat the volume");
	/* as a tree of the volume's directory and its image declares */
	*ret = (uint64_t)st.st_blocks * 512 + 2 * DECLARE_ENTRY_BYTES;
	if (old_fd >= 0)
		*ret += 2 * DECLARE_GONE_BYTES + 2 * (1 + strlen(VOLUME_FILE));
	if (blocks_delta) {
		data_grains(fd, &st, &grains);
		*ret += grains;
	}
	return 0;
}

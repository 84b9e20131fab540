/* SPDX-License-Identifier: MIT */
/*
 * The "blocks" encoding of a volume: (u64 offset, u64 length, data) block
 * records for the parts of the image that hold data. Holes (SEEK_DATA /
 * SEEK_HOLE) and all-zero 64 KiB blocks are left out; the receiver starts
 * from a file of holes, so the copy is as sparse as the original or more.
 */
#include "stream/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream/stream-private.h"
#include "util/fs.h"
#include "util/macros.h"

static bool all_zero(const uint8_t *p, size_t len)
{
	static const uint8_t zeros[256];

	while (len >= sizeof(zeros)) {
		if (memcmp(p, zeros, sizeof(zeros)) != 0)
			return false;
		p += sizeof(zeros);
		len -= sizeof(zeros);
	}
	return memcmp(p, zeros, len) == 0;
}

static int emit_block(struct stream_writer *w, uint64_t off, const uint8_t *data, size_t len,
		      struct vm_error *err)
{
	uint8_t hdr[STREAM_BLOCK_HEADER_SIZE];
	int r;

	put_le64(hdr, off);
	put_le64(hdr + 8, len);
	r = stream_write_data(w, hdr, sizeof(hdr), err);
	if (r < 0)
		return r;
	return stream_write_data(w, data, len, err);
}

/* Send [start, end) of fd: read it in 64 KiB grains, coalesce the non-zero
 * ones into runs of at most STREAM_BLOCK_MAX bytes. */
static int send_region(struct stream_writer *w, int fd, const char *path, uint8_t *buf,
		       uint64_t start, uint64_t end, struct vm_error *err)
{
	uint64_t run_off = 0;
	size_t run_len = 0;
	int r;

	for (uint64_t off = start; off < end;) {
		size_t want = STREAM_ZERO_GRAIN - (off % STREAM_ZERO_GRAIN);
		ssize_t n;

		if (want > end - off)
			want = end - off;
		n = pread(fd, buf + run_len, want, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vm_error_set(err, errno, "read %s at offset %llu", path,
					    (unsigned long long)off);
		}
		if (n == 0)
			return vm_error_setx(err, EIO, "read %s: it shrank to %llu bytes", path,
					     (unsigned long long)off);
		if (all_zero(buf + run_len, n)) {
			if (run_len) {
				r = emit_block(w, run_off, buf, run_len, err);
				if (r < 0)
					return r;
				run_len = 0;
			}
		} else {
			if (run_len == 0)
				run_off = off;
			run_len += n;
			if (run_len + STREAM_ZERO_GRAIN > STREAM_BLOCK_MAX) {
				r = emit_block(w, run_off, buf, run_len, err);
				if (r < 0)
					return r;
				run_len = 0;
			}
		}
		off += n;
	}
	if (run_len)
		return emit_block(w, run_off, buf, run_len, err);
	return 0;
}

int stream_send_volume(struct stream_writer *w, const struct stream_dataset *ds, int fd,
		       struct vm_error *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct stream_dataset d = *ds;
	const char *name;
	uint64_t size, off = 0;
	int r;

	r = fs_image_size(fd, &size);
	if (r == -EINVAL)
		return vm_error_setx(err, EINVAL, "send volume: %s is not a file or block device",
				     ds->snapshot);
	if (r < 0)
		return vm_error_set(err, -r, "send volume: size of %s", ds->snapshot);
	buf = malloc(STREAM_BLOCK_MAX);
	if (!buf)
		return vm_error_set(err, ENOMEM, "send volume %s", ds->snapshot);

	d.kind = STREAM_KIND_VOLUME;
	d.encoding = STREAM_ENC_BLOCKS;
	d.size = size;
	r = stream_begin_dataset(w, &d, err);
	if (r < 0)
		return r;
	name = stream_writer_dataset_name(w);

	while (off < size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO)
				break; /* only a hole from off to the end */
			if (errno != EINVAL)
				return vm_error_set(err, errno, "send volume: SEEK_DATA in %s",
						    name);
			data = off; /* no hole support: read it all */
			hole = size;
		} else {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0)
				return vm_error_set(err, errno, "send volume: SEEK_HOLE in %s",
						    name);
		}
		if ((uint64_t)hole > size)
			hole = size;
		r = send_region(w, fd, name, buf, data, hole, err);
		if (r < 0)
			return r;
		off = hole;
	}
	return stream_end_dataset(w, err);
}

int stream_receive_volume(struct stream_reader *r, const char *path, struct vm_error *err)
{
	const struct stream_dataset *ds = stream_reader_current(r);
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int fd = -1;
	const char *name = stream_reader_dataset_name(r);
	uint64_t next = 0;
	bool created = false;
	int k;

	if (!ds || ds->kind != STREAM_KIND_VOLUME || ds->encoding != STREAM_ENC_BLOCKS)
		return vm_error_setx(err, EINVAL, "receive %s: not a volume in the blocks encoding",
				     ds ? name : "(no dataset)");
	buf = malloc(STREAM_BLOCK_MAX);
	if (!buf)
		return vm_error_set(err, ENOMEM, "receive %s", name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0)
		created = true;
	else if (errno == EEXIST)
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vm_error_set(err, errno, "receive %s: open %s", name, path);
	/* all zeros (a file: all holes), of exactly the declared size */
	k = fs_image_clear(fd, ds->size);
	if (k < 0) {
		k = vm_error_set(err, -k, "receive %s: make %s %llu bytes of zeros", name, path,
				 (unsigned long long)ds->size);
		goto out;
	}

	for (;;) {
		uint8_t hdr[STREAM_BLOCK_HEADER_SIZE];
		uint64_t off, len;
		ssize_t n = stream_read_exact(r, hdr, sizeof(hdr), "a block header", err);

		if (n < 0) {
			k = n;
			goto out;
		}
		if (n == 0)
			break; /* DS_END checked */
		off = get_le64(hdr);
		len = get_le64(hdr + 8);
		if (len == 0 || len > STREAM_BLOCK_MAX) {
			k = vm_error_setx(err, EPROTO,
					  "receive %s: block at offset %llu has length %llu, not "
					  "1..%u",
					  name, (unsigned long long)off, (unsigned long long)len,
					  STREAM_BLOCK_MAX);
			goto out;
		}
		if (off > ds->size || len > ds->size - off) {
			k = vm_error_setx(
				err, EPROTO,
				"receive %s: block at offset %llu length %llu lies beyond "
				"the volume's size %llu",
				name, (unsigned long long)off, (unsigned long long)len,
				(unsigned long long)ds->size);
			goto out;
		}
		if (off < next) {
			k = vm_error_setx(
				err, EPROTO,
				"receive %s: block at offset %llu overlaps or precedes the "
				"previous one (ending at %llu)",
				name, (unsigned long long)off, (unsigned long long)next);
			goto out;
		}
		n = stream_read_exact(r, buf, len, "a block", err);
		if (n <= 0) {
			k = n < 0 ? n
				  : vm_error_setx(err, EPROTO, "receive %s: block data missing",
						  name);
			goto out;
		}
		for (uint64_t done = 0; done < len;) {
			ssize_t wn = pwrite(fd, buf + done, len - done, off + done);

			if (wn < 0 && errno == EINTR)
				continue;
			if (wn <= 0) {
				k = vm_error_set(err, wn < 0 ? errno : EIO,
						 "receive %s: write %s at offset %llu", name, path,
						 (unsigned long long)(off + done));
				goto out;
			}
			done += wn;
		}
		next = off + len;
	}
	if (fsync(fd) < 0) {
		k = vm_error_set(err, errno, "receive %s: fsync %s", name, path);
		goto out;
	}
	return 0;
out:
	if (created)
		unlink(path);
	return k;
}

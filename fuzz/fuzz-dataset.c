/* SPDX-License-Identifier: MIT */
/*
 * fuzz-dataset: the input is one dataset's data in one of the portable
 * encodings, which the harness wraps in a valid stream (the real writer:
 * config, DS_BEGIN, DS_DATA chunks, DS_END, END) for the receive to read, so
 * that every mutation reaches a receiver's own parsing: block records and
 * zero ranges ("blocks", "blocks-delta"), the deletion list and the pax
 * archive extracted by libarchive ("tar", "tar-delta", into a base tree with
 * symlinks that lead out of the dataset; fuzz.h).
 *
 * Input: byte 0 the encoding (low two bits: 0 tar, 1 tar-delta, 2 blocks,
 * 3 blocks-delta), byte 1 flags (bit 0: zstd-compress the chunks), bytes
 * 2..9 the DS_BEGIN size (little-endian; a volume's size, a filesystem's
 * hint), then the data. fuzz/make-seeds writes seeds in this form from
 * real streams.
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "stream/stream-private.h"
#include "util/macros.h"

#define UUID   "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
#define HEADER 10

static void write_stream(int fd, const uint8_t *data, size_t size)
{
	static const enum stream_encoding encodings[] = {
	    STREAM_ENC_TAR, STREAM_ENC_TAR_DELTA, STREAM_ENC_BLOCKS, STREAM_ENC_BLOCKS_DELTA};
	_cleanup_stream_writer_ struct stream_writer *w = NULL;
	_cleanup_json_ json_t *config = json_pack("{s:s, s:s}", "uuid", UUID, "brand", "joyent");
	struct stream_dataset ds = {.snapshot = "s2"};
	struct vm_error err = {0};
	uint64_t dsize = get_le64(data + 2);

	ds.encoding = encodings[data[0] & 3];
	ds.kind = ds.encoding == STREAM_ENC_TAR || ds.encoding == STREAM_ENC_TAR_DELTA
		      ? STREAM_KIND_FILESYSTEM
		      : STREAM_KIND_VOLUME;
	strcpy(ds.name, ds.kind == STREAM_KIND_FILESYSTEM ? "" : "-disk0");
	ds.size = dsize > INT64_MAX ? INT64_MAX : dsize;
	if (ds.encoding == STREAM_ENC_TAR_DELTA || ds.encoding == STREAM_ENC_BLOCKS_DELTA)
		ds.from_snapshot = "s1";
	if (!config ||
	    stream_writer_open(fd, (data[1] & 1) ? STREAM_WRITE_ZSTD : 0, &w, &err) < 0 ||
	    stream_write_config(w, config, &err) < 0 || stream_begin_dataset(w, &ds, &err) < 0 ||
	    stream_write_data(w, data + HEADER, size - HEADER, &err) < 0 ||
	    stream_end_dataset(w, &err) < 0 || stream_finish(w, &err) < 0)
		fuzz_die("write the stream: %s", err.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd;

	if (size < HEADER)
		return 0;
	fd = fuzz_input_fd(NULL, 0);
	write_stream(fd, data, size);
	if (lseek(fd, 0, SEEK_SET) != 0)
		fuzz_die("rewind the stream: %m");
	fuzz_receive(fd);
	fuzz_scratch_empty();
	return 0;
}

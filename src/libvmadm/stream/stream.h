/* SPDX-License-Identifier: MIT */
/*
 * The migration stream: `vmadm send` writes a VM (config + datasets) as a
 * sequence of framed, checksummed records; `vmadm receive` reads it back.
 * The byte layout is specified in docs/stream-format.md; this is its only
 * implementation.
 *
 * Writer:  stream_writer_open -> stream_write_config -> for each dataset
 *          (stream_begin_dataset, stream_write_data*, stream_end_dataset,
 *          or one of the stream_send_* helpers that do all three)
 *          -> stream_finish -> stream_writer_free.
 * Reader:  stream_reader_open -> stream_read_config -> while
 *          stream_next_dataset() == 1 (stream_read_chunk / stream_read_data
 *          until they return 0, or one of the stream_receive_* helpers)
 *          -> stream_reader_free. stream_next_dataset returns 0 only after
 *          the END record and the end of input have been checked.
 *
 * Neither end seeks, both work incrementally (a chunk at a time), and the
 * reader checks every length before it allocates and every checksum before
 * it hands bytes out. Writes to a closed pipe fail with -EPIPE: the front
 * end must ignore SIGPIPE.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/macros.h"

#define STREAM_MAGIC	   "VMADMSTR"
#define STREAM_VERSION	   1 /* newest version written and read */
#define STREAM_HEADER_SIZE 32

enum stream_record_type {
	STREAM_REC_BEGIN = 1,
	STREAM_REC_CONFIG = 2,
	STREAM_REC_DS_BEGIN = 3,
	STREAM_REC_DS_DATA = 4,
	STREAM_REC_DS_END = 5,
	STREAM_REC_END = 6,
};

/* Record header flags. */
#define STREAM_FLAG_SKIPPABLE 0x1u /* unknown types with this bit are skipped */
#define STREAM_FLAG_ZSTD      0x2u /* payload is one zstd frame (DS_DATA only) */
#define STREAM_FLAGS_KNOWN    (STREAM_FLAG_SKIPPABLE | STREAM_FLAG_ZSTD)

/* BEGIN feature bits. */
#define STREAM_FEATURE_ZSTD	       0x1ull /* required: DS_DATA records may be zstd */
#define STREAM_FEATURE_XXH3	       0x2ull /* required: DS_END hashes are XXH3-128, not SHA-256 */
#define STREAM_FEATURES_REQUIRED_KNOWN (STREAM_FEATURE_ZSTD | STREAM_FEATURE_XXH3)
#define STREAM_FEATURES_OPTIONAL_KNOWN 0ull

/* Limits (docs/stream-format.md, section 2). */
#define STREAM_BEGIN_MAX	 4096u
#define STREAM_CONFIG_MAX	 (16u << 20)
#define STREAM_DS_BEGIN_MAX	 (64u << 10)
#define STREAM_CHUNK_MAX	 (1u << 20) /* DS_DATA payload after decompression */
#define STREAM_WIRE_MAX		 (4u << 20) /* any payload as stored (DS_DATA, skippable) */
#define STREAM_DS_END_SIZE	 40u
#define STREAM_END_SIZE		 40u
#define STREAM_BLOCK_MAX	 (1u << 20) /* "blocks" encoding: data per block record */
#define STREAM_BLOCK_HEADER_SIZE 16u
#define STREAM_ZERO_GRAIN	 (64u << 10) /* all-zero blocks of this size are skipped */
#define STREAM_NAME_MAX		 64u

/* ---- the fixed record header ---- */

struct stream_header {
	uint32_t type;
	uint32_t flags;
	uint64_t length;
	uint64_t seq;
	uint32_t payload_crc;
	uint32_t header_crc;
};

/* CRC-32C (Castagnoli), as used by the stream: crc32c(0, "123456789", 9) ==
 * 0xE3069283. Pass the previous result as crc to continue a computation. */
uint32_t stream_crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- the dataset hash (DS_END) ---- */

/* XXH3-128 when the stream declares STREAM_FEATURE_XXH3 (vmadm writes
 * nothing else), SHA-256 in streams without it (older writers). */
enum stream_digest_alg {
	STREAM_DIGEST_SHA256,
	STREAM_DIGEST_XXH3,
};
#define STREAM_DIGEST_LEN 32 /* the DS_END field; XXH3-128 fills 16, then zeros */

struct stream_digest;
struct stream_digest *stream_digest_new(void);
void stream_digest_free(struct stream_digest *d);
int stream_digest_init(struct stream_digest *d, enum stream_digest_alg alg);
void stream_digest_update(struct stream_digest *d, const void *buf, size_t len);
void stream_digest_final(struct stream_digest *d, uint8_t out[STREAM_DIGEST_LEN]);
const char *stream_digest_name(enum stream_digest_alg alg);
/* The dataset hash a stream with these required features uses. */
static inline enum stream_digest_alg stream_digest_alg_of(uint64_t features_req)
{
	return (features_req & STREAM_FEATURE_XXH3) ? STREAM_DIGEST_XXH3 : STREAM_DIGEST_SHA256;
}

/* Encode h into out[32]; computes and stores h->header_crc (payload_crc must
 * already be set). */
void stream_header_encode(struct stream_header *h, uint8_t out[STREAM_HEADER_SIZE]);

/* Decode in[32] into h. Returns false (h still filled) when the header CRC
 * does not match. */
bool stream_header_decode(const uint8_t in[STREAM_HEADER_SIZE], struct stream_header *h);

/* "DS_DATA", ..., or "unknown" */
const char *stream_record_type_name(uint32_t type);

/* ---- dataset descriptions ---- */

enum stream_ds_kind {
	STREAM_KIND_FILESYSTEM = 1,
	STREAM_KIND_VOLUME = 2,
};

enum stream_encoding {
	STREAM_ENC_BTRFS = 1,	     /* `btrfs send` output */
	STREAM_ENC_ZFS = 2,	     /* `zfs send` output (reserved) */
	STREAM_ENC_TAR = 3,	     /* pax archive of a filesystem */
	STREAM_ENC_BLOCKS = 4,	     /* (offset, length, data) block records of a volume */
	STREAM_ENC_BLOCKS_DELTA = 5, /* blocks changed since from_snapshot, and zeroed ranges */
	STREAM_ENC_TAR_DELTA = 6,    /* deletions, then a pax archive of what changed */
};

/* What DS_BEGIN says about a dataset. Strings are owned by whoever filled
 * the struct (the reader owns the one it hands out, until the next dataset). */
struct stream_dataset {
	char name[STREAM_NAME_MAX + 1]; /* relative to zones/UUID: "", "/data", "-disk0" */
	enum stream_ds_kind kind;
	uint64_t size; /* volume size; for a filesystem, space used (hint) */
	uint64_t used; /* bytes the dataset takes at the sender, when has_used */
	bool has_used; /* writer: send "used"; reader: the stream had it */
	enum stream_encoding encoding;
	const char *snapshot;	   /* short snapshot name, required */
	const char *from_snapshot; /* NULL for a full stream */
	bool compressed;	   /* reader: the sender said "compression": "zstd" */
	const char *resume_token;  /* the rest of a cut zfs stream (`zfs send -t`), from
				    * the receiver's token of that cut; NULL otherwise */
};

const char *stream_encoding_name(enum stream_encoding enc);
/* The encoding called name ("btrfs", "tar", ...), 0 when none is. */
enum stream_encoding stream_encoding_by_name(const char *name);
const char *stream_kind_name(enum stream_ds_kind kind);

/* What a DS_BEGIN declares the dataset takes: "used" when the stream has
 * it, else "size". A receiver checks its free space against it. */
uint64_t stream_dataset_declared(const struct stream_dataset *ds);

/* The most data bytes (after decompression) a dataset may carry: what it
 * declares plus 1/8 and STREAM_DATA_SLACK for the encoding's own bytes
 * (block headers, archive headers, btrfs commands). The reader itself
 * refuses (-EFBIG, naming the dataset) the record that takes a dataset's
 * data past it, before handing it out: whatever the encoding and whoever
 * reads, a stream cannot write more than the free-space check let in. */
#define STREAM_DATA_SLACK (16ull << 20)
uint64_t stream_dataset_data_limit(const struct stream_dataset *ds);

/* Check a dataset name relative to the VM's dataset zones/UUID: "" (the VM's
 * own dataset), "/CHILD" (a single child, CHILD of [A-Za-z0-9_.:-], not "."
 * or ".."), "-diskN" (N decimal, no leading zero, < 1000). Refuses
 * everything else ("..", "/", other UUIDs or pools, nesting, control
 * characters) with -EINVAL and a message that quotes the name. uuid must be
 * a valid UUID. */
int stream_dataset_name_check(const char *uuid, const char *rel, struct vm_error *err);

/* "zones/UUID" + rel into out (size >= 6 + 36 + STREAM_NAME_MAX + 1). */
void stream_dataset_full_name(const char *uuid, const char *rel, char *out, size_t size);

/* If fd is a pipe, make its buffer 1 MiB (one chunk; the default 64 KiB makes
 * the processes on both ends take turns instead of running together). Best
 * effort: failures are ignored. The writer and reader do this to their fd. */
void stream_pipe_grow(int fd);

/* ---- writer ---- */

struct stream_writer;

#define STREAM_WRITE_ZSTD 0x1u /* compress DS_DATA chunks with zstd (level 3) */

/* Start a stream on fd (not owned: the caller closes it) and write the
 * BEGIN record. flags: STREAM_WRITE_*. */
int stream_writer_open(int fd, unsigned flags, struct stream_writer **ret, struct vm_error *err);

/* Write the CONFIG record: exactly once, before any dataset. config must be
 * an object with a valid "uuid"; dataset names are checked against it. */
int stream_write_config(struct stream_writer *w, json_t *config, struct vm_error *err);

/* Write DS_BEGIN for ds (name checked against the config's uuid, no
 * dataset open, no dataset of that name written before). */
int stream_begin_dataset(struct stream_writer *w, const struct stream_dataset *ds,
			 struct vm_error *err);

/* Append len bytes to the current dataset's data. Buffers up to one 1 MiB
 * chunk, then writes a DS_DATA record (zstd-compressed if enabled and
 * smaller). */
int stream_write_data(struct stream_writer *w, const void *buf, size_t len, struct vm_error *err);

/* Flush the last chunk and write DS_END (byte count + XXH3-128 of the data). */
int stream_end_dataset(struct stream_writer *w, struct vm_error *err);

/* Write END (dataset count + SHA-256 of the stream). No dataset may be open.
 * Does not fsync or close fd. */
int stream_finish(struct stream_writer *w, struct vm_error *err);

/* Bytes written to fd so far (for progress). */
uint64_t stream_writer_bytes(const struct stream_writer *w);

/* Free the writer (NULL is fine). A writer freed before stream_finish leaves
 * a stream that every reader refuses as truncated. */
void stream_writer_free(struct stream_writer *w);
DEFINE_CLEANUP(struct stream_writer, stream_writer_free)
#define _cleanup_stream_writer_ _cleanup_(stream_writer_freep)

/* ---- reader ---- */

struct stream_reader;

/* Read and check the BEGIN record from fd (not owned). Refuses non-streams
 * (naming gzip/zstd input), a wrong magic, a newer version, unknown required
 * features. */
int stream_reader_open(int fd, struct stream_reader **ret, struct vm_error *err);

/* The same, for a caller that already read the first prefix_len (at most
 * 64) bytes of the stream from fd, e.g. to tell a stream from JSON: they
 * are taken as the start of the stream. */
int stream_reader_open_prefix(int fd, const void *prefix, size_t prefix_len,
			      struct stream_reader **ret, struct vm_error *err);

/* Read the CONFIG record (must be next): a JSON object with a valid "uuid".
 * *ret is a new reference. */
int stream_read_config(struct stream_reader *r, json_t **ret, struct vm_error *err);

/* The VM uuid from the config ("" before stream_read_config). */
const char *stream_reader_uuid(const struct stream_reader *r);

/* Advance to the next dataset. If the current dataset's data was not fully
 * read, reads (and checks) the rest of it first. Returns 1 and points *ret
 * at the dataset (valid until the next call; its name checked against the
 * VM's uuid, never seen before, kind/encoding known), or 0 at the END record
 * once the dataset count, the stream hash and the end of input are checked. */
int stream_next_dataset(struct stream_reader *r, const struct stream_dataset **ret,
			struct vm_error *err);

/* Next chunk of the current dataset's data, decompressed and checked (after
 * stream_read_data calls: first what they left of the last chunk): 1 with
 * *ret_buf and *ret_len (1..1 MiB bytes, valid until the next reader call), 0
 * after the dataset's DS_END record (count and hash checked). A failure to
 * read or check names the dataset. */
int stream_read_chunk(struct stream_reader *r, const void **ret_buf, size_t *ret_len,
		      struct vm_error *err);

/* read(2)-like access to the same data: copies up to len bytes into buf and
 * returns their number, 0 at the dataset's end (after DS_END is checked),
 * or a negative errno. */
ssize_t stream_read_data(struct stream_reader *r, void *buf, size_t len, struct vm_error *err);

/* Bytes read from fd so far (for progress and messages). */
/* Did the reader fail because its input ended (or could not be read)
 * before the stream did, with nothing wrong in what came: a link or sender
 * lost, not a refusal? A receive may keep what it took for a resume. */
bool stream_reader_was_cut(const struct stream_reader *r);
uint64_t stream_reader_bytes(const struct stream_reader *r);

/* The full name of the current dataset ("zones/UUID-disk0"), "" if none. */
const char *stream_reader_dataset_name(const struct stream_reader *r);

void stream_reader_free(struct stream_reader *r);
DEFINE_CLEANUP(struct stream_reader, stream_reader_free)
#define _cleanup_stream_reader_ _cleanup_(stream_reader_freep)

/* ---- native pass-through (btrfs send / receive) ---- */

/* Copy everything read from fd (e.g. `btrfs send`'s stdout) until EOF into
 * the current dataset's DS_DATA records. The caller opened the dataset with
 * stream_begin_dataset and ends it with stream_end_dataset after checking
 * the producer's exit status. Returns 0 or a negative errno. */
int stream_pump_fd_to_records(struct stream_writer *w, int fd, struct vm_error *err);

/* Write the current dataset's data, until its DS_END is checked, to fd
 * (e.g. `btrfs receive`'s stdin). A consumer that exits early makes this fail
 * with -EPIPE ("... closed its input"); the caller then reports the
 * consumer's own error. */
int stream_pump_records_to_fd(struct stream_reader *r, int fd, struct vm_error *err);

/* ---- portable encodings ---- */

/* The portable encodings read what they send through fds that the caller
 * opened (a pool's snapshot: vm_pool_open_snapshot) and still owns: a
 * volume's image, or the root directory of a filesystem's tree. */

/* Send the raw image fd (a file or block device) as a volume dataset in
 * the "blocks" encoding: ds->name, ->snapshot and ->from_snapshot come from
 * the caller; kind, size (the image's size) and encoding are set here. Holes
 * and all-zero 64 KiB blocks are left out. Writes DS_BEGIN..DS_END. */
int stream_send_volume(struct stream_writer *w, const struct stream_dataset *ds, int fd,
		       struct vm_error *err);

/* Receive the current dataset ("blocks" encoding, kind volume) into path:
 * creates it if missing, makes it exactly ds->size bytes of holes, then writes
 * the blocks, refusing any outside the size, and fsyncs. On failure a file
 * this call created is removed; an existing one is left for the caller to
 * destroy along with its dataset. */
int stream_receive_volume(struct stream_reader *r, const char *path, struct vm_error *err);

/* Send the tree under the directory dirfd as a filesystem dataset in the
 * "tar" encoding (pax: modes, numeric owners, times, hard links, symlinks,
 * fifos, devices, xattrs, ACLs, sparse files). skip_names (NULL-terminated,
 * may be NULL) names top-level entries left out (child datasets' mount
 * points). ds->name and snapshots come from the caller; kind, encoding and
 * size (bytes of file data, a hint) are set here. Writes DS_BEGIN..DS_END. */
int stream_send_tree(struct stream_writer *w, const struct stream_dataset *ds, int dirfd,
		     const char *const *skip_names, struct vm_error *err);

/* What a dataset sent from the tree at dirfd declares it takes (DS_BEGIN
 * "used", which the receiver checks its free space against and holds the
 * data to): the tree's allocated blocks and a share per entry for its
 * headers, and, for a delta from the tree at old_dirfd (-1: none), a share
 * per entry of that tree for the deletion list. Every encoding of the
 * snapshot stays within it (stream_dataset_data_limit). */
int stream_declare_tree(int dirfd, int old_dirfd, uint64_t *ret, struct vm_error *err);

/* The same for a volume's image fd (and old_fd, its base's, or -1); with
 * blocks_delta, also what the "blocks-delta" encoding may add (every grain
 * that holds data, whole, and its header). */
int stream_declare_volume(int fd, int old_fd, bool blocks_delta, uint64_t *ret,
			  struct vm_error *err);

/* Receive the current dataset ("tar" encoding, kind filesystem) into the
 * existing directory dir (the dataset's root, normally empty): restores
 * everything stream_send_tree keeps, refusing absolute names, ".." and
 * extraction through symlinks. On failure what was extracted stays; the
 * caller destroys the dataset. */
int stream_receive_tree(struct stream_reader *r, const char *dir, struct vm_error *err);

/* ---- raw records (inspection and test tools: vmadm-stream) ---- */

/* A record as stored, read without interpreting it. The raw reader checks
 * only what it needs to go on safely: header CRC and seq are reported, not
 * enforced, and a payload is read only when its length is within the
 * largest limit of any record type (16 MiB). */
struct stream_raw_record {
	struct stream_header h;
	uint64_t offset;	/* byte offset of the header in the input */
	size_t header_len;	/* header bytes read: 32, fewer when the input ended inside it */
	bool header_ok;		/* header CRC matches */
	bool length_ok;		/* length within the limit of its type (payload then read) */
	bool complete;		/* the whole payload was read (false: input ended inside it) */
	bool payload_ok;	/* complete and payload CRC matches */
	const uint8_t *payload; /* payload_len bytes, valid until the next call */
	size_t payload_len;
};

struct stream_raw_reader;

/* Read records from fd (not owned). */
int stream_raw_reader_open(int fd, struct stream_raw_reader **ret, struct vm_error *err);

/* Next record: 1 with *rec filled (check its *_ok fields), 0 at end of
 * input on a record boundary, -errno on a read error. After a record that is
 * not header_ok, length_ok and complete the reader cannot find the next one:
 * further calls return -EPROTO. A header cut short by the end of input gives
 * 1 with header_len < 32 and nothing else set. */
int stream_raw_next(struct stream_raw_reader *r, struct stream_raw_record *rec,
		    struct vm_error *err);

/* The stream hash of everything before the last record's header (what an
 * END record there must carry): SHA-256 of every header and every payload
 * but DS_DATA's. */
void stream_raw_reader_hash(struct stream_raw_reader *r, uint8_t out[32]);

/* Bytes read from fd so far. */
uint64_t stream_raw_reader_bytes(const struct stream_raw_reader *r);

void stream_raw_reader_free(struct stream_raw_reader *r);
DEFINE_CLEANUP(struct stream_raw_reader, stream_raw_reader_free)
#define _cleanup_stream_raw_reader_ _cleanup_(stream_raw_reader_freep)

/* Payload limits of a record type (docs/stream-format.md, section 2): false
 * for an unknown type (min 0, max 4 MiB: a skippable record's limit). */
bool stream_record_limits(uint32_t type, uint64_t *ret_min, uint64_t *ret_max);

struct stream_raw_writer;

/* Write records to fd (not owned), keeping the stream hash. */
int stream_raw_writer_open(int fd, struct stream_raw_writer **ret, struct vm_error *err);

/* Write a header and len bytes of payload, computing both CRCs. h->length
 * is written as given, so that a tool can forge a header whose length
 * differs from the payload; h->seq too. */
int stream_raw_write(struct stream_raw_writer *w, struct stream_header *h, const void *payload,
		     size_t len, struct vm_error *err);

/* The stream hash of everything written so far (what an END record written
 * next must carry): SHA-256 of every header and every payload but DS_DATA's. */
void stream_raw_writer_hash(struct stream_raw_writer *w, uint8_t out[32]);

void stream_raw_writer_free(struct stream_raw_writer *w);
DEFINE_CLEANUP(struct stream_raw_writer, stream_raw_writer_free)
#define _cleanup_stream_raw_writer_ _cleanup_(stream_raw_writer_freep)

/* ---- incremental (delta) encodings, docs/stream-format.md section 3 ---- */

/* Send volume image new_fd (snapshot ds->snapshot) as a "blocks-delta"
 * against old_fd (the same volume at ds->from_snapshot, required): the
 * blocks that differ, and zero records for ranges that became zero.
 * Unchanged ranges are found without reading them where the filesystem
 * shares extents between the two files (sparse_changed_ranges); the rest is
 * compared 64 KiB at a time. *ret_shared (may be NULL) gets the bytes
 * skipped unread. Writes DS_BEGIN..DS_END. */
int stream_send_volume_delta(struct stream_writer *w, const struct stream_dataset *ds, int old_fd,
			     int new_fd, uint64_t *ret_shared, struct vm_error *err);

/* Apply the current dataset ("blocks-delta") to the existing image at path,
 * which must hold the volume as of from_snapshot: resize it to ds->size,
 * write the blocks, punch the zero ranges, fsync. On failure path is
 * half-updated: the caller restores it from its snapshot. */
int stream_receive_volume_delta(struct stream_reader *r, const char *path, struct vm_error *err);

/* Send the tree at new_dirfd (snapshot ds->snapshot) as a "tar-delta"
 * against the tree at old_dirfd (ds->from_snapshot): the paths that exist
 * in the old tree but not (or with another file type) in the new, then a
 * pax archive of the root, of every entry whose type, mode, owner, size,
 * mtime, link count, device, symlink target or attributes differ, and of
 * the directories above them (so their times come out right). skip_names
 * as for stream_send_tree. */
int stream_send_tree_delta(struct stream_writer *w, const struct stream_dataset *ds, int old_dirfd,
			   int new_dirfd, const char *const *skip_names, struct vm_error *err);

/* Apply the current dataset ("tar-delta") to dir, which must hold the tree
 * as of from_snapshot: remove the deleted paths (never through a symlink,
 * never the root, never a top-level name in skip_names, i.e. a child
 * dataset), then extract the archive as stream_receive_tree does. On
 * failure dir is half-updated: the caller restores it. */
int stream_receive_tree_delta(struct stream_reader *r, const char *dir,
			      const char *const *skip_names, struct vm_error *err);

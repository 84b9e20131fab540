/* SPDX-License-Identifier: MIT */
/*
 * fuzz-records: the input is a stream file whose checksums the harness
 * makes right before the receive reads it, so that a mutation reaches what
 * lies behind them: record order and limits, the BEGIN fields, the DS_BEGIN
 * JSON and dataset names, zstd frames, the DS_END and END counts, and the
 * receivers (fuzz.h, fuzz_receive).
 *
 * The fix-up walks the records as framed by the input: a length running
 * past the end is cut to what is there; then every record gets its number
 * (seq), its payload and header CRCs; a DS_END of 40 bytes gets the byte
 * count and dataset hash of the DS_DATA before it (decompressed where the
 * record says zstd and the frame decodes), an END of 40 bytes the number of
 * datasets and the stream hash. A few trailing bytes (less than a header)
 * stay as they are.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "fuzz.h"
#include "stream/stream-private.h"
#include "util/macros.h"

static uint8_t *fixup(const uint8_t *in, size_t n)
{
	static ZSTD_DCtx *zd;
	static uint8_t *chunk;
	static struct stream_digest *dh;
	EVP_MD_CTX *sh = EVP_MD_CTX_new();
	enum stream_digest_alg alg = STREAM_DIGEST_SHA256;
	uint64_t seq = 0, ds_bytes = 0, ds_count = 0;
	bool in_ds = false;
	uint8_t *out = malloc(n ? n : 1);
	size_t pos = 0;

	if (!zd) {
		zd = ZSTD_createDCtx();
		chunk = malloc(STREAM_CHUNK_MAX);
		dh = stream_digest_new();
	}
	if (!out || !sh || !zd || !chunk || !dh || EVP_DigestInit_ex(sh, EVP_sha256(), NULL) != 1)
		fuzz_die("fix-up: out of memory");
	memcpy(out, in, n);
	while (n - pos >= STREAM_HEADER_SIZE) {
		uint8_t *h = out + pos, *payload = h + STREAM_HEADER_SIZE;
		uint32_t type = get_le32(h), flags = get_le32(h + 4);
		uint64_t len = get_le64(h + 8), avail = n - pos - STREAM_HEADER_SIZE;

		if (len > avail) {
			len = avail;
			put_le64(h + 8, len);
		}
		put_le64(h + 16, seq);
		if (type == STREAM_REC_BEGIN && seq == 0 && len >= 24)
			alg = stream_digest_alg_of(get_le64(payload + 16));
		seq++;
		if (type == STREAM_REC_DS_BEGIN) {
			stream_digest_init(dh, alg);
			ds_bytes = 0;
			in_ds = true;
		} else if (type == STREAM_REC_DS_DATA && in_ds) {
			if (flags & STREAM_FLAG_ZSTD) {
				size_t d =
				    ZSTD_decompressDCtx(zd, chunk, STREAM_CHUNK_MAX, payload, len);

				if (!ZSTD_isError(d)) {
					stream_digest_update(dh, chunk, d);
					ds_bytes += d;
				}
			} else {
				stream_digest_update(dh, payload, len);
				ds_bytes += len;
			}
		} else if (type == STREAM_REC_DS_END && in_ds && len == STREAM_DS_END_SIZE) {
			put_le64(payload, ds_bytes);
			stream_digest_final(dh, payload + 8);
			in_ds = false;
			ds_count++;
		} else if (type == STREAM_REC_END && len == STREAM_END_SIZE) {
			unsigned int mdlen = 0;

			put_le64(payload, ds_count);
			EVP_DigestFinal_ex(sh, payload + 8, &mdlen);
			EVP_DigestInit_ex(sh, EVP_sha256(), NULL);
		}
		put_le32(h + 24, stream_crc32c(0, payload, len));
		put_le32(h + 28, stream_crc32c(0, h, 28));
		if (type != STREAM_REC_END) {
			EVP_DigestUpdate(sh, h, STREAM_HEADER_SIZE);
			if (type != STREAM_REC_DS_DATA)
				EVP_DigestUpdate(sh, payload, len);
		}
		pos += STREAM_HEADER_SIZE + len;
	}
	EVP_MD_CTX_free(sh);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_free_ uint8_t *fixed = fixup(data, size);

	fuzz_receive(fuzz_input_fd(fixed, size));
	fuzz_scratch_empty();
	return 0;
}

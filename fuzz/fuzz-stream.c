/* SPDX-License-Identifier: MIT */
/*
 * fuzz-stream: the input is a stream file, as `vmadm receive` reads it.
 * The reader's framing (headers, CRCs, lengths, sequence, order, zstd
 * frames, the END and DS_END checks) and, for what gets past it, every
 * receiver behind it (fuzz.h, fuzz_receive). Mutations mostly break a CRC:
 * fuzz-records fixes them up to reach further.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_receive(fuzz_input_fd(data, size));
	fuzz_scratch_empty();
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The dataset hash of DS_END records: XXH3-128 (libxxhash) in streams that
 * declare the "xxh3" required feature, which every stream vmadm writes
 * does, and SHA-256 (OpenSSL) in older streams, which a reader still
 * checks. docs/stream-format.md, section 1, says why the data hash is not
 * a cryptographic one.
 */
#include "stream/stream.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif

struct stream_digest {
	enum stream_digest_alg alg;
	EVP_MD_CTX *md;
	XXH3_state_t *xx;
};

const char *stream_digest_name(enum stream_digest_alg alg)
{
	return alg == STREAM_DIGEST_XXH3 ? "xxh3-128" : "sha256";
}

void stream_digest_free(struct stream_digest *d)
{
	if (!d)
		return;
	EVP_MD_CTX_free(d->md);
	if (d->xx)
		XXH3_freeState(d->xx);
	free(d);
}

struct stream_digest *stream_digest_new(void)
{
	struct stream_digest *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->md = EVP_MD_CTX_new();
	d->xx = XXH3_createState();
	if (!d->md || !d->xx) {
		stream_digest_free(d);
		return NULL;
	}
	return d;
}

int stream_digest_init(struct stream_digest *d, enum stream_digest_alg alg)
{
	d->alg = alg;
	if (alg == STREAM_DIGEST_XXH3)
		return XXH3_128bits_reset(d->xx) == XXH_OK ? 0 : -EIO;
	return EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

void stream_digest_update(struct stream_digest *d, const void *buf, size_t len)
{
	if (d->alg == STREAM_DIGEST_XXH3)
#if defined(__x86_64__)
		XXH3_128bits_update_dispatch(d->xx, buf, len);
#else
		XXH3_128bits_update(d->xx, buf, len);
#endif
	else
		EVP_DigestUpdate(d->md, buf, len);
}

void stream_digest_final(struct stream_digest *d, uint8_t out[STREAM_DIGEST_LEN])
{
	unsigned int n = 0;

	memset(out, 0, STREAM_DIGEST_LEN);
	if (d->alg == STREAM_DIGEST_XXH3) {
		XXH128_canonical_t c;

		XXH128_canonicalFromHash(&c, XXH3_128bits_digest(d->xx));
		memcpy(out, c.digest, sizeof(c.digest));
	} else {
		EVP_DigestFinal_ex(d->md, out, &n);
	}
}

/* SPDX-License-Identifier: MIT */
/* hash_worker: one SHA-256 update at a time on a helper thread. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "stream/stream-private.h"

struct hash_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	EVP_MD_CTX *ctx; /* the job, NULL when idle */
	const void *buf;
	size_t len;
	bool busy, quit, started;
};

static void *hash_thread(void *arg)
{
	struct hash_worker *hw = arg;

	pthread_mutex_lock(&hw->lock);
	for (;;) {
		while (!hw->busy && !hw->quit)
			pthread_cond_wait(&hw->cond, &hw->lock);
		if (hw->quit)
			break;
		pthread_mutex_unlock(&hw->lock);
		EVP_DigestUpdate(hw->ctx, hw->buf, hw->len);
		pthread_mutex_lock(&hw->lock);
		hw->busy = false;
		pthread_cond_broadcast(&hw->cond);
	}
	pthread_mutex_unlock(&hw->lock);
	return NULL;
}

struct hash_worker *hash_worker_new(void)
{
	struct hash_worker *hw = calloc(1, sizeof(*hw));

	if (!hw)
		return NULL;
	pthread_mutex_init(&hw->lock, NULL);
	pthread_cond_init(&hw->cond, NULL);
	hw->started = pthread_create(&hw->thread, NULL, hash_thread, hw) == 0;
	return hw;
}

void hash_worker_post(struct hash_worker *hw, void *md_ctx, const void *buf, size_t len)
{
	if (!hw || !hw->started) {
		EVP_DigestUpdate(md_ctx, buf, len);
		return;
	}
	pthread_mutex_lock(&hw->lock);
	while (hw->busy)
		pthread_cond_wait(&hw->cond, &hw->lock);
	hw->ctx = md_ctx;
	hw->buf = buf;
	hw->len = len;
	hw->busy = true;
	pthread_cond_broadcast(&hw->cond);
	pthread_mutex_unlock(&hw->lock);
}

void hash_worker_wait(struct hash_worker *hw)
{
	if (!hw || !hw->started)
		return;
	pthread_mutex_lock(&hw->lock);
	while (hw->busy)
		pthread_cond_wait(&hw->cond, &hw->lock);
	pthread_mutex_unlock(&hw->lock);
}

void hash_worker_free(struct hash_worker *hw)
{
	if (!hw)
		return;
	if (hw->started) {
		pthread_mutex_lock(&hw->lock);
		while (hw->busy)
			pthread_cond_wait(&hw->cond, &hw->lock);
		hw->quit = true;
		pthread_cond_broadcast(&hw->cond);
		pthread_mutex_unlock(&hw->lock);
		pthread_join(hw->thread, NULL);
	}
	pthread_mutex_destroy(&hw->lock);
	pthread_cond_destroy(&hw->cond);
	free(hw);
}

/* SPDX-License-Identifier: MIT */
/*
 * A pool's native send or receive tool (btrfs send/receive) on one end of a
 * pipe, in a thread, and our stream records on the other (native.h).
 */
#include "migrate/local/native.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/macros.h"

struct native_job {
	struct vm_pool *pool;
	const char *ds, *snap, *from_snap;
	const char *token; /* send: the receiver's token to resume from; receive: the
			    * cut receive it resumes */
	char **ret_token;  /* receive: resumable, the token of a cut one here */
	int fd;		   /* the thread's end of the pipe; the thread closes it */
	bool send;
	int result;
	struct vm_error err;
};

static void *native_thread(void *arg)
{
	struct native_job *j = arg;

	if (j->send && j->token)
		j->result = vm_pool_send_resume(j->pool, j->ds, j->snap, j->from_snap, j->token,
						j->fd, &j->err);
	else if (j->send)
		j->result = vm_pool_send(j->pool, j->ds, j->snap, j->from_snap, j->fd, &j->err);
	else if (j->ret_token)
		j->result = vm_pool_receive_resumable(j->pool, j->ds, j->snap, j->from_snap,
						      j->token, j->fd, j->ret_token, &j->err);
	else
		j->result = vm_pool_receive(j->pool, j->ds, j->snap, j->from_snap, j->fd, &j->err);
	close(j->fd);
	return NULL;
}

static int start_job(struct native_job *j, pthread_t *th, int *ret_our_end, struct vm_error *err)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "pipe");
	stream_pipe_grow(p[0]);
	/* send: the tool writes p[1], we read p[0]; receive: the reverse. */
	j->fd = j->send ? p[1] : p[0];
	*ret_our_end = j->send ? p[0] : p[1];
	if (pthread_create(th, NULL, native_thread, j) != 0) {
		close(p[0]);
		close(p[1]);
		return vm_error_set(err, EAGAIN, "start a thread for %s", j->ds);
	}
	return 0;
}

int migrate_native_send(struct vm_pool *pool, const char *ds, const char *snap,
			const char *from_snap, const char *token, struct stream_writer *w,
			struct vm_error *err)
{
	struct native_job j = {.pool = pool,
			       .ds = ds,
			       .snap = snap,
			       .from_snap = from_snap,
			       .token = token,
			       .send = true};
	_cleanup_close_ int rfd = -1;
	pthread_t th;
	int r;

	r = start_job(&j, &th, &rfd, err);
	if (r < 0)
		return r;
	r = stream_pump_fd_to_records(w, rfd, err);
	/* Closing our end makes a tool still writing fail with EPIPE. */
	close(TAKE_FD(rfd));
	pthread_join(th, NULL);
	if (j.result < 0 && r >= 0) {
		*err = j.err;
		return j.result;
	}
	return r;
}

int migrate_native_receive(struct vm_pool *pool, const char *ds, const char *snap,
			   const char *from_snap, const char *token, char **ret_token,
			   struct stream_reader *rd, struct vm_error *err)
{
	struct native_job j = {.pool = pool,
			       .ds = ds,
			       .snap = snap,
			       .from_snap = from_snap,
			       .token = token,
			       .ret_token = ret_token,
			       .send = false};
	_cleanup_close_ int wfd = -1;
	pthread_t th;
	int r;

	r = start_job(&j, &th, &wfd, err);
	if (r < 0)
		return r;
	r = stream_pump_records_to_fd(rd, wfd, err);
	close(TAKE_FD(wfd));
	pthread_join(th, NULL);
	if (r < 0) {
		/* Our side failed: even if the tool took a stream that happened
		 * to end cleanly, the data is not what was sent. */
		if (j.result >= 0 && from_snap == NULL) {
			struct vm_error cerr = {0};
			vm_pool_destroy(pool, ds, true, &cerr);
		}
		/* A tool that gave up first explains better than "closed its
		 * input". */
		if (r == -EPIPE && j.result < 0) {
			*err = j.err;
			return j.result;
		}
		return r;
	}
	if (j.result < 0) {
		*err = j.err;
		return j.result;
	}
	return 0;
}

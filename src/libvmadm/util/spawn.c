/* SPDX-License-Identifier: MIT */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macros.h"

#define ERR_KEEP (16 * 1024)

char *vm_spawn_argv_string(const char *const *argv)
{
	size_t len = 1;
	char *s, *p;

	for (size_t i = 0; argv[i]; i++)
		len += strlen(argv[i]) * 4 + 3;
	s = p = malloc(len);
	if (!s)
		return NULL;
	for (size_t i = 0; argv[i]; i++) {
		bool quote = argv[i][0] == '\0' || strpbrk(argv[i], " \t'\"$\\;&|<>*?") != NULL;
		if (i)
			*p++ = ' ';
		if (quote)
			*p++ = '\'';
		for (const char *c = argv[i]; *c; c++) {
			if (*c == '\'') {
				memcpy(p, "'\\''", 4);
				p += 4;
			} else
				*p++ = *c;
		}
		if (quote)
			*p++ = '\'';
	}
	*p = '\0';
	return s;
}

static void log_argv(const char *const *argv)
{
	_cleanup_free_ char *s = vm_spawn_argv_string(argv);
	vm_debug("spawn: %s", s ? s : argv[0]);
}

static void child_exec(const char *const *argv, int in_fd, int out_fd, int err_fd, pid_t parent)
{
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* Nothing we run may outlive us: a vmadm or vmadmd killed with
	 * SIGKILL would leave a `btrfs receive` writing on into the staging
	 * directory that the next command's recovery removes, or a `btrfs
	 * send` holding the snapshot it drops. (The signal comes when the
	 * thread that forked us ends; every caller waits for its child in
	 * that thread. QEMU's -daemonize child is a grandchild: not
	 * concerned.) The parent may have died before the prctl. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	/* Restore what a daemon or a test harness may have changed. */
	signal(SIGPIPE, SIG_DFL);
	if (dup2(in_fd >= 0 ? in_fd : devnull, 0) < 0 ||
	    dup2(out_fd >= 0 ? out_fd : devnull, 1) < 0 ||
	    dup2(err_fd >= 0 ? err_fd : devnull, 2) < 0)
		_exit(127);
	execvp(argv[0], (char *const *)argv);
	dprintf(2, "exec %s: %s", argv[0], strerror(errno));
	_exit(127);
}

pid_t vm_spawn_start(const char *const *argv, int in_fd, int out_fd, int err_fd,
		     struct vm_error *err)
{
	pid_t pid, parent = getpid();

	log_argv(argv);
	pid = fork();
	if (pid < 0)
		return vm_error_set(err, errno, "fork for %s", argv[0]);
	if (pid == 0)
		child_exec(argv, in_fd, out_fd, err_fd, parent);
	return pid;
}

static int status_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 255;
}

int vm_spawn_wait(pid_t pid, const char *name, struct vm_error *err)
{
	int wstatus, code;

	while (waitpid(pid, &wstatus, 0) < 0)
		if (errno != EINTR)
			return vm_error_set(err, errno, "wait for %s", name);
	code = status_code(wstatus);
	if (code != 0) {
		if (WIFSIGNALED(wstatus))
			return vm_error_setx(err, EIO, "%s killed by signal %d", name,
					     WTERMSIG(wstatus));
		return vm_error_setx(err, EIO, "%s failed (exit %d)", name, code);
	}
	return 0;
}

/* Append up to n bytes to a growing buffer; for stderr keep only the tail. */
static int buf_append(char **buf, size_t *len, const char *data, size_t n, size_t keep)
{
	char *nb = realloc(*buf, *len + n + 1);

	if (!nb)
		return -ENOMEM;
	memcpy(nb + *len, data, n);
	*len += n;
	nb[*len] = '\0';
	if (keep && *len > keep) {
		memmove(nb, nb + *len - keep, keep + 1);
		*len = keep;
	}
	*buf = nb;
	return 0;
}

static void trim(char *s)
{
	size_t n = s ? strlen(s) : 0;
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

int vm_spawn_run(struct vm_spawn *sp, struct vm_error *err)
{
	_cleanup_close_ int out_r = -1, out_w = -1, err_r = -1, err_w = -1;
	size_t err_len = 0;
	int wstatus, p[2];
	pid_t pid;

	sp->out = NULL;
	sp->out_len = 0;
	sp->errout = NULL;
	sp->status = -1;

	if (pipe2(p, O_CLOEXEC) < 0)
		return vm_error_set(err, errno, "pipe");
	err_r = p[0], err_w = p[1];
	if (sp->capture_stdout) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return vm_error_set(err, errno, "pipe");
		out_r = p[0], out_w = p[1];
	}

	pid = vm_spawn_start(sp->argv, sp->stdin_fd, sp->capture_stdout ? out_w : sp->stdout_fd,
			     err_w, err);
	if (pid < 0)
		return pid;
	close(TAKE_FD(err_w));
	if (out_w >= 0)
		close(TAKE_FD(out_w));

	for (;;) {
		struct pollfd pfd[2];
		int nfds = 0;
		char buf[65536];

		if (err_r >= 0)
			pfd[nfds++] = (struct pollfd){.fd = err_r, .events = POLLIN};
		if (out_r >= 0)
			pfd[nfds++] = (struct pollfd){.fd = out_r, .events = POLLIN};
		if (nfds == 0)
			break;
		if (poll(pfd, nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < nfds; i++) {
			ssize_t n;
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(pfd[i].fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				if (pfd[i].fd == err_r)
					close(TAKE_FD(err_r));
				else
					close(TAKE_FD(out_r));
				continue;
			}
			if (pfd[i].fd == err_r)
				buf_append(&sp->errout, &err_len, buf, n, ERR_KEEP);
			else
				buf_append(&sp->out, &sp->out_len, buf, n, 0);
		}
	}

	while (waitpid(pid, &wstatus, 0) < 0)
		if (errno != EINTR)
			return vm_error_set(err, errno, "wait for %s", sp->argv[0]);
	sp->status = status_code(wstatus);
	if (!sp->errout)
		sp->errout = strdup("");
	if (sp->capture_stdout && !sp->out)
		sp->out = strdup("");
	trim(sp->errout);
	if (sp->status != 0) {
		_cleanup_free_ char *cmd = vm_spawn_argv_string(sp->argv);
		if (sp->status == 127 && sp->errout && strncmp(sp->errout, "exec ", 5) == 0)
			return vm_error_setx(err, ENOENT, "%s", sp->errout);
		return vm_error_setx(err, EIO, "%s failed (exit %d)%s%s", cmd ? cmd : sp->argv[0],
				     sp->status, sp->errout && *sp->errout ? ": " : "",
				     sp->errout ? sp->errout : "");
	}
	return 0;
}

void vm_spawn_clear(struct vm_spawn *sp)
{
	free(sp->out);
	free(sp->errout);
	sp->out = sp->errout = NULL;
	sp->out_len = 0;
}

/* SPDX-License-Identifier: MIT */
/* Unit tests of util/: the error object, the spawn helper, file helpers,
 * UUIDs, locks, extended attributes, sizes for people, JSON strings. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "util/error.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/lock.h"
#include "util/macros.h"
#include "util/spawn.h"
#include "util/uuid.h"
#include "util/xattr.h"

static char tmpdir[] = "/tmp/vmadm-unit.XXXXXX";

static void error_set_appends_strerror(void)
{
	struct vm_error err = {0};
	int r = vm_error_set(&err, ENOENT, "open %s", "/x");

	CHECK(r == -ENOENT);
	CHECK(err.code == ENOENT);
	CHECK_STR(err.msg, "open /x: No such file or directory");
	r = vm_error_set(&err, -EPERM, "again");
	CHECK(r == -EPERM);
	CHECK(vm_error_set(&err, 0, "zero") == -EIO);
}

static void error_prefix_adds_context(void)
{
	struct vm_error err = {0};

	vm_error_setx(&err, EINVAL, "stream checksum mismatch at byte %d", 1048576);
	CHECK(vm_error_prefix(&err, "receive %s", "zones/U-disk0") == -EINVAL);
	CHECK_STR(err.msg, "receive zones/U-disk0: stream checksum mismatch at byte 1048576");
}

static void spawn_captures_status_and_stderr(void)
{
	const char *argv[] = {"sh", "-c", "echo out; echo oops >&2; exit 3", NULL};
	struct vm_spawn sp = {
	    .argv = argv, .stdin_fd = -1, .stdout_fd = -1, .capture_stdout = true};
	struct vm_error err = {0};
	int r = vm_spawn_run(&sp, &err);

	CHECK(r == -EIO);
	CHECK(sp.status == 3);
	CHECK_STR(sp.out, "out\n");
	CHECK_STR(sp.errout, "oops");
	CHECK_HAS(err.msg, "failed (exit 3): oops");
	vm_spawn_clear(&sp);
}

static void spawn_missing_program_is_enoent(void)
{
	const char *argv[] = {"/nonexistent/program", NULL};
	struct vm_spawn sp = {.argv = argv, .stdin_fd = -1, .stdout_fd = -1};
	struct vm_error err = {0};

	CHECK(vm_spawn_run(&sp, &err) == -ENOENT);
	CHECK_HAS(err.msg, "/nonexistent/program");
	vm_spawn_clear(&sp);
}

static void spawn_reports_signals(void)
{
	const char *argv[] = {"sh", "-c", "kill -9 $$", NULL};
	pid_t pid;
	struct vm_error err = {0};

	pid = vm_spawn_start(argv, -1, -1, -1, &err);
	CHECK(pid > 0);
	CHECK(vm_spawn_wait(pid, "sh", &err) == -EIO);
	CHECK_HAS(err.msg, "killed by signal 9");
}

static void argv_string_quotes(void)
{
	const char *argv[] = {"btrfs", "send", "a b", "it's", "", NULL};
	_cleanup_free_ char *s = vm_spawn_argv_string(argv);

	CHECK_STR(s, "btrfs send 'a b' 'it'\\''s' ''");
}

static void atomic_write_and_read(void)
{
	_cleanup_free_ char *path = strdup_printf("%s/f.json", tmpdir), *text = NULL;
	struct vm_error err = {0};
	size_t len;
	struct stat st;

	CHECK(fs_write_atomic(path, "{\"a\":1}", 7, 0600, &err) == 0);
	CHECK(fs_read_file(path, 100, &text, &len, &err) == 0);
	CHECK(len == 7);
	CHECK_STR(text, "{\"a\":1}");
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	free(TAKE_PTR(text));
	CHECK(fs_read_file(path, 3, &text, &len, &err) == -EFBIG);
	CHECK_HAS(err.msg, "larger than 3 bytes");
	/* a write into a missing directory fails and leaves no temp file */
	free(path);
	path = strdup_printf("%s/missing/f.json", tmpdir);
	CHECK(fs_write_atomic(path, "x", 1, 0600, &err) == -ENOENT);
	CHECK_HAS(err.msg, "missing/f.json.tmp");
}

static void mkdir_p_and_rm_rf(void)
{
	_cleanup_free_ char *deep = strdup_printf("%s/a/b/c", tmpdir);
	_cleanup_free_ char *top = strdup_printf("%s/a", tmpdir);
	_cleanup_free_ char *file = strdup_printf("%s/a/b/c/f", tmpdir);
	_cleanup_free_ char *link = strdup_printf("%s/a/link", tmpdir);
	struct vm_error err = {0};
	int fd;

	CHECK(fs_mkdir_p(deep, 0755, &err) == 0);
	CHECK(fs_is_dir(deep));
	fd = open(file, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	/* a symlink to outside must be removed, not followed */
	CHECK(symlink(tmpdir, link) == 0);
	CHECK(fs_rm_rf(top, &err) == 0);
	CHECK(!fs_exists(top));
	CHECK(fs_is_dir(tmpdir));
	CHECK(fs_rm_rf(top, &err) == 0); /* missing is fine */
}

/* Set FS_IOC_SETFLAGS flags on path; false where the filesystem or our
 * capabilities do not allow it. */
static bool set_flags(const char *path, int add)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), flags;
	bool ok;

	if (fd < 0)
		return false;
	ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
	     (flags |= add, ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0);
	close(fd);
	return ok;
}

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);

	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
}

/* What a received tree (or a container's root) can hold that an rm -rf
 * trips over: immutable and append-only files and directories, directories
 * without permissions, fifos, names of 255 bytes, a symlink to outside, and
 * a depth beyond the open-file limit and a recursion's stack. */
static void rm_rf_defeats_what_a_tree_holds(void)
{
	_cleanup_free_ char *top = strdup_printf("%s/hostile", tmpdir);
	_cleanup_free_ char *outside = strdup_printf("%s/outside", tmpdir);
	struct vm_error err = {0};
	struct rlimit saved, low;
	char name[256], p[512];
	bool flags;
	int dfd;

	CHECK(fs_mkdir_p(top, 0755, &err) == 0);
	touch(outside);
	snprintf(p, sizeof(p), "%s/link", top);
	CHECK(symlink(outside, p) == 0);
	snprintf(p, sizeof(p), "%s/fifo", top);
	CHECK(mkfifo(p, 0644) == 0);
	memset(name, 'n', 255);
	name[255] = '\0';
	snprintf(p, sizeof(p), "%s/%s", top, name);
	touch(p);
	/* 5000 levels, a path far beyond PATH_MAX, removed below with an
	 * open-file limit of 64 */
	snprintf(p, sizeof(p), "%s/deep", top);
	CHECK(mkdir(p, 0755) == 0);
	dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (int i = 0; i < 5000 && dfd >= 0; i++) {
		int fd = mkdirat(dfd, "d", 0755) == 0
			     ? openat(dfd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
			     : -1;
		close(dfd);
		dfd = fd;
	}
	CHECK(dfd >= 0);
	if (dfd >= 0) {
		int fd = openat(dfd, "f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		CHECK(fd >= 0);
		close(fd);
		close(dfd);
	}
	/* closed directories with content */
	snprintf(p, sizeof(p), "%s/closed/inner", top);
	CHECK(fs_mkdir_p(p, 0755, &err) == 0);
	snprintf(p, sizeof(p), "%s/closed/inner/f", top);
	touch(p);
	snprintf(p, sizeof(p), "%s/closed/inner", top);
	CHECK(chmod(p, 0) == 0);
	snprintf(p, sizeof(p), "%s/closed", top);
	CHECK(chmod(p, 0500) == 0);
	/* immutable and append-only, last, where this filesystem has them */
	snprintf(p, sizeof(p), "%s/locked/sub", top);
	CHECK(fs_mkdir_p(p, 0755, &err) == 0);
	snprintf(p, sizeof(p), "%s/locked/sub/f", top);
	touch(p);
	flags = set_flags(p, FS_IMMUTABLE_FL);
	snprintf(p, sizeof(p), "%s/locked/sub", top);
	flags = flags && set_flags(p, FS_APPEND_FL);
	snprintf(p, sizeof(p), "%s/locked", top);
	flags = flags && set_flags(p, FS_IMMUTABLE_FL);
	flags = flags && set_flags(top, FS_IMMUTABLE_FL);
	if (!flags)
		printf("# rm_rf: no immutable flags here (not root, or the filesystem)\n");

	CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
	low = saved;
	low.rlim_cur = 64;
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	CHECK(fs_rm_rf(top, &err) == 0);
	CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
	CHECK(!fs_exists(top));
	CHECK(fs_exists(outside));
}

static void uuids(void)
{
	char u[VM_UUID_LEN + 1], v[VM_UUID_LEN + 1];

	CHECK(vm_uuid_generate(u) == 0);
	CHECK(vm_uuid_generate(v) == 0);
	CHECK(vm_uuid_valid(u));
	CHECK(strcmp(u, v) != 0);
	CHECK(u[14] == '4');
	CHECK(vm_uuid_valid("0C9D2A3E-5B1F-4C6E-9A47-3F2E1D0B7A61"));
	CHECK(!vm_uuid_valid("0c9d2a3e-5b1f-4c6e-9a47-3f2e1d0b7a6"));
	CHECK(!vm_uuid_valid("0c9d2a3e-5b1f-4c6e-9a47_3f2e1d0b7a61"));
	CHECK(!vm_uuid_valid("../../../../etc/passwd/../../../x"));
	CHECK(!vm_uuid_valid(NULL));
}

static void lock_is_exclusive(void)
{
	_cleanup_free_ char *path = strdup_printf("%s/l.lock", tmpdir);
	struct vm_error err = {0};
	int fd = vm_lock_file(path, 0, "VM x", &err), status;
	pid_t pid;

	CHECK(fd >= 0);
	pid = fork();
	if (pid == 0) {
		struct vm_error e = {0};
		_exit(vm_lock_file(path, 0, "VM x", &e) == -EBUSY && strstr(e.msg, "VM x is busy")
			  ? 0
			  : 1);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fd);
	fd = vm_lock_file(path, 0, "VM x", &err);
	CHECK(fd >= 0);
	close(fd);
}

static void xattrs_copy_and_compare(void)
{
	_cleanup_free_ char *a = strdup_printf("%s/xa", tmpdir),
			    *b = strdup_printf("%s/xb", tmpdir);
	_cleanup_free_ char *l = strdup_printf("%s/xl", tmpdir);
	struct vm_error err = {0};
	char v[8] = "";

	CHECK(fs_write_atomic(a, "a", 1, 0644, &err) == 0);
	CHECK(fs_write_atomic(b, "b", 1, 0644, &err) == 0);
	CHECK(xattr_equal(a, b)); /* none on either */
	CHECK(setxattr(a, "user.one", "1", 1, 0) == 0);
	CHECK(setxattr(a, "user.empty", "", 0, 0) == 0);
	CHECK(!xattr_equal(a, b));
	CHECK(xattr_copy(a, b, &err) == 0);
	CHECK(xattr_equal(a, b));
	CHECK(getxattr(b, "user.empty", v, sizeof(v)) == 0);
	CHECK(getxattr(b, "user.one", v, sizeof(v)) == 1 && v[0] == '1');
	CHECK(setxattr(b, "user.one", "2", 1, 0) == 0); /* a value differs */
	CHECK(!xattr_equal(a, b));
	CHECK(setxattr(b, "user.one", "1", 1, 0) == 0);
	CHECK(setxattr(b, "user.two", "2", 1, 0) == 0); /* one more name */
	CHECK(!xattr_equal(a, b) && !xattr_equal(b, a));
	CHECK(removexattr(b, "user.empty") == 0); /* as many names, other sets */
	CHECK(!xattr_equal(a, b) && !xattr_equal(b, a));
	/* a symlink's own attributes, not its target's */
	CHECK(symlink(a, l) == 0);
	CHECK(!xattr_equal(l, a));
	CHECK(xattr_copy(l, b, &err) == 0); /* a symlink has none: nothing to do */
	CHECK(xattr_copy("/nonexistent/x", b, &err) == -ENOENT);
	CHECK(strstr(err.msg, "/nonexistent/x") != NULL);
}

/* fs_splice_full moves bytes through pipes, short only at the end of its
 * input, and says -EINVAL where neither fd is a pipe (the caller copies
 * then), -EPIPE for a pipe nobody reads. */
static void splice_between_pipes(void)
{
	char file[PATH_MAX], buf[8];
	int in[2], out[2], fd;

	CHECK(pipe(in) == 0 && pipe(out) == 0);
	CHECK(write(in[1], "abcdef", 6) == 6);
	CHECK(fs_splice_full(in[0], out[1], 4) == 4);
	CHECK(read(out[0], buf, sizeof(buf)) == 4 && memcmp(buf, "abcd", 4) == 0);
	close(in[1]); /* the input ends after 2 more bytes: a short count */
	CHECK(fs_splice_full(in[0], out[1], 5) == 2);
	CHECK(read(out[0], buf, sizeof(buf)) == 2 && memcmp(buf, "ef", 2) == 0);
	snprintf(file, sizeof(file), "%s/splice", tmpdir);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, "f", 1) == 1 && lseek(fd, 0, SEEK_SET) == 0);
	CHECK(fs_splice_full(fd, fd, 1) == -EINVAL); /* neither is a pipe */
	close(in[0]);
	CHECK(pipe(in) == 0);
	CHECK(write(in[1], "x", 1) == 1);
	close(out[0]);
	signal(SIGPIPE, SIG_IGN);
	CHECK(fs_splice_full(in[0], out[1], 1) == -EPIPE); /* its reader is gone */
	signal(SIGPIPE, SIG_DFL);
	close(in[0]);
	close(in[1]);
	close(out[1]);
	close(fd);
}

/* The one size formatter: what messages, progress lines and the stop rule's
 * reasons show. */
static void sizes_for_people(void)
{
	char buf[FORMAT_SIZE_MAX];

	CHECK_STR(format_size(0, buf), "0 B");
	CHECK_STR(format_size(1023, buf), "1023 B");
	CHECK_STR(format_size(1024, buf), "1.0 KiB");
	CHECK_STR(format_size(1536, buf), "1.5 KiB");
	CHECK_STR(format_size(10ull << 20, buf), "10.0 MiB");
	CHECK_STR(format_size(320ull << 20, buf), "320.0 MiB");
	CHECK_STR(format_size(1ull << 30, buf), "1.0 GiB");
	CHECK_STR(format_size(5ull << 40, buf), "5.0 TiB");
	CHECK_STR(format_size(UINT64_MAX, buf), "16777216.0 TiB"); /* TiB is the largest */
	CHECK(format_size(42, buf) == buf);
}

/* The one JSON string getter: NULL for anything but a string member. */
static void json_strings(void)
{
	_cleanup_json_ json_t *o = json_pack("{s:s, s:i, s:n}", "a", "x", "n", 1, "z");
	_cleanup_json_ json_t *arr = json_pack("[s]", "a");

	CHECK_STR(jstr(o, "a"), "x");
	CHECK(jstr(o, "n") == NULL);	   /* not a string */
	CHECK(jstr(o, "z") == NULL);	   /* null */
	CHECK(jstr(o, "missing") == NULL); /* no such member */
	CHECK(jstr(arr, "a") == NULL);	   /* not an object */
	CHECK(jstr(NULL, "a") == NULL);
}

int main(void)
{
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(error_set_appends_strerror);
	RUN(error_prefix_adds_context);
	RUN(spawn_captures_status_and_stderr);
	RUN(spawn_missing_program_is_enoent);
	RUN(spawn_reports_signals);
	RUN(argv_string_quotes);
	RUN(atomic_write_and_read);
	RUN(mkdir_p_and_rm_rf);
	RUN(rm_rf_defeats_what_a_tree_holds);
	RUN(uuids);
	RUN(lock_is_exclusive);
	RUN(xattrs_copy_and_compare);
	RUN(splice_between_pipes);
	RUN(sizes_for_people);
	RUN(json_strings);
	{
		struct vm_error err = {0};
		fs_rm_rf(tmpdir, &err);
	}
	CHECK_EXIT();
}

/* SPDX-License-Identifier: MIT */
/*
 * The harnesses' shared part: the sandbox and scratch directory, the input
 * as a file descriptor, and the receive flow with its checks (fuzz.h).
 *
 * The harnesses run as root (the tar receiver restores owners, device
 * nodes and setuid bits only then) on archives built to do harm, on a
 * machine others use. So, when root, a harness first takes a mount
 * namespace of its own in which every mount is read-only except the
 * directories libFuzzer writes (its corpus and artifact directories and the
 * working directory) and the scratch tmpfs, which is nodev and nosuid: a
 * receiver that wrote outside its directory fails there with EROFS instead
 * of changing the host, and a device node an archive made cannot be opened.
 * The namespace drops its copies of the mounts it does not need (another
 * test's pool, kept alive by a copy here, would keep its loop device busy).
 * The checks after each receive catch the writes that stay inside the
 * scratch directory (a canary directory next to the datasets).
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "node/node.h"
#include "util/macros.h"

#define CANARY	    "canary"
#define CANARY_FILE "victim"
#define CANARY_TEXT "canary\n"

static char scratch_base[PATH_MAX]; /* the tmpfs (or directory) */
static char scratch_rx[PATH_MAX];   /* base/rx: the receives, emptied after each input */
static bool sandboxed;

void fuzz_die(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void fuzz_check_error(int r, const struct vm_error *err, const char *what)
{
	static int verbose = -1;

	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (r >= 0)
		return;
	if (verbose)
		fprintf(stderr, "fuzz: %s: %s\n", what, err->msg);
	if (err->code <= 0 || err->code != -r)
		fuzz_die("%s returned %d with error code %d (message \"%s\")", what, r, err->code,
			 err->msg);
	if (!err->msg[0])
		fuzz_die("%s failed (%d) without a message", what, r);
}

/* ---- the sandbox ---- */

static void make_writable(const char *path)
{
	struct mount_attr rw = {.attr_clr = MOUNT_ATTR_RDONLY};
	char real[PATH_MAX];

	if (!realpath(path, real))
		return; /* libFuzzer fails on it later, with its own message */
	if (mount(real, real, NULL, MS_BIND | MS_REC, NULL) < 0)
		fuzz_die("bind %s: %m", real);
	if (mount_setattr(AT_FDCWD, real, AT_RECURSIVE, &rw, sizeof(rw)) < 0)
		fuzz_die("make %s writable: %m", real);
}

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* The directories libFuzzer may write: corpus directories (arguments that
 * are directories), those of -artifact_prefix and -exact_artifact_path,
 * and the working directory (the default artifact prefix); with inputs,
 * also those of the files named (inputs to run once, only read). */
static void writable_dirs(int argc, char **argv, bool inputs, void (*fn)(const char *))
{
	char cwd[PATH_MAX];

	if (getcwd(cwd, sizeof(cwd)))
		fn(cwd);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		struct stat st;

		if (a[0] != '-') {
			if (stat(a, &st) == 0 && S_ISDIR(st.st_mode)) {
				fn(a);
			} else if (inputs && stat(a, &st) == 0) {
				char d[PATH_MAX];
				char *slash;

				snprintf(d, sizeof(d), "%s", a);
				slash = strrchr(d, '/');
				if (slash)
					*slash = '\0';
				fn(slash ? (d[0] ? d : "/") : ".");
			}
			continue;
		}
		if (!strncmp(a, "-artifact_prefix=", 17) ||
		    !strncmp(a, "-exact_artifact_path=", 21)) {
			char d[PATH_MAX];
			char *slash;

			snprintf(d, sizeof(d), "%s", strchr(a, '=') + 1);
			slash = strrchr(d, '/');
			if (!slash)
				continue; /* the working directory */
			if (slash == d)
				slash[1] = '\0';
			else
				*slash = '\0';
			fn(d);
		}
	}
}

static const char *mount_point;
static void refuse_hidden(const char *dir)
{
	char real[PATH_MAX];

	if (realpath(dir, real) && under(real, mount_point))
		fuzz_die("%s is under %s, which the scratch tmpfs covers in the harness: set "
			 "FUZZ_SCRATCH to another existing directory",
			 real, mount_point);
}

/* The paths whose mounts stay in the namespace. */
#define KEEP_MAX 64
static char *keep[KEEP_MAX];
static size_t nkeep;
static void keep_path(const char *path)
{
	char real[PATH_MAX];

	if (nkeep < KEEP_MAX && realpath(path, real) && (keep[nkeep] = strdup(real)))
		nkeep++;
}

/* mountinfo's octal escapes (\040 for a space) undone in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++, o++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 3;
		} else {
			*o = *s;
		}
	}
	*o = '\0';
}

/* Detach, in this namespace, every mount that holds none of the kept paths
 * (other than /, /proc, /sys, /dev): a copy of another test's pool or
 * network namespace here would keep it alive (its loop device busy) after
 * its owner unmounted it. */
static void detach_unneeded(void)
{
	char *mps[512], line[4096];
	size_t n = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		fuzz_die("read /proc/self/mountinfo: %m");
	while (n < 512 && fgets(line, sizeof(line), f)) {
		char *field = line, *mp = NULL;

		for (int i = 0; i < 5 && field; i++) {
			char *sp = strchr(field, ' ');

			if (i == 4)
				mp = field;
			if (sp)
				*sp = '\0';
			field = sp ? sp + 1 : NULL;
		}
		if (!mp)
			continue;
		unescape(mp);
		if (!(mps[n] = strdup(mp)))
			fuzz_die("out of memory");
		n++;
	}
	fclose(f);
	while (n-- > 0) {
		bool needed = streq(mps[n], "/") || under(mps[n], "/proc") ||
			      under(mps[n], "/sys") || under(mps[n], "/dev");

		/* a mount is needed if a kept path lies in it and no deeper
		 * mount takes that path */
		for (size_t k = 0; k < nkeep && !needed; k++) {
			bool deeper = false;

			if (!under(keep[k], mps[n]))
				continue;
			for (size_t j = 0; j < 512 && mps[j] && j != n && !deeper; j++)
				deeper = under(keep[k], mps[j]) && strlen(mps[j]) > strlen(mps[n]);
			needed = !deeper;
		}
		if (!needed)
			umount2(mps[n], MNT_DETACH); /* may be gone with a parent already */
		free(mps[n]);
		mps[n] = NULL;
	}
}

static void sandbox(int argc, char **argv)
{
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
	const char *mp = getenv("FUZZ_SCRATCH");
	char cwd[PATH_MAX];
	struct statvfs sv;

	/* like systemd's PrivateTmp=: /tmp is the harness's own */
	if (!mp || !*mp)
		mp = "/tmp";
	mount_point = mp;
	writable_dirs(argc, argv, true, refuse_hidden);
	writable_dirs(argc, argv, true, keep_path);
	keep_path(mp);
	keep_path("/proc/self/exe");
	keep_path("/usr");
	keep_path("/etc");
	if (unshare(CLONE_NEWNS) < 0)
		fuzz_die("unshare the mount namespace: %m");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fuzz_die("make the mounts private: %m");
	detach_unneeded();
	if (mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof(ro)) < 0)
		fuzz_die("make every mount read-only: %m");
	writable_dirs(argc, argv, false, make_writable);
	/* the working directory still points into the read-only mount below
	 * the new one: enter it again (artifacts are written relative to it) */
	if (getcwd(cwd, sizeof(cwd)) && chdir(cwd) < 0)
		fuzz_die("chdir %s: %m", cwd);
	/* covers mp in this namespace only; gone with the process */
	if (mount("vmadm-fuzz", mp, "tmpfs", MS_NODEV | MS_NOSUID, "size=512m,mode=0700") < 0)
		fuzz_die("mount a tmpfs on %s: %m", mp);
	if (statvfs(mp, &sv) < 0 || !(sv.f_flag & ST_NODEV) || !(sv.f_flag & ST_NOSUID))
		fuzz_die("%s is not nodev,nosuid", mp);
	snprintf(scratch_base, sizeof(scratch_base), "%s", mp);
	sandboxed = true;
}

static void rm_children(int dfd, const char *where);

/* Without the sandbox, the scratch directory is a real one: removed at exit. */
static void remove_base(void)
{
	int fd = open(scratch_base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	rm_children(fd, scratch_base);
	close(fd);
	rmdir(scratch_base);
}

static void setup(int argc, char **argv)
{
	if (scratch_rx[0])
		return;
	if (geteuid() == 0) {
		sandbox(argc, argv);
	} else {
		const char *tmp = getenv("FUZZ_SCRATCH");

		snprintf(scratch_base, sizeof(scratch_base), "%s/vmadm-fuzz.XXXXXX",
			 tmp && *tmp ? tmp : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"));
		if (!mkdtemp(scratch_base))
			fuzz_die("mkdtemp %s: %m", scratch_base);
		fprintf(stderr,
			"fuzz: not root: no sandbox, and owners, device nodes and setuid "
			"files are not restored (scratch %s)\n",
			scratch_base);
	}
	snprintf(scratch_rx, sizeof(scratch_rx), "%s/rx", scratch_base);
	if (mkdir(scratch_rx, 0700) < 0 && errno != EEXIST)
		fuzz_die("mkdir %s: %m", scratch_rx);
	if (!sandboxed)
		atexit(remove_base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	setup(*argc, *argv);
	return 0;
}

const char *fuzz_scratch(void)
{
	if (!scratch_rx[0])
		setup(0, NULL);
	return scratch_rx;
}

struct vm_node *fuzz_node(void)
{
	static struct vm_node *node;
	struct vm_error err = {0};
	struct vm_pool *pool;
	char root[PATH_MAX];

	if (node)
		return node;
	fuzz_scratch();
	snprintf(root, sizeof(root), "%s/node", scratch_base);
	setenv("VMADM_ROOT", root, 1);
	setenv("VMADM_POOL_TYPE", "dir", 1);
	if (vm_node_open(&node, &err) < 0 || vm_node_pool(node, &pool, &err) < 0)
		fuzz_die("a dir-pool node at %s: %s", root, err.msg);
	return node;
}

uint64_t fuzz_volume_max(void)
{
	fuzz_scratch();
	return sandboxed ? UINT64_MAX : 64ull << 20;
}

/* ---- emptying the scratch directory ---- */

static void clear_flags(int fd)
{
	int flags;

	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		return;
	if (flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)) {
		flags &= ~(FS_IMMUTABLE_FL | FS_APPEND_FL);
		ioctl(fd, FS_IOC_SETFLAGS, &flags);
	}
}

/* Clear the flags of dfd/name if it is a file or directory (never open
 * anything else: a device node stays closed). */
static void clear_flags_at(int dfd, const char *name)
{
	struct stat st;
	int fd;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return;
	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return;
	clear_flags(fd);
	close(fd);
}

static void rm_at(int dfd, const char *name, const char *where)
{
	struct stat st;
	int flags = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return;
		fuzz_die("stat %s/%s: %m", where, name);
	}
	if (S_ISDIR(st.st_mode)) {
		char sub[PATH_MAX];
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd < 0 && errno == EACCES && fchmodat(dfd, name, 0700, 0) == 0)
			fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			fuzz_die("open %s/%s: %m", where, name);
		snprintf(sub, sizeof(sub), "%s/%s", where, name);
		rm_children(fd, sub);
		close(fd);
		flags = AT_REMOVEDIR;
	}
	if (unlinkat(dfd, name, flags) == 0)
		return;
	if (errno == EPERM || errno == EACCES) {
		/* an immutable or append-only entry, or one in such a directory */
		clear_flags_at(dfd, name);
		clear_flags(dfd);
		/* not root: a directory the archive made read-only */
		if (fchmod(dfd, 0700) < 0 && errno != EPERM)
			fuzz_die("chmod %s: %m", where);
		if (unlinkat(dfd, name, flags) == 0)
			return;
	}
	fuzz_die("remove %s/%s: %m", where, name);
}

static void rm_children(int dfd, const char *where)
{
	DIR *d;
	struct dirent *e;
	int fd = dup(dfd);

	if (fd < 0 || !(d = fdopendir(fd)))
		fuzz_die("read %s: %m", where);
	while ((e = readdir(d)))
		if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
			rm_at(dfd, e->d_name, where);
	closedir(d);
}

void fuzz_scratch_empty(void)
{
	const char *rx = fuzz_scratch();
	int fd = open(rx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		fuzz_die("open %s: %m", rx);
	clear_flags(fd);
	rm_children(fd, rx);
	close(fd);
}

/* ---- the input ---- */

int fuzz_input_fd(const uint8_t *data, size_t size)
{
	static int fd = -1;

	if (fd < 0) {
		fd = memfd_create("fuzz-input", MFD_CLOEXEC);
		if (fd < 0)
			fuzz_die("memfd_create: %m");
	}
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size) ||
	    lseek(fd, 0, SEEK_SET) != 0)
		fuzz_die("fill the input file: %m");
	return fd;
}

/* ---- the receive flow ---- */

static void write_file(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0 || write(fd, text, len) != (ssize_t)len)
		fuzz_die("write %s: %m", path);
	close(fd);
}

#define P(...) (snprintf(p, sizeof(p), __VA_ARGS__), p)

/* The canary: rx/canary/victim, which no receive may reach. */
static void make_canary(void)
{
	char p[PATH_MAX];

	if (mkdir(P("%s/" CANARY, scratch_rx), 0755) < 0)
		fuzz_die("mkdir %s: %m", p);
	write_file(P("%s/" CANARY "/" CANARY_FILE, scratch_rx), CANARY_TEXT, strlen(CANARY_TEXT));
}

static void check_canary(void)
{
	char p[PATH_MAX], buf[64];
	struct stat st;
	DIR *d;
	struct dirent *e;
	int fd;
	ssize_t len;

	if (lstat(P("%s/" CANARY, scratch_rx), &st) < 0 || !S_ISDIR(st.st_mode))
		fuzz_die("the canary directory %s is gone or replaced: a receive wrote outside its "
			 "dataset",
			 p);
	if (!(d = opendir(p)))
		fuzz_die("open %s: %m", p);
	while ((e = readdir(d)))
		if (!streq(e->d_name, ".") && !streq(e->d_name, "..") &&
		    !streq(e->d_name, CANARY_FILE))
			fuzz_die("%s/%s appeared: a receive wrote outside its dataset", p,
				 e->d_name);
	closedir(d);
	fd = open(P("%s/" CANARY "/" CANARY_FILE, scratch_rx), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		fuzz_die("the canary %s is gone or replaced: a receive wrote outside its dataset",
			 p);
	len = read(fd, buf, sizeof(buf));
	close(fd);
	if (len != (ssize_t)strlen(CANARY_TEXT) || memcmp(buf, CANARY_TEXT, len) != 0 ||
	    (st.st_mode & 07777) != 0644 || st.st_nlink != 1 || st.st_uid != geteuid())
		fuzz_die("the canary %s changed: a receive wrote outside its dataset", p);
}

/* A base tree for a tar-delta at dir/root, what from_snapshot held: the
 * layout of a joyent VM's dataset (the zone's root under "root", a child
 * dataset mounted at "data"), as in fuzz/make-seeds, with symlinks that
 * lead to the canary. */
static void make_base_tree(const char *dir)
{
	static const char *const dirs[] = {"",		"/root",      "/root/etc",
					   "/root/bin", "/root/gone", "/root/gone/deep",
					   "/root/var", "/data"};
	static const char *const files[] = {"/root/etc/motd", "/root/bin/prog", "/root/gone/file",
					    "/root/gone/deep/file", "/data/keep"};
	char p[PATH_MAX], to[PATH_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (mkdir(P("%s/root%s", dir, dirs[i]), 0755) < 0)
			fuzz_die("mkdir %s: %m", p);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++)
		write_file(P("%s/root%s", dir, files[i]), "text\n", 5);
	snprintf(to, sizeof(to), "%s/root/root/bin/prog", dir);
	if (link(to, P("%s/root/root/bin/hard", dir)) < 0)
		fuzz_die("link %s: %m", p);
	if (symlink("../bin/prog", P("%s/root/root/etc/link", dir)) < 0 ||
	    /* ways out, to the canary: relative and absolute, a directory and a file */
	    symlink("../../" CANARY, P("%s/root/out", dir)) < 0 ||
	    symlink("../../../" CANARY, P("%s/root/root/out", dir)) < 0 ||
	    (snprintf(to, sizeof(to), "%s/" CANARY, scratch_rx),
	     symlink(to, P("%s/root/root/outabs", dir))) < 0 ||
	    (snprintf(to, sizeof(to), "%s/" CANARY "/" CANARY_FILE, scratch_rx),
	     symlink(to, P("%s/root/root/etc/outfile", dir))) < 0)
		fuzz_die("symlink %s: %m", p);
	if (mkfifo(P("%s/root/root/var/fifo", dir), 0600) < 0)
		fuzz_die("mkfifo %s: %m", p);
}

/* A base image for a blocks-delta at dir/disk.raw: 256 KiB, data in the
 * first and third 64 KiB, a hole between. */
static void make_base_image(const char *dir)
{
	char p[PATH_MAX];
	uint8_t buf[64 << 10];
	int fd = open(P("%s/disk.raw", dir), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		fuzz_die("create %s: %m", p);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	if (pwrite(fd, buf, sizeof(buf), 0) != sizeof(buf) ||
	    pwrite(fd, buf, sizeof(buf), 2 * sizeof(buf)) != sizeof(buf) ||
	    ftruncate(fd, 4 * sizeof(buf)) < 0)
		fuzz_die("write %s: %m", p);
	close(fd);
}

/* dir holds nothing but the entry named target (or nothing at all). */
static void check_only(const char *dir, const char *target)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		fuzz_die("open %s: %m (a receive removed or replaced it)", dir);
	while ((e = readdir(d)))
		if (!streq(e->d_name, ".") && !streq(e->d_name, "..") &&
		    !(target && streq(e->d_name, target)))
			fuzz_die("%s/%s appeared: a receive wrote outside its target %s/%s", dir,
				 e->d_name, dir, target ? target : "(none)");
	closedir(d);
}

/* rx holds the canary and ds0..ds(n-1) only. */
static void check_rx(int n)
{
	DIR *d = opendir(scratch_rx);
	struct dirent *e;

	if (!d)
		fuzz_die("open %s: %m", scratch_rx);
	while ((e = readdir(d))) {
		char *end;
		long k;

		if (streq(e->d_name, ".") || streq(e->d_name, "..") || streq(e->d_name, CANARY))
			continue;
		k = strncmp(e->d_name, "ds", 2) == 0 ? strtol(e->d_name + 2, &end, 10) : -1;
		if (k < 0 || k >= n || *end)
			fuzz_die("%s/%s appeared: a receive wrote outside its dataset", scratch_rx,
				 e->d_name);
	}
	closedir(d);
}

static const char *const skip_names[] = {"data", NULL};

/* Receive the reader's current dataset into dir; returns the receiver's
 * result (0 when the harness only read the data). */
static int receive_one(struct stream_reader *r, const struct stream_dataset *ds, const char *dir,
		       const char **ret_target, struct vm_error *err)
{
	char p[PATH_MAX];
	struct stat st;
	int k;

	*ret_target = NULL;
	switch (ds->encoding) {
	case STREAM_ENC_BLOCKS:
	case STREAM_ENC_BLOCKS_DELTA:
		if (ds->size > fuzz_volume_max())
			return 0;
		*ret_target = "disk.raw";
		if (ds->encoding == STREAM_ENC_BLOCKS_DELTA) {
			make_base_image(dir);
			k = stream_receive_volume_delta(r, P("%s/disk.raw", dir), err);
			fuzz_check_error(k, err, "stream_receive_volume_delta");
		} else {
			k = stream_receive_volume(r, P("%s/disk.raw", dir), err);
			fuzz_check_error(k, err, "stream_receive_volume");
			if (k < 0 && lstat(p, &st) == 0)
				fuzz_die("refused volume %s: the file it made is still there", p);
		}
		if (k >= 0 &&
		    (lstat(p, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != ds->size))
			fuzz_die(
			    "volume %s received, but it is not a file of the declared %llu bytes",
			    p, (unsigned long long)ds->size);
		return k;
	case STREAM_ENC_TAR:
		*ret_target = "root";
		if (mkdir(P("%s/root", dir), 0755) < 0)
			fuzz_die("mkdir %s: %m", p);
		k = stream_receive_tree(r, p, err);
		fuzz_check_error(k, err, "stream_receive_tree");
		return k;
	case STREAM_ENC_TAR_DELTA:
		*ret_target = "root";
		make_base_tree(dir);
		k = stream_receive_tree_delta(r, P("%s/root", dir), skip_names, err);
		fuzz_check_error(k, err, "stream_receive_tree_delta");
		return k;
	default:
		return 0; /* read by stream_next_dataset */
	}
}

void fuzz_receive(int fd)
{
	_cleanup_stream_reader_ struct stream_reader *r = NULL;
	_cleanup_json_ json_t *config = NULL;
	const struct stream_dataset *ds;
	struct vm_error err = {0};
	int k, n = 0;

	fuzz_scratch();
	make_canary();
	k = stream_reader_open(fd, &r, &err);
	fuzz_check_error(k, &err, "stream_reader_open");
	if (k < 0)
		goto out;
	k = stream_read_config(r, &config, &err);
	fuzz_check_error(k, &err, "stream_read_config");
	if (k < 0)
		goto out;
	while ((k = stream_next_dataset(r, &ds, &err)) == 1) {
		const char *target;
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%s/ds%d", scratch_rx, n++);
		if (mkdir(dir, 0700) < 0)
			fuzz_die("mkdir %s: %m", dir);
		k = receive_one(r, ds, dir, &target, &err);
		check_only(dir, target);
		if (k < 0)
			goto out; /* checked by receive_one */
	}
	fuzz_check_error(k, &err, "stream_next_dataset");
	if (k == 0 && getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz: received %d datasets\n", n);
out:
	check_rx(n);
	check_canary();
}

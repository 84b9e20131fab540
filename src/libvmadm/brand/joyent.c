/* SPDX-License-Identifier: MIT */
/*
 * Brand joyent: a SmartOS zone becomes a Linux system container, run by
 * liblxc (the library, not the lxc-* tools).
 *
 * Layout, as SmartOS has it for a zone:
 *   ZONEPATH/root        the container's root filesystem (dataset zones/UUID)
 *   ZONEPATH/data        the delegated dataset zones/UUID/data, bind-mounted
 *                        inside the container at /zones/UUID/data
 * and ours:
 *   ROOT/run/lxc/UUID/config    the LXC config, written from the record at
 *                               each start and removed at stop
 *   ROOT/log/UUID-lxc.log       liblxc's log for this container
 *   ROOT/log/UUID-console.log   everything the container wrote to its console
 *
 * The container's name is the VM's uuid and its lxcpath ROOT/run/lxc, so
 * `lxc-info -P ROOT/run/lxc -n UUID` shows it.
 *
 * Signals: LXC asks a container to halt with lxc.signal.halt and to reboot
 * with lxc.signal.reboot. We set them to what busybox init honours: SIGUSR2
 * (poweroff; SIGUSR1 would halt, which in a container ends the same way) and
 * SIGTERM (reboot). LXC's defaults, SIGPWR and SIGINT, suit systemd.
 *
 * Never c->destroy(): for a "dir:" rootfs liblxc deletes the rootfs
 * directory, which here is the VM's dataset. We remove only our config
 * directory.
 */
#include "joyent.h"
#include "brand.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lxc/lxccontainer.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/props.h"

#define JOYENT_START_TIMEOUT 30 /* seconds to reach RUNNING */
#define JOYENT_STOP_TIMEOUT 10  /* seconds for STOPPED after a kill */
#define JOYENT_REBOOT_TIMEOUT 60
#define JOYENT_LOG_TAIL 1024 /* bytes of lxc log quoted in an error */
/* Detach from `vmadm console` with Ctrl-] then q (LXC wants the escape
 * character then 'q'; 0x1d is Ctrl-], as telnet and virsh use). */
#define JOYENT_CONSOLE_ESCAPE 0x1d

/* Like vm_node_path(), kept local so that the brand links without the node
 * and storage parts (tests/integration/joyent-ops). */
static char *node_path(struct vm_node *node, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static char *node_path(struct vm_node *node, const char *fmt, ...)
{
	_cleanup_free_ char *rel = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		rel = NULL;
	va_end(ap);
	return rel ? strdup_printf("%s/%s", node->root, rel) : NULL;
}

DEFINE_CLEANUP(struct lxc_container, lxc_container_put)
#define _cleanup_lxc_ _cleanup_(lxc_container_putp)

/* What a joyent brand needs from a VM record, borrowed from it. */
struct joyent_vm {
	const char *uuid;
	const char *hostname;
	const char *zonepath;
	const char *zfs_filesystem;	/* "zones/UUID" */
	json_int_t max_physical_memory; /* MiB, 0 when unset */
	json_int_t cpu_cap;		/* percent, 0 when unset */
	bool delegate_dataset;
	bool received;	     /* came from another node (received_at set) */
	json_t *datasets;    /* array of dataset names, may be NULL */
	json_t *filesystems; /* array of {source,target,type,options}, may be NULL */
};

static int joyent_vm_parse(struct vm_node *node, json_t *vm, struct joyent_vm *ret,
			   char **ret_zonepath, struct vm_error *err)
{
	struct joyent_vm j = { 0 };
	json_t *v;

	*ret_zonepath = NULL;
	j.uuid = json_string_value(json_object_get(vm, "uuid"));
	if (!j.uuid || !*j.uuid || strchr(j.uuid, '/'))
		return vm_error_setx(err, EINVAL, "joyent VM record has no valid uuid");
	j.hostname = json_string_value(json_object_get(vm, "hostname"));
	if (!j.hostname || !*j.hostname)
		j.hostname = j.uuid;
	j.zfs_filesystem = json_string_value(json_object_get(vm, "zfs_filesystem"));
	j.zonepath = json_string_value(json_object_get(vm, "zonepath"));
	if (!j.zonepath || j.zonepath[0] != '/') {
		/* Not set (or not absolute): the dataset zones/UUID under the
		 * pool's mount point, as vm create would have put it. */
		char *zp = j.zfs_filesystem ? node_path(node, "%s", j.zfs_filesystem)
					    : node_path(node, "zones/%s", j.uuid);
		if (!zp)
			return vm_error_set(err, ENOMEM, "VM %s", j.uuid);
		*ret_zonepath = zp;
		j.zonepath = zp;
	}
	v = json_object_get(vm, "max_physical_memory");
	if (json_is_integer(v) && json_integer_value(v) > 0)
		j.max_physical_memory = json_integer_value(v);
	v = json_object_get(vm, "cpu_cap");
	if (json_is_integer(v) && json_integer_value(v) > 0)
		j.cpu_cap = json_integer_value(v);
	j.delegate_dataset = json_is_true(json_object_get(vm, "delegate_dataset"));
	j.received = json_object_get(vm, "received_at") != NULL;
	j.datasets = json_object_get(vm, "datasets");
	if (!json_is_array(j.datasets))
		j.datasets = NULL;
	j.filesystems = json_object_get(vm, "filesystems");
	if (!json_is_array(j.filesystems))
		j.filesystems = NULL;
	*ret = j;
	return 0;
}

static char *joyent_lxcpath(struct vm_node *node)
{
	return node_path(node, "run/lxc");
}

/* Open the container handle (loads its config if one was saved). NULL with
 * err set on failure. */
static int joyent_open(struct vm_node *node, const char *verb, const char *uuid,
		       struct lxc_container **ret, struct vm_error *err)
{
	_cleanup_free_ char *lxcpath = joyent_lxcpath(node);
	struct lxc_container *c;

	if (!lxcpath)
		return vm_error_set(err, ENOMEM, "%s %s", verb, uuid);
	c = lxc_container_new(uuid, lxcpath);
	if (!c)
		return vm_error_setx(err, EIO, "%s %s: liblxc cannot load %s/%s/config", verb, uuid,
				     lxcpath, uuid);
	*ret = c;
	return 0;
}

/* Open for start and stop, which must not be blocked by a config that
 * liblxc cannot load (left by a crash, or edited by hand): the config is
 * ours and rewritten at each start, and a running container's monitor has
 * its own copy, so on failure drop the file and open without it. */
static int joyent_open_reset(struct vm_node *node, const char *verb, const char *uuid,
			     struct lxc_container **ret, struct vm_error *err)
{
	_cleanup_free_ char *config = NULL;

	if (joyent_open(node, verb, uuid, ret, err) >= 0)
		return 0;
	config = node_path(node, "run/lxc/%s/config", uuid);
	if (!config || unlink(config) < 0)
		return -err->code;
	vm_warn("VM %s: removed the LXC config liblxc could not load: %s", uuid, config);
	vm_error_clear(err);
	return joyent_open(node, verb, uuid, ret, err);
}

/* Remove ROOT/run/lxc/UUID (config and whatever liblxc left there). */
static void joyent_remove_rundir(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *dir = node_path(node, "run/lxc/%s", uuid);
	struct vm_error e;

	if (dir && fs_rm_rf(dir, &e) < 0)
		vm_warn("VM %s: %s", uuid, e.msg);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Append one log line to out (n bytes used), without liblxc's prefix
 * "lxc NAME TIMESTAMP ERROR    MODULE - FILE:FUNC:LINE - ". */
static void tail_append(char *out, size_t *n, const char *l, size_t ll)
{
	const char *tag = memmem(l, ll, " ERROR ", 7);

	if (tag) {
		const char *msg = memmem(tag, ll - (tag - l), " - ", 3);
		msg = msg ? memmem(msg + 3, ll - (msg + 3 - l), " - ", 3) : NULL;
		tag = msg ? msg + 3 : tag + 7;
		ll -= tag - l;
		l = tag;
	}
	while (ll && (*l == ' ' || *l == '\t'))
		l++, ll--;
	if (*n + 2 + ll > JOYENT_LOG_TAIL)
		ll = JOYENT_LOG_TAIL > *n + 2 ? JOYENT_LOG_TAIL - *n - 2 : 0;
	if (*n && ll) {
		out[(*n)++] = ';';
		out[(*n)++] = ' ';
	}
	memcpy(out + *n, l, ll);
	*n += ll;
}

/* What liblxc logged since offset `from`, for an error message: the first
 * ERROR lines (the cause comes first, the consequences after), or the last
 * lines when none says ERROR; at most JOYENT_LOG_TAIL bytes on one line. */
static char *log_tail(const char *path, off_t from)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	char out[JOYENT_LOG_TAIL + 1];
	off_t size = file_size(path);
	const char *lines[256];
	size_t len, n = 0, nl = 0, nerr = 0;
	ssize_t got;

	if (fd < 0 || size <= from)
		return strdup("(lxc log is empty)");
	if (size - from > 256 * 1024)
		from = size - 256 * 1024;
	len = size - from;
	buf = malloc(len + 1);
	if (!buf)
		return NULL;
	got = pread(fd, buf, len, from);
	if (got <= 0)
		return strdup("(lxc log unreadable)");
	buf[got] = '\0';

	/* Pass 1: the first three ERROR lines. Pass 2 (none): the last three. */
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strstr(l, " ERROR ")) {
			if (nerr++ < 3)
				tail_append(out, &n, l, strlen(l));
			continue;
		}
		if (nl == ARRAY_SIZE(lines)) {
			memmove(lines, lines + 1, sizeof(lines) - sizeof(lines[0]));
			nl--;
		}
		lines[nl++] = l;
	}
	for (size_t i = nl > 3 ? nl - 3 : 0; nerr == 0 && i < nl; i++)
		tail_append(out, &n, lines[i], strlen(lines[i]));
	out[n] = '\0';
	return strdup(n ? out : "(lxc log is empty)");
}

/* Which cgroup hierarchy has the memory controller: on a v1 or hybrid host
 * (this project's machines: v1 memory, v2 with no controllers) the v1 keys
 * apply, and lxc.cgroup2.memory.max would make the start fail. */
static bool cgroup_v1_memory(void)
{
	return fs_is_dir("/sys/fs/cgroup/memory");
}

static bool path_ok_for_mount_entry(const char *p)
{
	return p && *p && !strpbrk(p, " \t\n\\");
}

/* Translate SmartOS filesystems[] options to mount options. */
static int fs_options(json_t *opts, char *buf, size_t size)
{
	size_t i;
	json_t *o;
	int n = 0;

	buf[0] = '\0';
	if (json_is_string(opts))
		return snprintf(buf, size, "%s", json_string_value(opts)) < (int)size ? 0 : -1;
	json_array_foreach(opts, i, o) {
		const char *s = json_string_value(o);
		if (!s || strpbrk(s, " \t,"))
			return -1;
		if (streq(s, "nodevices") || streq(s, "nodevice"))
			s = "nodev";
		n += snprintf(buf + n, size - n, "%s%s", n ? "," : "", s);
		if ((size_t)n >= size)
			return -1;
	}
	return 0;
}

static int set_item(struct lxc_container *c, const char *uuid, const char *key, const char *value,
		    struct vm_error *err)
{
	vm_debug("VM %s: lxc config %s = %s", uuid, key, value);
	if (!c->set_config_item(c, key, value))
		return vm_error_setx(err, EINVAL, "start %s: liblxc refused config %s = %s", uuid,
				     key, value);
	return 0;
}

/* The dataset's host directory: zones/UUID/data -> ZONEPATH/data. */
static char *dataset_dir(const struct joyent_vm *j, const char *dataset)
{
	_cleanup_free_ char *own = j->zfs_filesystem ? NULL : strdup_printf("zones/%s", j->uuid);
	const char *fs = j->zfs_filesystem ? j->zfs_filesystem : own;
	size_t l;

	if (!fs)
		return NULL;
	l = strlen(fs);
	if (strncmp(dataset, fs, l) != 0 || dataset[l] != '/' || !dataset[l + 1])
		return NULL;
	return strdup_printf("%s%s", j->zonepath, dataset + l);
}

/* The delegated datasets: record's datasets[], or zones/UUID/data. */
static int delegated_datasets(const struct joyent_vm *j, char ***ret, struct vm_error *err)
{
	_cleanup_strv_ char **v = NULL;
	size_t n = 0, i;
	json_t *d;

	v = calloc((j->datasets ? json_array_size(j->datasets) : 0) + 2, sizeof(char *));
	if (!v)
		return vm_error_set(err, ENOMEM, "start %s", j->uuid);
	if (j->datasets && json_array_size(j->datasets) > 0) {
		json_array_foreach(j->datasets, i, d) {
			if (!json_is_string(d))
				return vm_error_setx(err, EINVAL,
						     "start %s: datasets[%zu] is not a string",
						     j->uuid, i);
			if (!(v[n++] = strdup(json_string_value(d))))
				return vm_error_set(err, ENOMEM, "start %s", j->uuid);
		}
	} else if (j->delegate_dataset) {
		v[n++] = j->zfs_filesystem ? strdup_printf("%s/data", j->zfs_filesystem)
					   : strdup_printf("zones/%s/data", j->uuid);
		if (!v[0])
			return vm_error_set(err, ENOMEM, "start %s", j->uuid);
	}
	*ret = TAKE_PTR(v);
	return 0;
}

/* What is at path, without following a symlink there: 0 a directory,
 * -ENOTDIR with its target in target (a symlink, "" for anything else),
 * or another -errno (-ENOENT: nothing). */
static int dir_itself(const char *path, char target[PATH_MAX])
{
	struct stat st;
	ssize_t n;

	target[0] = '\0';
	if (lstat(path, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return 0;
	if (S_ISLNK(st.st_mode)) {
		n = readlink(path, target, PATH_MAX - 1);
		target[n > 0 ? n : 0] = '\0';
		if (n <= 0)
			snprintf(target, PATH_MAX, "?");
	}
	return -ENOTDIR;
}

/* Is path a directory itself, not a symlink to one? what names it. */
static int real_dir(const char *uuid, const char *what, const char *path, struct vm_error *err)
{
	char target[PATH_MAX];
	int r = dir_itself(path, target);

	if (r == -ENOTDIR && target[0])
		return vm_error_setx(err, ENOTDIR,
				     "start %s: %s %s is a symlink (to %s), not a directory: "
				     "liblxc would mount what it points to",
				     uuid, what, path, target);
	if (r == -ENOTDIR)
		return vm_error_setx(err, ENOTDIR, "start %s: %s %s is not a directory", uuid, what,
				     path);
	if (r < 0)
		return vm_error_set(err, -r, "start %s: %s %s", uuid, what, path);
	return 0;
}

int joyent_check_root(const char *dataset_dir, const char *ds, struct vm_error *err)
{
	_cleanup_free_ char *root = strdup_printf("%s/root", dataset_dir);
	char target[PATH_MAX];
	int r;

	if (!root)
		return vm_error_set(err, ENOMEM, "%s", ds);
	r = dir_itself(root, target);
	if (r == -ENOENT)
		return vm_error_setx(err, ENOENT,
				     "dataset %s has no root directory (a joyent VM's root "
				     "filesystem is ZONEPATH/root)",
				     ds);
	if (r == -ENOTDIR && target[0])
		return vm_error_setx(err, ENOTDIR,
				     "dataset %s: root is a symlink (to %s), not a directory", ds,
				     target);
	if (r == -ENOTDIR)
		return vm_error_setx(err, ENOTDIR, "dataset %s: root is not a directory", ds);
	if (r < 0)
		return vm_error_set(err, -r, "dataset %s: root", ds);
	return 0;
}

/* Everything that must exist on the host before the container starts. */
static int joyent_check(const struct joyent_vm *j, char **datasets, struct vm_error *err)
{
	_cleanup_free_ char *root = strdup_printf("%s/root", j->zonepath);
	_cleanup_free_ char *init = strdup_printf("%s/root/sbin/init", j->zonepath);
	const char *fs = j->zfs_filesystem;
	struct stat st;
	int r;

	if (!root || !init)
		return vm_error_set(err, ENOMEM, "start %s", j->uuid);
	if (!fs_is_dir(j->zonepath))
		return fs ? vm_error_setx(err, ENOENT, "start %s: dataset %s is missing (%s)",
					  j->uuid, fs, j->zonepath)
			  : vm_error_setx(err, ENOENT, "start %s: zonepath %s is missing", j->uuid,
					  j->zonepath);
	if (lstat(root, &st) < 0 && errno == ENOENT)
		return vm_error_setx(err, ENOENT, "start %s: root filesystem %s is missing",
				     j->uuid, root);
	/* liblxc follows a symlink here, to a host directory (or refuses,
	 * late and unclearly): the root must be the dataset's own. */
	r = real_dir(j->uuid, "root filesystem", root, err);
	if (r < 0)
		return r;
	/* lstat: /sbin/init is usually a symlink that only resolves inside. */
	if (lstat(init, &st) < 0)
		return vm_error_set(err, errno, "start %s: no init in the root filesystem: %s",
				    j->uuid, init);
	for (size_t i = 0; datasets && datasets[i]; i++) {
		_cleanup_free_ char *dir = dataset_dir(j, datasets[i]);
		if (!dir)
			return vm_error_setx(
				err, EINVAL,
				"start %s: dataset %s is not under the VM's dataset %s", j->uuid,
				datasets[i], fs ? fs : "zones/UUID");
		if (lstat(dir, &st) < 0 && errno == ENOENT)
			return vm_error_setx(err, ENOENT, "start %s: dataset %s is missing",
					     j->uuid, datasets[i]);
		r = real_dir(j->uuid, "delegated dataset directory", dir, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- filesystems of a received VM ---- */

/* vmadm.conf "receive_filesystem_roots": the host directories under which
 * a received VM's lofs/bind sources may lie, resolved. An empty list (the
 * default) when the node sets none. */
static int received_roots(struct vm_node *node, char ***ret, struct vm_error *err)
{
	json_t *roots = json_object_get(node->conf, JOYENT_ROOTS_SETTING), *e;
	_cleanup_strv_ char **v = NULL;
	size_t i, n = 0;

	if (roots && !json_is_null(roots) && !json_is_array(roots))
		return vm_error_setx(err, EINVAL,
				     "vmadm.conf: \"" JOYENT_ROOTS_SETTING "\" must be an array of "
				     "absolute paths");
	v = calloc(json_array_size(roots) + 1, sizeof(char *));
	if (!v)
		return vm_error_set(err, ENOMEM, JOYENT_ROOTS_SETTING);
	json_array_foreach (roots, i, e) {
		const char *p = json_string_value(e);

		if (!p || p[0] != '/')
			return vm_error_setx(err, EINVAL,
					     "vmadm.conf: " JOYENT_ROOTS_SETTING "[%zu]: not an "
					     "absolute path",
					     i);
		v[n] = realpath(p, NULL);
		if (!v[n])
			return vm_error_set(err, errno,
					    "vmadm.conf: " JOYENT_ROOTS_SETTING "[%zu] %s", i, p);
		n++;
	}
	*ret = TAKE_PTR(v);
	return 0;
}

/* Is path (resolved) root itself or below it? The compare ends at a '/',
 * so /srv/shared does not admit /srv/shared-not. */
static bool path_under(const char *path, const char *root)
{
	size_t n = strlen(root);

	if (streq(root, "/"))
		return true;
	return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* "/a, /b" of roots, cut to size. */
static void roots_list(char **roots, char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (char **r = roots; r && *r && n + 1 < size; r++)
		n += snprintf(buf + n, size - n, "%s%s", n ? ", " : "", *r);
}

/* The resolved sources of vm's filesystems (NULL for a tmpfs), each a
 * bind mount checked to lie under the node's roots. verb prefixes the
 * messages ("start UUID" or "VM UUID"). */
static int received_sources(struct vm_node *node, json_t *vm, const char *verb, char ***ret,
			    struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	json_t *fss = json_object_get(vm, "filesystems"), *f;
	_cleanup_strv_ char **roots = NULL;
	char **out;
	char list[512];
	size_t i;
	int r;

	out = calloc(json_array_size(fss) + 1, sizeof(char *));
	if (!out)
		return vm_error_set(err, ENOMEM, "%s", verb);
	*ret = out;
	if (json_array_size(fss) == 0)
		return 0;
	r = received_roots(node, &roots, err);
	if (r < 0)
		return r;
	roots_list(roots, list, sizeof(list));
	json_array_foreach (fss, i, f) {
		const char *src = json_string_value(json_object_get(f, "source"));
		const char *type = json_string_value(json_object_get(f, "type"));
		_cleanup_free_ char *real = NULL;
		bool inside = false;

		if (!vm_filesystem_type_is_bind(type)) {
			/* tmpfs: memory, no host path; nothing else passes
			 * validation. */
			if (!type || !streq(type, "tmpfs"))
				return vm_error_setx(err, EINVAL,
						     "%s: property 'filesystems[%zu].type': %s is "
						     "not a filesystem type a VM may have",
						     verb, i, type);
			out[i] = strdup("");
			if (!out[i])
				return vm_error_set(err, ENOMEM, "%s", verb);
			continue;
		}
		if (!src || !roots[0])
			return vm_error_setx(
			    err, EPERM,
			    "%s: property 'filesystems[%zu].source': VM %s was "
			    "received from another node, and such a VM may mount "
			    "only host paths under vmadm.conf \"" JOYENT_ROOTS_SETTING
			    "\", which this node does not set: %s refused",
			    verb, i, uuid, src ? src : "(none)");
		/* realpath resolves every symlink and ".." on the way: what
		 * liblxc would mount is what is compared. */
		real = realpath(src, NULL);
		if (!real)
			return vm_error_set(
			    err, errno, "%s: property 'filesystems[%zu].source': %s", verb, i, src);
		for (char **root = roots; *root && !inside; root++)
			inside = path_under(real, *root);
		if (!inside)
			return vm_error_setx(err, EPERM,
					     "%s: property 'filesystems[%zu].source': %s is %s, "
					     "which is not under vmadm.conf \"" JOYENT_ROOTS_SETTING
					     "\" (%s): a received VM may mount nothing else",
					     verb, i, src, real, list);
		out[i] = TAKE_PTR(real);
	}
	return 0;
}

int joyent_check_received_filesystems(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	_cleanup_free_ char *verb = strdup_printf("VM %s", uuid ? uuid : "?");
	_cleanup_strv_ char **sources = NULL;

	if (!verb)
		return vm_error_set(err, ENOMEM, "VM %s", uuid);
	return received_sources(node, vm, verb, &sources, err);
}

static int joyent_configure(struct vm_node *node, struct lxc_container *c,
			    const struct joyent_vm *j, char **datasets, char **sources,
			    struct vm_error *err)
{
	_cleanup_free_ char *rootfs = strdup_printf("dir:%s/root", j->zonepath);
	_cleanup_free_ char *console_log = node_path(node, "log/%s-console.log", j->uuid);
	char buf[4096];
	size_t i;
	json_t *f;
	int r;

	if (!rootfs || !console_log)
		return vm_error_set(err, ENOMEM, "start %s", j->uuid);

	const char *const fixed[][2] = {
		{ "lxc.rootfs.path", rootfs },
		{ "lxc.uts.name", j->hostname },
		{ "lxc.net.0.type", "empty" },
		/* MACHINE.md: no AppArmor profile loads here. */
		{ "lxc.apparmor.profile", "unconfined" },
		{ "lxc.init.cmd", "/sbin/init" },
		{ "lxc.autodev", "1" },
		{ "lxc.mount.auto", "proc:mixed sys:mixed cgroup:mixed" },
		{ "lxc.tty.max", "1" },
		{ "lxc.pty.max", "1024" },
		{ "lxc.console.logfile", console_log },
		{ "lxc.signal.halt", "SIGUSR2" },
		{ "lxc.signal.reboot", "SIGTERM" },
		{ "lxc.signal.stop", "SIGKILL" },
	};
	for (i = 0; i < ARRAY_SIZE(fixed); i++) {
		r = set_item(c, j->uuid, fixed[i][0], fixed[i][1], err);
		if (r < 0)
			return r;
	}

	/* Delegated datasets appear inside where SmartOS shows them:
	 * zones/UUID/data at /zones/UUID/data. */
	for (i = 0; datasets && datasets[i]; i++) {
		_cleanup_free_ char *dir = dataset_dir(j, datasets[i]);
		if (!dir || !path_ok_for_mount_entry(dir) || !path_ok_for_mount_entry(datasets[i]))
			return vm_error_setx(err, EINVAL, "start %s: dataset %s: unusable path",
					     j->uuid, datasets[i]);
		snprintf(buf, sizeof(buf), "%s %s none bind,create=dir 0 0", dir, datasets[i]);
		r = set_item(c, j->uuid, "lxc.mount.entry", buf, err);
		if (r < 0)
			return r;
	}

	json_array_foreach(j->filesystems, i, f) {
		const char *src = json_string_value(json_object_get(f, "source"));
		const char *dst = json_string_value(json_object_get(f, "target"));
		const char *type = json_string_value(json_object_get(f, "type"));
		char opts[1024];
		bool bind;

		/* A received VM's sources were checked just now against the
		 * node's roots, resolved: mount what was checked. */
		if (sources && sources[i] && *sources[i])
			src = sources[i];
		if (!path_ok_for_mount_entry(src) || !path_ok_for_mount_entry(dst) || dst[0] != '/')
			return vm_error_setx(
				err, EINVAL,
				"start %s: filesystems[%zu]: source and absolute target "
				"without whitespace are required",
				j->uuid, i);
		if (fs_options(json_object_get(f, "options"), opts, sizeof(opts)) < 0)
			return vm_error_setx(err, EINVAL, "start %s: filesystems[%zu]: bad options",
					     j->uuid, i);
		/* SmartOS lofs is a bind mount. */
		bind = vm_filesystem_type_is_bind(type);
		/* What a received VM's container writes there cannot be a
		 * setuid program or a device for the host's users. */
		if (j->received && strlen(opts) + 16 < sizeof(opts))
			strcat(opts, opts[0] ? ",nosuid,nodev" : "nosuid,nodev");
		struct stat st;
		bool is_file = bind && stat(src, &st) == 0 && !S_ISDIR(st.st_mode);
		snprintf(buf, sizeof(buf), "%s %s %s %s%s%s,create=%s 0 0", src, dst + 1,
			 bind ? "none" : type, bind ? "bind" : "defaults", opts[0] ? "," : "", opts,
			 is_file ? "file" : "dir");
		r = set_item(c, j->uuid, "lxc.mount.entry", buf, err);
		if (r < 0)
			return r;
	}

	if (j->max_physical_memory > 0) {
		bool v1 = cgroup_v1_memory();
		snprintf(buf, sizeof(buf), "%lld", (long long)j->max_physical_memory * 1024 * 1024);
		r = set_item(c, j->uuid,
			     v1 ? "lxc.cgroup.memory.limit_in_bytes" : "lxc.cgroup2.memory.max",
			     buf, err);
		if (r < 0)
			return r;
	}
	if (j->cpu_cap > 0) {
		/* cpu_cap 100 = one CPU: quota of cap% of a 100 ms period. */
		if (fs_is_dir("/sys/fs/cgroup/cpu")) {
			r = set_item(c, j->uuid, "lxc.cgroup.cpu.cfs_period_us", "100000", err);
			if (r < 0)
				return r;
			snprintf(buf, sizeof(buf), "%lld", (long long)j->cpu_cap * 1000);
			r = set_item(c, j->uuid, "lxc.cgroup.cpu.cfs_quota_us", buf, err);
		} else {
			snprintf(buf, sizeof(buf), "%lld 100000", (long long)j->cpu_cap * 1000);
			r = set_item(c, j->uuid, "lxc.cgroup2.cpu.max", buf, err);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Stop a container that may be half started, and wait for STOPPED. */
static void joyent_kill(struct lxc_container *c)
{
	if (c->is_running(c)) {
		c->stop(c);
		c->wait(c, "STOPPED", JOYENT_STOP_TIMEOUT);
	}
}

static int joyent_start(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	_cleanup_free_ char *zp = NULL, *lxcpath = NULL, *lxclog = NULL, *logdir = NULL;
	_cleanup_strv_ char **datasets = NULL, **sources = NULL;
	_cleanup_lxc_ struct lxc_container *c = NULL;
	struct joyent_vm j;
	off_t log_from;
	int r;

	r = joyent_vm_parse(node, vm, &j, &zp, err);
	if (r < 0)
		return r;
	r = delegated_datasets(&j, &datasets, err);
	if (r < 0)
		return r;
	r = joyent_check(&j, datasets, err);
	if (r < 0)
		return r;
	/* A received VM's filesystems again, as they are now: a directory
	 * under an allowed root may have become a symlink out of it, or the
	 * node may allow less than when the VM arrived. */
	if (j.received) {
		_cleanup_free_ char *verb = strdup_printf("start %s", j.uuid);
		if (!verb)
			return vm_error_set(err, ENOMEM, "start %s", j.uuid);
		r = received_sources(node, vm, verb, &sources, err);
		if (r < 0)
			return r;
	}

	lxcpath = joyent_lxcpath(node);
	logdir = node_path(node, "log");
	lxclog = node_path(node, "log/%s-lxc.log", j.uuid);
	if (!lxcpath || !logdir || !lxclog)
		return vm_error_set(err, ENOMEM, "start %s", j.uuid);
	r = fs_mkdir_p(lxcpath, 0700, err);
	if (r >= 0)
		r = fs_mkdir_p(logdir, 0700, err);
	if (r < 0)
		return vm_error_prefix(err, "start %s", j.uuid);

	r = joyent_open_reset(node, "start", j.uuid, &c, err);
	if (r < 0)
		return r;
	if (c->is_running(c))
		return vm_error_setx(err, EBUSY, "start %s: container is already running (%s)",
				     j.uuid, c->state(c));

	/* The record is the truth: forget any config a crash left, and point
	 * liblxc's log at our file before anything can go wrong. */
	c->clear_config(c);
	log_from = file_size(lxclog);
	if (!c->set_config_item(c, "lxc.log.file", lxclog) ||
	    !c->set_config_item(c, "lxc.log.level", "INFO"))
		return vm_error_setx(err, EINVAL, "start %s: liblxc refused its log file %s",
				     j.uuid, lxclog);

	r = joyent_configure(node, c, &j, datasets, sources, err);
	if (r < 0)
		goto out;
	if (!c->save_config(c, NULL)) {
		r = vm_error_setx(err, EIO, "start %s: liblxc cannot save the config in %s/%s",
				  j.uuid, lxcpath, j.uuid);
		goto out;
	}

	/* Daemonized: liblxc forks the monitor, which must not keep our fds
	 * (a caller's pipe would never see EOF). */
	c->want_daemonize(c, true);
	c->want_close_all_fds(c, true);
	vm_debug("VM %s: lxc start -P %s -n %s", j.uuid, lxcpath, j.uuid);
	if (!c->start(c, 0, NULL) || !c->wait(c, "RUNNING", JOYENT_START_TIMEOUT) ||
	    c->init_pid(c) <= 0) {
		_cleanup_free_ char *tail = log_tail(lxclog, log_from);
		r = vm_error_setx(err, EIO, "start %s: container did not start: %s", j.uuid,
				  tail ? tail : "(no log)");
		goto out;
	}
	vm_debug("VM %s: running, init pid %d", j.uuid, (int)c->init_pid(c));
	return 0;
out:
	joyent_kill(c);
	joyent_remove_rundir(node, j.uuid);
	return r;
}

static int joyent_stop(struct vm_node *node, json_t *vm, int timeout_secs, bool force,
		       struct vm_error *err)
{
	_cleanup_free_ char *zp = NULL;
	_cleanup_lxc_ struct lxc_container *c = NULL;
	struct joyent_vm j;
	int r;

	r = joyent_vm_parse(node, vm, &j, &zp, err);
	if (r < 0)
		return r;
	r = joyent_open_reset(node, "stop", j.uuid, &c, err);
	if (r < 0)
		return r;
	if (c->is_running(c)) {
		/* lxc-stop's order: the halt signal to init, STOPPED within
		 * timeout, else kill. shutdown(c, 0) would not wait at all. */
		if (!force && timeout_secs > 0) {
			vm_debug("VM %s: lxc shutdown, timeout %d s", j.uuid, timeout_secs);
			if (!c->shutdown(c, timeout_secs))
				vm_debug("VM %s: not down after %d s, killing", j.uuid,
					 timeout_secs);
		}
		if (c->is_running(c)) {
			vm_debug("VM %s: lxc stop (kill)", j.uuid);
			c->stop(c);
		}
		if (!c->wait(c, "STOPPED", JOYENT_STOP_TIMEOUT) && c->is_running(c))
			return vm_error_setx(err, ETIMEDOUT,
					     "stop %s: container still %s %d s after the kill",
					     j.uuid, c->state(c), JOYENT_STOP_TIMEOUT);
	}
	joyent_remove_rundir(node, j.uuid);
	return 0;
}

static int joyent_reboot(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	_cleanup_free_ char *zp = NULL;
	_cleanup_lxc_ struct lxc_container *c = NULL;
	struct joyent_vm j;
	int r;

	r = joyent_vm_parse(node, vm, &j, &zp, err);
	if (r < 0)
		return r;
	r = joyent_open(node, "reboot", j.uuid, &c, err);
	if (r < 0)
		return r;
	if (!c->is_running(c))
		return vm_error_setx(err, EINVAL, "reboot %s: not running", j.uuid);
	/* reboot2 signals init (lxc.signal.reboot) and waits until the
	 * container has gone down and come back. */
	if (!c->reboot2(c, JOYENT_REBOOT_TIMEOUT))
		return vm_error_setx(err, ETIMEDOUT,
				     "reboot %s: container did not restart within %d s (now %s)",
				     j.uuid, JOYENT_REBOOT_TIMEOUT, c->state(c));
	return 0;
}

static void joyent_runtime(struct vm_node *node, json_t *vm, struct vm_runtime *ret)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	_cleanup_free_ char *lxcpath = NULL;
	_cleanup_lxc_ struct lxc_container *c = NULL;
	const char *s;

	ret->state = "stopped";
	ret->zone_state = "installed";
	ret->pid = 0;
	if (!uuid || !*uuid || strchr(uuid, '/'))
		return;
	lxcpath = joyent_lxcpath(node);
	/* No lxcpath: nothing ever ran here; don't let liblxc make it. */
	if (!lxcpath || !fs_is_dir(lxcpath))
		return;
	c = lxc_container_new(uuid, lxcpath);
	if (!c)
		return;
	s = c->state(c);
	if (!s || streq(s, "STOPPED"))
		return;
	if (streq(s, "STOPPING") || streq(s, "ABORTING")) {
		ret->state = "stopping";
		ret->zone_state = "shutting_down";
	} else {
		/* RUNNING, and STARTING/FROZEN/THAWED: its processes exist. */
		ret->state = "running";
		ret->zone_state = "running";
	}
	ret->pid = c->init_pid(c);
	if (ret->pid < 0)
		ret->pid = 0;
}

static int joyent_info(struct vm_node *node, json_t *vm, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *zp = NULL, *config = NULL, *console_log = NULL, *lxclog = NULL,
			    *lxcpath = NULL;
	_cleanup_lxc_ struct lxc_container *c = NULL;
	_cleanup_json_ json_t *o = NULL;
	struct joyent_vm j;
	char buf[64];
	int r;

	r = joyent_vm_parse(node, vm, &j, &zp, err);
	if (r < 0)
		return r;
	r = joyent_open(node, "info", j.uuid, &c, err);
	if (r < 0)
		return r;
	lxcpath = joyent_lxcpath(node);
	config = c->config_file_name(c);
	if (config && !fs_exists(config)) /* not started since the last stop */
		free(TAKE_PTR(config));
	console_log = node_path(node, "log/%s-console.log", j.uuid);
	lxclog = node_path(node, "log/%s-lxc.log", j.uuid);
	o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:[]}", "brand", "joyent", "lxc_state",
		      c->state(c), "lxcpath", lxcpath, "config_file", config, "console_log",
		      console_log, "lxc_log", lxclog, "ips");
	if (!o)
		return vm_error_set(err, ENOMEM, "info %s", j.uuid);
	if (c->is_running(c)) {
		bool v1 = cgroup_v1_memory();
		long long v;

		json_object_set_new(o, "init_pid", json_integer(c->init_pid(c)));
		if (c->get_cgroup_item(c, v1 ? "memory.limit_in_bytes" : "memory.max", buf,
				       sizeof(buf)) > 0) {
			/* v2 "max" and v1's page-rounded LLONG_MAX mean no limit. */
			v = strtoll(buf, NULL, 10);
			json_object_set_new(o, "memory_limit",
					    v > 0 && v < (1LL << 62) ? json_integer(v)
								     : json_null());
		}
		if (c->get_cgroup_item(c, v1 ? "memory.usage_in_bytes" : "memory.current", buf,
				       sizeof(buf)) > 0)
			json_object_set_new(o, "memory_usage",
					    json_integer(strtoll(buf, NULL, 10)));
	}
	*ret = TAKE_PTR(o);
	return 0;
}

static int joyent_console(struct vm_node *node, json_t *vm, int in_fd, int out_fd,
			  struct vm_error *err)
{
	_cleanup_free_ char *zp = NULL;
	_cleanup_lxc_ struct lxc_container *c = NULL;
	struct joyent_vm j;
	int r;

	r = joyent_vm_parse(node, vm, &j, &zp, err);
	if (r < 0)
		return r;
	r = joyent_open(node, "console", j.uuid, &c, err);
	if (r < 0)
		return r;
	if (!c->is_running(c))
		return vm_error_setx(err, EINVAL, "console %s: not running", j.uuid);
	/* ttynum 0 is the console itself, where init writes. */
	if (c->console(c, 0, in_fd, out_fd, out_fd, JOYENT_CONSOLE_ESCAPE) < 0)
		return vm_error_setx(err, EIO, "console %s: liblxc cannot attach to the console",
				     j.uuid);
	return 0;
}

/* Freeze (or thaw) the container's cgroup: its processes stay, and write
 * nothing meanwhile. */
static int joyent_freeze(struct vm_node *node, json_t *vm, bool freeze, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	_cleanup_free_ char *lxcpath = joyent_lxcpath(node);
	_cleanup_lxc_ struct lxc_container *c = NULL;

	c = lxcpath && uuid ? lxc_container_new(uuid, lxcpath) : NULL;
	if (!c || !(freeze ? c->freeze(c) : c->unfreeze(c)))
		return vm_error_setx(err, EIO, "cannot %s the container",
				     freeze ? "freeze" : "thaw");
	return 0;
}

static int joyent_pause(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	return joyent_freeze(node, vm, true, err);
}

static int joyent_resume(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	return joyent_freeze(node, vm, false, err);
}

const struct vm_brand_ops joyent_brand_ops = {
	.name = "joyent",
	.start = joyent_start,
	.stop = joyent_stop,
	.reboot = joyent_reboot,
	.runtime = joyent_runtime,
	.info = joyent_info,
	.console = joyent_console,
	.pause = joyent_pause,
	.resume = joyent_resume,
	.check_received = joyent_check_received_filesystems,
	.check_received_zone = joyent_check_root,
};

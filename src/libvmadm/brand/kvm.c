/* SPDX-License-Identifier: MIT */
/*
 * Brand kvm: QEMU, daemonized, one process per VM, driven over QMP.
 * See kvm.h for the runtime files and the networking choice.
 */
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "brand/state.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/spawn.h"
#include "util/uuid.h"

#define QMP_CONNECT_MS 10000
#define QMP_COMMAND_MS 10000
#define KILL_WAIT_MS 10000
#define LOG_TAIL_BYTES 1500

/* --- Paths and settings -------------------------------------------------- */

char *kvm_run_path(struct vm_node *node, const char *uuid, const char *file)
{
	return file ? vm_node_path(node, "run/%s/%s", uuid, file)
		    : vm_node_path(node, "run/%s", uuid);
}

static const char *qemu_binary(struct vm_node *node)
{
	return vm_node_conf_str(node, "qemu", "VMADM_QEMU", "qemu-system-x86_64");
}

static const char *vm_uuid(json_t *vm, const char *verb, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));

	if (!uuid || !vm_uuid_valid(uuid)) {
		vm_error_setx(err, EINVAL, "%s: VM record has no valid uuid", verb);
		return NULL;
	}
	return uuid;
}

int kvm_pick_accel(struct vm_node *node, const char **ret, struct vm_error *err)
{
	const char *want = vm_node_conf_str(node, "accel", "VMADM_ACCEL", "auto");
	_cleanup_close_ int fd = -1;

	if (streq(want, "kvm") || streq(want, "tcg")) {
		*ret = streq(want, "kvm") ? "kvm" : "tcg";
		return 0;
	}
	if (!streq(want, "auto"))
		return vm_error_setx(err, EINVAL, "accel setting '%s': must be kvm, tcg or auto",
				     want);
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0 && ioctl(fd, KVM_GET_API_VERSION, 0) == 12)
		*ret = "kvm";
	else
		*ret = "tcg";
	return 0;
}

/* --- Command line -------------------------------------------------------- */

struct argv_builder {
	char **v;
	size_t n, cap;
	bool oom;
};

static void add(struct argv_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct argv_builder *b, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (b->oom)
		return;
	if (b->n + 2 > b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		char **nv = realloc(b->v, ncap * sizeof(*nv));
		if (!nv) {
			b->oom = true;
			return;
		}
		b->v = nv;
		b->cap = ncap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		b->oom = true;
		s = NULL;
	}
	va_end(ap);
	if (s) {
		b->v[b->n++] = s;
		b->v[b->n] = NULL;
	}
}

/* QEMU's option syntax: a comma inside a value is written ",,". */
static char *qemu_escape(const char *s)
{
	size_t extra = 0;
	char *out, *p;

	for (const char *c = s; *c; c++)
		extra += *c == ',';
	out = p = malloc(strlen(s) + extra + 1);
	if (!out)
		return NULL;
	for (const char *c = s; *c; c++) {
		*p++ = *c;
		if (*c == ',')
			*p++ = ',';
	}
	*p = '\0';
	return out;
}

static const char *nic_device(const char *model)
{
	if (!model || streq(model, "virtio"))
		return "virtio-net-pci";
	if (streq(model, "e1000"))
		return "e1000";
	if (streq(model, "rtl8139"))
		return "rtl8139";
	return NULL;
}

static bool is_bridge(const char *name)
{
	char path[512];

	if (!name || !*name || strchr(name, '/') || strchr(name, ','))
		return false;
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", name);
	return fs_is_dir(path);
}

static int add_disks(struct argv_builder *b, json_t *disks, struct vm_error *err)
{
	size_t ndisks = json_array_size(disks), boot = 0, order[256];
	bool scsi_added = false, boot_seen = false;

	if (ndisks > ARRAY_SIZE(order))
		return vm_error_setx(err, EINVAL, "disks: %zu disks, at most %zu", ndisks,
				     ARRAY_SIZE(order));
	for (size_t i = 0; i < ndisks; i++) {
		json_t *d = json_array_get(disks, i);
		const char *model = json_string_value(json_object_get(d, "model"));

		if (json_is_true(json_object_get(d, "boot")) && !boot_seen) {
			boot = i;
			boot_seen = true;
		}
		if (model && streq(model, "scsi") && !scsi_added) {
			/* One controller for all scsi disks. */
			add(b, "-device");
			add(b, "virtio-scsi-pci,id=scsi0");
			scsi_added = true;
		}
	}
	/* The boot disk first on the command line, then the others in record
	 * order; names (and serials) follow the record index, never the order. */
	order[0] = boot;
	for (size_t i = 0, k = 1; i < ndisks; i++)
		if (i != boot)
			order[k++] = i;

	for (size_t k = 0; k < ndisks; k++) {
		size_t i = order[k];
		json_t *d = json_array_get(disks, i);
		const char *path = json_string_value(json_object_get(d, "path"));
		const char *model = json_string_value(json_object_get(d, "model"));
		const char *media = json_string_value(json_object_get(d, "media"));
		bool cdrom = media && streq(media, "cdrom");
		_cleanup_free_ char *epath = NULL;
		const char *ro = cdrom ? ",read-only=on" : "", *dev, *bus = "";

		if (!json_is_object(d))
			return vm_error_setx(err, EINVAL, "disks[%zu]: not an object", i);
		if (!path || path[0] != '/')
			return vm_error_setx(err, EINVAL,
					     "disks[%zu].path: missing or not absolute", i);
		if (!model)
			model = "virtio";
		if (media && !streq(media, "disk") && !cdrom)
			return vm_error_setx(
			    err, EINVAL, "disks[%zu].media '%s': must be disk or cdrom", i, media);
		epath = qemu_escape(path);
		if (!epath)
			return vm_error_set(err, ENOMEM, "disks[%zu]", i);

		if (streq(model, "virtio")) {
			if (cdrom)
				return vm_error_setx(
				    err, EINVAL, "disks[%zu]: media cdrom needs model ide or scsi",
				    i);
			dev = "virtio-blk-pci";
		} else if (streq(model, "ide")) {
			dev = cdrom ? "ide-cd" : "ide-hd";
		} else if (streq(model, "scsi")) {
			dev = cdrom ? "scsi-cd" : "scsi-hd";
			bus = "bus=scsi0.0,";
		} else
			return vm_error_setx(err, EINVAL,
					     "disks[%zu].model '%s': must be virtio, ide or scsi",
					     i, model);
		/* A file node with the page cache bypassed (migration's
		 * switchover flush stays short), under a raw format node named
		 * diskN that the device and block jobs use:
		 * -blockdev driver=file,node-name=diskN-file,filename=PATH,
		 *     cache.direct=true,aio=threads
		 * -blockdev driver=raw,node-name=diskN,file=diskN-file,cache.direct=true
		 * -device DEV,id=diskN-dev,[bus=scsi0.0,]drive=diskN,serial=diskN,
		 *     bootindex=K */
		add(b, "-blockdev");
		add(b, "driver=file,node-name=disk%zu-file,filename=%s,cache.direct=true,%s%s", i,
		    epath, "aio=threads", ro);
		add(b, "-blockdev");
		add(b, "driver=raw,node-name=disk%zu,file=disk%zu-file,cache.direct=true%s", i, i,
		    ro);
		add(b, "-device");
		add(b, "%s,id=disk%zu-dev,%sdrive=disk%zu,serial=disk%zu,bootindex=%zu", dev, i,
		    bus, i, i, k);
	}
	return 0;
}

static int add_nics(struct argv_builder *b, struct vm_node *node, json_t *nics,
		    struct vm_error *err)
{
	json_t *nic, *tags;
	size_t i;
	int r;

	if (json_array_size(nics) == 0) {
		add(b, "-nic");
		add(b, "none");
		return 0;
	}
	/* Only the node's own definition decides which host network a nic
	 * joins: a record (perhaps received from elsewhere) names a tag, never
	 * a bridge. */
	r = vm_node_nic_tags(node, &tags, err);
	if (r < 0)
		return r;
	json_array_foreach(nics, i, nic) {
		const char *model = json_string_value(json_object_get(nic, "model"));
		const char *mac = json_string_value(json_object_get(nic, "mac"));
		const char *tag = json_string_value(json_object_get(nic, "nic_tag"));
		const char *dev = nic_device(model);

		if (!dev)
			return vm_error_setx(
			    err, EINVAL, "nics[%zu].model '%s': must be virtio, e1000 or rtl8139",
			    i, model);
		if (mac && strchr(mac, ','))
			return vm_error_setx(err, EINVAL, "nics[%zu].mac '%s': not a MAC address",
					     i, mac);
		add(b, "-netdev");
		if (tags && tag) {
			const char *br = json_string_value(json_object_get(tags, tag));

			if (!br)
				return vm_error_setx(
				    err, EINVAL,
				    "nics[%zu].nic_tag: nic tag \"%s\" is not defined "
				    "on this node (vmadm.conf \"nic_tags\")",
				    i, tag);
			if (!is_bridge(br))
				return vm_error_setx(
				    err, ENODEV,
				    "nics[%zu].nic_tag: nic tag \"%s\" is bridge %s "
				    "(vmadm.conf \"nic_tags\"), which is not a bridge "
				    "on this host",
				    i, tag, br);
			/* -netdev bridge,id=netN,br=BRIDGE (qemu-bridge-helper) */
			add(b, "bridge,id=net%zu,br=%s", i, br);
		} else {
			/* -netdev user,id=netN,restrict=on: no packet leaves */
			add(b, "user,id=net%zu,restrict=on", i);
		}
		add(b, "-device");
		if (mac)
			add(b, "%s,id=net%zu-dev,netdev=net%zu,mac=%s", dev, i, i, mac);
		else
			add(b, "%s,id=net%zu-dev,netdev=net%zu", dev, i, i);
	}
	return 0;
}

int kvm_build_argv(struct vm_node *node, json_t *vm, const char *accel, bool incoming,
		   char ***ret_argv, struct vm_error *err)
{
	struct argv_builder b = { 0 };
	const char *uuid = vm_uuid(vm, "qemu command line", err);
	const char *cpu = json_string_value(json_object_get(vm, "cpu_type"));
	json_t *ram = json_object_get(vm, "ram"), *vcpus = json_object_get(vm, "vcpus");
	_cleanup_free_ char *qmp = NULL, *console = NULL, *pidfile = NULL, *qmp_oob = NULL;
	int r;

	if (!uuid)
		return -EINVAL;
	if (ram && (!json_is_integer(ram) || json_integer_value(ram) < 16))
		return vm_error_setx(err, EINVAL, "ram: must be an integer of at least 16 (MiB)");
	if (vcpus && (!json_is_integer(vcpus) || json_integer_value(vcpus) < 1 ||
		      json_integer_value(vcpus) > 255))
		return vm_error_setx(err, EINVAL, "vcpus: must be an integer from 1 to 255");
	if (!streq(accel, "kvm") && !streq(accel, "tcg"))
		return vm_error_setx(err, EINVAL, "accelerator '%s': must be kvm or tcg", accel);
	/* -cpu host does not exist under TCG; max is its closest match. */
	if (!cpu || (streq(cpu, "host") && streq(accel, "tcg")))
		cpu = streq(accel, "kvm") ? "host" : "max";
	if (strchr(cpu, ','))
		return vm_error_setx(err, EINVAL, "cpu_type '%s': not a CPU model", cpu);

	{
		_cleanup_free_ char *q = kvm_run_path(node, uuid, "qmp.sock");
		_cleanup_free_ char *c = kvm_run_path(node, uuid, "console.sock");
		_cleanup_free_ char *p = kvm_run_path(node, uuid, "qemu.pid");
		_cleanup_free_ char *o = kvm_run_path(node, uuid, "qmp-oob.sock");
		if (!q || !c || !p || !o)
			return vm_error_set(err, ENOMEM, "qemu command line");
		qmp_oob = qemu_escape(o);
		if (!qmp_oob)
			return vm_error_set(err, ENOMEM, "qemu command line");
		qmp = qemu_escape(q);
		console = qemu_escape(c);
		pidfile = qemu_escape(p);
		if (!qmp || !console || !pidfile)
			return vm_error_set(err, ENOMEM, "qemu command line");
	}

	/* qemu-system-x86_64 -name UUID,debug-threads=on -uuid UUID
	 *   -machine pc,accel=ACCEL -cpu CPU -m RAM -smp VCPUS -nodefaults
	 *   -no-user-config -display none -vga none
	 *   -qmp unix:RUN/qmp.sock,server=on,wait=off
 *   -chardev socket,id=qmp2,path=RUN/qmp-oob.sock,server=on,wait=off
 *   -mon chardev=qmp2,mode=control   (a second monitor, for out-of-band
 *                                     commands while the first is in use)
	 *   -chardev socket,id=serial0,path=RUN/console.sock,server=on,wait=off
	 *   -serial chardev:serial0 -pidfile RUN/qemu.pid -daemonize
	 *   [-incoming defer -S] DISKS NICS */
	add(&b, "%s", qemu_binary(node));
	add(&b, "-name");
	add(&b, "%s,debug-threads=on", uuid);
	add(&b, "-uuid");
	add(&b, "%s", uuid);
	add(&b, "-machine");
	add(&b, "pc,accel=%s", accel);
	add(&b, "-cpu");
	add(&b, "%s", cpu);
	add(&b, "-m");
	add(&b, "%lld", ram ? (long long)json_integer_value(ram) : 256LL);
	add(&b, "-smp");
	add(&b, "%lld", vcpus ? (long long)json_integer_value(vcpus) : 1LL);
	add(&b, "-nodefaults");
	add(&b, "-no-user-config");
	add(&b, "-display");
	add(&b, "none");
	add(&b, "-vga");
	add(&b, "none");
	add(&b, "-qmp");
	add(&b, "unix:%s,server=on,wait=off", qmp);
	add(&b, "-chardev");
	add(&b, "socket,id=qmp2,path=%s,server=on,wait=off", qmp_oob);
	add(&b, "-mon");
	add(&b, "chardev=qmp2,mode=control");
	add(&b, "-chardev");
	add(&b, "socket,id=serial0,path=%s,server=on,wait=off", console);
	add(&b, "-serial");
	add(&b, "chardev:serial0");
	add(&b, "-pidfile");
	add(&b, "%s", pidfile);
	add(&b, "-daemonize");
	if (incoming) {
		add(&b, "-incoming");
		add(&b, "defer");
		add(&b, "-S");
	}
	r = add_disks(&b, json_object_get(vm, "disks"), err);
	if (r >= 0)
		r = add_nics(&b, node, json_object_get(vm, "nics"), err);
	if (r >= 0 && b.oom)
		r = vm_error_set(err, ENOMEM, "qemu command line");
	if (r < 0) {
		strv_free(b.v);
		return r;
	}
	*ret_argv = b.v;
	return 0;
}

/* --- Start --------------------------------------------------------------- */

/* The end of the log from offset on, as one line, for an error message. */
static char *log_tail(const char *path, off_t from)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	char buf[LOG_TAIL_BYTES + 1];
	struct stat st;
	off_t start;
	ssize_t n;
	char *s, *p;

	if (fd < 0 || fstat(fd, &st) < 0)
		return strdup("");
	start = st.st_size - LOG_TAIL_BYTES > from ? st.st_size - LOG_TAIL_BYTES : from;
	n = pread(fd, buf, LOG_TAIL_BYTES, start);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	s = buf;
	while (*s == '\n' || *s == ' ')
		s++;
	for (p = s + strlen(s); p > s && (p[-1] == '\n' || p[-1] == ' ' || p[-1] == '\r'); p--)
		;
	*p = '\0';
	for (p = s; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return strdup(s);
}

/* Kill a QEMU we started (only if it is still ours) and remove its runtime
 * directory. Best effort: called on failure paths. */
static void kill_and_clean(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *pidfile = kvm_run_path(node, uuid, "qemu.pid");
	_cleanup_free_ char *run = kvm_run_path(node, uuid, NULL);
	struct vm_error ignore = { 0 };
	pid_t pid = pidfile ? brand_running_pid(pidfile, uuid) : 0;

	if (pid > 0) {
		vm_debug("kvm %s: killing QEMU pid %d", uuid, (int)pid);
		kill(pid, SIGKILL);
		brand_wait_pid_gone(pid, uuid, KILL_WAIT_MS);
	}
	if (run)
		fs_rm_rf(run, &ignore);
}

static int check_disks(json_t *vm, const char *uuid, struct vm_error *err)
{
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(vm, "disks"), i, d) {
		const char *path = json_string_value(json_object_get(d, "path"));
		const char *ds = json_string_value(json_object_get(d, "zfs_filesystem"));

		if (path && fs_exists(path))
			continue;
		if (ds)
			return vm_error_setx(err, ENOENT, "start %s: disk dataset %s is missing",
					     uuid, ds);
		return vm_error_setx(err, ENOENT, "start %s: disks[%zu] image %s is missing", uuid,
				     i, path ? path : "(no path)");
	}
	return 0;
}

static pid_t running_pid(struct vm_node *node, const char *uuid);

int kvm_start_vm(struct vm_node *node, json_t *vm, bool incoming, struct vm_error *err)
{
	const char *uuid = vm_uuid(vm, "start", err), *accel;
	_cleanup_free_ char *run = NULL, *qmp_path = NULL, *accel_path = NULL, *log_dir = NULL,
			    *log_path = NULL, *argv_str = NULL, *header = NULL;
	_cleanup_strv_ char **argv = NULL;
	_cleanup_close_ int log_fd = -1;
	_cleanup_qmp_ struct qmp *q = NULL;
	_cleanup_json_ json_t *status = NULL;
	const char *want = incoming ? "inmigrate" : "running", *got;
	struct stat st;
	off_t log_start;
	pid_t pid;
	int r;

	if (!uuid)
		return -EINVAL;
	/* The caller checked; this guards the run directory of a live VM. */
	pid = running_pid(node, uuid);
	if (pid > 0)
		return vm_error_setx(err, EBUSY, "start %s: already running (QEMU pid %d)", uuid,
				     (int)pid);
	/* Leftovers of a QEMU that died without stop are stale (it does not
	 * run): gone before anything can fail, so a failed start leaves no
	 * runtime file, not even an old one. */
	run = kvm_run_path(node, uuid, NULL);
	if (!run)
		return vm_error_set(err, ENOMEM, "start %s", uuid);
	r = fs_rm_rf(run, err);
	if (r < 0)
		return vm_error_prefix(err, "start %s", uuid);
	r = check_disks(vm, uuid, err);
	if (r < 0)
		return r;
	r = kvm_pick_accel(node, &accel, err);
	if (r < 0)
		return vm_error_prefix(err, "start %s", uuid);
	r = kvm_build_argv(node, vm, accel, incoming, &argv, err);
	if (r < 0)
		return vm_error_prefix(err, "start %s", uuid);

	qmp_path = kvm_run_path(node, uuid, "qmp.sock");
	accel_path = kvm_run_path(node, uuid, "accel");
	log_dir = vm_node_path(node, "log");
	log_path = vm_node_path(node, "log/%s-qemu.log", uuid);
	argv_str = vm_spawn_argv_string((const char *const *)argv);
	if (!run || !qmp_path || !accel_path || !log_dir || !log_path || !argv_str)
		return vm_error_set(err, ENOMEM, "start %s", uuid);
	if (strlen(qmp_path) >= sizeof(((struct sockaddr_un *)0)->sun_path) - 4)
		return vm_error_setx(err, ENAMETOOLONG,
				     "start %s: run directory %s is too long for unix socket paths",
				     uuid, run);

	r = fs_mkdir_p(run, 0700, err);
	if (r >= 0)
		r = fs_mkdir_p(log_dir, 0700, err);
	if (r < 0)
		return vm_error_prefix(err, "start %s", uuid);
	r = fs_write_atomic(accel_path, accel, strlen(accel), 0644, err);
	if (r < 0)
		goto fail_prefix;

	log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log_fd < 0) {
		r = vm_error_set(err, errno, "start %s: open %s", uuid, log_path);
		goto fail;
	}
	log_start = fstat(log_fd, &st) == 0 ? st.st_size : 0;
	header = strdup_printf("--- start %s (accel %s): %s\n", uuid, accel, argv_str);
	if (header)
		fs_write_all(log_fd, header, strlen(header));
	log_start += header ? (off_t)strlen(header) : 0;

	vm_debug("kvm %s: %s", uuid, argv_str);
	pid = vm_spawn_start((const char *const *)argv, -1, log_fd, log_fd, err);
	if (pid < 0)
		goto fail_prefix;
	/* With -daemonize the first process exits once the VM is set up (or
	 * failed to be): its status is QEMU's verdict on the command line. */
	r = vm_spawn_wait(pid, argv[0], err);
	if (r < 0) {
		_cleanup_free_ char *tail = log_tail(log_path, log_start);
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		r = vm_error_setx(err, err->code, "start %s: %s: %s", uuid, why,
				  tail && *tail ? tail : "(no output)");
		goto fail;
	}

	r = qmp_connect(qmp_path, QMP_CONNECT_MS, &q, err);
	if (r >= 0)
		r = qmp_command(q, "query-status", NULL, &status, QMP_COMMAND_MS, err);
	if (r < 0)
		goto fail_prefix;
	got = json_string_value(json_object_get(status, "status"));
	if (!got || !streq(got, want)) {
		_cleanup_free_ char *tail = log_tail(log_path, log_start);
		r = vm_error_setx(err, EIO, "start %s: QEMU status is '%s', expected '%s'%s%s",
				  uuid, got ? got : "?", want, tail && *tail ? ": " : "",
				  tail ? tail : "");
		goto fail;
	}
	vm_debug("kvm %s: running (accel %s)", uuid, accel);
	return 0;

fail_prefix:
	vm_error_prefix(err, "start %s", uuid);
fail:
	qmp_close(TAKE_PTR(q));
	kill_and_clean(node, uuid);
	return r;
}

static int kvm_start(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	return kvm_start_vm(node, vm, false, err);
}

/* --- Runtime, stop, reboot ----------------------------------------------- */

static pid_t running_pid(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *pidfile = kvm_run_path(node, uuid, "qemu.pid");
	return pidfile ? brand_running_pid(pidfile, uuid) : 0;
}

int kvm_qmp_open(struct vm_node *node, const char *uuid, struct qmp **ret, struct vm_error *err)
{
	_cleanup_free_ char *path = kvm_run_path(node, uuid, "qmp.sock");

	if (!path)
		return vm_error_set(err, ENOMEM, "qmp %s", uuid);
	if (running_pid(node, uuid) == 0)
		return vm_error_setx(err, ESRCH, "VM %s is not running", uuid);
	return qmp_connect(path, QMP_CONNECT_MS, ret, err);
}

static void kvm_runtime(struct vm_node *node, json_t *vm, struct vm_runtime *ret)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	pid_t pid = uuid ? running_pid(node, uuid) : 0;

	ret->pid = pid;
	ret->state = pid ? "running" : "stopped";
	ret->zone_state = pid ? "running" : "installed";
	ret->accel[0] = '\0';
	if (pid) {
		/* What kvm_start_vm() recorded: the accelerator QEMU runs with. */
		_cleanup_free_ char *path = kvm_run_path(node, uuid, "accel"), *text = NULL;
		struct vm_error ignore = { 0 };

		if (path && fs_read_file(path, 64, &text, NULL, &ignore) >= 0 &&
		    (streq(text, "kvm") || streq(text, "tcg")))
			snprintf(ret->accel, sizeof(ret->accel), "%s", text);
	}
}

static int kvm_stop(struct vm_node *node, json_t *vm, int timeout_secs, bool force,
		    struct vm_error *err)
{
	const char *uuid = vm_uuid(vm, "stop", err);
	_cleanup_free_ char *run = NULL;
	pid_t pid;
	int r;

	if (!uuid)
		return -EINVAL;
	run = kvm_run_path(node, uuid, NULL);
	if (!run)
		return vm_error_set(err, ENOMEM, "stop %s", uuid);
	pid = running_pid(node, uuid);

	if (pid > 0 && !force) {
		_cleanup_qmp_ struct qmp *q = NULL;
		struct vm_error qerr = { 0 };

		/* Ask the guest; if QMP does not answer, there is nobody to ask
		 * and we go straight to the kill. */
		r = kvm_qmp_open(node, uuid, &q, &qerr);
		if (r >= 0)
			r = qmp_command(q, "system_powerdown", NULL, NULL, QMP_COMMAND_MS, &qerr);
		if (r < 0)
			vm_debug("stop %s: %s; killing", uuid, qerr.msg);
		else if (brand_wait_pid_gone(pid, uuid,
					     timeout_secs > 0 ? timeout_secs * 1000 : 0) == 0)
			pid = 0;
	}
	if (pid > 0 && brand_pid_is_vm(pid, uuid)) {
		vm_debug("stop %s: SIGKILL to QEMU pid %d", uuid, (int)pid);
		if (kill(pid, SIGKILL) < 0 && errno != ESRCH)
			return vm_error_set(err, errno, "stop %s: kill QEMU pid %d", uuid,
					    (int)pid);
		if (brand_wait_pid_gone(pid, uuid, KILL_WAIT_MS) < 0)
			return vm_error_setx(err, ETIMEDOUT,
					     "stop %s: QEMU pid %d still there %d s after SIGKILL",
					     uuid, (int)pid, KILL_WAIT_MS / 1000);
	}
	r = fs_rm_rf(run, err);
	if (r < 0)
		return vm_error_prefix(err, "stop %s", uuid);
	return 0;
}

static int kvm_reboot(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	const char *uuid = vm_uuid(vm, "reboot", err);
	_cleanup_qmp_ struct qmp *q = NULL;
	int r;

	if (!uuid)
		return -EINVAL;
	r = kvm_qmp_open(node, uuid, &q, err);
	if (r >= 0)
		r = qmp_command(q, "system_reset", NULL, NULL, QMP_COMMAND_MS, err);
	if (r < 0)
		return vm_error_prefix(err, "reboot %s", uuid);
	return 0;
}

/* --- Info ---------------------------------------------------------------- */

/* The block graph nodes, reduced to what a person looks at. */
static json_t *block_nodes(json_t *nodes)
{
	json_t *out = json_array(), *n;
	size_t i;

	json_array_foreach(nodes, i, n) {
		json_t *cache = json_object_get(n, "cache");
		json_array_append_new(out, json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?}", "node-name",
						     json_object_get(n, "node-name"), "drv",
						     json_object_get(n, "drv"), "file",
						     json_object_get(n, "file"), "ro",
						     json_object_get(n, "ro"), "cache.direct",
						     json_object_get(cache, "direct")));
	}
	return out;
}

static int kvm_info(struct vm_node *node, json_t *vm, json_t **ret, struct vm_error *err)
{
	const char *uuid = vm_uuid(vm, "info", err);
	_cleanup_free_ char *qmp_path = NULL, *console = NULL, *accel_path = NULL, *accel = NULL;
	_cleanup_qmp_ struct qmp *q = NULL;
	_cleanup_json_ json_t *out = NULL;
	static const char *const queries[][2] = {
		{ "query-status", "status" },
		{ "query-block", "block" },
		{ "query-chardev", "chardev" },
		{ "query-named-block-nodes", "block_nodes" },
	};
	struct vm_error ignore = { 0 };
	pid_t pid;
	int r;

	if (!uuid)
		return -EINVAL;
	qmp_path = kvm_run_path(node, uuid, "qmp.sock");
	console = kvm_run_path(node, uuid, "console.sock");
	accel_path = kvm_run_path(node, uuid, "accel");
	if (!qmp_path || !console || !accel_path)
		return vm_error_set(err, ENOMEM, "info %s", uuid);
	pid = running_pid(node, uuid);
	r = kvm_qmp_open(node, uuid, &q, err);
	if (r < 0)
		return vm_error_prefix(err, "info %s", uuid);
	if (fs_read_file(accel_path, 64, &accel, NULL, &ignore) < 0)
		accel = NULL;
	out = json_pack("{s:s, s:i, s:s?, s:s, s:s, s:O?}", "uuid", uuid, "pid", (int)pid, "accel",
			accel, "qmp_socket", qmp_path, "console_socket", console, "qemu_version",
			qmp_version(q));
	if (!out)
		return vm_error_set(err, ENOMEM, "info %s", uuid);
	for (size_t i = 0; i < ARRAY_SIZE(queries); i++) {
		json_t *v = NULL;
		r = qmp_command(q, queries[i][0], NULL, &v, QMP_COMMAND_MS, err);
		if (r < 0)
			return vm_error_prefix(err, "info %s", uuid);
		if (streq(queries[i][1], "block_nodes")) {
			json_t *reduced = block_nodes(v);
			json_decref(v);
			v = reduced;
		}
		json_object_set_new(out, queries[i][1], v);
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* --- Console ------------------------------------------------------------- */

#define CONSOLE_DETACH 0x1d /* Ctrl-] */

static int kvm_console(struct vm_node *node, json_t *vm, int in_fd, int out_fd,
		       struct vm_error *err)
{
	const char *uuid = vm_uuid(vm, "console", err);
	_cleanup_free_ char *path = NULL;
	_cleanup_close_ int fd = -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[4096];

	if (!uuid)
		return -EINVAL;
	path = kvm_run_path(node, uuid, "console.sock");
	if (!path)
		return vm_error_set(err, ENOMEM, "console %s", uuid);
	if (running_pid(node, uuid) == 0)
		return vm_error_setx(err, ESRCH, "console %s: VM is not running", uuid);
	if (strlen(path) >= sizeof(sa.sun_path))
		return vm_error_setx(err, ENAMETOOLONG, "console %s: socket path too long", uuid);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return vm_error_set(err, errno, "console %s: connect %s", uuid, path);

	for (;;) {
		struct pollfd p[2] = { { .fd = in_fd, .events = POLLIN },
				       { .fd = fd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return vm_error_set(err, errno, "console %s: poll", uuid);
		}
		if (p[0].revents) {
			char *detach;
			n = read(in_fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 0;
			detach = memchr(buf, CONSOLE_DETACH, n);
			if (detach)
				n = detach - buf;
			if (n > 0 && fs_write_all(fd, buf, n) < 0)
				return 0; /* the VM went away */
			if (detach)
				return 0;
		}
		if (p[1].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 0;
			if (fs_write_all(out_fd, buf, n) < 0)
				return vm_error_set(err, errno, "console %s: write to terminal",
						    uuid);
		}
	}
}

/* One QMP command without arguments or result (stop, cont) on the running
 * VM vm. err says what failed. */
static int kvm_qmp_simple(struct vm_node *node, json_t *vm, const char *cmd, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(vm, "uuid"));
	_cleanup_qmp_ struct qmp *q = NULL;
	int r;

	r = kvm_qmp_open(node, uuid ? uuid : "", &q, err);
	if (r >= 0)
		r = qmp_command(q, cmd, NULL, NULL, QMP_COMMAND_MS, err);
	return r;
}

/* QMP stop: QEMU drains the guest's I/O before it reports the guest paused,
 * so the disk images hold every write the guest completed. */
static int kvm_quiesce(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	return kvm_qmp_simple(node, vm, "stop", err);
}

static int kvm_pause(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	int r = kvm_quiesce(node, vm, err);

	return r < 0 ? vm_error_prefix(err, "pause the guest") : r;
}

static int kvm_resume(struct vm_node *node, json_t *vm, struct vm_error *err)
{
	int r = kvm_qmp_simple(node, vm, "cont", err);

	return r < 0 ? vm_error_prefix(err, "resume the guest") : r;
}

const struct vm_brand_ops kvm_brand_ops = {
	.name = "kvm",
	.start = kvm_start,
	.stop = kvm_stop,
	.reboot = kvm_reboot,
	.runtime = kvm_runtime,
	.info = kvm_info,
	.console = kvm_console,
	.pause = kvm_pause,
	.resume = kvm_resume,
	.quiesce = kvm_quiesce,
	.live = &kvm_live_ops,
};

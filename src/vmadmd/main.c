/* SPDX-License-Identifier: MIT */
/*
 * vmadmd: the node daemon. Starts autoboot VMs when the node has booted,
 * notices VMs whose guest or QEMU exited, and (migration issues) accepts
 * incoming migrations. One per node: a locked pidfile ROOT/run/vmadmd.pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "migrate/transport/proto.h"
#include "node/node.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/macros.h"
#include "vm/daemon.h"

static volatile sig_atomic_t quit;

static void on_signal(int sig) { quit = 1; }

static void log_line(int level, const char *line, void *userdata)
{
	FILE *f = userdata;
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;

	if (level == VM_LOG_DEBUG && !getenv("VMADM_DEBUG"))
		return;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(f, "%s %s\n", ts, line);
	fflush(f);
}

static void log_all(json_t *lines)
{
	json_t *l;
	size_t i;

	json_array_foreach(lines, i, l)
		vm_info("%s", json_string_value(l));
	json_array_clear(lines);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: vmadmd [-f] [-B] [-i SECS] [-l ADDR[:PORT]]\n\n"
		   "The vmadm node daemon for the node at $VMADM_ROOT (default " VM_DEFAULT_ROOT ").\n\n"
		   "  -f       stay in the foreground (for systemd and tests)\n"
		   "  -B       act as if the node had just booted: start autoboot VMs now\n"
		   "  -i SECS  how often to check the VMs' processes (default 1)\n"
		   "  -l ADDR[:PORT]  accept migrations there (default: the node's \"listen\"\n"
		   "           setting; port 9777); needs ROOT/vmadm.key (vmadm key generate)\n"
		   "Migration limits in ROOT/vmadm.conf, read at start: handshake_timeout (10 s),\n"
		   "max_handshakes (64), max_handshakes_per_address (8); per migration:\n"
		   "net_timeout (30 s), max_receives (2). See docs/migration-protocol.md, Limits.\n"
		   "Logs go to ROOT/log/vmadmd.log.\n");
}

/* Take the node's pidfile lock; fails if another vmadmd serves the node.
 * A daemon that exits unlinks the file while it still holds the lock, so a
 * lock taken on a file that is no longer at the path is worthless: retry on
 * the new file. */
static int take_pidfile(struct vm_node *node, int *ret_fd, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "run/vmadmd.pid");

	for (int attempt = 0; attempt < 10; attempt++) {
		_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		struct stat a, b;
		char buf[32] = "";

		if (fd < 0)
			return vm_error_set(err, errno, "open %s", path);
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
			buf[n > 0 ? n : 0] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			return vm_error_setx(err, EBUSY,
					     "another vmadmd (pid %s) already serves node %s",
					     buf[0] ? buf : "?", node->root);
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			*ret_fd = TAKE_FD(fd);
			return 0;
		}
	}
	return vm_error_setx(err, EAGAIN, "lock %s: the file keeps being replaced", path);
}

static void write_pid(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", getpid());

	if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, n, 0) != n)
		vm_warn("could not write the pidfile");
}

int main(int argc, char **argv)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *lines = json_array();
	_cleanup_fclose_ FILE *logf = NULL;
	_cleanup_free_ char *logpath = NULL;
	struct vm_error err = { 0 };
	bool foreground = false, force_boot = false;
	const char *listen_spec = NULL;
	int pidfd = -1, interval = 1, c;

	while ((c = getopt(argc, argv, "fBi:l:h")) != -1) {
		switch (c) {
		case 'f':
			foreground = true;
			break;
		case 'B':
			force_boot = true;
			break;
		case 'i':
			interval = atoi(optarg);
			if (interval < 1) {
				fprintf(stderr, "vmadmd: -i: not a number of seconds: %s\n", optarg);
				return 2;
			}
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (vm_node_open(&node, &err) < 0 || take_pidfile(node, &pidfd, &err) < 0) {
		fprintf(stderr, "vmadmd: %s\n", err.msg);
		return 1;
	}
	logpath = vm_node_path(node, "log/vmadmd.log");
	logf = fopen(logpath, "ae");
	if (!logf) {
		fprintf(stderr, "vmadmd: open %s: %s\n", logpath, strerror(errno));
		return 1;
	}
	if (!foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "vmadmd: daemon: %s\n", strerror(errno));
		return 1;
	}
	write_pid(pidfd);
	vm_log_set_handler(log_line, logf);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	vm_info("vmadmd %s started for node %s (pid %d)", VMADM_VERSION, node->root, getpid());
	if (migrate_server_start(node, listen_spec, &err) < 0) {
		vm_warn("listen: %s", err.msg);
		fprintf(stderr, "vmadmd: listen: %s\n", err.msg);
		return 1;
	}

	if (vm_node_booted(node) || force_boot) {
		vm_info("node booted: starting autoboot VMs");
		if (vm_autoboot_all(node, lines, &err) < 0)
			vm_warn("autoboot: %s", err.msg);
		log_all(lines);
	}
	while (!quit) {
		vm_error_clear(&err);
		if (vm_reconcile_states(node, lines, &err) < 0)
			vm_warn("watch: %s", err.msg);
		log_all(lines);
		for (int i = 0; i < interval * 10 && !quit; i++)
			usleep(100 * 1000);
	}
	vm_info("vmadmd stopping");
	{
		_cleanup_free_ char *path = vm_node_path(node, "run/vmadmd.pid");
		unlink(path);
	}
	close(pidfd);
	return 0;
}

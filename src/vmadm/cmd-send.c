/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "brand/live.h"
#include "migrate/migrate.h"
#include "migrate/transport/proto.h"
#include "net/net.h"
#include "util/format.h"
#include "util/fs.h"
#include "util/macros.h"
#include "vmadm.h"

enum {
	OPT_PORTABLE = 0x100,
	OPT_JSON,
	OPT_NO_START,
	OPT_NO_COMPRESS,
	OPT_BWLIMIT,
	OPT_TIMEOUT,
	OPT_MODE,
	OPT_DOWNTIME_TARGET,
	OPT_MAX_PASSES,
	OPT_FINAL_STOP,
	OPT_DOWNTIME_LIMIT,
	OPT_LIVE_TIMEOUT,
};

/* SIGINT/SIGTERM cancel a migration: until the target has the whole VM
 * the source puts its VM back as it was (restarted if the send stopped it;
 * -L: the guest runs on). */
static volatile sig_atomic_t send_cancel;
static void on_cancel_signal(int sig)
{
	(void)sig;
	send_cancel = 1;
}

struct shown {
	bool json;
	bool tty;
	bool drawn;
	bool passes; /* -I: a line per pass and the downtime, tty or not */
};

static void on_event(const struct migrate_event *ev, void *userdata)
{
	struct shown *s = userdata;

	if (s->json) {
		_cleanup_json_ json_t *j = json_pack(
		    "{s:s, s:s, s:o, s:I, s:I, s:I, s:o}", "event", "progress", "phase", ev->phase,
		    "dataset", ev->dataset ? json_string(ev->dataset) : json_null(), "bytes",
		    (json_int_t)ev->bytes, "total", (json_int_t)ev->total, "rate",
		    (json_int_t)(ev->rate + 0.5), "eta",
		    ev->eta >= 0 ? json_integer((json_int_t)(ev->eta + 0.5)) : json_null());
		if (ev->live) /* -L: QEMU's numbers */
			json_object_set_new(
			    j, "live",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "elapsed_ms",
				      (json_int_t)ev->live->elapsed_ms, "disk_dirty",
				      (json_int_t)ev->live->disk_dirty, "disk_copied",
				      (json_int_t)ev->live->disk_copied, "ram_transferred",
				      (json_int_t)ev->live->ram_transferred, "ram_remaining",
				      (json_int_t)ev->live->ram_remaining, "dirty_rate",
				      (json_int_t)ev->live->dirty_rate, "downtime_limit_ms",
				      (json_int_t)ev->live->downtime_limit_ms));
		if (ev->pass)
			json_object_update_new(j, migrate_pass_json(ev->pass));
		if (ev->done)
			json_object_update_new(
			    j, json_pack("{s:o, s:I, s:f, s:f}", "downtime",
					 ev->done->downtime >= 0 ? json_real(ev->done->downtime)
								 : json_null(),
					 "bytes_total", (json_int_t)ev->done->bytes_total,
					 "source_seconds", ev->done->source_seconds,
					 "target_start_seconds", ev->done->target_start_seconds));
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		fflush(stdout);
	} else if ((ev->pass || ev->done) && (s->tty || s->passes)) {
		/* a pass, the end: a line of its own, tty or not */
		const struct migrate_pass *p = ev->pass;
		char b[32], r[32];
		if (s->drawn)
			fputc('\n', stderr);
		s->drawn = false;
		if (p) {
			format_size(p->bytes, b);
			format_size(p->rate, r);
			fprintf(stderr, "pass %u%s: %s in %.1f s (%s/s)%s%s\n", p->n,
				p->final ? " (final)" : "", b, p->seconds, r, p->reason ? ": " : "",
				p->reason ? p->reason : "");
		} else if (ev->done->downtime >= 0) {
			format_size(ev->done->bytes_total, b);
			fprintf(stderr, "downtime %.2f s, %s sent in all\n", ev->done->downtime, b);
		}
	} else if (s->tty) {
		char b[32], t[32], r[32], eta[32] = "--";
		format_size(ev->bytes, b);
		format_size(ev->total, t);
		format_size((uint64_t)(ev->rate + 0.5), r);
		if (ev->eta >= 0)
			snprintf(eta, sizeof(eta), "%d:%02d", (int)ev->eta / 60, (int)ev->eta % 60);
		fprintf(stderr, "\r\033[K%-8s %s  %s / %s  %s/s  ETA %s", ev->phase,
			ev->dataset ? ev->dataset : "-", b, t, r, eta);
		fflush(stderr);
		s->drawn = true;
	}
}

static void end_line(struct shown *s)
{
	if (s->drawn) {
		fputc('\n', stderr);
		s->drawn = false;
	}
}

/* bad_mode: a --mode name no mode has (refused once the node is open, as
 * the send would have). */
static int send_remote(const char *uuid, const char *host, int port, bool dry_run,
		       const char *bad_mode, struct migrate_send_opts *opts, struct shown *shown,
		       struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *result = NULL;
	int r;

	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	if (dry_run) {
		_cleanup_json_ json_t *est = NULL;
		uint64_t total = 0;
		const char *ds;
		json_t *v;
		r = vm_send_estimate(node, uuid, &est, &total, err);
		if (r < 0)
			return r;
		if (shown->json) {
			_cleanup_json_ json_t *j =
			    json_pack("{s:s, s:O, s:I}", "event", "estimate", "datasets", est,
				      "total", (json_int_t)total);
			json_dumpf(j, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			return 0;
		}
		json_object_foreach (est, ds, v) {
			char h[32];
			format_size(json_integer_value(v), h);
			printf("%-60s %12lld  %s\n", ds, json_integer_value(v), h);
		}
		{
			char h[32];
			format_size(total, h);
			printf("%-60s %12llu  %s\n", "total", (unsigned long long)total, h);
		}
		return 0;
	}
	if (bad_mode)
		return vm_error_setx(err, ENOTSUP, "unknown migration mode '%s'", bad_mode);
	r = migrate_send_remote(node, uuid, host, port, opts, &result, err);
	end_line(shown);
	if (shown->json) {
		_cleanup_json_ json_t *j = result ? json_deep_copy(result) : json_object();
		json_object_set_new(j, "event", json_string("result"));
		json_object_set_new(j, "ok", json_boolean(r >= 0));
		if (r < 0)
			json_object_set_new(j, "error", json_string(err->msg));
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		fflush(stdout);
	}
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully sent VM %s to %s:%d (%s there)\n", uuid, host, port,
		json_string_value(json_object_get(result, "state")));
	if (json_object_get(json_object_get(result, "report"), "downtime_ms")) {
		json_t *rp = json_object_get(result, "report");
		fprintf(stderr,
			"Live migration: QEMU downtime %lld ms (limit %lld ms), guest paused %lld "
			"ms (STOP to RESUME), total %.1f s\n",
			json_integer_value(json_object_get(rp, "downtime_ms")),
			json_integer_value(json_object_get(rp, "downtime_limit_ms")),
			json_integer_value(json_object_get(rp, "pause_ms")),
			json_integer_value(json_object_get(rp, "total_ms")) / 1000.0);
	}
	return 0;
}

/* vmadm send UUID [-z] [--portable] [-t SECS] > FILE
 * vmadm send UUID HOST PORT | HOST:PORT [options] */
int cmd_send(int argc, char **argv, struct vm_error *err)
{
	static const struct option longopts[] = {
	    {"portable", no_argument, NULL, OPT_PORTABLE},
	    {"compress", no_argument, NULL, 'z'},
	    {"stop-timeout", required_argument, NULL, 't'},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"dry-run", no_argument, NULL, 'n'},
	    {"no-start", no_argument, NULL, OPT_NO_START},
	    {"no-compress", no_argument, NULL, OPT_NO_COMPRESS},
	    {"bwlimit", required_argument, NULL, OPT_BWLIMIT},
	    {"mode", required_argument, NULL, OPT_MODE},
	    {"incremental", no_argument, NULL, 'I'},
	    {"downtime-target", required_argument, NULL, OPT_DOWNTIME_TARGET},
	    {"max-passes", required_argument, NULL, OPT_MAX_PASSES},
	    {"final-stop", required_argument, NULL, OPT_FINAL_STOP},
	    {"live", no_argument, NULL, 'L'},
	    {"downtime-limit", required_argument, NULL, OPT_DOWNTIME_LIMIT},
	    {"live-timeout", required_argument, NULL, OPT_LIVE_TIMEOUT},
	    {NULL},
	};
	_cleanup_node_ struct vm_node *node = NULL;
	struct migrate_send_opts opts = {.send.stop_timeout = 60, .mode = MIGRATE_COLD};
	struct shown shown = {0};
	const char *pos[3] = {NULL}, *bad_mode = NULL;
	_cleanup_free_ char *host = NULL;
	/* -z is for a file, --no-compress for a node (which compresses if
	 * the target takes it): opts.send.compress is the one that applies. */
	bool dry_run = false, compress = false, no_compress = false;
	int npos = 0, port = 0, c, r;

	/* "-": positional arguments come in order, options anywhere. */
	while ((c = getopt_long(argc, argv, "-zt:nIL", longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			if (npos == 3)
				return vmadm_usage_error("send", err, "unexpected argument '%s'",
							 optarg);
			pos[npos++] = optarg;
			break;
		case OPT_PORTABLE:
			opts.send.portable = true;
			break;
		case 'z':
			compress = true;
			break;
		case 't':
			opts.send.stop_timeout = atoi(optarg);
			break;
		case OPT_TIMEOUT:
			opts.timeout = atoi(optarg);
			if (opts.timeout <= 0)
				return vmadm_usage_error("send", err,
							 "--timeout: not a number of "
							 "seconds: %s",
							 optarg);
			break;
		case OPT_JSON:
			shown.json = true;
			break;
		case 'n':
			dry_run = true;
			break;
		case OPT_NO_START:
			opts.no_start = true;
			break;
		case OPT_NO_COMPRESS:
			no_compress = true;
			break;
		case OPT_BWLIMIT:
			r = migrate_parse_rate(optarg, &opts.bwlimit, err);
			if (r < 0)
				return r;
			break;
		case OPT_MODE: {
			const struct migrate_mode_ops *m = migrate_mode_by_name(optarg);
			if (m)
				opts.mode = m->mode;
			bad_mode = m ? NULL : optarg;
			break;
		}
		case 'I':
			shown.passes = true;
			opts.mode = MIGRATE_INCREMENTAL;
			bad_mode = NULL;
			break;
		case 'L':
			opts.mode = MIGRATE_LIVE;
			bad_mode = NULL;
			break;
		case OPT_DOWNTIME_LIMIT:
			opts.downtime_limit_ms = atoll(optarg);
			if (opts.downtime_limit_ms <= 0)
				return vmadm_usage_error("send", err,
							 "--downtime-limit: not a "
							 "number of ms: %s",
							 optarg);
			break;
		case OPT_LIVE_TIMEOUT:
			opts.live_timeout = atoi(optarg);
			if (opts.live_timeout <= 0)
				return vmadm_usage_error("send", err,
							 "--live-timeout: not a "
							 "number of seconds: %s",
							 optarg);
			break;
		case OPT_DOWNTIME_TARGET: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 3600000)
				return vmadm_usage_error("send", err,
							 "--downtime-target: not a number of "
							 "milliseconds: %s",
							 optarg);
			opts.downtime_target_ms = (unsigned)v;
			break;
		}
		case OPT_MAX_PASSES: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 64)
				return vmadm_usage_error("send", err,
							 "--max-passes: a number from 1 to 64, "
							 "not %s",
							 optarg);
			opts.max_passes = (unsigned)v;
			break;
		}
		case OPT_FINAL_STOP:
			if (streq(optarg, "pause"))
				opts.final_pause = true;
			else if (streq(optarg, "shutdown"))
				opts.final_pause = false;
			else
				return vmadm_usage_error("send", err,
							 "--final-stop: 'shutdown' or 'pause', "
							 "not %s",
							 optarg);
			break;
		default:
			return vmadm_usage_error("send", err, "unknown option");
		}
	}
	if (npos == 0)
		return vmadm_usage_error("send", err, "expected a UUID");
	if (npos >= 2 || dry_run) {
		if (npos == 3) {
			char *end;
			long p = strtol(pos[2], &end, 10);
			if (*end || p < 1 || p > 65535)
				return vmadm_usage_error("send", err, "bad port '%s'", pos[2]);
			host = strdup(pos[1]);
			port = (int)p;
		} else if (npos == 2) {
			r = net_parse_hostport(pos[1], NET_DEFAULT_PORT, &host, &port, err);
			if (r < 0)
				return r;
		}
		shown.tty = !shown.json && isatty(2);
		opts.send.compress = !no_compress;
		opts.event = on_event;
		opts.userdata = &shown;
		if (opts.mode == MIGRATE_LIVE && !bad_mode && opts.no_start)
			return vmadm_usage_error("send", err,
						 "--no-start does not apply to -L: "
						 "the guest never stops");
		if (!dry_run) {
			struct sigaction sa = {.sa_handler = on_cancel_signal};
			sigemptyset(&sa.sa_mask);
			sigaction(SIGINT, &sa, NULL);
			sigaction(SIGTERM, &sa, NULL);
			opts.cancel = &send_cancel;
		}
		return send_remote(pos[0], host, port, dry_run, bad_mode, &opts, &shown, err);
	}

	if (isatty(1))
		return vm_error_setx(err, EINVAL,
				     "refusing to write the stream to a terminal: redirect it to a "
				     "file or a pipe");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	opts.send.compress = compress;
	/* stdout is the stream's: vm_send flushes and closes it as soon as it
	 * is written, so that a receiver at the other end of a pipe goes on
	 * while the snapshots are dropped here */
	opts.send.own_fd = true;
	r = vm_send(node, pos[0], 1, &opts.send, NULL, err);
	if (r < 0)
		return r;
	fprintf(stderr, "Successfully sent VM %s\n", pos[0]);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Migration between nodes over the network (docs/migration-protocol.md):
 * `vmadm send UUID HOST PORT` (the source, client.c) and vmadmd's listener
 * (the target, server.c). HELLO, BEGIN and CONFIRM are common to every mode;
 * what happens between ACCEPT and INSTALLED is a mode's: cold (modes/cold.c),
 * incremental (modes/incremental.c), live (modes/live.c), each a struct
 * migrate_mode_ops in the one table of modes.c.
 */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/migrate.h"
#include "net/net.h"
#include "node/node.h"
#include "util/error.h"

/* How a VM moves; BEGIN carries the mode's name ("cold", "incremental",
 * "live": migrate_mode_ops.name). */
enum migrate_mode {
	MIGRATE_COLD,	     /* stopped, then the stream of `vmadm send` (default) */
	MIGRATE_INCREMENTAL, /* -I: passes while it runs, a last one stopped */
	MIGRATE_LIVE,	     /* -L: a running kvm guest with QEMU's migration */
};

/* What the front end is told while a migration runs. */
struct vm_live_progress;

/* A pass of an incremental migration (-I) that landed on the target. */
struct migrate_pass {
	unsigned n;	       /* 1, 2, ... */
	uint64_t bytes;	       /* its stream bytes */
	double seconds;	       /* from its announcement to the target's PASS_DONE */
	uint64_t rate;	       /* bytes / seconds; 0 when too quick to measure */
	bool final;	       /* the last one (the VM stopped for it, if it ran) */
	const char *from;      /* the snapshot it is a delta from; NULL: full */
	double target_seconds; /* the target's receive of it */
	double stop_seconds;   /* the VM's stop before it; < 0: no stop */
	/* Not the final pass: the stop rule's verdict after it (stop: the
	 * next pass is the final one) and why; reason NULL for the final. */
	bool stop;
	const char *reason;
};

/* The end of a migration. */
struct migrate_done {
	double downtime;	     /* seconds from the VM's stop here to its start
				      * there; < 0: none to tell */
	uint64_t bytes_total;	     /* stream bytes sent */
	double source_seconds;	     /* the mode's run, here */
	double target_start_seconds; /* the VM's start there */
};

struct migrate_event {
	const char *phase;   /* "connect", "check", "stop", "snapshot", "send", "pass",
			      * "install", "confirm", "done" */
	const char *dataset; /* dataset moving, or NULL */
	uint64_t bytes;	     /* stream bytes sent so far */
	uint64_t total;	     /* estimated stream bytes */
	double rate;	     /* bytes per second, recent */
	double eta;	     /* seconds left, < 0 when unknown */
	/* Phase "pass": the pass that landed, else NULL. */
	const struct migrate_pass *pass;
	/* Phase "done": the end's numbers, else NULL. */
	const struct migrate_done *done;
	/* Live mode (phases "disk", "ram", "switchover"): QEMU's numbers
	 * (transferred, remaining, dirty rate), else NULL. */
	const struct vm_live_progress *live;
};
typedef void (*migrate_event_fn)(const struct migrate_event *ev, void *userdata);

struct migrate_send_opts {
	/* What a send to a file takes too: portable (even between btrfs
	 * pools), stop_timeout, and compress, here zstd if the target takes
	 * it. The modes set snapshot, skip, progress and userdata for their
	 * own sends: the caller leaves them unset. */
	struct vm_send_opts send;
	enum migrate_mode mode;
	int timeout;	  /* network deadline in seconds; 0: the node's */
	bool no_start;	  /* leave the VM stopped on the target */
	uint64_t bwlimit; /* DATA bytes per second, 0: no limit */
	migrate_event_fn event;
	void *userdata;
	/* incremental mode: the stop rule (0: VM_INCR_DEFAULT_*) */
	unsigned downtime_target_ms;
	unsigned max_passes;
	/* -I, a running kvm VM's final stop: false, a clean guest shutdown
	 * (nothing the guest had not yet written is lost; the downtime includes
	 * the shutdown); true, pause the guest and end QEMU (crash-consistent,
	 * like a power cut after the last completed write; a fraction of a
	 * second). */
	bool final_pause;
	/* live mode (-L): */
	int64_t downtime_limit_ms; /* --downtime-limit; 0: 300 */
	int live_timeout;	   /* --live-timeout SECS for the QEMU phases; 0: 600 */
	/* Set (non-zero) by the front end's SIGINT/SIGTERM handler: the
	 * migration is cancelled (while the data moves: afterwards the target
	 * has the VM) and the VM runs on here as before. NULL: never. */
	const volatile sig_atomic_t *cancel;
};

/* Rate and ETA over a sliding window, and the token bucket (progress.c). */
struct migrate_meter {
	double start, last_t, win_t;
	uint64_t win_bytes, bytes;
	double rate;
	uint64_t bwlimit;
	double tokens, tok_t;
};
void migrate_meter_init(struct migrate_meter *m, uint64_t bwlimit);
/* Account n bytes about to be sent: sleeps as long as the bwlimit needs. */
void migrate_meter_take(struct migrate_meter *m, size_t n);
/* Fill ev->rate and ev->eta from the meter (ev->bytes, ev->total set). */
void migrate_meter_fill(struct migrate_meter *m, struct migrate_event *ev);
double migrate_now(void);
/* Tell the front end (opts->event, if any) where the source is: phase,
 * dataset (may be NULL), the bytes sent and the rate and ETA from the
 * meter. */
struct migrate_source;
void migrate_emit(struct migrate_source *ctx, const char *phase, const char *dataset);
/* A pass as JSON: {"pass", "pass_bytes", "seconds", "pass_rate", "final",
 * "from", "target_seconds", "stop_seconds" (null: no stop), and but for the
 * final pass "reason", "stop"}: the result's report lists these, and
 * `vmadm send --json` shows them in its pass events. */
json_t *migrate_pass_json(const struct migrate_pass *p);
/* "50M", "1G", "1.5m", "800k", "1000" -> bytes per second. */
int migrate_parse_rate(const char *s, uint64_t *ret, struct vm_error *err);

/* The source side of one migration, as a mode's source() gets it. */
struct migrate_source {
	struct vm_node *node;
	struct net_conn *conn; /* authenticated, HELLO and BEGIN done */
	const char *uuid;
	const char *host;
	int port;
	json_t *vm; /* the VM's record at BEGIN */
	json_t *target_hello;
	json_t *accept; /* the target's ACCEPT ("have": datasets held) */
	const struct migrate_send_opts *opts;
	bool portable;	     /* chosen encoding */
	bool compress;	     /* chosen compression */
	char instant[64];    /* the send snapshot name */
	char instant_id[96]; /* names one taking of those snapshots */
	bool was_running;    /* set by source(): the VM ran before */
	bool keep_snapshots; /* set by source(): a re-run can resume */
	uint64_t total;	     /* estimated stream bytes */
	struct migrate_meter meter;
	double stopped_at; /* set by source(): migrate_now() when the VM
			    * stopped serving; 0: when source() began */
	json_t *report;	   /* set by source() (may stay NULL): fields
			    * added to the result ("passes"...) */
};

/* The instant of a send (instant.c). Name ctx->instant for the target
 * (ctx->host, ctx->port) and choose ctx->instant_id: the taking of an
 * earlier run's snapshots when the VM (ctx->vm) stayed as they caught it,
 * else a new taking (the old snapshots dropped); record the choice in the
 * send state. Returns whether the VM ran before the first run stopped it. */
bool migrate_instant_choose(struct migrate_source *ctx);
/* The cold mode's sender calls this once its snapshots of the instant
 * exist (the VM stopped, nothing sent yet): the send state then records
 * the VM record's last_modified, and a re-run resumes from those snapshots
 * only while the record is unchanged (no start, stop or update since). */
void migrate_instant_stamp(struct migrate_source *ctx);
/* Nothing to resume: drop the instant's snapshots and the send state. */
void migrate_instant_drop(struct vm_node *node, const char *uuid, const char *instant);

/* The target side of one migration, as a mode's target() gets it. */
struct migrate_target {
	struct vm_node *node;
	struct net_conn *conn; /* authenticated, ACCEPT sent */
	const char *uuid;
	json_t *begin;	   /* the source's BEGIN */
	json_t *have;	   /* datasets held from an earlier run */
	json_t *held;	   /* their receive journal (resume), or NULL */
	int64_t hold_secs; /* keep a failed receive's complete datasets so
			    * long (partial_keep_secs) */
	uint64_t bytes;	   /* stream bytes received */
};

struct migrate_mode_ops {
	enum migrate_mode mode;
	const char *name; /* in BEGIN */
	/* After ACCEPT: stop the VM (set ctx->was_running), move it, and return
	 * the target's INSTALLED record. Must leave the source's datasets and
	 * record intact on failure (the caller then restarts the VM if it was
	 * running); must never leave the VM running while the target has it. */
	int (*source)(struct migrate_source *ctx, json_t **ret_record, struct vm_error *err);
	/* After ACCEPT was sent: take the transfer and install the VM, stopped
	 * (the caller sets autoboot false until CONFIRM). Returns the installed
	 * record; the caller sends INSTALLED, or FAILED with err. On failure the
	 * node holds nothing of the VM but a partial kept for a resume. */
	int (*target)(struct migrate_target *ctx, json_t **ret_record, struct vm_error *err);
	/* Optional: may VM record vm move in this mode at all? Called by the
	 * source before it connects, and by the target at BEGIN (on the
	 * config); a failure's err is the refusal's reason. */
	int (*check)(json_t *vm, struct vm_error *err);
};

/* The table of modes (modes.c). The mode's ops, or NULL for a value out of
 * the enum. */
const struct migrate_mode_ops *migrate_mode_get(enum migrate_mode mode);
/* The mode BEGIN names (NULL: cold, as before modes), or NULL when there is
 * none of that name. */
const struct migrate_mode_ops *migrate_mode_by_name(const char *name);
/* Each mode's file defines its ops; only modes.c names them. */
extern const struct migrate_mode_ops migrate_cold_ops;
extern const struct migrate_mode_ops migrate_incremental_ops;
extern const struct migrate_mode_ops migrate_live_ops;

/* The pumps of the modes (pump.c). Send everything read from fd (until EOF) as DATA frames, with
 * the bwlimit and progress, sending keepalives while fd is quiet; where
 * (may be NULL) tells the phase and dataset for the progress events. Fails
 * with the target's reason if it answers FAILED meanwhile, and with
 * -ECANCELED once opts->cancel is set (seen within a second). Does not send
 * DATA_END. */
typedef void (*migrate_where_fn)(void *userdata, char phase[32], char dataset[256]);
int migrate_pump_to_conn(struct migrate_source *ctx, int fd, migrate_where_fn where, void *userdata,
			 struct vm_error *err);
/* Write DATA frames into fd until DATA_END (returns 0) or until
 * the source fails or goes silent. */
int migrate_pump_from_conn(struct migrate_target *ctx, int fd, struct vm_error *err);
/* Start fn(arg) in a thread that reads the stream from the read
 * end of a new 1 MiB pipe (stored in *arg_fd before the thread starts), and
 * feed it the source's DATA frames (migrate_pump_from_conn); the write end is
 * closed afterwards, so the thread sees EOF. Then wait for the thread,
 * sending the source a {"phase": phase} progress keepalive every second
 * while the pump had succeeded (verifying and installing take a while: keep
 * the source's deadline away). Returns a negative errno when the thread
 * could not start (nothing runs); else 0, the thread joined and the pump's
 * result in *ret_pumped. */
int migrate_pump_to_thread(struct migrate_target *ctx, void *(*fn)(void *), void *arg, int *arg_fd,
			   const char *phase, int *ret_pumped, struct vm_error *err);

/* The source: `vmadm send UUID HOST PORT`. On success the target has the
 * VM installed (and running unless no_start, if it ran here); this VM is
 * stopped with autoboot false and migrated_to set. On failure the VM is as
 * it was (restarted if it ran), and the target holds nothing of it but a
 * partial for a resume. */
int migrate_send_remote(struct vm_node *node, const char *uuid, const char *host, int port,
			const struct migrate_send_opts *opts, json_t **ret_result,
			struct vm_error *err);

/* The vmadmd listener: listen on spec ("ADDR:PORT", "ADDR", NULL: the
 * node's "listen" setting) and serve migrations in threads. Returns once
 * listening. */
int migrate_server_start(struct vm_node *node, const char *spec, struct vm_error *err);

/* This node's HELLO message. */
json_t *migrate_hello(struct vm_node *node);

/* The send snapshot for a target: "vmadm-send-" + 12 hex of sha256(host:port)
 * (instant.c). */
void migrate_instant_name(const char *host, int port, char out[64]);

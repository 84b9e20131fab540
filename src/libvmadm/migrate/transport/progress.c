/* SPDX-License-Identifier: MIT */
/* Rate, ETA and the bandwidth limit of a transfer, and the events that
 * show them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "migrate/transport/proto.h"

double migrate_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void migrate_meter_init(struct migrate_meter *m, uint64_t bwlimit)
{
	memset(m, 0, sizeof(*m));
	m->start = m->last_t = m->win_t = m->tok_t = migrate_now();
	m->bwlimit = bwlimit;
	/* A burst of at most 64 KiB or a tenth of a second. */
	m->tokens = 0;
}

void migrate_meter_take(struct migrate_meter *m, size_t n)
{
	double now = migrate_now();

	if (m->bwlimit) {
		double burst = m->bwlimit / 10.0 > 65536 ? m->bwlimit / 10.0 : 65536;
		m->tokens += (now - m->tok_t) * m->bwlimit;
		if (m->tokens > burst)
			m->tokens = burst;
		m->tok_t = now;
		m->tokens -= n;
		if (m->tokens < 0) {
			double wait = -m->tokens / m->bwlimit;
			struct timespec ts = {.tv_sec = (time_t)wait,
					      .tv_nsec =
						  (long)((wait - (double)(time_t)wait) * 1e9)};
			nanosleep(&ts, NULL);
			now = migrate_now();
			m->tokens += (now - m->tok_t) * m->bwlimit;
			m->tok_t = now;
		}
	}
	m->bytes += n;
	m->win_bytes += n;
	/* The rate over the last second or so, smoothed. */
	if (now - m->win_t >= 1.0) {
		double r = m->win_bytes / (now - m->win_t);
		m->rate = m->rate > 0 ? 0.5 * m->rate + 0.5 * r : r;
		m->win_t = now;
		m->win_bytes = 0;
	}
	m->last_t = now;
}

void migrate_meter_fill(struct migrate_meter *m, struct migrate_event *ev)
{
	double now = migrate_now();
	double rate = m->rate;

	if (rate <= 0 && now - m->start > 0.05)
		rate = m->bytes / (now - m->start);
	ev->rate = rate;
	if (rate > 0 && ev->total > ev->bytes)
		ev->eta = (ev->total - ev->bytes) / rate;
	else
		ev->eta = ev->total && ev->bytes >= ev->total ? 0 : -1;
}

int migrate_parse_rate(const char *s, uint64_t *ret, struct vm_error *err)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v <= 0)
		return vm_error_setx(err, EINVAL, "bad rate '%s' (examples: 50M, 1G, 800k)", s);
	switch (*end) {
	case 'k':
	case 'K':
		v *= 1024;
		end++;
		break;
	case 'm':
	case 'M':
		v *= 1024 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		v *= 1024.0 * 1024 * 1024;
		end++;
		break;
	case '\0':
		break;
	default:
		return vm_error_setx(err, EINVAL, "bad rate '%s' (examples: 50M, 1G, 800k)", s);
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (strcmp(end, "") != 0 && strcmp(end, "/s") != 0)
		return vm_error_setx(err, EINVAL, "bad rate '%s' (examples: 50M, 1G, 800k)", s);
	*ret = (uint64_t)v;
	return 0;
}

void migrate_emit(struct migrate_source *ctx, const char *phase, const char *ds)
{
	struct migrate_event ev = {
	    .phase = phase, .dataset = ds, .bytes = ctx->meter.bytes, .total = ctx->total};

	if (!ctx->opts->event)
		return;
	if (ev.bytes > ev.total)
		ev.total = ev.bytes; /* the estimate leaves out the stream's headers */
	migrate_meter_fill(&ctx->meter, &ev);
	ctx->opts->event(&ev, ctx->opts->userdata);
}

json_t *migrate_pass_json(const struct migrate_pass *p)
{
	json_t *j =
	    json_pack("{s:i, s:I, s:f, s:I, s:b, s:o, s:f, s:o}", "pass", (int)p->n, "pass_bytes",
		      (json_int_t)p->bytes, "seconds", p->seconds, "pass_rate", (json_int_t)p->rate,
		      "final", p->final, "from", p->from ? json_string(p->from) : json_null(),
		      "target_seconds", p->target_seconds, "stop_seconds",
		      p->stop_seconds >= 0 ? json_real(p->stop_seconds) : json_null());

	if (j && !p->final) {
		if (p->reason)
			json_object_set_new(j, "reason", json_string(p->reason));
		json_object_set_new(j, "stop", json_boolean(p->stop));
	}
	return j;
}

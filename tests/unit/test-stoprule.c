/* SPDX-License-Identifier: MIT */
/* The stop rule of `vmadm send -I` (vm_incr_should_stop). */
#include "check.h"
#include "migrate/local/incremental.h"

#define MiB (1024ull * 1024)

static const char *why;

static void no_pass_continues(void)
{
	CHECK(!vm_incr_should_stop(NULL, 0, NULL, &why));
	CHECK_HAS(why, "no pass");
}

static void small_first_pass_stops(void)
{
	/* 10 MiB at 100 MiB/s: 100 ms, under the 2 s default */
	struct vm_incr_pass p[] = {{10 * MiB, 0.1}};
	CHECK(vm_incr_should_stop(p, 1, NULL, &why));
	CHECK_HAS(why, "within the downtime target of 2000 ms");
	CHECK_HAS(why, "pass 1 moved 10.0 MiB");
}

static void big_first_pass_continues(void)
{
	/* 1 GiB at 100 MiB/s: 10 s */
	struct vm_incr_pass p[] = {{1024 * MiB, 10.24}};
	CHECK(!vm_incr_should_stop(p, 1, NULL, &why));
	CHECK_HAS(why, "more than the downtime target of 2000 ms");
	CHECK_HAS(why, "another pass");
	CHECK_HAS(why, "1.0 GiB");
}

static void shrinking_deltas_continue_then_stop(void)
{
	/* 100 MiB/s: 1 GiB, 400 MiB (4 s), 150 MiB (1.5 s) */
	struct vm_incr_pass p[] = {{1024 * MiB, 10.24}, {400 * MiB, 4.0}, {150 * MiB, 1.5}};
	CHECK(!vm_incr_should_stop(p, 2, NULL, &why));
	CHECK_HAS(why, "another pass");
	CHECK(vm_incr_should_stop(p, 3, NULL, &why));
	CHECK_HAS(why, "pass 3");
	CHECK_HAS(why, "within the downtime target");
}

static void growing_delta_stops(void)
{
	/* the guest writes faster than the link: 300 MiB, then 320 MiB */
	struct vm_incr_pass p[] = {{1024 * MiB, 10.24}, {300 * MiB, 3.0}, {320 * MiB, 3.2}};
	CHECK(vm_incr_should_stop(p, 3, NULL, &why));
	CHECK_HAS(why, "stopped shrinking");
	CHECK_HAS(why, "pass 3 moved 320.0 MiB, pass 2 300.0 MiB");
	CHECK_HAS(why, "writes as fast as we send");
}

static void equal_delta_stops(void)
{
	struct vm_incr_pass p[] = {{500 * MiB, 5}, {500 * MiB, 5}};
	CHECK(vm_incr_should_stop(p, 2, NULL, &why));
	CHECK_HAS(why, "stopped shrinking");
}

static void max_passes_default(void)
{
	struct vm_incr_pass p[8];
	for (int i = 0; i < 8; i++)
		p[i] = (struct vm_incr_pass){(1000 - i) * MiB, (1000 - i) / 100.0};
	CHECK(!vm_incr_should_stop(p, 7, NULL, &why));
	CHECK(vm_incr_should_stop(p, 8, NULL, &why));
	CHECK_HAS(why, "maximum of 8 passes");
}

static void max_passes_custom(void)
{
	struct vm_incr_rule rule = {.max_passes = 2};
	struct vm_incr_pass p[] = {{1000 * MiB, 10}, {900 * MiB, 9}};
	CHECK(!vm_incr_should_stop(p, 1, &rule, &why));
	CHECK(vm_incr_should_stop(p, 2, &rule, &why));
	CHECK_HAS(why, "maximum of 2 passes");
}

static void downtime_target_custom(void)
{
	/* 150 MiB at 100 MiB/s = 1.5 s: over a 1 s target, under a 2 s one */
	struct vm_incr_rule tight = {.downtime_target_ms = 1000};
	struct vm_incr_rule loose = {.downtime_target_ms = 2000};
	struct vm_incr_pass p[] = {{1024 * MiB, 10.24}, {150 * MiB, 1.5}};
	CHECK(!vm_incr_should_stop(p, 2, &tight, &why));
	CHECK_HAS(why, "downtime target of 1000 ms");
	CHECK(vm_incr_should_stop(p, 2, &loose, &why));
	CHECK_HAS(why, "about 1500 ms");
}

static void fits_beats_not_shrinking(void)
{
	/* a tiny delta that grew a bit still fits: stop, for the right reason */
	struct vm_incr_pass p[] = {{1 * MiB, 0.01}, {2 * MiB, 0.02}};
	CHECK(vm_incr_should_stop(p, 2, NULL, &why));
	CHECK_HAS(why, "within the downtime target");
}

static void empty_delta_stops(void)
{
	struct vm_incr_pass p[] = {{1024 * MiB, 10}, {0, 0.5}};
	CHECK(vm_incr_should_stop(p, 2, NULL, &why));
	CHECK_HAS(why, "0 B");
}

static void instant_pass_stops(void)
{
	struct vm_incr_pass p[] = {{4096, 0}};
	CHECK(vm_incr_should_stop(p, 1, NULL, &why));
	CHECK_HAS(why, "no measurable time");
}

static void rate_from_last_pass(void)
{
	/* the rate is measured over all passes: 1224 MiB in 15 s, 81.6 MiB/s;
	 * 200 MiB then need 2.45 s > 2 s */
	struct vm_incr_pass p[] = {{1024 * MiB, 5}, {200 * MiB, 10}};
	CHECK(!vm_incr_should_stop(p, 2, NULL, &why));
	CHECK_HAS(why, "81.6 MiB/s");
	CHECK_HAS(why, "about 2451 ms");
}

static void why_may_be_null(void)
{
	struct vm_incr_pass p[] = {{10, 1}};
	CHECK(vm_incr_should_stop(p, 1, NULL, NULL));
}

int main(void)
{
	RUN(no_pass_continues);
	RUN(small_first_pass_stops);
	RUN(big_first_pass_continues);
	RUN(shrinking_deltas_continue_then_stop);
	RUN(growing_delta_stops);
	RUN(equal_delta_stops);
	RUN(max_passes_default);
	RUN(max_passes_custom);
	RUN(downtime_target_custom);
	RUN(fits_beats_not_shrinking);
	RUN(empty_delta_stops);
	RUN(instant_pass_stops);
	RUN(rate_from_last_pass);
	RUN(why_may_be_null);
	CHECK_EXIT();
}

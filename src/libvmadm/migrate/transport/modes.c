/* SPDX-License-Identifier: MIT */
/*
 * The table of migration modes: the transport (client.c, server.c) finds a
 * mode here, by the enum or by the name BEGIN carries, and calls it only
 * through its ops. A new mode is a file with its ops and a line below.
 */
#include "migrate/transport/proto.h"
#include "util/macros.h"

static const struct migrate_mode_ops *const modes[] = {
    [MIGRATE_COLD] = &migrate_cold_ops,
    [MIGRATE_INCREMENTAL] = &migrate_incremental_ops,
    [MIGRATE_LIVE] = &migrate_live_ops,
};

const struct migrate_mode_ops *migrate_mode_get(enum migrate_mode mode)
{
	if ((unsigned)mode >= ARRAY_SIZE(modes))
		return NULL;
	return modes[mode];
}

const struct migrate_mode_ops *migrate_mode_by_name(const char *name)
{
	if (!name)
		return modes[MIGRATE_COLD];
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
		if (streq(modes[i]->name, name))
			return modes[i];
	return NULL;
}

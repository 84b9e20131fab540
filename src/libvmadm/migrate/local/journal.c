/* SPDX-License-Identifier: MIT */
#include "migrate/local/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "migrate/migrate.h"
#include "util/fault.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/lock.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"
#include "vm/vm.h"

char *recv_temp_name(const char *uuid, const char *final)
{
	size_t prefix = strlen(VM_POOL_NAME) + 1 + strlen(uuid);

	return strdup_printf(VM_POOL_NAME "/%s.recv%s", uuid, final + prefix);
}

int recv_journal_write(struct vm_node *node, json_t *journal, struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(journal, "uuid"));
	_cleanup_free_ char *path = vm_node_path(node, "recv/%s.json", uuid);
	_cleanup_free_ char *text = json_dumps(journal, JSON_COMPACT | JSON_SORT_KEYS);

	if (!path || !text)
		return vm_error_set(err, ENOMEM, "write the receive journal");
	return fs_write_atomic(path, text, strlen(text), 0600, err);
}

int recv_journal_load(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "recv/%s.json", uuid), *text = NULL;
	json_t *j;
	int r;

	*ret = NULL;
	if (!fs_exists(path))
		return 0;
	r = fs_read_file(path, 16 << 20, &text, NULL, err);
	if (r < 0)
		return r;
	j = json_loads(text, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return vm_error_setx(err, EINVAL, "%s is not a receive journal", path);
	}
	*ret = j;
	return 0;
}

int recv_hold(struct vm_node *node, struct vm_pool *pool, json_t *journal, int64_t secs,
	      struct vm_error *err)
{
	json_t *temps = json_object_get(journal, "temps"),
	       *finals = json_object_get(journal, "finals");
	json_t *done = json_object_get(journal, "done"),
	       *resume = json_object_get(journal, "resume");

	/* Children first, so that a parent's destroy does not take a kept child.
	 * The part of a cut resumable receive stays too (its token in
	 * "resume"). */
	for (size_t i = json_array_size(temps); i-- > 0;) {
		const char *t = json_string_value(json_array_get(temps, i));
		const char *f = json_string_value(json_array_get(finals, i));
		if (jstrv_index(done, f) >= 0 || json_object_get(resume, f) ||
		    vm_pool_kind(pool, t) == VM_DS_NONE)
			continue;
		int r = vm_pool_destroy(pool, t, true, err);
		if (r < 0)
			return r;
	}
	json_object_set_new(journal, "phase", json_string("kept"));
	json_object_set_new(journal, "expires", json_integer(time(NULL) + secs));
	return recv_journal_write(node, journal, err);
}

void recv_journal_remove(struct vm_node *node, const char *uuid)
{
	_cleanup_free_ char *path = vm_node_path(node, "recv/%s.json", uuid);
	unlink(path);
}

int recv_rollback(struct vm_node *node, struct vm_pool *pool, json_t *journal, struct vm_error *err)
{
	json_t *temps = json_object_get(journal, "temps");
	const char *uuid = jstr(journal, "uuid");
	int r = 0;

	for (size_t i = json_array_size(temps); i-- > 0;) {
		const char *t = json_string_value(json_array_get(temps, i));
		/* A native receive killed with us leaves its staging behind. */
		r = vm_pool_receive_cleanup(pool, t, err);
		if (r < 0)
			return vm_error_prefix(err, "undo the receive of VM %s", uuid);
		if (vm_pool_kind(pool, t) == VM_DS_NONE)
			continue;
		r = vm_pool_destroy(pool, t, true, err);
		if (r < 0)
			return vm_error_prefix(err, "undo the receive of VM %s", uuid);
	}
	if (json_is_true(json_object_get(journal, "placeholder"))) {
		json_t *cur = NULL;
		struct vm_error e = {0};
		/* Only our placeholder, never a VM that was there before. */
		if (vm_store_load(node, uuid, &cur, &e) >= 0) {
			const char *tr = jstr(cur, "transition");
			if (tr && streq(tr, "receiving"))
				vm_store_remove(node, uuid, &e);
			json_decref(cur);
		}
	}
	recv_journal_remove(node, uuid);
	return 0;
}

/* Is name a dataset whose parent is also in list (so that renaming the
 * parent moves it)? */
static bool parent_in(json_t *list, const char *name)
{
	const char *slash = strrchr(name, '/');
	json_t *x;
	size_t i;

	if (!slash)
		return false;
	json_array_foreach (list, i, x) {
		const char *p = json_string_value(x);
		if (strlen(p) == (size_t)(slash - name) && strncmp(p, name, slash - name) == 0)
			return true;
	}
	return false;
}

int recv_commit(struct vm_node *node, struct vm_pool *pool, json_t *journal, struct vm_error *err)
{
	json_t *temps = json_object_get(journal, "temps"),
	       *finals = json_object_get(journal, "finals");
	json_t *old = json_object_get(journal, "old_datasets"), *x;
	json_t *record = json_object_get(journal, "record");
	const char *uuid = jstr(journal, "uuid");
	size_t i;
	int r;

	/* The replaced VM's datasets go first (children before parents). A
	 * final name that is still there belongs to it. */
	for (i = json_array_size(old); i-- > 0;) {
		const char *ds = json_string_value(json_array_get(old, i));
		if (vm_pool_kind(pool, ds) == VM_DS_NONE)
			continue;
		r = vm_pool_destroy(pool, ds, true, err);
		if (r < 0)
			return vm_error_prefix(err, "replace VM %s", uuid);
	}
	vm_fault_point("receive-commit-after-destroy");
	json_array_foreach (temps, i, x) {
		const char *t = json_string_value(x);
		const char *f = json_string_value(json_array_get(finals, i));
		if (parent_in(temps, t) || vm_pool_kind(pool, t) == VM_DS_NONE)
			continue;
		if (vm_pool_kind(pool, f) != VM_DS_NONE) {
			r = vm_pool_destroy(pool, f, true, err);
			if (r < 0)
				return r;
		}
		r = vm_pool_rename(pool, t, f, err);
		if (r < 0)
			return vm_error_prefix(err, "install VM %s", uuid);
	}
	/* Snapshots that came with native streams are not the VM's. */
	json_array_foreach (finals, i, x) {
		_cleanup_strv_ char **snaps = NULL;
		struct vm_error e = {0};
		if (vm_pool_list_snapshots(pool, json_string_value(x), &snaps, &e) < 0)
			continue;
		for (char **s = snaps; s && *s; s++)
			if (strncmp(*s, "vmadm-send-", 11) == 0)
				vm_pool_destroy_snapshot(pool, json_string_value(x), *s, &e);
	}
	/* The VM's quota, where the pool enforces one: a quota the pool
	 * refuses (the data is more) leaves the VM whole, and says so. */
	{
		struct vm_error e = {0};
		if (vm_quota_apply(pool, record, &e) < 0)
			vm_warn("VM %s: its quota is not applied: %s", uuid, e.msg);
	}
	r = vm_store_save(node, record, err);
	if (r < 0)
		return r;
	recv_journal_remove(node, uuid);
	return 0;
}

int migrate_owner_lock(struct vm_node *node, const char *uuid, const char *kind,
		       struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "locks/%s.%s.lock", uuid, kind);
	char what[96];

	if (!path)
		return vm_error_set(err, ENOMEM, "lock the migration of VM %s", uuid);
	snprintf(what, sizeof(what), "the %s migration of VM %s", kind, uuid);
	return vm_lock_file(path, 0, what, err);
}

void migrate_owner_unlock(struct vm_node *node, const char *uuid, const char *kind, int fd)
{
	_cleanup_free_ char *path = vm_node_path(node, "locks/%s.%s.lock", uuid, kind);

	if (fd < 0)
		return;
	if (path)
		unlink(path);
	close(fd);
}

int migrate_owner_dead(struct vm_node *node, const char *uuid, const char *kind)
{
	_cleanup_free_ char *path = vm_node_path(node, "locks/%s.%s.lock", uuid, kind);
	_cleanup_close_ int fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;

	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
		return -1;
	return TAKE_FD(fd);
}

/* A network incremental receive whose vmadmd died between or during passes:
 * kept as a failed one is (migrate/modes/incremental.c, hold_for_resume): its
 * last landed pass, until partial_keep_secs from now, the interrupted
 * pass undone. */
static int keep_dead_held(struct vm_node *node, json_t *j, int owner, json_t **notes,
			  struct vm_error *err)
{
	const char *uuid = json_string_value(json_object_get(j, "uuid"));
	int64_t keep = vm_node_conf_int(node, "partial_keep_secs", "VMADM_PARTIAL_KEEP_SECS", 3600);
	struct vm_pool *pool;
	char line[256];
	int r;

	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	r = recv_journal_undo_pass(pool, j, err);
	if (r < 0) {
		/* No use for a resume: gone, so that it blocks nothing. */
		snprintf(line, sizeof(line),
			 "removed the held receive of VM %s (its vmadmd died "
			 "during a pass, which could not be undone: %s)",
			 uuid, err->msg);
		vm_error_clear(err);
		r = recv_rollback(node, pool, j, err);
	} else if (keep <= 0) {
		r = recv_rollback(node, pool, j, err);
		snprintf(
		    line, sizeof(line),
		    "removed the held receive of VM %s (its vmadmd died; partial_keep_secs is 0)",
		    uuid);
	} else {
		json_object_set_new(j, "expires", json_integer(time(NULL) + keep));
		r = recv_journal_write(node, j, err);
		snprintf(line, sizeof(line),
			 "kept the last pass of VM %s for a resume for %lld s (its vmadmd died)",
			 uuid, (long long)keep);
	}
	if (r < 0)
		return r;
	migrate_owner_unlock(node, uuid, "incr", owner);
	if (!*notes)
		*notes = json_array();
	json_array_append_new(*notes, json_string(line));
	return 0;
}

int vm_recv_recover(struct vm_node *node, json_t **notes, struct vm_error *err)
{
	_cleanup_free_ char *dir = vm_node_path(node, "recv");
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return errno == ENOENT ? 0 : vm_error_set(err, errno, "open %s", dir);
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *text = NULL;
		_cleanup_json_ json_t *j = NULL;
		_cleanup_close_ int lock = -1;
		struct vm_error e = {0};
		struct vm_pool *pool;
		char uuid[37], line[256];
		const char *phase;
		int r;

		if (strlen(de->d_name) != 41 || !streq(de->d_name + 36, ".json"))
			continue;
		memcpy(uuid, de->d_name, 36);
		uuid[36] = '\0';
		if (!vm_uuid_valid(uuid))
			continue;
		lock = vm_store_lock(node, uuid, 0, &e);
		if (lock < 0)
			continue; /* a receive in progress */
		path = vm_node_path(node, "recv/%s", de->d_name);
		if (fs_read_file(path, 16 << 20, &text, NULL, &e) < 0)
			continue;
		j = json_loads(text, 0, NULL);
		if (!json_is_object(j)) {
			unlink(path);
			continue;
		}
		phase = jstr(j, "phase");
		/* A receive whose placeholder record is gone (vmadm delete of
		 * the "receiving" VM) has nothing left to deliver to: its
		 * datasets go now, whatever the phase or expiry. */
		bool orphan =
		    json_is_true(json_object_get(j, "placeholder")) && !vm_store_exists(node, uuid);
		/* A held receive without an expiry whose vmadmd died (its
		 * owner lock left unlocked) is kept as after a failure, with
		 * an expiry; a live one waits on purpose (below). */
		if (!orphan && phase && streq(phase, "held") && !json_object_get(j, "expires")) {
			int owner = migrate_owner_dead(node, uuid, "incr");

			if (owner >= 0) {
				r = keep_dead_held(node, j, owner, notes, err);
				if (r < 0) {
					close(owner);
					return r;
				}
				continue;
			}
		}
		/* An incremental receive between passes waits on purpose
		 * (migrate/local/incremental.h): only vm_incr_finish/abort end it,
		 * or, once a failed send left it for a re-run with an expiry
		 * (migrate/modes/incremental.c), that expiry. */
		if (!orphan && phase && streq(phase, "held") &&
		    (!json_object_get(j, "expires") ||
		     json_integer_value(json_object_get(j, "expires")) > time(NULL)))
			continue;
		/* A failed network receive's complete datasets, kept for a
		 * resume of the same send (migrate/transport/session.c) until they expire. */
		if (!orphan && phase && streq(phase, "kept") &&
		    json_integer_value(json_object_get(j, "expires")) > time(NULL))
			continue;
		r = vm_node_pool(node, &pool, err);
		if (r < 0)
			return r;
		if (phase && streq(phase, "committing")) {
			r = recv_commit(node, pool, j, err);
			snprintf(line, sizeof(line), "finished the interrupted receive of VM %s",
				 uuid);
		} else {
			bool held = phase && (streq(phase, "kept") || streq(phase, "held"));
			r = recv_rollback(node, pool, j, err);
			snprintf(line, sizeof(line), "removed the partial receive of VM %s (%s)",
				 uuid,
				 orphan ? "its VM was deleted"
				 : held ? "kept for a resume, expired"
					: "interrupted receive");
		}
		if (r < 0)
			return r;
		if (!*notes)
			*notes = json_array();
		json_array_append_new(*notes, json_string(line));
	}
	return 0;
}

int recv_journal_reset(struct vm_pool *pool, json_t *journal, const char *base, const char *partial,
		       struct vm_error *err)
{
	json_t *temps = json_object_get(journal, "temps");
	json_t *x;
	size_t i;
	int r;

	/* What a native receive of the pass left in staging, if it died. */
	json_array_foreach (temps, i, x) {
		r = vm_pool_receive_cleanup(pool, json_string_value(x), err);
		if (r < 0)
			return r;
	}
	json_array_foreach (temps, i, x) {
		const char *t = json_string_value(x);
		struct vm_error e = {0};

		if (partial && vm_pool_has_snapshot(pool, t, partial))
			vm_pool_destroy_snapshot(pool, t, partial, &e);
		if (vm_pool_kind(pool, t) == VM_DS_NONE || !vm_pool_has_snapshot(pool, t, base))
			return vm_error_setx(err, ENOENT,
					     "reset %s to @%s: the dataset or its snapshot is gone",
					     t, base);
		r = vm_pool_rollback(pool, t, base, err);
		if (r < 0)
			return vm_error_prefix(err, "reset %s to @%s", t, base);
	}
	return 0;
}

int recv_journal_undo_pass(struct vm_pool *pool, json_t *journal, struct vm_error *err)
{
	const char *applying = jstr(journal, "applying");
	json_t *x;
	size_t i;
	int r;

	if (applying) {
		r = recv_journal_reset(pool, journal,
				       jstr(journal, "snapshot") ? jstr(journal, "snapshot") : "",
				       applying, err);
		if (r < 0)
			return r;
		json_object_del(journal, "applying");
		return 0;
	}
	json_array_foreach (json_object_get(journal, "temps"), i, x) {
		r = vm_pool_receive_cleanup(pool, json_string_value(x), err);
		if (r < 0)
			return r;
	}
	return 0;
}

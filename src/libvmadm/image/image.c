/* SPDX-License-Identifier: MIT */
#include "image.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/pool.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/lock.h"
#include "util/macros.h"
#include "util/uuid.h"
#include "vm/store.h"

#define MANIFEST_MAX (1024 * 1024)
#define COPY_CHUNK (1024 * 1024)

int vm_image_manifest_check(json_t *m, struct vm_error *err)
{
	static const char *const strings[] = { "name", "version", "os" };
	json_t *files, *file, *size;
	const char *type, *sha1, *comp;

	if (!json_is_object(m))
		return vm_error_setx(err, EINVAL, "manifest: not a JSON object");
	if (!vm_uuid_valid(jstr(m, "uuid")))
		return vm_error_setx(err, EINVAL, "manifest: 'uuid' is missing or not a UUID");
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		if (!jstr(m, strings[i]) || !*jstr(m, strings[i]))
			return vm_error_setx(err, EINVAL, "manifest: '%s' is missing", strings[i]);
	type = jstr(m, "type");
	if (!type || (!streq(type, "zvol") && !streq(type, "zone-dataset")))
		return vm_error_setx(err, EINVAL,
				     "manifest: 'type' must be \"zvol\" or \"zone-dataset\"");
	files = json_object_get(m, "files");
	if (!json_is_array(files) || json_array_size(files) != 1)
		return vm_error_setx(err, EINVAL, "manifest: 'files' must list exactly one file");
	file = json_array_get(files, 0);
	sha1 = jstr(file, "sha1");
	if (!sha1 || strlen(sha1) != 40 || strspn(sha1, "0123456789abcdefABCDEF") != 40)
		return vm_error_setx(err, EINVAL, "manifest: 'files[0].sha1' is not a SHA-1");
	size = json_object_get(file, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return vm_error_setx(err, EINVAL, "manifest: 'files[0].size' is not a size");
	comp = jstr(file, "compression");
	if (comp && !streq(comp, "none") && !streq(comp, "gzip") && !streq(comp, "bzip2") &&
	    !streq(comp, "xz"))
		return vm_error_setx(err, EINVAL, "manifest: 'files[0].compression' \"%s\" unknown",
				     comp);
	return 0;
}

int vm_file_sha1(const char *path, char out[41], uint64_t *ret_size, struct vm_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ unsigned char *buf = malloc(COPY_CHUNK);
	EVP_MD_CTX *ctx;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	uint64_t total = 0;
	ssize_t n;

	if (fd < 0)
		return vm_error_set(err, errno, "open %s", path);
	if (!buf || !(ctx = EVP_MD_CTX_new()))
		return vm_error_set(err, ENOMEM, "hash %s", path);
	EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
	while ((n = read(fd, buf, COPY_CHUNK)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			EVP_MD_CTX_free(ctx);
			return vm_error_set(err, errno, "read %s", path);
		}
		EVP_DigestUpdate(ctx, buf, n);
		total += n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < mdlen && i < 20; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	out[40] = '\0';
	if (ret_size)
		*ret_size = total;
	return 0;
}

static bool all_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Unpack the single data stream of a (maybe compressed) raw image into the
 * volume file, leaving holes where the image has zeros. */
static int fill_volume(const char *file, const char *vol, uint64_t *ret_size,
		       struct vm_error *err)
{
	struct archive *a = archive_read_new();
	struct archive_entry *entry;
	_cleanup_close_ int out = -1;
	_cleanup_free_ unsigned char *buf = malloc(COPY_CHUNK);
	uint64_t off = 0;
	int r = 0;

	archive_read_support_filter_all(a);
	archive_read_support_format_raw(a);
	if (!buf || archive_read_open_filename(a, file, COPY_CHUNK) != ARCHIVE_OK ||
	    archive_read_next_header(a, &entry) != ARCHIVE_OK) {
		r = vm_error_setx(err, EIO, "read image %s: %s", file, archive_error_string(a));
		goto out;
	}
	out = open(vol, O_WRONLY | O_CLOEXEC);
	if (out < 0) {
		r = vm_error_set(err, errno, "open %s", vol);
		goto out;
	}
	for (;;) {
		ssize_t n = archive_read_data(a, buf, COPY_CHUNK);
		if (n < 0) {
			r = vm_error_setx(err, EIO, "read image %s: %s", file,
					  archive_error_string(a));
			goto out;
		}
		if (n == 0)
			break;
		if (!all_zero(buf, n) && pwrite(out, buf, n, off) != n) {
			r = vm_error_set(err, errno ? errno : EIO, "write %s", vol);
			goto out;
		}
		off += n;
	}
	if (ftruncate(out, off) < 0 || fsync(out) < 0)
		r = vm_error_set(err, errno, "write %s", vol);
	*ret_size = off;
out:
	archive_read_free(a);
	return r;
}

/* Size of the uncompressed raw image: the volume must be that large. */
static int raw_size(const char *file, uint64_t *ret, struct vm_error *err)
{
	struct archive *a = archive_read_new();
	struct archive_entry *entry;
	_cleanup_free_ unsigned char *buf = malloc(COPY_CHUNK);
	uint64_t total = 0;
	int r = 0;

	archive_read_support_filter_all(a);
	archive_read_support_format_raw(a);
	if (!buf || archive_read_open_filename(a, file, COPY_CHUNK) != ARCHIVE_OK ||
	    archive_read_next_header(a, &entry) != ARCHIVE_OK) {
		r = vm_error_setx(err, EIO, "read image %s: %s", file, archive_error_string(a));
		goto out;
	}
	for (;;) {
		ssize_t n = archive_read_data(a, buf, COPY_CHUNK);
		if (n < 0) {
			r = vm_error_setx(err, EIO, "read image %s: %s", file,
					  archive_error_string(a));
			goto out;
		}
		if (n == 0)
			break;
		total += n;
	}
	*ret = total;
out:
	archive_read_free(a);
	return r;
}

/* Is an archive entry name absolute, or has it a ".." component? */
static bool escapes_root(const char *name)
{
	size_t n = strlen(name);

	if (name[0] == '/')
		return true;
	for (const char *p = name; (p = strstr(p, "..")); p += 2)
		if ((p == name || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return true;
	return n == 0;
}

/* Unpack a tar archive of a root filesystem into dir, refusing absolute
 * paths, ".." and writes through symlinks. */
static int unpack_tree(const char *file, const char *dir, struct vm_error *err)
{
	struct archive *a = archive_read_new(), *w = archive_write_disk_new();
	struct archive_entry *entry;
	/* No ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS: every entry is renamed
	 * to dir/NAME, an absolute path; names are checked before that. */
	int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_TIME |
		    ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
		    ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SPARSE;
	int r = 0, ar;

	archive_read_support_filter_all(a);
	archive_read_support_format_all(a);
	archive_write_disk_set_options(w, flags);
	archive_write_disk_set_standard_lookup(w);
	if (archive_read_open_filename(a, file, COPY_CHUNK) != ARCHIVE_OK) {
		r = vm_error_setx(err, EIO, "read image %s: %s", file, archive_error_string(a));
		goto out;
	}
	while ((ar = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(entry);
		const char *hl = archive_entry_hardlink(entry);
		_cleanup_free_ char *path = NULL, *hlpath = NULL;
		const void *blk;
		size_t sz;
		la_int64_t off;

		/* The SECURE flags would see our rewritten absolute names, so
		 * absolute names and ".." are refused here, on the archive's. */
		if (!name || escapes_root(name) || (hl && escapes_root(hl))) {
			r = vm_error_setx(err, EINVAL, "image %s: entry \"%s\" escapes the root",
					  file, name ? name : "(no name)");
			goto out;
		}
		path = strdup_printf("%s/%s", dir, name);
		hlpath = hl ? strdup_printf("%s/%s", dir, hl) : NULL;
		if (!path || (hl && !hlpath)) {
			r = vm_error_set(err, ENOMEM, "image %s", file);
			goto out;
		}
		archive_entry_set_pathname(entry, path);
		if (hlpath)
			archive_entry_set_hardlink(entry, hlpath);
		if (archive_write_header(w, entry) < ARCHIVE_WARN) {
			r = vm_error_setx(err, EIO, "image %s: unpack %s: %s", file,
					  path + strlen(dir) + 1, archive_error_string(w));
			goto out;
		}
		while ((ar = archive_read_data_block(a, &blk, &sz, &off)) == ARCHIVE_OK)
			if (archive_write_data_block(w, blk, sz, off) < ARCHIVE_WARN) {
				r = vm_error_setx(err, EIO, "image %s: write %s: %s", file, path,
						  archive_error_string(w));
				goto out;
			}
		if (ar != ARCHIVE_EOF) {
			r = vm_error_setx(err, EIO, "image %s: %s", file, archive_error_string(a));
			goto out;
		}
		if (archive_write_finish_entry(w) < ARCHIVE_WARN) {
			r = vm_error_setx(err, EIO, "image %s: %s", file, archive_error_string(w));
			goto out;
		}
	}
	if (ar != ARCHIVE_EOF)
		r = vm_error_setx(err, EIO, "image %s: %s", file, archive_error_string(a));
out:
	archive_read_free(a);
	archive_write_free(w);
	return r;
}

static int load_manifest(const char *path, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *text = NULL;
	json_error_t jerr;
	int r = fs_read_file(path, MANIFEST_MAX, &text, NULL, err);

	if (r < 0)
		return r;
	*ret = json_loads(text, 0, &jerr);
	if (!*ret)
		return vm_error_setx(err, EINVAL, "%s: invalid JSON at line %d: %s", path, jerr.line,
				     jerr.text);
	return 0;
}

int vm_image_install(struct vm_node *node, const char *manifest_path, const char *file_path,
		     json_t **ret_manifest, struct vm_error *err)
{
	_cleanup_json_ json_t *m = NULL;
	_cleanup_free_ char *ds = NULL, *mpath = NULL, *lockpath = NULL, *text = NULL;
	_cleanup_close_ int lock = -1;
	struct vm_pool *pool;
	json_t *file;
	const char *uuid, *want;
	char sha1[41];
	uint64_t size;
	int r;

	r = load_manifest(manifest_path, &m, err);
	if (r < 0)
		return r;
	r = vm_image_manifest_check(m, err);
	if (r < 0)
		return vm_error_prefix(err, "%s", manifest_path);
	uuid = jstr(m, "uuid");
	file = json_array_get(json_object_get(m, "files"), 0);

	lockpath = vm_node_path(node, "locks/image-%s.lock", uuid);
	lock = vm_lock_file(lockpath, 60, "image", err);
	if (lock < 0)
		return lock;
	mpath = vm_node_path(node, "images/%s.json", uuid);
	if (fs_exists(mpath))
		return vm_error_setx(err, EEXIST, "image %s is already installed", uuid);

	/* Verify the file before making anything. */
	r = vm_file_sha1(file_path, sha1, &size, err);
	if (r < 0)
		return r;
	if (size != (uint64_t)json_integer_value(json_object_get(file, "size")))
		return vm_error_setx(err, EINVAL,
				     "%s: size mismatch: the manifest says %" JSON_INTEGER_FORMAT
				     " bytes, the file has %llu",
				     file_path, json_integer_value(json_object_get(file, "size")),
				     (unsigned long long)size);
	want = jstr(file, "sha1");
	if (strcasecmp(want, sha1) != 0)
		return vm_error_setx(err, EINVAL,
				     "%s: sha1 mismatch: the manifest says %s, the file has %s",
				     file_path, want, sha1);

	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	ds = strdup_printf(VM_POOL_NAME "/%s", uuid);
	if (vm_pool_kind(pool, ds) != VM_DS_NONE)
		return vm_error_setx(err, EEXIST, "image %s: dataset %s already exists", uuid, ds);

	if (streq(jstr(m, "type"), "zvol")) {
		_cleanup_free_ char *vol = NULL;
		uint64_t volsize = 0, written = 0;
		r = raw_size(file_path, &volsize, err);
		if (r < 0)
			return r;
		r = vm_pool_create_volume(pool, ds, volsize, err);
		if (r < 0)
			return r;
		vol = vm_pool_volume_path(pool, ds);
		r = fill_volume(file_path, vol, &written, err);
		if (r >= 0)
			json_object_set_new(m, "image_size",
					    json_integer((written + (1 << 20) - 1) >> 20));
	} else {
		_cleanup_free_ char *dspath = vm_pool_dataset_path(pool, ds), *root = NULL;
		r = vm_pool_create_filesystem(pool, ds, err);
		if (r < 0)
			return r;
		root = strdup_printf("%s/root", dspath);
		r = fs_mkdir_p(root, 0755, err);
		if (r >= 0)
			r = unpack_tree(file_path, root, err);
	}
	if (r >= 0)
		r = vm_pool_snapshot(pool, ds, "final", err);
	if (r >= 0) {
		json_object_set_new(m, "state", json_string("active"));
		text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
		r = fs_write_atomic(mpath, text, strlen(text), 0644, err);
	}
	if (r < 0) {
		struct vm_error cerr = { 0 };
		vm_pool_destroy(pool, ds, true, &cerr);
		return vm_error_prefix(err, "install image %s", uuid);
	}
	if (ret_manifest)
		*ret_manifest = TAKE_PTR(m);
	return 0;
}

int vm_image_get(struct vm_node *node, const char *uuid, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *path = NULL;

	if (!vm_uuid_valid(uuid))
		return vm_error_setx(err, EINVAL, "invalid image UUID \"%s\"", uuid);
	path = vm_node_path(node, "images/%s.json", uuid);
	if (!fs_exists(path))
		return vm_error_setx(err, ENOENT, "image %s is not installed", uuid);
	return load_manifest(path, ret, err);
}

static int manifest_cmp(const void *a, const void *b)
{
	json_t *ma = *(json_t *const *)a, *mb = *(json_t *const *)b;
	int c = strcmp(jstr(ma, "name"), jstr(mb, "name"));

	if (c == 0)
		c = strverscmp(jstr(ma, "version"), jstr(mb, "version"));
	return c ? c : strcmp(jstr(ma, "uuid"), jstr(mb, "uuid"));
}

/* Sort by name, then version (1.10 after 1.9), then uuid. The manifests
 * were checked at install, so these strings exist. */
static void sort_manifests(json_t *list)
{
	size_t n = json_array_size(list);
	_cleanup_free_ json_t **v = n ? calloc(n, sizeof(*v)) : NULL;

	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(list, i));
	qsort(v, n, sizeof(*v), manifest_cmp);
	json_array_clear(list);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, v[i]);
}

int vm_image_list(struct vm_node *node, json_t **ret, struct vm_error *err)
{
	_cleanup_free_ char *dir = vm_node_path(node, "images");
	_cleanup_closedir_ DIR *d = opendir(dir);
	_cleanup_json_ json_t *list = json_array();
	struct dirent *de;

	if (!d) {
		if (errno != ENOENT)
			return vm_error_set(err, errno, "list images in %s", dir);
		*ret = TAKE_PTR(list);
		return 0;
	}
	while ((de = readdir(d))) {
		char uuid[37];
		json_t *m;
		if (strlen(de->d_name) != 41 || !streq(de->d_name + 36, ".json"))
			continue;
		memcpy(uuid, de->d_name, 36);
		uuid[36] = '\0';
		if (vm_image_get(node, uuid, &m, err) < 0)
			return -err->code;
		json_array_append_new(list, m);
	}
	sort_manifests(list);
	*ret = TAKE_PTR(list);
	return 0;
}

int vm_image_delete(struct vm_node *node, const char *uuid, struct vm_error *err)
{
	_cleanup_json_ json_t *m = NULL, *vms = NULL;
	_cleanup_free_ char *ds = NULL, *mpath = NULL;
	struct vm_pool *pool;
	json_t *vm, *disk;
	size_t i, j;
	int r;

	r = vm_image_get(node, uuid, &m, err);
	if (r < 0)
		return r;
	r = vm_store_list(node, &vms, err);
	if (r < 0)
		return r;
	json_array_foreach(vms, i, vm) {
		const char *vu = jstr(vm, "uuid");
		if (jstr(vm, "image_uuid") && streq(jstr(vm, "image_uuid"), uuid))
			return vm_error_setx(err, EBUSY, "image %s is in use by VM %s", uuid, vu);
		json_array_foreach(json_object_get(vm, "disks"), j, disk)
			if (jstr(disk, "image_uuid") && streq(jstr(disk, "image_uuid"), uuid))
				return vm_error_setx(err, EBUSY, "image %s is in use by VM %s",
						     uuid, vu);
	}
	r = vm_node_pool(node, &pool, err);
	if (r < 0)
		return r;
	ds = strdup_printf(VM_POOL_NAME "/%s", uuid);
	if (vm_pool_kind(pool, ds) != VM_DS_NONE) {
		r = vm_pool_destroy(pool, ds, true, err);
		if (r < 0)
			return r;
	}
	mpath = vm_node_path(node, "images/%s.json", uuid);
	if (unlink(mpath) < 0 && errno != ENOENT)
		return vm_error_set(err, errno, "remove %s", mpath);
	return 0;
}

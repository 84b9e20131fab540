/* SPDX-License-Identifier: MIT */
#include "node.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/macros.h"

#define CONF_MAX (1024 * 1024)

static const char *const node_dirs[] = { "vms", "locks", "run", "log", "images", "recv" };

int vm_node_open(struct vm_node **ret, struct vm_error *err)
{
	const char *env = getenv("VMADM_ROOT");
	_cleanup_free_ char *conf_path = NULL, *text = NULL;
	char real[PATH_MAX];
	struct vm_node *node;
	json_error_t jerr;
	int r;

	if (!env || !*env)
		env = VM_DEFAULT_ROOT;
	if (env[0] != '/')
		return vm_error_setx(err, EINVAL, "VMADM_ROOT %s: not an absolute path", env);
	r = fs_mkdir_p(env, 0755, err);
	if (r < 0)
		return vm_error_prefix(err, "node root");
	if (!realpath(env, real))
		return vm_error_set(err, errno, "node root %s", env);

	node = calloc(1, sizeof(*node));
	if (!node || !(node->root = strdup(real))) {
		free(node);
		return vm_error_set(err, ENOMEM, "node root");
	}
	for (size_t i = 0; i < ARRAY_SIZE(node_dirs); i++) {
		_cleanup_free_ char *d = vm_node_path(node, "%s", node_dirs[i]);
		r = fs_mkdir_p(d, 0700, err);
		if (r < 0) {
			vm_node_free(node);
			return r;
		}
	}

	conf_path = vm_node_path(node, "vmadm.conf");
	r = fs_read_file(conf_path, CONF_MAX, &text, NULL, err);
	if (r == -ENOENT) {
		vm_error_clear(err);
		node->conf = json_object();
	} else if (r < 0) {
		vm_node_free(node);
		return r;
	} else {
		node->conf = json_loads(text, 0, &jerr);
		if (!node->conf || !json_is_object(node->conf)) {
			vm_node_free(node);
			return vm_error_setx(err, EINVAL, "%s: line %d: %s", conf_path, jerr.line,
					     node->conf ? "not a JSON object" : jerr.text);
		}
	}
	*ret = node;
	return 0;
}

void vm_node_free(struct vm_node *node)
{
	if (!node)
		return;
	vm_pool_free(node->pool);
	json_decref(node->conf);
	free(node->root);
	free(node);
}

int vm_node_pool(struct vm_node *node, struct vm_pool **ret, struct vm_error *err)
{
	int r;

	if (!node->pool) {
		r = vm_pool_open(node->root, node->conf, &node->pool, err);
		if (r < 0)
			return r;
	}
	*ret = node->pool;
	return 0;
}

char *vm_node_path(struct vm_node *node, const char *fmt, ...)
{
	_cleanup_free_ char *rel = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		rel = NULL;
	va_end(ap);
	if (!rel)
		return NULL;
	return strdup_printf("%s/%s", node->root, rel);
}

const char *vm_node_conf_str(struct vm_node *node, const char *key, const char *env,
			     const char *def)
{
	const char *v = env ? getenv(env) : NULL;
	json_t *j;

	if (v && *v)
		return v;
	j = json_object_get(node->conf, key);
	if (json_is_string(j))
		return json_string_value(j);
	return def;
}

int64_t vm_node_conf_int(struct vm_node *node, const char *key, const char *env, int64_t def)
{
	const char *v = env ? getenv(env) : NULL;
	json_t *j;

	if (v && *v) {
		char *end;
		long long n = strtoll(v, &end, 10);
		if (*end == '\0')
			return n;
	}
	j = json_object_get(node->conf, key);
	if (json_is_integer(j))
		return json_integer_value(j);
	return def;
}

int vm_node_conf_set(struct vm_node *node, const char *key, json_t *value,
		     struct vm_error *err)
{
	_cleanup_free_ char *path = vm_node_path(node, "vmadm.conf"), *text = NULL;

	json_object_set(node->conf, key, value);
	text = json_dumps(node->conf, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!path || !text)
		return vm_error_set(err, ENOMEM, "write vmadm.conf");
	strcat(text, "");
	return fs_write_atomic(path, text, strlen(text), 0644, err);
}

/* 1..max characters of letters, digits, '_', '.' and '-', not "." or "..". */
static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || streq(s, ".") || streq(s, ".."))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
			return false;
	return true;
}

int vm_node_nic_tags(struct vm_node *node, json_t **ret, struct vm_error *err)
{
	json_t *tags = json_object_get(node->conf, "nic_tags"), *v;
	const char *k;

	*ret = NULL;
	if (!tags || json_is_null(tags))
		return 0;
	if (!json_is_object(tags))
		return vm_error_setx(err, EINVAL,
				     "vmadm.conf: \"nic_tags\" must be an object of TAG: BRIDGE");
	json_object_foreach (tags, k, v) {
		/* The bridge goes into QEMU's -netdev bridge,br=NAME: no comma,
		 * nothing but an interface name. */
		if (!name_ok(k, 31))
			return vm_error_setx(
			    err, EINVAL,
			    "vmadm.conf: nic_tags: \"%s\" is not a nic tag (1 to 31 "
			    "letters, digits, '_', '.' or '-')",
			    k);
		if (!json_is_string(v) || !name_ok(json_string_value(v), IFNAMSIZ - 1))
			return vm_error_setx(err, EINVAL,
					     "vmadm.conf: nic_tags.%s: not a bridge name (1 to %d "
					     "letters, digits, '_', '.' or '-')",
					     k, IFNAMSIZ - 1);
	}
	*ret = tags;
	return 0;
}

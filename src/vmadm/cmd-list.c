/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macros.h"
#include "vm/list.h"
#include "vm/vm.h"
#include "vmadm.h"

#define DEFAULT_FIELDS "uuid,type,ram,state,alias"

/* Matching VMs, sorted. */
static int select_vms(struct vm_node *node, char **filters_argv, int n, const char *sort,
		      json_t **ret, struct vm_error *err)
{
	_cleanup_json_ json_t *all = NULL, *filters = NULL, *out = json_array();
	json_t *vm;
	size_t i;
	int r;

	r = vm_filters_parse(filters_argv, n, &filters, err);
	if (r < 0)
		return r;
	r = vm_get_all(node, &all, err);
	if (r < 0)
		return r;
	json_array_foreach(all, i, vm) {
		json_object_del(vm, "transition");
		if (vm_filters_match(vm, filters))
			json_array_append(out, vm);
	}
	if (sort) {
		r = vm_sort(out, sort, err);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static char **split_fields(const char *s)
{
	_cleanup_free_ char *copy = strdup(s);
	char **v = calloc(strlen(s) + 2, sizeof(char *)), *save = NULL;
	size_t n = 0;

	if (!v || !copy) {
		free(v);
		return NULL;
	}
	for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save))
		v[n++] = strdup(f);
	return v;
}

/* vmadm list [-H] [-p] [-o FIELDS] [-s FIELDS] [FIELD=VALUE ...] */
int cmd_list(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vms = NULL;
	_cleanup_strv_ char **fields = NULL;
	const char *fields_arg = DEFAULT_FIELDS, *sort = NULL;
	bool header = true, parsable = false;
	size_t nf, *width, i;
	json_t *vm;
	int c, r;

	while ((c = getopt(argc, argv, "+Hpo:s:")) != -1) {
		switch (c) {
		case 'H':
			header = false;
			break;
		case 'p':
			parsable = true;
			header = false;
			break;
		case 'o':
			fields_arg = optarg;
			break;
		case 's':
			sort = optarg;
			break;
		default:
			return vmadm_usage_error("list", err, "unknown option");
		}
	}
	fields = split_fields(fields_arg);
	if (!fields || !fields[0])
		return vmadm_usage_error("list", err, "-o needs at least one field");
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = select_vms(node, argv + optind, argc - optind, sort, &vms, err);
	if (r < 0)
		return r;

	for (nf = 0; fields[nf]; nf++)
		;
	width = calloc(nf, sizeof(*width));
	for (i = 0; i < nf; i++)
		width[i] = strlen(fields[i]);
	json_array_foreach(vms, i, vm)
		for (size_t f = 0; f < nf; f++) {
			_cleanup_free_ char *s = vm_field_string(vm, fields[f]);
			if (strlen(s) > width[f])
				width[f] = strlen(s);
		}
	if (header) {
		for (size_t f = 0; f < nf; f++) {
			for (char *p = fields[f]; *p; p++)
				putchar(toupper((unsigned char)*p));
			if (f + 1 < nf)
				printf("%*s", (int)(width[f] - strlen(fields[f]) + 2), "");
		}
		putchar('\n');
	}
	json_array_foreach(vms, i, vm) {
		for (size_t f = 0; f < nf; f++) {
			_cleanup_free_ char *s = vm_field_string(vm, fields[f]);
			if (parsable)
				printf("%s%s", s, f + 1 < nf ? ":" : "");
			else if (f + 1 < nf)
				printf("%-*s  ", (int)width[f], s);
			else
				printf("%s", s);
		}
		putchar('\n');
	}
	free(width);
	return 0;
}

/* vmadm lookup [-j] [-1] [-o FIELDS] [FIELD=VALUE ...] */
int cmd_lookup(int argc, char **argv, struct vm_error *err)
{
	_cleanup_node_ struct vm_node *node = NULL;
	_cleanup_json_ json_t *vms = NULL;
	_cleanup_strv_ char **fields = NULL;
	bool as_json = false, one = false;
	json_t *vm;
	size_t i;
	int c, r;

	while ((c = getopt(argc, argv, "+j1o:")) != -1) {
		switch (c) {
		case 'j':
			as_json = true;
			break;
		case '1':
			one = true;
			break;
		case 'o':
			fields = split_fields(optarg);
			break;
		default:
			return vmadm_usage_error("lookup", err, "unknown option");
		}
	}
	r = vmadm_open_node(&node, err);
	if (r < 0)
		return r;
	r = select_vms(node, argv + optind, argc - optind, NULL, &vms, err);
	if (r < 0)
		return r;
	if (one && json_array_size(vms) != 1)
		return vm_error_setx(err, json_array_size(vms) ? E2BIG : ENOENT,
				     "-1: %zu VMs match, expected exactly one",
				     json_array_size(vms));
	if (as_json) {
		if (fields) {
			_cleanup_json_ json_t *out = json_array();
			json_array_foreach(vms, i, vm) {
				json_t *o = json_object();
				for (char **f = fields; *f; f++) {
					_cleanup_json_ json_t *scratch = NULL;
					json_t *v = vm_field(vm, *f, &scratch);
					if (v)
						json_object_set(o, *f, v);
				}
				json_array_append_new(out, o);
			}
			vmadm_print_json(one ? json_array_get(out, 0) : out);
		} else
			vmadm_print_json(one ? json_array_get(vms, 0) : vms);
		return 0;
	}
	json_array_foreach(vms, i, vm)
		printf("%s\n", json_string_value(json_object_get(vm, "uuid")));
	return 0;
}

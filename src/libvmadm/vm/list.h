/* SPDX-License-Identifier: MIT */
/*
 * Selecting and ordering VMs for `vmadm list` and `vmadm lookup`:
 * filters FIELD=VALUE (exact) and FIELD=~REGEX, fields given as dotted paths
 * into the record ("tags.role", "nics.0.ip"), sort keys with an optional
 * leading '-' for descending order.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "util/error.h"

/* The value of a dotted field in vm (borrowed), NULL if absent. A few
 * SmartOS list pseudo-fields are computed: "type" (OS or KVM), "ram" of a
 * joyent VM (its max_physical_memory). Pass a json_t* holder that keeps
 * computed values alive: *scratch is replaced and must be json_decref'ed. */
json_t *vm_field(json_t *vm, const char *field, json_t **scratch);

/* The field as a string for a table cell ("-" when absent), malloc'ed. */
char *vm_field_string(json_t *vm, const char *field);

/* Parse FIELD=VALUE / FIELD=~REGEX arguments into a JSON array of filters. */
int vm_filters_parse(char **args, int n, json_t **ret, struct vm_error *err);

/* Does vm match every filter? */
bool vm_filters_match(json_t *vm, json_t *filters);

/* Sort an array of VMs in place by the comma-separated keys. Numbers sort
 * numerically, everything else as strings. */
int vm_sort(json_t *vms, const char *keys, struct vm_error *err);

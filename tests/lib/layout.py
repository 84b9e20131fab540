#!/usr/bin/env python3
"""The shape rules of the tree (docs/architecture.md), as lines of findings.

Usage: layout.py RULE ROOT [ARG]
  cycles ROOT          include cycles between two modules (x.c with its x.h)
                       of one folder under ROOT; a header without a .c (a
                       private header that extends another) is no module
  long-functions ROOT MAX   functions of ROOT's .c files over MAX lines
  long-files ROOT MAX       files under ROOT over MAX lines
  doc-names DOC ROOT        file paths DOC names that do not exist under ROOT
Prints one finding a line; nothing when the rule holds.
"""
import os
import re
import sys


def sources(root, exts=('.c', '.h')):
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(exts):
                yield os.path.join(d, f)


def cycles(root):
    mods = {os.path.relpath(p, root)[:-2] for p in sources(root, ('.c',))}
    edges = {}
    for p in sources(root):
        mod = os.path.relpath(p, root)[:-2]
        if mod not in mods:
            continue
        for inc in re.findall(r'#include "([^"]+)\.h"', open(p).read()):
            if not os.path.exists(os.path.join(root, inc + '.h')):
                inc = os.path.relpath(os.path.join(os.path.dirname(p), inc), root)
            if inc != mod and inc in mods and os.path.dirname(inc) == os.path.dirname(mod):
                edges.setdefault(mod, set()).add(inc)
    found = set()

    def walk(n, path):
        for m in sorted(edges.get(n, ())):
            if m in path:
                c = path[path.index(m):]
                i = c.index(min(c))  # one way to write a cycle
                found.add(tuple(c[i:] + c[:i]))
            elif len(path) < 32:
                walk(m, path + [m])
    for n in sorted(edges):
        walk(n, [n])
    seen = set()
    for c in sorted(found, key=lambda c: (len(c), c)):
        key = frozenset(c)
        if key not in seen:
            seen.add(key)
            print('include cycle: ' + ' -> '.join(c + (c[0],)))


def long_functions(root, most):
    for p in sources(root, ('.c',)):
        lines = open(p).read().split('\n')
        start = name = None
        for i, l in enumerate(lines):
            m = re.match(r'^[A-Za-z_][^;]*?\b(\w+)\(', l)
            if start is None and m and not l.startswith(('typedef', 'struct', 'enum', '#')) \
                    and not l.rstrip().endswith(';'):
                start, name = i, m.group(1)
            elif start is not None and l.endswith(';') and not l.startswith(('\t', ' ')) \
                    and '{' not in ''.join(lines[start:i + 1]):
                start = None  # a prototype over several lines
            elif start is not None and l == '}':
                if i - start + 1 > most:
                    print('%s: %s is %d lines' % (os.path.relpath(p, root), name, i - start + 1))
                start = None


def long_files(root, most):
    for p in sources(root):
        n = open(p).read().count('\n')
        if n > most:
            print('%s is %d lines' % (os.path.relpath(p, root), n))


def doc_names(doc, root):
    """A name is found when some file of the tree (builds and .git left out)
    ends with it as a path: `pool.c`, `storage/pool.c`, `src/libvmadm/...`."""
    text = open(doc).read() if os.path.exists(doc) else ''
    names = set(re.findall(r'`([\w./-]+\.(?:c|h|sh|md|py|build|8))`', text))
    files = []
    for d, dirs, fs in os.walk(root):
        dirs[:] = [x for x in dirs if x != '.git' and not x.startswith('build')]
        files += ['/' + os.path.relpath(os.path.join(d, f), root) for f in fs]
    for n in sorted(names):
        if not any(f.endswith('/' + n) for f in files):
            print('%s names %s, which does not exist' % (os.path.basename(doc), n))


if __name__ == '__main__':
    rule, args = sys.argv[1], sys.argv[2:]
    if rule == 'cycles':
        cycles(args[0])
    elif rule == 'long-functions':
        long_functions(args[0], int(args[1]))
    elif rule == 'long-files':
        long_files(args[0], int(args[1]))
    elif rule == 'doc-names':
        doc_names(args[0], args[1])
    else:
        sys.exit('layout.py: unknown rule ' + rule)

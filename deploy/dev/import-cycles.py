#!/usr/bin/env python3
"""Finds import cycles between the modules (one module = one file) of the
rowstream crates: `src/` and every `connectors/*/src/`.

An edge A -> B means file A names something of file B: a `use` path, or an
inline `crate::`/`super::`/`self::`/`child::` path in code. A `mod child;`
declaration is not an edge (it only places the child); a `pub use` re-export
is followed to the file that defines the name, so `crate::Thing` re-exported
by lib.rs counts as a dependency on the file defining `Thing`, not on lib.rs.
Paths into other crates are ignored (cargo already forbids crate cycles).

Prints every cycle (one per strongly connected component, with the edges
that close it) and exits 1 when there is one; prints "no import cycles" and
exits 0 otherwise.

Usage: deploy/dev/import-cycles.py [REPO_ROOT]   (default: the current dir)
"""

import os
import re
import sys

KEYWORDS = {"crate", "super", "self"}


def strip_code(text):
    """Blanks comments, string and char literals so braces and paths in them do not count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "br" and re.match(r'b?r#*"', text[i:i + 12]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e as f}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, rest = tree[:start], tree[start + 1:i], tree[i + 1:]
                parts, d, cur = [], 0, ""
                for x in inner:
                    if x == "," and d == 0:
                        parts.append(cur)
                        cur = ""
                        continue
                    d += x == "{"
                    d -= x == "}"
                    cur += x
                parts.append(cur)
                out = []
                for p in parts:
                    if p:
                        out += expand_use(prefix + p + rest)
                return out
    tree = tree.rstrip(":")
    return [tree[:-6] if tree.endswith("::self") else tree]


class Crate:
    def __init__(self, root_file):
        self.src = os.path.dirname(root_file)
        self.root_file = root_file
        self.files = {}  # module path tuple -> file
        self.walk(root_file, ())

    def walk(self, path, modpath):
        self.files[modpath] = path
        code = strip_code(open(path).read())
        for m in re.finditer(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code, re.M):
            child = modpath + (m.group(1),)
            base = os.path.join(self.src, *child)
            for cand in (base + ".rs", os.path.join(base, "mod.rs")):
                if os.path.exists(cand):
                    self.walk(cand, child)
                    break

    def module_of(self, path):
        for k, v in self.files.items():
            if v == path:
                return k
        return None


def file_uses(code):
    """(line, path, is_pub_use) for every crate-internal path named in the file."""
    found = []
    for m in re.finditer(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", code, re.M):
        line = code.count("\n", 0, m.start(2)) + 1
        for p in expand_use(m.group(2)):
            found.append((line, p, bool(m.group(1)), m.start()))
    body = re.sub(r"^\s*(pub(?:\([^)]*\))?\s+)?use\s+[^;]+;", lambda m: re.sub(r"[^\n]", " ", m.group(0)), code, flags=re.M)
    # `$crate::` paths live in macro_rules bodies: they are resolved where the
    # macro expands (another crate), so they are no dependency of this module.
    for m in re.finditer(r"(?<![\w:$])((?:\w+::)+\w+)", body):
        found.append((code.count("\n", 0, m.start()) + 1, m.group(1), False, m.start()))
    return found


def inline_depth(code, pos, inline_mods):
    """How many inline `mod x { }` blocks enclose `pos`."""
    return sum(1 for (a, b) in inline_mods if a < pos < b)


def inline_mod_spans(code):
    spans = []
    for m in re.finditer(r"\bmod\s+\w+\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += code[j] == "{"
            depth -= code[j] == "}"
            j += 1
        spans.append((m.end(), j))
    return spans


def analyse(crates):
    """Edges between files, with the line that makes each."""
    info = {}
    for crate in crates:
        for modpath, f in crate.files.items():
            code = strip_code(open(f).read())
            children = {k[-1] for k in crate.files if len(k) == len(modpath) + 1 and k[:-1] == modpath}
            info[f] = (crate, modpath, code, children)

    def defines(f, name):
        code = info[f][2]
        return re.search(r"\b(struct|enum|fn|trait|type|const|static|union|macro_rules!)\s+" + re.escape(name) + r"\b", code)

    reexports = {}

    def resolve(f, segs, depth_inline, seen=()):
        """File that defines what `segs` names, from file `f`; None when outside the crate."""
        crate, modpath, code, children = info[f]
        cur = modpath
        segs = list(segs)
        if segs[0] == "crate":
            cur, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            while segs and segs[0] in ("super", "self"):
                s = segs.pop(0)
                if s == "super":
                    if depth_inline > 0:
                        depth_inline -= 1
                    else:
                        if not cur:
                            return None
                        cur = cur[:-1]
        elif segs[0] in children and depth_inline == 0:
            pass
        else:
            return None
        while segs and cur + (segs[0],) in crate.files:
            cur = cur + (segs.pop(0),)
        target = crate.files[cur]
        if segs and segs[0] != "*" and (target, segs[0]) not in seen:
            via = reexports_of(target).get(segs[0])
            if via and not defines(target, segs[0]):
                r = resolve(target, via, 0, seen + ((target, segs[0]),))
                if r:
                    return r
        return target

    def reexports_of(f):
        if f not in reexports:
            reexports[f] = {}
            for (_, p, is_pub, _) in file_uses(info[f][2]):
                if is_pub:
                    segs = p.split("::")
                    reexports[f][segs[-1]] = segs
        return reexports[f]

    edges = {}
    for f, (crate, modpath, code, children) in info.items():
        spans = inline_mod_spans(code)
        for (line, p, _, pos) in file_uses(code):
            segs = p.split("::")
            if segs[0] not in KEYWORDS and segs[0] not in children:
                continue
            t = resolve(f, segs, inline_depth(code, pos, spans))
            if t and t != f:
                edges.setdefault(f, {}).setdefault(t, (line, p))
    return info, edges


def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    roots = [os.path.join(root, "src", "lib.rs"), os.path.join(root, "src", "main.rs")]
    cdir = os.path.join(root, "connectors")
    if os.path.isdir(cdir):
        for c in sorted(os.listdir(cdir)):
            lib = os.path.join(cdir, c, "src", "lib.rs")
            if os.path.exists(lib):
                roots.append(lib)
    crates = [Crate(r) for r in roots if os.path.exists(r)]
    info, edges = analyse(crates)
    rel = lambda f: os.path.relpath(f, root)
    cycles = [c for c in sccs(sorted(info), edges) if len(c) > 1]
    for comp in cycles:
        members = set(comp)
        print("cycle between " + ", ".join(sorted(rel(f) for f in comp)) + ":")
        for a in sorted(comp):
            for b, (line, p) in sorted(edges.get(a, {}).items()):
                if b in members:
                    print(f"  {rel(a)}:{line} -> {rel(b)}  ({p})")
    if cycles:
        print(f"{len(cycles)} import cycle(s) across {len(info)} modules")
        return 1
    print(f"no import cycles across {len(info)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())

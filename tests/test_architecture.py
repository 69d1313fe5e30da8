"""The layering rules of docs/architecture.md, checked on the source: no import cycle between sgfast's
modules (function-level imports included), no private name imported from another module, the fused
ops and their eager references independent of each other, and the library not importing the
training layer."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The checkout's folders and the module names they install as (train/ is sgfast.train).
PACKAGES = {"sgfast": os.path.join(ROOT, "sgfast"), "sgfast.train": os.path.join(ROOT, "train")}
EXTENSIONS = ("sgfast._C",)  # compiled modules: imported, importing nothing of sgfast


def modules():
    """{module name: path} of every .py file of sgfast and sgfast.train."""
    found = {}
    for prefix, folder in PACKAGES.items():
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "weights", "assets")]
            for f in files:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(root, f), folder)[:-3].replace(os.sep, ".")
                name = prefix if rel == "__init__" else f"{prefix}.{rel.removesuffix('.__init__')}"
                found[name] = os.path.join(root, f)
    return found


def known_modules():
    return {**modules(), **{e: None for e in EXTENSIONS}}


def imports(name, path, known):
    """(target module, imported names) of every import statement in the file that names a known module."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    is_package = path.endswith("__init__.py")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in known:      # `from pkg import module`
                    out.append((sub, []))
                elif target in known:
                    out.append((target, [a.name]))
    return out


def graph():
    known = known_modules()
    return known, {m: imports(m, p, known) if p else [] for m, p in known.items()}


def test_the_walk_finds_the_layers():
    known, _ = graph()
    for m in ("sgfast.paint.facade", "sgfast.ops.composite", "sgfast.reference.composite", "sgfast.train.agent",
              "sgfast.backend", "sgfast.strokes", "sgfast.agent.env"):
        assert m in known


def test_no_import_cycles():
    known, edges = graph()
    adj = {m: sorted({t for t, _ in edges[m] if t != m}) for m in known}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
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
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(adj):
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_imported_across_modules():
    _, edges = graph()
    bad = [(m, t, n) for m, es in edges.items() for t, names in es for n in names
           if n.startswith("_") and not n.startswith("__") and t != m]
    assert not bad, f"private names imported from other modules: {bad}"


@pytest.mark.parametrize("package,forbidden", [
    ("sgfast.ops", "sgfast.reference"), ("sgfast.reference", "sgfast.ops"),
    ("sgfast", "sgfast.train"),   # the library does not depend on the training layer
])
def test_layers_do_not_import(package, forbidden):
    _, edges = graph()
    bad = [(m, t) for m, es in edges.items() for t, _ in es
           if (m == package or m.startswith(package + ".")) and not m.startswith("sgfast.train")
           and (t == forbidden or t.startswith(forbidden + "."))]
    assert not bad, bad

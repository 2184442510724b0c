"""The packages layer without cycles (DESIGN.md section 3): datasets and nima at the bottom, then
losses, enhancers, tools, train. Imports inside functions count too."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A package may import only packages of a lower layer (and itself).
LAYERS = {"datasets": 0, "nima": 0, "losses": 1, "enhancers": 2, "tools": 3, "train": 4}


def imports_of(path):
    """(line, imported top-level package) of every import in the file, at any depth."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def package_imports():
    """{(importer, imported): [file:line, ...]} between the project's packages."""
    edges = {}
    for package in LAYERS:
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                for line, imported in imports_of(path):
                    if imported in LAYERS and imported != package:
                        where = f"{os.path.relpath(path, REPO)}:{line}"
                        edges.setdefault((package, imported), []).append(where)
    return edges


def find_cycle(edges):
    graph = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)

    def visit(node, path):
        for target in sorted(graph.get(node, ())):
            if target in path:
                return path[path.index(target):] + [target]
            found = visit(target, path + [target])
            if found:
                return found
        return None

    for start in sorted(graph):
        cycle = visit(start, [start])
        if cycle:
            return cycle
    return None


def test_no_import_cycle_between_packages():
    edges = package_imports()
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle) + ": " + "; ".join(
        f"{a}->{b} at {edges[a, b][0]}" for a, b in zip(cycle, cycle[1:]))


def test_packages_import_only_lower_layers():
    upward = {f"{a} imports {b}": places for (a, b), places in package_imports().items()
              if LAYERS[b] >= LAYERS[a]}
    assert not upward, upward


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({("a", "b"): [], ("b", "c"): [], ("c", "a"): []}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"): [], ("b", "c"): []}) is None


@pytest.mark.parametrize("source", ["def f():\n    from train import x\n",
                                    "if True:\n    import train.loop\n"])
def test_imports_inside_functions_and_blocks_are_seen(tmp_path, source):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert [package for _, package in imports_of(str(path))] == ["train"]

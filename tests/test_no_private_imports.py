"""No module imports a private name (leading underscore) from another package module."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("datasets", "nima", "losses", "enhancers", "tools", "train")


def _modules():
    for package in PACKAGES:
        for directory, _, names in os.walk(os.path.join(ROOT, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def test_no_private_name_is_imported_from_a_package_module():
    offences = []
    for path in _modules():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if not node.level and (node.module or "").split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                if alias.name.startswith("_"):
                    offences.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: from "
                                    f"{'.' * node.level}{node.module or ''} import {alias.name}")
    assert not offences, "\n".join(offences)

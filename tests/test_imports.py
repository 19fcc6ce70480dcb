"""
The package has no import cycle, not even through an import inside a
function or under C{TYPE_CHECKING}: every C{import} statement anywhere in
C{dyndns_plugin/**} is an edge of the module graph, and that graph must be
acyclic. (The implicit import of a parent package is not an edge: Python
runs a package's C{__init__} before its submodules, whatever they import.)
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "dyndns_plugin"

Graph = dict[str, set[str]]


def package_modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package), for every .py file below C{package}."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def import_graph(package: Path) -> Graph:
    """Module -> the package's modules it imports, from every import statement in its source."""
    modules = package_modules(package)
    graph: Graph = {}
    for name, (path, is_package) in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    base = here[: len(here) - node.level + 1] + ([node.module] if node.module else [])
                    origin = ".".join(base)
                else:
                    origin = node.module or ""
                for alias in node.names:
                    submodule = f"{origin}.{alias.name}"
                    if submodule in modules:
                        targets.add(submodule)
                    elif origin in modules:
                        targets.add(origin)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as a path C{[a, b, ..., a]}, or None if the graph is acyclic."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        children = [iter(sorted(graph[start]))]
        while path:
            child = next(children[-1], None)
            if child is None:  # every module below path[-1] is acyclic
                done.add(path.pop())
                children.pop()
            elif child in path:
                return path[path.index(child):] + [child]
            elif child not in done:
                path.append(child)
                children.append(iter(sorted(graph.get(child, ()))))
    return None


class ImportCycleTests(SynchronousTestCase):
    def test_no_cycle(self) -> None:
        """No chain of imports in the package leads back to where it started."""
        cycle = find_cycle(import_graph(PACKAGE))
        self.assertIsNone(cycle, "import cycle: " + " -> ".join(cycle or []))

    def test_graph_sees_every_kind_of_import(self) -> None:
        """
        The graph has the edges a cycle could hide in: an import inside a
        function (tap builds the web site lazily), one under TYPE_CHECKING
        (authn names the service only for types), a C{from
        package import module}, and none for the implicit parent package.
        """
        graph = import_graph(PACKAGE)
        self.assertIn("dyndns_plugin.web.site", graph["dyndns_plugin.tap"])
        self.assertIn("dyndns_plugin.service", graph["dyndns_plugin.authn"])
        self.assertIn("dyndns_plugin.sdp_import", graph["dyndns_plugin.cli"])
        self.assertNotIn("dyndns_plugin", graph["dyndns_plugin.dns.server"])

    def test_finds_cycles(self) -> None:
        """The checker reports a cycle, also a long one, and not a diamond."""
        self.assertEqual(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}), ["a", "b", "c", "a"])
        self.assertEqual(find_cycle({"a": {"b"}, "b": set(), "c": {"d"}, "d": {"c"}}), ["c", "d", "c"])
        self.assertIsNone(find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}))

    def test_finds_a_function_level_cycle(self) -> None:
        """A cycle closed only by an import inside a function is found (the old auth <-> gnudip one)."""
        root = Path(self.mktemp())
        package = root / "pkg"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "auth.py").write_text("def check():\n    from pkg.gnudip import gnudip_hash\n")
        (package / "gnudip.py").write_text("from pkg import auth\n")
        self.assertEqual(find_cycle(import_graph(package)), ["pkg.auth", "pkg.gnudip", "pkg.auth"])

"""
No docstring cites a file that is not in the repository: every path with a
folder and a file extension named in a docstring of the package, the tests,
the examples or the benchmarks exists, from the repository root or from the
docstring's own folder. Addresses on the web and C{path/to/...}
placeholders do not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("dyndns_plugin", "tests", "examples", "bench", "twisted")
#: A relative path with at least one folder and a file extension.
PATH = re.compile(r"(?<![\w./:-])((?:[\w.-]+/)+[\w.-]+\.(?:md|py|toml|cfg|xml|json|zone|txt|lua|css|js|bin))\b")


def docstrings(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node, clean=False)
            if text:
                yield getattr(node, "lineno", 1), text


def missing_files(root: Path, folders=FOLDERS) -> list[str]:
    missing = []
    for folder in folders:
        for source in sorted((root / folder).rglob("*.py")):
            if "fixtures" in source.parts:
                continue
            for line, text in docstrings(ast.parse(source.read_text(encoding="utf-8"))):
                for cited in PATH.findall(re.sub(r"\w+://\S+|\b[\w-]+\.(?:com|org|net|io)/\S+", "", text)):
                    if cited.startswith("path/to/"):
                        continue
                    if not ((root / cited).exists() or (source.parent / cited).exists()):
                        missing.append(f"{source.relative_to(root)}:{line}: {cited}")
    return missing


class DocstringCitationTests(SynchronousTestCase):
    def test_cited_files_exist(self) -> None:
        self.assertEqual(missing_files(ROOT), [])

    def test_finds_a_missing_file(self) -> None:
        """The check sees a cited file that is missing, and not one that exists or a web address."""
        root = Path(self.mktemp())
        (root / "pkg" / "docs").mkdir(parents=True)
        (root / "pkg" / "docs" / "here.md").write_text("")
        (root / "pkg" / "mod.py").write_text(
            '"""See spec/notes.md section 2, pkg/docs/here.md and docs/here.md;\n'
            'https://example.org/a/b.md and github.com/x/y/z.py are web pages."""\n'
            "def f():\n"
            '    """Also bench/RESULTS.md."""\n'
        )
        self.assertEqual(missing_files(root, ("pkg",)), [
            "pkg/mod.py:1: spec/notes.md",
            "pkg/mod.py:3: bench/RESULTS.md",
        ])

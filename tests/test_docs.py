"""
Every relative link in the README, CONTRIBUTING.md and the pages in docs/
points at a file or folder of the repository, and every C{#fragment} of a
link to a markdown page names one of that page's headings (GitHub's anchor
for it). Links to the web are not fetched; links inside code are not links.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
#: Inline links and images: C{[text](target)}, C{![alt](target "title")}.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
#: Reference definitions: C{[label]: target}.
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def documents(root: Path) -> list[Path]:
    """The markdown files whose links must hold."""
    pages = [root / "README.md", root / "CONTRIBUTING.md"]
    pages += sorted((root / "docs").glob("*.md"))
    return [p for p in pages if p.exists()]


def prose(text: str) -> str:
    """C{text} without fenced code blocks and code spans (their brackets are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """
    The anchors GitHub gives the headings of a markdown page: lower case,
    formatting and punctuation dropped (letters, digits, C{_}, C{-} and
    spaces kept), spaces as C{-}; a repeated anchor gets C{-1}, C{-2}...;
    and the ids of C{<a id="..."></a>}.
    """
    seen: dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(FENCE.sub("", text)):
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    # and explicit HTML anchors (bench/RESULTS.md's table of contents uses them)
    found.update(re.findall(r'<a id="([^"]+)"></a>', FENCE.sub("", text)))
    return found


def broken_links(root: Path, pages: list[Path]) -> list[str]:
    """C{"page: target: problem"} for every relative link that does not hold."""
    problems = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        body = prose(text)
        targets = INLINE_LINK.findall(body) + REFERENCE.findall(body)
        where = page.relative_to(root)
        for target in targets:
            if not target or SCHEME.match(target):
                continue
            path_part, _, fragment = target.partition("#")
            path = (page.parent / path_part if path_part else page).resolve()
            if not path_part.startswith("/") and root.resolve() not in (path, *path.parents):
                problems.append(f"{where}: {target}: outside the repository")
                continue
            if path_part.startswith("/") or not path.exists():
                problems.append(f"{where}: {target}: no such file")
                continue
            if fragment and path.suffix == ".md":
                if fragment not in anchors(path.read_text(encoding="utf-8")):
                    problems.append(f"{where}: {target}: no such heading")
    return problems


class DocumentationLinkTests(SynchronousTestCase):
    def test_links_hold(self) -> None:
        """Every relative link of the README, CONTRIBUTING.md and docs/ points at something that exists."""
        pages = documents(ROOT)
        self.assertIn(ROOT / "README.md", pages)
        self.assertGreater(len(pages), 10)  # the docs/ pages were found
        self.assertEqual(broken_links(ROOT, pages), [])

    def test_readme_links_every_docs_page(self) -> None:
        """A reader starting at the README can reach every page in docs/."""
        readme = prose((ROOT / "README.md").read_text(encoding="utf-8"))
        linked = {target.partition("#")[0] for target in INLINE_LINK.findall(readme)}
        pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
        self.assertEqual(sorted(pages - linked), [])

    def test_finds_broken_links(self) -> None:
        """The check sees a missing file, a missing heading and an escape, and not code or web links."""
        root = Path(self.mktemp())
        (root / "docs").mkdir(parents=True)
        (root / "examples").mkdir()
        (root / "README.md").write_text(
            "See [the guide](docs/guide.md#two-words), [ok](docs/guide.md#the-dyndns-command-1),\n"
            "[folder](examples/), ![img](docs/missing.png), [web](https://example.org/x.md),\n"
            "[self](#readme-top) and [up](../elsewhere.md).\n"
            "`[not](a-link.md)`\n\n```\n[also not](code.md)\n```\n\n[ref]: docs/gone.md\n"
        )
        (root / "docs" / "guide.md").write_text(
            "# Guide\n\n## Two words!\n\n## The `dyndns` command\n\n## The dyndns command\n\n"
            "[back](../README.md) [bad](guide.md#nowhere)\n"
        )
        self.assertEqual(
            broken_links(root, documents(root)),
            [
                "README.md: docs/missing.png: no such file",
                "README.md: #readme-top: no such heading",
                "README.md: ../elsewhere.md: outside the repository",
                "README.md: docs/gone.md: no such file",
                "docs/guide.md: guide.md#nowhere: no such heading",
            ],
        )

    def test_anchor_of_a_heading(self) -> None:
        """GitHub's anchors: case, code spans, punctuation, links and repeats."""
        text = "# A `b` C: d/e\n## Abuse resistance: lockout and change limits\n## X\n## X\n## [Link](y.md) z\n"
        self.assertEqual(
            anchors(text),
            {"a-b-c-de", "abuse-resistance-lockout-and-change-limits", "x", "x-1", "link-z"},
        )
        self.assertEqual(anchors('<a id="cluster-updates"></a>\n\n## Other\n'), {"cluster-updates", "other"})

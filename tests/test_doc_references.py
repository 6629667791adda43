"""Every reference from the code to this project's specs (docs/raw-layouts.md, docs/shard-format.md)
names a file and a section that exist in the repository, and nothing points outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"(docs/[\w-]+\.md)[`,(\s]*(?:sections?\s+([\d.]+)(?:\s*(?:-|and)\s*([\d.]+))?)?")
# the development workspace's folders, which users do not have (spelled in pieces: this file does
# not match itself)
OUTSIDE, OUTSIDE_SPEC = ".." + "/shared", "shared" + "/spec"
SPEC_NAMES = re.compile(r"(?<![\w/])(raw-layouts|shard-format)\.md")


def _sources() -> list[Path]:
    return [p for folder in ("imagenet_pipe", "tools", "tests") for p in (ROOT / folder).rglob("*.py")]


def _headings(doc: Path) -> set[str]:
    """Section numbers of a document's ``## 1.`` / ``### 1.2`` headings."""
    return {m.group(1).rstrip(".") for m in re.finditer(r"^#{2,3} ([\d.]+) ", doc.read_text(), re.MULTILINE)}


def test_cited_sections_exist():
    cited = 0
    for path in [*_sources(), *(ROOT / "docs").glob("*.md")]:
        for match in CITATION.finditer(path.read_text()):
            doc = ROOT / match.group(1)
            assert doc.is_file(), f"{path.relative_to(ROOT)} cites {match.group(1)}, which does not exist"
            for section in filter(None, match.group(2, 3)):
                cited += 1
                assert section.rstrip(".") in _headings(doc), \
                    f"{path.relative_to(ROOT)} cites {match.group(1)} section {section}, which it does not have"
    assert cited > 10


def test_specs_are_cited_by_their_path_in_the_repository():
    for path in [*_sources(), *ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md")]:
        text = path.read_text()
        assert OUTSIDE_SPEC not in text and OUTSIDE not in text, f"{path.relative_to(ROOT)} points outside"
        if path.suffix == ".py":
            bare = [m.group(0) for m in SPEC_NAMES.finditer(text)]
            assert not bare, f"{path.relative_to(ROOT)} cites {bare[0]} without its folder (docs/)"


DOCS = ["README.md", "DEVELOPERS.md", "BENCHMARKS.md", "shards/README.md"]
# a path inside the repository: a top-level folder of it, then a file name with an extension
REPO_PATH = re.compile(r"(?<![\w./-])((?:imagenet_pipe|tools|tests|docs|configs|constraints|shards|\.ci)"
                       r"/[\w./-]*\w\.(?:py|md|sh|yaml|txt|toml|json|tsv))")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_file_a_document_points_to_exists():
    """Paths of repository files named in the documents, tools and code, and relative links in the
    documents, all resolve (generated or example paths with a wildcard or a placeholder excepted)."""
    missing = []
    documents = [ROOT / d for d in DOCS] + sorted((ROOT / "docs").glob("*.md")) + _sources() \
        + sorted((ROOT / "tools").glob("*.sh"))
    for doc in documents:
        text = doc.read_text()
        missing += [f"{doc.relative_to(ROOT)}: {ref}" for ref in REPO_PATH.findall(text)
                    if not any(c in ref for c in "*{<") and not (ROOT / ref).exists()]
        if doc.suffix == ".md":
            missing += [f"{doc.relative_to(ROOT)}: link {link}" for link in MD_LINK.findall(text)
                        if "://" not in link and not (doc.parent / link).exists()]
    assert missing == []

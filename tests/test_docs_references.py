"""Every reference to the project's own docs resolves.

The code, lessons, tests, studies and READMEs cite background as ``docs/<file>.md`` or
``docs/<file>.md#<anchor>``, where the anchor is a heading's anchor as GitHub writes it
(docs/README.md). Markdown links between the project's own .md files
(``[text](path.md#anchor)``, ``[text](#anchor)``) are checked the same way. The paper's
decisions are cited by their heading's anchor (``docs/paper.md#decision-5-the-exact-gradient``),
never as a bare "Decision 5" that a reader could not follow (in Markdown, a link whose text
is "Decision 5" is fine).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED_DIRS = ("tinyinterp", "lessons", "tests", "studies", "benchmarks", "docs", "data_samples")
SCANNED_FILES = ("README.md", "pyproject.toml")
SUFFIXES = {".py", ".md", ".sh", ".toml"}

DOCS_CITATION = re.compile(r"(?<![\w./-])(?:\.\./)*docs/([\w-]+\.md)(?:#([\w-]+))?")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]*)\)")
BARE_DECISION = re.compile(r"\bDecisions? [0-9]+(?![0-9]|\]\()")  # not as a link's text


def product_files():
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).is_file()]
    for d in SCANNED_DIRS:
        files += sorted(p for p in (ROOT / d).rglob("*")
                        if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts)
    return files


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(md_path):
    """Every heading anchor of a Markdown file (repeats get -1, -2, ... as on GitHub);
    lines inside fenced code blocks are not headings."""
    seen, out, fenced = {}, set(), False
    for line in md_path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def docs_citations():
    found = []
    for path in product_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in DOCS_CITATION.finditer(line):
                found.append((f"{path.relative_to(ROOT)}:{lineno}", m.group(1), m.group(2)))
    return found


def markdown_links():
    found = []
    for path in product_files():
        if path.suffix != ".md":
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in MARKDOWN_LINK.finditer(line):
                target = m.group(1)
                if not target or re.match(r"[a-z]+:", target):  # http:, mailto: ...
                    continue
                found.append((f"{path.relative_to(ROOT)}:{lineno}", path, target))
    return found


def test_docs_folder_exists_with_an_index():
    assert (ROOT / "docs" / "README.md").is_file()
    assert (ROOT / "docs" / "paper.md").is_file() and (ROOT / "docs" / "calibration.md").is_file()


def test_the_scan_finds_the_citations():
    # a scan that finds nothing would pass whatever the files say
    cited = docs_citations()
    assert len(cited) >= 20
    assert {"paper.md", "calibration.md"} <= {name for _, name, _ in cited}


@pytest.mark.parametrize("where, name, anchor", docs_citations(), ids=lambda v: str(v))
def test_every_cited_docs_file_and_heading_exists(where, name, anchor):
    path = ROOT / "docs" / name
    assert path.is_file(), f"{where}: cites docs/{name}, which does not exist"
    if anchor is not None:
        assert anchor in anchors(path), f"{where}: docs/{name} has no heading #{anchor}"


def test_every_markdown_link_between_project_files_resolves():
    broken = []
    for where, source, target in markdown_links():
        file_part, _, anchor = target.partition("#")
        dest = source if not file_part else (source.parent / file_part).resolve()
        if not dest.exists():
            broken.append(f"{where}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{where}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_decisions_are_cited_by_their_heading():
    bare = []
    for path in product_files():
        if path.parent == ROOT / "docs" or path == Path(__file__).resolve():
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BARE_DECISION.search(line):
                bare.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not bare, "cite the decision by its heading in paper.md instead:\n" + "\n".join(bare)


def test_slug_follows_github():
    assert slug("Decision 6: the paper's gradient") == "decision-6-the-papers-gradient"
    assert slug("Bird vs. not on all of CUB") == "bird-vs-not-on-all-of-cub"
    assert slug("Z, priors and lambda in the code") == "z-priors-and-lambda-in-the-code"

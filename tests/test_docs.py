"""Every relative link in README.md, results/REPORT.md and docs/**/*.md resolves to a file inside the repository.

A link to a file outside the repository (or to one git ignores) works on the author's machine and is
broken for everyone who clones the repository; this test catches both.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [REPO_ROOT / "README.md", REPO_ROOT / "results" / "REPORT.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]

# Fenced code blocks (``` or ~~~, up to the matching closing fence or the end of the file).
FENCE = re.compile(r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ ]{0,3}(?P=fence)[`~]*[ \t]*$|\Z)",
                   re.MULTILINE | re.DOTALL)
# Inline code: a run of n backticks up to the next run of exactly n backticks, within one paragraph.
CODE_SPAN = re.compile(r"(?<!`)(?P<ticks>`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=ticks)(?!`)", re.DOTALL)
# [text](target) and ![alt](target), with an optional <...> target and an optional "title".
INLINE_LINK = re.compile(
    r"!?\[[^\]]*\]\(\s*(?:<(?P<angle>[^>]*)>|(?P<bare>[^)\s]+))(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
# Reference definitions: [label]: target (not footnotes, [^1]: text)
REFERENCE = re.compile(r"^[ ]{0,3}\[(?!\^)[^\]]+\]:\s*(?:<(?P<angle>[^>]*)>|(?P<bare>\S+))", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _blank(match: re.Match[str]) -> str:
    """Replace code by spaces (newlines kept), so nothing inside it looks like a link."""
    return re.sub(r"[^\n]", " ", match.group(0))


def extract_links(text: str) -> list[str]:
    """Targets of every inline link, image and reference definition outside code, in order of appearance."""
    text = CODE_SPAN.sub(_blank, FENCE.sub(_blank, text))
    found = [(m.start(), m.group("angle") if m.group("angle") is not None else m.group("bare"))
             for pattern in (INLINE_LINK, REFERENCE) for m in pattern.finditer(text)]
    return [target.strip() for _, target in sorted(found)]


def local_path(target: str) -> str | None:
    """The file path a link target names, without its #fragment; None for URLs and pure #anchors."""
    if not target or target.startswith("#") or SCHEME.match(target):
        return None
    return unquote(target.split("#", 1)[0].split("?", 1)[0])


def broken_links(md: Path, root: Path = REPO_ROOT) -> list[str]:
    """One message per relative link in ``md`` that is missing or resolves outside ``root``."""
    problems = []
    for target in extract_links(md.read_text(encoding="utf-8")):
        path = local_path(target)
        if path is None:
            continue
        resolved = (md.parent / path).resolve()
        where = f"{md.relative_to(root)}: link ({target})"
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{where} points outside the repository ({resolved})")
        elif not resolved.exists():
            problems.append(f"{where} does not exist ({resolved.relative_to(root.resolve())})")
    return problems


def git_ignored(paths: list[Path]) -> set[Path]:
    """The paths git ignores (a clone would not have them); empty when git or the repository is unavailable."""
    if not paths:
        return set()
    try:
        proc = subprocess.run(["git", "check-ignore", "-z", "--stdin"], cwd=REPO_ROOT, capture_output=True,
                              input="\0".join(str(p) for p in paths) + "\0", text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return set()
    if proc.returncode not in (0, 1):  # 128: not a git repository
        return set()
    return {Path(p) for p in proc.stdout.split("\0") if p}


# ---------------------------------------------------------------------------------------------------
# The repository's own documents


def test_design_doc_is_among_the_checked_files():
    assert REPO_ROOT / "docs" / "DESIGN.md" in MARKDOWN


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve_inside_the_repository(md):
    problems = broken_links(md)
    assert not problems, "broken links:\n" + "\n".join(problems)


@pytest.mark.parametrize("md", MARKDOWN, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_links_do_not_point_at_git_ignored_files(md):
    targets = {}
    for target in extract_links(md.read_text(encoding="utf-8")):
        path = local_path(target)
        if path is not None:
            resolved = (md.parent / path).resolve()
            if resolved.is_relative_to(REPO_ROOT) and resolved.exists():
                targets[resolved] = target
    ignored = git_ignored(list(targets))
    assert not ignored, "links to git-ignored files (absent from a clone):\n" + "\n".join(
        f"{md.relative_to(REPO_ROOT)}: link ({targets[p]})" for p in sorted(ignored))


# ---------------------------------------------------------------------------------------------------
# The extractor and checker themselves, on made-up documents

SAMPLE = """\
# Title

See [the design](docs/DESIGN.md) and [a section](docs/DESIGN.md#data-flow), or [`run.py`](../run.py).
![figure](results/fig.png "Figure 1") and ![spaced](<my file.md>).
Not links: `[code](inline/code.md)`, ``[double](double/ticks.md)``.
External: [web](https://example.org/a), [mail](mailto:a@b.c), [top](#title).

```python
x = "[fenced](fenced/block.md)"
```

[ref]: conf/config.yaml
[^note]: A footnote, not a link.
"""


def test_extract_links_skips_code_and_keeps_order():
    assert extract_links(SAMPLE) == [
        "docs/DESIGN.md", "docs/DESIGN.md#data-flow", "../run.py", "results/fig.png", "my file.md",
        "https://example.org/a", "mailto:a@b.c", "#title", "conf/config.yaml",
    ]


def test_local_path_strips_fragments_and_skips_urls_and_anchors():
    assert local_path("docs/DESIGN.md#data-flow") == "docs/DESIGN.md"
    assert local_path("my%20file.md") == "my file.md"
    assert [local_path(t) for t in ("https://example.org/a", "http://x", "mailto:a@b.c", "#title")] == [None] * 4


def test_broken_links_names_the_file_and_the_link(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "DESIGN.md").write_text("# Design\n")
    (tmp_path / "outside.md").write_text("not in the repository\n")
    md = root / "README.md"
    md.write_text("[ok](docs/DESIGN.md#design) [gone](docs/MISSING.md) [out](../outside.md) `[code](x.md)`\n"
                  "[web](https://example.org) [anchor](#design)\n")
    problems = broken_links(md, root)
    assert len(problems) == 2, problems
    assert problems[0].startswith("README.md: link (docs/MISSING.md) does not exist")
    assert problems[1].startswith("README.md: link (../outside.md) points outside the repository")

"""The documentation site: docs/ builds with `mkdocs build --strict`, every page is in the nav, and the
README stays a short entry point whose links into docs/ resolve."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from markdown.extensions.toc import slugify

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True, text=True, timeout=120,
    )


def nav_pages(nav) -> list[str]:
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def headings(path: Path) -> set[str]:
    """The anchors MkDocs gives a page's headings (code fences skipped: `# comment` lines are not headings)."""
    anchors, fence = set(), False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#{1,6} (.+)", line)):
            anchors.add(slugify(m.group(1).replace("`", ""), "-"))
    return anchors


def test_the_site_builds_with_no_warning(tmp_path):
    result = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "adding-a-family" / "index.html").is_file()


def test_a_broken_link_a_broken_anchor_or_a_page_left_out_of_the_nav_fails_the_build(tmp_path):
    # The validation settings in mkdocs.yml are what make these errors: this guards them.
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "sampling.md"
    page.write_text(page.read_text() + "\nSee [the old page](samplers.md) and [a section](diffusion.md#no-such-section).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "samplers.md" in result.stderr and "no-such-section" in result.stderr and "orphan.md" in result.stderr


def test_every_page_is_in_the_nav_once():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert set(listed) == pages, f"in docs/ but not in the nav: {sorted(pages - set(listed))}; " \
                                 f"in the nav but not in docs/: {sorted(set(listed) - pages)}"


def test_the_readme_is_an_entry_point_whose_links_resolve():
    text = (REPO / "README.md").read_text()
    # Topics live in docs/; the README keeps what lit_gen is, the two commands, one example per command and the map.
    assert len(text.splitlines()) <= 120, "README.md grew: move the topic's text to its page under docs/"
    commands = sorted(".".join(p.relative_to(REPO).with_suffix("").parts)
                      for p in (REPO / "lit_gen").rglob("*.py") if '__name__ == "__main__"' in p.read_text())
    missing = [c for c in commands if f"python -m {c} " not in text]
    assert commands and not missing, f"no README example for {missing}"
    targets = [m.group(1) for m in LINK.finditer(text) if not re.match(r"[a-z]+:", m.group(1))]
    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (REPO / path).exists(), f"README.md links to {target}, which does not exist"
        if anchor:
            assert anchor in headings(REPO / path), f"README.md links to {target}: no such heading"
    linked = {t.partition("#")[0] for t in targets}
    unlinked = sorted(p.relative_to(REPO).as_posix() for p in DOCS.glob("*.md") if p.relative_to(REPO).as_posix() not in linked)
    assert not unlinked, f"the README's map leaves out {unlinked}"

"""Every ```python block in docs/*.md and README.md runs (```python no-run blocks are skipped).

The blocks of one page run in order in one namespace, as a reader would type them.
"""

import re
from pathlib import Path

import pytest

import graphc as gc

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [p for p in [ROOT / "README.md"] if p.exists()]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str]]:
    """(info string, code) of each fenced block."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def runnable(text: str) -> list[str]:
    return [code for info, code in blocks(text) if info.split()[:1] == ["python"] and "no-run" not in info.split()]


def test_fences_are_parsed():
    page = "x\n```python\na = 1\n```\n```python no-run\nimport torch\n```\n```sh\nmake\n```\n"
    assert runnable(page) == ["a = 1\n"]
    assert [info for info, _ in blocks(page)] == ["python", "python no-run", "sh"]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for k, code in enumerate(runnable(page.read_text(encoding="utf-8"))):
        try:
            exec(compile(code, f"{page.name}[python block {k + 1}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page.name}, python block {k + 1} failed: {exc!r}\n{code}") from exc


def test_api_reference_covers_every_public_name():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [name for name in gc.__all__ if f"gc.{name}" not in text]
    assert not missing, f"docs/api.md does not mention: {missing}"

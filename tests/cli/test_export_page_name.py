"""`export --html NAME`: one rule, in the code and in the docs — a name ending in .html or .htm,
in any case, is written; any other name is refused with exit status 2 before the model runs."""

import pytest

from gpt2np import cli
from gpt2np.cli.export import PAGE_SUFFIXES


@pytest.mark.parametrize("name", ["out.html", "out.htm", "out.HTML", "Out.Htm", "a.b.html"])
def test_a_page_name_is_written(name, tmp_path, capsys):
    path = tmp_path / name
    assert cli.main(["export", "Mr. Darcy bowed.", "--model", "demo", "--html", str(path), "--qk", "none"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path}: ")
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


@pytest.mark.parametrize("name", ["out.txt", "out", "out.html.txt", "out.xhtml5", "html"])
def test_any_other_name_is_refused(name, tmp_path, capsys):
    path = tmp_path / name
    assert cli.main(["export", "Mr. Darcy bowed.", "--model", "demo", "--html", str(path)]) == 2
    err = capsys.readouterr().err
    assert "give a file name ending in .html or .htm (any case)" in err and len(err.strip().splitlines()) == 1
    assert not path.exists()


def test_the_docs_state_the_same_rule():
    from pathlib import Path
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert PAGE_SUFFIXES == (".html", ".htm")
    for name in ("cli.md", "export.md"):
        assert "ending in `.html` or `.htm` (any case" in (docs / name).read_text(), name

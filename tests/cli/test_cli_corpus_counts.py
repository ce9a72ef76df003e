"""The corpus report's counts are English: "1 source, 1 document", "2 documents"
(gpt2np.cli.corpus.print_report on results files measured here with the demo model)."""

import io
import json

import pytest

from gpt2np.analysis import corpus
from gpt2np.cli.corpus import print_report

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be.")


@pytest.mark.parametrize("texts, words", [
    ([("one.txt", TEXT)], "1 source, 1 document, "),
    ([("one.txt", TEXT + "<|endoftext|>" + TEXT)], "1 source, 2 documents, "),
    ([("a.txt", TEXT), ("b.txt", TEXT)], "2 sources, 2 documents, "),
])
def test_input_line_counts_in_words(tmp_path, texts, words):
    path = tmp_path / "stats.json"
    corpus.measure("demo", texts, window=16, top_k=2, workers=0, out=path)
    out = io.StringIO()
    print_report(json.loads(path.read_text()), out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("input: "))
    assert line.startswith("input: " + words), line
    assert "1 documents" not in line and "1 sources" not in line

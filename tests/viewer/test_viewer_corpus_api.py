"""The viewer's corpus page on the server side: GET /api/corpus serves the --corpus results file
(without its resume state), errors are JSON, and `python -m viewer --corpus FILE` checks the file
and takes the file's model unless told otherwise."""

import json

import pytest

from gpt2np.analysis import corpus
from viewer import create_app
from viewer.cli import main as viewer_main

TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune, " \
       "must be in want of a wife. However little known the feelings or views of such a man may be."


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "stats.json"
    corpus.measure("demo", [TEXT * 3], window=24, workers=0, out=path)
    return path


def test_api_serves_the_results_file(stats_file):
    client = create_app({"MODEL": "demo", "CORPUS": str(stats_file)}).test_client()
    r = client.get("/api/corpus")
    assert r.status_code == 200
    saved = json.loads(stats_file.read_text())
    assert "state" in saved and "state" not in r.json
    saved.pop("state")
    assert r.json == saved
    page = client.get("/corpus")
    assert page.status_code == 200 and b'data-corpus="1"' in page.data and b"corpus.js" in page.data


def test_without_a_file_and_with_a_wrong_one(stats_file, tmp_path):
    client = create_app({"MODEL": "demo"}).test_client()
    r = client.get("/api/corpus")
    assert r.status_code == 404 and "--corpus FILE" in r.json["error"]
    assert b'data-corpus="0"' in client.get("/corpus").data
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    r = create_app({"MODEL": "demo", "CORPUS": str(tmp_path / "other.json")}).test_client().get("/api/corpus")
    assert r.status_code == 400 and "not a gpt2np corpus file" in r.json["error"]


def test_viewer_cli_checks_the_file_and_takes_its_model(stats_file, small_text_model_dir, tmp_path, capsys):
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(SystemExit) as e:
        viewer_main(["--corpus", str(tmp_path / "bad.json")], serve=False)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not JSON" in err

    other = tmp_path / "small.json"
    corpus.measure(small_text_model_dir, [TEXT], window=16, workers=0, out=other)
    app = viewer_main(["--corpus", str(other)], serve=False)
    assert app.extensions["gpt2np.model"].info.name == small_text_model_dir.name
    assert "/corpus" in capsys.readouterr().out
    app = viewer_main(["--corpus", str(other), "--model", "demo"], serve=False)
    assert app.extensions["gpt2np.model"].info.name == "demo"

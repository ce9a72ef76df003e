"""`python -m viewer --model gpt2` without the files says what the command line says (issue 20, §4):
the command that downloads, copying the files, a local directory, --model demo — one message from
one home (gpt2np/files/hub.py)."""

import os
import subprocess
import sys

import pytest

from viewer import cli as viewer_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def other_ways(target):
    return (f"Or copy config.json, model.safetensors and tokenizer.json into {target}; or pass a "
            "local model directory (--model DIR); or use the bundled model that needs no download: "
            "--model demo.")


def test_the_viewer_and_the_cli_say_the_same_when_gpt2_is_not_there(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GPT2NP_WEIGHTS", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        viewer_cli.main(["--model", "gpt2"], serve=False)
    assert stop.value.code == 2
    viewer_says = capsys.readouterr().err.strip()

    env = dict(os.environ, GPT2NP_WEIGHTS=str(tmp_path), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "gpt2np", "--model", "gpt2", "hello"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert r.returncode == 2
    cli_says = r.stderr.strip()
    assert len(viewer_says.splitlines()) == len(cli_says.splitlines()) == 1
    target = tmp_path / "gpt2"
    for said in (viewer_says, cli_says):
        assert said.endswith(other_ways(target)), said
        assert "`python -m gpt2np download gpt2`" in said
    assert f"gpt2 is not downloaded yet (looked in {target})" in viewer_says

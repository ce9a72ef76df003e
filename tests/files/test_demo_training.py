"""scripts/train_demo_model.py: a run stopped and resumed from its checkpoint ends with the same
weights as the run that was never stopped; without torch it says in one line what to install."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_demo_model.py"

# A small text of our own (no corpus download): documents separated by <|endoftext|>.
WORDS = ("the morning was fine and the party walked to the village where the old house stood "
         "near the river and every window looked out on the garden").split()


def corpus_text(path, n_docs=30):
    docs = []
    for k in range(n_docs):
        words = [WORDS[(k * 7 + i * 3) % len(WORDS)] for i in range(60)]
        docs.append(" ".join(words).capitalize() + ".")
    path.write_text("\n<|endoftext|>\n".join(docs))
    return path


def script():
    """The training script as a module (imported once, from scripts/)."""
    sys.path.insert(0, str(SCRIPT.parent))
    import train_demo_model
    return train_demo_model


def train(tmp_path, work, *extra):
    """Run the script's main() in this process (one torch import), tiny model, 1 thread."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        script().main(["--tiny", "--corpus-text", str(tmp_path / "corpus.txt"), "--steps", "6",
                               "--threads", "1", "--work", str(work), "--train-only", *extra])
    finally:
        torch.set_num_threads(threads)
    return torch.load(work / "checkpoint.pt", weights_only=False)


def test_resume_gives_the_uninterrupted_run(tmp_path):
    corpus_text(tmp_path / "corpus.txt")
    whole = train(tmp_path, tmp_path / "whole")
    stopped = train(tmp_path, tmp_path / "parts", "--stop-at", "3")
    assert stopped["record"]["step"] == 3
    resumed = train(tmp_path, tmp_path / "parts", "--resume")
    assert whole["record"]["step"] == resumed["record"]["step"] == 6
    assert (whole["record"]["sittings"], resumed["record"]["sittings"]) == (1, 2)
    import torch
    for name, w in whole["model"].items():
        assert torch.equal(w, resumed["model"][name]), name          # bit for bit
    # and the run really moved: the stopped checkpoint differs from both
    assert not torch.equal(stopped["model"]["transformer.h.0.attn.c_attn.weight"],
                           whole["model"]["transformer.h.0.attn.c_attn.weight"])


def test_existing_checkpoint_needs_resume(tmp_path):
    corpus_text(tmp_path / "corpus.txt")
    train(tmp_path, tmp_path / "w", "--stop-at", "1")
    with pytest.raises(SystemExit, match="--resume"):
        train(tmp_path, tmp_path / "w")


def test_without_torch_one_line(tmp_path):
    """--quick with torch hidden: exit 1 and one line naming the extra, no traceback."""
    hide = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['train_demo_model.py', '--quick']; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'gpt2np[test]'" in lines[0] and "torch" in lines[0], r.stderr


def test_resume_with_a_new_length(tmp_path):
    """--resume --steps N: the run goes on to N, the warm-up stays, and the record says so."""
    corpus_text(tmp_path / "corpus.txt")
    train(tmp_path, tmp_path / "w", "--stop-at", "3")
    state = train(tmp_path, tmp_path / "w", "--resume", "--steps", "8")
    assert state["record"]["step"] == 8 and state["settings"]["hp"]["steps"] == 8
    assert state["record"]["plan_changes"] == [{"at_step": 3, "from": 6, "to": 8}]


def test_a_second_phase_starts_from_the_first_runs_weights(tmp_path):
    """--init-from: a new run starts from another run's weights (with learning rate 0 its first
    step leaves them as they were, bit for bit), records that run's step and CPU time, and resumes
    like any run."""
    corpus_text(tmp_path / "corpus.txt")
    first = train(tmp_path, tmp_path / "one", "--stop-at", "3")
    second = train(tmp_path, tmp_path / "two", "--init-from", str(tmp_path / "one" / "checkpoint.pt"),
                   "--lr", "0", "--stop-at", "1")
    import torch
    for name, w in first["model"].items():
        assert torch.equal(w, second["model"][name]), name
    parent = second["settings"]["init_from"]
    assert parent["step"] == 3 and parent["record"]["cpu_s"] == first["record"]["cpu_s"]
    assert parent["settings"] == first["settings"] and second["settings"]["hp"]["lr"] == 0
    resumed = train(tmp_path, tmp_path / "two", "--init-from", str(tmp_path / "one" / "checkpoint.pt"),
                    "--lr", "0", "--resume")
    assert resumed["record"]["step"] == 6 and resumed["record"]["sittings"] == 2


def test_sentence_starts_are_where_sentences_begin():
    """Sentence and paragraph starts in a token stream, read by hand from the text: after . ! ?
    (a closing quote may follow) and after a line, a capital letter or an opening quote; not after
    the full stop of "Mr."; and the first token and the one after <|endoftext|>."""
    tdm = script()
    tok = tdm.gpt2_tokenizer()
    text = ('She came. "Yes," he said! Mr. Weston smiled at it.\nThe end? no more." Then'
            ' she went.<|endoftext|>Next day.')
    ids = np.array(tok.encode(text).ids)
    starts = tdm.sentence_starts(tok, ids)
    assert [tok.decode(ids[p:p + 2].tolist()) for p in starts] == [
        "She came", ' "Yes', " Mr.", "The end", " Then she", "Next day"]


def test_sentence_start_windows_begin_at_sentence_starts():
    """sentence_starts=100: every window of both sizes is the stream from one of the given
    positions; 0: the windows' first tokens are not all of them."""
    torch = pytest.importorskip("torch")
    tdm = script()
    stream = torch.arange(5000)                                  # token i at position i
    starts_at = torch.arange(0, 5000, 37)
    hp = dict(tdm.TRAIN, short=(16, 8), long=(64, 4), repeat_text=0, repeat_random=0,
              long_random=0, sentence_starts=100)
    pool = torch.arange(10)

    def firsts(hp, seed=0):
        out = []
        for x, _ in tdm.make_batch(stream, hp, torch.Generator().manual_seed(seed), pool, starts_at=starts_at):
            for row in x:
                p = int(row[0])
                assert torch.equal(row, stream[p:p + len(row)])
                out.append(p)
        return out
    chosen = firsts(hp)
    assert len(chosen) == 12 and all(p % 37 == 0 for p in chosen)
    assert not all(p % 37 == 0 for p in firsts(dict(hp, sentence_starts=0)))


@pytest.mark.parametrize("item, message", [("weight_decay=x", "KEY=NUMBER"), ("steps=1.5", "whole number"),
                                           ("nonsense=1", "KEY=NUMBER")])
def test_set_refuses_what_it_cannot_read(tmp_path, item, message):
    corpus_text(tmp_path / "corpus.txt")
    with pytest.raises(SystemExit, match=message):
        train(tmp_path, tmp_path / "w", "--set", item)


def test_set_takes_a_fraction_where_the_setting_is_one(tmp_path):
    corpus_text(tmp_path / "corpus.txt")
    state = train(tmp_path, tmp_path / "w", "--set", "weight_decay=0.5", "--set", "sentence_starts=50",
                  "--stop-at", "1")
    assert state["settings"]["hp"]["weight_decay"] == 0.5 and state["settings"]["hp"]["sentence_starts"] == 50

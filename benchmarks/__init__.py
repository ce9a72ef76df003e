"""Benchmarks of gpt2np against Hugging Face `transformers`: `python -m benchmarks.bench` (the forward
pass, loading, the viewer) and `python -m benchmarks.bench_generate` (generation), run from the
repository's root. They live outside the installed package because they need torch and transformers
(the `test` extra)."""

"""From a name to arrays and ids: `hub.py` (a model name or Hub repo id -> a local directory,
downloaded and checked once), `weights.py` (model.safetensors -> the checkpoint's named arrays,
memory-mapped) and `tokenizer.py` (text <-> GPT-2 token ids)."""

// Sentences to start from: the loaded model's own examples (GET /api/model "examples", from
// gpt2np/examples.py: each one checked on the model, so every preset fits its context and
// tokenizer). Models without a tokenizer get token-id presets instead.

export const ID_PRESETS = [
  { name: "Repeated ids", text: "5 17 42 8 23 61 5 17 42 8 23 61" },
  { name: "Counting", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16" },
];

// The sentence box's presets: [{ name, text }], never empty.
export function textPresets(model) {
  if (!model.has_tokenizer) return ID_PRESETS;
  const presets = (model.examples?.sentences || []).map((s) => ({ name: s.label, text: s.text }));
  return presets.length ? presets : [{ name: "One word", text: "The" }];
}

// Minimal pairs for the pair panel: A is the sentence above, B goes into the pair's box.
export function pairPresets(model) {
  const pair = model.examples?.pair;
  if (!model.has_tokenizer || !pair) return [];
  return [{ name: `${pair.answer.trim()} / ${pair.versus.trim()}: the model's own pair`, a: pair.clean, b: pair.corrupted }];
}

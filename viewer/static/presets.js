// Sentences to start from. Models without a tokenizer get token-id presets instead.

export const TEXT_PRESETS = [
  { name: "Coreference: … too big.", text: "The trophy doesn't fit in the suitcase because it is too big." },
  { name: "Coreference: … too small.", text: "The trophy doesn't fit in the suitcase because it is too small." },
  { name: "Repeated sequence (induction)", text: "kite orbit lemon velvet seven harbor quartz fig. kite orbit lemon velvet seven harbor quartz fig." },
  { name: "Long paragraph", text:
    "The lighthouse keeper had kept the same routine for thirty years. Every evening she climbed the " +
    "hundred and twelve steps, wound the clockwork that turned the lens, trimmed the wick and wrote " +
    "the weather in a leather book. Ships passed in the night without knowing her name, but they knew " +
    "her light: two long flashes and a short one, every twenty seconds, as steady as a heartbeat. When " +
    "the harbour board decided to replace the lamp with an automatic beacon, they sent a young engineer " +
    "to study the old machinery. He expected rust and guesswork. Instead he found notebooks full of " +
    "careful drawings, each gear measured, each repair dated, and a small note on the last page: the " +
    "light does not belong to the keeper; the keeper belongs to the light. He stayed for a week, then " +
    "a month, and when the beacon was finally installed he asked to keep the notebooks. They are still " +
    "on his desk, next to a photograph of the tower at dusk, its beam crossing the water." },
];

export const ID_PRESETS = [
  { name: "Repeated ids", text: "5 17 42 8 23 61 5 17 42 8 23 61" },
  { name: "Counting", text: "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16" },
];

// Minimal pairs for the pair panel: A goes into the sentence box above, B into the pair's box.
export const PAIR_PRESETS = [
  { name: "Trophy: … too big / … too small",
    a: "The trophy doesn't fit in the suitcase because it is too big.",
    b: "The trophy doesn't fit in the suitcase because it is too small." },
];

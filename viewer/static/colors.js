// Colour scales. Attention weights: cream (0) -> orange -> magenta (1); none of them is near
// black, so masked cells (exactly black) can never be mistaken for a weight. Vectors: blue-white-red.
// Weights arrive as bytes code = round(254·√p) (see viewer/answers/wire.py); 255 = masked.

const STOPS = [
  [0.0, [253, 251, 240]], [0.12, [254, 232, 160]], [0.3, [253, 180, 98]],
  [0.55, [242, 108, 66]], [0.8, [206, 40, 72]], [1.0, [122, 16, 104]],
];
export const MASKED_CODE = 255;
export const MASKED_RGB = [0, 0, 0];

export function rampColor(t) {
  t = Math.min(1, Math.max(0, t));
  for (let s = 1; s < STOPS.length; s++) {
    const [t1, c1] = STOPS[s];
    if (t <= t1) {
      const [t0, c0] = STOPS[s - 1];
      const f = (t - t0) / (t1 - t0);
      return c0.map((v, i) => Math.round(v + f * (c1[i] - v)));
    }
  }
  return STOPS[STOPS.length - 1][1];
}

export const codeToP = (code) => (code / 254) ** 2;

// code -> packed RGBA (little-endian Uint32) for each of the 256 codes, per scale.
function buildLut(scale) {
  const lut = new Uint32Array(256);
  for (let code = 0; code < 256; code++) {
    const rgb = code === MASKED_CODE ? MASKED_RGB : rampColor(scale === "sqrt" ? code / 254 : codeToP(code));
    lut[code] = (255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0];
  }
  return lut;
}
export const LUTS = { linear: buildLut("linear"), sqrt: buildLut("sqrt") };

export function codeCss(code, scale) {
  const v = LUTS[scale][code];
  return `rgb(${v & 255},${(v >> 8) & 255},${(v >> 16) & 255})`;
}

// Colour of a weight p (float) on a scale, as CSS.
export function weightCss(p, scale) {
  const rgb = rampColor(scale === "sqrt" ? Math.sqrt(p) : p);
  return `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
}

// Diverging colour for vector components, v in [-1, 1].
export function divergingCss(v) {
  v = Math.max(-1, Math.min(1, v));
  const a = Math.abs(v) ** 0.8;
  const [r, g, b] = v >= 0 ? [202, 44, 60] : [37, 99, 180];
  const mix = (c) => Math.round(255 + a * (c - 255));
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}

// Activation patching's normalised effect (patching.js): 0 = as the corrupted run (white), 1 = as
// the clean run (red), below 0 toward blue (−1 full blue); past either end one overflow colour
// each, never a clamped look-alike of 1 or −1, so a value outside [−1, 1] cannot hide.
export const PATCH_COLORS = { zero: [255, 255, 255], one: [185, 28, 28], minusOne: [29, 78, 216],
  over: [88, 28, 135], under: [15, 23, 42] };
export function patchRgb(v) {
  const c = PATCH_COLORS;
  if (!Number.isFinite(v)) return [156, 163, 175];
  if (v > 1) return c.over;
  if (v < -1) return c.under;
  const end = v >= 0 ? c.one : c.minusOne, a = Math.abs(v);
  return c.zero.map((z, i) => Math.round(z + a * (end[i] - z)));
}
export const patchCss = (v) => `rgb(${patchRgb(v).join(",")})`;

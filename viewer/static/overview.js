// All heads at a glance: one thumbnail per (layer, head) from a single request of bytes
// [L, H, S, S] (block maxima, 255 = masked). Each is a button that opens that head.

import { LUTS } from "./colors.js";
import { el } from "./text.js";

export function renderOverview(box, data, scale, current, onPick) {
  const { layers, heads, size, codes } = data;
  const lut = LUTS[scale];
  const corner = el("span", { className: "ov-corner", text: "L \\ H" });
  const headLabels = Array.from({ length: heads }, (_, h) => el("span", { className: "ov-col", text: String(h) }));
  const cells = [];
  for (let l = 0; l < layers; l++) {
    cells.push(el("span", { className: "ov-row", text: String(l) }));
    for (let h = 0; h < heads; h++) {
      const canvas = el("canvas", { width: size, height: size });
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(size, size);
      const px = new Uint32Array(img.data.buffer);
      const base = (l * heads + h) * size * size;
      for (let n = 0; n < size * size; n++) px[n] = lut[codes[base + n]];
      ctx.putImageData(img, 0, 0);
      cells.push(el("button", {
        className: "ov-cell", testid: `overview-${l}-${h}`, title: `layer ${l}, head ${h}`,
        dataset: { layer: String(l), head: String(h) }, onclick: () => onPick(l, h),
      }, canvas));
    }
  }
  box.style.gridTemplateColumns = `auto repeat(${heads}, 48px)`;
  box.replaceChildren(corner, ...headLabels, ...cells);
  markOverview(box, current.layer, current.head);
}

export function markOverview(box, layer, head) {
  for (const b of box.querySelectorAll(".ov-cell"))
    b.classList.toggle("current", Number(b.dataset.layer) === layer && Number(b.dataset.head) === head);
}

// The attention heatmap of one head on a canvas: cells from the compact bytes, token labels on
// both axes, masked cells exactly black, the selected query row and cell outlined. Also its
// export as PNG (canvas) and SVG (vector cells up to SVG_VECTOR_MAX tokens, an embedded image above).

import { LUTS, MASKED_CODE, codeToP } from "./colors.js";
import { tokenLabel, xmlEscape } from "./text.js";

const AREA = 660;            // the plot aims at this many CSS pixels square
const MAX_CELL = 36;
const LABEL_FONT = "11px ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace";
const POS_FONT = "9px ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace";
const ACCENT = "#0e7490";
const SVG_VECTOR_MAX = 160;

export class Heatmap {
  constructor(canvas) {
    this.canvas = canvas;
    this.scale = "linear";
    this.data = null;        // {T, codes, tokens, layer, head}
    this.query = null;
    this.key = null;
    this.hover = null;
    this.image = null;       // offscreen T×T canvas, one pixel per cell
  }

  setData(data) {
    this.data = data;
    this.image = null;
    this.geometry = this.measure(data.T, data.tokens);
    this.draw();
  }

  setScale(scale) {
    this.scale = scale;
    this.image = null;
    this.draw();
  }

  setSelection(query, key) {
    this.query = query;
    this.key = key;
    this.draw();
  }

  setHover(cell) {
    const same = (a, b) => (a && b ? a.i === b.i && a.j === b.j : a === b);
    if (same(cell, this.hover)) return;
    this.hover = cell;
    this.draw();
  }

  // Code of cell (query i, key j): 255 when masked.
  code(i, j) {
    return j > i ? MASKED_CODE : this.data.codes[(i * (i + 1)) / 2 + j];
  }

  // Cell size and margins: the plot fills the width available (up to AREA), at least 1 px a cell.
  measure(T, tokens) {
    const ctx = this.canvas.getContext("2d");
    ctx.font = LABEL_FONT;
    const widths = tokens.map((t) => ctx.measureText(tokenLabel(t, 14)).width);
    ctx.font = POS_FONT;
    const posW = ctx.measureText(String(T - 1)).width;
    const margin = Math.ceil(Math.max(...widths) + posW + 16);
    const room = (this.canvas.parentElement?.clientWidth || AREA + margin) - margin - 14;
    const cell = Math.max(1, Math.min(MAX_CELL, Math.floor(Math.min(AREA, room) / T)));
    const every = Math.max(1, Math.ceil(12 / cell));
    return { T, cell, every, left: margin, top: margin, plot: cell * T, posW };
  }

  // Fit the plot to a new width (window resized).
  refit() {
    if (!this.data) return;
    this.geometry = this.measure(this.data.T, this.data.tokens);
    this.draw();
  }

  cellImage() {
    if (this.image) return this.image;
    const { T, codes } = this.data;
    const off = document.createElement("canvas");
    off.width = off.height = T;
    const ctx = off.getContext("2d");
    const img = ctx.createImageData(T, T);
    const px = new Uint32Array(img.data.buffer);
    const lut = LUTS[this.scale];
    const black = lut[MASKED_CODE];
    let k = 0;
    for (let i = 0; i < T; i++) {
      const row = i * T;
      for (let j = 0; j <= i; j++) px[row + j] = lut[codes[k++]];
      for (let j = i + 1; j < T; j++) px[row + j] = black;
    }
    ctx.putImageData(img, 0, 0);
    this.image = off;
    return off;
  }

  draw() {
    if (!this.data) return;
    const g = this.geometry;
    const dpr = window.devicePixelRatio || 1;
    const w = g.left + g.plot + 12, h = g.top + g.plot + 12;
    const c = this.canvas;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
      c.style.width = w + "px";
      c.style.height = h + "px";
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.paint(ctx, w, h, { selection: true });
  }

  // Everything but the title: background, labels, cells, outlines. Shared by screen and PNG.
  paint(ctx, w, h, { selection }) {
    const g = this.geometry, { tokens, T } = this.data;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.cellImage(), g.left, g.top, g.plot, g.plot);

    const hi = new Set();
    if (selection && this.query != null) hi.add("q" + this.query);
    if (selection && this.key != null) hi.add("k" + this.key);
    if (selection && this.hover) { hi.add("q" + this.hover.i); hi.add("k" + this.hover.j); }
    const label = (i, axis) => {
      const bold = hi.has(axis + i);
      if (i % g.every !== 0 && !bold) return;
      const mid = (axis === "q" ? g.top : g.left) + (i + 0.5) * g.cell;
      ctx.save();
      if (axis === "k") { ctx.translate(mid, g.top); ctx.rotate(-Math.PI / 2); }
      else ctx.translate(g.left, mid);
      // Query labels end left of the plot; key labels, turned a quarter, rise above it.
      const out = axis === "q" ? -1 : 1;
      ctx.textBaseline = "middle";
      ctx.textAlign = axis === "q" ? "right" : "left";
      ctx.font = POS_FONT;
      ctx.fillStyle = bold ? ACCENT : "#8a8f98";
      ctx.fillText(String(i), out * 6, 0);
      ctx.font = (bold ? "bold " : "") + LABEL_FONT;
      ctx.fillStyle = bold ? ACCENT : "#2b2f36";
      ctx.fillText(tokenLabel(tokens[i], 14), out * (10 + g.posW), 0);
      ctx.restore();
    };
    for (let i = 0; i < T; i++) { label(i, "q"); label(i, "k"); }

    if (!selection) return;
    const cellRect = (i, j0, j1) => [g.left + j0 * g.cell, g.top + i * g.cell, (j1 - j0 + 1) * g.cell, g.cell];
    ctx.lineWidth = 2;
    if (this.query != null) {
      ctx.strokeStyle = ACCENT;
      const [x, y, rw, rh] = cellRect(this.query, 0, this.query);
      ctx.strokeRect(x - 1, y - 1, rw + 2, rh + 2);
    }
    if (this.query != null && this.key != null) {
      ctx.strokeStyle = "#111827";
      const [x, y, rw, rh] = cellRect(this.query, this.key, this.key);
      ctx.strokeRect(x - 2, y - 2, rw + 4, rh + 4);
    }
    if (this.hover && g.cell >= 4) {
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(14,116,144,0.9)";
      const [x, y, rw, rh] = cellRect(this.hover.i, this.hover.j, this.hover.j);
      ctx.strokeRect(x + 0.5, y + 0.5, rw - 1, rh - 1);
    }
  }

  // CSS pixel position -> {i, j} of a cell, {i, j: null} on a query label, or null.
  hit(x, y) {
    if (!this.data) return null;
    const g = this.geometry;
    const i = Math.floor((y - g.top) / g.cell), j = Math.floor((x - g.left) / g.cell);
    if (i < 0 || i >= g.T) return null;
    if (x < g.left && x >= 0) return { i, j: null };
    if (j < 0 || j >= g.T) return null;
    return { i, j };
  }

  // Centre of a cell in CSS pixels (used by tests and the tooltip).
  cellCenter(i, j) {
    const g = this.geometry;
    return { x: g.left + (j + 0.5) * g.cell, y: g.top + (i + 0.5) * g.cell };
  }

  // A PNG of the heatmap with a title above and the colour legend (a canvas) below.
  async toPng(title, legend) {
    const g = this.geometry, band = 34, foot = legend ? 44 : 0, scale = 2;
    const w = Math.max(g.left + g.plot + 12, 480), h = g.top + g.plot + 12 + band + foot;
    const c = document.createElement("canvas");
    c.width = w * scale;
    c.height = h * scale;
    const ctx = c.getContext("2d");
    ctx.scale(scale, scale);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = "#111827";
    ctx.font = "600 13px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.fillText(title, 10, band / 2);
    if (legend) {
      ctx.drawImage(legend, 10, h - foot + 4, 320, 34);
      ctx.fillStyle = "#000000";
      ctx.fillRect(346, h - foot + 6, 12, 12);
      ctx.fillStyle = "#4b5563";
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillText("masked (−∞ before softmax)", 364, h - foot + 12);
    }
    ctx.translate(0, band);
    this.paint(ctx, w, h - band - foot, { selection: false });
    return new Promise((resolve) => c.toBlob(resolve, "image/png"));
  }

  toSvg(title) {
    const g = this.geometry, { T, tokens } = this.data, band = 34;
    const w = g.left + g.plot + 12, h = g.top + g.plot + 12 + band;
    const lut = LUTS[this.scale];
    const hex = (code) => {
      const v = lut[code];
      return "#" + [v & 255, (v >> 8) & 255, (v >> 16) & 255].map((x) => x.toString(16).padStart(2, "0")).join("");
    };
    const out = [];
    out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">`);
    out.push(`<title>${xmlEscape(title)}</title>`);
    out.push(`<rect width="${w}" height="${h}" fill="#ffffff"/>`);
    out.push(`<text x="10" y="${band / 2}" dominant-baseline="middle" font-family="system-ui, sans-serif" font-size="13" font-weight="600" fill="#111827">${xmlEscape(title)}</text>`);
    out.push(`<g transform="translate(0 ${band})">`);
    out.push(`<rect x="${g.left}" y="${g.top}" width="${g.plot}" height="${g.plot}" fill="#000000"/>`);
    if (T <= SVG_VECTOR_MAX) {
      out.push(`<g shape-rendering="crispEdges">`);
      for (let i = 0; i < T; i++)
        for (let j = 0; j <= i; j++) {
          const code = this.code(i, j);
          out.push(`<rect x="${g.left + j * g.cell}" y="${g.top + i * g.cell}" width="${g.cell}" height="${g.cell}" fill="${hex(code)}"><title>q${i} k${j} p≈${codeToP(code).toPrecision(3)}</title></rect>`);
        }
      out.push(`</g>`);
    } else {
      const url = this.cellImage().toDataURL("image/png");
      out.push(`<image x="${g.left}" y="${g.top}" width="${g.plot}" height="${g.plot}" preserveAspectRatio="none" style="image-rendering:pixelated" href="${url}"/>`);
    }
    const font = `font-family="ui-monospace, Menlo, Consolas, monospace"`;
    for (let i = 0; i < T; i += g.every) {
      const mid = g.top + (i + 0.5) * g.cell, midk = g.left + (i + 0.5) * g.cell;
      const text = xmlEscape(tokenLabel(tokens[i], 14));
      out.push(`<text x="${g.left - 10 - g.posW}" y="${mid}" text-anchor="end" dominant-baseline="middle" ${font} font-size="11" fill="#2b2f36" xml:space="preserve">${text}</text>`);
      out.push(`<text x="${g.left - 6}" y="${mid}" text-anchor="end" dominant-baseline="middle" ${font} font-size="9" fill="#8a8f98">${i}</text>`);
      out.push(`<text transform="translate(${midk} ${g.top}) rotate(-90)" x="${10 + g.posW}" text-anchor="start" dominant-baseline="middle" ${font} font-size="11" fill="#2b2f36" xml:space="preserve">${text}</text>`);
      out.push(`<text transform="translate(${midk} ${g.top}) rotate(-90)" x="6" text-anchor="start" dominant-baseline="middle" ${font} font-size="9" fill="#8a8f98">${i}</text>`);
    }
    out.push(`</g></svg>`);
    return out.join("\n");
  }
}

// The colour legend: ticks in p, on the current scale.
export function drawLegend(canvas, scale) {
  const dpr = window.devicePixelRatio || 1;
  const w = 320, h = 34, barH = 12, x0 = 8, x1 = w - 12;
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const lut = LUTS[scale];
  for (let x = x0; x < x1; x++) {
    const t = (x - x0) / (x1 - x0 - 1);
    const p = scale === "sqrt" ? t * t : t;
    const code = Math.round(254 * Math.sqrt(p));
    const v = lut[code];
    ctx.fillStyle = `rgb(${v & 255},${(v >> 8) & 255},${(v >> 16) & 255})`;
    ctx.fillRect(x, 2, 1, barH);
  }
  ctx.strokeStyle = "#c9ccd1";
  ctx.strokeRect(x0 - 0.5, 1.5, x1 - x0 + 1, barH + 1);
  ctx.fillStyle = "#4b5563";
  ctx.font = "10px system-ui, sans-serif";
  ctx.textAlign = "center";
  const ticks = scale === "sqrt" ? [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1];
  for (const p of ticks) {
    const t = scale === "sqrt" ? Math.sqrt(p) : p;
    const x = x0 + t * (x1 - x0 - 1);
    ctx.fillRect(Math.round(x), barH + 2, 1, 4);
    ctx.fillText(String(p), Math.min(Math.max(x, x0 + 6), x1 - 6), barH + 15);
  }
}

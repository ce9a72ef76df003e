// One vector of float32 text as the value side and the walk show it: a colour strip (blue −,
// red +, scaled by `maxAbs`), a grid of cells for long vectors (d = 768 values do not fit a strip),
// and the numbers themselves, folded, exactly as the server sent them (viewer/answers/wire.py f32).

import { divergingCss } from "./colors.js";
import { el, tokenSpan } from "./text.js";

const STRIP_MAX = 128;        // longer vectors are drawn as a grid, GRID_COLUMNS cells a row
const GRID_COLUMNS = 64;

export const maxAbsOf = (...vectors) => Math.max(1e-9, ...vectors.flat().map((v) => Math.abs(Number(v))));

function strip(values, maxAbs, label) {
  return el("div", { className: "strip vec-strip" }, ...values.map((v, d) => {
    const cell = el("i", { title: `${label}[${d}] = ${v}` });
    cell.style.backgroundColor = divergingCss(Number(v) / maxAbs);
    return cell;
  }));
}

// A canvas of ceil(n / 64) rows × 64 cells; hovering a cell puts its index and value in the title.
function grid(values, maxAbs, label) {
  const rows = Math.ceil(values.length / GRID_COLUMNS), cell = 6;
  const canvas = el("canvas", { className: "vec-grid", width: GRID_COLUMNS * cell, height: rows * cell });
  const ctx = canvas.getContext("2d");
  values.forEach((v, d) => {
    ctx.fillStyle = divergingCss(Number(v) / maxAbs);
    ctx.fillRect((d % GRID_COLUMNS) * cell, Math.floor(d / GRID_COLUMNS) * cell, cell, cell);
  });
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const col = Math.floor(((e.clientX - r.left) / r.width) * GRID_COLUMNS);
    const row = Math.floor(((e.clientY - r.top) / r.height) * rows);
    const d = row * GRID_COLUMNS + col;
    canvas.title = d >= 0 && d < values.length ? `${label}[${d}] = ${values[d]}` : "";
  });
  return canvas;
}

// opts: { label, token (a token string shown after the label), name (the trace name it comes from), maxAbs, testid }
export function vectorView(values, opts) {
  const { label, token = null, name = "", maxAbs = maxAbsOf(values), testid } = opts;
  const picture = values.length <= STRIP_MAX ? strip(values, maxAbs, label) : grid(values, maxAbs, label);
  const numbers = el("details", { className: "vec-numbers" },
    el("summary", { text: `the ${values.length} numbers` }),
    el("pre", { className: "nums", ...(testid ? { testid: `${testid}-numbers` } : {}), text: values.join(" ") }));
  return el("div", { className: "vec", ...(testid ? { testid } : {}), dataset: { n: String(values.length) } },
    el("div", { className: "vec-head" }, el("b", { text: label }), token != null ? " " : null,
      token != null ? tokenSpan(token, "tok vec-token") : null, name ? el("span", { className: "muted", text: ` ${name}` }) : null),
    picture, numbers);
}

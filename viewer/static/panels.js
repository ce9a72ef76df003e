// The side panels and the token strip, built from API JSON with textContent only: token chips,
// the top-5 keys, the next-token top-5, the Q·K panel and the ledger. Numbers are shown as the
// float32 text the server sent (viewer/answers/wire.py f32), never recomputed here.

import { divergingCss, weightCss } from "./colors.js";
import { el, tokenSpan } from "./text.js";

export function renderTokens(box, tokens, selected, onPick) {
  box.replaceChildren(...tokens.map((t, i) => el("button", {
    className: "chip" + (i === selected ? " selected" : ""), testid: `token-${i}`,
    title: `position ${i}`, onclick: () => onPick(i),
    dataset: { position: String(i) },
  }, el("span", { className: "pos", text: String(i) }), tokenSpan(t))));
}

export function markToken(box, selected) {
  for (const chip of box.children) chip.classList.toggle("selected", Number(chip.dataset.position) === selected);
  const chip = box.children[selected];
  if (chip) chip.scrollIntoView({ block: "nearest", inline: "nearest" });
}

function bar(p, scale) {
  const fill = el("span", { className: "fill" });
  fill.style.width = `${Math.max(0.5, Number(p) * 100)}%`;
  fill.style.backgroundColor = weightCss(Math.min(1, Math.max(Number(p), 0.15)), scale);
  return el("span", { className: "bar" }, fill);
}

// Top-5 keys of the selected query: position, token, weight bar, p; fewer when the query has fewer
// keys (keys 0..query), with the server's note saying so.
export function renderTopK(list, data, scale, onKey) {
  list.replaceChildren(...data.keys.map((k, r) => el("li", {
    testid: `topk-item-${r}`, dataset: { key: String(k.position), p: k.p },
    onclick: () => onKey(k.position), title: "open the ledger of this cell",
  }, el("span", { className: "pos", text: String(k.position) }), tokenSpan(k.token), bar(k.p, scale),
  el("span", { className: "num", testid: `topk-p-${r}`, text: k.p }))));
  if (data.ignore_sink && data.query.position > 0)
    list.append(el("li", { className: "note", text: `position 0 (ignored) has p = ${data.sink_p}` }));
  if (data.note) list.append(el("li", { className: "note", testid: "topk-note", text: data.note }));
}

// onPick(token), if given, is called when a token is clicked (to follow it elsewhere).
export function renderNext(list, data, scale, onPick = null) {
  list.replaceChildren(...data.top.map((t, r) => el("li", {
    testid: `next-item-${r}`, dataset: { id: String(t.id), p: t.p },
    ...(onPick ? { onclick: () => onPick(t), title: "follow this token in the ablation and the logit lens" } : {}),
  }, el("span", { className: "pos", text: `#${t.id}` }), tokenSpan(t.token), bar(t.p, scale),
  el("span", { className: "num", text: t.p }))));
}

// A vector as a strip of coloured cells, scaled by `maxAbs`.
function strip(values, maxAbs, label, testid) {
  const cells = values.map((v, d) => {
    const cell = el("i", { title: `${label}[${d}] = ${v}` });
    cell.style.backgroundColor = divergingCss(Number(v) / maxAbs);
    return cell;
  });
  return el("div", { className: "strip", testid }, ...cells);
}

export function renderQK(box, data, selectedKey, onKey, scale = "linear") {
  const vectors = [data.q, ...data.keys.map((k) => k.k)];
  const maxAbs = Math.max(1e-9, ...vectors.flat().map((v) => Math.abs(Number(v))));
  const q = data.query;
  const strips = el("div", { className: "strips" },
    el("div", { className: "strip-label" }, el("b", { text: "q " }), el("span", { className: "pos", text: String(q.position) }), tokenSpan(q.token)),
    strip(data.q, maxAbs, "q", "q-strip"),
    ...data.keys.flatMap((k, r) => [
      el("div", { className: "strip-label" }, el("b", { text: "k " }), el("span", { className: "pos", text: String(k.position) }), tokenSpan(k.token)),
      strip(k.k, maxAbs, "k", `k-strip-${r}`),
    ]));
  const head = el("tr", {}, ...["key", "q·k", `÷ √${data.d_head}`, "score (trace)", "mask", "p"]
    .map((h) => el("th", { text: h })));
  const rows = data.keys.map((k, r) => el("tr", {
    testid: `qk-row-${r}`, className: k.position === selectedKey ? "selected" : "",
    dataset: { key: String(k.position) }, tabIndex: 0, title: "open the full ledger of this cell",
    onclick: () => onKey(k.position),
    onkeydown: (e) => { if (e.key === "Enter") onKey(k.position); },
  }, el("td", {}, el("span", { className: "pos", text: String(k.position) }), tokenSpan(k.token)),
  el("td", { className: "num", text: k.qk }), el("td", { className: "num", text: k.scaled }),
  el("td", { className: "num", text: k.score }), el("td", { className: "num", text: k.mask }),
  el("td", { className: "num strong", testid: `qk-p-${r}`, text: k.p })));
  const scaleNote = el("p", { className: "muted small", text:
    `d_head = ${data.d_head} numbers per vector; colours from −${maxAbs.toPrecision(3)} (blue) to +${maxAbs.toPrecision(3)} (red). Hover a cell for its value.` });
  box.replaceChildren(strips, scaleNote, el("table", { className: "qk-table" }, el("thead", {}, head), el("tbody", {}, ...rows)),
    whatIf(data, scale));
}

// The √d what-if (viewer/answers/ledger.py without_sqrt_d): the query's row as the model computed it, and
// the same row had the scores not been divided by √d_head, one cell per key, each with its entropy
// and top weight. Labelled as what it is: a row the model never computes.
function whatIf(data, scale) {
  const w = data.what_if, q = data.query;
  const row = (r, name, label, testid) => {
    const cells = r.p.map((p, j) => {
      const cell = el("i", { title: `key ${j}: p = ${p}` });
      cell.style.backgroundColor = weightCss(Number(p), scale);
      return cell;
    });
    return el("div", { className: `whatif-row ${name}`, testid },
      el("div", { className: "whatif-label" }, ...label),
      el("div", { className: "whatif-cells" }, ...cells),
      el("div", { className: "whatif-stats" },
        "entropy ", el("b", { testid: `${testid}-entropy`, text: r.entropy_bits.toFixed(3) }), ` of ${w.max_entropy_bits.toFixed(2)} bits · top weight `,
        el("b", { testid: `${testid}-top`, text: Number(r.top_p).toFixed(4) }), " at key ",
        el("span", { className: "pos", text: String(r.top_key) }), tokenSpan(r.top_token)));
  };
  return el("div", { className: "whatif", testid: "qk-whatif" },
    el("h3", { text: `Why ÷ √${data.d_head}? The row of query ${q.position}, with and without it` }),
    row(w.real, "real", [el("b", { text: "the model" }), ` softmax(q·k ÷ √${data.d_head})`], "whatif-real"),
    row(w.unscaled, "unscaled", [el("b", { text: "what if" }), " softmax(q·k), no ÷ √d"], "whatif-unscaled"),
    el("p", { className: "muted small whatif-note", testid: "whatif-note", text:
      `What-if: the model never computes the second row. It is softmax of the trace's q·k over keys 0…${q.position} ` +
      `without ÷ √${data.d_head}, in float64 on the server. q·k grows with d_head; undivided, the softmax saturates ` +
      "toward its largest score (lower entropy, a larger top weight)." }));
}

// q·k -> ÷√d_head -> + mask -> − row max -> exp -> ÷ row sum -> p, each with its operand.
export function renderLedger(title, box, data, cellP) {
  const q = data.query, k = data.key;
  title.replaceChildren(`layer ${data.layer}, head ${data.head}: query `, el("span", { className: "pos", text: String(q.position) }),
    tokenSpan(q.token), " → key ", el("span", { className: "pos", text: String(k.position) }), tokenSpan(k.token));
  const rows = data.steps.map((s, r) => el("tr", { testid: `ledger-step-${r}` },
    el("td", {}, el("div", { className: "op", text: s.op }), el("div", { className: "detail", text: s.detail }),
      ...(s.trace != null ? [el("div", { className: "check", testid: "ledger-trace-check",
        text: `trace ${s.trace_name}: ${s.trace}  |Δ| = ${s.abs_diff}` })] : [])),
    el("td", { className: "num", text: s.operand ?? "" }),
    el("td", { className: "num strong", testid: `ledger-value-${r}`, text: s.value })));
  const table = el("table", { className: "ledger-table" },
    el("thead", {}, el("tr", {}, ...["step", "operand", "value"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
  const equal = data.p_equal ? "=" : "≠";
  const final = el("div", { className: "ledger-final" + (data.p_equal ? " ok" : " bad") },
    el("div", {}, "p = ", el("b", { testid: "ledger-p", text: data.p }),
      el("span", { className: "muted", text: `  ${data.p_name}[${data.head}, ${q.position}, ${k.position}]` })),
    el("div", { className: "small", testid: "ledger-check",
      text: `steps above give ${data.p_from_steps} ${equal} the trace's p` +
        (cellP != null ? `; the heatmap cell shows ${cellP} (${cellP === data.p ? "the same float32" : "differs"})` : "") }));
  box.replaceChildren(table, final);
}

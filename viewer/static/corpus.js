// The corpus page: a results file of `python -m gpt2np corpus` (from GET /api/corpus, or a file
// loaded with the button) as the predictions' shares with their intervals, every head's means
// with intervals and histograms, and a head's top examples, each a link to the normal view
// (permalink.js) at that head and query position.

import { api } from "./api.js";
import { permalink } from "./permalink.js";
import { count, el, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const FORMAT = "gpt2np-corpus-stats", VERSION = 2;   // gpt2np/analysis/corpus/report.py
const LABELS = { entropy: "entropy (bits)", sink: "sink", previous: "previous", self: "self", vw_sink_share: "vw sink" };
const S = { data: null, head: null, stat: "previous" };
window.__corpus = S;                              // read by the browser tests

const fmt = (v, digits = 3) => (v == null ? "—" : Number(v).toFixed(digits));
const pct = (v) => (v == null ? "—" : (100 * v).toFixed(1) + "%");
const interval = (iv, f = fmt) => (iv ? `[${f(iv[0])}, ${f(iv[1])}]` : "[—]");

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// -- drawing ------------------------------------------------------------------------------------
function histogram(counts, range, unit) {
  const w = 84, h = 22, dpr = window.devicePixelRatio || 1;
  const canvas = el("canvas", { className: "hist", width: w * dpr, height: h * dpr });
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  const total = counts.reduce((a, b) => a + b, 0), most = Math.max(1, ...counts);
  canvas.title = `single queries (${total.toLocaleString()}): ${counts.length} bins over ` +
    `${fmt(range[0], 2)}–${fmt(range[1], 2)} ${unit}; tallest bin ${most.toLocaleString()}`;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.fillStyle = "#0e7490";
  const bw = w / counts.length;
  counts.forEach((c, i) => {
    const bh = c ? Math.max(1, (c / most) * (h - 1)) : 0;
    g.fillRect(i * bw + 0.5, h - bh, bw - 1, bh);
  });
  return canvas;
}

// A share and its interval on a 0–1 track.
function intervalBar(share, iv) {
  const track = el("span", { className: "iv-track" });
  if (iv) {
    const band = el("span", { className: "iv-band" });
    band.style.left = `${100 * iv[0]}%`;
    band.style.width = `${100 * (iv[1] - iv[0])}%`;
    track.append(band);
  }
  if (share != null) {
    const dot = el("span", { className: "iv-dot" });
    dot.style.left = `${100 * share}%`;
    track.append(dot);
  }
  return track;
}

// -- the page -------------------------------------------------------------------------------------
function render(data) {
  S.data = data;
  S.head = null;
  showError("");
  const m = data.model, inp = data.input, st = data.settings;
  $("source").textContent = "· " + inp.sources.map((s) => s.name).join(", ");
  $("summary").replaceChildren(
    el("span", { text: `model ${m.name} (${m.n_layer} layers × ${m.n_head} heads, engine ${m.engine})` }),
    el("span", { text: `${count(inp.sources.length, "source")}, ${count(inp.documents, "document")}, ${count(inp.tokens, "token")}` }),
    el("span", { text: `${data.windows_measured} of ${count(inp.windows, "window")} of ${st.window} tokens, stride ${st.stride}${st.bos ? ", <|endoftext|> first" : ""}` }),
    el("span", { className: data.complete ? "" : "warn-text", text: data.complete ? "complete" : "not complete: rerun the same command to continue" }),
  );
  const here = $("viewer-model").dataset.name;
  $("model-note").hidden = here === m.name;
  $("model-note").textContent = `These statistics are of ${m.name}; the attention viewer runs ${here}: ` +
    `its examples open there with ${here}'s attention. Start it with --model ${m.spec || m.name} to see the same model.`;
  renderPredictions(data);
  renderHeads(data);
  $("examples-card").hidden = true;
}

function renderPredictions(data) {
  $("share-method").textContent = `Share of windows where each prediction holds, with its ${data.intervals.share}. ` +
    "Predictions about a layer the model does not have are not applicable.";
  const head = el("tr", {}, ...["#", "prediction", "windows", "holds", "share", "95% interval", ""].map((t) => el("th", { text: t })));
  const rows = data.predictions.map((p) => el("tr", { dataset: { prediction: String(p.id) } },
    el("td", { text: String(p.id) }),
    el("td", { className: "pred-text", text: p.prediction }),
    el("td", { className: "num", text: p.windows ? String(p.windows) : "not applicable" }),
    el("td", { className: "num", text: p.windows ? String(p.holds) : "—" }),
    el("td", { className: "num share", text: pct(p.share) }),
    el("td", { className: "num interval", text: interval(p.interval, pct) }),
    el("td", {}, intervalBar(p.share, p.interval))));
  $("predictions").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("predictions-card").hidden = false;
}

function renderHeads(data) {
  const stats = data.statistics;
  $("mean-method").textContent = `Each window's mean over its queries 1…T−1, averaged over windows: ` +
    `${data.intervals.mean}. Histograms: the single queries' values. Type: the most frequent head type over windows.`;
  const head = el("tr", {}, el("th", { text: "head" }), el("th", { text: "type" }),
    ...stats.map((s) => el("th", { colSpan: 2, title: s.about, text: LABELS[s.name] || s.name })));
  const n = data.windows_measured;
  const rows = data.heads.map((h) => {
    const share = h.type && n ? h.types[h.type] / n : null;
    const cells = stats.flatMap((s) => {
      const v = h.stats[s.name];
      return [el("td", { className: "num", dataset: { stat: s.name } },
        el("span", { className: "mean", text: fmt(v.mean, s.unit === "bits" ? 2 : 3) }),
        el("span", { className: "interval", text: " " + interval(v.interval, (x) => fmt(x, s.unit === "bits" ? 2 : 3)) })),
      el("td", { className: "hist-cell" }, histogram(v.histogram, s.range, s.unit))];
    });
    const row = el("tr", { dataset: { head: h.head }, tabIndex: 0, onclick: () => showExamples(h.head) },
      el("td", { className: "head-name", text: h.head }),
      el("td", { className: "type", text: h.type ? `${h.type} ${share == null ? "" : Math.round(100 * share) + "%"}` : "—",
        title: Object.entries(h.types).map(([t, c]) => `${t}: ${count(c, "window")}`).join("\n") }),
      ...cells);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") showExamples(h.head); });
    return row;
  });
  $("heads").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("heads-card").hidden = false;
}

// -- top examples ---------------------------------------------------------------------------------
function viewPosition(w, position) {
  if (position == null) return null;
  return w.view_positions ? w.view_positions[position] : position;
}

function exampleLink(w, h, position) {
  const q = viewPosition(w, position);
  return permalink({ text: w.text, bos: w.bos, layer: h.layer, head: h.index, q }, "/");
}

function snippet(w, position) {
  const from = position == null ? 0 : Math.max(0, position - 12);
  const to = position == null ? Math.min(w.tokens.length, 24) : Math.min(w.tokens.length, position + 4);
  const span = el("span", { className: "snippet" });
  if (from > 0) span.append("… ");
  for (let i = from; i < to; i++)
    span.append(tokenSpan(w.tokens[i], i === position ? "tok here" : "tok"));
  if (to < w.tokens.length) span.append(" …");
  return span;
}

function example(h, item, withPosition) {
  const w = S.data.windows[String(item.window)];
  const where = `${w.source} · window ${item.window}` + (withPosition ? ` · position ${item.position}` : "");
  return el("li", { dataset: { window: String(item.window), position: withPosition ? String(item.position) : "" } },
    el("span", { className: "ex-value", text: fmt(item.value) }),
    el("span", { className: "ex-body" }, el("span", { className: "ex-where", text: where }), snippet(w, withPosition ? item.position : null)),
    el("a", { className: "button ex-open", href: exampleLink(w, h, withPosition ? item.position : null), testid: "example-link",
      text: "open", title: "open this window in the attention viewer at this head" + (withPosition ? " and query" : "") }));
}

function showExamples(name, stat = S.stat) {
  const h = S.data.heads.find((x) => x.head === name);
  if (!h) return;
  S.head = name;
  S.stat = stat;
  for (const row of $("heads").querySelectorAll("tbody tr")) row.classList.toggle("selected", row.dataset.head === name);
  $("examples-title").textContent = `Head ${name}: top examples of ${LABELS[stat] || stat}`;
  $("stat-choice").replaceChildren(...S.data.statistics.map((s) => el("button", {
    className: "seg" + (s.name === stat ? " on" : ""), text: LABELS[s.name] || s.name, dataset: { stat: s.name },
    onclick: () => showExamples(name, s.name) })));
  const positions = h.top_positions[stat], windows = h.top_windows[stat];
  $("top-positions").replaceChildren(...positions.map((item) => example(h, item, true)));
  $("top-windows").replaceChildren(...windows.map((item) => example(h, item, false)));
  $("examples-card").hidden = false;
}

// -- loading --------------------------------------------------------------------------------------
function accept(data, name) {
  if (!data || data.format !== FORMAT) throw new Error(`${name} is not a results file of \`python -m gpt2np corpus\`.`);
  if ((data.version || 1) < VERSION) {
    throw new Error(`${name} was written by an earlier gpt2np, whose intervals (mean ± 1.96·s/√n) can leave ` +
      `the statistic's range. Open it with \`python -m viewer --corpus ${name}\`, which recomputes them, or run ` +
      "the `gpt2np corpus` command that wrote it again (same --out: it reuses the saved sums).");
  }
  render(data);
}

async function init() {
  $("load").addEventListener("change", async () => {
    const file = $("load").files[0];
    if (!file) return;
    try {
      accept(JSON.parse(await file.text()), file.name);
    } catch (e) {
      showError(e instanceof SyntaxError ? `${file.name} is not JSON: ${e.message}` : e.message);
    }
    $("load").value = "";
  });
  if (document.body.dataset.corpus === "1") {
    try {
      accept(await api.corpus(), "the server's results file");
    } catch (e) {
      showError(`Cannot read the results file: ${e.message}`);
    }
  } else {
    $("summary").textContent = "No results file was given (python -m viewer --corpus FILE): load one with the button.";
  }
  document.body.dataset.ready = "1";
}

init();

// The page's wiring: state, events, and the order of requests. Drawing is in heatmap.js and
// overview.js, panels in panels.js, the analysis panels (heads table, lens, ablation, minimal
// pair, findings) in analysis.js, the value side (value ledger, attribution, play, walk) in
// valueside.js, the Generate panel in generate.js, the API client in api.js, the URL in permalink.js.

import { createAnalysis } from "./analysis.js";
import { GeneratePanel } from "./generate.js";
import { Latest, api } from "./api.js";
import { codeToP } from "./colors.js";
import { Heatmap, drawLegend } from "./heatmap.js";
import { liveOnlyControls } from "./liveonly.js";
import { markOverview, renderOverview } from "./overview.js";
import { markToken, renderLedger, renderNext, renderQK, renderTokens, renderTopK } from "./panels.js";
import { readPermalink, writePermalink } from "./permalink.js";
import { textPresets } from "./presets.js";
import { el, tokenSpan } from "./text.js";
import { createValueSide } from "./valueside.js";

const $ = (id) => document.getElementById(id);
const S = {
  model: null, run: null, input: null,
  reran: false, rerun: null,               // the one automatic re-run of a dropped run (onRun)
  layer: 0, head: 0, query: null, key: null, ignoreSink: false, scale: "linear",
  heads: new Map(), headBytes: 0, rows: new Map(), overview: null,
  latest: { head: new Latest(), query: new Latest(), ledger: new Latest(), run: new Latest(), overview: new Latest() },
};
const HEAD_CACHE_BYTES = 64 << 20;
const heatmap = new Heatmap($("heatmap"));
let analysis = null;                       // the analysis panels (analysis.js), made in init()
let valueSide = null;                      // value ledger, attribution, play, walk (valueside.js), made in init()
let generate = null;                       // the Generate panel (generate.js), made in init()
window.__viewer = { heatmap, state: S };   // read by the browser tests

// -- messages -------------------------------------------------------------------------------------
function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}
const setStatus = (text) => { $("status").textContent = text; };

// After an input error the page still shows the previous run: dim it and say so until a run succeeds.
function markStale(stale) {
  const main = document.querySelector("main");
  if (!stale || !S.run) {
    delete main.dataset.stale;
    return;
  }
  main.dataset.stale = "1";
  const T = S.run.n_tokens;
  setStatus(`Not of the text above: the tokens and panels below are still the previous run's (${T} token${T === 1 ? "" : "s"}), dimmed until Run succeeds.`);
}

// A request on the current run. If the server dropped the run from its memory (other tabs or clients
// needed the room), the sentence is run again and the request retried, once per tab: a run dropped a
// second time is reported instead, so that two tabs never take turns evicting each other's run.
// Requests that fail together share the one re-run (S.rerun).
async function onRun(request) {
  const handle = S.run.handle;
  try {
    return await request(handle);
  } catch (e) {
    if (!e.expired || !S.input) throw e;
    if (S.run.handle !== handle) return request(S.run.handle);      // already run again meanwhile
    if (!S.rerun) {
      if (S.reran) {
        throw new Error("The server dropped this run from its memory again: other tabs or clients need the " +
          "room. Press Run to compute it again, or start the viewer with a larger --cache-mb.");
      }
      S.reran = true;
      S.rerun = api.run(S.input).then((run) => {
        S.run = run;
        setStatus("The server had dropped this run from its memory (other tabs or clients needed the room): " +
          "the sentence was run again, once; if it is dropped again you will be told.");
        return run;
      }).finally(() => { S.rerun = null; });
    }
    return request((await S.rerun).handle);
  }
}

// -- input ----------------------------------------------------------------------------------------
function readInput() {
  const raw = $("sentence").value, bos = $("bos").checked;
  if (S.model.has_tokenizer) {
    if (!raw) throw new Error("Type a sentence first (or pick a preset).");
    return { payload: { text: raw, bos }, view: { text: raw, ids: null, bos } };
  }
  const parts = raw.split(/[\s,]+/).filter(Boolean);
  if (!parts.length || !parts.every((p) => /^\d+$/.test(p)))
    throw new Error(`This model has no tokenizer: type token ids (0 to ${S.model.vocab_size - 1}) separated by spaces.`);
  return { payload: { ids: parts.map(Number), bos }, view: { ids: parts.join(","), text: null, bos } };
}

function view() {
  const v = { ...S.inputView, layer: S.layer, head: S.head, q: S.query, k: S.key, sink: S.ignoreSink, scale: S.scale,
    sampling: generate.view() };
  return v;
}

// given: an input already made ({ payload, view }), as runGenerated makes it; else the sentence box's.
async function runSentence(restore = null, given = null) {
  let input;
  try {
    input = given ?? readInput();
  } catch (e) {
    S.latest.run.cancel();               // a run still on its way belongs to the text before
    showError(e.message);
    markStale(true);
    return;
  }
  showError("");
  const current = S.latest.run.begin(), t0 = performance.now();
  $("run").disabled = true;
  setStatus("running the model…");
  let run;
  try {
    run = await api.run(input.payload);
  } catch (e) {
    if (current()) { showError(e.message); markStale(true); }
    return;
  } finally {
    $("run").disabled = false;
  }
  if (!current()) return;
  if (S.run && S.run.handle !== run.handle) {      // another sentence: its lists are not ours
    $("topk").replaceChildren();
    $("next-token").replaceChildren();
  }
  S.run = run;
  markStale(false);
  S.input = input.payload;
  S.inputView = input.view;
  S.overview = null;
  const T = run.n_tokens;
  const r = restore || {};
  S.layer = clamp(r.layer ?? S.layer, S.model.n_layer);
  S.head = clamp(r.head ?? S.head, S.model.n_head);
  S.query = clamp(r.q ?? T - 1, T);
  S.key = r.k != null && r.k < T ? r.k : null;
  renderTokens($("tokens"), run.tokens, S.query, (i) => selectQuery(i));
  $("export-npz").href = api.traceUrl(run.handle);
  $("export-npz").download = `gpt2np-${S.model.name}-${T}tok.npz`;
  await showHead();
  const ms = performance.now() - t0;
  document.body.dataset.firstHeatmapMs = ms.toFixed(1);
  const how = run.saved ? "saved in this file" : run.cached ? `from the cache (its forward pass took ${run.elapsed_ms} ms)` : `forward pass ${run.elapsed_ms} ms`;
  setStatus(`${T} token${T === 1 ? "" : "s"} · ${how} · first heatmap on screen ${ms.toFixed(0)} ms after Run`);
  writePermalink(view(), !restore);
  loadOverview();
  analysis.runChanged();
  analysis.queryChanged();
  valueSide.runChanged();
  valueSide.queryChanged();
  generate.runChanged();
}

// -- Generate: the new run (POST .../generate) is loaded as any run, by its exact ids --------------
async function runGenerated(result) {
  const ids = result.bos ? result.ids.slice(1) : result.ids, bos = result.bos;
  $("sentence").value = result.text ?? ids.join(" ");
  const view = result.text != null ? { text: result.text, ids: null, bos } : { ids: ids.join(","), text: null, bos };
  await runSentence(null, { payload: { ids, bos }, view });
}

// Put a text in the sentence box and run it (the pair panel's presets).
async function runText(text) {
  $("sentence").value = text;
  await runSentence();
}

const clamp = (v, n) => Math.max(0, Math.min(n - 1, Number(v) || 0));

// -- the heatmap ----------------------------------------------------------------------------------
async function headData(layer, head) {
  const key = `${S.run.handle}|${layer}|${head}`;
  if (S.heads.has(key)) {
    const hit = S.heads.get(key);
    S.heads.delete(key);
    S.heads.set(key, hit);
    return hit;
  }
  const data = await onRun((h) => api.pattern(h, layer, head));
  S.heads.set(key, data);
  S.headBytes += data.codes.length;
  for (const [k, v] of S.heads) {
    if (S.headBytes <= HEAD_CACHE_BYTES) break;
    S.heads.delete(k);
    S.headBytes -= v.codes.length;
  }
  return data;
}

async function showHead() {
  if (!S.run) return;
  const current = S.latest.head.begin(), { layer, head } = S;
  $("layer").value = layer;
  $("head").value = head;
  $("layer-value").textContent = layer;
  $("head-value").textContent = head;
  $("heatmap-title").textContent = `blocks.${layer}.attn.hook_pattern[${head}]`;
  analysis.headChanged(layer, head);
  valueSide.headChanged(layer, head);
  const spinner = setTimeout(() => { $("heatmap-loading").hidden = false; }, 150);
  let data;
  try {
    data = await headData(layer, head);
  } catch (e) {
    showError(e.message);
    return;
  } finally {
    clearTimeout(spinner);
    if (current()) $("heatmap-loading").hidden = true;
  }
  if (!current()) return;
  heatmap.query = S.query;
  heatmap.key = S.key;
  heatmap.setData({ ...data, tokens: S.run.tokens, layer, head });
  Object.assign($("heatmap").dataset, { layer, head, tokens: data.T, handle: S.run.handle });
  markOverview($("overview"), layer, head);
  writePermalink(view());
  refreshQuery();
}

function setLayerHead(layer, head) {
  layer = clamp(layer, S.model.n_layer);
  head = clamp(head, S.model.n_head);
  if (layer === S.layer && head === S.head) return;
  S.layer = layer;
  S.head = head;
  showHead();
}

// A layer, head and query at once (the patching panel's cells), shown in the heatmap.
function openHead(layer, head, query) {
  if (!S.run) return;
  const before = S.query;
  S.query = clamp(query, S.run.n_tokens);
  closeLedger(false);
  markToken($("tokens"), S.query);
  S.layer = clamp(layer, S.model.n_layer);
  S.head = clamp(head, S.model.n_head);
  showHead();
  if (S.query !== before) { analysis.queryChanged(); valueSide.queryChanged(); }
  $("heatmap-title").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

// -- the selected query -----------------------------------------------------------------------------
function selectQuery(i, keepKey = false) {
  if (!S.run) return;
  const before = S.query;
  S.query = clamp(i, S.run.n_tokens);
  if (!keepKey) closeLedger(false);
  heatmap.setSelection(S.query, S.key);
  markToken($("tokens"), S.query);
  writePermalink(view());
  refreshQuery();
  if (S.query !== before) { analysis.queryChanged(); valueSide.queryChanged(); }
}

async function refreshQuery() {
  if (!S.run || S.query == null) return;
  const current = S.latest.query.begin(), { layer, head, query, ignoreSink } = S;
  let panel, next;
  try {
    [panel, next] = await Promise.all([
      onRun((h) => api.query(h, layer, head, query, ignoreSink)),
      onRun((h) => api.next(h, query)),
    ]);
  } catch (e) {
    showError(e.message);
    return;
  }
  if (!current()) return;
  $("query-label").replaceChildren(el("span", { className: "pos", text: String(query) }), tokenSpan(panel.query.token));
  $("next-pos").textContent = String(query);
  renderTopK($("topk"), panel, S.scale, (k) => openLedger(k));
  renderNext($("next-token"), next, S.scale, (t) => analysis.followToken(t));
  renderQK($("qk-body"), panel, S.key, (k) => openLedger(k), S.scale);
  Object.assign($("topk").dataset, { layer, head, query, ignoreSink: ignoreSink ? "1" : "0" });
  if (S.key != null) openLedger(S.key);
}

// -- the ledger ---------------------------------------------------------------------------------------
async function exactRow(layer, head, query) {
  const key = `${S.run.handle}|${layer}|${head}|${query}`;
  if (!S.rows.has(key)) {
    if (S.rows.size > 4000) S.rows.clear();
    S.rows.set(key, onRun((h) => api.row(h, layer, head, query)).catch((e) => { S.rows.delete(key); throw e; }));
  }
  return S.rows.get(key);
}

async function openLedger(key) {
  if (!S.run || S.query == null) return;
  S.key = key;
  heatmap.setSelection(S.query, key);
  for (const tr of $("qk-body").querySelectorAll("tr[data-key]")) tr.classList.toggle("selected", Number(tr.dataset.key) === key);
  writePermalink(view());
  const current = S.latest.ledger.begin(), { layer, head, query } = S;
  let data, row;
  try {
    [data, row] = await Promise.all([onRun((h) => api.ledger(h, layer, head, query, key)), exactRow(layer, head, query)]);
  } catch (e) {
    showError(e.message);
    return;
  }
  if (!current()) return;
  const cellP = key <= query ? row.p[key] : "0.0";
  renderLedger($("ledger-title"), $("ledger-body"), data, cellP);
  Object.assign($("ledger").dataset, { layer, head, query, key, cellP });
  $("ledger").hidden = false;
}

function closeLedger(update = true) {
  S.key = null;
  $("ledger").hidden = true;
  heatmap.setSelection(S.query, null);
  if (update) writePermalink(view());
}

// -- hover --------------------------------------------------------------------------------------------
let hoverTimer = null;
function showTooltip(event) {
  const cell = heatmap.hit(event.offsetX, event.offsetY);
  const tip = $("tooltip");
  if (!cell || cell.j == null) {
    tip.hidden = true;
    heatmap.setHover(null);
    return;
  }
  heatmap.setHover(cell);
  const { i, j } = cell, { layer, head } = S, tokens = S.run.tokens;
  const head1 = el("div", { className: "tt-head" }, "q ", el("span", { className: "pos", text: String(i) }), tokenSpan(tokens[i]),
    " → k ", el("span", { className: "pos", text: String(j) }), tokenSpan(tokens[j]));
  const value = el("div", { className: "tt-value" });
  if (j > i) value.textContent = "masked: the key comes after the query, p = 0";
  else {
    value.append("p ≈ ", el("b", { text: codeToP(heatmap.code(i, j)).toPrecision(3) }));
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(async () => {
      const row = await exactRow(layer, head, i).catch(() => null);
      if (row && heatmap.hover && heatmap.hover.i === i && heatmap.hover.j === j && layer === S.layer && head === S.head)
        value.replaceChildren("p = ", el("b", { testid: "tooltip-p", text: row.p[j] }), el("span", { className: "muted", text: " exact float32" }));
    }, 30);
  }
  tip.replaceChildren(head1, value);
  tip.hidden = false;
  // Fixed to the viewport, so the heatmap's scroll box never clips it; flipped near the edges.
  const pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
  const left = event.clientX + pad + w > window.innerWidth ? event.clientX - pad - w : event.clientX + pad;
  const top = event.clientY + pad + h > window.innerHeight ? event.clientY - pad - h : event.clientY + pad;
  tip.style.left = `${Math.max(4, left)}px`;
  tip.style.top = `${Math.max(4, top)}px`;
}

// -- overview -----------------------------------------------------------------------------------------
async function loadOverview() {
  const current = S.latest.overview.begin();
  try {
    const data = await onRun((h) => api.overview(h));
    if (!current()) return;
    S.overview = data;
    renderOverview($("overview"), data, S.scale, S, setLayerHead);
  } catch (e) {
    showError(e.message);
  }
}

// -- export -------------------------------------------------------------------------------------------
function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}
const exportTitle = () => `gpt2np · ${S.model.name} · blocks.${S.layer}.attn.hook_pattern[${S.head}] · ${S.run.n_tokens} tokens`;
const exportName = (ext) => `gpt2np-${S.model.name}-L${S.layer}H${S.head}.${ext}`;

// -- wiring -------------------------------------------------------------------------------------------
function setScale(scale) {
  S.scale = scale;
  $("scale-linear").classList.toggle("on", scale === "linear");
  $("scale-sqrt").classList.toggle("on", scale === "sqrt");
  $("scale-linear").setAttribute("aria-pressed", String(scale === "linear"));
  $("scale-sqrt").setAttribute("aria-pressed", String(scale === "sqrt"));
  heatmap.setScale(scale);
  drawLegend($("legend"), scale);
  if (S.overview) renderOverview($("overview"), S.overview, scale, S, setLayerHead);
  if (S.run) { writePermalink(view()); refreshQuery(); }
}

function bind() {
  $("run").addEventListener("click", () => runSentence());
  $("sentence").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runSentence(); }
  });
  $("preset").addEventListener("change", (e) => {
    if (!e.target.value) return;
    $("sentence").value = e.target.value;
    e.target.value = "";
    runSentence();
  });
  $("layer").addEventListener("input", (e) => setLayerHead(Number(e.target.value), S.head));
  $("head").addEventListener("input", (e) => setLayerHead(S.layer, Number(e.target.value)));
  $("ignore-sink").addEventListener("change", (e) => { S.ignoreSink = e.target.checked; writePermalink(view()); refreshQuery(); });
  $("scale-linear").addEventListener("click", () => setScale("linear"));
  $("scale-sqrt").addEventListener("click", () => setScale("sqrt"));
  $("ledger-close").addEventListener("click", () => closeLedger());
  $("export-png").addEventListener("click", async () => S.run && download(await heatmap.toPng(exportTitle(), $("legend")), exportName("png")));
  $("export-svg").addEventListener("click", () => S.run &&
    download(new Blob([heatmap.toSvg(exportTitle())], { type: "image/svg+xml" }), exportName("svg")));
  const canvas = $("heatmap");
  canvas.addEventListener("mousemove", showTooltip);
  canvas.addEventListener("mouseleave", () => { $("tooltip").hidden = true; heatmap.setHover(null); });
  canvas.addEventListener("click", (e) => {
    const cell = heatmap.hit(e.offsetX, e.offsetY);
    if (!cell) return;
    if (cell.j == null) selectQuery(cell.i);
    else if (cell.i === S.query) openLedger(cell.j);
    else { S.key = cell.j; selectQuery(cell.i, true); }
  });
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (!S.run || e.ctrlKey || e.metaKey || e.altKey) return;
    if (t.matches("textarea, select, input:not([type=checkbox])")) return;
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (moves[e.key]) {
      e.preventDefault();
      setLayerHead(S.layer + moves[e.key][0], S.head + moves[e.key][1]);
    } else if (e.key === "[" || e.key === "]") {
      e.preventDefault();
      selectQuery(S.query + (e.key === "]" ? 1 : -1));
    } else if (e.key === "Escape") closeLedger();
  });
  window.addEventListener("popstate", () => restore(readPermalink()));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { heatmap.refit(); analysis.refit(); }, 120);
  });
}

async function restore(v) {
  S.ignoreSink = v.sink;
  $("ignore-sink").checked = v.sink;
  $("bos").checked = v.bos;
  if (v.scale !== S.scale) setScale(v.scale);
  generate.restore(v.sampling);
  const source = v.ids != null ? v.ids.split(",").join(" ") : v.text;
  if (source == null) return false;
  $("sentence").value = source;
  await runSentence(v);
  return true;
}

async function init() {
  try {
    S.model = await api.model();
  } catch (e) {
    showError(`Cannot reach the viewer's server: ${e.message}`);
    return;
  }
  const presets = textPresets(S.model);
  $("preset").append(...presets.map((p) => el("option", { value: p.text, text: p.name })));
  drawLegend($("legend"), S.scale);
  bind();
  analysis = createAnalysis({ S, api, onRun, setLayerHead, openHead, runText, scale: () => S.scale });
  window.__viewer.analysis = analysis;
  valueSide = createValueSide({ S, api, onRun, setLayerHead });
  window.__viewer.valueSide = valueSide;
  generate = new GeneratePanel({ S, api, onRun, loadRun: runGenerated, changed: () => S.run && writePermalink(view()) });
  window.__viewer.generate = generate;
  if (api.saved) liveOnlyControls(api.saved);
  // A saved file opens at its own input (and the URL's view, if any); the live page at the URL's.
  if (!(await restore(api.saved ? api.saved.startView(readPermalink()) : readPermalink()))) {
    $("sentence").value = presets[0].text;
    await runSentence({});
  }
  document.body.dataset.ready = "1";
}

init();

// Direct logit attribution at the selected position (GET /api/runs/<h>/attribution =
// gpt2np.interventions.logit_attribution): one next-token logit, or the difference of two, split
// into the embeddings, every head's write, every MLP's output and the biases, each through the
// final LayerNorm (its scale frozen at this position) and wteᵀ. A sortable table; click a head to
// open it; each row lists the tokens that part pushes up and down most.

import { parseToken } from "./ablation.js";
import { Latest } from "./api.js";
import { el, loadingNote, problem, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const fmt = (v) => (v >= 0 ? "+" : "−") + Math.abs(v).toFixed(4);
const inModelOrder = (a, b) => a.order - b.order;
const SHOWN = 12;                      // rows shown before "show all", as the CLI prints 12 (gpt2np/cli/findings.py)

// Tokens a part pushes, with the change of their logit on hover.
const tokenList = (tokens) => el("span", { className: "push-list" }, ...tokens.map((t) =>
  el("span", { className: "push-tok", title: `logit ${t.effect >= 0 ? "+" : "−"}${Math.abs(t.effect).toPrecision(4)}` }, tokenSpan(t.token))));

const COLUMNS = [
  { key: "order", label: "part", title: "in the order they write into the residual stream", dir: 1, sort: inModelOrder },
  { key: "value", label: "contribution", title: "this part's share of the logit (signed)", dir: -1 },
  { key: "abs", label: "|contribution|", title: "the size of its share, either sign", dir: -1 },
];

export class AttributionPanel {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, api, onRun, setLayerHead }
    this.latest = new Latest();
    this.data = null;
    this.sortKey = "abs";
    this.sortDir = -1;
    this.showAll = false;
    for (const id of ["attr-token", "attr-versus"]) {
      $(id).addEventListener("change", () => this.refresh());
      $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.refresh(); } });
    }
    $("attr-reset").addEventListener("click", () => {
      $("attr-token").value = "";
      $("attr-versus").value = "";
      this.refresh();
    });
  }

  clear(message) {
    this.data = null;
    $("attr-body").replaceChildren(el("p", { className: "muted", text: message }));
    $("attribution-card").dataset.handle = "";
  }

  // Not on screen yet: not blank meanwhile, unless it already shows this run and position.
  waiting() {
    const S = this.ctx.S, d = this.data;
    if (d && S.run && d.handle === S.run.handle && d.position === S.query) return;
    this.data = null;
    this.key = null;
    this.latest.cancel();
    $("attr-body").replaceChildren(loadingNote("loading… (the attribution is computed when this card comes into view)"));
    $("attribution-card").dataset.handle = "";
  }

  async refresh() {
    const S = this.ctx.S;
    if (!S.run || S.query == null) return;
    const position = S.query, token = parseToken($("attr-token").value), versus = parseToken($("attr-versus").value);
    const key = JSON.stringify([S.run.handle, position, token, versus]);
    if (key === this.key) return;                 // already shown, or on its way
    const current = this.latest.begin();
    this.key = key;
    if (!this.data || this.data.handle !== S.run.handle || this.data.position !== position)
      $("attr-body").replaceChildren(loadingNote("loading the attribution…"));
    $("attr-body").dataset.loading = "1";
    try {
      const data = await this.ctx.onRun((h) => this.ctx.api.attribution(h, position, token, versus));
      if (!current()) return;
      this.data = data;
      this.render();
    } catch (e) {
      if (current()) {
        this.data = null;
        this.key = null;
        $("attr-body").replaceChildren(problem(e, "error small", "attr-error"));
      }
    } finally {
      if (current()) delete $("attr-body").dataset.loading;
    }
  }

  sortBy(key) {
    const column = COLUMNS.find((c) => c.key === key);
    this.sortDir = key === this.sortKey ? -this.sortDir : column.dir;
    this.sortKey = key;
    this.render();
  }

  rows() {
    const parts = this.data.parts.map((p, order) => ({ ...p, order, abs: Math.abs(p.value) }));
    const column = COLUMNS.find((c) => c.key === this.sortKey);
    const compare = column.sort || ((a, b) => a[column.key] - b[column.key]);
    return parts.sort((a, b) => this.sortDir * compare(a, b) || inModelOrder(a, b));
  }

  render() {
    const d = this.data, v = d.versus;
    const what = () => [`logit(`, tokenSpan(d.target.token), `)`, ...(v ? [" − logit(", tokenSpan(v.token), ")"] : [])];
    $("attr-title").replaceChildren(`after position ${d.position} `, tokenSpan(d.token), " · ", ...what());
    const summary = el("div", { className: "check-line " + (d.relative <= 1e-4 ? "ok" : "bad"), testid: "attr-sum" },
      "the model's ", ...what(), " = ", el("b", { testid: "attr-logit", text: d.logit.toFixed(6) }),
      "; the parts below sum to ", el("b", { testid: "attr-parts-sum", text: d.sum.toFixed(6) }),
      ` (relative difference ${d.relative.toExponential(1)}); final LayerNorm scale at this position, frozen: ${d.ln_final_scale.toPrecision(6)}`);
    const top = Math.max(1e-9, ...d.parts.map((p) => Math.abs(p.value)));
    const header = el("tr", {}, ...COLUMNS.map((c) => {
      const sorted = c.key === this.sortKey;
      const th = el("th", { className: c.key === "order" ? "" : "num", title: c.title },
        el("button", { className: "sort" + (sorted ? " on" : ""), testid: `attr-sort-${c.key}`, onclick: () => this.sortBy(c.key) },
          c.label, el("span", { className: "arrow", text: sorted ? (this.sortDir > 0 ? "▲" : "▼") : "" })));
      th.setAttribute("aria-sort", sorted ? (this.sortDir > 0 ? "ascending" : "descending") : "none");
      return th;
    }), el("th", { text: "pushes up most" }), el("th", { text: "pushes down most" }));
    const all = this.rows(), n = all.length, shown = this.showAll ? all : all.slice(0, SHOWN);
    const body = shown.map((p) => {
      const isHead = p.kind === "head";
      const fill = el("span", { className: "attr-fill " + (p.value >= 0 ? "pos-v" : "neg-v") });
      fill.style.width = `${(Math.abs(p.value) / top) * 50}%`;
      const open = () => { this.ctx.setLayerHead(p.layer, p.head); $("heatmap-title").scrollIntoView({ block: "nearest" }); };
      return el("tr", {
        testid: `attr-row-${p.name.replace(/\s+/g, "-")}`, className: `kind-${p.kind}` + (isHead ? " clickable" : ""),
        dataset: { name: p.name, kind: p.kind, value: String(p.value) },
        ...(isHead ? { tabIndex: 0, title: `open head ${p.name} in the heatmap`, onclick: open,
          onkeydown: (e) => { if (e.key === "Enter") open(); } } : {}),
      }, el("td", { className: "attr-name", text: p.name }),
      el("td", { className: "num attr-bar" }, el("span", { className: "attr-barbox" }, fill), el("span", { className: "v", text: fmt(p.value) })),
      el("td", { className: "num", text: p.abs.toFixed(4) }),
      el("td", {}, tokenList(p.up)), el("td", {}, tokenList(p.down)));
    });
    const which = (k) => ({ abs: `${k} largest`, value: `${k} ${this.sortDir < 0 ? "most positive" : "most negative"}`,
      order: `${this.sortDir > 0 ? "first" : "last"} ${k}` })[this.sortKey];
    const count = el("p", { className: "attr-count", testid: "attr-count", text: shown.length < n
      ? `the ${which(shown.length)} parts of ${n} (heads L.H, MLPs, embeddings, biases); ${n - shown.length} more below the cut`
      : `all ${n} parts (heads L.H, MLPs, embeddings, biases)` });
    if (shown.length < n || n > SHOWN) {
      const toggle = el("button", { className: "ghost-text", testid: "attr-show-all",
        text: shown.length < n ? `show all ${n} parts` : `show the ${which(SHOWN)} only`,
        onclick: () => { this.showAll = !this.showAll; this.render(); } });
      body.push(el("tr", { className: "attr-cut", testid: "attr-cut" }, el("td", { colSpan: COLUMNS.length + 2 },
        shown.length < n ? `··· ${n - shown.length} more parts, smaller in this order ··· ` : "", toggle)));
    }
    const table = el("table", { className: "attr-table", testid: "attr-table" }, el("thead", {}, header), el("tbody", {}, ...body));
    $("attr-body").replaceChildren(summary, count, el("div", { className: "attr-scroll" }, table));
    Object.assign($("attribution-card").dataset, { handle: d.handle, position: String(d.position),
      target: String(d.target.id), versus: v ? String(v.id) : "", sort: `${this.sortKey}:${this.sortDir > 0 ? "asc" : "desc"}` });
  }
}

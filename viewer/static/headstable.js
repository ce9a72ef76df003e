// Every head of the current sentence in one sortable table (GET /api/runs/<h>/heads, computed by
// gpt2np.findings.head_table): entropy, sink, previous, self, top column, value-weighted sink
// share, induction score and head type. Click a column to sort, a row to open that head.

import { el, tokenSpan } from "./text.js";

const byHead = (a, b) => a.layer - b.layer || a.index - b.index;

// key, header, tooltip, first sort direction, how to draw the cell.
const COLUMNS = [
  { key: "head", label: "head", title: "LAYER.HEAD", dir: 1, sort: byHead },
  { key: "type", label: "type", title: "head type: hover a type for its rule", dir: 1 },
  { key: "entropy", label: "entropy", unit: "bits", dir: -1, bar: "entropy_norm", digits: 2,
    title: "entropy of the attention row in bits; the bar is entropy ÷ its largest possible value (0 = one key, 1 = uniform)" },
  { key: "sink", label: "sink", unit: "pos 0", dir: -1, bar: "sink", title: "mean weight on position 0" },
  { key: "previous", label: "previous", unit: "i−1", dir: -1, bar: "previous", title: "mean weight on the previous token" },
  { key: "self", label: "self", unit: "i", dir: -1, bar: "self", title: "mean weight on the query itself (the diagonal)" },
  { key: "top_column_share", label: "top column", unit: "key · share", dir: -1, bar: "top_column_share",
    title: "the key that receives the most weight over all queries, and its share (a vertical bar)" },
  { key: "vw_sink_share", label: "vw sink", unit: "share", dir: -1, bar: "vw_sink_share",
    title: "value-weighted: the share of what the head moves (‖α·v·W_O‖) that comes from position 0. A sink has a high 'sink' and a low 'vw sink'." },
  { key: "induction", label: "induction", unit: "probe", dir: -1, bar: "induction",
    title: "on a probe of random tokens repeated twice: weight from each token of the second copy onto the token after its first occurrence" },
];

const fmt = (v, digits = 3) => (v == null ? "—" : Number(v).toFixed(digits));

export class HeadsTable {
  constructor(card, onPick) {
    this.card = card;
    this.table = card.querySelector("table");
    this.foot = card.querySelector(".heads-foot");
    this.onPick = onPick;
    this.data = null;
    this.sortKey = "head";
    this.sortDir = 1;
    this.current = { layer: 0, head: 0 };
  }

  clear(message) {
    this.data = null;
    this.table.tHead.replaceChildren();
    this.table.tBodies[0].replaceChildren();
    this.foot.replaceChildren(el("span", { className: "muted", text: message }));
    this.card.dataset.handle = "";
  }

  setData(data) {
    this.data = data;
    this.render();
  }

  sortBy(key) {
    const column = COLUMNS.find((c) => c.key === key);
    this.sortDir = key === this.sortKey ? -this.sortDir : column.dir;
    this.sortKey = key;
    this.render();
    this.table.parentElement.scrollTop = 0;            // the top of the new order
  }

  rows() {
    const column = COLUMNS.find((c) => c.key === this.sortKey);
    const value = (r) => (r[column.key] == null ? -Infinity : r[column.key]);
    const compare = column.sort || ((a, b) => (typeof value(a) === "string"
      ? value(a).localeCompare(value(b)) : value(a) - value(b)));
    return [...this.data.heads].sort((a, b) => this.sortDir * compare(a, b) || byHead(a, b));
  }

  render() {
    const d = this.data;
    const header = el("tr", {}, ...COLUMNS.map((c) => {
      const sorted = c.key === this.sortKey;
      const th = el("th", { className: c.bar ? "num" : "", title: c.title },
      el("button", { className: "sort" + (sorted ? " on" : ""), testid: `heads-sort-${c.key}`,
        onclick: () => this.sortBy(c.key) },
      c.label, c.unit ? el("span", { className: "unit", text: c.unit }) : null,
      el("span", { className: "arrow", text: sorted ? (this.sortDir > 0 ? "▲" : "▼") : "" })));
      th.setAttribute("aria-sort", sorted ? (this.sortDir > 0 ? "ascending" : "descending") : "none");
      return th;
    }));
    this.table.tHead.replaceChildren(header);
    this.table.tBodies[0].replaceChildren(...this.rows().map((r) => this.row(r, d)));
    this.card.dataset.handle = d.handle;
    this.card.dataset.sort = `${this.sortKey}:${this.sortDir > 0 ? "asc" : "desc"}`;
    this.mark(this.current.layer, this.current.head);
    this.renderFoot(d);
  }

  row(r, d) {
    const cells = COLUMNS.map((c) => {
      if (c.key === "head") return el("td", { className: "head-name", text: r.head });
      if (c.key === "type")
        return el("td", {}, el("span", { className: `type-pill type-${r.type}`, text: r.type, title: d.type_rules[r.type] }));
      // the bar in a track of its own, left of the digits: never under them
      const track = el("span", { className: "cellbar-track" });
      if (c.bar && r[c.bar] != null) {
        const fill = el("span", { className: "cellbar" });
        fill.style.width = `${Math.max(0, Math.min(1, r[c.bar])) * 100}%`;
        track.append(fill);
      }
      const value = c.key === "top_column_share"
        ? [el("span", { className: "topcol" }, el("span", { className: "pos", text: String(r.top_column) }),
          tokenSpan(r.top_column_token)), el("span", { className: "v", text: fmt(r.top_column_share) })]
        : [el("span", { className: "v", text: fmt(r[c.key], c.digits) })];
      return el("td", { className: "num stat" }, el("span", { className: "stat-cell" }, track, ...value));
    });
    const pick = () => this.onPick(r.layer, r.index);
    return el("tr", {
      testid: `heads-row-${r.layer}-${r.index}`, tabIndex: 0, title: `open head ${r.head} in the heatmap`,
      dataset: { layer: String(r.layer), head: String(r.index), type: r.type },
      onclick: pick, onkeydown: (e) => { if (e.key === "Enter") pick(); },
    }, ...cells);
  }

  renderFoot(d) {
    const counts = d.types.filter((t) => d.type_counts[t]).map((t) =>
      el("span", { className: `type-pill type-${t}`, title: d.type_rules[t], text: `${t} ${d.type_counts[t]}` }));
    const probe = d.probe
      ? `Induction scores come from a probe run once for the model: ${d.probe.length} random tokens repeated twice` +
        `${d.probe.bos ? " after <|endoftext|>" : ""} (seed ${d.probe.seed}); the other columns from this sentence (${d.n_tokens} tokens), averaged over query positions 1…${d.n_tokens - 1}.`
      : `No induction scores: ${d.probe_error}`;
    const rules = el("details", { className: "rules" }, el("summary", { text: "How a head's type is decided" }),
      el("ul", {}, ...d.types.map((t) => el("li", {}, el("span", { className: `type-pill type-${t}`, text: t }), " ", d.type_rules[t]))));
    this.foot.replaceChildren(el("div", { className: "type-counts" }, ...counts), el("p", { className: "muted small", text: probe }), rules);
  }

  // Highlight the head shown in the heatmap, and scroll the table's box (not the page) to it.
  mark(layer, head) {
    this.current = { layer, head };
    const box = this.table.parentElement, headH = this.table.tHead.offsetHeight;
    for (const tr of this.table.tBodies[0].rows) {
      const on = Number(tr.dataset.layer) === layer && Number(tr.dataset.head) === head;
      tr.classList.toggle("current", on);
      if (on && (tr.offsetTop < box.scrollTop + headH || tr.offsetTop + tr.offsetHeight > box.scrollTop + box.clientHeight))
        box.scrollTop = tr.offsetTop - headH - (box.clientHeight - headH) / 2;
    }
  }
}

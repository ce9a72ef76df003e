// The value ledger beside the Q·K panel (GET /api/runs/<h>/value = viewer/answers/ledger.py value_ledger):
// what the selected head moves at the selected query. The top keys' v and p·v as strips on one
// colour scale (so a small p fades its v), z = Σ p·v with the check against hook_z, the head's write
// z·W_O^h into the residual stream, every head's write size, the check against hook_attn_out,
// and the tokens the write would push up and down. Numbers are the server's float32 text.

import { Latest } from "./api.js";
import { el, problem, tokenSpan } from "./text.js";
import { maxAbsOf, vectorView } from "./vectors.js";

const $ = (id) => document.getElementById(id);
const short = (x) => Number(x).toPrecision(2);

function tokenList(tokens) {
  return el("span", { className: "push-list" }, ...tokens.map((t) =>
    el("span", { className: "push-tok", title: `logit ${Number(t.effect) >= 0 ? "+" : ""}${t.effect}` }, tokenSpan(t.token))));
}

export class ValuePanel {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, api, onRun, setLayerHead }
    this.latest = new Latest();
  }

  async refresh() {
    const S = this.ctx.S;
    if (!S.run || S.query == null) return;
    const { layer, head, query } = S, key = [S.run.handle, layer, head, query].join("|");
    if (key === this.key) return;                 // already shown, or on its way
    const current = this.latest.begin();
    this.key = key;
    try {
      const data = await this.ctx.onRun((h) => this.ctx.api.value(h, layer, head, query));
      if (current()) this.render(data);
    } catch (e) {
      if (!current()) return;
      this.key = null;
      $("value-body").replaceChildren(problem(e));
    }
  }

  render(d) {
    const q = d.query;
    $("value-title").replaceChildren(`layer ${d.layer}, head ${d.head}: query `,
      el("span", { className: "pos", text: String(q.position) }), tokenSpan(q.token));
    const maxAbs = maxAbsOf(d.z, ...d.keys.map((k) => k.v));
    const rows = d.keys.map((k, r) => el("tr", { testid: `value-key-${r}`, dataset: { key: String(k.position) } },
      el("td", {}, el("span", { className: "pos", text: String(k.position) }), tokenSpan(k.token)),
      el("td", { className: "num strong", text: k.p }),
      el("td", { className: "vcell" }, vectorView(k.v, { label: `v[${k.position}]`, maxAbs })),
      el("td", { className: "vcell" }, vectorView(k.pv, { label: `p·v[${k.position}]`, maxAbs }))));
    if (d.others.n > 0)
      rows.push(el("tr", { className: "others" }, el("td", { text: `+ ${d.others.n} other key${d.others.n > 1 ? "s" : ""}` }),
        el("td", { className: "num", text: short(d.others.p) }), el("td", { colSpan: 2, className: "muted small", text: "their p·v are in the sum too" })));
    const keys = el("table", { className: "value-keys" },
      el("thead", {}, el("tr", {}, ...["key", "p", "v (value vector)", "p · v"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows));

    const zOk = d.z_within_rounding;
    const zView = vectorView(d.z, { label: "z", name: `${d.z_name}[${q.position}, ${d.head}]`, maxAbs, testid: "value-z" });
    zView.querySelector("details").open = true;
    const zCheck = el("div", { className: "check-line " + (zOk ? "ok" : "bad"), testid: "value-z-check",
      text: `Σ p·v over all ${d.n_keys} keys, redone in float64 and rounded once: ${d.z_identical} of ${d.d_head} ` +
        `numbers the same float32 as hook_z, the largest difference ${d.z_max_abs_diff} ` +
        (zOk ? "(float32 rounding: the model summed in its own order)" : "— more than float32 rounding explains") });

    const norms = d.head_norms.map(Number), top = Math.max(1e-9, ...norms);
    const bars = el("div", { className: "head-norms", testid: "value-head-norms" }, ...norms.map((n, h) => {
      const bar = el("button", { className: "hn" + (h === d.head ? " current" : ""), testid: `value-head-norm-${h}`,
        title: `head ${d.layer}.${h}: ‖z·W_O‖ = ${d.head_norms[h]} (click to open it)`,
        onclick: () => this.ctx.setLayerHead(d.layer, h) }, el("span", { className: "hn-fill" }), el("span", { className: "hn-label", text: String(h) }));
      bar.firstChild.style.height = `${Math.max(2, (n / top) * 100)}%`;
      return bar;
    }));
    const a = d.attn_out;
    const attnCheck = el("div", { className: "check-line " + (a.ok ? "ok" : "bad"), testid: "value-attn-check",
      text: `Σ over the ${norms.length} heads of z·W_O^h, + b_O (‖b_O‖ = ${short(d.bias_norm)}), vs ${a.name}[${q.position}]: ` +
        `largest difference ${a.max_abs_diff}, relative ${a.relative} (bound ${a.bound})` });
    const pushes = el("div", { className: "pushes", testid: "value-pushes" },
      el("div", {}, el("span", { className: "muted", text: "raises " }), tokenList(d.pushes.up)),
      el("div", {}, el("span", { className: "muted", text: "lowers " }), tokenList(d.pushes.down)));

    $("value-body").replaceChildren(
      el("h4", { className: "value-step", text: "1 · weigh each key's value: p · v" }), keys,
      el("h4", { className: "value-step", text: "2 · add them up: z = Σ p · v" }), zView, zCheck,
      el("h4", { className: "value-step", text: "3 · write into the residual stream: z · W_O^h" }),
      el("p", { className: "muted small", text: `W_O^h = ${d.w_o}; ‖z · W_O^h‖ = ${d.write_norm}` }),
      vectorView(d.write, { label: "z · W_O^h", name: "this head's write", testid: "value-write" }),
      el("div", { className: "muted small", text: "every head's ‖z·W_O‖ at this token (click one to open it):" }), bars, attnCheck,
      el("h4", { className: "value-step", text: "4 · straight to the output from here" }),
      el("p", { className: "muted small", text: "The next-token logits this write alone would raise and lower most, through the final LayerNorm (its scale at this token) and the unembedding wteᵀ." }),
      pushes);
    Object.assign($("value-panel").dataset, { layer: String(d.layer), head: String(d.head), query: String(q.position), handle: this.ctx.S.run.handle });
  }
}

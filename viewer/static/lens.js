// The logit lens at the selected position (GET /api/runs/<h>/lens = gpt2np.interventions.logit_lens):
// a table depth × rank of the top-k next tokens read from the residual stream after each layer,
// and one token followed through every depth (by default the model's final top-1).

import { parseToken } from "./ablation.js";
import { weightCss } from "./colors.js";
import { Latest } from "./api.js";
import { el, loadingNote, problem, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const p3 = (p) => (p >= 0.001 ? Number(p).toFixed(3) : Number(p).toExponential(1));
const short = (s) => (s.layer < 0 ? "embed" : `L${s.layer}`);

export class LensPanel {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, api, onRun, scale() }
    this.latest = new Latest();
    this.target = null;               // null: the model's own top-1 at that position
    $("lens-target").addEventListener("change", () => this.setTarget(parseToken($("lens-target").value)));
    $("lens-reset").addEventListener("click", () => this.setTarget(null));
  }

  // load = false: the caller decides when to ask (analysis.js, once the lens is on screen).
  setTarget(target, label = null, load = true) {
    this.target = target;
    $("lens-target").value = target == null ? "" : label ?? (typeof target === "number" ? `#${target}` : target);
    if (load) this.refresh();
  }

  async refresh() {
    const S = this.ctx.S;
    if (!S.run || S.query == null) return;
    const current = this.latest.begin(), position = S.query, target = this.target;
    const shown = $("lens-card").dataset;
    if (shown.handle !== S.run.handle || shown.position !== String(position))
      $("lens-body").replaceChildren(loadingNote("loading the logit lens…"));
    $("lens-body").dataset.loading = "1";
    try {
      const data = await this.ctx.onRun((h) => this.ctx.api.lens(h, position, 5, target));
      if (current()) this.render(data);
    } catch (e) {
      if (!current()) return;
      $("lens-body").replaceChildren(problem(e));
    } finally {
      if (current()) delete $("lens-body").dataset.loading;
    }
  }

  render(d) {
    const scale = this.ctx.scale(), k = d.k, targetId = d.target.id;
    $("lens-title").replaceChildren(`at position ${d.position} `, tokenSpan(d.token),
      " · following ", tokenSpan(d.target.token), el("span", { className: "pos", text: ` #${targetId}` }));
    const head = el("tr", {}, el("th", { className: "corner", text: "rank" }), ...d.streams.map((s) =>
      el("th", { text: short(s), title: `${s.label}: ${s.name}`, className: s.layer === d.streams.length - 2 ? "final" : "" })));
    const rows = [];
    for (let r = 0; r < k; r++)
      rows.push(el("tr", {}, el("th", { text: String(r + 1) }), ...d.streams.map((s, depth) => {
        const t = s.top[r];
        if (!t) return el("td");
        const cell = el("td", { testid: `lens-cell-${depth}-${r}`, title: `${s.label}: ${JSON.stringify(t.token)} (#${t.id}) p = ${t.p}`,
          className: t.id === targetId ? "target" : "", dataset: { id: String(t.id), p: String(t.p) } },
        tokenSpan(t.token), el("span", { className: "lp", text: p3(t.p) }));
        cell.style.backgroundColor = weightCss(Math.min(1, t.p) * 0.5, scale);   // light: the text stays readable
        return cell;
      })));
    const follow = el("tr", { className: "follow" }, el("th", { className: "follow-label", testid: "lens-follow-label",
      title: `following ${JSON.stringify(d.target.token)} (#${targetId})` }, tokenSpan(d.target.token)), ...d.streams.map((s, depth) =>
      el("td", { testid: `lens-target-${depth}`, dataset: { p: String(s.target_p), rank: String(s.target_rank) } },
        el("span", { className: "lp", text: p3(s.target_p) }), el("span", { className: "rank", text: `#${s.target_rank}` }))));
    const table = el("table", { className: "lens-table", testid: "lens-table" }, el("thead", {}, head), el("tbody", {}, ...rows, follow));
    table.style.maxWidth = `${60 + 160 * d.streams.length}px`;        // columns of at most ~160 px
    $("lens-body").replaceChildren(table);
    Object.assign($("lens-card").dataset, { position: String(d.position), handle: d.handle, target: String(targetId) });
  }
}

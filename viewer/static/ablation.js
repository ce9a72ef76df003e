// Ablation beside the next-token list (POST /api/runs/<h>/ablate = gpt2np.interventions.ablate):
// run the sentence again with some heads' output hook_z replaced by 0 or by its mean, and show
// the next-token top-5 at the selected position before and after, and one token's change.

import { weightCss } from "./colors.js";
import { Latest } from "./api.js";
import { el, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const p4 = (p) => (p < 1e-4 && p > 0 ? Number(p).toExponential(2) : Number(p).toFixed(4));
const signed = (d) => (d >= 0 ? "+" : "−") + p4(Math.abs(d));

function bar(p, scale) {
  const fill = el("span", { className: "fill" });
  fill.style.width = `${Math.max(0.5, p * 100)}%`;
  fill.style.backgroundColor = weightCss(Math.min(1, Math.max(p, 0.15)), scale);
  return el("span", { className: "bar" }, fill);
}

// "#262" -> 262 (an id); any other text is sent as it is (one token, e.g. " big"); "" -> null.
export function parseToken(raw) {
  if (!raw) return null;
  return /^#\d+$/.test(raw.trim()) ? Number(raw.trim().slice(1)) : raw;
}

export class AblationPanel {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, onRun, scale() }
    this.mode = "zero";
    this.latest = new Latest();
    $("ablate-current").addEventListener("click", () => this.addCurrent());
    $("ablate-zero").addEventListener("click", () => this.setMode("zero"));
    $("ablate-mean").addEventListener("click", () => this.setMode("mean"));
    $("ablate-run").addEventListener("click", () => this.run());
    for (const id of ["ablate-heads", "ablate-token"])
      $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.run(); } });
  }

  headChanged(layer, head) {
    $("ablate-current").textContent = `+ ${layer}.${head}`;
    $("ablate-current").title = `add head ${layer}.${head} (the one in the heatmap) to the heads to ablate`;
  }

  addCurrent() {
    const { layer, head } = this.ctx.S, name = `${layer}.${head}`;
    const heads = $("ablate-heads").value.split(/[\s,;]+/).filter(Boolean);
    if (!heads.includes(name)) heads.push(name);
    $("ablate-heads").value = heads.join(" ");
  }

  setMode(mode) {
    this.mode = mode;
    for (const m of ["zero", "mean"]) {
      $(`ablate-${m}`).classList.toggle("on", m === mode);
      $(`ablate-${m}`).setAttribute("aria-pressed", String(m === mode));
    }
  }

  setToken(token) {
    $("ablate-token").value = `#${token.id}`;
    $("ablate-token").title = `token #${token.id}: ${JSON.stringify(token.token)}`;
  }

  // The result belongs to one run and one position: drop it when either changes.
  clear() {
    this.latest.cancel();
    $("ablate-body").replaceChildren();
    $("ablate-error").hidden = true;
    delete $("ablation").dataset.position;
  }

  async run() {
    const S = this.ctx.S;
    if (!S.run || S.query == null) return;
    const current = this.latest.begin(), position = S.query;
    if (!$("ablate-heads").value.trim()) this.addCurrent();      // nothing typed: the head on screen
    const body = { heads: $("ablate-heads").value, mode: this.mode, position, token: parseToken($("ablate-token").value) };
    $("ablate-error").hidden = true;
    $("ablate-run").disabled = true;
    $("ablate-body").replaceChildren(el("p", { className: "muted small", text: "running the model twice (as is, and ablated)…" }));
    try {
      const r = await this.ctx.onRun((h) => this.ctx.api.ablate(h, body));
      if (current()) this.render(r);
    } catch (e) {
      if (current()) {
        $("ablate-body").replaceChildren();
        $("ablate-error").textContent = e.message;
        $("ablate-error").hidden = false;
      }
    } finally {
      $("ablate-run").disabled = false;
    }
  }

  render(r) {
    const scale = this.ctx.scale();
    const change = new Map(r.changes.map((c) => [c.id, c]));
    const list = (items, side) => el("ol", { className: "ranked abl-list", testid: `ablate-${side}` }, ...items.map((t, i) => {
      const c = change.get(t.id);
      const delta = side === "after" ? el("span", { className: `delta ${c.delta >= 0 ? "up" : "down"}`, text: signed(c.delta),
        title: `p before ${p4(c.p_before)}, rank ${c.rank_before} → ${c.rank_after}` }) : null;
      return el("li", { testid: `ablate-${side}-${i}`, dataset: { id: String(t.id), p: String(t.p) } },
        tokenSpan(t.token), bar(t.p, scale), el("span", { className: "num", text: p4(t.p) }), delta);
    }));
    const what = `${r.mode}-ablation of ${r.heads.join(", ")} · next token after position ${r.position}`;
    const head = el("p", { className: "abl-summary" }, what, " ", tokenSpan(r.after_token), " · ",
      el("b", { text: r.top1_changed ? "top-1 changed" : "top-1 unchanged" }));
    const cols = el("div", { className: "abl-cols" },
      el("div", {}, el("h4", { text: "before" }), list(r.before, "before")),
      el("div", {}, el("h4", { text: `after (${r.heads.join(", ")} ${r.mode === "zero" ? "zeroed" : "set to their mean"})` }), list(r.after, "after")));
    const parts = [head, cols];
    if (r.token) {
      const t = r.token;
      parts.push(el("div", { className: `abl-token ${t.delta >= 0 ? "up" : "down"}`, testid: "ablate-token-change",
        dataset: { id: String(t.id), pBefore: String(t.p_before), pAfter: String(t.p_after), delta: String(t.delta) } },
      "p(", tokenSpan(t.token), ") ", el("b", { text: p4(t.p_before) }), " → ", el("b", { text: p4(t.p_after) }),
      el("span", { className: "delta", text: `  (${signed(t.delta)})` }),
      el("span", { className: "muted", text: ` · rank ${t.rank_before} → ${t.rank_after}` })));
    }
    $("ablate-body").replaceChildren(...parts);
    Object.assign($("ablation").dataset, { position: String(r.position), heads: r.heads.join(" "), mode: r.mode, handle: r.handle });
  }
}

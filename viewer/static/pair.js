// Minimal pairs (POST /api/runs/<a>/pair = gpt2np.interventions.attention_changes): sentence A is
// the current run, sentence B is typed here; heads are ranked by how much their attention changes
// (mean total-variation distance of the rows from the first difference on). Clicking a head draws
// its pattern in A, in B, and |A − B| on the tokens the two sentences share.

import { Heatmap } from "./heatmap.js";
import { pairPresets } from "./presets.js";
import { Latest } from "./api.js";
import { el, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const SHOWN = 12;                      // heads listed before "show all"

export class PairPanel {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, api, onRun, runText(text), scale() }
    this.data = null;
    this.selected = null;
    this.showAll = false;
    this.latest = new Latest();
    this.maps = ["a", "b", "diff"].map((id) => new Heatmap($(`pair-map-${id}`)));
    $("pair-run").addEventListener("click", () => this.compare());
    $("pair-b").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.compare(); }
    });
    const presets = pairPresets(ctx.S.model);
    if (presets.length) $("pair-preset").append(...presets.map((p, i) => el("option", { value: String(i), text: p.name })));
    else $("pair-preset").hidden = true;
    $("pair-preset").addEventListener("change", (e) => {
      const preset = presets[Number(e.target.value)];
      e.target.value = "";
      if (preset) this.usePreset(preset);
    });
  }

  input() {
    const raw = $("pair-b").value;
    if (this.ctx.S.model.has_tokenizer || !raw.trim()) return { text: raw };
    const parts = raw.split(/[\s,]+/).filter(Boolean);
    return parts.every((p) => /^\d+$/.test(p)) ? { ids: parts.map(Number) } : { text: raw };
  }

  // A preset fills B; it never replaces the sentence above by itself: when that sentence is not
  // the preset's A, the note says so and offers a button that puts A there.
  async usePreset(preset) {
    $("pair-b").value = preset.b;
    if ($("sentence").value === preset.a && this.ctx.S.run) return this.compare();
    this.clear();
    const use = el("button", { className: "accent", testid: "pair-use-a", text: "Put A in the sentence box and compare",
      onclick: async () => { await this.ctx.runText(preset.a); await this.compare(); } });
    $("pair-note").replaceChildren(el("span", { testid: "pair-preset-note",
      text: `This pair's sentence A is “${preset.a}”; the sentence above is different. ` }), use);
  }

  // Sentence A changed: the ranking belongs to the old A.
  runChanged() {
    const S = this.ctx.S;
    $("pair-a").replaceChildren(...S.run.tokens.map((t) => tokenSpan(t, "tok pair-tok")));
    if (this.data && this.data.a.handle !== S.run.handle) this.clear("Sentence A changed: press Compare.");
  }

  clear(message = "") {
    this.latest.cancel();
    this.data = null;
    this.selected = null;
    $("pair-note").textContent = message;
    $("pair-next").replaceChildren();
    $("pair-ranking").replaceChildren();
    $("pair-maps").hidden = true;
    $("pair-card").dataset.b = "";
  }

  async compare() {
    const S = this.ctx.S;
    if (!S.run) return;
    const current = this.latest.begin();
    $("pair-error").hidden = true;
    $("pair-run").disabled = true;
    $("pair-note").textContent = "running sentence B and comparing every head…";
    try {
      const data = await this.ctx.onRun((h) => this.ctx.api.pair(h, this.input()));
      if (!current()) return;
      this.data = data;
      this.showAll = false;
      this.render();
      await this.select(data.heads[0]);
    } catch (e) {
      if (!current()) return;
      this.clear();
      $("pair-error").textContent = e.message;
      $("pair-error").hidden = false;
    } finally {
      $("pair-run").disabled = false;
    }
  }

  render() {
    const d = this.data, al = d.alignment;
    const mode = al.mode === "positional" ? "positional" : "shared tokens";
    // Different token counts: say so, with both tokenizations and the alignment, before any number.
    const tokens = (side, alone) => el("div", { className: "pair-tokens", testid: `pair-tokens-${side}` },
      el("b", { text: `${side.toUpperCase()} (${d[side].tokens.length} tokens)` }),
      ...d[side].tokens.map((t, i) => {
        const chip = tokenSpan(t, `tok pair-tok${alone.has(i) ? " unaligned" : ""}`);
        chip.title = alone.has(i) ? `position ${i}: no partner in the other sentence` : `position ${i}`;
        return chip;
      }));
    const shifted = al.mode === "positional" ? [] : [
      tokens("a", new Set(al.unaligned_a)), tokens("b", new Set(al.unaligned_b)),
      el("div", { className: "muted small", testid: "pair-alignment",
        text: `aligned (A ↔ B): ${al.pairs.map(([i, j]) => `${i}↔${j}`).join(" ")}; outlined tokens have no partner.` })];
    $("pair-note").replaceChildren(el("span", { className: `align-badge ${al.mode}`, testid: "pair-mode", text: mode }), " ",
      el("span", { testid: "pair-note-text", text: al.note }), ...shifted,
      el("span", { className: "muted", text: ` · queries from position ${al.first_difference} on are scored; earlier ones see the same tokens in A and B and cannot change (attention is causal).` }));
    const next = (side, label) => el("div", { className: "pair-next-row" }, el("b", { text: label }),
      ...d[side].next.map((t) => el("span", { className: "pair-next-tok" }, tokenSpan(t.token), el("span", { className: "num", text: ` ${Number(t.p).toFixed(3)}` }))));
    $("pair-next").replaceChildren(el("span", { className: "muted small", text: "next token after the last one:" }),
      next("a", "A"), next("b", "B"));
    this.renderRanking();
    $("pair-card").dataset.b = d.b.handle;
  }

  renderRanking() {
    const heads = this.showAll ? this.data.heads : this.data.heads.slice(0, SHOWN);
    const top = Math.max(1e-9, this.data.heads[0].mean_change);
    const items = heads.map((h, r) => {
      const fill = el("span", { className: "fill" });
      fill.style.width = `${(h.mean_change / top) * 100}%`;
      return el("li", {
        testid: `pair-rank-${r}`, className: this.selected === h.head ? "selected" : "", tabIndex: 0,
        dataset: { head: h.head, mean: String(h.mean_change) }, title: `show head ${h.head} in A, B and |A − B|`,
        onclick: () => this.select(h), onkeydown: (e) => { if (e.key === "Enter") this.select(h); },
      }, el("span", { className: "pos", text: String(r + 1) }), el("span", { className: "head-name", text: h.head }),
      el("span", { className: "bar" }, fill), el("span", { className: "num", text: h.mean_change.toFixed(3) }),
      el("span", { className: "muted small max" }, `max ${h.max_change.toFixed(3)} at `, tokenSpan(h.max_query_token)));
    });
    const more = this.data.heads.length > SHOWN ? el("li", { className: "more" }, el("button", {
      className: "ghost-text", testid: "pair-show-all", text: this.showAll ? `show the top ${SHOWN}` : `show all ${this.data.heads.length} heads`,
      onclick: () => { this.showAll = !this.showAll; this.renderRanking(); },
    })) : null;
    $("pair-ranking").replaceChildren(...items, ...(more ? [more] : []));
  }

  // The three heatmaps of one head: A, B, and |A − B| on the aligned tokens.
  async select(h) {
    const d = this.data, current = this.latest.watch(), { layer, index: head } = h;
    this.selected = h.head;
    for (const li of $("pair-ranking").querySelectorAll("li[data-head]")) li.classList.toggle("selected", li.dataset.head === h.head);
    const api = this.ctx.api;
    let a, b, diff;
    try {
      [a, b, diff] = await Promise.all([api.pattern(d.a.handle, layer, head), api.pattern(d.b.handle, layer, head),
        api.pairDiff(d.a.handle, d.b.handle, layer, head)]);
    } catch (e) {
      if (!e.expired || !current()) throw e;
      return this.compare();           // A or B left the server's cache: run the pair again
    }
    if (!current()) return;
    const pairs = d.alignment.pairs;
    const label = ([i, j]) => (d.a.tokens[i] === d.b.tokens[j] ? d.a.tokens[i] : `${d.a.tokens[i]}/${d.b.tokens[j]}`);
    $("pair-maps").hidden = false;
    const scale = this.ctx.scale();
    [[a, d.a.tokens], [b, d.b.tokens], [diff, pairs.map(label)]].forEach(([data, tokens], n) => {
      this.maps[n].setScale(n === 2 ? "sqrt" : scale);          // differences are small: √ shows them
      this.maps[n].setData({ ...data, tokens, layer, head });
    });
    $("pair-title-a").textContent = `A · blocks.${layer}.attn.hook_pattern[${head}]`;
    $("pair-title-b").textContent = `B · blocks.${layer}.attn.hook_pattern[${head}]`;
    $("pair-title-diff").textContent = `|A − B| on the ${pairs.length} aligned tokens (√ scale)`;
    Object.assign($("pair-maps").dataset, { layer: String(layer), head: String(head), handle: d.a.handle, other: d.b.handle });
  }

  refit() {
    if (!$("pair-maps").hidden) for (const m of this.maps) m.refit();
  }
}

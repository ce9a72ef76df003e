// Walk one token through one block (GET /api/runs/<h>/walk = viewer/answers/walk.py): the selected query
// of the selected layer, step by step — ln_1 → q, k, v → scores → softmax → p·V → z → W_O →
// + residual → ln_2 → MLP → + residual — each with its formula, the trace's numbers, and the
// check of the step redone on the server. Each step also highlights the panel whose numbers it
// comes from (the Q·K panel, the value ledger, the token). Back / next, or autoplay (autoplay.js);
// any key or click stops autoplay. The walk costs the server a forward pass, so it is asked for
// only once the card is (nearly) on screen.

import { Latest } from "./api.js";
import { Autoplay } from "./autoplay.js";
import { el, problem, tokenSpan } from "./text.js";
import { vectorView } from "./vectors.js";

const $ = (id) => document.getElementById(id);
const AUTOPLAY_MS = 1800;

// Each step highlights the elements its numbers come from (the token, the Q·K panel and its
// score or p column, the value ledger's keys, z or write): the page's <body> carries the step as
// data-walk-focus while the walk is on screen, and viewer.css says what each step highlights, so
// the highlight survives the panels being redrawn.
export class WalkPanel {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, api, onRun }
    this.latest = new Latest();
    this.data = null;
    this.step = 0;
    this.visible = false;
    this.stale = true;
    this.auto = new Autoplay({ button: "walk-play", tick: () => this.tick(),
      show: (on) => { $("walk-play").textContent = on ? "■ stop" : "autoplay"; } });
    $("walk-back").addEventListener("click", () => this.go(this.step - 1));
    $("walk-next").addEventListener("click", () => this.go(this.step + 1));
    $("walk-play").addEventListener("click", () => (this.auto.playing ? this.stopAutoplay() : this.autoplay()));
    new IntersectionObserver((entries) => {
      this.visible = entries.some((e) => e.isIntersecting);
      if (this.visible && this.stale) this.refresh();
      this.focus();
    }, { rootMargin: "200px 0px" }).observe($("walk-card"));
  }

  // The run, layer, head or query changed: reload now if on screen, else when it comes into view.
  changed() {
    this.stale = true;
    if (this.visible) this.refresh();
  }

  async refresh() {
    const S = this.ctx.S;
    if (!S.run || S.query == null) return;
    this.stale = false;
    const { layer, head, query } = S, key = [S.run.handle, layer, head, query].join("|");
    if (key === this.key) return;                 // already shown, or on its way
    const current = this.latest.begin();
    this.key = key;
    $("walk-body").dataset.loading = "1";
    if (!this.data) $("walk-body").replaceChildren(el("p", { className: "muted loading-note", text: "loading the walk…" }));
    try {
      const data = await this.ctx.onRun((h) => this.ctx.api.walk(h, layer, head, query));
      if (!current()) return;
      this.data = data;
      this.render();
    } catch (e) {
      if (!current()) return;
      this.key = null;
      this.data = null;
      this.focus();
      $("walk-body").replaceChildren(problem(e));
    } finally {
      if (current()) delete $("walk-body").dataset.loading;
    }
  }

  go(step) {
    if (!this.data) return;
    this.step = Math.max(0, Math.min(this.data.steps.length - 1, step));
    this.render();
  }

  autoplay() {
    if (!this.data) return;
    if (this.step >= this.data.steps.length - 1) this.go(0);
    this.auto.start(AUTOPLAY_MS);
  }

  tick() {
    if (this.step >= this.data.steps.length - 1) this.stopAutoplay();
    else this.go(this.step + 1);
  }

  stopAutoplay() { this.auto.stop(); }

  // Highlight what the current step comes from, while the walk is on screen.
  focus() {
    const id = this.data && this.visible ? this.data.steps[this.step].id : null;
    if (id) document.body.dataset.walkFocus = id;
    else delete document.body.dataset.walkFocus;
  }

  render() {
    const d = this.data, n = d.steps.length;
    this.step = Math.min(this.step, n - 1);
    const s = d.steps[this.step];
    $("walk-title").replaceChildren(`block ${d.layer}, head ${d.head}, token `,
      el("span", { className: "pos", text: String(d.query.position) }), tokenSpan(d.query.token));
    $("walk-count").textContent = `step ${this.step + 1} of ${n}`;
    $("walk-back").disabled = this.step === 0;
    $("walk-next").disabled = this.step === n - 1;
    $("walk-steps").replaceChildren(...d.steps.map((t, i) => el("li", {},
      el("button", { className: "walk-chip" + (i === this.step ? " on" : "") + (i < this.step ? " done" : ""),
        testid: `walk-chip-${i}`, text: t.op, title: t.formula, onclick: () => this.go(i) }))));
    const scalars = s.scalars.map((x, i) => el("span", { className: "walk-scalar" },
      x.label, ...(x.token != null ? [" ", tokenSpan(x.token, "tok vec-token")] : []), " = ",
      el("b", { testid: `walk-scalar-${i}`, text: x.value })));
    const vectors = s.vectors.map((v, i) => vectorView(v.values,
      { label: v.label, token: v.token, name: v.name, testid: `walk-vector-${i}` }));
    const checks = s.checks.map((c, i) => el("div", { className: "check-line ok", testid: `walk-check-${i}`,
      text: `${c.what}: largest difference ${c.max_abs_diff} (relative ${c.relative})` }));
    // (replaceChildren would write a null as the text "null": a step without scalars adds nothing)
    $("walk-body").replaceChildren(
      el("div", { className: "walk-head" }, el("span", { className: "walk-op", text: s.op }), el("code", { className: "formula", text: s.formula })),
      el("p", { className: "muted small", text: s.detail }),
      ...(scalars.length ? [el("div", { className: "walk-scalars" }, ...scalars)] : []),
      el("div", { className: "walk-vectors" }, ...vectors), ...checks);
    Object.assign($("walk-body").dataset, { step: String(this.step), id: s.id, layer: String(d.layer),
      head: String(d.head), query: String(d.query.position), handle: d.handle });
    this.focus();
  }
}

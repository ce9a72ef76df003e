// The Generate panel (GET .../sample and POST .../generate = viewer/routes/generation.py): the sampling
// settings, the ledger of how the next token is drawn (logit → ÷T → softmax → top-k cut → top-p cut
// on the running sum → p draw → the draw), asked again of the server as the controls move (it reads
// the run's kept numbers: the model does not run again), and Generate 1 / Generate N, which append
// tokens and hand the new run to app.js to load as any run. Numbers are the server's; nothing is
// sampled here.

import { Latest } from "./api.js";
import { el, problem, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const fixed = (x, n) => (x == null ? "—" : Number(x).toFixed(n));
// The running Σ is what top-p reads: the sum over what top-k kept, so a row top-k cut has none
// ("—"), as `python -m gpt2np generate --show-steps` prints it (gpt2np/cli/generate.py step_table).
const runningSum = (c) => (c.top_k ? fixed(c.running_sum, 4) : "—");
const FIELDS = { temperature: "temperature", top_k: "top-k", top_p: "top-p", seed: "seed" };   // setting -> input id
const DEFAULTS = { temperature: "1", top_k: "", top_p: "", seed: "" };

export class GeneratePanel {
  // ctx: { S, api, onRun, loadRun(result), changed() }
  constructor(ctx) {
    this.ctx = ctx;
    this.latest = new Latest();
    this.timer = null;
    for (const id of [...Object.values(FIELDS), "greedy"])
      $(id).addEventListener("input", () => { this.ctx.changed(); this.schedule(); });
    $("greedy").addEventListener("change", () => this.showGreedy());
    $("generate").addEventListener("click", () => this.generate(1));
    $("generate-n").addEventListener("click", () => this.generate(Number($("gen-n").value) || 1));
    if (ctx.api.saved) {            // a saved file holds the ledger at the default settings and greedy
      for (const id of ["generate", "generate-n", "gen-n"]) $(id).disabled = true;
      $("gen-status").replaceChildren(el("span", { className: "live-only", testid: "live-only-generate",
        text: ctx.api.saved.note("generate") }));
    }
  }

  // The settings as the inputs hold them: text for the URL, null when empty; greedy a boolean.
  settings() {
    const s = { greedy: $("greedy").checked };
    for (const [name, id] of Object.entries(FIELDS)) s[name] = $(id).value.trim() || null;
    return s;
  }

  // For the permalink: the settings that differ from the defaults.
  view() {
    const s = this.settings();
    if (s.temperature === DEFAULTS.temperature) s.temperature = null;
    return s;
  }

  restore(sampling) {
    for (const [name, id] of Object.entries(FIELDS)) $(id).value = sampling?.[name] ?? DEFAULTS[name];
    $("greedy").checked = Boolean(sampling?.greedy);
    this.showGreedy();
  }

  // Greedy takes the largest logit at ÷1: temperature, top-k, top-p and seed do not apply, so
  // their inputs are off (greyed) while it is on; they keep their values for when it is off.
  showGreedy() {
    const greedy = $("greedy").checked;
    const saved = this.ctx.api.saved;      // other settings than the saved ones need the server
    for (const id of Object.values(FIELDS)) {
      $(id).disabled = greedy || Boolean(saved);
      $(id).closest("label").classList.toggle("off", greedy);
      $(id).classList.toggle("kept", Boolean(saved) && !greedy);      // in use, just not editable here
      $(id).title = greedy ? "greedy ignores it: untick greedy to sample" : saved ? saved.note("sample") : "";
    }
  }

  runChanged() { this.refresh(); }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 120);
  }

  async refresh() {
    const S = this.ctx.S;
    if (!S.run) return;
    const current = this.latest.begin(), settings = this.settings();
    try {
      const data = await this.ctx.onRun((h) => this.ctx.api.sample(h, settings));
      if (current()) this.render(data);
    } catch (e) {
      if (current()) $("sample-ledger").replaceChildren(problem(e));
    }
  }

  render(d) {
    const s = d.settings, T = s.greedy ? 1 : s.temperature;
    $("gen-title").replaceChildren("the token after ", el("span", { className: "pos", text: String(d.position) }), tokenSpan(d.token));
    const yes = (b) => el("td", { className: "keep", text: b ? "✓" : "✗" });
    const row = (c, testid) => el("tr", { testid, className: (c.p_draw > 0 ? "" : "cut") + (d.chosen && c.id === d.chosen.id ? " drawn" : ""),
      dataset: { id: String(c.id) } },
      el("td", { className: "num", text: String(c.rank) }),
      el("td", {}, tokenSpan(c.token)),
      el("td", { className: "num", text: fixed(c.logit, 3) }),
      el("td", { className: "num", text: fixed(c.logit_t, 3) }),
      el("td", { className: "num", text: fixed(c.p_temperature, 4) }),
      yes(c.top_k),
      el("td", { className: "num", text: runningSum(c) }),
      yes(c.top_p),
      el("td", { className: "num strong", text: fixed(c.p_draw, 4) }));
    const rows = d.candidates.map((c, r) => row(c, `sample-row-${r}`));
    if (d.chosen && !d.candidates.some((c) => c.id === d.chosen.id)) rows.push(row(d.chosen, "sample-row-drawn"));
    const head = ["rank", "token", "logit", `logit ÷ ${T}`, "softmax (p_T)", s.greedy ? "top-k 1 (greedy)" : `top-k ${s.top_k ?? "off"}`,
      "running Σ", `top-p ${s.greedy ? "off" : s.top_p ?? "off"}`, "p draw"];
    const table = el("table", { className: "sample-table" },
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))), el("tbody", {}, ...rows));
    const kept = `${d.n_kept.toLocaleString()} of ${d.vocab_size.toLocaleString()} tokens survive the cuts; p draw is their softmax renormalised to 1.`;
    const draw = s.greedy ? "Greedy: the largest logit, always."
      : d.chosen ? `Seed ${s.seed} draws this token (rank ${d.chosen.rank}): Generate with this seed appends it.`
        : "No seed: Generate draws a fresh one and reports it.";
    $("sample-ledger").replaceChildren(table, el("p", { className: "muted small", text: `${kept} ${draw}` }));
    Object.assign($("sample-ledger").dataset, { handle: d.handle, settings: JSON.stringify(s) });   // for the tests
  }

  async generate(n) {
    const S = this.ctx.S;
    if (!S.run) return;
    const settings = Object.fromEntries(Object.entries(this.settings()).map(([name, v]) =>
      [name, name === "greedy" || v == null ? v : Number(v)]));
    for (const id of ["generate", "generate-n"]) $(id).disabled = true;
    $("gen-status").textContent = `generating ${n} token${n === 1 ? "" : "s"}…`;
    try {
      const result = await this.ctx.onRun((h) => this.ctx.api.generate(h, n, settings));
      const g = result.generation;
      const seed = g.settings.seed != null ? ` · seed ${g.settings.seed}` : "";
      $("gen-status").textContent = `+${g.steps.length} token${g.steps.length === 1 ? "" : "s"}: ${JSON.stringify(g.new_text)}${seed} · ${g.note}`;
      await this.ctx.loadRun(result);
    } catch (e) {
      $("gen-status").replaceChildren(el("span", { className: "error small", text: e.message }));
    } finally {
      for (const id of ["generate", "generate-n"]) $(id).disabled = false;
    }
  }
}

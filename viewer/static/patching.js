// "Where is it decided?": activation patching (POST /api/runs/<h>/patch = viewer/routes/patching.py =
// gpt2np.analysis.patching.patch). The sentence above is the clean input; the corrupted one is typed
// here with as many tokens. The server streams its progress; Cancel aborts the request, and the
// server stops the sweep. Each site's grid is a table of cells coloured by the normalised effect
// (colors.js patchCss: 0 white = as corrupted, 1 red = as clean, blue below 0, one overflow colour
// past each end); hover shows the exact numbers as the server sent them, a click opens that
// layer, head and query in the main view.

import { Latest } from "./api.js";
import { PATCH_COLORS, patchCss } from "./colors.js";
import { el, tokenLabel, tokenSpan } from "./text.js";

const $ = (id) => document.getElementById(id);
const SITES = ["resid_pre", "attn_out", "mlp_out", "z", "pattern"];
const WHAT = {
  resid_pre: "the residual stream entering the layer, at one position",
  attn_out: "what the layer's attention wrote, at one position",
  mlp_out: "what the layer's MLP wrote, at one position",
  z: "one head's output, at every position",
  pattern: "one head's attention pattern (the clean one, on the corrupted values)",
  z_position: "the chosen head's output, at one position",
};

export class PatchPanel {
  // ctx: { S, api, onRun, runText(text), openHead(layer, head, query) }
  constructor(ctx) {
    this.ctx = ctx;
    this.latest = new Latest();
    this.abort = null;
    this.data = null;
    $("patch-run").addEventListener("click", () => this.run());
    $("patch-cancel").addEventListener("click", () => this.cancel());
    $("patch-example").addEventListener("click", () => this.useExample());
    $("patch-corrupted").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.run(); }
    });
    const pair = ctx.S.model.examples?.pair;
    if (pair) {
      $("patch-answer").value = pair.answer;
      $("patch-versus").value = pair.versus;
    } else $("patch-example").hidden = true;
    this.tip = $("patch-tip");          // in a saved file liveonly.js turns the controls off, with its note
  }

  status(text, progress = null) {
    $("patch-status-text").textContent = text;
    const bar = $("patch-progress");
    bar.hidden = progress == null;
    if (progress != null) { bar.max = progress.total; bar.value = progress.done; }
  }

  // The sentence above changed: it is the clean input, and results of another one are cleared.
  runChanged() {
    const S = this.ctx.S, pair = S.model.examples?.pair;
    $("patch-clean").replaceChildren(...S.run.tokens.map((t, i) => {
      const chip = tokenSpan(t, "tok pair-tok");
      chip.title = `position ${i}`;
      return chip;
    }));
    if (pair && !$("patch-corrupted").value && $("sentence").value === pair.clean) $("patch-corrupted").value = pair.corrupted;
    if (this.data && this.data.handle !== S.run.handle) this.clear("The sentence above changed: press Patch.");
  }

  clear(message = "") {
    this.cancel(false);
    this.data = null;
    $("patch-error").hidden = true;
    $("patch-tokens").replaceChildren();
    $("patch-grids").replaceChildren();
    $("patch-legend").hidden = true;
    $("patch-card").dataset.handle = "";
    this.status(message);
  }

  // The model's own example pair: its clean sentence goes into the sentence box above (and runs),
  // the rest here; then the sweep.
  async useExample() {
    const pair = this.ctx.S.model.examples.pair;
    $("patch-corrupted").value = pair.corrupted;
    $("patch-answer").value = pair.answer;
    $("patch-versus").value = pair.versus;
    if ($("sentence").value !== pair.clean || !this.ctx.S.run) await this.ctx.runText(pair.clean);
    await this.run();
  }

  // A token box: text as typed (a leading space matters), or #id.
  token(id) {
    const raw = $(id).value;
    return /^#\d+$/.test(raw.trim()) ? Number(raw.trim().slice(1)) : raw;
  }

  body() {
    const raw = $("patch-corrupted").value;
    let corrupted = raw;
    if (!this.ctx.S.model.has_tokenizer) {
      const parts = raw.split(/[\s,]+/).filter(Boolean);
      if (parts.length && parts.every((p) => /^\d+$/.test(p))) corrupted = parts.map(Number);
    }
    const sites = SITES.filter((s) => $(`patch-site-${s}`).checked);
    const body = { corrupted, answer: this.token("patch-answer"), versus: this.token("patch-versus"), sites };
    if ($("patch-site-z_position").checked) {
      const S = this.ctx.S;
      sites.push("z_position");
      body.head = $("patch-head").value.trim() || `${S.layer}.${S.head}`;
      $("patch-head").value = body.head;
    }
    return body;
  }

  cancel(say = true) {
    this.latest.cancel();
    if (this.abort) this.abort.abort();
    this.abort = null;
    $("patch-run").disabled = Boolean(this.ctx.api.saved);
    $("patch-cancel").hidden = true;
    if (say) this.status(`Cancelled${this.progress ? ` after ${this.progress.done} of ${this.progress.total} patched runs` : ""}: the server stopped the sweep.`);
  }

  async run() {
    const S = this.ctx.S;
    if (!S.run || this.ctx.api.saved) return;
    this.clear();
    const current = this.latest.begin(), abort = new AbortController();
    this.abort = abort;
    this.progress = null;
    $("patch-run").disabled = true;
    $("patch-cancel").hidden = false;
    this.status("running the clean and the corrupted sentence…");
    const body = this.body();
    try {
      const result = await this.ctx.onRun((h) => this.ctx.api.patch(h, body, (e) => current() && this.onEvent(e), abort.signal));
      if (!current()) return;
      this.data = { ...result, handle: S.run.handle };
      this.render();
      this.status(`${this.progress ? `${this.progress.total} patched runs` : "done"} · LD = logit(${JSON.stringify(result.answer.token)}) − logit(${JSON.stringify(result.versus.token)}) at position ${result.position}: clean ${fmt(result.ld_clean)}, corrupted ${fmt(result.ld_corrupted)}`);
    } catch (e) {
      if (!current()) return;
      if (e.data?.clean_tokens && e.data?.corrupted_tokens) this.showMismatch(e.data);
      $("patch-error").textContent = e.message;
      $("patch-error").hidden = false;
      this.status("");
    } finally {
      if (current()) {
        this.abort = null;
        $("patch-run").disabled = false;
        $("patch-cancel").hidden = true;
      }
    }
  }

  onEvent(e) {
    if (e.event === "start") this.showTokens(e.clean_tokens, e.corrupted_tokens, new Set(e.differ));
    else if (e.event === "progress" && e.total != null) {
      this.progress = { done: e.done, total: e.total };
      this.status(`patched run ${e.done} of ${e.total} (${Math.floor((100 * e.done) / e.total)} %)`, this.progress);
    }
  }

  // Same count: the two sentences token by token, one column per position, the differing ones marked.
  showTokens(clean, corrupted, differ) {
    const row = (name, tokens) => el("tr", {}, el("th", { text: name }), ...tokens.map((t, i) => {
      const td = el("td", { className: differ.has(i) ? "differ" : "" }, tokenSpan(t));
      td.title = `position ${i}${differ.has(i) ? ": differs" : ""}`;
      return td;
    }));
    const positions = el("tr", { className: "positions" }, el("th", {}), ...clean.map((_, i) => el("td", { className: "pos", text: String(i) })));
    $("patch-tokens").replaceChildren(el("div", { className: "patch-tokens-scroll" },
      el("table", { className: "patch-tokens", testid: "patch-tokens" }, el("tbody", {}, positions,
        row("clean", clean), row("corrupted", corrupted)))),
    el("p", { className: "muted small", text: differ.size
      ? `They differ at position${differ.size > 1 ? "s" : ""} ${[...differ].join(", ")} (marked). Positions before the first difference see the same tokens in both runs: patching them changes nothing.`
      : "The two sentences are the same tokens: patching can restore nothing." }));
  }

  // Different counts: nothing computed; both tokenizations, so the learner sees which word split.
  showMismatch(data) {
    const side = (name, tokens) => el("div", { className: "pair-tokens", testid: `patch-mismatch-${name}` },
      el("b", { text: `${name} (${tokens.length} tokens)` }), ...tokens.map((t, i) => {
        const chip = tokenSpan(t, "tok pair-tok");
        chip.title = `position ${i}`;
        return chip;
      }));
    $("patch-tokens").replaceChildren(side("clean", data.clean_tokens), side("corrupted", data.corrupted_tokens));
  }

  render() {
    const d = this.data;
    $("patch-legend").hidden = false;
    drawPatchLegend($("patch-legend"));
    $("patch-grids").replaceChildren(...Object.values(d.grids).map((g) => this.grid(g)));
    $("patch-card").dataset.handle = d.handle;
  }

  grid(g) {
    const d = this.data, S = this.ctx.S;
    const byPosition = g.site !== "z" && g.site !== "pattern";
    const columns = byPosition
      ? d.clean_tokens.map((t, i) => {
        const th = el("th", { className: "col" + (t !== d.corrupted_tokens[i] ? " differ" : "") },
          el("span", { className: "col-label" }, el("span", { className: "pos", text: String(i) }), " ",
            t === d.corrupted_tokens[i] ? tokenLabel(t, 12) : `${tokenLabel(t, 8)}→${tokenLabel(d.corrupted_tokens[i], 8)}`));
        th.title = g.columns[i];
        return th;
      })
      : g.columns.map((c) => el("th", { className: "col head", text: c.replace("head ", "h") }));
    const [zl, zh] = g.site === "z_position" ? g.rows[0].split(".").map(Number) : [null, null];
    const open = (r, c) => {
      if (g.site === "z_position") return this.ctx.openHead(zl, zh, c);
      if (byPosition) return this.ctx.openHead(r, S.head, c);
      return this.ctx.openHead(r, c, d.position);
    };
    const rows = g.normalized.map((values, r) => el("tr", {},
      el("th", { className: "row", text: g.site === "z_position" ? `head ${g.rows[r]}` : g.rows[r].replace("layer ", "L") }),
      ...values.map((v, c) => {
        const td = el("td", {
          className: "cell" + (v > 1 ? " over" : v < -1 ? " under" : ""), tabIndex: 0,
          testid: `patch-cell-${g.site}-${r}-${c}`,
          dataset: { site: g.site, row: String(r), column: String(c), normalized: String(v), ld: String(g.ld[r][c]) },
          onclick: () => open(r, c), onkeydown: (e) => { if (e.key === "Enter") open(r, c); },
          onmouseenter: (e) => this.hover(e, g, r, c), onmousemove: (e) => this.place(e),
          onmouseleave: () => { this.tip.hidden = true; },
        });
        td.style.backgroundColor = patchCss(v);
        if (v > 1 || v < -1) td.append(el("i", { className: "mark", text: v > 1 ? "+" : "−" }));
        return td;
      })));
    const caption = el("figcaption", {}, el("b", { text: g.site }), " ",
      el("code", { text: g.name.replace("{layer}", "L") }), el("span", { className: "muted", text: ` · ${WHAT[g.site]} · ${byPosition ? "layer × position" : "layer × head"}` }));
    return el("figure", { className: "patch-figure", testid: `patch-grid-${g.site}` }, caption,
      el("div", { className: "patch-scroll" }, el("table", { className: "patch-grid" + (byPosition ? "" : " heads") },
        el("thead", {}, el("tr", {}, el("th", { className: "corner" }), ...columns)), el("tbody", {}, ...rows))));
  }

  hover(event, g, r, c) {
    const d = this.data, v = g.normalized[r][c];
    const where = g.site === "z" || g.site === "pattern" ? `${g.rows[r]}, ${g.columns[c]}` : `${g.rows[r]}, position ${g.columns[c]}`;
    const note = v > 1 ? "restores more than the clean run had" : v < 0 ? "pushes further toward versus than the corrupted run" : null;
    this.tip.replaceChildren(
      el("div", { className: "tt-head", text: `${g.site} · ${where}` }),
      el("div", { className: "tt-value" }, "normalised ", el("b", { testid: "patch-tip-normalized", text: String(v) })),
      el("div", { className: "tt-value" }, "LD ", el("b", { testid: "patch-tip-ld", text: String(g.ld[r][c]) }),
        el("span", { className: "muted", text: ` (clean ${fmt(d.ld_clean)}, corrupted ${fmt(d.ld_corrupted)})` })),
      ...(note ? [el("div", { className: "tt-value", text: `outside [0, 1]: ${note}` })] : []),
      el("div", { className: "muted", text: "click: open this layer, head and query above" }));
    this.tip.hidden = false;
    this.place(event);
  }

  place(event) {
    const tip = this.tip, pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
    const left = event.clientX + pad + w > window.innerWidth ? event.clientX - pad - w : event.clientX + pad;
    const top = event.clientY + pad + h > window.innerHeight ? event.clientY - pad - h : event.clientY + pad;
    tip.style.left = `${Math.max(4, left)}px`;
    tip.style.top = `${Math.max(4, top)}px`;
  }
}

const fmt = (x) => Number(x).toFixed(4);

// The scale: −1 … 0 … 1 as a gradient, and the two overflow colours.
function drawPatchLegend(box) {
  const bar = el("span", { className: "patch-ramp" });
  const stops = [-1, -0.5, 0, 0.5, 1].map((v) => `${patchCss(v)} ${((v + 1) / 2) * 100}%`);
  bar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
  const swatch = (rgb, text) => {
    const i = el("i", { className: "swatch" });
    i.style.backgroundColor = `rgb(${rgb.join(",")})`;
    return el("span", { className: "patch-swatch" }, i, text);
  };
  box.replaceChildren(swatch(PATCH_COLORS.under, "below −1 (−)"),
    el("span", { className: "patch-ramp-box" }, bar,
      el("span", { className: "patch-ramp-labels" }, el("span", { text: "−1" }), el("span", { text: "0 = corrupted" }), el("span", { text: "1 = clean" }))),
    swatch(PATCH_COLORS.over, "above 1 (+)"),
    el("span", { className: "muted small", text: "blue: below 0, the patch pushes toward versus; past ±1 the overflow colours, marked + or −" }));
}

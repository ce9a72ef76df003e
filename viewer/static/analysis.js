// The analysis panels, wired to the page: the heads table, the logit lens, the
// ablation control, the minimal pair and the findings report. app.js tells them when the run,
// the head or the query changes; each panel asks the server only for what it shows, and the heads
// table and the lens only once they are (nearly) on screen: a learner scrubbing sentences at the
// top of the page does not make the server compute tables nobody looks at.

import { AblationPanel } from "./ablation.js";
import { renderFindings } from "./findings.js";
import { HeadsTable } from "./headstable.js";
import { LensPanel } from "./lens.js";
import { PairPanel } from "./pair.js";
import { Latest } from "./api.js";
import { el, loadingNote } from "./text.js";

const $ = (id) => document.getElementById(id);

// ctx: { S, api, onRun, setLayerHead, runText, scale }
export function createAnalysis(ctx) {
  const heads = new HeadsTable($("heads-card"), (layer, head) => {
    ctx.setLayerHead(layer, head);
    $("heatmap-title").scrollIntoView({ block: "nearest", behavior: "smooth" });
  });
  const ablation = new AblationPanel(ctx);
  const lens = new LensPanel(ctx);
  const pair = new PairPanel(ctx);
  const latestHeads = new Latest(), latestFindings = new Latest();
  let shown = { handle: null, query: null };     // what the panels show now
  // Panels loaded when they come near the viewport: {visible, stale, load} by card id.
  const lazy = {
    "heads-card": { visible: false, stale: false, load: () => loadHeads() },
    "lens-card": { visible: false, stale: false, load: () => lens.refresh() },
  };
  const refresh = (id) => {
    const panel = lazy[id];
    panel.stale = !panel.visible;
    if (panel.visible) panel.load();
    else if (id === "lens-card") {      // not blank meanwhile: say it comes when scrolled to
      $("lens-body").replaceChildren(loadingNote("loading… (the logit lens is computed when this card comes into view)"));
      $("lens-card").dataset.position = "";
    }
  };
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const panel = lazy[entry.target.id];
      panel.visible = entry.isIntersecting;
      if (panel.visible && panel.stale) refresh(entry.target.id);
    }
  }, { rootMargin: "300px 0px" });
  for (const id of Object.keys(lazy)) observer.observe($(id));

  async function loadHeads() {
    const current = latestHeads.begin(), run = ctx.S.run;
    if (run.n_tokens < 2) {
      heads.clear("The statistics average over query positions 1…T−1: run a text of at least 2 tokens.");
      return;
    }
    heads.clear("computing every head's statistics…");
    try {
      const data = await ctx.onRun((h) => ctx.api.heads(h));
      if (current()) heads.setData(data);
    } catch (e) {
      if (current()) heads.clear(e.message);
    }
  }

  function resetFindings() {
    latestFindings.cancel();
    if (ctx.api.saved) {                 // a saved file: the findings run the model (liveonly.js)
      $("findings-body").replaceChildren(el("p", { className: "muted small live-only", testid: "live-only-findings",
        text: ctx.api.saved.note("findings") }));
      $("findings-run").disabled = true;
      return;
    }
    const can = ctx.S.model.has_tokenizer;
    $("findings-body").replaceChildren(el("p", { className: "muted", text: can
      ? "Press the button to check the original demo's predictions on this sentence."
      : "The findings run sentences of their own (a coreference sentence, the IOI sentence): this model has no tokenizer." }));
    $("findings-run").disabled = !can;
    $("findings-card").dataset.handle = "";
  }

  async function loadFindings() {
    const current = latestFindings.begin();
    $("findings-run").disabled = true;
    $("findings-body").replaceChildren(el("p", { className: "muted", text:
      "running the probe, this sentence and the coreference sentence through the model…" }));
    try {
      const report = await ctx.onRun((h) => ctx.api.findings(h));
      if (!current()) return;
      renderFindings($("findings-body"), report);
      $("findings-card").dataset.handle = report.handle;
    } catch (e) {
      if (current()) $("findings-body").replaceChildren(el("div", { className: "error", text: e.message }));
    } finally {
      if (current()) $("findings-run").disabled = false;
    }
  }
  $("findings-run").addEventListener("click", loadFindings);
  resetFindings();

  return {
    heads, ablation, lens, pair,
    // Run again on the same sentence (a preset, a reload): the server has the same handle, and
    // the panels keep what they show.
    runChanged() {
      pair.runChanged();
      if (ctx.S.run.handle === shown.handle) return;
      shown = { handle: ctx.S.run.handle, query: null };
      ablation.clear();
      resetFindings();
      heads.clear("computing every head's statistics…");
      refresh("heads-card");
    },
    headChanged(layer, head) {
      heads.mark(layer, head);
      ablation.headChanged(layer, head);
    },
    queryChanged() {
      if (ctx.S.query === shown.query) return;
      shown.query = ctx.S.query;
      ablation.clear();
      refresh("lens-card");
    },
    // A next token clicked: follow it in the ablation and in the lens.
    followToken(token) {                    // token: {id, token, p} from the next-token list
      ablation.setToken(token);
      lens.setTarget(token.id, `#${token.id}`, false);
      refresh("lens-card");
    },
    refit() { pair.refit(); },
  };
}

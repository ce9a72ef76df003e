// The value side and the output, wired to the page: the value ledger beside the Q·K panel, the
// direct logit attribution, play (step through layers or heads) and the walk of one token through
// one block. app.js tells them when the run, the head or the query changes; the attribution and
// the walk ask the server only once their cards are (nearly) on screen.

import { AttributionPanel } from "./attribution.js";
import { Player } from "./play.js";
import { ValuePanel } from "./values.js";
import { WalkPanel } from "./walk.js";

// ctx: { S, api, onRun, setLayerHead }
export function createValueSide(ctx) {
  const value = new ValuePanel(ctx);
  const attribution = new AttributionPanel(ctx);
  const player = new Player(ctx);
  const walk = new WalkPanel(ctx);
  const lazy = { visible: false, stale: true };
  const refreshAttribution = () => {
    lazy.stale = !lazy.visible;
    if (lazy.visible) attribution.refresh();
    else attribution.waiting();
  };
  new IntersectionObserver((entries) => {
    lazy.visible = entries.some((e) => e.isIntersecting);
    if (lazy.visible && lazy.stale) refreshAttribution();
  }, { rootMargin: "300px 0px" }).observe(document.getElementById("attribution-card"));

  return {
    value, attribution, player, walk,
    runChanged() { refreshAttribution(); },
    headChanged() { value.refresh(); walk.changed(); },
    queryChanged() { value.refresh(); walk.changed(); refreshAttribution(); },
  };
}

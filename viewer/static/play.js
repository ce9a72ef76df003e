// Play: step the heatmap through the layers (or through every head) on a timer, to watch attention
// change with depth. The URL follows each step (app.js writes it whenever the head changes). Any
// key or click stops it (except on the two selects, which change it while it plays), and so
// does the button again (autoplay.js).

import { Autoplay } from "./autoplay.js";

const $ = (id) => document.getElementById(id);

export class Player {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, setLayerHead }
    this.auto = new Autoplay({ button: "play", keep: "#play-what, #play-speed", tick: () => this.step(),
      show: (on) => {
        $("play").textContent = on ? "■ Stop" : "▶ Play";
        $("play").setAttribute("aria-pressed", String(on));
      } });
    $("play").addEventListener("click", () => (this.playing ? this.stop() : this.start()));
    $("play-speed").addEventListener("change", () => { if (this.playing) this.start(); });
    if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) $("play-speed").value = $("play-speed").options[0].value;
  }

  get playing() { return this.auto.playing; }

  // One step: the next layer (same head), or the next head, then the next layer's head 0.
  step() {
    const { S } = this.ctx, L = S.model.n_layer, H = S.model.n_head;
    if ($("play-what").value === "heads") {
      const i = (S.layer * H + S.head + 1) % (L * H);
      this.ctx.setLayerHead(Math.floor(i / H), i % H);
    } else this.ctx.setLayerHead((S.layer + 1) % L, S.head);
  }

  start() {
    if (this.ctx.S.run) this.auto.start(Number($("play-speed").value));
  }

  stop() { this.auto.stop(); }
}

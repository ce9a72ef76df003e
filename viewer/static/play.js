// Play: step the heatmap through the layers (or through every head) on a timer, to watch attention
// change with depth. The URL follows each step (app.js writes it whenever the head changes). Any
// key or click stops it (except on the two selects, which change it while it plays), and so
// does the button again.

const $ = (id) => document.getElementById(id);

export class Player {
  constructor(ctx) {
    this.ctx = ctx;                   // { S, setLayerHead }
    this.timer = null;
    this.stopOnInput = (e) => {
      const t = e.target instanceof Element ? e.target : null;
      if (t && t.closest("#play-what, #play-speed")) return;          // adjusting it while it plays
      if (t && t.closest("#play") && (e.type === "pointerdown" || e.key === "Enter" || e.key === " ")) return;  // the button's own click
      this.stop();
    };
    $("play").addEventListener("click", () => (this.timer ? this.stop() : this.start()));
    $("play-speed").addEventListener("change", () => { if (this.timer) this.start(); });
    if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) $("play-speed").value = $("play-speed").options[0].value;
  }

  get playing() { return this.timer != null; }

  // One step: the next layer (same head), or the next head, then the next layer's head 0.
  step() {
    const { S } = this.ctx, L = S.model.n_layer, H = S.model.n_head;
    if ($("play-what").value === "heads") {
      const i = (S.layer * H + S.head + 1) % (L * H);
      this.ctx.setLayerHead(Math.floor(i / H), i % H);
    } else this.ctx.setLayerHead((S.layer + 1) % L, S.head);
  }

  start() {
    if (!this.ctx.S.run) return;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.step(), Number($("play-speed").value));
    document.addEventListener("keydown", this.stopOnInput, true);
    document.addEventListener("pointerdown", this.stopOnInput, true);
    this.show(true);
  }

  stop() {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = null;
    document.removeEventListener("keydown", this.stopOnInput, true);
    document.removeEventListener("pointerdown", this.stopOnInput, true);
    this.show(false);
  }

  show(on) {
    const button = $("play");
    button.textContent = on ? "■ Stop" : "▶ Play";
    button.setAttribute("aria-pressed", String(on));
    button.dataset.playing = on ? "1" : "0";
  }
}

// Autoplay, one home for Play (play.js) and the walk (walk.js): a timer that calls `tick` every
// `ms`, shown on its button (data-playing = 1 or 0), and stopped by the button again or by any key
// or click on the page — except the button's own click and the elements matching `keep` (Play's
// two selects, which change it while it plays).

const $ = (id) => document.getElementById(id);

export class Autoplay {
  // opts: { button: id, keep: CSS selector or "", tick(), show(on) (the button's look) }
  constructor({ button, keep = "", tick, show }) {
    this.button = button;
    this.tick = tick;
    this.show = show;
    this.timer = null;
    this.stopOnInput = (e) => {
      const t = e.target instanceof Element ? e.target : null;
      if (t && keep && t.closest(keep)) return;
      if (t && t.closest(`#${button}`) && (e.type === "pointerdown" || e.key === "Enter" || e.key === " ")) return;
      this.stop();
    };
  }

  get playing() { return this.timer != null; }

  start(ms) {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), ms);
    document.addEventListener("keydown", this.stopOnInput, true);
    document.addEventListener("pointerdown", this.stopOnInput, true);
    $(this.button).dataset.playing = "1";
    this.show(true);
  }

  stop() {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = null;
    document.removeEventListener("keydown", this.stopOnInput, true);
    document.removeEventListener("pointerdown", this.stopOnInput, true);
    $(this.button).dataset.playing = "0";
    this.show(false);
  }
}

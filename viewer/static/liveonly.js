// A saved file (viewer/export/) holds one run's answers. What needs the live server is off there:
// its controls disabled, and a quiet note in their place with the command that gives it. The
// notes are the file's own (viewer/export/snapshot.py missing_notes), by the API call they stand
// for. Ablation, the minimal pair, the findings and Generate run the model again; the lens and
// the attribution are saved for the model's top-1 at the token the file opens at, so another
// token to follow needs the server too.

import { el } from "./text.js";

const $ = (id) => document.getElementById(id);

// kind -> the controls it needs, and the element its note goes before.
const CONTROLS = {
  ablate: { ids: ["ablate-heads", "ablate-current", "ablate-zero", "ablate-mean", "ablate-token", "ablate-run"], before: "ablate-error" },
  pair: { ids: ["pair-b", "pair-run", "pair-preset"], before: "pair-error" },
  lens: { ids: ["lens-target", "lens-reset"], before: "lens-body" },
  attribution: { ids: ["attr-token", "attr-versus", "attr-reset"], before: "attr-body" },
};

export function liveOnlyControls(saved) {
  for (const [kind, { ids, before }] of Object.entries(CONTROLS)) {
    const note = saved.note(kind);
    for (const id of ids) {
      $(id).disabled = true;
      $(id).title = note;
    }
    $(before).before(el("p", { className: "muted small live-only", testid: `live-only-${kind}`, text: note }));
  }
}

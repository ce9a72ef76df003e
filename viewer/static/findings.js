// The findings report (GET /api/runs/<h>/findings = gpt2np.findings.report on the current
// sentence): each prediction of the original demo with its verdict and measured numbers, and,
// for a model of GPT-2 small's shape, the published head roles with their sources.

import { el, tokenSpan } from "./text.js";

const VERDICT_CLASS = { "holds": "holds", "does not hold": "fails", "undecided": "undecided", "not applicable": "na" };
const f3 = (v) => (v == null ? "—" : Number(v).toFixed(3));

const verdict = (v, testid) => el("span", { className: `verdict ${VERDICT_CLASS[v] || "na"}`, text: v, testid });

function table(headers, rows, className = "mini-table") {
  return el("table", { className },
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

// Prediction 4: in each sentence, every last-layer head's top keys and its weight on the two words.
function referentDetails(pr, coref) {
  const m = pr.measured;
  const tables = m.sentences.map((t) => {
    const rows = t.heads.map((h) => el("tr", { className: h.top_is === t.referent ? "wins" : "" },
      el("td", { className: "head-name", text: h.head }),
      el("td", {}, el("span", { className: "pos", text: String(h.top_key) }), tokenSpan(h.top_key_token), " ", el("span", { className: "num", text: f3(h.top_weight) })),
      el("td", {}, el("span", { className: "pos", text: String(h.top_key_no0) }), tokenSpan(h.top_key_no0_token), " ", el("span", { className: "num", text: f3(h.top_weight_no0) })),
      el("td", { className: "num", text: f3(h.candidates[0]) }),
      el("td", { className: "num", text: f3(h.candidates[1]) }),
      el("td", { className: "num", text: (h.margin >= 0 ? "+" : "") + f3(h.margin) })));
    return el("div", { className: "referent-sentence" },
      el("p", { className: "small", text: `referent “${t.referent}”, from “${coref.pronoun}” (position ${t.query}) in: ${t.text}` }),
      table(["head", "top key", "top key without position 0", t.referent, t.other, "margin"], rows));
  });
  return el("details", { className: "finding-details" },
    el("summary", { text: `every head of layer ${m.layer}${m.decided_by ? ` — ${m.decided_by}` : ""}` }), ...tables);
}

function predictions(r) {
  return el("ol", { className: "predictions" }, ...r.predictions.map((pr) => el("li", {
    testid: `finding-${pr.id}`, dataset: { verdict: pr.verdict },
  }, el("div", { className: "finding-head" }, verdict(pr.verdict, `finding-verdict-${pr.id}`),
    el("span", { className: "finding-text", text: pr.prediction })),
  el("div", { className: "finding-summary", text: pr.summary }),
  pr.id === 4 ? referentDetails(pr, r.inputs.coref) : null)));
}

function roles(r) {
  const pr = r.published_roles;
  const title = el("h3", { text: "Published head roles of GPT-2 small" });
  if (!pr.applicable)
    return el("div", { className: "roles", testid: "findings-roles" }, title,
      el("p", { className: "muted", text: `${pr.note} — these roles were found in GPT-2 small (12 layers × 12 heads × 768); ` +
        `this model has ${r.model.n_layer} × ${r.model.n_head}, so its heads have no such names.` }));
  const blocks = pr.roles.map((role) => el("div", { className: "role" },
    el("div", { className: "role-head" }, el("b", { text: role.role }), el("span", { className: "source", text: role.source })),
    table(["head", "verdict", "measured", "value", "type"], role.heads.map((h) => el("tr", {},
      el("td", { className: "head-name", text: h.head }),
      el("td", {}, verdict(h.verdict)),
      el("td", { className: "small", text: h.measure }),
      el("td", { className: "num", text: f3(h.value) + (h.subject != null ? ` vs ${f3(h.subject)}` : "") }),
      el("td", {}, el("span", { className: `type-pill type-${h.type}`, text: h.type })))))));
  return el("div", { className: "roles", testid: "findings-roles" }, title,
    el("p", { className: "muted small", text: `${pr.note}. Name movers and copy suppression are measured on: ${pr.ioi_sentence}` }), ...blocks);
}

export function renderFindings(box, r) {
  const s = r.inputs.sentence, p = r.inputs.probe;
  const text = typeof s.text === "string" ? s.text : `ids ${s.text.join(" ")}`;
  const inputs = el("p", { className: "muted small", text:
    `Sentence (${s.tokens.length} tokens): ${text} · coreference sentence: ${r.inputs.coref.text} · ` +
    `induction probe: ${p.length} random tokens × 2 (seed ${p.seed})` });
  const counts = r.predictions.reduce((n, pr) => ({ ...n, [pr.verdict]: (n[pr.verdict] || 0) + 1 }), {});
  const tally = el("div", { className: "tally" }, ...Object.entries(counts).map(([v, n]) => el("span", {},
    verdict(v), ` × ${n}`)));
  box.replaceChildren(tally, inputs, predictions(r), roles(r));
}

// The viewer's API client: JSON in and out, attention as bytes. Errors become ApiError with the
// server's own message (the server always answers errors as JSON, see viewer/errors.py).
// Two data sources, one client: the live server, or — in a saved file (viewer/export/) — the
// answers embedded in the page (snapshot.js), which answers the same requests the same way.

import { readSaved } from "./snapshot.js";

const saved = readSaved();

// Only the newest request of one kind may change the page: `const current = latest.begin()` before
// awaiting an answer, `if (!current()) return;` after it. Every begin() or cancel() makes the
// requests begun before it stale, so a slow answer never overwrites a newer one.
export class Latest {
  constructor() { this.n = 0; }
  begin() {
    const n = ++this.n;
    return () => n === this.n;
  }
  cancel() { this.n++; }
  // The same check for what the request begun last goes on to do, without beginning another.
  watch() {
    const n = this.n;
    return () => n === this.n;
  }
}
const request = saved ? (url, options) => saved.fetch(url, options) : (url, options) => fetch(url, options);

export class ApiError extends Error {
  // liveOnly: a saved file's answer for what needs the live server (snapshot.js); shown as a note.
  constructor(status, message, liveOnly = false) {
    super(message);
    this.status = status;
    this.liveOnly = liveOnly;
  }
  get expired() {
    return this.status === 404 && /Unknown or expired run/.test(this.message);
  }
}

async function fail(response) {
  let message = `HTTP ${response.status}`, liveOnly = false;
  try {
    const body = await response.json();
    message = body.error || message;
    liveOnly = body.live_only === true;
  } catch (_) { /* not JSON: keep the status line */ }
  throw new ApiError(response.status, message, liveOnly);
}

async function getJson(url, options) {
  const response = await request(url, options);
  if (!response.ok) await fail(response);
  return response.json();
}

async function getBytes(url) {
  const response = await request(url);
  if (!response.ok) await fail(response);
  const header = (name) => response.headers.get("X-Gpt2np-" + name);
  return { bytes: new Uint8Array(await response.arrayBuffer()), header };
}

const q = (params) => new URLSearchParams(params).toString();
const runUrl = (handle, what, params) => `/api/runs/${encodeURIComponent(handle)}/${what}` + (params ? "?" + q(params) : "");

// A token to send as ?name= (text) or ?name_id= (a number); nothing for null.
const tokenParam = (name, token) => (token == null ? {} : typeof token === "number" ? { [`${name}_id`]: token } : { [name]: token });

// Sampling settings as URL parameters: null ones left out, greedy as 1.
const samplingParams = (settings) => Object.fromEntries(Object.entries(settings)
  .filter(([name, v]) => v != null && !(name === "greedy" && !v)).map(([name, v]) => [name, name === "greedy" ? 1 : v]));

const postJson = (url, payload) => getJson(url, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload),
});

export const api = {
  saved,                                   // the saved file's data source, or null on the live page
  model: () => getJson("/api/model"),
  run: (payload) => postJson("/api/run", payload),
  // One head: T(T+1)/2 bytes, row i holds keys 0..i.
  async pattern(handle, layer, head) {
    const { bytes, header } = await getBytes(runUrl(handle, "pattern", { layer, head }));
    return { T: Number(header("Tokens")), codes: bytes, encoding: header("Encoding") };
  },
  // Every head: [L, H, S, S] bytes.
  async overview(handle) {
    const { bytes, header } = await getBytes(runUrl(handle, "overview"));
    return { size: Number(header("Size")), layers: Number(header("Layers")), heads: Number(header("Heads")), codes: bytes };
  },
  row: (handle, layer, head, query) => getJson(runUrl(handle, "row", { layer, head, query })),
  query: (handle, layer, head, query, ignoreSink) =>
    getJson(runUrl(handle, "query", { layer, head, query, ignore_sink: ignoreSink ? 1 : 0 })),
  ledger: (handle, layer, head, query, key) => getJson(runUrl(handle, "ledger", { layer, head, query, key })),
  next: (handle, position) => getJson(runUrl(handle, "next", { position })),
  traceUrl: (handle) => runUrl(handle, "trace.npz"),
  // The analysis panels (viewer/routes/analysis.py).
  heads: (handle) => getJson(runUrl(handle, "heads")),
  findings: (handle) => getJson(runUrl(handle, "findings")),
  lens: (handle, position, k, target) => getJson(runUrl(handle, "lens",
    { position, k, ...(target == null ? {} : typeof target === "number" ? { target_id: target } : { target }) })),
  ablate: (handle, body) => postJson(runUrl(handle, "ablate"), body),
  pair: (handle, body) => postJson(runUrl(handle, "pair"), body),
  // The value side and the output (viewer/routes/values.py).
  value: (handle, layer, head, query) => getJson(runUrl(handle, "value", { layer, head, query })),
  walk: (handle, layer, head, query) => getJson(runUrl(handle, "walk", { layer, head, query })),
  attribution: (handle, position, token, versus) => getJson(runUrl(handle, "attribution",
    { position, ...tokenParam("token", token), ...tokenParam("versus", versus) })),
  // Generation (viewer/routes/generation.py): the sampling ledger of the next token, and Generate.
  // settings: { temperature, top_k, top_p, seed, greedy }, null ones left out.
  sample: (handle, settings) => getJson(runUrl(handle, "sample", samplingParams(settings))),
  generate: (handle, tokens, settings) => postJson(runUrl(handle, "generate"), { tokens, ...settings }),
  // The corpus page (viewer/corpus.py): the results file given with --corpus.
  corpus: () => getJson("/api/corpus"),
  // |A − B| of one head on the aligned tokens: the same bytes as pattern(), N aligned tokens.
  async pairDiff(handle, other, layer, head) {
    const { bytes, header } = await getBytes(`/api/runs/${encodeURIComponent(handle)}/pair/${encodeURIComponent(other)}/diff?` + q({ layer, head }));
    return { T: Number(header("Tokens")), codes: bytes, alignment: header("Alignment") };
  },
};

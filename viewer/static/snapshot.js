// The page's second data source: a saved file (viewer/export/) holds the answers of the API
// calls its page makes, keyed by request path, in <script id="gpt2np-snapshot">. `fetch` here
// answers api.js's requests from them as Responses, like the server would, and with a
// "not in this file" error for the rest. No number is made here: every answer was made by the
// server's own functions when the file was saved.

const FORMAT = 1;

// "/api/runs/ab/query?query=3&layer=0" -> "runs/ab/query?layer=0&query=3" (export.py call_key).
function callKey(url) {
  const [path, query = ""] = url.split("?");
  const params = [...new URLSearchParams(query)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const q = new URLSearchParams(params).toString();
  return path.replace(/^\/api\//, "") + (q ? "?" + q : "");
}

function fromBase64(text) {
  const raw = atob(text), bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

async function inflate(text) {
  const stream = new Blob([fromBase64(text)]).stream().pipeThrough(new DecompressionStream("gzip"));
  return JSON.parse(await new Response(stream).text());
}

const json = (body, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

export class Saved {
  constructor(data) {
    if (data.format !== FORMAT) throw new Error(`This file's data has format ${data.format}; this page reads format ${FORMAT}.`);
    this.data = data;
    this.packs = new Map();          // pack name -> Promise of {key: answer}
  }

  // The view the page opens at: the file's input, and its layer/head/query unless the URL says otherwise.
  startView(fromUrl) {
    const { input, view } = this.data;
    const pick = (name) => fromUrl[name] ?? view[name] ?? null;
    return { ...fromUrl, layer: pick("layer"), head: pick("head"), q: pick("q"), k: pick("k"),
      text: input.text ?? null, ids: input.ids ? input.ids.join(",") : null, bos: input.bos };
  }

  pack(name) {
    const text = this.data.packs[name];
    if (text == null) return null;
    if (!this.packs.has(name)) this.packs.set(name, inflate(text));
    return this.packs.get(name);
  }

  // What needs the live server (ablation, the pair, Generate, the findings; the panels saved at
  // the opening view, elsewhere): its note, sent with live_only so the page shows it quietly.
  liveOnly(kind) {
    return (this.data.live_only || []).includes(kind);
  }

  note(kind) {
    return this.data.missing[kind] ?? this.data.missing["*"];
  }

  missing(kind, key) {
    const cell = kind === "ledger" && this.data.holds.exact.includes(headOf(key));   // its head is in
    return json({ error: this.note(cell ? "ledger-cell" : kind), live_only: this.liveOnly(kind) }, 404);
  }

  // fetch(url, options) for the page's own API: a Response, as the server would send it.
  async fetch(url, options = {}) {
    const key = callKey(url), kind = key.split("?")[0].split("/").pop();
    if (kind === "run" && (options.method || "GET") === "POST") return this.run(JSON.parse(options.body));
    const bytes = this.data.bytes[key];
    if (bytes) return new Response(fromBase64(bytes.data), { headers: bytes.headers });
    // The head's pack, then the run's, then the panels saved at the opening view (snapshot.py).
    for (const name of [headOf(key), "run", "panels"]) {
      const pack = this.pack(name);
      const answers = pack && await pack;
      if (answers && key in answers) return json(answers[key]);
    }
    return this.missing(kind, key);
  }

  // POST /api/run: the file's one input gives its run; another input is not in the file.
  async run(payload) {
    const { input } = this.data;
    const same = input.text != null ? payload.text === input.text
      : Array.isArray(payload.ids) && payload.ids.join(",") === input.ids.join(",");
    if (!same || Boolean(payload.bos) !== input.bos) return this.missing("run");
    return json((await this.pack("run")).run);
  }
}

// The pack holding a call's answer: "layer.head" for the calls about one head, else "run".
function headOf(key) {
  const params = new URLSearchParams(key.split("?")[1] || "");
  return params.has("layer") && params.has("head") ? `${params.get("layer")}.${params.get("head")}` : "run";
}

export function readSaved() {
  const node = document.getElementById("gpt2np-snapshot");
  return node ? new Saved(JSON.parse(node.textContent)) : null;
}

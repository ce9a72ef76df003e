// The view in the URL: ?text=…&layer=&head=&q=&k=&sink=&scale=&bos= (or ids=1,2,3 for models
// without a tokenizer), and the Generate panel's sampling settings temperature=&top_k=&top_p=&seed=&greedy=.
// Reading it restores the view; every change replaces it in history.

const INTS = ["layer", "head", "q", "k"];
const SAMPLING = { temperature: /^\d*\.?\d+$/, top_k: /^\d+$/, top_p: /^\d*\.?\d+$/, seed: /^\d+$/ };

export function readPermalink() {
  const p = new URLSearchParams(location.search);
  const view = { text: p.get("text"), ids: p.get("ids"), bos: p.get("bos") === "1",
    sink: p.get("sink") === "1", scale: p.get("scale") === "sqrt" ? "sqrt" : "linear" };
  for (const name of INTS) {
    const v = p.get(name);
    view[name] = v != null && /^\d+$/.test(v) ? Number(v) : null;
  }
  view.sampling = { greedy: p.get("greedy") === "1" };
  for (const [name, pattern] of Object.entries(SAMPLING)) {
    const v = p.get(name);
    view.sampling[name] = v != null && pattern.test(v) ? v : null;     // text, as typed; the server checks it
  }
  return view;
}

// The URL of `view` on the page at `path` (default: this page; the corpus page links to "/").
export function permalink(view, path = location.pathname) {
  const p = new URLSearchParams();
  if (view.ids != null) p.set("ids", view.ids);
  else if (view.text != null) p.set("text", view.text);
  if (view.bos) p.set("bos", "1");
  for (const name of INTS) if (view[name] != null) p.set(name, String(view[name]));
  if (view.sink) p.set("sink", "1");
  if (view.scale === "sqrt") p.set("scale", "sqrt");
  const sampling = view.sampling || {};
  for (const name of Object.keys(SAMPLING)) if (sampling[name] != null) p.set(name, String(sampling[name]));
  if (sampling.greedy) p.set("greedy", "1");
  return `${path}?${p.toString()}`;
}

export function writePermalink(view, push = false) {
  const url = permalink(view);
  if (url === location.pathname + location.search) return;
  try {
    history[push ? "pushState" : "replaceState"](null, "", url);
  } catch (e) {
    // A saved page in a sandboxed iframe (a notebook) has no URL of its own to write the view into.
    if (e.name !== "SecurityError") throw e;
  }
}

// Token strings made visible and safe. Everything here returns plain strings or builds DOM
// with textContent: a token is never parsed as HTML, whatever it contains (<script>, quotes...).

const NAMED = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍" };

// Split a token into runs of visible text and stand-ins for whitespace and control characters.
export function tokenParts(s) {
  const parts = [];
  for (const ch of s) {
    const code = ch.codePointAt(0);
    let part;
    if (NAMED[ch]) part = { text: NAMED[ch], kind: "ws" };
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0))
      part = { text: "\\x" + code.toString(16).padStart(2, "0"), kind: "ctl" };
    else part = { text: ch, kind: "txt" };
    const last = parts[parts.length - 1];
    if (last && last.kind === part.kind) last.text += part.text;
    else parts.push(part);
  }
  if (!parts.length) parts.push({ text: "∅", kind: "ctl" });
  return parts;
}

// One-line label for canvas and SVG text (still plain text, never markup).
export function tokenLabel(s, max = 16) {
  const text = tokenParts(s).map((p) => p.text).join("");
  return [...text].length > max ? [...text].slice(0, max - 1).join("") + "…" : text;
}

// <span class="tok"> with the stand-ins styled; built with textContent only.
export function tokenSpan(s, className = "tok") {
  const span = document.createElement("span");
  span.className = className;
  for (const part of tokenParts(s)) {
    const el = document.createElement("span");
    el.className = "tp-" + part.kind;
    el.textContent = part.text;
    span.appendChild(el);
  }
  return span;
}

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "testid") node.dataset.testid = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// "1 document", "2 documents", "1,024 tokens".
export const count = (n, noun) => `${n.toLocaleString("en")} ${noun}${n === 1 ? "" : "s"}`;

// An API error as a panel shows it: red, or — for what a saved file leaves to the live server
// (ApiError.liveOnly, static/snapshot.js) — a quiet note that gives the command.
export function problem(e, className = "error small", testid = null) {
  return e.liveOnly
    ? el("p", { className: "muted small live-only", testid: "live-only", text: e.message })
    : el("div", { className, text: e.message, ...(testid ? { testid } : {}) });
}

// The note a panel shows while its numbers are on their way (or until it comes into view).
export const loadingNote = (text = "loading…") => el("p", { className: "muted loading-note", text });

// XML-escape for the SVG export (attribute- and text-safe).
export function xmlEscape(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c])
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, "");
}

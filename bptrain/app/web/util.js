// The few helpers every module of the page needs, written once: find an element, build one, and send a
// request whose answer is JSON.

export const $ = (id) => document.getElementById(id);

// el("button", { id: "go", textContent: "Go" }, child, ...): an element with these properties and children.
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// The names of the served network's classes (GET /api/model's class_names), one per output; a class without
// one is shown by its number.
let classNames = [];
export const setClassNames = (names) => { classNames = Array.isArray(names) ? names.map(String) : []; };
export const className = (c) => classNames[c] ?? String(c);
export const classNamesList = () => classNames.slice();

export const UNREACHABLE = "cannot reach the bptrain server (is it still running?)";

// fetch(url, options) and read the answer as JSON: [ok, answer]. It never throws, and a refusal always
// carries a one-line answer.error to show: an answer that is not JSON (or a refusal without a message)
// becomes {error: "server answered <status>"}, and a server that cannot be reached {error: UNREACHABLE}.
export async function fetchJson(url, options = {}) {
  let response, answer;
  try { response = await fetch(url, options); } catch (e) { return [false, { error: UNREACHABLE }]; }
  try { answer = await response.json(); } catch (e) { answer = { error: `server answered ${response.status}` }; }
  if (!response.ok && !answer?.error) answer = { error: `server answered ${response.status}` };
  return [response.ok, answer];
}

// POST a JSON body: fetchJson with the method, the header and the body filled in.
export function postJson(url, body) {
  return fetchJson(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

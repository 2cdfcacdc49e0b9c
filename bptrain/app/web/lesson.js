// The lesson: backpropagation walked one step at a time on one digit, with the numbers (#lesson).
//
// It opens from the Backprop panel's "Walk through it step by step" (#lesson-open: the panel's current digit,
// drawn, uploaded or from the data set) or from the URL:
//     #lesson/N                    step N (1-based) of the digit on the pad
//     #lesson/N/validation/1234    step N of digit 1234 of the validation split (or test/K)
// and the hash follows the step. Every number comes from one POST /api/lesson answer (bptrain/app/lesson.py:
// explain's numbers plus each step's formula, prose, hover terms, question and the gradient check); this module
// only lays them out. Changing the target or the weight to nudge asks again. Numbers are written with 4
// significant digits, as `bptrain explain` prints them (the check's costs with more: their difference is the point).
// Keys: ArrowRight/ArrowLeft move between steps (not while typing in a field), Escape leaves the lesson.
import { shownSnapshot } from "./app.js";
import { $, className, el, fetchJson } from "./util.js";

const POSITIVE = [200, 55, 45], NEGATIVE = [47, 111, 223];   // as the Backprop panel: red above 0, blue below
const PIXEL = 7;                                              // CSS pixels per input pixel of the pictures
const HASH = /^#lesson(?:\/(\d+))?(?:\/(validation|test)\/(\d+))?\/?$/;

const view = $("lesson");
let current = null;        // the Backprop panel's digit: the request the page sent ({url, headers, body, digit})
let source = null;         // the lesson's digit: {split, index} | {json: {...}} | {file, url, headers}
let fields = {};           // what the learner chose: label, weight, epsilon
let doc = null;            // the last answer of POST /api/lesson
let step = 0;              // index into doc.steps
let wantedStep = 0;        // the step to show once the answer is in
let answers = {};          // step id -> "right" | "wrong" | "skipped"
let picks = {};            // step id -> the choice the learner picked
let asked = 0;             // requests sent: only the last one's answer is shown
let opener = null;         // where the focus goes back to on leaving

// ------------------------------------------------------------------ numbers as the terminal writes them
// Python's f"{v:.4g}" (explain's _n): d significant digits, trailing zeros dropped, exponent below 1e-4 and
// from 1e+d on, an exact tie rounded to even as Python does; null (NaN or infinity in the JSON) as "nan".
export function g(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "nan";
  if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
  if (value === 0) return "0";
  const sign = value < 0 ? "-" : "", size = Math.abs(value);
  let [mantissa, power] = size.toExponential(digits - 1).split("e");     // ties rounded up: Python's to even
  let kept = mantissa.replace(".", "");
  const [exactMantissa, exactPower] = size.toExponential(99).split("e");
  const exact = exactMantissa.replace(".", "");
  if (/^50*$/.test(exact.slice(digits)) && Number(exact[digits - 1]) % 2 === 0) {
    kept = exact.slice(0, digits);
    power = exactPower;
  }
  const exponent = Number(power);
  const strip = (text) => text.replace(/0+$/, "");
  if (exponent < -4 || exponent >= digits) {
    const tail = strip(kept.slice(1));
    return `${sign}${kept[0]}${tail ? `.${tail}` : ""}e${exponent < 0 ? "-" : "+"}${String(Math.abs(exponent)).padStart(2, "0")}`;
  }
  const whole = exponent >= 0 ? kept.slice(0, exponent + 1) : "0";
  const fraction = strip(exponent >= 0 ? kept.slice(exponent + 1) : "0".repeat(-exponent - 1) + kept);
  return `${sign}${whole}${fraction ? `.${fraction}` : ""}`;
}
const pct = (p) => (p === null || p === undefined ? "nan" : `${(100 * p).toFixed(2)}%`);   // explain's _pct

function signedColour(value, scale) {
  const t = scale > 0 && value !== null ? Math.max(-1, Math.min(1, value / scale)) : 0;
  const [r, gr, b] = t >= 0 ? POSITIVE : NEGATIVE, k = Math.abs(t);
  return `rgb(${[255 + k * (r - 255), 255 + k * (gr - 255), 255 + k * (b - 255)].map(Math.round).join(",")})`;
}
function greyColour(value, top) {           // white: strongly active (as the page's hidden strips)
  let v = value ?? 0;
  if (doc.model.activation === "tanh") v = (v + 1) / 2;
  else if (doc.model.activation === "relu") v = top > 0 ? v / top : 0;
  const level = Math.round(255 * Math.max(0, Math.min(1, v)));
  return `rgb(${level},${level},${level})`;
}
const biggest = (values) => Math.max(0, ...values.map((v) => Math.abs(v ?? 0)));

// ------------------------------------------------------------------ opening, asking, leaving
function sourceOf(drawing) {
  if (!drawing) return null;
  if (drawing.digit) return { split: drawing.digit.split, index: drawing.digit.index };
  if (typeof drawing.body === "string") return { json: JSON.parse(drawing.body) };
  return { file: drawing.body, url: drawing.url, headers: drawing.headers };
}

function open(newSource, stepNumber, label = null) {
  source = newSource;
  fields = { label };
  answers = {};
  picks = {};
  doc = null;
  wantedStep = Math.max(0, stepNumber - 1);
  if (view.hidden) opener = document.activeElement;
  view.hidden = false;
  document.body.classList.add("lesson-open");
  $("lesson-title").focus();                // the keys now act in the lesson, not on the page behind it
  if (!source) source = { json: {} };       // no digit named: the server picks one the network reads wrong
  ask();
}

function leave() {
  view.hidden = true;
  document.body.classList.remove("lesson-open");
  if (location.hash.startsWith("#lesson")) history.replaceState(null, "", location.pathname + location.search);
  if (opener && opener.focus) opener.focus();
}

async function ask() {
  const mine = ++asked;
  view.dataset.requests = "busy";           // "idle" once the answer is shown (the browser tests wait for it)
  const chosen = Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== null && v !== undefined));
  const snapshot = shownSnapshot();
  let url = "/api/lesson", request;
  if (source.file) {                        // an uploaded image: its bytes, the fields in the query string
    const query = new URL(source.url, location.href).searchParams;
    for (const [name, value] of Object.entries(chosen)) query.set(name, Array.isArray(value) ? value.join(",") : String(value));
    if (snapshot !== null) query.set("snapshot", String(snapshot));
    url = `/api/lesson?${query}`;
    request = { headers: source.headers, body: source.file };
  } else {
    const body = source.json ? { ...source.json } : { split: source.split, index: source.index };
    if (snapshot !== null && (!source.json || Object.keys(source.json).length === 0)) body.snapshot = snapshot;
    request = { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...body, ...chosen }) };
  }
  const [ok, answer] = await fetchJson(url, { method: "POST", ...request });
  if (mine !== asked) return;
  if (!ok) {
    if (doc) { $("lesson-error").textContent = answer.error; view.dataset.requests = "idle"; }
    else if (source.json && Object.keys(source.json).length === 0) {
      showMessage("There is no digit yet, and the server has no data set to pick one from: draw one on the pad " +
        "(or upload one), then press “Walk through it step by step” in the Backprop panel. With `bptrain serve " +
        "--data`, a link can also name a data-set digit: #lesson/4/validation/1234.");
    } else showMessage(answer.error);
    return;
  }
  $("lesson-error").textContent = "";
  doc = answer;
  if (source.json && Object.keys(source.json).length === 0 && doc.input.kind === "dataset") {
    source = { split: doc.input.split, index: doc.input.index };      // the digit the server picked, from now on
  }
  go(Math.min(wantedStep, doc.steps.length - 1));
}

function showMessage(text) {
  for (const id of ["lesson-title", "lesson-formula", "lesson-shapes", "lesson-prose", "lesson-core", "lesson-count",
                    "lesson-digit-info"]) $(id).textContent = "";     // nothing of a lesson no longer shown
  $("lesson-title").textContent = "The lesson";
  $("lesson-question").textContent = $("lesson-result").textContent = $("lesson-toc").textContent = "";
  $("lesson-error").textContent = text;
  $("lesson-prev").disabled = $("lesson-next").disabled = true;
  view.dataset.step = "";
  view.dataset.requests = "idle";
}

function go(index) {
  if (!doc) return;
  step = wantedStep = Math.max(0, Math.min(doc.steps.length - 1, index));
  render();
  const where = doc.input && doc.input.kind === "dataset" ? `/${doc.input.split}/${doc.input.index}` : "";
  const hash = `#lesson/${step + 1}${where}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
  view.dataset.requests = "idle";
}

// ------------------------------------------------------------------ one step
function render() {
  const s = doc.steps[step], n = doc.steps.length;
  view.dataset.step = String(step + 1);
  view.dataset.kind = s.kind;
  $("lesson-count").textContent = `Step ${step + 1} of ${n}`;
  $("lesson-title").textContent = s.title;
  $("lesson-formula").textContent = s.formula;
  $("lesson-shapes").textContent = `Shapes: ${s.shapes}`;
  $("lesson-prose").textContent = s.prose;
  $("lesson-core").textContent = "";
  $("lesson-core").append("Computed by ", el("code", { textContent: s.core }));
  $("lesson-prev").disabled = step === 0;
  $("lesson-next").disabled = step === n - 1;
  $("lesson-digit-info").textContent = describeDigit();
  const toc = $("lesson-toc");
  toc.textContent = "";
  doc.steps.forEach((t, k) => {
    const item = el("button", { type: "button", textContent: `${k + 1}. ${t.title}`, className: k === step ? "now" : "" });
    item.addEventListener("click", () => go(k));
    toc.append(el("li", {}, item));
  });
  const result = $("lesson-result");
  result.textContent = "";
  result.append(...RENDER[s.kind](s));
  showQuestion(s);
}

function describeDigit() {
  const input = doc.input || {}, target = doc.label;
  const what = input.kind === "dataset" ? `Digit ${input.index} of the ${input.split} split (a ${className(doc.true_label)})`
    : input.kind === "image" ? "Your uploaded image" : "Your drawing";
  const rule = { true: "its true label", given: "chosen by you", prediction: "the network's answer" }[doc.label_rule] || "";
  return `${what}; target ${className(target)} (${rule}); network ${doc.model.sizes.join("-")}, ${doc.model.activation} hidden, ` +
    `${doc.model.loss === "ce" ? "softmax + cross-entropy" : "sigmoid + quadratic cost"}.`;
}

function showQuestion(s) {
  const box = $("lesson-question"), result = $("lesson-result");
  box.textContent = "";
  const q = s.question, state = q ? answers[s.id] : undefined;
  result.hidden = Boolean(q) && state === undefined;
  view.dataset.question = !q ? "none" : state === undefined ? "open" : state;
  if (!q) return;
  box.append(el("p", { className: "ls-ask", textContent: q.ask }));
  const choices = el("div", { className: "ls-choices" });
  q.choices.forEach((choice, k) => {
    const button = el("button", { type: "button", textContent: choice, disabled: state !== undefined });
    button.dataset.choice = k;
    if (state !== undefined && k === q.answer) button.classList.add("answer");
    if (state === "wrong" && k === picks[s.id]) button.classList.add("picked-wrong");   // the learner's pick, marked
    button.addEventListener("click", () => {
      answers[s.id] = k === q.answer ? "right" : "wrong";
      picks[s.id] = k;
      showQuestion(s);
    });
    choices.append(button);
  });
  if (state === undefined) {
    const skip = el("button", { type: "button", id: "lesson-skip", textContent: "Skip", className: "ls-skip" });
    skip.addEventListener("click", () => { answers[s.id] = "skipped"; showQuestion(s); });
    choices.append(skip);
  }
  box.append(choices);
  if (state !== undefined) {
    const right = q.choices[q.answer];
    const verdict = { right: `Right: the answer is ${right}. `,
                      wrong: `Not quite: you chose ${q.choices[picks[s.id]]}; the answer is ${right}. `,
                      skipped: `Skipped: the answer is ${right}. ` }[state];
    box.append(el("p", { id: "lesson-verdict", className: `ls-verdict ${state}`, textContent: verdict + q.why }));
  }
}

// ------------------------------------------------------------------ pictures and cells
function picture(values, { colour = null, id = "" } = {}) {
  // the input (784 values in [0, 1]) as a side × side picture, dark ink on white paper, with an overlay canvas
  const side = Math.round(Math.sqrt(values.length));
  const base = el("canvas", { width: side, height: side, className: "ls-picture" });
  if (id) base.id = id;
  const image = new ImageData(side, side);
  values.forEach((v, i) => {
    let rgb = [255 * (1 - v), 255 * (1 - v), 255 * (1 - v)];
    if (colour) rgb = colour(i, v);
    image.data.set([...rgb.map(Math.round), 255], 4 * i);
  });
  base.getContext("2d").putImageData(image, 0, 0);
  base.style.width = base.style.height = `${side * PIXEL}px`;
  const overlay = el("canvas", { width: side * PIXEL, height: side * PIXEL, className: "ls-overlay" });
  return el("div", { className: "ls-frame" }, base, overlay);
}

function highlightPixels(frame, terms) {
  const overlay = frame.querySelector(".ls-overlay"), c = overlay.getContext("2d");
  const side = overlay.width / PIXEL;
  c.clearRect(0, 0, overlay.width, overlay.height);
  c.lineWidth = 2;
  for (const term of terms) {
    const x = (term.i % side) * PIXEL, y = Math.floor(term.i / side) * PIXEL;
    c.strokeStyle = term.product >= 0 ? "rgb(200,55,45)" : "rgb(47,111,223)";
    c.strokeRect(x - 2, y - 2, PIXEL + 4, PIXEL + 4);
  }
  overlay.dataset.highlighted = terms.map((t) => t.i).join(",");
}

// A layer's units as cells; hovering, focusing or tapping one calls pick(j).
function cells(values, { colour, title, pick = null, layer = "", small = false }) {
  const grid = el("div", { className: `ls-grid${small ? " small" : ""}${values.length <= 10 ? " wide" : ""}` });
  grid.dataset.layer = layer;
  const columns = values.length <= 10 ? values.length : values.length > 256 ? 32 : 16;
  grid.style.gridTemplateColumns = `repeat(${columns}, auto)`;
  values.forEach((v, j) => {
    const cell = el(pick ? "button" : "span", { className: "ls-cell", title: title(j, v) });
    if (pick) cell.type = "button";
    if (values.length <= 10) cell.textContent = String(j);
    cell.style.background = colour(v);
    cell.dataset.j = j;
    grid.append(cell);
  });
  if (pick) {
    const choose = (event) => { const cell = event.target.closest(".ls-cell"); if (cell) pick(Number(cell.dataset.j)); };
    for (const name of ["mouseover", "focusin", "click"]) grid.addEventListener(name, choose);
  }
  return grid;
}

function markCells(grid, picked, sources = []) {
  if (!grid) return;
  for (const cell of grid.querySelectorAll(".ls-cell")) {
    const j = Number(cell.dataset.j);
    cell.classList.toggle("picked", j === picked);
    const term = sources.find((t) => t.index === j);
    cell.classList.toggle("source-pos", Boolean(term) && term.product >= 0);
    cell.classList.toggle("source-neg", Boolean(term) && term.product < 0);
  }
}

function table(headers, rows, id = "") {
  const t = el("table", { className: "ls-table" });
  if (id) t.id = id;
  t.append(el("tr", {}, ...headers.map((h) => el("th", { textContent: h }))));
  for (const row of rows) t.append(el("tr", {}, ...row.map((cell) => el("td", { textContent: cell }))));
  return t;
}

const numbers = (pairs, id = "") => {
  const list = el("dl", { className: "ls-numbers" });
  if (id) list.id = id;
  for (const [name, value, key] of pairs) {
    const dd = el("dd", { textContent: value });
    if (key) dd.id = key;
    list.append(el("dt", { textContent: name }), dd);
  }
  return list;
};

const layerOf = (l) => doc.explain.layers[l - 1];
const row = (matrix) => (matrix && matrix.values ? matrix.values[0] : []);
const inputValues = () => row(doc.explain.A_0);

// ------------------------------------------------------------------ each kind of step
function inputStep(s) {
  const values = inputValues(), n = values.length;
  const vector = el("canvas", { width: n, height: 1, className: "ls-vector" });
  const image = new ImageData(n, 1);
  values.forEach((v, i) => { const level = Math.round(255 * (1 - v)); image.data.set([level, level, level, 255], 4 * i); });
  vector.getContext("2d").putImageData(image, 0, 0);
  return [el("div", { className: "ls-row" },
    el("figure", {}, picture(values, { id: "lesson-picture" }), el("figcaption", { textContent: `${s.side ?? "?"} × ${s.side ?? "?"} pixels` })),
    numbers([["A_0", `(1 × ${n})`, "lesson-input-shape"], ["pixels with ink", String(s.ink_pixels), "lesson-ink"],
             ["largest value", g(doc.explain.A_0.max)]])),
  el("figure", {}, vector, el("figcaption", { textContent: `The same ${n} numbers as one row vector A_0, read row by row.` }))];
}

function forwardStep(s) {
  const l = s.layer, L = doc.explain.layers.length, out = l === L;
  const z = row(layerOf(l).Z), a = row(layerOf(l).A), top = Math.max(...a);
  const previous = l === 1 ? null : row(layerOf(l - 1).A);
  const from = l === 1 ? picture(inputValues())
    : cells(previous, { colour: (v) => greyColour(v, Math.max(...previous)), title: (j, v) => `unit ${j} of layer ${l - 1}: a = ${g(v)}`,
                        layer: String(l - 1), small: previous.length > 64 });
  const detail = el("div", { id: "lesson-unit", className: "ls-unit" });
  const pick = (j) => {
    const unit = s.units[j];
    markCells(grid, j);
    if (l === 1) highlightPixels(from, unit.terms);
    else markCells(from, null, unit.terms.map((t) => ({ index: t.i, product: t.product })));
    detail.dataset.j = j;
    detail.textContent = "";
    const f = out ? (doc.model.loss === "ce" ? "softmax" : "σ") : { sigmoid: "σ", tanh: "tanh", relu: "relu" }[doc.model.activation];
    const source = l === 1 ? "pixel" : `unit of layer ${l - 1}`;
    detail.append(
      el("h3", { textContent: `Unit ${j} of layer ${l}: z_${j} = Σ_i a_i w_i${j} + b_${j}` }),
      table(["i", "a_i", `w_i${j}`, "a_i w_ij"], unit.terms.map((t) => [String(t.i), g(t.a), g(t.w), g(t.product)]), "lesson-terms"),
      el("p", { className: "hint", textContent: `The ${unit.terms.length} largest of ${(l === 1 ? inputValues() : previous).length} terms ` +
        `(each ${source} times its weight), outlined ${l === 1 ? "on the digit" : "among the units on the left"}: red adds, blue takes away.` }),
      numbers([["Σ_i a_i w_ij", g(unit.sum), "lesson-unit-sum"], ["b_j", g(unit.b), "lesson-unit-b"], ["z_j", g(unit.z), "lesson-unit-z"],
               [out && doc.model.loss === "ce" ? "a_j = softmax(z)_j" : `a_j = ${f}(z_j)`, g(unit.a), "lesson-unit-a"]]));
  };
  const grid = cells(a, { colour: (v) => (out ? signedColour(v, 1) : greyColour(v, top)), title: (j) => `unit ${j}: z = ${g(z[j])}, a = ${g(a[j])}`,
                          pick, layer: String(l) });
  grid.id = "lesson-units";
  const best = a.indexOf(Math.max(...a));
  pick(best);
  return [el("div", { className: "ls-row" },
    el("figure", {}, from, el("figcaption", { textContent: l === 1 ? "A_0: the input" : `A_${l - 1}: layer ${l - 1}'s units` })),
    el("figure", {}, grid, el("figcaption", { textContent: `A_${l}: ${a.length} units, ${out ? "darker red for a larger output" : "white for strongly active"}. ` +
      "Hover, focus or tap one to see its sum." })),
    detail)];
}

function costStep(s) {
  const bars = el("div", { id: "lesson-bars", className: "ls-bars" });
  s.probabilities.forEach((p, c) => {
    const fill = el("div", { className: "fill" });
    fill.style.width = `${(100 * (p ?? 0)).toFixed(2)}%`;
    const name = el("span", { className: "digit", textContent: className(c) });
    const value = el("span", { className: "pct", textContent: pct(p) });
    const line = el("div", { className: `ls-prob${c === s.target ? " target" : ""}${c === s.prediction ? " best" : ""}` },
      name, el("div", { className: "track" }, fill), value);
    line.dataset.c = c;
    bars.append(line);
  });
  const select = el("select", { id: "lesson-target" });
  s.probabilities.forEach((_, c) => select.append(el("option", { value: String(c), textContent: className(c) })));
  select.value = String(s.target);
  select.addEventListener("change", () => { fields.label = Number(select.value); ask(); });
  return [el("div", { className: "ls-row" },
    el("figure", {}, bars, el("figcaption", { textContent: `A_${doc.explain.layers.length} as probabilities; bold: the target; dark: the network's answer.` })),
    el("div", {},
      el("label", { className: "ls-label" }, "Target class Y = one-hot(", select, ")"),
      numbers([["C", g(s.cost), "lesson-cost"], ["p(target)", `${s.p_target_text} (${pct(s.probabilities[s.target])})`, "lesson-p-target"],
               ["the network answers", className(s.prediction), "lesson-prediction"]]),
      el("p", { className: "hint", textContent: "Choose another target to see what the network would be taught instead." })))];
}

function backwardStep(s) {
  const l = s.layer, L = doc.explain.layers.length, out = l === L;
  const deltas = s.units.map((u) => u.delta), scale = biggest(deltas);
  const downstream = out ? null : row(layerOf(l + 1).delta);
  const next = out ? null : cells(downstream, { colour: (v) => signedColour(v, biggest(downstream)), title: (k, v) => `unit ${k} of layer ${l + 1}: δ = ${g(v)}`,
                                               layer: String(l + 1), small: downstream.length > 64 });
  const detail = el("div", { id: "lesson-unit", className: "ls-unit" });
  const pick = (j) => {
    const u = s.units[j];
    markCells(grid, j);
    detail.dataset.j = j;
    detail.textContent = "";
    if (out) {
      const formula = doc.model.loss === "ce" ? `δ_${j} = (a_${j} − y_${j}) / B` : `δ_${j} = (a_${j} − y_${j}) · a_${j} (1 − a_${j}) / B`;
      const pairs = [["a_j", g(u.a), "lesson-unit-a"], ["y_j", g(u.y), "lesson-unit-y"]];
      if (u.f_prime !== undefined) pairs.push(["a_j (1 − a_j)", g(u.f_prime), "lesson-unit-fprime"]);
      pairs.push(["δ_j", g(u.delta), "lesson-unit-delta"]);
      detail.append(el("h3", { textContent: `Output ${j}: ${formula}` }), numbers(pairs));
      return;
    }
    markCells(next, null, u.terms.map((t) => ({ index: t.k, product: t.product })));
    detail.append(
      el("h3", { textContent: `Unit ${j} of layer ${l}: δ_${j} = (Σ_k w_${j}k δ_k) · f'(z_${j})` }),
      table(["k", `w_${j}k`, "δ_k", "w_jk δ_k"], u.terms.map((t) => [String(t.k), g(t.w), g(t.delta), g(t.product)]), "lesson-terms"),
      el("p", { className: "hint", textContent: `The ${u.terms.length} largest of ${downstream.length} terms: the errors of layer ${l + 1} ` +
        "(outlined on the right) weighed by the weights that leave this unit." }),
      numbers([["Σ_k w_jk δ_k", g(u.sum), "lesson-unit-sum"], ["f'(z_j)", g(u.f_prime), "lesson-unit-fprime"],
               ["δ_j", g(u.delta), "lesson-unit-delta"]]));
  };
  const grid = cells(deltas, { colour: (v) => signedColour(v, scale), title: (j, v) => `unit ${j}: δ = ${g(v)}`, pick, layer: String(l) });
  grid.id = "lesson-units";
  const largest = deltas.map((d) => Math.abs(d ?? 0));
  const figures = [el("figure", {}, grid, el("figcaption", { textContent: `Δ_${l}: blue < 0 < red, full colour at ±${g(scale)}. Hover a unit.` }))];
  if (next) figures.push(el("figure", {}, next, el("figcaption", { textContent: `Δ_${l + 1}, the errors it comes from` })));
  const gradient = layerOf(l);
  pick(largest.indexOf(Math.max(...largest)));
  return [el("div", { className: "ls-row" }, ...figures),
    el("div", { className: "ls-row" }, detail,
      el("div", {}, el("h3", { textContent: `∂C/∂W_${l} = A_${l - 1}ᵀ Δ_${l}: its largest entries` }),
        table(["i", "j", "∂C/∂w_ij"], s.grad_W_top.map((t) => [String(t.index[0]), String(t.index[1]), g(t.value)]), "lesson-grad-top"),
        numbers([[`‖∂C/∂W_${l}‖`, g(s.grad_W_norm), "lesson-grad-norm"], [`‖∂C/∂b_${l}‖`, g(gradient.grad_b.norm), "lesson-grad-b-norm"]])))];
}

function checkStep(s) {
  const c = s.check;
  const input = (id, value, label) => el("label", {}, label, el("input", { id, type: "text", inputMode: "numeric", value: String(value), size: 5 }));
  const run = el("button", { type: "button", id: "nudge-run", textContent: "Nudge it" });
  const suggested = el("button", { type: "button", id: "nudge-suggested",
    textContent: `Use the suggested weight W_${c.suggested[0]}[${c.suggested[1]}, ${c.suggested[2]}]` });
  const read = () => ["nudge-layer", "nudge-i", "nudge-j"].map((id) => Number($(id).value.trim()));
  run.addEventListener("click", () => {
    const weight = read(), epsilon = Number($("nudge-epsilon").value.trim());
    if (!weight.every(Number.isInteger) || !(epsilon > 0)) { $("lesson-error").textContent = "the weight is three integers l, i, j and ε a number above 0"; return; }
    fields.weight = weight; fields.epsilon = epsilon; ask();
  });
  suggested.addEventListener("click", () => { fields.weight = null; fields.epsilon = Number($("nudge-epsilon").value.trim()) || null; ask(); });
  const form = el("div", { className: "ls-nudge-form" }, input("nudge-layer", c.weight[0], "layer l "), input("nudge-i", c.weight[1], "i "),
    input("nudge-j", c.weight[2], "j "), input("nudge-epsilon", c.epsilon, "ε "), run, suggested);
  form.addEventListener("keydown", (event) => { if (event.key === "Enter") run.click(); });
  const [l, i, j] = c.weight;
  return [form,
    numbers([[`w = W_${l}[${i}, ${j}]`, g(c.w), "nudge-w"], ["ε", g(c.epsilon), "nudge-epsilon-shown"],
             ["C(w + ε)", g(c.cost_plus, 10), "nudge-plus"], ["C(w − ε)", g(c.cost_minus, 10), "nudge-minus"]]),
    el("div", { className: "ls-side" },
      el("div", {}, el("p", { className: "ls-caption", textContent: "measured: (C(w + ε) − C(w − ε)) / 2ε" }),
        el("p", { id: "nudge-measured", className: "ls-big", textContent: g(c.measured, 7) })),
      el("div", {}, el("p", { className: "ls-caption", textContent: `predicted by backprop: ∂C/∂w = a_i δ_j` }),
        el("p", { id: "nudge-predicted", className: "ls-big", textContent: g(c.predicted, 7) }))),
    el("p", { id: "nudge-relative", textContent: `relative error ${c.relative_error_formula} = ${g(c.relative_error, 2)}: ${c.verdict}.` }),
    el("p", { className: "hint", textContent: `Below ${g(c.thresholds[0])} the two agree; above ${g(c.thresholds[1])} the gradient is wrong ` +
      "(cs231n's thresholds, for a cost without kinks)." })];
}

function inputGradientStep(s) {
  const values = inputValues(), gradient = s.input_gradient, scale = biggest(gradient);
  const target = doc.label;
  // −∂C/∂a: blue where more ink would lower the cost (raise p(target)), red where less ink would; the ink darkened
  const colour = (i, v) => {
    const t = scale > 0 ? Math.max(-1, Math.min(1, (gradient[i] ?? 0) / scale)) : 0;
    const [r, gr, b] = t >= 0 ? POSITIVE : NEGATIVE, k = Math.abs(t), shade = 1 - 0.45 * v;
    return [255 + k * (r - 255), 255 + k * (gr - 255), 255 + k * (b - 255)].map((x) => x * shade);
  };
  return [el("div", { className: "ls-row" },
    el("figure", {}, picture(values, { colour, id: "lesson-gradient" }),
      el("figcaption", { id: "lesson-gradient-legend" },
        el("span", { className: "ls-key blue" }), ` blue: more ink here would raise p(${target}) (∂C/∂a_i < 0)`, el("br"),
        el("span", { className: "ls-key red" }), ` red: less ink here would raise it (∂C/∂a_i > 0)`, el("br"),
        `full colour at ±${g(scale)}; the digit's ink is shaded darker`)),
    el("div", {}, el("h3", { textContent: "The pixels that matter most" }),
      table(["pixel", "row, column", "∂C/∂a_i"], s.input_gradient_top.map((t) => [String(t.index),
        `${Math.floor(t.index / Math.round(Math.sqrt(values.length)))}, ${t.index % Math.round(Math.sqrt(values.length))}`, g(t.value)]), "lesson-gradient-top")))];
}

function updateStep(s) {
  const u = s.update, target = doc.label, before = doc.explain.output.predictions[0];
  return [el("div", {}, el("h3", { textContent: `One step of η = ${g(u.lr)} (${u.lr_source}), on a copy` }),
    table(["", "before", "after"], [["C", g(u.loss_before), g(u.loss_after)], [`p(${target})`, pct(u.p_label_before), pct(u.p_label_after)],
      ["the network answers", String(before), String(u.prediction_after)]], "lesson-update"))];
}

function speedStep(s) {
  const rows = s.layers.map((r) => [String(r.l), g(r.a_prev_norm), g(r.delta_norm), g(r.product), g(r.grad_W_norm), g(r.grad_W_rms),
    r.w_factor === null ? "" : `× ${g(r.w_factor, 3)}`, r.f_factor === null ? "" : `× ${g(r.f_factor, 3)}`]);
  const link = el("code", { id: "lesson-speed-link", textContent: s.link });   // a file of the repository (the page is offline)
  return [table(["layer l", "‖A_l−1‖", "‖Δ_l‖", "‖A_l−1‖ · ‖Δ_l‖", "‖∂C/∂W_l‖", "per entry (RMS)", "by W_l+1ᵀ", "by f'(Z_l)"], rows, "lesson-speed"),
    el("p", { className: "hint", textContent: "‖A_l−1‖ · ‖Δ_l‖ equals ‖∂C/∂W_l‖ for one digit (A_l−1ᵀ Δ_l is a rank-1 matrix). The last two columns: " +
      "how much Δ_l+1 W_l+1ᵀ and then ⊙ f'(Z_l) change the length going back a layer. Why deep sigmoid networks start slow: " }, link)];
}

const par = (v) => (v !== null && v < 0 ? `(${g(v, 3)})` : g(v, 3));   // a term of a sum: negatives in brackets

function batchStep(s) {
  const b = s.batch, L = doc.explain.layers.length, ce = doc.model.loss === "ce";
  const rows = b.rows.map((r) => [String(r.row), r.digit, String(r.label), String(r.prediction), g(r.p_label)].concat(ce ? [g(r.cost)] : []));
  const parts = [table(["row", "digit", "label", "answer", "p(label)"].concat(ce ? ["−log p"] : []), rows, "lesson-batch-rows"),
    el("p", { id: "lesson-batch-cost", textContent: `C = (1/${b.batch_size}) Σ_rows ${ce ? "−log p" : "½‖a − y‖²"} = ${g(b.cost)}` })];
  const classes = b.delta_out[0].length;
  if (classes <= 20) {
    const head = ["row"].concat([...Array(classes).keys()].map(String));
    const body = b.delta_out.map((row, r) => [String(r)].concat(row.map((v) => g(v, 3))));
    body.push([`Σ_rows = ∂C/∂b_${L}`].concat(b.grad_b_out.map((v) => g(v, 3))));
    parts.push(el("h3", { textContent: `Δ_${L} = ${ce ? `(A_${L} − Y) / ${b.batch_size}` : `(A_${L} − Y) ⊙ A_${L} ⊙ (1 − A_${L}) / ${b.batch_size}`}: one row per digit (${b.batch_size} × ${classes})` }),
      table(head, body, "lesson-batch-delta"));
  }
  const sums = el("div", { id: "lesson-batch-sums" });
  for (const layer of b.layers) {
    const w = layer.weight, bias = layer.bias, [rowsA, nIn] = layer.shape_A_prev, nOut = layer.shape_delta[1];
    sums.append(el("p", { className: "ls-batch-sum" },
      el("b", { textContent: `∂C/∂W_${layer.l} = A_${layer.l - 1}ᵀ Δ_${layer.l}: (${nIn} × ${rowsA}) (${rowsA} × ${nOut}) = (${nIn} × ${nOut}). ` }),
      `Its largest entry [${w.i}, ${w.j}] = Σ_rows a_${w.i} δ_${w.j} = ` + w.terms.map((t) => `${g(t.a, 3)} × ${par(t.delta)}`).join(" + ") +
      ` = ${g(w.sum)}; ∂C/∂b_${layer.l}[${bias.j}] = Σ_rows δ_${bias.j} = ` + bias.deltas.map(par).join(" + ") + ` = ${g(bias.sum)}.`));
  }
  parts.push(sums);
  return parts;
}

const RENDER = { input: inputStep, forward: forwardStep, cost: costStep, backward: backwardStep, speed: speedStep, batch: batchStep,
                 check: checkStep, "input-gradient": inputGradientStep, update: updateStep };

// ------------------------------------------------------------------ wiring: the panel's button, keys, the URL
function fromHash() {
  const match = HASH.exec(location.hash);
  if (!match) { if (!view.hidden) leave(); return; }
  const number = Number(match[1] || 1);
  const wanted = match[2] ? { split: match[2], index: Number(match[3]) } : null;
  const same = doc && (wanted ? doc.input.kind === "dataset" && doc.input.split === wanted.split && doc.input.index === wanted.index
    : source && !source.split);
  if (!view.hidden && same) { go(number - 1); return; }
  open(wanted || sourceOf(current), number);
}

document.addEventListener("bptrain:drawing", (event) => {
  current = event.detail || null;
  const button = $("lesson-open");
  if (button) button.disabled = !current;
});
document.addEventListener("click", (event) => {
  if (!event.target.closest("#lesson-open") || !current) return;
  let label = $("backprop-label") && $("backprop-label").value !== "" ? Number($("backprop-label").value) : null;
  if (current.digit && label === current.digit.label) label = null;   // its true label: the server says so itself
  open(sourceOf(current), 1, label);
});
$("lesson-next").addEventListener("click", () => go(step + 1));
$("lesson-prev").addEventListener("click", () => go(step - 1));
$("lesson-close").addEventListener("click", leave);
document.addEventListener("keydown", (event) => {
  if (view.hidden) return;
  if (event.key === "Escape") { event.preventDefault(); leave(); return; }
  if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === "ArrowRight") { event.preventDefault(); go(step + 1); }
  if (event.key === "ArrowLeft") { event.preventDefault(); go(step - 1); }
});
window.addEventListener("hashchange", fromHash);
if (HASH.test(location.hash)) fromHash();

// The Backprop panel of the drawing page: what the current drawing would teach the network.
//
// It listens for the page's "bptrain:drawing" events (detail: the request the page sent to /api/predict,
// {url, headers, body, digit}, or null once the pad is cleared; digit: a digit of the data set, whose true
// label becomes the target) and sends the same input to POST /api/explain with the target label, the
// number of steps taken, the step size η (#backprop-lr, a log scale) and the hovered unit. The server is stateless: every
// request names all three, and the server replays the steps on a fresh copy of the model. All numbers
// shown are the server's (what `bptrain explain --json` prints); this module only draws them.
//
// Requests: one in flight at a time; what changes meanwhile is sent once it returns (the latest state
// only). Hovering a unit waits HOVER_MS before asking; a click or a tap asks at once. How many steps the
// server replays at most comes from GET /api/model (max_steps); until it is known, no step can be taken.
import { $, UNREACHABLE, el, fetchJson } from "./util.js";

const HOVER_MS = 100;
const LR_MIN = -4, LR_MAX = 0;   // the η control's range, as powers of ten: 1e-4 .. 1
const SATURATED = 1e-4;          // a probability this close to 1 (or 0) can hardly move further
const POSITIVE = [200, 55, 45], NEGATIVE = [47, 111, 223];   // signed colours: red above 0, blue below

const panel = $("backprop");

let drawing = null;            // the page's last request ({url, headers, body}), or null: nothing to explain
let parsedBody = null;         // its JSON body, parsed once
let inputVersion = 0;          // bumped for every new drawing; steps start again from 0
let version = 0;               // bumped for every change of what the panel should show
let label = null;              // the target class; null: the network's answer
let steps = 0;
let maxSteps = null;           // the server's limit on steps (GET /api/model's max_steps); null: not known yet
let canStep = false;           // the shown answer is for this drawing and label, with its probability before any step
let askingModel = false;
let unit = null;               // [layer, j] of the hovered or tapped unit
let baseline = null;           // {key, p}: the label's probability before any step
let networkAnswer = null;      // the served model's answer for this drawing
let inFlight = false, wanted = false, hoverTimer = 0;
let lr = null;                 // η chosen with the control; null: the model's own (the server says which)
let shape = "";                // the layer sizes the cells were built for
let activation = "sigmoid";

if (panel) build();

// ------------------------------------------------------------------ the panel's elements
function build() {
  panel.textContent = "";
  panel.dataset.requests = "idle";
  const select = el("select", { id: "backprop-label" });
  select.append(el("option", { value: "", textContent: "the network's answer" }));
  for (let c = 0; c < 10; c++) select.append(el("option", { value: String(c), textContent: String(c) }));
  panel.append(
    el("h2", { textContent: "Backprop: what this digit would teach the network" }),
    el("div", { className: "bp-controls" },
      el("label", {}, "Target label ", select),
      el("button", { id: "backprop-step", type: "button", textContent: "Take one step", disabled: true }),
      el("button", { id: "backprop-reset", type: "button", textContent: "Reset", disabled: true }),
      el("button", { id: "lesson-open", type: "button", textContent: "Walk through it step by step", disabled: true,
                     title: "The lesson: this digit's forward and backward pass, one step at a time (lesson.js)" }),
      el("span", { className: "bp-muted" }, el("span", { id: "backprop-steps", textContent: "0" }),
        el("span", { id: "backprop-steps-word", textContent: " steps taken" })),
      el("label", { className: "bp-lr" }, "step size η ",
        el("input", { id: "backprop-lr", type: "range", min: String(LR_MIN), max: String(LR_MAX), step: "0.05",
                      value: "-1", disabled: true }),
        el("span", { id: "backprop-eta" }))),
    el("p", { id: "backprop-probability" }),
    el("p", { id: "backprop-saturated", role: "status" }),
    el("p", { id: "backprop-why", className: "hint" }),
    el("p", { id: "backprop-error", role: "alert" }),
    el("div", { className: "bp-body" },
      el("div", { className: "bp-network" },
        el("h3", { textContent: "Output: the probabilities A_L and the error Δ_L = A_L − Y" }),
        el("div", { id: "backprop-output" }),
        el("div", { id: "backprop-layers" })),
      el("div", { id: "backprop-unit" })));
  showEmpty();

  select.addEventListener("change", () => {
    label = select.value === "" ? null : Number(select.value);
    steps = 0;
    changed();
  });
  $("backprop-step").addEventListener("click", () => { if (maxSteps !== null && steps < maxSteps) { steps++; changed(); } });
  $("backprop-lr").addEventListener("input", (event) => {   // the same steps again, with the new η
    lr = Number((10 ** Number(event.target.value)).toPrecision(2));
    $("backprop-eta").textContent = `= ${number(lr)}`;
    changed();
  });
  $("backprop-reset").addEventListener("click", () => { steps = 0; changed(); });
  for (const area of [$("backprop-output"), $("backprop-layers")]) {
    area.addEventListener("mouseover", (event) => {
      const cell = event.target.closest("[data-unit]");
      if (!cell) return;
      clearTimeout(hoverTimer);
      hoverTimer = setTimeout(() => pick(cell), HOVER_MS);
    });
    area.addEventListener("click", (event) => {          // a tap (or a click) picks at once
      const cell = event.target.closest("[data-unit]");
      if (cell) { clearTimeout(hoverTimer); pick(cell); }
    });
  }
  document.addEventListener("bptrain:drawing", (event) => {
    drawing = event.detail || null;
    parsedBody = null;
    inputVersion++;
    steps = 0;
    baseline = networkAnswer = null;
    if (drawing && drawing.digit) {                   // a digit of the data set: a step towards its true label
      label = drawing.digit.label;
      $("backprop-label").value = String(label);
    }
    if (!drawing) { version++; showEmpty(); return; }
    changed();
  });
  askModel();
}

// The network's units and classes, and the server's limit on steps. Asked when the panel is built, and
// again with an answer while the limit is still unknown (a page served without a network has none yet).
function askModel() {
  askingModel = true;
  fetch("/api/model").then((r) => r.json()).then((model) => {
    if (model.activation) activation = model.activation;
    const select = $("backprop-label");
    if (Number.isInteger(model.classes) && select.length !== model.classes + 1) {
      select.length = 1;
      for (let c = 0; c < model.classes; c++) select.append(el("option", { value: String(c), textContent: String(c) }));
    }
    if (Number.isInteger(model.max_steps)) { maxSteps = model.max_steps; showStepButton(); }
  }).catch(() => {}).finally(() => { askingModel = false; });
}

function showStepButton() {
  $("backprop-step").disabled = !canStep || maxSteps === null || steps >= maxSteps;
}

function pick(cell) {
  const chosen = [Number(cell.dataset.layer), Number(cell.dataset.unit)];
  if (unit && unit[0] === chosen[0] && unit[1] === chosen[1]) return;
  unit = chosen;
  markPicked();
  if (drawing) changed();
}

function showEmpty() {
  $("backprop-probability").textContent = "Draw a digit (or upload one) to see the backward pass for it.";
  $("backprop-error").textContent = "";
  $("backprop-steps").textContent = "0";
  $("backprop-steps-word").textContent = " steps taken";
  $("backprop-eta").textContent = "";
  $("backprop-saturated").textContent = "";
  $("backprop-why").textContent = "";
  $("backprop-lr").disabled = true;
  canStep = false;
  $("backprop-step").disabled = $("backprop-reset").disabled = true;
  $("backprop-output").textContent = "";
  $("backprop-layers").textContent = "";
  $("backprop-unit").textContent = "";
  $("backprop-label").options[0].textContent = "the network's answer";
  shape = "";
  panel.dataset.requests = inFlight ? "busy" : "idle";
}

// ------------------------------------------------------------------ the requests
function changed() {
  version++;
  if (inFlight) { wanted = true; return; }
  send();
}

function explainRequest() {
  const fields = { label, steps, unit, lr };
  if (typeof drawing.body === "string") {                 // a drawing: the same JSON, with the fields added
    parsedBody = parsedBody || JSON.parse(drawing.body);
    return { url: "/api/explain", headers: drawing.headers, body: JSON.stringify({ ...parsedBody, ...fields }) };
  }
  const query = new URL(drawing.url, location.href).searchParams;   // an image file: its ?ink= and the fields
  query.set("steps", String(steps));
  if (label !== null) query.set("label", String(label));
  if (unit) query.set("unit", unit.join(","));
  if (lr !== null) query.set("lr", String(lr));
  return { url: `/api/explain?${query}`, headers: drawing.headers, body: drawing.body };
}

async function send() {
  if (!drawing) return;
  inFlight = true; wanted = false;
  panel.dataset.requests = "busy";       // "idle" once every answer is in (the browser test waits for it)
  const sent = { version, key: `${inputVersion}|${label}`, steps };
  try {
    const { url, ...request } = explainRequest();
    const [ok, answer] = await fetchJson(url, { method: "POST", ...request });
    if (sent.version === version) {
      if (ok) show(answer, sent);
      else $("backprop-error").textContent = answer.error;
    }
  } catch (err) {
    if (sent.version === version) $("backprop-error").textContent = UNREACHABLE;
  } finally {
    inFlight = false;
    if (wanted && drawing) send();
    else { wanted = false; panel.dataset.requests = "idle"; }
  }
}

// ------------------------------------------------------------------ drawing the answer
const number = (v) => (v === null || v === undefined ? "—" : Number(v.toPrecision(3)).toString().replace("-", "−"));
// A cell of the Δ_L row: at most 2 significant digits, small values as powers of ten (2.3e−6), so that
// neighbouring cells never run together.
function short(v) {
  if (v === null || v === undefined) return "—";
  if (v === 0) return "0";
  const text = Math.abs(v) >= 0.01 ? String(Number(v.toPrecision(2))) : v.toExponential(1).replace("e-", "e−");
  return (v > 0 ? "+" : "") + text.replace(/^-/, "−");
}
// A probability as a percentage, in one form: 2 decimals from 0.01% up, a power of ten below (4.3e−6%).
function percent(p) {
  if (p === null || p === undefined) return "—";
  const pct = 100 * p;
  if (pct === 0) return "0%";
  return (pct >= 0.01 ? pct.toFixed(2) : pct.toExponential(1).replace("e-", "e−")) + "%";
}

function signedColour(value, scale) {
  const t = scale > 0 && value !== null ? Math.max(-1, Math.min(1, value / scale)) : 0;
  const [r, g, b] = t >= 0 ? POSITIVE : NEGATIVE, k = Math.abs(t);
  return [255 + k * (r - 255), 255 + k * (g - 255), 255 + k * (b - 255)].map(Math.round);
}
const css = (rgb) => `rgb(${rgb.join(",")})`;

function grey(value, layerMax) {                           // as the page's hidden strips: white is active
  let v = value;
  if (activation === "tanh") v = (value + 1) / 2;
  else if (activation === "relu") v = layerMax > 0 ? value / layerMax : 0;
  const g = Math.round(255 * Math.max(0, Math.min(1, v)));
  return `rgb(${g},${g},${g})`;
}

function cellGrid(l, units, kind) {
  const grid = el("div", { className: `bp-grid ${units > 256 ? "small" : ""}` });
  grid.dataset.kind = kind;
  grid.style.gridTemplateColumns = `repeat(${Math.min(units, units > 256 ? 32 : 16)}, auto)`;
  for (let j = 0; j < units; j++) {
    const cell = el("div", { className: "bp-cell" });
    cell.dataset.layer = l; cell.dataset.unit = j;
    grid.append(cell);
  }
  return grid;
}

function buildCells(answer) {
  const sizes = answer.model.sizes, L = sizes.length - 1;
  shape = sizes.join("-");
  const output = $("backprop-output");
  output.textContent = "";
  output.style.gridTemplateColumns = `auto repeat(${sizes[L]}, 1fr)`;
  const rows = [["digit", "bp-digit"], ["A_L", "bp-p"], ["Δ_L", "bp-delta"]];
  for (const [name, cls] of rows) {
    output.append(el("span", { className: "bp-row-name", textContent: name }));
    for (let c = 0; c < sizes[L]; c++) {
      const cell = el("span", { className: `bp-out ${cls}`, textContent: cls === "bp-digit" ? String(c) : "" });
      cell.dataset.layer = L; cell.dataset.unit = c;
      output.append(cell);
    }
  }
  const layers = $("backprop-layers");
  layers.textContent = "";
  for (let l = L - 1; l >= 1; l--) {                        // backwards, as the errors travel
    layers.append(el("div", { className: "bp-layer" },
      el("h3", { textContent: `Hidden layer ${l} (${sizes[l]} units): δ, and the activations A_${l}` }),
      el("div", { className: "bp-pair" },
        el("figure", {}, cellGrid(l, sizes[l], "delta"), el("figcaption", { id: `backprop-scale-${l}` })),
        el("figure", {}, cellGrid(l, sizes[l], "a"), el("figcaption", { textContent: `A_${l}` })))));
  }
  if (L === 1) layers.append(el("p", { className: "hint", textContent: "No hidden layer: only the output's error." }));
}

function show(answer, sent) {
  $("backprop-error").textContent = "";
  if (answer.model.sizes.join("-") !== shape) buildCells(answer);
  const L = answer.model.sizes.length - 1, target = answer.labels[0];
  if (sent.steps === 0) {
    baseline = { key: sent.key, p: answer.output.p_label[0] };
    networkAnswer = answer.output.predictions[0];
  }
  if (networkAnswer !== null) $("backprop-label").options[0].textContent = `the network's answer (${networkAnswer})`;

  // the output row: probabilities now, and Δ_L = A_L − Y
  const probs = answer.output.probabilities.values?.[0], errors = answer.output.error.values?.[0];
  for (const cell of $("backprop-output").querySelectorAll(".bp-out")) {
    const c = Number(cell.dataset.unit);
    cell.classList.toggle("target", c === target);
    if (cell.classList.contains("bp-p") && probs) cell.textContent = percent(probs[c]);
    if (cell.classList.contains("bp-delta") && errors) {
      cell.textContent = short(errors[c]);
      cell.style.background = css(signedColour(errors[c], 1));
      cell.title = `Δ_L[${c}] = a − y = ${number(errors[c])}`;
    }
  }
  // each hidden layer: δ as signed colours (scaled to the layer's largest |δ|) beside A in greys
  for (const layer of answer.layers.filter((x) => x.kind === "hidden")) {
    const deltas = layer.delta.values?.[0], acts = layer.A.values?.[0];
    if (!deltas || !acts) continue;
    const scale = Math.max(...deltas.map((d) => Math.abs(d ?? 0))), top = Math.max(...acts);
    const block = $(`backprop-scale-${layer.l}`);
    block.textContent = `δ (Δ_${layer.l}): blue < 0 < red, full colour at ±${number(scale)}`;
    const grids = block.closest(".bp-pair").querySelectorAll(".bp-grid");
    grids[0].querySelectorAll(".bp-cell").forEach((cell, j) => {
      cell.style.background = css(signedColour(deltas[j], scale));
      cell.title = `unit ${j}: δ = ${number(deltas[j])}`;
    });
    grids[1].querySelectorAll(".bp-cell").forEach((cell, j) => {
      cell.style.background = grey(acts[j], top);
      cell.title = `unit ${j}: a = ${number(acts[j])}`;
    });
  }
  markPicked();

  // the steps and the label's probability, before any step → now
  $("backprop-steps").textContent = String(answer.steps_taken);
  $("backprop-steps-word").textContent = answer.steps_taken === 1 ? " step taken" : " steps taken";
  showStepSize(answer);
  const now = answer.output.p_label[0], before = baseline && baseline.key === sent.key ? baseline.p : null;
  const line = $("backprop-probability");
  line.dataset.label = target;
  line.dataset.before = before ?? "";
  line.dataset.now = now ?? "";
  line.textContent = answer.steps_taken === 0
    ? `p(${target}) = ${percent(now)}; one step would make it ${percent(answer.step.p_label_after[0])}`
    : `p(${target}): ${percent(before)} → ${percent(now)} after ${answer.steps_taken} step${answer.steps_taken > 1 ? "s" : ""}` +
      ` on a copy of the network, which now reads ${answer.output.predictions[0]}. The steps act on that copy only: ` +
      "the network on the page, and its answer above, are unchanged.";
  const after = answer.steps_taken === 0 ? answer.step.p_label_after[0] : now;
  const saturated = after !== null && after >= 1 - SATURATED;
  $("backprop-saturated").textContent = !saturated ? ""
    : `Saturated: ${answer.steps_taken === 0 ? "one step would push" : "the step pushed"} p(${target}) to within ` +
      `${SATURATED} of 1, where the softmax can hardly move further: the step overshot. A smaller η shows the ` +
      "change gradually.";
  line.dataset.saturated = String(saturated);
  canStep = before !== null;
  showStepButton();
  if (maxSteps === null && !askingModel) askModel();
  $("backprop-reset").disabled = steps === 0;

  showUnit(answer.unit, L);
}

// The η control (at the model's own η until it is moved) and why one step on one digit moves so far.
function showStepSize(answer) {
  const control = $("backprop-lr"), eta = answer.step.lr;
  control.disabled = false;
  if (lr === null) control.value = String(Math.max(LR_MIN, Math.min(LR_MAX, Math.log10(eta))));
  $("backprop-eta").textContent = `= ${number(eta)}` + (lr === null ? ` (${answer.step.lr_source})` : "");
  control.dataset.lr = String(eta);
  const norm = answer.A_0 && answer.A_0.norm, squared = norm * norm;
  $("backprop-why").textContent = !norm ? "" :
    `Why one step moves this digit so far: it changes each first-layer sum z_j = x·W_1[:, j] + b_j by ` +
    `−η (‖x‖² + 1) δ_j, and this digit's ‖x‖² is ${number(squared)} (MNIST's run from about 50 to 130), so at η = ` +
    `${number(eta)} the sums move by ${number(eta * (squared + 1))} δ_j at once. Training averages the steps ` +
    "of many digits; here one digit has the whole step.";
}

function markPicked() {
  for (const cell of panel.querySelectorAll("[data-unit].picked")) cell.classList.remove("picked");
  if (!unit) return;
  for (const cell of panel.querySelectorAll(`[data-layer="${unit[0]}"][data-unit="${unit[1]}"]`)) cell.classList.add("picked");
}

function showUnit(detail, L) {
  const box = $("backprop-unit");
  box.textContent = "";
  delete box.dataset.shownLayer;
  delete box.dataset.shownUnit;
  if (!detail) {
    box.append(el("p", { className: "hint", textContent: "Hover or tap a unit (a cell on the left, or an output digit) " +
      "to see its incoming weights, its numbers and the formula of its δ." }));
    return;
  }
  const weights = detail.incoming_weights, n = weights.length;
  const side = Math.round(Math.sqrt(n)), square = detail.layer === 1 && side * side === n;
  const cols = square ? side : Math.min(n, 16), rows = Math.ceil(n / cols);
  const canvas = el("canvas", { id: "backprop-weights", width: cols, height: rows });
  canvas.style.width = `${square ? 168 : cols * 10}px`;
  canvas.style.height = `${square ? 168 : rows * 10}px`;
  const scale = Math.max(...weights.map((w) => Math.abs(w ?? 0)));
  const image = new ImageData(cols, rows);
  weights.forEach((w, i) => {
    const [r, g, b] = signedColour(w, scale);
    image.data.set([r, g, b, 255], 4 * i);
  });
  canvas.getContext("2d").putImageData(image, 0, 0);
  const where = detail.kind === "hidden" ? `hidden layer ${detail.layer}` : "the output layer";
  const numbers = [["bias b_j", detail.bias], ["z_j", detail.z], ["a_j", detail.a], ["δ_j", detail.delta]];
  if (detail.backprop_sum !== undefined) numbers.push(["Σ_k W_jk δ_k", detail.backprop_sum]);
  if (detail.f_prime !== null) numbers.push(["f'(z_j)", detail.f_prime]);
  if (detail.y !== undefined) numbers.push(["y_j", detail.y]);
  const list = el("dl", { className: "bp-numbers" });
  for (const [name, value] of numbers) list.append(el("dt", { textContent: name }), el("dd", { textContent: number(value) }));
  box.append(
    el("h3", { textContent: `Unit ${detail.j} of ${where}` }),
    canvas,
    el("p", { className: "hint", textContent: `Its ${n} incoming weights W_${detail.layer}[:, ${detail.j}]` +
      (square ? ", one per input pixel" : `, one per unit of ${detail.layer > 1 ? `layer ${detail.layer - 1}` : "the input"}`) +
      `: red positive, blue negative, full colour at ±${number(scale)}.` }),
    list,
    el("p", { id: "backprop-formula", textContent: detail.formula }));
  box.dataset.shownLayer = detail.layer;      // not data-unit: that marks the hoverable cells
  box.dataset.shownUnit = detail.j;
}

// The drawing pad: draw (or drop an image), send it to the server, show what the network answers.
// All the math (preprocessing and the network) runs on the server; this module only draws and sends
// the drawing as grayscale pixels, or an image file as it is. During training the network changes
// under the drawing: live.js calls refreshPrediction() as the weights change, and useSnapshot(epoch)
// when the replay slider picks a kept epoch, so the answer always comes from the network on show.
// A digit of the data set (digits.js: a mistake opened from the confusion matrix, a random test digit)
// comes through showDigit(): it goes to the pad and is sent as the model's input itself.
import { $, UNREACHABLE, className, el, fetchJson, setClassNames } from "./util.js";

const SEND_SIDE = 140;        // the 280 x 280 pad is sent downscaled to 140 x 140 grey levels
const BRUSH = 22;             // pen width in pad pixels: about MNIST's stroke once scaled to 20 x 20
// hidden units as cells, 16 to a row (32 smaller ones for layers of more than 256 units)
const cellSize = (units) => (units > 256 ? 7 : 14), perRow = (units) => Math.min(units, units > 256 ? 32 : 16);

const pad = $("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const small = document.createElement("canvas");
small.width = small.height = SEND_SIDE;
const smallCtx = small.getContext("2d", { willReadFrequently: true });

let hasInk = false, drawing = false, last = null;
let inFlight = false, pending = false, generation = 0;
let layerCanvases = [];
let lastRequest = null;       // what was last sent (the drawing or a file), to ask again when the network changes
let snapshot = null;          // the kept epoch whose network reads the drawing (null: the network as it is now)
let haveNetwork = false;
let padDigit = null;          // the data set's digit on the pad (null: a drawing or a file)

// ------------------------------------------------------------------ drawing
function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
  lastRequest = null;
  padDigit = null;
  delete pad.dataset.digit;
  $("pad-source").textContent = "";
}

function padPoint(event) {          // from page pixels to pad pixels (inside the border)
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left - pad.clientLeft) * pad.width / pad.clientWidth,
           y: (event.clientY - box.top - pad.clientTop) * pad.height / pad.clientHeight };
}

function stroke(from, to) {
  ctx.strokeStyle = ctx.fillStyle = "#000"; ctx.lineWidth = BRUSH; ctx.lineCap = "round"; ctx.lineJoin = "round";
  if (from.x === to.x && from.y === to.y) {      // a dot: a line of no length draws nothing, so a disc
    ctx.beginPath(); ctx.arc(from.x, from.y, BRUSH / 2, 0, 2 * Math.PI); ctx.fill();
    return;
  }
  ctx.beginPath(); ctx.moveTo(from.x, from.y); ctx.lineTo(to.x, to.y); ctx.stroke();
}

pad.addEventListener("pointerdown", (event) => {
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  if (padDigit) { generation++; clearPad(); }      // drawing over a digit of the data set starts afresh
  drawing = true;
  last = padPoint(event);
  stroke(last, last);          // a dot, so a tap draws too
  hasInk = true;
  lastRequest = drawingRequest;
  requestPrediction();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of (coalesced.length ? coalesced : [event])) {
    const point = padPoint(e);
    stroke(last, point);
    last = point;
  }
  requestPrediction();
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  requestPrediction();         // the trailing update: the whole stroke, once it is done
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("clear").addEventListener("click", () => {
  generation++; clearPad(); resetOutputs();
  document.dispatchEvent(new CustomEvent("bptrain:drawing", { detail: null }));   // for backprop.js
});

// ------------------------------------------------------------- the requests
// At most one request in flight; strokes made meanwhile are sent as soon as it returns.
function requestPrediction() {
  if (!lastRequest) return;
  if (lastRequest === drawingRequest && !padHasInk()) return;
  if (!haveNetwork) { showError("there is no network yet: press Train to make one"); return; }
  if (inFlight) { pending = true; return; }
  send(lastRequest);
}

function drawingRequest() {
  return { headers: { "Content-Type": "application/json" }, body: padPixels() };
}

// Whether the pad holds any ink: an all-white pad is nothing to read (the server would answer "no ink found").
function padHasInk() {
  const rgba = ctx.getImageData(0, 0, pad.width, pad.height).data;
  for (let i = 0; i < rgba.length; i += 4) if (rgba[i] < 250) return true;
  return false;
}

function padPixels() {
  smallCtx.imageSmoothingEnabled = true;
  smallCtx.imageSmoothingQuality = "high";
  smallCtx.drawImage(pad, 0, 0, SEND_SIDE, SEND_SIDE);
  const rgba = smallCtx.getImageData(0, 0, SEND_SIDE, SEND_SIDE).data;
  const pixels = new Array(SEND_SIDE * SEND_SIDE);
  for (let i = 0; i < pixels.length; i++) {
    pixels[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
  }
  const drawingJson = { width: SEND_SIDE, height: SEND_SIDE, pixels, ink: $("ink").value };
  if (snapshot !== null) drawingJson.snapshot = snapshot;
  return JSON.stringify(drawingJson);
}
window.padPixels = padPixels;   // for benchmarks/screenshot_serve.py, which measures the request's size

async function send(makeRequest) {
  inFlight = true; pending = false;
  document.body.dataset.requests = "busy";    // "idle" once every answer is in (tests wait for it)
  const mine = generation;
  try {
    const { url = "/api/predict", digit = null, ...request } = makeRequest();
    const target = snapshot !== null && makeRequest !== drawingRequest
      ? `${url}${url.includes("?") ? "&" : "?"}snapshot=${snapshot}` : url;
    document.dispatchEvent(new CustomEvent("bptrain:drawing", { detail: { url, digit, ...request } }));   // for backprop.js
    const [ok, answer] = await fetchJson(target, { method: "POST", ...request });
    if (mine !== generation) return;                  // cleared meanwhile: drop the stale answer
    if (!ok) showError(answer.error);
    else show(answer);
  } catch (err) {
    if (mine === generation) showError(UNREACHABLE);
  } finally {
    inFlight = false;
    if (pending && lastRequest) requestPrediction();
    else { pending = false; document.body.dataset.requests = "idle"; }
  }
}

// The network changed (training went on, or another epoch is on show): read the same drawing again.
export function refreshPrediction() {
  if (lastRequest && !inFlight && !drawing) requestPrediction();
}

// Read drawings with the network of a kept epoch (a number), or with the network as it is now (null).
export function useSnapshot(epoch) {
  if (snapshot === epoch) return;
  snapshot = epoch;
  document.dispatchEvent(new CustomEvent("bptrain:network", { detail: { snapshot } }));   // for digits.js
  if (lastRequest) { if (inFlight) pending = true; else requestPrediction(); }
}

// The kept epoch whose network is on show (null: the network as it is now).
export const shownSnapshot = () => snapshot;

// A digit of the data set ({split, index, label, input: n_0 grey levels in [0, 1], ...}, as GET /api/digits/...
// answers): drawn on the pad, dark on white, and read (and explained) from its own pixels.
export function showDigit(digit) {
  generation++;
  clearPad();
  const side = Math.round(Math.sqrt(digit.input.length)), image = new ImageData(side, side);
  digit.input.forEach((v, i) => {
    const g = Math.round(255 * (1 - v));
    image.data.set([g, g, g, 255], 4 * i);
  });
  const tile = document.createElement("canvas");
  tile.width = tile.height = side;
  tile.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tile, 0, 0, pad.width, pad.height);
  ctx.imageSmoothingEnabled = true;
  hasInk = true;
  padDigit = digit;
  pad.dataset.digit = `${digit.split}:${digit.index}`;
  $("pad-source").textContent = `Digit ${digit.index} of the ${digit.split} split: a ${digit.label}, says the data set.`;
  pad.scrollIntoView({ block: "nearest", behavior: "instant" });   // picked under the confusion matrix: show it
  const request = () => {
    const body = { input: digit.input };
    if (snapshot !== null) body.snapshot = snapshot;
    return { headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), digit };
  };
  lastRequest = request;
  pending = false;
  if (!haveNetwork) { showError("there is no network yet: press Train to make one"); return; }
  if (inFlight) pending = true; else send(request);
}

// ------------------------------------------------------------- image files
async function useFile(file) {
  if (!file) return;
  generation++;
  clearPad();
  try {                                               // show it on the pad (the server reads the file itself)
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (e) { /* not an image the browser can show: the server will say what is wrong */ }
  pending = false;
  const request = () => ({ url: `/api/predict?ink=${$("ink").value}`,
                           headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
  lastRequest = request;
  if (!haveNetwork) { showError("there is no network yet: press Train to make one"); return; }
  send(request);
}

$("upload").addEventListener("change", (event) => { useFile(event.target.files[0]); event.target.value = ""; });
$("ink").addEventListener("change", () => requestPrediction());   // the same drawing or file, read again
const card = $("pad-card");
for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => { event.preventDefault(); card.classList.add("dropping"); });
}
document.addEventListener("dragleave", (event) => { if (!event.relatedTarget) card.classList.remove("dropping"); });
document.addEventListener("drop", (event) => {
  event.preventDefault();
  card.classList.remove("dropping");
  useFile(event.dataTransfer.files[0]);
});

// ------------------------------------------------------------------ output
function showError(message) { $("error").textContent = message; }

function buildBars(classes) {
  const bars = $("bars");
  bars.textContent = "";
  for (let c = 0; c < classes; c++) {
    const row = [el("span", { className: "digit", textContent: className(c) }),
                 el("div", { className: "track" }, el("div", { className: "fill" })),
                 el("span", { className: "pct" })];
    row.forEach((cell) => { cell.dataset.digit = c; bars.appendChild(cell); });
  }
}

function buildLayers(hidden) {
  const layers = $("layers");
  layers.textContent = hidden.length ? "" : "This network has no hidden layer: the pixels go straight to the outputs.";
  layerCanvases = hidden.map((units, l) => {
    const title = el("h3", { textContent: `Hidden layer ${l + 1} (${units} units)` });
    const canvas = el("canvas", { className: "strip", id: `hidden-${l + 1}` });
    canvas.dataset.units = units;
    canvas.width = perRow(units) * cellSize(units); canvas.height = Math.ceil(units / perRow(units)) * cellSize(units);
    layers.append(title, canvas);
    paintCells(canvas, null);
    return canvas;
  });
}

// How a unit's value becomes a grey level: sigmoid outputs lie in [0, 1], tanh in [-1, 1] (0 is mid grey),
// relu in [0, inf) (scaled by the layer's largest value, so the strongest unit is white).
let unitActivation = "sigmoid";
const CELL_BORDER = "#c9ced8";
function greyLevel(value, layerMax) {
  if (unitActivation === "tanh") return (value + 1) / 2;
  if (unitActivation === "relu") return layerMax > 0 ? value / layerMax : 0;
  return value;
}

function paintCells(canvas, values) {
  const c = canvas.getContext("2d"), units = Number(canvas.dataset.units);
  const layerMax = values ? Math.max(...values) : 0;
  const size = cellSize(units), row = perRow(units);
  c.clearRect(0, 0, canvas.width, canvas.height);
  c.strokeStyle = CELL_BORDER;
  for (let i = 0; i < units; i++) {
    const x = (i % row) * size, y = Math.floor(i / row) * size;
    if (values) {            // a grey square in a thin border: a fully active (white) unit stays visible on the card
      const g = Math.round(255 * Math.min(1, Math.max(0, greyLevel(values[i], layerMax))));
      c.fillStyle = `rgb(${g},${g},${g})`;
      c.fillRect(x + 1, y + 1, size - 2, size - 2);
      c.strokeRect(x + 0.5, y + 0.5, size - 1, size - 1);
    } else {
      c.strokeRect(x + 1.5, y + 1.5, size - 3, size - 3);
    }
  }
  canvas.dataset.filled = values ? "true" : "false";
}

function show(answer) {
  showError("");
  const p = answer.probabilities, best = answer.prediction;
  $("prediction").textContent = className(best);
  $("confidence").textContent = `${(100 * p[best]).toFixed(1)}% sure`;
  for (const el of $("bars").children) {
    const c = Number(el.dataset.digit);
    el.classList.toggle("best", c === best);
    if (el.className.startsWith("track")) el.firstChild.style.width = `${(100 * p[c]).toFixed(1)}%`;
    if (el.className.startsWith("pct")) el.textContent = `${(100 * p[c]).toFixed(1)}%`;
  }
  const seen = $("seen"), side = seen.width, image = new ImageData(side, side);
  answer.input.forEach((v, i) => {
    const g = Math.round(255 * v);
    image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = g; image.data[4 * i + 3] = 255;
  });
  seen.getContext("2d").putImageData(image, 0, 0);
  seen.dataset.filled = "true";
  describeSeen();
  answer.hidden.forEach((values, l) => { if (layerCanvases[l]) paintCells(layerCanvases[l], values); });
  $("answer").dataset.network = answer.snapshot === undefined ? "live" : String(answer.snapshot);
}

// The caption under "What the network sees": a drawing or an image is scaled and centred; a digit of the
// data set is shown as it is stored.
let inputSide = 28;
function describeSeen() {
  $("seen-hint").textContent = padDigit
    ? `Digit ${padDigit.index} of the ${padDigit.split} split as ${inputSide} × ${inputSide} pixels, exactly as the data set holds it.`
    : `Your drawing as ${inputSide} × ${inputSide} pixels, scaled and centred like the MNIST digits it learnt from.`;
}

function resetOutputs() {
  showError("");
  $("prediction").textContent = "";
  $("confidence").textContent = haveNetwork ? "Draw a digit to start." : "No network yet.";
  for (const el of $("bars").children) {
    el.classList.remove("best");
    if (el.className.startsWith("track")) el.firstChild.style.width = "0";
    if (el.className.startsWith("pct")) el.textContent = "";
  }
  const seen = $("seen");
  seen.getContext("2d").clearRect(0, 0, seen.width, seen.height);
  seen.dataset.filled = "false";
  layerCanvases.forEach((canvas) => paintCells(canvas, null));
}

// Describe the network that reads the drawings (again after a run starts or ends), and rebuild its bars and strips.
let described = "";
export async function loadModel() {
  try {
    const response = await fetch("/api/model");
    const model = await response.json();
    if (!response.ok) {
      haveNetwork = false;
      $("model-info").textContent = model.error ? `${model.error[0].toUpperCase()}${model.error.slice(1)}.` : "";
      resetOutputs();
      return;
    }
    haveNetwork = true;
    const seen = $("seen");
    if (seen.width !== model.input_side) seen.width = seen.height = model.input_side;
    inputSide = model.input_side;
    describeSeen();
    const accuracy = model.val_accuracy == null ? "" : `, ${(100 * model.val_accuracy).toFixed(1)}% right on validation digits`;
    $("model-info").textContent = `Network ${model.sizes.join(" → ")}: ${model.activation} hidden layers, ` +
      `${model.output} output${accuracy}.`;
    setClassNames(model.class_names);
    const shape = JSON.stringify([model.sizes, model.activation, model.class_names]);
    if (shape !== described) {         // a different network: new bars and strips
      described = shape;
      unitActivation = model.activation;
      $("legend-low").textContent = unitActivation === "tanh" ? "−1" : "0";
      $("legend-high").textContent = unitActivation === "relu" ? "layer max" : "1";
      buildBars(model.classes);
      buildLayers(model.hidden);
      resetOutputs();
    }
    refreshPrediction();
  } catch (err) {
    showError("cannot load the model description from the server");
  }
}

clearPad();
loadModel();

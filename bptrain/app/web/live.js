// Training from the page: the form (built from the server's options table), the buttons and knobs,
// the event stream (GET /api/train/events) that keeps the charts, the weight tiles and the status
// up to date, and the replay slider. Every tab shows the same run: the server has one. Before any run, a
// served model tells its story: its history (the server reads MODEL.history.json) fills the charts, and
// the confusion matrix is its own on the validation split (GET /api/digits/confusion).
import { loadModel, refreshPrediction, useSnapshot } from "./app.js";
import { LAYER_COLORS, drawConfusion, drawTiles, lineChart } from "./charts.js";
import { $, UNREACHABLE, el, fetchJson, postJson } from "./util.js";

const CAPTIONS = {
  sizes: "Layers", activation: "Hidden units", loss: "Loss", optimizer: "Optimizer", lr: "Learning rate",
  momentum: "Momentum", beta1: "β1", beta2: "β2", batch_size: "Batch size", epochs: "Epochs", augment: "Shifts (px)",
};
const NETWORK_FIELDS = ["sizes", "loss", "activation", "init"];   // fixed by the model when continuing
const ACTIVE = ["running", "paused"];

let form = null;              // GET /api/train/form
let run = null;               // the run on show: the "state" event, kept up to date by the others
let idleTiles = null;         // the served model's first layer, before any run
let served = null;            // the served model's history, before any run: {epochs, best_epoch, ...} or null
let servedConfusion = null;   // its validation confusion matrix, when the server has the data
let liveTiles = null;         // the run's first layer as it is now
let liveConfusion = null;     // the last epoch's confusion matrix
let view = null;              // null: the network as it is now; a number: the kept epoch on show
let playing = null;           // the timer of the replay's Play
const kept = new Map();       // "run:epoch" -> GET /api/train/snapshot?epoch=...

// ------------------------------------------------------------------ formatting
const integer = (n) => Math.round(n).toLocaleString("en-US");
const rate = (v) => (v == null ? "–" : Number(v.toPrecision(3)).toString());
function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  seconds = Math.round(seconds);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60), rest = seconds % 60;
  return minutes < 60 ? `${minutes} min ${String(rest).padStart(2, "0")} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// ------------------------------------------------------------------ the form
function buildForm() {
  const main = $("form-main"), more = $("form-more");
  main.textContent = ""; more.textContent = "";
  const groups = new Map();
  for (const option of form.options) {
    const field = makeField(option);
    if (option.main) { main.append(field); continue; }
    if (!groups.has(option.group)) {
      const details = el("details", { className: "more" },
        el("summary", { textContent: option.group }), el("div", { className: "fields" }));
      groups.set(option.group, details.lastChild);
      more.append(details);
    }
    groups.get(option.group).append(field);
  }
  $("opt-optimizer").addEventListener("change", showOptimizerFields);
  showOptimizerFields();
  const cont = form.continue;
  $("continue-row").hidden = !cont;
  if (cont) {
    $("continue-label").textContent = `Continue training the network on show (${cont.sizes.join("-")}, ` +
      `${cont.epochs_trained} epoch${cont.epochs_trained === 1 ? "" : "s"} trained)`;
    $("continue").checked = form.continue_default;
    $("continue-note").textContent = cont.note || "";
  }
  $("continue").addEventListener("change", showContinuing);
  showContinuing();
}

function makeField(option) {
  const field = el("label", { className: "field" });
  field.dataset.name = option.name;
  field.title = `${option.flag}: ${option.help}`;
  field.append(el("span", { className: "caption", textContent: CAPTIONS[option.name] || option.flag.slice(2).replaceAll("-", " ") }));
  let input;
  if (option.kind === "choice") {
    input = el("select");
    for (const choice of option.choices) input.append(new Option(choice, choice));
    input.value = option.value;
  } else if (option.kind === "flag") {
    input = el("input");
    input.type = "checkbox";
    input.checked = Boolean(option.value);
    field.classList.add("flag");
  } else {
    input = el("input");
    input.type = "text";
    input.spellcheck = false;
    input.value = option.value == null ? "" : String(option.value);
    if (option.kind !== "sizes") input.inputMode = "decimal";
  }
  input.id = `opt-${option.name}`;
  input.name = option.name;
  field.append(input, el("span", { className: "field-error" }));
  field.lastChild.id = `error-${option.name}`;
  return field;
}

function showOptimizerFields() {
  const adam = $("opt-optimizer").value === "adam";
  $("opt-lr").placeholder = adam ? "0.001 (default)" : "0.1 (default)";
  for (const name of ["momentum", "nesterov"]) fieldOf(name).hidden = adam;
  for (const name of ["beta1", "beta2", "eps"]) fieldOf(name).hidden = !adam;
}

function showContinuing() {
  const continuing = !$("continue-row").hidden && $("continue").checked;
  for (const name of NETWORK_FIELDS) {
    $(`opt-${name}`).disabled = continuing;
    if (continuing && form.continue && name !== "init") {
      const value = form.continue[name];
      $(`opt-${name}`).value = Array.isArray(value) ? value.join(",") : value;
    }
  }
}

const fieldOf = (name) => document.querySelector(`.field[data-name="${name}"]`);

function settingsOfForm() {
  const continuing = !$("continue-row").hidden && $("continue").checked;
  const settings = continuing ? { continue: true } : {};
  for (const option of form.options) {
    if (continuing && NETWORK_FIELDS.includes(option.name)) continue;
    const input = $(`opt-${option.name}`);
    if (option.kind === "flag") { settings[option.name] = input.checked; continue; }
    const text = input.value.trim();
    if (text === "") continue;                       // the default (lr: the optimizer's own)
    const numeric = option.kind === "integer" || option.kind === "number";
    settings[option.name] = numeric && /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) ? Number(text) : text;
  }
  return settings;
}

function clearFieldErrors() {
  for (const el of document.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of document.querySelectorAll(".field.bad")) el.classList.remove("bad");
  $("train-error").textContent = "";
}

function showFieldError(name, message) {
  const field = fieldOf(name);
  if (!field) return false;
  field.classList.add("bad");
  $(`error-${name}`).textContent = message;
  const details = field.closest("details");
  if (details) details.open = true;
  return true;
}

// ------------------------------------------------------------------ talking to the server
async function startRun() {
  clearFieldErrors();
  $("train-start").disabled = true;
  const [ok, answer] = await postJson("/api/train", settingsOfForm());
  if (!ok) {
    if (!answer.field || !showFieldError(answer.field, answer.error)) $("train-error").textContent = answer.error;
    else $("train-error").textContent = `${answer.error} (see the field marked in red)`;
    showButtons();
    return;
  }
  applyState(answer);
}

async function control(body, knob) {
  $("train-error").textContent = "";
  const [ok, answer] = await postJson("/api/train/control", body);
  if (!ok) {
    $("train-error").textContent = answer.error;
    if (knob && answer.field) $(knob === "lr" || answer.field === "lr" ? "knob-lr" : "knob-momentum").classList.add("bad");
    return false;
  }
  return true;
}

async function applyKnobs() {
  const body = {};
  for (const [key, id] of [["lr", "knob-lr"], ["momentum", "knob-momentum"]]) {
    const text = $(id).value.trim();
    $(id).classList.remove("bad");
    if (text !== "") body[key] = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) ? Number(text) : text;
  }
  if (!Object.keys(body).length) { $("train-error").textContent = "type a learning rate or a momentum first"; return; }
  if (await control(body, Object.keys(body)[0])) { $("knob-lr").value = ""; $("knob-momentum").value = ""; }
}

async function save() {
  $("train-error").textContent = "";
  const [ok, answer] = await postJson("/api/train/save", { name: $("save-name").value.trim() });
  if (!ok) { $("train-error").textContent = answer.error; return; }
  const accuracy = answer.val_accuracy == null ? "" : `, ${(100 * answer.val_accuracy).toFixed(2)}% on validation`;
  $("save-result").textContent = `Saved ${answer.saved} and ${answer.history} in the server's output folder ` +
    `(${answer.epochs_trained} epochs${accuracy}).`;
}

async function download() {
  $("train-error").textContent = "";
  try {
    const response = await fetch("/api/train/model");
    if (!response.ok) { $("train-error").textContent = (await response.json()).error; return; }
    const link = el("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = $("save-name").value.trim() || (run && run.proposed_name) || "model.npy";
    document.body.append(link); link.click(); link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (e) {
    $("train-error").textContent = UNREACHABLE;
  }
}

// ------------------------------------------------------------------ the event stream
function connect() {
  const source = new EventSource("/api/train/events");
  source.onmessage = (message) => handle(JSON.parse(message.data));
  source.onerror = () => { document.body.dataset.stream = "lost"; };  // EventSource tries again by itself
  source.onopen = () => { document.body.dataset.stream = "open"; };
}

// What changed is drawn once per animation frame, however many events came (a batch comes at once):
// drawing costs the browser, and the browser shares the machine with the training.
const dirty = new Set();
let frame = 0;
function redraw(...parts) {
  parts.forEach((part) => dirty.add(part));
  if (!frame) frame = requestAnimationFrame(drawDirty);
}
function drawDirty() {
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  if (parts.has("all")) { drawAll(); return; }
  if (parts.has("status")) showStatus();
  if (parts.has("loss")) drawLoss();
  if (parts.has("speed")) drawSpeed();
  if (parts.has("tiles") && view === null) {
    drawTiles($("weights"), liveTiles);
    $("weights").dataset.epoch = "live";
  }
}

function handle(event) {
  if (event.type === "state") { applyState(event.state); return; }
  if (!run || event.run !== run.run) return;
  if (event.type === "progress") applyProgress(event);
  else if (event.type === "epoch") applyEpoch(event);
  else if (event.type === "weights") {
    liveTiles = event.tiles;
    if (view === null) { redraw("tiles"); refreshPrediction(); }
  } else if (event.type === "status" || event.type === "error") {
    run.status = event.status;
    run.message = event.message;
    if (event.type === "error") $("train-error").textContent = event.message;
    if (!ACTIVE.includes(event.status)) { loadModel(); reloadForm(); }
    showStatus(); showButtons(); showReplayLabel();
  }
}

function applyState(state) {
  const newRun = !run || state.run !== run.run;
  form.can_train = state.can_train;
  if (state.run === null) {
    run = null;
    idleTiles = state.tiles || null;
    served = state.history || null;
    if (state.tiles && state.can_train && !servedConfusion) fetchServedConfusion();
  } else {
    run = state;
    liveConfusion = null;
    if (newRun) {
      kept.clear(); stopPlaying(); view = null; useSnapshot(null);
      $("save-name").value = state.proposed_name;
      $("save-result").textContent = "";
      loadModel();
    }
  }
  if (run && ["diverged", "failed"].includes(run.status)) $("train-error").textContent = run.message;
  showStatus(); showButtons(); showReplay(); drawAll();
  if (run && run.epochs.length) fetchConfusion(run.epochs[run.epochs.length - 1].epoch);
  if (!newRun || !run) return;
  $("knob-momentum-name").textContent = run.momentum_name === "beta1" ? "β1" : "momentum";
}

async function fetchServedConfusion() {   // the served model's own, read by the server from the data
  const [ok, answer] = await fetchJson("/api/digits/confusion");
  if (ok && !run) { servedConfusion = answer.confusion; drawAll(); }
}

async function fetchConfusion(epoch) {   // after a reconnect: the last epoch's matrix
  const shown = await snapshotData(epoch);
  if (shown && run && shown.run === run.run) { liveConfusion = shown.confusion; if (view === null) drawAll(); }
}

function applyProgress(event) {
  run.progress = event;
  run.status = event.status;
  run.loss_points.push(...event.loss);
  showButtons();
  redraw("status", "loss", "speed");
}

function applyEpoch(event) {
  run.epochs.push(event.record);
  run.snapshots = event.snapshots;
  run.best_epoch = event.best_epoch;
  run.best_val_accuracy = event.best_val_accuracy;
  liveConfusion = event.confusion;
  showReplay();
  redraw("all");
}

// ------------------------------------------------------------------ showing it
function showStatus() {
  const status = $("train-status");
  document.body.dataset.run = run ? run.status : "idle";
  if (!run) {
    const data = form.data;
    status.textContent = form.can_train
      ? `Press Train: a network learns to read digits from ${integer(data.train)} images (${data.name}), ` +
        `checked after each epoch on ${integer(data.validation)} others.`
      : "";
    if (!form.can_train) $("train-error").textContent = `Cannot train: ${form.reason}`;
    return;
  }
  const c = run.continued;
  $("train-continued").textContent = c ? `Continued from epoch ${c.from_epoch - 1} at learning rate ${rate(c.lr)}: ${c.note}.` : "";
  const p = run.progress || {};
  const knobs = `learning rate ${rate(p.lr)} (${p.lr_by_hand ? "set by hand" : `${run.settings.schedule} schedule`})` +
    (run.has_momentum ? `, ${run.momentum_name === "beta1" ? "β1" : "momentum"} ${rate(p.momentum)}` : "");
  const where = `epoch ${p.epoch} of ${run.last_epoch}, ` +      // no batch count before the epoch's first step
    (p.batches ? `batch ${integer(p.batch || 0)} of ${integer(p.batches)}` : "starting");
  if (run.status === "running") {
    const speed = p.images_per_second ? ` · ${integer(p.images_per_second)} images/s` : "";
    const left = p.eta_seconds != null ? ` · ${duration(p.eta_seconds)} left` : "";
    status.textContent = `Training: ${where}${speed}${left} · ${knobs}`;
  } else if (run.status === "paused") {
    status.textContent = `Paused in ${where} · ${knobs}`;
  } else {
    status.textContent = `${run.status === "finished" ? "Finished" : run.status[0].toUpperCase() + run.status.slice(1)}` +
      (run.message && !["diverged", "failed"].includes(run.status) ? `: ${run.message}` : "") +
      ` · ${duration(p.elapsed_seconds)} of training`;
  }
  $("knob-lr").placeholder = rate(p.lr);
  $("knob-momentum").placeholder = run.has_momentum ? rate(p.momentum) : "none";
}

function showButtons() {
  const active = run !== null && ACTIVE.includes(run.status);
  $("train-start").disabled = !form.can_train || active;
  $("train-start").textContent = run && !active ? "Train again" : "Train";
  $("train-pause").disabled = !active;
  $("train-pause").textContent = run && run.status === "paused" ? "Resume" : "Pause";
  $("train-stop").disabled = !active;
  $("knob-apply").disabled = !active;
  $("knob-lr").disabled = !active;
  $("knob-momentum").disabled = !active || !run.has_momentum;
  const savable = run !== null && !["diverged", "failed"].includes(run.status);
  $("train-save").disabled = !savable;
  $("train-download").disabled = !savable;
}

// The epochs the charts show: the run's, or the served model's history.
function epochs() {
  return run ? run.epochs : served ? served.epochs : [];
}

function xRange() {
  if (run) return [run.first_epoch - 1, Math.max(run.last_epoch, run.first_epoch)];
  if (served && served.epochs.length) {
    const first = served.epochs[0].epoch, last = served.epochs[served.epochs.length - 1].epoch;
    return [first - 1, Math.max(last, first)];
  }
  return [0, 1];
}

// The epoch the charts mark: the replayed one, else the served model's best (the one its file holds).
const marked = () => (view !== null ? view : !run && served ? served.best_epoch ?? null : null);

function drawLoss() {
  const [xMin, xMax] = xRange();
  // the running training loss of a run; a history has each epoch's mean
  const points = run ? run.loss_points : epochs().map((r) => [r.epoch, r.train_loss]);
  $("loss-train-key").textContent = run || !served ? "training: mean over the epoch so far (starts afresh each epoch)"
    : "training (mean of each epoch)";
  lineChart($("loss-chart"), {
    series: [
      { points, color: LAYER_COLORS[0], counted: true, dots: !run },
      { points: epochs().map((r) => [r.epoch, r.val_loss]), color: LAYER_COLORS[1], dots: true, width: 2 },
    ], xMin, xMax, yMin: 0, marker: marked(), empty: "the loss, as the network learns",
  });
}

function drawAccuracy() {
  const [xMin, xMax] = xRange();
  const points = epochs().map((r) => [r.epoch, 100 * r.val_accuracy]);
  const lowest = points.length ? Math.min(...points.map((p) => p[1])) : 90;
  lineChart($("accuracy-chart"), {
    series: [{ points, color: LAYER_COLORS[2], dots: true, width: 2, counted: true }],
    xMin, xMax, yMin: Math.max(0, Math.min(90, Math.floor(lowest - 1))), yMax: 100,
    guides: [{ y: 97, label: "97%" }], marker: marked(), yFormat: (v) => `${v}%`, empty: "after the first epoch",
  });
  showHeadline();
}

// The accuracy of the network on show: the replayed epoch's (from its record, or for the epoch a run
// started from, its confusion matrix), the served model's best epoch, or the run's last.
function showHeadline() {
  const headline = $("accuracy-now");
  let accuracy = null, epoch = null;
  if (view !== null) {
    epoch = view;
    const record = run && run.epochs.find((r) => r.epoch === view);
    const shown = run && kept.get(`${run.run}:${view}`);
    if (record) accuracy = record.val_accuracy;
    else if (shown && shown.confusion) accuracy = trace(shown.confusion);
  } else if (!run && served) {
    const best = served.epochs.find((r) => r.epoch === served.best_epoch) || served.epochs[served.epochs.length - 1];
    if (best) { accuracy = best.val_accuracy; epoch = best.epoch; }
  } else if (run && run.epochs.length) {
    const last = run.epochs[run.epochs.length - 1];
    accuracy = last.val_accuracy; epoch = last.epoch;
  }
  headline.textContent = accuracy === null ? "" : `${(100 * accuracy).toFixed(2)}%` + (epoch === null ? "" : ` at epoch ${epoch}`);
  headline.dataset.epoch = epoch === null ? "" : String(epoch);
}

function trace(matrix) {
  let right = 0, total = 0;
  matrix.forEach((row, i) => row.forEach((count, j) => { total += count; if (i === j) right += count; }));
  return total ? right / total : null;
}

function drawSpeed() {
  const [xMin, xMax] = xRange();
  const series = [];
  const withSpeed = epochs().filter((r) => r.grad_b_norm);
  const layers = run ? run.sizes.length - 1 : withSpeed.length ? withSpeed[0].grad_b_norm.length : 0;
  const p = run && run.progress;
  for (let l = 0; l < layers; l++) {
    const points = withSpeed.map((r) => [r.epoch, r.grad_b_norm[l]]);
    if (p && p.speed && ACTIVE.includes(run.status) && p.batches) {
      points.push([p.epoch - 1 + p.batch / p.batches, p.speed[l]]);   // this epoch so far
    }
    series.push({ points, color: LAYER_COLORS[l % LAYER_COLORS.length], dots: true, counted: true,
                  dash: l === layers - 1 ? [5, 3] : [] });
  }
  lineChart($("speed-chart"), { series, xMin, xMax, log: true, marker: marked(), empty: "how fast each layer learns" });
  const legend = $("speed-legend");
  if (legend.dataset.layers !== String(layers)) {
    legend.dataset.layers = String(layers);
    legend.textContent = "";
    for (let l = 0; l < layers; l++) {
      const key = el("span", { className: "key", textContent: `layer ${l + 1}${l === layers - 1 ? " (output)" : ""}` });
      key.style.setProperty("--key", LAYER_COLORS[l % LAYER_COLORS.length]);
      legend.append(key);
    }
  }
}

function drawAll() {
  showStatus(); drawLoss(); drawAccuracy(); drawSpeed();
  const shown = view === null ? null : kept.get(`${run.run}:${view}`);
  const confusion = view !== null ? shown && shown.confusion : run ? liveConfusion : servedConfusion;
  drawConfusion($("confusion"), confusion, run || !idleTiles ? "after the first epoch"
    : form.can_train ? "reading the validation digits…" : "no data to read: the server has none");
  const tiles = view === null ? (run ? liveTiles : idleTiles) : shown && shown.tiles;
  if (tiles) drawTiles($("weights"), tiles);
  $("weights").dataset.epoch = view === null ? "live" : String(view);
}

// ------------------------------------------------------------------ replay
// The slider's positions: the kept epochs, then the network as it is now ("live").
function showReplay() {
  const slider = $("replay");
  const snapshots = run ? run.snapshots : [];
  slider.max = String(snapshots.length);
  slider.disabled = !snapshots.length;
  slider.value = String(view === null ? snapshots.length : Math.max(0, snapshots.indexOf(view)));
  $("replay-play").disabled = snapshots.length < 2;
  const ticks = $("replay-ticks");
  ticks.textContent = snapshots.length ? `kept: epochs ${snapshots.join(", ")}` : "";
  showReplayLabel();
}

function showReplayLabel() {
  const label = $("replay-label");
  if (!run) { label.textContent = "after Train: every epoch, to watch again"; return; }
  if (view === null) {
    label.textContent = ACTIVE.includes(run.status) ? "now (live)" : "the end of the run";
    return;
  }
  const record = run.epochs.find((r) => r.epoch === view);
  label.textContent = view === run.first_epoch - 1
    ? `epoch ${view}: ${view === 0 ? "random weights, before any training" : "where this run started"}`
    : `epoch ${view}` + (record ? `: ${(100 * record.val_accuracy).toFixed(2)}% on validation` : "");
}

async function snapshotData(epoch) {
  const key = `${run.run}:${epoch}`;
  if (kept.has(key)) return kept.get(key);
  try {
    const response = await fetch(`/api/train/snapshot?epoch=${epoch}`);
    if (!response.ok) return null;
    const data = await response.json();
    kept.set(key, data);
    return data;
  } catch (e) {
    return null;
  }
}

async function showView(position) {
  const snapshots = run ? run.snapshots : [];
  view = position >= snapshots.length ? null : snapshots[position];
  document.body.dataset.view = view === null ? "live" : String(view);
  useSnapshot(view);
  showReplayLabel();
  if (view !== null) await snapshotData(view);
  drawAll();
}

function stopPlaying() {
  if (playing) { clearInterval(playing); playing = null; $("replay-play").textContent = "▶ Play"; }
}

function play() {
  if (playing) { stopPlaying(); return; }
  const slider = $("replay");
  slider.value = "0";
  showView(0);
  $("replay-play").textContent = "■ Stop";
  playing = setInterval(() => {
    const next = Number(slider.value) + 1;
    slider.value = String(next);
    showView(next);
    if (next >= Number(slider.max)) stopPlaying();   // back at the end: the network as it is now
  }, 900);
}

// ------------------------------------------------------------------ start
async function reloadForm() {
  try {
    const response = await fetch("/api/train/form");
    if (!response.ok) return;
    const fresh = await response.json();
    const cont = fresh.continue;
    form.continue = cont;
    if (cont) {
      $("continue-row").hidden = false;
      $("continue-label").textContent = `Continue training the network on show (${cont.sizes.join("-")}, ` +
        `${cont.epochs_trained} epoch${cont.epochs_trained === 1 ? "" : "s"} trained)`;
      $("continue-note").textContent = cont.note || "";
    }
  } catch (e) { /* the stream will say the server is gone */ }
}

async function init() {
  let response;
  try { response = await fetch("/api/train/form"); } catch (e) { return; }
  if (response.status === 404) { document.body.classList.add("no-training"); return; }  // a server that only reads
  form = await response.json();
  buildForm();
  $("train-start").addEventListener("click", startRun);
  $("train-pause").addEventListener("click", () => control({ action: run.status === "paused" ? "resume" : "pause" }));
  $("train-stop").addEventListener("click", () => control({ action: "stop" }));
  $("knob-apply").addEventListener("click", applyKnobs);
  for (const id of ["knob-lr", "knob-momentum"]) {
    $(id).addEventListener("keydown", (event) => { if (event.key === "Enter") applyKnobs(); });
  }
  $("train-save").addEventListener("click", save);
  $("train-download").addEventListener("click", download);
  $("replay").addEventListener("input", (event) => { stopPlaying(); showView(Number(event.target.value)); });
  $("replay-play").addEventListener("click", play);
  window.addEventListener("resize", drawAll);
  document.addEventListener("bptrain:picked", drawAll);     // digits.js opened a cell: outline it
  showStatus(); showButtons(); showReplay(); drawAll();
  connect();
}

init();

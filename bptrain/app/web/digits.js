// The data set's digits on the page: the validation digits behind a cell of the confusion matrix
// (click #confusion: #examples lists them, most confident first) and a random test digit (#random-digit).
// The server picks and reads them (GET /api/digits/...) with the network on show: the live one, or the
// replayed epoch. A click on one puts it on the pad (app.js showDigit), whence it goes to the prediction
// and to the Backprop panel with its true label as the target. Without a data set the controls are off
// and say why.
import { showDigit, shownSnapshot } from "./app.js";
import { confusionCellAt } from "./charts.js";
import { $, className, el, fetchJson } from "./util.js";

let available = false;
let reason = "";
let open = null;          // [true class, read as] of the open cell
let asked = 0;            // requests for a cell so far: only the last one's answer is shown

const onShow = (url) => {
  const snapshot = shownSnapshot();
  return snapshot === null ? url : `${url}${url.includes("?") ? "&" : "?"}snapshot=${snapshot}`;
};
const plural = (n, word) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;

async function checkData() {
  const [ok, answer] = await fetchJson("/api/digits");
  available = ok && answer.available;
  reason = available ? "" : (ok ? answer.reason : answer.error);
  const button = $("random-digit");
  button.disabled = !available;
  button.title = available ? "A digit of the test split, picked at random, as the network on show reads it"
    : `Off: ${reason}`;
  $("digits-off").textContent = available ? "" : `The data set's digits are off: ${reason}.`;
  $("confusion-hint").textContent = available
    ? "Click a cell to see its digits: the diagonal's read right, the others' mistakes." : "";
}

// ------------------------------------------------------------------ a cell of the confusion matrix
async function openCell(cell) {
  open = cell;
  $("confusion").dataset.picked = cell.join(",");
  document.dispatchEvent(new CustomEvent("bptrain:picked"));      // live.js outlines the cell
  if (!available) {
    $("examples-caption").textContent = `No digits to show: ${reason}.`;
    return;
  }
  const mine = ++asked;
  $("examples").dataset.state = "loading";
  const [ok, answer] = await fetchJson(onShow(`/api/digits/cell?true=${cell[0]}&read=${cell[1]}`));
  if (mine !== asked) return;
  showExamples(ok, answer);
}

function showExamples(ok, answer) {
  const list = $("examples");
  list.textContent = "";
  list.dataset.state = ok ? "shown" : "error";
  if (!ok) { $("examples-caption").textContent = answer.error; return; }
  const network = answer.snapshot === null ? "the network on show" : `the network of epoch ${answer.snapshot}`;
  const [truth, read] = [className(answer.true), className(answer.read)];
  const what = answer.true === answer.read ? `${truth}s read right` : `${truth}s read as ${read}`;
  $("examples-caption").textContent = answer.count === 0
    ? `No validation ${what} by ${network}.`
    : `${plural(answer.count, "validation digit")}: ${what} by ${network}` +
      (answer.count > answer.digits.length ? `; the ${answer.digits.length} it is surest of` : ", surest first") +
      ". Click one to open it on the pad and in the Backprop panel.";
  list.dataset.true = answer.true;
  list.dataset.read = answer.read;
  list.dataset.network = answer.snapshot === null ? "live" : String(answer.snapshot);
  for (const digit of answer.digits) {
    const button = el("button", { type: "button", className: "example",
      title: `validation digit ${digit.index}: a ${className(digit.label)}, read as ${className(digit.prediction)} ` +
             `(${(100 * digit.confidence).toFixed(1)}% sure)` },
      picture(digit.input), el("span", { textContent: `${Math.round(100 * digit.confidence)}%` }));
    button.dataset.index = digit.index;
    button.dataset.label = digit.label;
    button.addEventListener("click", () => showDigit(digit));
    list.append(button);
  }
}

function picture(input) {
  const side = Math.round(Math.sqrt(input.length)), canvas = el("canvas", { width: side, height: side });
  const image = new ImageData(side, side);
  input.forEach((v, i) => { const g = Math.round(255 * (1 - v)); image.data.set([g, g, g, 255], 4 * i); });
  canvas.getContext("2d").putImageData(image, 0, 0);
  return canvas;
}

// ------------------------------------------------------------------ a random test digit
async function randomDigit() {
  const [ok, answer] = await fetchJson(onShow("/api/digits/random"));
  if (!ok) { $("error").textContent = answer.error; return; }
  showDigit(answer);
}

$("confusion").addEventListener("click", (event) => {
  const cell = confusionCellAt($("confusion"), event);
  if (cell) openCell(cell);
});
$("random-digit").addEventListener("click", randomDigit);
// another network on show (the replay moved): the open cell's digits, as that network reads them
document.addEventListener("bptrain:network", () => { if (open && available) openCell(open); });
checkData();

// The page's pictures, in a few lines of canvas each: line charts, the confusion matrix, weight tiles.
import { className } from "./util.js";

// The colours `bptrain plot` gives layers 1, 2, 3, ... (matplotlib's first ten).
export const LAYER_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const INK = "#1f2430", MUTED = "#5b6475", GRID = "#e6e9ef", FONT = "11px system-ui, sans-serif";

// A canvas drawn at the screen's pixel density, sized by its CSS box; returns [context, width, height] in CSS pixels.
function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const c = canvas.getContext("2d");
  c.setTransform(ratio, 0, 0, ratio, 0, 0);
  c.clearRect(0, 0, width, height);
  c.font = FONT;
  return [c, width, height];
}

// Round tick positions: about `count` of them from lo to hi.
function ticks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(1, count), power = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) out.push(Number(v.toFixed(10)));
  return out;
}

const short = (v) => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(0) : String(Number(v.toPrecision(3))));

// series: [{points: [[x, y], ...], color, width, dash, dots}]; x from xMin to xMax; y linear or log;
// guides: [{y, label}] dashed horizontal lines; marker: an x to draw a vertical line at (the replayed epoch).
export function lineChart(canvas, { series, xMin, xMax, yMin, yMax, log = false, guides = [], marker = null,
  yFormat = short, xLabel = "epoch", empty = "" }) {
  const [c, width, height] = prepare(canvas);
  const left = 46, right = 12, top = 10, bottom = 30;
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (!values.length) {
    c.fillStyle = MUTED; c.textAlign = "center";
    c.fillText(empty, width / 2, height / 2);
    canvas.dataset.points = "0";
    return;
  }
  let lo = yMin ?? Math.min(...values), hi = yMax ?? Math.max(...values);
  if (log) { lo = 10 ** Math.floor(Math.log10(lo)); hi = 10 ** Math.ceil(Math.log10(hi)); }
  if (hi - lo < 1e-12) { hi = lo + (log ? lo * 9 : 1); }
  const fy = log ? (v) => Math.log10(v) : (v) => v;
  const X = (x) => left + (width - left - right) * (x - xMin) / Math.max(1e-9, xMax - xMin);
  const Y = (y) => top + (height - top - bottom) * (1 - (fy(Math.min(hi, Math.max(lo, y))) - fy(lo)) / (fy(hi) - fy(lo)));
  // axes and grid
  c.strokeStyle = GRID; c.fillStyle = MUTED; c.lineWidth = 1;
  const yTicks = log ? Array.from({ length: Math.round(Math.log10(hi / lo)) + 1 }, (_, k) => lo * 10 ** k)
    : ticks(lo, hi, 4);
  c.textAlign = "right"; c.textBaseline = "middle";
  for (const v of yTicks) {
    c.beginPath(); c.moveTo(left, Y(v)); c.lineTo(width - right, Y(v)); c.stroke();
    c.fillText(yFormat(v), left - 5, Y(v));
  }
  c.textAlign = "center"; c.textBaseline = "top";
  for (const v of ticks(xMin, xMax, Math.min(8, Math.max(1, xMax - xMin))).filter((t) => Number.isInteger(t))) {
    c.beginPath(); c.moveTo(X(v), top); c.lineTo(X(v), height - bottom); c.stroke();
    c.fillText(String(v), X(v), height - bottom + 4);
  }
  c.fillText(xLabel, (left + width - right) / 2, height - 13);
  for (const guide of guides) {
    if (guide.y < lo || guide.y > hi) continue;
    c.save(); c.setLineDash([4, 4]); c.strokeStyle = MUTED;
    c.beginPath(); c.moveTo(left, Y(guide.y)); c.lineTo(width - right, Y(guide.y)); c.stroke(); c.restore();
    c.textAlign = "left"; c.textBaseline = "bottom"; c.fillText(guide.label, left + 4, Y(guide.y) - 1);
  }
  // the series
  let drawn = 0;
  for (const s of series) {
    const points = s.points.filter((p) => Number.isFinite(p[1]) && (!log || p[1] > 0));
    c.save();
    c.strokeStyle = c.fillStyle = s.color; c.lineWidth = s.width || 1.5; c.setLineDash(s.dash || []);
    c.beginPath();
    points.forEach((p, i) => (i ? c.lineTo(X(p[0]), Y(p[1])) : c.moveTo(X(p[0]), Y(p[1]))));
    c.stroke();
    if (s.dots) for (const p of points) { c.beginPath(); c.arc(X(p[0]), Y(p[1]), 2.6, 0, 2 * Math.PI); c.fill(); }
    c.restore();
    if (s.counted) drawn += points.length;
  }
  if (marker !== null && marker >= xMin && marker <= xMax) {
    c.save(); c.strokeStyle = INK; c.lineWidth = 1.5;
    c.beginPath(); c.moveTo(X(marker), top); c.lineTo(X(marker), height - bottom); c.stroke(); c.restore();
  }
  canvas.dataset.points = String(drawn);
}

const CONFUSION_MARGIN = 18;   // the labels' strip, left and top
const confusionCell = (canvas, n) => Math.min((canvas.clientWidth - CONFUSION_MARGIN) / n,
                                               (canvas.clientHeight - CONFUSION_MARGIN) / n);

// Rows: true class, columns: predicted; each cell's colour is its share of its row (blue right, red wrong).
// The cell whose digits are open (canvas.dataset.picked = "i,j", set by digits.js) is outlined.
export function drawConfusion(canvas, matrix, empty = "after the first epoch") {
  const [c, width, height] = prepare(canvas);
  if (!matrix) {
    c.fillStyle = MUTED; c.textAlign = "center"; c.fillText(empty, width / 2, height / 2);
    canvas.dataset.filled = "false";
    delete canvas.dataset.classes;
    return;
  }
  const n = matrix.length, margin = CONFUSION_MARGIN, cell = confusionCell(canvas, n);
  // a class's name in the margins, cut to what fits (the full names are the canvas's label and title)
  const names = Array.from({ length: n }, (_, i) => className(i));
  const short = (name) => (name.length <= 2 ? name : name.slice(0, Math.max(1, Math.floor(Math.min(cell, margin) / 7))));
  canvas.dataset.names = JSON.stringify(names);
  canvas.title = `Rows: true class, columns: predicted. Classes: ${names.map((name, i) => `${i} ${name}`).join(", ")}`;
  c.textAlign = "center"; c.textBaseline = "middle";
  for (let i = 0; i < n; i++) {
    const total = matrix[i].reduce((a, b) => a + b, 0) || 1;
    c.fillStyle = MUTED;
    c.fillText(short(names[i]), margin / 2, margin + (i + 0.5) * cell);
    c.fillText(short(names[i]), margin + (i + 0.5) * cell, margin / 2);
    for (let j = 0; j < n; j++) {
      const share = matrix[i][j] / total, x = margin + j * cell, y = margin + i * cell;
      const strength = i === j ? share : Math.min(1, 4 * share);
      const fade = Math.round(255 * (1 - 0.85 * strength));
      c.fillStyle = i === j ? `rgb(${fade},${Math.round(fade * 0.95 + 12)},255)` : `rgb(255,${fade},${fade})`;
      c.fillRect(x + 0.5, y + 0.5, cell - 1, cell - 1);
      if (matrix[i][j] && cell >= 18) {
        c.fillStyle = strength > 0.55 ? "#fff" : INK;
        c.font = `${Math.min(11, cell / 2.6)}px system-ui, sans-serif`;
        c.fillText(String(matrix[i][j]), x + cell / 2, y + cell / 2);
      }
    }
  }
  const picked = canvas.dataset.picked ? canvas.dataset.picked.split(",").map(Number) : null;
  if (picked && picked[0] < n && picked[1] < n) {
    c.strokeStyle = INK; c.lineWidth = 2;
    c.strokeRect(margin + picked[1] * cell + 1, margin + picked[0] * cell + 1, cell - 2, cell - 2);
  }
  canvas.dataset.filled = "true";
  canvas.dataset.classes = String(n);
}

// The cell [true class, predicted class] under a pointer event on the confusion matrix, or null.
export function confusionCellAt(canvas, event) {
  const n = Number(canvas.dataset.classes || 0);
  if (!n) return null;
  const box = canvas.getBoundingClientRect(), cell = confusionCell(canvas, n);
  const j = Math.floor((event.clientX - box.left - CONFUSION_MARGIN) / cell);
  const i = Math.floor((event.clientY - box.top - CONFUSION_MARGIN) / cell);
  return i >= 0 && j >= 0 && i < n && j < n ? [i, j] : null;
}

// Byte -> colour of a weight, as one little-endian RGBA word: 128 is 0 (white), 255 +max (red), 1 −max (blue).
const TILE_COLOURS = new Uint32Array(256).map((_, q) => {
  const v = (q - 128) / 127, fade = Math.round(255 * (1 - Math.abs(v)));
  const [r, g, b] = [v > 0 ? 255 : fade, fade, v < 0 ? 255 : fade];
  return (255 << 24 | b << 16 | g << 8 | r) >>> 0;
});

// The first layer's weights: tiles.count tiles of side x side bytes (128 = 0), red positive, blue negative.
export function drawTiles(canvas, tiles) {
  if (!tiles) { canvas.dataset.drawn = "false"; return; }
  const text = atob(tiles.tiles);
  const side = tiles.side, count = tiles.count, columns = Math.min(count, 16);
  const rows = Math.ceil(count / columns), step = side + 2;
  const width = columns * step + 2, height = rows * step + 2;
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const c = canvas.getContext("2d");
  const image = c.createImageData(width, height);
  const pixels = new Uint32Array(image.data.buffer).fill(0xffffffff);
  for (let t = 0, at = 0; t < count; t++) {
    const x0 = 2 + (t % columns) * step, y0 = 2 + Math.floor(t / columns) * step;
    for (let row = 0; row < side; row++) {
      const start = (y0 + row) * width + x0;
      for (let column = 0; column < side; column++) pixels[start + column] = TILE_COLOURS[text.charCodeAt(at++)];
    }
  }
  c.putImageData(image, 0, 0);
  canvas.dataset.drawn = "true";
  canvas.dataset.draws = String(Number(canvas.dataset.draws || 0) + 1);
}

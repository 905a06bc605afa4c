// Small canvas charts for the live view: no library, no third-party host.

function setup(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300;
  const h = canvas.clientHeight || 150;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = '11px system-ui, sans-serif';
  return { g, w, h };
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) {
    if (v <= m * p) return m * p;
  }
  return 10 * p;
}

const fmt = (v) => (v >= 10_000 ? `${Math.round(v / 1000)}k` : `${Math.round(v * 10) / 10}`);

// LineChart draws the last `size` samples of a few series.
export class LineChart {
  constructor(canvas, series, size = 120) {
    this.canvas = canvas;
    this.series = series; // [{key, label, color}]
    this.size = size;
    this.samples = [];
  }

  push(values) {
    this.samples.push(values);
    if (this.samples.length > this.size) this.samples.shift();
    this.draw();
  }

  draw() {
    const { g, w, h } = setup(this.canvas);
    const left = 40, right = 8, top = 18, bottom = 16;
    let max = 0;
    for (const s of this.samples) for (const se of this.series) max = Math.max(max, s[se.key] || 0);
    max = niceMax(max);
    g.strokeStyle = '#d9d4cf';
    g.fillStyle = '#6b625a';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + ((h - top - bottom) * i) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(w - right, y);
      g.stroke();
      g.fillText(fmt(max * (1 - i / 4)), 2, y + 4);
    }
    g.fillText(`last ${Math.round(this.size / 2)} s`, left, h - 3);
    const x = (i) => left + ((w - left - right) * i) / Math.max(1, this.size - 1);
    const off = this.size - this.samples.length;
    let lx = left + 4;
    for (const se of this.series) {
      g.strokeStyle = se.color;
      g.lineWidth = 2;
      g.beginPath();
      this.samples.forEach((s, i) => {
        const y = top + (h - top - bottom) * (1 - (s[se.key] || 0) / max);
        if (i === 0) g.moveTo(x(off + i), y);
        else g.lineTo(x(off + i), y);
      });
      g.stroke();
      g.fillStyle = se.color;
      g.fillRect(lx, 5, 10, 3);
      g.fillStyle = '#3b332c';
      g.fillText(se.label, lx + 13, 11);
      lx += 20 + g.measureText(se.label).width;
    }
    // What the tests and assistive tools read.
    this.canvas.dataset.samples = String(this.samples.length);
    const last = this.samples[this.samples.length - 1] || {};
    this.canvas.dataset.last = JSON.stringify(last);
    const peaks = {};
    for (const se of this.series) peaks[se.key] = Math.max(0, ...this.samples.map((s) => s[se.key] || 0));
    this.canvas.dataset.peaks = JSON.stringify(peaks);
  }
}

// BarChart draws, per amount, the packets left over the total.
export class BarChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.items = [];
  }

  set(items) { // [{label, value, total}]
    this.items = items;
    this.draw();
  }

  draw() {
    const { g, w, h } = setup(this.canvas);
    const n = Math.max(1, this.items.length);
    const rowH = Math.min(28, (h - 4) / n);
    const left = 70;
    this.items.forEach((it, i) => {
      const y = 2 + i * rowH;
      const frac = it.total > 0 ? it.value / it.total : 0;
      g.fillStyle = '#efe9e3';
      g.fillRect(left, y + 3, w - left - 4, rowH - 6);
      g.fillStyle = '#c8102e';
      g.fillRect(left, y + 3, (w - left - 4) * frac, rowH - 6);
      g.fillStyle = '#3b332c';
      g.fillText(it.label, 2, y + rowH / 2 + 4);
      g.fillStyle = frac > 0.5 ? '#fff' : '#3b332c';
      g.fillText(`${it.value} / ${it.total}`, left + 6, y + rowH / 2 + 4);
    });
    this.canvas.dataset.items = JSON.stringify(this.items.map((it) => it.value));
  }
}

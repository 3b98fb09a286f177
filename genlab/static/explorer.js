// genlab static explorer: builds one section per model of models.json and runs its ONNX generator in the
// page with onnxruntime-web (WebAssembly, one thread: several threads need cross-origin isolation, which
// a plain static host does not give). Everything the page needs is in its own folder; it fetches nothing else.
//
// For tests and curious users: window.genlab.models[id] has latents(), setLatents({z, y, cat, cont}) and
// render(); window.genlabTimings[id] lists each redraw's milliseconds (generator run + canvas draw, measured
// with performance.now()); window.genlabLastOutput[id] is the last image as a Float32Array (C*H*W, in [0, 1]).
import * as ort from './ort/ort.js';

ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = { wasm: new URL('./ort/ort.wasm', import.meta.url).href };

const timings = {};
const lastOutput = {};
const models = {};
const errors = [];
window.genlabTimings = timings;
window.genlabLastOutput = lastOutput;
window.genlab = { models, timings, lastOutput, errors, ready: null };

// ------------------------------------------------------------------ a seeded generator (not torch's)
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function drawZ(spec, seed) {
  // z from the model's prior: N(0, 1) by Box-Muller, or U[-1, 1].
  const rand = mulberry32(seed);
  const z = new Float32Array(spec.z_dim);
  for (let i = 0; i < z.length; i++) {
    z[i] = spec.z_prior === 'normal'
      ? Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand())
      : rand() * 2 - 1;
  }
  return z;
}

// ------------------------------------------------------------------ small DOM helpers (text only, never HTML)
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function inline(text) {
  // `code`, **bold** and [text](link) (shown as its text: the page links nowhere) as DOM nodes.
  const out = document.createDocumentFragment();
  const pattern = /`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\([^)]*\)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.append(text.slice(last, match.index));
    if (match[1] !== undefined) out.append(el('code', { text: match[1] }));
    else if (match[2] !== undefined) out.append(el('strong', { text: match[2] }));
    else out.append(match[3]);
    last = match.index + match[0].length;
  }
  out.append(text.slice(last));
  return out;
}

function renderMarkdown(source) {
  // A small subset of Markdown (headings, paragraphs, lists, tables), built with textContent only.
  const root = el('div', { class: 'card' });
  let paragraph = null, list = null, table = null;
  const close = () => { paragraph = list = table = null; };
  for (const raw of source.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || /^!\[.*\]\(.*\)$/.test(line)) { close(); continue; }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      close();
      root.append(el(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
    } else if (line.startsWith('|')) {
      if (/^\|[\s|:-]+\|$/.test(line)) continue;                       // the header separator
      if (!table) { close(); table = el('table'); root.append(table); }
      const row = el('tr');
      for (const cell of line.replace(/^\||\|$/g, '').split('|')) row.append(el('td', {}, inline(cell.trim())));
      table.append(row);
    } else if (/^[-*]\s+/.test(line)) {
      if (!list) { close(); list = el('ul'); root.append(list); }
      list.append(el('li', {}, inline(line.replace(/^[-*]\s+/, ''))));
    } else {
      if (!paragraph) { close(); paragraph = el('p'); root.append(paragraph); }
      else paragraph.append(' ');
      paragraph.append(inline(line));
    }
  }
  return root;
}

function slider(label, id, low, high, step, value) {
  const input = el('input', { type: 'range', id, min: low, max: high, step, value });
  const shown = el('output', { for: id, text: Number(input.value).toFixed(2) });
  input.addEventListener('input', () => { shown.textContent = Number(input.value).toFixed(2); });
  return { input, row: el('label', {}, el('span', { text: label }), input, shown),
           set(value) { input.value = value; shown.textContent = Number(input.value).toFixed(2); } };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
}

// ------------------------------------------------------------------ one model
class ModelView {
  constructor(entry, session) {
    this.entry = entry;
    this.spec = entry.spec;
    this.session = session;
    this.busy = false;
    this.pending = false;
    this.renders = 0;
    timings[entry.id] = [];
    this.z = drawZ(this.spec, 0);
    this.build();
  }

  build() {
    const { entry, spec } = this;
    const id = entry.id;
    this.canvas = el('canvas', { class: 'output', id: `${id}-canvas`,
                                 width: entry.image_shape[2], height: entry.image_shape[1] });
    this.timing = el('div', { class: 'timing', id: `${id}-timing`, text: '…' });
    const controls = el('div', { class: 'controls' });
    this.seed = el('input', { type: 'number', id: `${id}-seed`, min: 0, max: 4294967295, step: 1, value: 0 });
    this.seed.addEventListener('change', () => this.reseed());
    controls.append(el('label', {}, el('span', { text: 'seed' }), this.seed, el('span')));
    if (spec.num_classes) {
      this.classSelect = el('select', { id: `${id}-class` });
      for (let k = 0; k < spec.num_classes; k++) this.classSelect.append(el('option', { value: k, text: String(k) }));
      this.classSelect.addEventListener('input', () => this.render());
      controls.append(el('label', {}, el('span', { text: 'class' }), this.classSelect, el('span')));
    }
    this.catSliders = spec.categorical.map((k, i) => slider(`cat[${i}]`, `${id}-cat${i}`, 0, k - 1, 1, 0));
    const [lowC, highC] = spec.continuous_range;
    this.contSliders = Array.from({ length: spec.continuous },
                                  (_, i) => slider(`cont[${i}]`, `${id}-cont${i}`, lowC, highC, 0.05, 0));
    const [lowZ, highZ] = entry.z_range;
    this.zSliders = Array.from({ length: entry.z_sliders },
                               (_, i) => slider(`z[${i}]`, `${id}-z${i}`, lowZ, highZ, 0.01, this.z[i]));
    for (const s of [...this.catSliders, ...this.contSliders, ...this.zSliders]) {
      s.input.addEventListener('input', () => this.render());
      controls.append(s.row);
    }
    const grid = el('img', { class: 'grid', src: entry.grid, alt: `sample grid of ${id}` });
    const card = el('details', { class: 'card', open: '' }, el('summary', { text: 'Model card' }));
    fetch(entry.card).then(r => r.text()).then(text => card.append(renderMarkdown(text)))
      .catch(error => card.append(el('p', { text: `no card: ${error}` })));
    this.section = el('section', { class: 'model', id: `model-${id}` },
      el('h2', { text: `${id} (${entry.model})` }),
      el('div', { class: 'panes' },
         el('div', {}, this.canvas, this.timing), controls,
         el('div', {}, el('div', { text: 'Sample grid' }), grid)),
      card);
  }

  reseed() {
    const seed = Math.min(Math.max(Math.floor(Number(this.seed.value) || 0), 0), 4294967295);
    this.seed.value = seed;
    this.z = drawZ(this.spec, seed);
    this.zSliders.forEach((s, i) => s.set(this.z[i]));
    return this.render();
  }

  latents() {
    // The latent the controls describe: z (sliders over its head), class, categorical and continuous codes.
    const z = Float32Array.from(this.z);
    this.zSliders.forEach((s, i) => { z[i] = Number(s.input.value); });
    return {
      z: Array.from(z),
      y: this.classSelect ? Number(this.classSelect.value) : null,
      cat: this.catSliders.map(s => Number(s.input.value)),
      cont: this.contSliders.map(s => Number(s.input.value)),
    };
  }

  setLatents({ z, y, cat, cont }) {
    if (z) { this.z = Float32Array.from(z); this.zSliders.forEach((s, i) => s.set(this.z[i])); }
    if (y !== undefined && y !== null && this.classSelect) this.classSelect.value = y;
    (cat || []).forEach((v, i) => this.catSliders[i]?.set(v));
    (cont || []).forEach((v, i) => this.contSliders[i]?.set(v));
  }

  feeds() {
    const latents = this.latents();
    const values = { z: latents.z, y: [latents.y], cat: latents.cat, cont: latents.cont };
    const feeds = {};
    for (const input of this.entry.inputs) {
      const data = input.dtype === 'int64'
        ? BigInt64Array.from(values[input.key], v => BigInt(Math.round(v)))
        : Float32Array.from(values[input.key]);
      feeds[input.name] = new ort.Tensor(input.dtype, data, input.shape);
    }
    return feeds;
  }

  draw(data) {
    const [channels, height, width] = this.entry.image_shape;
    const image = new ImageData(width, height);
    const plane = width * height;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) image.data[4 * p + c] = Math.round(255 * data[(channels === 1 ? 0 : c) * plane + p]);
      image.data[4 * p + 3] = 255;
    }
    this.canvas.getContext('2d').putImageData(image, 0, 0);
  }

  async renderOnce() {
    const start = performance.now();
    const output = await this.session.run(this.feeds());
    const data = output.image.data;                                    // (1, C, H, W) in [0, 1]
    this.draw(data);
    const ms = performance.now() - start;
    lastOutput[this.entry.id] = data;
    timings[this.entry.id].push(ms);
    this.renders += 1;
    this.timing.textContent = `${ms.toFixed(1)} ms (median ${median(timings[this.entry.id]).toFixed(1)} ms ` +
                              `over ${timings[this.entry.id].length} redraws)`;
  }

  async render() {
    // Input events that come while the generator runs are folded into one more run with the latest controls.
    if (this.busy) { this.pending = true; return this.done; }
    this.busy = true;
    this.done = (async () => {
      try {
        do { this.pending = false; await this.renderOnce(); } while (this.pending);
      } finally { this.busy = false; }
    })();
    return this.done;
  }
}

async function loadModel(entry, main) {
  const bytes = await (await fetch(entry.onnx)).arrayBuffer();
  const session = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ['wasm'] });
  const view = new ModelView(entry, session);
  models[entry.id] = view;
  main.append(view.section);
  await view.render();
}

async function main() {
  const status = document.getElementById('status');
  const main = document.getElementById('models');
  try {
    const manifest = await (await fetch('models.json')).json();
    for (const entry of manifest.models) {
      try {
        await loadModel(entry, main);
      } catch (error) {
        errors.push(`${entry.id}: ${error}`);
        main.append(el('section', { class: 'model' }, el('h2', { text: entry.id }),
                       el('p', { class: 'error', text: `could not load this model: ${error}` })));
      }
    }
    status.textContent = `${Object.keys(models).length} of ${manifest.models.length} models ready; ` +
                         `onnxruntime-web ${ort.env.versions.web}, WebAssembly, one thread.`;
  } catch (error) {
    errors.push(String(error));
    status.textContent = `The explorer could not start: ${error}`;
    status.classList.add('error');
  }
  if (errors.length) status.classList.add('error');
}

window.genlab.ready = main();

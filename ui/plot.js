// Pairs desk chart grid: draw or update each Plotly figure of the grid in place (ui/plot.py).
const LIB = "__LIB__";

function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__pairsDeskPlotly) {
    window.__pairsDeskPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = new URL(LIB, document.baseURI).href;
      s.async = true;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => {
        window.__pairsDeskPlotly = null;
        reject(new Error("plotly.js failed to load"));
      };
      document.head.appendChild(s);
    });
  }
  return window.__pairsDeskPlotly;
}

function alpha(color, a) {
  const m = color.match(/rgba?\(([^)]+)\)/);
  if (!m) return color;
  const [r, g, b] = m[1].split(",").map((v) => v.trim());
  return `rgba(${r}, ${g}, ${b}, ${a})`;
}

function themed(layout, el) {
  const cs = getComputedStyle(el);
  const text = cs.color || "rgb(49, 51, 63)";
  const grid = alpha(text, 0.12);
  const font = { family: cs.fontFamily, color: text, size: 11 };
  const axis = (ax) => Object.assign({ gridcolor: grid, zerolinecolor: alpha(text, 0.3),
    linecolor: grid, automargin: true, tickfont: { color: alpha(text, 0.8), size: 11 } },
    ax || {});
  const out = Object.assign({}, layout, {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", autosize: true,
    font: Object.assign({}, font, layout.font || {}),
    hoverlabel: Object.assign({ bgcolor: cs.getPropertyValue("--pd-bg") || undefined,
      font: { family: cs.fontFamily, size: 11 } }, layout.hoverlabel || {}),
  });
  for (const k of Object.keys(out)) {
    if (/^[xy]axis\d*$/.test(k)) out[k] = axis(out[k]);
  }
  if (!out.xaxis) out.xaxis = axis({});
  if (!out.yaxis) out.yaxis = axis({});
  if (out.title && out.title.font) out.title.font = Object.assign({ color: text }, out.title.font);
  if (out.legend) out.legend = Object.assign({ bgcolor: "rgba(0,0,0,0)" }, out.legend);
  return out;
}

const utf8 = new TextDecoder();

// One cell of the grid: a chart box (kept across refreshes, so Plotly.react keeps its zoom)
// or a note (a chart warming up, or why it could not be drawn).
function cellFor(grid, key, title) {
  let cell = grid.__cells.get(key);
  if (!cell) {
    cell = document.createElement("div");
    cell.className = "pd-cell";
    cell.dataset.chart = key;
    cell.setAttribute("aria-label", title);
    grid.__cells.set(key, cell);
  }
  return cell;
}

function showNote(cell, c) {
  const box = cell.querySelector(":scope > .pd-plot");
  if (box) {
    if (window.Plotly) window.Plotly.purge(box);
    box.remove();
  }
  let note = cell.querySelector(":scope > .pd-note");
  if (!note) {
    note = document.createElement("div");
    note.className = "pd-note";
    cell.appendChild(note);
  }
  note.setAttribute("role", c.level === "error" ? "alert" : "status"); // a note may change level
  note.dataset.level = c.level || "info";
  note.textContent = c.note; // plain text: it may quote a symbol name
}

function showChart(cell, c, theme) {
  const note = cell.querySelector(":scope > .pd-note");
  if (note) note.remove();
  let box = cell.querySelector(":scope > .pd-plot");
  if (!box) {
    box = document.createElement("div");
    box.className = "pd-plot js-pd-plot";
    cell.appendChild(box);
  }
  if (box.__spec === c.spec) return; // this chart's figure is unchanged: keep it as it is
  box.__spec = c.spec;
  box.style.height = `${c.height}px`;
  box.dataset.revision = c.revision || "";
  loadPlotly().then((Plotly) => {
    const fig = JSON.parse(c.spec);
    return Plotly.react(box, fig.data || [], themed(fig.layout || {}, theme), c.config || {});
  }).then(() => {
    box.dataset.rendered = String((Number(box.dataset.rendered) || 0) + 1);
  }).catch((err) => {
    box.__spec = null;
    box.textContent = "Chart unavailable: " + err.message;
  });
}

export default function (component) {
  const { parentElement } = component;
  let grid = parentElement.querySelector(":scope > .pd-grid");
  if (!grid) {
    grid = document.createElement("div");
    grid.className = "pd-grid";
    grid.__cells = new Map();
    parentElement.appendChild(grid);
  }
  // The payload arrives as UTF-8 JSON bytes (ui/plot.py Payload).
  const raw = component.data;
  if (!raw || !ArrayBuffer.isView(raw)) return;
  const text = utf8.decode(raw);
  if (grid.__text === text) return; // an idle refresh: nothing new to draw
  grid.__text = text;
  const cells = JSON.parse(text).cells || [];
  const keep = new Set(cells.map((c) => c.key));
  for (const [key, cell] of grid.__cells) {
    if (keep.has(key)) continue;
    const box = cell.querySelector(":scope > .pd-plot");
    if (box && window.Plotly) window.Plotly.purge(box);
    cell.remove();
    grid.__cells.delete(key);
  }
  cells.forEach((c, i) => {
    const cell = cellFor(grid, c.key, c.title);
    if (grid.children[i] !== cell) grid.insertBefore(cell, grid.children[i] || null);
    if (c.spec) showChart(cell, c, parentElement);
    else showNote(cell, c);
  });
}

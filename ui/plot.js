// Pairs desk live chart: draw or update one Plotly figure in place (see ui/plot.py).
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

export default function (component) {
  const { parentElement } = component;
  let box = parentElement.querySelector(":scope > .pd-plot");
  if (!box) {
    box = document.createElement("div");
    box.className = "pd-plot js-pd-plot";
    parentElement.appendChild(box);
  }
  // The payload arrives as UTF-8 JSON bytes (ui/plot.py Payload), or as an object.
  const raw = component.data;
  const text = raw && ArrayBuffer.isView(raw) ? utf8.decode(raw) : null;
  if (text !== null && box.__text === text) return; // an idle refresh: nothing new to draw
  const data = text !== null ? JSON.parse(text) : raw;
  if (!data || !data.spec) return;
  if (box.__spec === data.spec) return;
  box.__text = text;
  box.__spec = data.spec;
  box.style.height = `${data.height}px`;
  box.dataset.revision = data.revision || "";
  loadPlotly().then((Plotly) => {
    const fig = JSON.parse(data.spec);
    const layout = themed(fig.layout || {}, parentElement);
    return Plotly.react(box, fig.data || [], layout, data.config || {});
  }).then(() => {
    box.dataset.rendered = String((Number(box.dataset.rendered) || 0) + 1);
  }).catch((err) => {
    box.textContent = "Chart unavailable: " + err.message;
  });
}

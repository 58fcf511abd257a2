// The Read page: a file in, POST /v1/ocr with the chosen options, and each page shown with every
// box drawn and numbered over it (SVG), the lines beside it (click one to highlight its box, or a box
// to find its line), the fields, the per-stage timings and the version that answered.

import {ApiError, call} from "./api.js";
import {clear, el, render, svg} from "./dom.js";

const OPTIONS = ["fields", "pages", "pdf_text", "use_cls", "det_limit_side_len", "det_limit_type", "det_thresh",
  "det_box_thresh", "det_unclip_ratio", "drop_score"];
let ctx;
let chosen = null;

export function init(context) {
  ctx = context;
  const drop = document.getElementById("drop");
  const input = document.getElementById("file");
  input.addEventListener("change", () => choose(input.files[0]));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) choose(event.dataTransfer.files[0]);
  });
  document.getElementById("read-options").addEventListener("submit", (event) => {
    event.preventDefault();
    readChosen();
  });
}

export function shown() {}
export function hidden() {}
export function identityChanged() {}

function choose(file) {
  if (!file) return;
  chosen = file;
  document.getElementById("file-name").textContent = `${file.name} (${file.size} bytes)`;
  document.getElementById("read-button").disabled = false;
  readChosen();
}

function options() {
  const query = {};
  for (const name of OPTIONS) {
    const value = document.getElementById(`opt-${name}`).value.trim();
    if (value !== "") query[name] = value;
  }
  return query;
}

// PDFs and TIFFs are not shown by a browser's <img>: the server renders their pages (POST /ui/pages).
async function isDocument(file) {
  const head = new Uint8Array(await file.slice(0, 5).arrayBuffer());
  const ascii = String.fromCharCode(...head);
  return ascii.startsWith("%PDF-") || ascii.startsWith("II*\u0000") || ascii.startsWith("MM\u0000*");
}

async function renderedPages(file, query) {
  const {data} = await call("POST", "/ui/pages", {body: file, contentType: "application/octet-stream",
    query: query.pages ? {pages: query.pages} : {}});
  return data.pages.map((page) => page.image);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser cannot show this image"));
    image.src = url;
  });
}

async function readChosen() {
  if (!chosen) return;
  const file = chosen;
  const query = options();
  const summary = clear(document.getElementById("read-summary"));
  const results = clear(document.getElementById("read-results"));
  ctx.status(`reading ${file.name} ...`);
  const button = document.getElementById("read-button");
  button.disabled = true;
  try {
    const {data} = await call("POST", "/v1/ocr", {body: file,
      contentType: file.type || "application/octet-stream", query});
    let pictures;
    if (await isDocument(file)) {
      pictures = await renderedPages(file, query);
    } else {
      const url = URL.createObjectURL(file);
      const image = await loadImage(url).catch(() => null);
      const page = data.results[0];
      // The boxes are in the pixels the server decoded (EXIF orientation applied): if the browser
      // shows the file otherwise, show the server's own rendering instead.
      pictures = image && image.naturalWidth === page.width && image.naturalHeight === page.height
        ? [url] : await renderedPages(file, query);
    }
    summary.append(el("p", {},
      "version ", el("strong", {id: "answered-version"}, data.model.version),
      ` (${data.model.name}) answered; request ${data.request_id}; `,
      `${data.results.length} page(s) in ${data.timing_ms.total} ms`));
    data.results.forEach((result, index) => results.append(pageView(result, pictures[index], index)));
    ctx.status(`read ${file.name}: ${data.results.length} page(s)`, "ok");
  } catch (error) {
    summary.append(el("p", {className: "error"}, error instanceof ApiError ? error.message : String(error)));
    ctx.status(`could not read ${file.name}`, "error");
  } finally {
    button.disabled = false;
  }
}

function pageView(result, picture, index) {
  const lines = result.lines;
  const overlay = svg("svg", {viewBox: `0 0 ${result.width} ${result.height}`, preserveAspectRatio: "none",
    class: "boxes"});
  const label = Math.max(10, Math.round(Math.max(result.width, result.height) / 90));
  const list = el("ol", {className: "lines"});
  const boxes = [];
  const items = [];
  const select = (i) => {
    boxes.forEach((box, j) => box.classList.toggle("selected", i === j));
    items.forEach((item, j) => item.classList.toggle("selected", i === j));
    items[i].scrollIntoView({block: "nearest"});
  };
  lines.forEach((line, i) => {
    const points = line.box.map(([x, y]) => `${x},${y}`).join(" ");
    const [x, y] = line.box[0];
    const group = svg("g", {class: "box", "data-line": i},
      svg("polygon", {points}),
      svg("text", {x, y: Math.max(label, y - 2), "font-size": label}, String(i + 1)));
    group.addEventListener("click", () => select(i));
    overlay.append(group);
    boxes.push(group);
    const item = el("li", {className: "line", dataset: {line: String(i)}},
      el("span", {className: "n"}, String(i + 1)),
      el("span", {className: "text"}, line.text),
      el("span", {className: "score"}, line.score.toFixed(3)),
      line.angle ? el("span", {className: "angle"}, `${line.angle}°`) : null);
    item.addEventListener("click", () => select(i));
    list.append(item);
    items.push(item);
  });
  const picture_ = picture
    ? el("img", {src: picture, alt: `page ${result.page} of input ${result.input}`, className: "page-image"})
    : el("div", {className: "no-image"}, "(no picture of this page)");
  const stage = el("div", {className: "page-view"}, picture_, overlay);
  const timings = render(result.timing_ms);
  const side = el("div", {className: "page-side"},
    result.fields ? [el("h4", {}, "fields"), fieldsTable(result.fields)] : null,
    el("h4", {}, `${lines.length} line(s)`), list,
    el("h4", {}, "timings (ms)"), timings);
  return el("article", {className: "page-result", id: `page-${index}`, dataset: {page: String(result.page)}},
    el("h3", {}, `input ${result.input}, page ${result.page} - ${result.source}, ${result.width}x${result.height}`),
    el("div", {className: "page-body"}, stage, side));
}

function fieldsTable(fields) {
  const rows = Object.entries(fields).map(([name, field]) => {
    if (field === null || typeof field !== "object") return {field: name, value: field};
    return {field: name, value: field.value, text: field.text, confidence: field.confidence, currency: field.currency};
  });
  return el("table", {className: "grid fields"},
    el("thead", {}, el("tr", {}, ["field", "value", "as read", "confidence"].map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((row) => el("tr", {},
      el("td", {}, row.field),
      el("td", {}, row.value === null || row.value === undefined ? "-" : String(row.value) +
        (row.currency ? ` ${row.currency}` : "")),
      el("td", {}, row.text ?? ""),
      el("td", {}, typeof row.confidence === "number" ? row.confidence.toFixed(3) : "")))));
}

// Building the page from data without ever parsing data as markup: every string becomes a text node
// (textContent), attributes are set one by one; no string is ever parsed as HTML in the console.

export const SVG = "http://www.w3.org/2000/svg";

// el("td", {className: "x"}, "text", child) -> an element; strings and numbers become text nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function text(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// A table from rows of objects: columns are the union of their keys (or those given).
export function table(rows, columns) {
  const cols = columns || [...new Set(rows.flatMap((row) => Object.keys(row)))];
  return el("table", {className: "grid"},
    el("thead", {}, el("tr", {}, cols.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, cols.map((c) => el("td", {}, render(row[c])))))));
}

// Any JSON value, shown as text: a list of objects as a table, an object whose values are all
// objects as a table keyed by name, another object as a definition list, the rest as text.
export function render(value) {
  if (Array.isArray(value)) {
    if (value.length && value.every(isPlainObject)) return table(value);
    return el("span", {}, value.map(text).join(", "));
  }
  if (isPlainObject(value)) {
    const entries = Object.entries(value);
    if (entries.length && entries.every(([, v]) => isPlainObject(v))) {
      return table(entries.map(([name, v]) => ({name, ...v})));
    }
    return el("dl", {className: "kv"}, entries.map(([k, v]) => [el("dt", {}, k), el("dd", {}, render(v))]));
  }
  return document.createTextNode(text(value));
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

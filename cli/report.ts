// A self-contained HTML report of an executed notebook: markdown rendered by a small safe renderer,
// code with its outputs, charts as their inline SVG. No scripts, no external resources.

import type { JsonObject } from "./client.js";
import type { Cell, MimeData, Notebook, Output } from "./run.js";

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

function text(v: unknown): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return v.map(String).join("");
  return v === undefined ? "" : JSON.stringify(v, null, 2);
}

/** Only links a reader can follow safely: http(s), mailto, anchors and relative paths; never javascript:. */
function safeUrl(url: string): string | undefined {
  const u = url.trim();
  if (/^(https?:|mailto:)/i.test(u)) return u;
  if (/^[a-z][a-z0-9+.-]*:/i.test(u)) return undefined;
  return u;
}

/** Inline markdown on raw text: code spans, images, links, bold, italic. Everything else is escaped. */
function inline(src: string): string {
  const codes: string[] = [];
  let s = src.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_m, _t, code: string) => {
    codes.push(`<code>${escapeHtml(code.trim())}</code>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  const links: string[] = [];
  s = s.replace(/(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g, (m, bang: string, label: string, url: string) => {
    const safe = safeUrl(url);
    if (safe === undefined) return m;
    links.push(bang === "!"
      ? `<img src="${escapeHtml(safe)}" alt="${escapeHtml(label)}">`
      : `<a href="${escapeHtml(safe)}">${emphasis(escapeHtml(label))}</a>`);
    return `\u0001${links.length - 1}\u0001`;
  });
  s = emphasis(escapeHtml(s));
  s = s.replace(/\u0001(\d+)\u0001/g, (_m, i: string) => links[Number(i)]);
  return s.replace(/\u0000(\d+)\u0000/g, (_m, i: string) => codes[Number(i)]);
}

function emphasis(s: string): string {
  return s
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/\*(?=\S)([^*]*?\S)\*/g, "<em>$1</em>")
    .replace(/(^|[^\w])_(?=\S)([^_]*?\S)_(?!\w)/g, "$1<em>$2</em>");
}

/** A small, safe markdown renderer: headings, paragraphs, lists, quotes, rules, code blocks and spans, links, emphasis. */
export function renderMarkdown(md: string): string {
  const lines = md.replace(/\r\n?/g, "\n").split("\n");
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+-]*)/.exec(line);
    if (fence) {
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const lang = fence[2] ? ` class="language-${escapeHtml(fence[2])}"` : "";
      out.push(`<pre><code${lang}>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    if (line.trim() === "") {
      i++;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      const n = heading[1].length;
      out.push(`<h${n}>${inline(heading[2])}</h${n}>`);
      i++;
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.push("<hr>");
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body: string[] = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      out.push(`<blockquote>${renderMarkdown(body.join("\n"))}</blockquote>`);
      continue;
    }
    const item = /^(\s*)([-*+]|\d+[.)])\s+/;
    if (item.test(line)) {
      const ordered = /\d/.test(item.exec(line)![2]);
      const items: string[] = [];
      while (i < lines.length && lines[i].trim() !== "") {
        const m = item.exec(lines[i]);
        if (m) items.push(lines[i].slice(m[0].length));
        else if (items.length > 0) items[items.length - 1] += "\n" + lines[i].trim();
        i++;
      }
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}>${items.map((t) => `<li>${inline(t)}</li>`).join("")}</${tag}>`);
      continue;
    }
    if (/^\s*\|.*\|\s*$/.test(line) && i + 1 < lines.length && /^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1])) {
      const cells = (l: string) => l.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
      const head = cells(line);
      i += 2;
      const rows: string[][] = [];
      while (i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i])) rows.push(cells(lines[i++]));
      out.push(`<table><thead><tr>${head.map((h) => `<th>${inline(h)}</th>`).join("")}</tr></thead><tbody>${
        rows.map((r) => `<tr>${r.map((c) => `<td>${inline(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`);
      continue;
    }
    const para: string[] = [];
    while (i < lines.length && lines[i].trim() !== "" && !/^(#{1,6}\s|\s*```|\s*~~~|\s*>|\s*([-*+]|\d+[.)])\s)/.test(lines[i])) {
      para.push(lines[i++]);
    }
    if (para.length === 0) para.push(lines[i++]); // a line no rule above took
    out.push(`<p>${inline(para.join("\n"))}</p>`);
  }
  return out.join("\n");
}

/** An image's display size from output metadata ({ "image/png": { width, height } }), as width/height attributes. */
function sizeAttributes(metadata: JsonObject | undefined, mime: string): string {
  const size = metadata?.[mime];
  if (typeof size !== "object" || size === null) return "";
  const { width, height } = size as { width?: unknown; height?: unknown };
  return (typeof width === "number" ? ` width="${width}"` : "") + (typeof height === "number" ? ` height="${height}"` : "");
}

function renderData(data: MimeData, metadata?: JsonObject): string {
  const svg = data["image/svg+xml"];
  if (svg !== undefined) return `<div class="svg">${text(svg)}</div>`;
  if (data["text/html"] !== undefined) return `<div class="html">${text(data["text/html"])}</div>`;
  for (const mime of ["image/png", "image/jpeg", "image/gif"]) {
    if (data[mime] !== undefined) {
      return `<img src="data:${mime};base64,${escapeHtml(text(data[mime]).replace(/\s+/g, ""))}"${sizeAttributes(metadata, mime)}>`;
    }
  }
  if (data["text/markdown"] !== undefined) return `<div class="markdown">${renderMarkdown(text(data["text/markdown"]))}</div>`;
  if (data["text/plain"] !== undefined) return `<pre>${escapeHtml(text(data["text/plain"]).replace(ANSI, ""))}</pre>`;
  const json = Object.keys(data).find((m) => m === "application/json" || m.endsWith("+json"));
  if (json !== undefined) return `<pre>${escapeHtml(JSON.stringify(data[json], null, 2))}</pre>`;
  return "";
}

function renderOutput(o: Output): string {
  switch (o.output_type) {
    case "stream":
      return `<pre class="stream ${escapeHtml(o.name)}">${escapeHtml(text(o.text).replace(ANSI, ""))}</pre>`;
    case "display_data":
      return `<div class="output display">${renderData(o.data, o.metadata)}</div>`;
    case "execute_result":
      return `<div class="output result"><span class="prompt">Out[${o.execution_count ?? " "}]:</span>${renderData(o.data, o.metadata)}</div>`;
    case "error": {
      const tb = o.traceback.length > 0 ? o.traceback.join("\n") : `${o.ename}: ${o.evalue}`;
      return `<pre class="error">${escapeHtml(tb.replace(ANSI, ""))}</pre>`;
    }
  }
}

function renderCell(cell: Cell): string {
  const source = text(cell.source);
  if (cell.cell_type === "markdown") return `<section class="cell markdown">${renderMarkdown(source)}</section>`;
  if (cell.cell_type === "raw") return `<section class="cell raw"><pre>${escapeHtml(source)}</pre></section>`;
  const count = cell.execution_count ?? " ";
  return `<section class="cell code">
<div class="input"><span class="prompt">In [${count}]:</span><pre><code>${escapeHtml(source)}</code></pre></div>
${(cell.outputs ?? []).map(renderOutput).join("\n")}
</section>`;
}

const STYLE = `
body { font: 15px/1.5 system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222; }
pre { background: #f7f7f7; padding: .6em .8em; overflow-x: auto; border-radius: 4px; margin: .3em 0; font: 13px/1.4 ui-monospace, monospace; }
code { font: 13px ui-monospace, monospace; background: #f2f2f2; padding: 0 .2em; }
pre code { background: none; padding: 0; }
.cell { margin: 1.2em 0; }
.input pre { border-left: 3px solid #4a7bd0; }
.prompt { color: #888; font: 12px ui-monospace, monospace; display: block; }
.stream.stderr { background: #fff2f2; }
.error { background: #fde8e8; color: #8a1010; }
.svg svg, img { max-width: 100%; height: auto; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2em .5em; }
blockquote { border-left: 3px solid #ccc; margin: 0; padding-left: 1em; color: #555; }
footer { color: #888; font-size: 12px; margin-top: 3em; }`;

export interface ReportOptions {
  title?: string;
}

/** The whole report as one HTML document. */
export function renderReport(nb: Notebook, options: ReportOptions = {}): string {
  const title = options.title ?? "notebook";
  const ks = nb.metadata.kernelspec as { display_name?: string } | undefined;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${nb.cells.map(renderCell).join("\n")}
</main>
<footer>${escapeHtml(title)} — executed by streambook run${ks?.display_name ? ` with ${escapeHtml(ks.display_name)}` : ""}</footer>
</body>
</html>
`;
}

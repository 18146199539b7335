// Alertmanager's matcher syntax, as its UI and amtool write it: `{a="b", c=~"d|e"}` or `a=b, c!=d`.
// The server parses each matcher again (RE2, its limits); this only splits and quotes.

const OPS = ["=~", "!~", "!=", "="];

/** Split `{a="x,y", b=c}` (braces optional) into matcher strings, respecting quotes. */
export function splitMatchers(text) {
  let s = (text || "").trim();
  if (s.startsWith("{") && s.endsWith("}")) s = s.slice(1, -1);
  const out = [];
  let cur = "", quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quoted && c === "\\") { cur += c + (s[i + 1] ?? ""); i++; continue; }
    if (c === '"') quoted = !quoted;
    if ((c === "," || c === "\n") && !quoted) { if (cur.trim()) out.push(cur.trim()); cur = ""; continue; }
    cur += c;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** One matcher string as {name, value, isRegex, isEqual}; throws an Error naming what is wrong. */
export function parseMatcher(text) {
  const m = /^\s*("(?:[^"\\]|\\.)*"|[^=!~\s"]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$/s.exec(text);
  if (!m) throw new Error(`bad matcher ${JSON.stringify(text)}: write name="value" (or !=, =~, !~)`);
  const unquote = (v) => (v.startsWith('"') ? JSON.parse(v) : v);
  let value;
  try { value = unquote(m[3]); } catch { throw new Error(`bad quoted value in ${JSON.stringify(text)}`); }
  return { name: unquote(m[1]), value, isRegex: m[2].includes("~"), isEqual: !m[2].startsWith("!") };
}

/** A matcher object written back as text: name="value". */
export function formatMatcher(m) {
  const op = OPS.find((o) => o.includes("~") === m.isRegex && o.startsWith("!") === !m.isEqual);
  return `${m.name}${op}${JSON.stringify(m.value)}`;
}

/** Matcher objects (or a label set) as `{a="b", c=~"d"}`. */
export function formatMatchers(ms) {
  return `{${ms.map(formatMatcher).join(", ")}}`;
}

export function labelMatchers(labels) {
  return Object.keys(labels).sort().map((k) => ({ name: k, value: labels[k], isRegex: false, isEqual: true }));
}

/** A Go duration (`1h30m`, `2d` as Alertmanager's UI accepts days and weeks) in milliseconds, or NaN. */
export function parseDuration(text) {
  const units = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, y: 31536e6 };
  const s = (text || "").trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d|w|y))+$/.test(s)) return NaN;
  let total = 0;
  for (const [, n, , u] of s.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d|w|y)/g)) total += parseFloat(n) * units[u];
  return total;
}

export function formatDuration(ms) {
  if (!(ms > 0)) return "0s";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const parts = [];
  for (const [u, n] of [["d", 864e5], ["h", 36e5], ["m", 6e4], ["s", 1e3]]) {
    const q = Math.floor(ms / n);
    if (q) { parts.push(`${q}${u}`); ms -= q * n; }
  }
  return parts.join("") || "0s";
}

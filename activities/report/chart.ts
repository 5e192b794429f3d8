/**
 * A small SVG line chart for the run report: one x axis (training step), one y axis, one or more
 * series drawn as polylines (one polyline per series, through its finite values in x order), an
 * optional ±band (reward mean ± std), SFT/RL phase shading with a marker where RL starts, and a
 * "not measured" notice for a series (or a whole chart) without a single finite value.
 *
 * Output is static SVG markup (no scripts, no external resources); every number written into it
 * is finite — null, NaN and ±Infinity values are never drawn, and the chart says how many
 * non-finite values it left out. Long series are reduced to about `maxPoints` points per series by
 * min/max buckets (`downsampleMinMax`), which keeps every bucket's extremes visible.
 */

/** One line of a chart: y values aligned with the chart's x values (null = not measured at that x). */
export interface Series {
  label: string;
  values: readonly (number | null)[];
  /** Optional band around the line, e.g. mean ± std: lower and upper values aligned with x. */
  band?: { lo: readonly (number | null)[]; hi: readonly (number | null)[]; label: string };
}

/** A contiguous range of steps in one training phase. */
export interface PhaseSpan {
  phase: 'sft' | 'rl' | 'online_dpo' | 'dpo' | 'reward_model';
  /** First step of the span. */
  from: number;
  /** Where the span ends on the x axis (the next span's first step, or the last step of the run). */
  to: number;
}

export interface LineChartSpec {
  /** Identifier, written as the svg's data-chart attribute (tests and CSS find charts by it). */
  id: string;
  title: string;
  yLabel: string;
  xLabel?: string;
  /** x of each point (training steps), ascending. */
  x: readonly number[];
  series: readonly Series[];
  /** x range to draw; defaults to the range of x. Charts of one report share it so they line up. */
  xDomain?: readonly [number, number];
  /** Fixed y range (e.g. [0, 1] for accuracies); defaults to the data's range, rounded to nice ticks. */
  yDomain?: readonly [number, number];
  /** Phase spans to shade (SFT shaded, RL not) and mark (a dashed line where RL starts). */
  phases?: readonly PhaseSpan[];
  /** Most points drawn per series before min/max downsampling. Default 1000. */
  maxPoints?: number;
}

const WIDTH = 640;
const HEIGHT = 260;
const MARGIN = { left: 64, right: 16, top: 30, bottom: 42 };
const PLOT = { x0: MARGIN.left, x1: WIDTH - MARGIN.right, y0: HEIGHT - MARGIN.bottom, y1: MARGIN.top };
const COLORS = ['#1f6fb4', '#d9480f', '#2b8a3e', '#7048e8'];
/** Below this many drawn points a series also gets point markers with a tooltip (<title>). */
const MARKER_LIMIT = 60;

// ---- numbers ----

/** The value if it is a finite number, else null. */
export function finite(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** A coordinate for the SVG, to 0.1 px. Throws on a non-finite value: it would be a bug here. */
function coord(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`report chart: non-finite coordinate ${v} (a bug in chart.ts)`);
  const r = Math.round(v * 10) / 10;
  return String(Object.is(r, -0) ? 0 : r);
}

/** Maps [lo, hi] onto [a, b] linearly, without overflow for ranges near ±Number.MAX_VALUE. */
function linear(lo: number, hi: number, a: number, b: number): (v: number) => number {
  const span = hi - lo;
  if (span === 0) return () => (a + b) / 2;
  if (Number.isFinite(span)) return (v) => a + ((v - lo) / span) * (b - a);
  const half = hi / 2 - lo / 2;
  return (v) => a + ((v / 2 - lo / 2) / half) * (b - a);
}

/** A "nice" number (1, 2, 5 × 10^k) close to `x` (Heckbert, Graphics Gems 1990). */
function niceNumber(x: number, round: boolean): number {
  const exp = Math.floor(Math.log10(x));
  const f = x / 10 ** exp;
  const nice = round ? (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) : f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nice * 10 ** exp;
}

/** Tick values covering [lo, hi] at a nice spacing (about `count` ticks), plus that spacing. */
export function niceTicks(lo: number, hi: number, count = 5, minStep = 0): { ticks: number[]; step: number } {
  const span = hi - lo;
  if (!Number.isFinite(span) || span <= 0) return { ticks: span === 0 ? [lo] : [lo, hi], step: Number.isFinite(span) ? span : 0 };
  const step = Math.max(minStep, niceNumber(niceNumber(span, false) / Math.max(1, count - 1), true));
  const first = Math.ceil(lo / step - 1e-9);
  const last = Math.floor(hi / step + 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return { ticks, step };
}

/** A tick label: as few decimals as the tick spacing needs; exponent form for very large or small values. */
export function formatTick(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || (a < 1e-3 && step < 1e-3)) return v.toExponential(1).replace('e+', 'e');
  const decimals = step > 0 && Number.isFinite(step) ? Math.min(6, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))) : 2;
  return v.toFixed(decimals);
}

/** A value for a tooltip or table: 4 significant digits, or "—" when absent or not finite. */
export function formatValue(v: number | null | undefined): string {
  const f = finite(v);
  if (f === null) return '—';
  if (f === 0) return '0';
  const a = Math.abs(f);
  if (a >= 1e6 || a < 1e-3) return f.toExponential(3).replace('e+', 'e');
  return String(Number(f.toPrecision(4)));
}

// ---- downsampling ----

/**
 * Indices of the points to draw: all finite points when there are at most `maxPoints`; else the
 * first and last point plus, for each of about (maxPoints - 2) / 2 equal-count buckets of the
 * finite points, the bucket's minimum and maximum — so every peak and trough stays visible.
 * Indices are ascending.
 */
export function downsampleMinMax(values: readonly (number | null)[], maxPoints = 1000): number[] {
  const idx: number[] = [];
  for (let i = 0; i < values.length; i++) if (finite(values[i]) !== null) idx.push(i);
  if (idx.length <= Math.max(maxPoints, 4)) return idx;
  const buckets = Math.max(1, Math.floor((maxPoints - 2) / 2));
  const keep = new Set<number>([idx[0]!, idx[idx.length - 1]!]);
  for (let b = 0; b < buckets; b++) {
    const start = Math.floor((b * idx.length) / buckets);
    const end = Math.floor(((b + 1) * idx.length) / buckets);
    let min = idx[start]!;
    let max = min;
    for (let j = start + 1; j < end; j++) {
      const i = idx[j]!;
      if (values[i]! < values[min]!) min = i;
      if (values[i]! > values[max]!) max = i;
    }
    keep.add(min);
    keep.add(max);
  }
  return [...keep].sort((a, b) => a - b);
}

// ---- drawing ----

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

interface Frame {
  sx: (v: number) => number;
  sy: (v: number) => number;
  xDomain: readonly [number, number];
  yTicks: { ticks: number[]; step: number };
  xTicks: { ticks: number[]; step: number };
}

function dataYRange(spec: LineChartSpec): [number, number] | undefined {
  let lo = Infinity;
  let hi = -Infinity;
  const see = (vs: readonly (number | null)[]) => {
    for (const v of vs) {
      const f = finite(v);
      if (f === null) continue;
      if (f < lo) lo = f;
      if (f > hi) hi = f;
    }
  };
  for (const s of spec.series) {
    see(s.values);
    if (s.band) {
      see(s.band.lo);
      see(s.band.hi);
    }
  }
  return lo <= hi ? [lo, hi] : undefined;
}

/** Scales and ticks of a chart; y padded and widened to nice ticks, degenerate ranges opened up. */
function frame(spec: LineChartSpec): Frame {
  const xs = spec.x.filter((v) => Number.isFinite(v));
  let [x0, x1] = spec.xDomain ?? [xs.length ? Math.min(...xs) : 0, xs.length ? Math.max(...xs) : 1];
  if (x0 === x1) {
    x0 -= 1;
    x1 += 1;
  }
  let [y0, y1] = spec.yDomain ?? dataYRange(spec) ?? [0, 1];
  if (!spec.yDomain) {
    if (y0 === y1) {
      const pad = Math.abs(y0) > 0 ? Math.abs(y0) * 0.1 : 1;
      y0 -= pad;
      y1 += pad;
    } else if (Number.isFinite(y1 - y0)) {
      const pad = (y1 - y0) * 0.05;
      y0 -= pad;
      y1 += pad;
    }
  }
  const yTicks = niceTicks(y0, y1, 5);
  if (!spec.yDomain && yTicks.step > 0 && Number.isFinite(yTicks.step)) {
    y0 = Math.min(y0, Math.floor(y0 / yTicks.step) * yTicks.step);
    y1 = Math.max(y1, Math.ceil(y1 / yTicks.step) * yTicks.step);
    if (!Number.isFinite(y0) || !Number.isFinite(y1)) [y0, y1] = [yTicks.ticks[0]!, yTicks.ticks.at(-1)!];
  }
  return {
    sx: linear(x0, x1, PLOT.x0, PLOT.x1),
    sy: linear(y0, y1, PLOT.y0, PLOT.y1),
    xDomain: [x0, x1],
    yTicks: niceTicks(y0, y1, 5),
    xTicks: niceTicks(x0, x1, 7, 1),
  };
}

function axes(spec: LineChartSpec, f: Frame): string {
  const out: string[] = [];
  out.push(
    `<g class="grid">${f.yTicks.ticks.map((t) => `<line x1="${coord(PLOT.x0)}" x2="${coord(PLOT.x1)}" y1="${coord(f.sy(t))}" y2="${coord(f.sy(t))}"/>`).join('')}</g>`,
  );
  out.push(
    `<g class="axis y-axis"><line x1="${PLOT.x0}" x2="${PLOT.x0}" y1="${PLOT.y0}" y2="${PLOT.y1}"/>` +
      f.yTicks.ticks
        .map(
          (t) => `<text x="${PLOT.x0 - 6}" y="${coord(f.sy(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t, f.yTicks.step))}</text>`,
        )
        .join('') +
      `<text class="axis-label" transform="translate(14 ${coord((PLOT.y0 + PLOT.y1) / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(spec.yLabel)}</text></g>`,
  );
  out.push(
    `<g class="axis x-axis"><line x1="${PLOT.x0}" x2="${PLOT.x1}" y1="${PLOT.y0}" y2="${PLOT.y0}"/>` +
      f.xTicks.ticks
        .map(
          (t) =>
            `<line x1="${coord(f.sx(t))}" x2="${coord(f.sx(t))}" y1="${PLOT.y0}" y2="${PLOT.y0 + 4}"/><text x="${coord(f.sx(t))}" y="${PLOT.y0 + 16}" text-anchor="middle">${escapeXml(formatTick(t, f.xTicks.step))}</text>`,
        )
        .join('') +
      `<text class="axis-label" x="${coord((PLOT.x0 + PLOT.x1) / 2)}" y="${HEIGHT - 6}" text-anchor="middle">${escapeXml(spec.xLabel ?? 'step')}</text></g>`,
  );
  return out.join('');
}

/** SFT spans as shaded rectangles; a dashed vertical line labelled "RL starts" at the first RL span after SFT (or at the first RL step). */
function phaseShading(spec: LineChartSpec, f: Frame): string {
  const [d0, d1] = f.xDomain;
  const clamp = (v: number) => Math.min(d1, Math.max(d0, v));
  const out: string[] = [];
  for (const p of spec.phases ?? []) {
    if (p.phase !== 'sft') continue;
    const a = f.sx(clamp(p.from));
    const b = f.sx(clamp(p.to));
    if (b - a <= 0) continue;
    out.push(
      `<rect class="phase-sft" x="${coord(a)}" y="${PLOT.y1}" width="${coord(b - a)}" height="${PLOT.y0 - PLOT.y1}"><title>SFT warm-up</title></rect>`,
    );
    out.push(`<text class="phase-label" x="${coord(a + 4)}" y="${PLOT.y1 + 12}">SFT</text>`);
  }
  const firstRl = (spec.phases ?? []).find((p) => p.phase === 'rl');
  if (firstRl && firstRl.from >= d0 && firstRl.from <= d1) {
    const x = coord(f.sx(firstRl.from));
    out.push(
      `<line class="rl-start" x1="${x}" x2="${x}" y1="${PLOT.y0}" y2="${PLOT.y1}"><title>RL starts at step ${firstRl.from}</title></line>`,
    );
    out.push(`<text class="phase-label" x="${coord(f.sx(firstRl.from) + 4)}" y="${PLOT.y1 + 24}">RL starts</text>`);
  }
  return out.join('');
}

function band(series: Series, x: readonly number[], keep: readonly number[], f: Frame, color: string): string {
  if (!series.band) return '';
  const pts = keep.filter((i) => finite(series.band!.lo[i]) !== null && finite(series.band!.hi[i]) !== null && Number.isFinite(x[i]));
  if (pts.length < 2) return '';
  const upper = pts.map((i) => `${coord(f.sx(x[i]!))},${coord(f.sy(series.band!.hi[i]!))}`);
  const lower = pts
    .slice()
    .reverse()
    .map((i) => `${coord(f.sx(x[i]!))},${coord(f.sy(series.band!.lo[i]!))}`);
  return `<polygon class="band" fill="${color}" fill-opacity="0.15" stroke="none" points="${[...upper, ...lower].join(' ')}"><title>${escapeXml(series.band.label)}</title></polygon>`;
}

function line(series: Series, x: readonly number[], keep: readonly number[], f: Frame, color: string): string {
  const pts = keep.filter((i) => Number.isFinite(x[i]));
  if (pts.length === 0) return '';
  const points = pts.map((i) => `${coord(f.sx(x[i]!))},${coord(f.sy(series.values[i]!))}`).join(' ');
  const out = [
    `<polyline class="series" data-series="${escapeXml(series.label)}" fill="none" stroke="${color}" stroke-width="1.5" points="${points}"/>`,
  ];
  if (pts.length <= MARKER_LIMIT) {
    out.push(
      `<g class="markers" fill="${color}">${pts.map((i) => `<circle cx="${coord(f.sx(x[i]!))}" cy="${coord(f.sy(series.values[i]!))}" r="2.5"><title>${escapeXml(`${series.label} at step ${x[i]}: ${formatValue(series.values[i])}`)}</title></circle>`).join('')}</g>`,
    );
  }
  return out.join('');
}

function legend(spec: LineChartSpec, measured: readonly boolean[]): string {
  if (spec.series.length < 2 && !spec.series[0]?.band) return '';
  const items: string[] = [];
  let x = PLOT.x0 + 4;
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const text = measured[i] ? s.label : `${s.label}: not measured`;
    items.push(
      `<line x1="${x}" x2="${x + 16}" y1="12" y2="12" stroke="${color}" stroke-width="2"/><text x="${x + 20}" y="16">${escapeXml(text)}</text>`,
    );
    x += 28 + text.length * 6.5;
    if (s.band) {
      items.push(
        `<rect x="${x}" y="7" width="16" height="10" fill="${color}" fill-opacity="0.15"/><text x="${x + 20}" y="16">${escapeXml(s.band.label)}</text>`,
      );
      x += 28 + s.band.label.length * 6.5;
    }
  });
  return `<g class="legend">${items.join('')}</g>`;
}

/** Counts values that are numbers but not finite (NaN, ±Infinity): measured, but not drawable. */
function nonFiniteCount(spec: LineChartSpec): number {
  let n = 0;
  for (const s of spec.series) for (const v of s.values) if (typeof v === 'number' && !Number.isFinite(v)) n++;
  return n;
}

/**
 * The chart as a `<figure>` holding one `<svg data-chart="{id}">` and a caption. Each series with
 * at least one finite value is one `<polyline data-series="{label}">`; a chart where no series has
 * one shows "not measured" instead of lines.
 */
export function lineChart(spec: LineChartSpec): string {
  const maxPoints = spec.maxPoints ?? 1000;
  const keeps = spec.series.map((s) => downsampleMinMax(s.values, maxPoints));
  const measured = keeps.map((k) => k.length > 0);
  const f = frame(spec);
  if (!measured.some(Boolean)) f.yTicks = { ticks: [], step: 0 }; // no data: no made-up y scale
  const body: string[] = [`<rect class="plot" x="${PLOT.x0}" y="${PLOT.y1}" width="${PLOT.x1 - PLOT.x0}" height="${PLOT.y0 - PLOT.y1}"/>`];
  body.push(phaseShading(spec, f), axes(spec, f));
  if (measured.some(Boolean)) {
    spec.series.forEach((s, i) => body.push(band(s, spec.x, keeps[i]!, f, COLORS[i % COLORS.length]!)));
    spec.series.forEach((s, i) => body.push(line(s, spec.x, keeps[i]!, f, COLORS[i % COLORS.length]!)));
    body.push(legend(spec, measured));
  } else {
    body.push(
      `<text class="not-measured" x="${coord((PLOT.x0 + PLOT.x1) / 2)}" y="${coord((PLOT.y0 + PLOT.y1) / 2)}" text-anchor="middle">not measured</text>`,
    );
  }
  const notes: string[] = [];
  const bad = nonFiniteCount(spec);
  if (bad) notes.push(`${bad} non-finite value${bad === 1 ? '' : 's'} not drawn`);
  const drawn = keeps.reduce((a, k) => a + k.length, 0);
  const total = spec.series.reduce((a, s) => a + s.values.filter((v) => finite(v) !== null).length, 0);
  if (drawn < total) notes.push(`${total} points reduced to ${drawn} (min/max per bucket)`);
  if (!measured.some(Boolean)) notes.push('not measured in any step');
  const svg =
    `<svg data-chart="${escapeXml(spec.id)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" width="${WIDTH}" height="${HEIGHT}" role="img" aria-label="${escapeXml(spec.title)}">` +
    `<title>${escapeXml(spec.title)}</title>${body.join('')}</svg>`;
  return `<figure class="chart"><figcaption>${escapeXml(spec.title)}${notes.length ? ` <small>(${escapeXml(notes.join('; '))})</small>` : ''}</figcaption>${svg}</figure>`;
}

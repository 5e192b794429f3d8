/** The HTML report of a training run: load its committed data, render one self-contained page. */
export { loadRunReport, parseEvalJson, ReportError } from './load.js';
export type { EvalRow, EvalSample, LoadReportOptions, ResumedFrom, RunLineageEntry, RunReportData, SampleRow } from './load.js';
export { renderReport, escapeHtml, METRIC_CHARTS, phaseSpans, accuracyBeforeAfterRl } from './render.js';
export type { RenderOptions } from './render.js';
export { lineChart, downsampleMinMax, niceTicks, formatTick, formatValue } from './chart.js';
export type { LineChartSpec, PhaseSpan, Series } from './chart.js';

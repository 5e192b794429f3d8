/**
 * Screenshots of a workflow in the Temporal Web UI, taken with headless Chromium (playwright-core
 * driving the system's Chromium; Playwright's own browser download is not used).
 *
 *   npx tsx infra/ui-screenshot.ts <workflowId> [--out DIR] [options]     (npm run ui-screenshot -- ...)
 *
 * Writes three PNGs and prints their paths:
 *   <id>-details.png            the workflow page, "User Metadata" tab: its summary, the markdown
 *                               "Current Details" the workflow sets with setCurrentDetails (the
 *                               panel is grown to its content), and the summary of every activity
 *   <id>-search-attributes.png  the workflow page, "Search Attributes" tab (DurableRl* and Temporal's)
 *   <id>-list.png               the workflow list filtered by a custom search attribute
 *                               (default DurableRlRunName="<the workflow's run name>"), with a
 *                               column for each of durable-rl's search attributes
 *
 * The UI reads Current Details with a query, which a worker polling durable-rl.control answers
 * (also for closed workflows): without one the panel stays empty and this says so.
 *
 * The Web UI: --ui, else DURABLE_RL_TEMPORAL_UI, else the local dev server that infra/ runs (it
 * must be up: `npm run infra -- up`). Chromium: DURABLE_RL_CHROMIUM, else /usr/bin/chromium
 * (Debian: `apt-get install chromium`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium, type Page } from 'playwright-core';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { status } from './index.js';

const USAGE = `usage: npx tsx infra/ui-screenshot.ts <workflowId> [options]

options:
  --out DIR          where the PNGs go (default out/ui-screenshots)
  --ui URL           Web UI base URL (default DURABLE_RL_TEMPORAL_UI, else the local dev server's)
  --namespace NS     Temporal namespace (default DURABLE_RL_TEMPORAL_NAMESPACE, else default)
  --query Q          list filter (default DurableRlRunName="<the workflow's DurableRlRunName>")
  --width PX         viewport width (default 1920)
  --height PX        viewport height (default 1080)
  --timeout S        how long to wait for each page to load (default 30)
  -h, --help         this text

Chromium: DURABLE_RL_CHROMIUM=/path, else /usr/bin/chromium.`;

/** The flags that work in containers and on machines without a GPU or outside network. */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Time for the UI to finish painting after the awaited element appears (no other fixed waits). */
const SETTLE_MS = 300;
/** How long Current Details gets to appear before the screenshot is taken without it. */
const DETAILS_WAIT_MS = 10_000;

/** Default columns of the workflow list left out of its screenshot, to fit durable-rl's search attributes. */
const LIST_COLUMNS_DROPPED = ['Run ID', 'End'];

class UsageError extends Error {}

function positiveInt(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/** The Chromium to drive; a missing one is a one-line error that says how to get it. */
function chromiumPath(): string {
  const p = process.env.DURABLE_RL_CHROMIUM || '/usr/bin/chromium';
  if (!existsSync(p)) {
    throw new Error(
      `no Chromium at ${p}: install it (Debian/Ubuntu: \`apt-get install chromium\`) or set DURABLE_RL_CHROMIUM=/path/to/chromium`,
    );
  }
  return p;
}

/** The Web UI's base URL: flag, environment, else the local dev server (which must be running). */
async function uiBase(flag: string | undefined): Promise<string> {
  const url = flag || process.env.DURABLE_RL_TEMPORAL_UI;
  if (url) return url.replace(/\/+$/, '');
  const st = await status();
  if (st.temporal.state !== 'running' || !st.temporal.uiUrl) {
    throw new Error(
      `the local Temporal dev server is ${st.temporal.state}${st.temporal.detail ? ` (${st.temporal.detail})` : ''}: ` +
        'start it with `npm run infra -- up`, or pass --ui URL / set DURABLE_RL_TEMPORAL_UI',
    );
  }
  return st.temporal.uiUrl.replace(/\/+$/, '');
}

/** File-name-safe form of a workflow id. */
const fileSafe = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_');

/**
 * Grows every markdown iframe (the UI renders Current Details and the summary in one, with a height
 * that can cut the last lines off) to its content's height. Done inside the page and repeated until
 * nothing changes, since the UI may re-create an iframe when the details refresh.
 */
async function expandMarkdownFrames(page: Page): Promise<void> {
  await page.waitForFunction(expandFramesInPage, undefined, { polling: 100 });
}

/** The little of the DOM that expandFramesInPage uses (this project type-checks without the DOM library). */
interface Box {
  getBoundingClientRect(): { bottom: number };
}
interface FrameElement {
  contentDocument: { readyState: string; body: Box | null; querySelector(sel: string): Box | null } | null;
  style: { height: string };
  setAttribute(name: string, value: string): void;
}

/**
 * Runs in the page (the UI's CSP forbids evaluating strings): true once every markdown iframe has
 * loaded and already has its content's height plus the last margin. The content element is
 * measured, since the document's scroll height would follow the iframe's own.
 */
function expandFramesInPage(): boolean {
  const doc = (globalThis as unknown as { document: { querySelectorAll(sel: string): Iterable<FrameElement> } }).document;
  let settled = true;
  for (const el of Array.from(doc.querySelectorAll('iframe[title="output"]'))) {
    const inner = el.contentDocument;
    if (!inner || inner.readyState !== 'complete' || !inner.body) return false;
    const content = inner.querySelector('main') ?? inner.body;
    const want = `${Math.ceil(content.getBoundingClientRect().bottom) + 24}px`;
    if (el.style.height !== want) {
      el.style.height = want;
      el.setAttribute('height', want);
      settled = false;
    }
  }
  return settled;
}

/** Opens one of the workflow page's tabs and waits for its content (`ready`). */
async function openTab(page: Page, name: string, ready: () => Promise<unknown>): Promise<void> {
  await page.getByRole('tab', { name, exact: true }).click();
  await ready();
}

interface Shot {
  what: string;
  path: string;
}

async function screenshots(opts: {
  workflowId: string;
  ui: string;
  namespace: string;
  outDir: string;
  query?: string;
  width: number;
  height: number;
  timeoutMs: number;
  chromium: string;
}): Promise<Shot[]> {
  const { workflowId, ui, namespace, outDir } = opts;
  const profile = mkdtempSync(join(tmpdir(), 'durable-rl-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: opts.width, height: opts.height },
  });
  try {
    ctx.setDefaultTimeout(opts.timeoutMs);
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    const shots: Shot[] = [];
    const base = join(outDir, fileSafe(workflowId));
    const shoot = async (what: string, suffix: string) => {
      await page.waitForTimeout(SETTLE_MS);
      const path = `${base}-${suffix}.png`;
      await page.screenshot({ path });
      shots.push({ what, path });
    };

    // 1. The workflow page: loaded when the network is idle and the heading names the workflow.
    const wfUrl = `${ui}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
    await page.goto(wfUrl, { waitUntil: 'networkidle' }).catch((err: Error) => {
      throw new Error(
        `cannot load the Web UI at ${wfUrl}: ${err.message.split('\n')[0]} (is the Temporal dev server up? \`npm run infra -- status\`)`,
      );
    });
    const heading = page.getByTestId('workflow-id-heading');
    try {
      await heading.filter({ hasText: workflowId }).waitFor();
    } catch {
      const text = (
        await page
          .locator('main')
          .innerText()
          .catch(() => '')
      )
        .slice(0, 300)
        .replace(/\s+/g, ' ');
      throw new Error(
        `the Web UI at ${wfUrl} shows no workflow ${JSON.stringify(workflowId)} in namespace ${namespace} (page says: ${text || 'nothing'})`,
      );
    }

    // Current Details: rendered markdown in an iframe of the "User Metadata" tab.
    await openTab(page, 'User Metadata', () => page.getByText('Current Details', { exact: true }).waitFor());
    const details = page
      .locator('h3', { hasText: /^Current Details$/ })
      .locator(`xpath=ancestor::div[.//iframe][not(.//h3[normalize-space()='Summary'])][1]`)
      .locator('iframe[title="output"]');
    const hasDetails = await details.waitFor({ timeout: DETAILS_WAIT_MS }).then(
      () => true,
      () => false,
    );
    if (!hasDetails) {
      process.stderr.write(
        'warning: Current Details is empty: the UI reads it with a query, so a worker must poll durable-rl.control ' +
          '(e.g. `npx tsx workers/control-worker.ts`), or the workflow sets none\n',
      );
    }
    await expandMarkdownFrames(page);
    await shoot('workflow page: summary, Current Details, activity summaries', 'details');

    // Search attributes: a JSON view of the "Search Attributes" tab.
    const json = page.locator('.cm-content').filter({ hasText: 'indexedFields' }).first();
    await openTab(page, 'Search Attributes', () => json.waitFor());
    let runName: string | undefined;
    try {
      const fields = (JSON.parse(await json.innerText()) as { indexedFields?: Record<string, unknown> }).indexedFields ?? {};
      if (typeof fields.DurableRlRunName === 'string') runName = fields.DurableRlRunName;
    } catch {
      // The view is not plain JSON in this UI version: fall back to the workflow id below.
    }
    await shoot('workflow page: search attributes', 'search-attributes');

    // 2. The list, filtered by a custom search attribute, with durable-rl's attributes as columns.
    const query = opts.query ?? `DurableRlRunName="${runName ?? workflowId}"`;
    await page.goto(`${ui}/namespaces/${encodeURIComponent(namespace)}/workflows?query=${encodeURIComponent(query)}`, {
      waitUntil: 'networkidle',
    });
    await page.getByTestId('workflows-summary-table-configuration-button').click();
    const drawer = page.locator('#workflows-table-configuration-drawer');
    await drawer.waitFor();
    // Room for them: Run ID and End go (the run id is on the workflow page), and the saved-views panel folds.
    for (const column of LIST_COLUMNS_DROPPED) {
      const remove = drawer.getByTestId(`orderable-list-item-${column}-remove-button`);
      if (await remove.count()) await remove.click();
    }
    for (const { name } of SEARCH_ATTRIBUTES) {
      const add = drawer.getByTestId(`orderable-list-item-${name}-add-button`);
      if (await add.count()) await add.click();
    }
    await drawer.getByTestId('drawer-close-button').click();
    await drawer.waitFor({ state: 'hidden' });
    const fold = page.getByRole('button', { name: 'Collapse saved views' });
    if (await fold.count()) await fold.first().click();
    const row = page.getByRole('row').filter({ hasText: workflowId }).first();
    const listed = await row.waitFor().then(
      () => true,
      () => false,
    );
    if (!listed) process.stderr.write(`warning: the list filtered by ${query} does not show ${workflowId}\n`);
    await shoot(`workflow list filtered by ${query}`, 'list');
    return shots;
  } finally {
    await ctx.close().catch(() => undefined);
    rmSync(profile, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      ui: { type: 'string' },
      namespace: { type: 'string' },
      query: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const [workflowId, ...extra] = positionals;
  if (!workflowId || extra.length) throw new UsageError(`give exactly one workflow id (try --help)`);
  const chromiumBin = chromiumPath();
  const ui = await uiBase(values.ui);
  const outDir = resolve(values.out ?? 'out/ui-screenshots');
  mkdirSync(outDir, { recursive: true });
  const shots = await screenshots({
    workflowId,
    ui,
    outDir,
    chromium: chromiumBin,
    namespace: values.namespace || process.env.DURABLE_RL_TEMPORAL_NAMESPACE || 'default',
    query: values.query,
    width: positiveInt(values.width, 'width', 1920),
    height: positiveInt(values.height, 'height', 1080),
    timeoutMs: positiveInt(values.timeout, 'timeout', 30) * 1000,
  });
  for (const s of shots) process.stdout.write(`${s.path}  (${s.what})\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ui-screenshot: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);

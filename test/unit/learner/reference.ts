/**
 * Plain-TypeScript references of the learner's losses, written from the papers' formulas loop by
 * loop (no graph code shared with the implementation), for value checks.
 */
export interface SurrogateRefOptions {
  clipLow: number;
  clipHigh: number;
  dualClip?: number | null;
  ratioLevel?: 'token' | 'sequence' | 'sequence_token';
  aggregation: 'token_mean' | 'sequence_mean' | 'constant';
  constantNormaliser?: number;
  tokenCount?: number;
  kl?: { beta: number; estimator: 'k1' | 'k2' | 'k3'; direction: 'reverse' | 'forward' } | null;
  entropyCoef?: number;
  /** Truncated importance sampling: weight min(exp(old − rollout), cap) on the surrogate. */
  tis?: { cap: number } | null;
}

export interface SurrogateRefInput {
  logprobs: number[][];
  old: number[][];
  /** one per row or one per token */
  advantages: number[] | number[][];
  mask: number[][];
  ref?: number[][];
  entropy?: number[][];
  /** With `tis`: the rollout engine's logprobs. */
  rollout?: number[][];
}

/** The guards: token log-ratios within ±20, sequence log-ratios within ±10, k3 within ±10. */
const clampTo = (x: number, b: number) => Math.min(Math.max(x, -b), b);

function klRef(lp: number, ref: number, est: string, dir: string): number {
  if (dir === 'reverse') {
    const logr = lp - ref; // log π/π_ref
    if (est === 'k1') return logr;
    if (est === 'k2') return (logr * logr) / 2;
    return Math.exp(ref - lp) - 1 - (ref - lp); // ρ − 1 − log ρ
  }
  // forward KL(π_ref ‖ π) from samples of π: weight ρ = π_ref/π times the estimator for ref samples
  const rho = Math.exp(ref - lp);
  const logRho = ref - lp;
  if (est === 'k1') return rho * logRho;
  if (est === 'k2') return (rho * logRho * logRho) / 2;
  const x = 1 / rho; // π/π_ref, the k3 ratio for samples of π_ref
  return rho * (x - 1 - Math.log(x));
}

export function aggregateRef(
  x: number[][],
  mask: number[][],
  o: Pick<SurrogateRefOptions, 'aggregation' | 'constantNormaliser' | 'tokenCount'>,
): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < x.length; i++)
    for (let t = 0; t < x[i]!.length; t++) {
      sum += x[i]![t]! * mask[i]![t]!;
      n += mask[i]![t]!;
    }
  if (o.aggregation === 'token_mean') return sum / Math.max(o.tokenCount ?? n, 1);
  if (o.aggregation === 'constant') return sum / (o.constantNormaliser! * x.length);
  let total = 0;
  let rows = 0;
  for (let i = 0; i < x.length; i++) {
    let s = 0;
    let len = 0;
    for (let t = 0; t < x[i]!.length; t++) {
      s += x[i]![t]! * mask[i]![t]!;
      len += mask[i]![t]!;
    }
    if (len > 0) {
      total += s / len;
      rows++;
    }
  }
  return total / Math.max(rows, 1);
}

export interface SurrogateRef {
  loss: number;
  pgLoss: number;
  /** per-token ratio values and whether the unclipped branch is active (for gradient references) */
  ratio: number[][];
  active: boolean[][];
  metrics: Record<string, number>;
}

export function clippedSurrogateRef(o: SurrogateRefOptions, d: SurrogateRefInput): SurrogateRef {
  const B = d.logprobs.length;
  const T = d.logprobs[0]!.length;
  const adv = (i: number, t: number) =>
    typeof d.advantages[0] === 'number' ? (d.advantages as number[])[i]! : (d.advantages as number[][])[i]![t]!;
  const ratio: number[][] = [];
  const seqHit: boolean[] = new Array<boolean>(B).fill(false);
  for (let i = 0; i < B; i++) {
    const row: number[] = [];
    if ((o.ratioLevel ?? 'token') === 'token') {
      for (let t = 0; t < T; t++) row.push(d.mask[i]![t] ? Math.exp(clampTo(d.logprobs[i]![t]! - d.old[i]![t]!, 20)) : 1);
    } else {
      let s = 0;
      let len = 0;
      for (let t = 0; t < T; t++)
        if (d.mask[i]![t]) {
          s += clampTo(d.logprobs[i]![t]! - d.old[i]![t]!, 20);
          len++;
        }
      const seqLogRatio = len ? s / len : 0;
      seqHit[i] = Math.abs(seqLogRatio) > 10;
      const seq = Math.exp(clampTo(seqLogRatio, 10));
      for (let t = 0; t < T; t++) row.push(d.mask[i]![t] ? seq : 1);
    }
    ratio.push(row);
  }
  const pg: number[][] = [];
  const active: boolean[][] = [];
  let low = 0,
    high = 0,
    dual = 0,
    rsum = 0,
    akl = 0,
    absDiff = 0,
    n = 0,
    clamped = 0,
    wsum = 0,
    capped = 0;
  for (let i = 0; i < B; i++) {
    pg.push([]);
    active.push([]);
    for (let t = 0; t < T; t++) {
      const r = ratio[i]![t]!;
      const A = adv(i, t);
      const clipped = Math.min(Math.max(r, 1 - o.clipLow), 1 + o.clipHigh);
      let l = Math.max(-A * r, -A * clipped);
      // the unclipped term is selected (and so carries the gradient) unless the ratio has left the
      // trust region in the direction the advantage pushes it
      let act = A > 0 ? r <= 1 + o.clipHigh : A < 0 ? r >= 1 - o.clipLow : false;
      if (o.dualClip && A < 0 && -A * o.dualClip < l) {
        l = -A * o.dualClip;
        act = false;
      }
      if (o.tis && d.mask[i]![t]) {
        const x = d.old[i]![t]! - d.rollout![i]![t]!;
        const w = Math.min(Math.exp(x), o.tis.cap);
        l *= w;
        wsum += w;
        if (x > Math.log(o.tis.cap)) capped++;
      }
      pg[i]!.push(l);
      active[i]!.push(act);
      if (d.mask[i]![t]) {
        n++;
        const tokenClamped = Math.abs(d.logprobs[i]![t]! - d.old[i]![t]!) > 20;
        if (tokenClamped || seqHit[i]) clamped++;
        if (A < 0 && r < 1 - o.clipLow) low++;
        if (A > 0 && r > 1 + o.clipHigh) high++;
        if (o.dualClip && A < 0 && r > o.dualClip) dual++;
        rsum += r;
        akl += Math.min(r - 1 - Math.log(r), 10);
        absDiff += Math.abs(clampTo(d.logprobs[i]![t]! - d.old[i]![t]!, 20));
      }
    }
  }
  const pgLoss = aggregateRef(pg, d.mask, o);
  let loss = pgLoss;
  const metrics: Record<string, number> = {
    pg_loss: pgLoss,
    clip_frac_low: low / n,
    clip_frac_high: high / n,
    clip_frac: (low + high) / n,
    ratio_mean: rsum / n,
    approx_kl: akl / n,
    logprob_diff: absDiff / n,
    log_ratio_clamped: clamped / n,
    tokens: n,
  };
  if (o.tis) {
    metrics.tis_weight_mean = wsum / n;
    metrics.tis_clip_frac = capped / n;
  }
  if (o.dualClip) metrics.dual_clip_frac = dual / n;
  if (o.kl) {
    let klClamped = 0;
    const kl = d.logprobs.map((row, i) =>
      row.map((lp, t) => {
        if (!d.mask[i]![t]) return 0;
        const logr = lp - d.ref![i]![t]!;
        let v = klRef(d.ref![i]![t]! + clampTo(logr, 20), d.ref![i]![t]!, o.kl!.estimator, o.kl!.direction);
        let hit = Math.abs(logr) > 20;
        if (o.kl!.estimator.startsWith('k3')) {
          hit ||= Math.abs(v) > 10;
          v = clampTo(v, 10);
        }
        if (hit) klClamped++;
        return v;
      }),
    );
    loss += o.kl.beta * aggregateRef(kl, d.mask, o);
    metrics.kl = aggregateRef(kl, d.mask, { aggregation: 'token_mean' });
    metrics.kl_clamped = klClamped / n;
  }
  if (d.entropy) {
    loss -= (o.entropyCoef ?? 0) * aggregateRef(d.entropy, d.mask, o);
    metrics.entropy = aggregateRef(d.entropy, d.mask, { aggregation: 'token_mean' });
  }
  return { loss, pgLoss, ratio, active, metrics };
}

/** DPO / cDPO over rows (chosen, rejected, chosen, …). */
export function dpoRef(
  o: { beta: number; labelSmoothing: number },
  logprobs: number[][],
  mask: number[][],
  refSums: number[],
): { loss: number; metrics: Record<string, number> } {
  const S = logprobs.map((row, i) => row.reduce((a, lp, t) => a + lp * mask[i]![t]!, 0));
  const logSig = (x: number) => -Math.log1p(Math.exp(-x));
  let loss = 0,
    acc = 0,
    ch = 0,
    rj = 0,
    mg = 0;
  const P = S.length / 2;
  for (let k = 0; k < P; k++) {
    const rc = o.beta * (S[2 * k]! - refSums[2 * k]!);
    const rr = o.beta * (S[2 * k + 1]! - refSums[2 * k + 1]!);
    const h = rc - rr;
    loss += -(1 - o.labelSmoothing) * logSig(h) - o.labelSmoothing * logSig(-h);
    acc += h > 0 ? 1 : 0;
    ch += rc;
    rj += rr;
    mg += h;
  }
  return {
    loss: loss / P,
    metrics: { reward_accuracy: acc / P, chosen_reward: ch / P, rejected_reward: rj / P, reward_margin: mg / P, pairs: P },
  };
}

/**
 * Rotary position embeddings (Su et al., "RoFormer", 2021) and the context-extension variants the
 * supported families ship with: the settings as `config.json` writes them (transformers 4's
 * top-level `rope_theta` / `rope_scaling`, transformers 5's `rope_parameters`), normalised to one
 * `RopeConfig`, and the inverse frequencies each type derives from them.
 *
 * Types (HF's `rope_type` names):
 * - `default`: θ_i = base^(-2i/d) (RoFormer).
 * - `linear`: position interpolation, every frequency divided by `factor` (Chen et al., "Extending
 *   Context Window of Large Language Models via Positional Interpolation", 2023).
 * - `llama3`: Llama 3.1's wavelength-dependent scaling: long wavelengths divided by `factor`, short
 *   ones kept, the band between interpolated smoothly (Meta, "The Llama 3 Herd of Models", 2024).
 * - `yarn`: YaRN (Peng et al., "YaRN: Efficient Context Window Extension of Large Language
 *   Models", 2023): per-dimension ramp between interpolation and extrapolation, and cos/sin scaled
 *   by an attention factor (0.1·ln(factor) + 1 unless given).
 *
 * `dynamic` (dynamic NTK scaling) is refused by name: it changes the frequencies with the length
 * of the batch, so the same token would get a different encoding in a rollout and in the learner.
 * Any other type is refused naming the field and the supported types.
 */
import { ConfigError } from '../common/config.js';

export const SUPPORTED_ROPE_TYPES = ['default', 'linear', 'llama3', 'yarn'] as const;

/** Normalised RoPE settings; the numbers are HF's, named in camelCase. */
export type RopeConfig =
  | { type: 'default'; theta: number }
  | { type: 'linear'; theta: number; factor: number }
  | { type: 'llama3'; theta: number; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | {
      type: 'yarn';
      theta: number;
      factor: number;
      originalMaxPositions: number;
      /** Multiplies cos and sin: given, or derived from factor (and mscale / mscale_all_dim, DeepSeek's form). */
      attentionFactor: number;
      /** Rotations bounding the ramp: dimensions with more than betaFast rotations extrapolate, fewer than betaSlow interpolate. */
      betaFast: number;
      betaSlow: number;
      /** Round the ramp's bounds to whole dimensions (HF's default). */
      truncate: boolean;
    };

type Raw = Record<string, unknown>;

/**
 * Reads the RoPE settings of a llama-family `config.json`, in either form, with transformers 5's
 * precedence: a non-null `rope_scaling` (the v4 field) over `rope_parameters`; `rope_theta` inside
 * them over the top-level one; 10000 when neither is given. `maxPositions` is the config's
 * `max_position_embeddings` (the default `original_max_position_embeddings` of llama3 and yarn).
 */
export function parseRope(c: Raw, maxPositions: number, what: string): RopeConfig {
  const fail = (path: string, message: string): never => {
    throw new ConfigError(what, [{ path, message }]);
  };
  const scaling = c.rope_scaling;
  const v4 = scaling !== null && scaling !== undefined;
  const field = v4 ? 'rope_scaling' : 'rope_parameters';
  const params = (v4 ? scaling : (c.rope_parameters ?? {})) as unknown;
  if (typeof params !== 'object' || params === null || Array.isArray(params)) return fail(field, 'expected an object or null');
  const p = params as Raw;
  const nested = Object.values(p).some((v) => typeof v === 'object' && v !== null);
  if (nested) return fail(field, 'per-layer-type RoPE settings (one entry per layer type) are not supported; give one flat object');
  const num = (key: string, fallback?: number): number => {
    const v = p[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
      return fail(`${field}.${key}`, `expected a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const partial = p.partial_rotary_factor ?? c.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    fail(
      p.partial_rotary_factor !== undefined ? `${field}.partial_rotary_factor` : 'partial_rotary_factor',
      `partial rotary embeddings are not supported (got ${JSON.stringify(partial)}; only 1.0)`,
    );
  }
  const topTheta = c.rope_theta ?? 10000;
  const theta =
    p.rope_theta !== undefined
      ? num('rope_theta')
      : typeof topTheta === 'number' && topTheta > 0
        ? topTheta
        : fail('rope_theta', `expected a positive number, got ${JSON.stringify(topTheta)}`);
  const typeKey = p.rope_type !== undefined ? 'rope_type' : 'type';
  const type = p[typeKey] ?? 'default';
  switch (type) {
    case 'default':
      return { type: 'default', theta };
    case 'linear':
      return { type: 'linear', theta, factor: num('factor') };
    case 'llama3':
      return {
        type: 'llama3',
        theta,
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings', maxPositions),
      };
    case 'yarn': {
      const original = num('original_max_position_embeddings', maxPositions);
      const factor = p.factor === undefined || p.factor === null ? maxPositions / original : num('factor');
      const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const ms = p.mscale as number | undefined;
      const msAll = p.mscale_all_dim as number | undefined;
      const attentionFactor =
        p.attention_factor !== undefined && p.attention_factor !== null
          ? num('attention_factor')
          : ms && msAll
            ? mscale(factor, ms) / mscale(factor, msAll)
            : mscale(factor);
      return {
        type: 'yarn',
        theta,
        factor,
        originalMaxPositions: original,
        attentionFactor,
        betaFast: (p.beta_fast as number | undefined) || 32,
        betaSlow: (p.beta_slow as number | undefined) || 1,
        truncate: p.truncate !== false,
      };
    }
    case 'dynamic':
      return fail(
        `${field}.${typeKey}`,
        `rope type "dynamic" (dynamic NTK scaling) is not supported: it re-derives the frequencies from each batch's length, so a token's encoding would differ between rollout and learner; supported: ${SUPPORTED_ROPE_TYPES.join(', ')}`,
      );
    default:
      return fail(`${field}.${typeKey}`, `unsupported rope type ${JSON.stringify(type)}; supported: ${SUPPORTED_ROPE_TYPES.join(', ')}`);
  }
}

/**
 * The inverse frequencies (one per pair of head dimensions, `headDim / 2` of them) and the factor
 * cos and sin are multiplied by, as transformers computes them for each type.
 */
export function ropeFrequencies(rope: RopeConfig, headDim: number): { invFreq: number[]; attentionFactor: number } {
  const half = headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / rope.theta ** ((2 * i) / headDim));
  switch (rope.type) {
    case 'default':
      return { invFreq: base, attentionFactor: 1 };
    case 'linear':
      return { invFreq: base.map((f) => f / rope.factor), attentionFactor: 1 };
    case 'llama3': {
      const lowWavelen = rope.originalMaxPositions / rope.lowFreqFactor;
      const highWavelen = rope.originalMaxPositions / rope.highFreqFactor;
      const invFreq = base.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) return f; // high frequencies: kept
        if (wavelen > lowWavelen) return f / rope.factor; // low frequencies: interpolated
        const smooth = (rope.originalMaxPositions / wavelen - rope.lowFreqFactor) / (rope.highFreqFactor - rope.lowFreqFactor);
        return (1 - smooth) * (f / rope.factor) + smooth * f;
      });
      return { invFreq, attentionFactor: 1 };
    }
    case 'yarn': {
      // the dimension at which a frequency makes `rotations` turns over the original context
      const dimOf = (rotations: number) =>
        (headDim * Math.log(rope.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(rope.theta));
      let low = dimOf(rope.betaFast);
      let high = dimOf(rope.betaSlow);
      if (rope.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
      low = Math.max(low, 0);
      high = Math.min(high, headDim - 1);
      if (low === high) high += 0.001; // HF: avoids a zero-width ramp
      const invFreq = base.map((f, i) => {
        const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
        const extrapolation = 1 - ramp; // 1: keep the frequency, 0: interpolate it
        return (f / rope.factor) * (1 - extrapolation) + f * extrapolation;
      });
      return { invFreq, attentionFactor: rope.attentionFactor };
    }
  }
}

/** The `config.json` fields of a RoPE config, in both forms (transformers 5 reads `rope_parameters`, 4 reads the others). */
export function ropeToHf(rope: RopeConfig): Record<string, unknown> {
  const params: Raw = { rope_type: rope.type, rope_theta: rope.theta };
  if (rope.type === 'linear') params.factor = rope.factor;
  if (rope.type === 'llama3') {
    Object.assign(params, {
      factor: rope.factor,
      low_freq_factor: rope.lowFreqFactor,
      high_freq_factor: rope.highFreqFactor,
      original_max_position_embeddings: rope.originalMaxPositions,
    });
  }
  if (rope.type === 'yarn') {
    Object.assign(params, {
      factor: rope.factor,
      original_max_position_embeddings: rope.originalMaxPositions,
      attention_factor: rope.attentionFactor,
      beta_fast: rope.betaFast,
      beta_slow: rope.betaSlow,
      truncate: rope.truncate,
    });
  }
  const { rope_theta: _theta, ...scaling } = params;
  return {
    rope_theta: rope.theta,
    rope_scaling: rope.type === 'default' ? null : { ...scaling, type: rope.type },
    rope_parameters: params,
  };
}

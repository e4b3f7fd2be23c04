// Figures per repetition in, one table per scenario out: medians of the repetitions,
// and the ratio as the median of per-repetition ratios (each repetition runs both
// servers back to back, so pairing them cancels much of a shared machine's drift).

export type Unit = 'bytes' | 'MiB' | 'ms' | 'us' | 's' | 'msg/s' | 'per-s' | 'count';

/** A target from the issue: checked on the ratio, or on Switchboard's own figure. */
export interface Target {
  readonly text: string;
  readonly on: 'ratio' | 'switchboard';
  readonly max?: number;
  readonly min?: number;
}

export interface MetricSpec {
  readonly key: string;
  readonly label: string;
  readonly unit: Unit;
  /** False when the bare server has no such figure (resume). */
  readonly bare?: boolean;
  readonly target?: Target;
}

export interface RepFigures {
  readonly switchboard: Record<string, number>;
  readonly bare: Record<string, number> | null;
}

export interface Line {
  readonly metric: string;
  readonly unit: Unit;
  readonly switchboard: number;
  readonly bare: number | null;
  readonly ratio: number | null;
  readonly reps: { switchboard: number[]; bare: number[] | null };
  readonly target: string | null;
  readonly met: boolean | null;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return NaN;
  const s = [...finite].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Nearest-rank percentile of samples (sorted here). */
export function percentile(samples: Float64Array, p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function concat(arrays: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

export function summarize(specs: readonly MetricSpec[], reps: readonly RepFigures[]): Line[] {
  return specs.map((spec) => {
    const sb = reps.map((r) => r.switchboard[spec.key] ?? NaN);
    const hasBare = spec.bare !== false && reps.every((r) => r.bare !== null);
    const bare = hasBare ? reps.map((r) => r.bare![spec.key] ?? NaN) : null;
    // 0 / 0 (nothing lost on either side) is no ratio at all.
    const ratio = bare ? median(sb.map((v, i) => (v === 0 && bare[i] === 0 ? NaN : v / bare[i]))) : null;
    const switchboard = median(sb);
    let met: boolean | null = null;
    const t = spec.target;
    if (t) {
      const value = t.on === 'ratio' ? ratio : switchboard;
      met = value !== null && Number.isFinite(value) && (t.max === undefined || value <= t.max) && (t.min === undefined || value >= t.min);
    }
    return {
      metric: spec.label, unit: spec.unit, switchboard, bare: bare ? median(bare) : null, ratio,
      reps: { switchboard: sb, bare }, target: t?.text ?? null, met,
    };
  });
}

export function format(value: number | null, unit: Unit): string {
  if (value === null) return '—';
  if (!Number.isFinite(value)) return 'n/a';
  switch (unit) {
    case 'bytes':
      return `${(value / 1024).toFixed(2)} KiB`;
    case 'MiB':
      return `${(value / 1048576).toFixed(1)} MiB`;
    case 'ms':
      return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`;
    case 'us':
      return `${value.toFixed(2)} µs`;
    case 's':
      return `${value.toFixed(2)} s`;
    case 'msg/s':
      return `${Math.round(value).toLocaleString('en-US')} msg/s`;
    case 'per-s':
      return `${Math.round(value).toLocaleString('en-US')}/s`;
    case 'count':
      return Math.round(value).toLocaleString('en-US');
  }
}

export function table(lines: readonly Line[]): string {
  const rows = [
    ['metric', 'switchboard', 'bare ws', 'ratio', 'target', ''],
    ...lines.map((l) => [
      l.metric,
      format(l.switchboard, l.unit),
      format(l.bare, l.unit),
      l.ratio === null || !Number.isFinite(l.ratio) ? '—' : `${l.ratio.toFixed(2)}×`,
      l.target ?? '',
      l.met === null ? '' : l.met ? 'met' : 'MISSED',
    ]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const render = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c])).join(' | ')} |`;
  return [render(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(render)].join('\n');
}

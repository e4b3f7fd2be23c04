// Channel name patterns, as `presence.frames` lists them: a name, or one with `*` standing for
// any run of characters (none included), so `room:*` is every channel whose name starts with
// `room:`. No regular expressions: a pattern is matched piece by piece, in time linear in the
// name, whatever it holds.
import { MAX_CHANNEL, MAX_CHANNEL_PATTERNS } from './limits.js';

/** Why a pattern cannot be used; null when it can. */
export function channelPatternProblem(pattern: string): string | null {
  if (pattern.length === 0) return 'expected a non-empty channel name or pattern';
  if (pattern.length > MAX_CHANNEL) return `expected a channel name or pattern of at most ${MAX_CHANNEL} characters`;
  return null;
}

/** Whether `name` is `pattern`, each `*` standing for any run of characters. */
function matches(pieces: readonly string[], name: string): boolean {
  const first = pieces[0];
  const last = pieces[pieces.length - 1];
  if (pieces.length === 1) return name === first;
  if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) return false;
  // The pieces between the first and the last, each at its earliest place after the one before.
  let at = first.length;
  const end = name.length - last.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const piece = pieces[i];
    if (piece === '') continue;
    const found = name.indexOf(piece, at);
    if (found === -1 || found + piece.length > end) return false;
    at = found + piece.length;
  }
  return true;
}

/** One function for a list of patterns (each checked with `channelPatternProblem` first): whether a channel matches any. */
export function channelMatcher(patterns: readonly string[]): (channel: string) => boolean {
  if (patterns.length > MAX_CHANNEL_PATTERNS) throw new RangeError(`at most ${MAX_CHANNEL_PATTERNS} channel patterns`);
  const exact = new Set<string>();
  const globs: string[][] = [];
  for (const p of patterns) {
    if (p.includes('*')) globs.push(p.split('*'));
    else exact.add(p);
  }
  if (exact.size === 0 && globs.length === 0) return () => false;
  return (channel) => exact.has(channel) || globs.some((pieces) => matches(pieces, channel));
}

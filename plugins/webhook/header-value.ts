// User and meta values travel in webhook headers, but they come from JSON (the app's connect
// answer), so they may hold what a header cannot: non-ASCII text, control characters.
// Visible ASCII goes verbatim; anything else as an RFC 8187 ext-value, `utf-8''<percent-encoded>`,
// which `decodeURIComponent` of the part after the prefix reverses.

const PREFIX = "utf-8''";
/** Visible ASCII and inner spaces: what any HTTP stack carries unchanged. */
const PLAIN = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

export function headerValue(value: string): string {
  if (PLAIN.test(value) && !value.toLowerCase().startsWith(PREFIX)) return value;
  return PREFIX + encodeURIComponent(value);
}

/** The inverse, for apps (and tests): the original value of a header `headerValue` wrote. */
export function decodeHeaderValue(header: string): string {
  return header.toLowerCase().startsWith(PREFIX) ? decodeURIComponent(header.slice(PREFIX.length)) : header;
}

// Waiting for what a test can observe but not await: a condition polled until it holds.
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls until `check` holds, every `everyMs`; gives up after `ms` with "gave up waiting: `what`".
 * The bound only keeps a missing event from hanging the suite: no timing is asserted. `what`
 * may be a function, to name the state seen last. A `check` that throws ends the wait with its error.
 */
export async function eventually(check: () => boolean | Promise<boolean>, what: string | (() => string), ms = 10_000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`gave up waiting: ${typeof what === 'function' ? what() : what}`);
    await sleep(everyMs);
  }
}

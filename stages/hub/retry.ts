/**
 * Retry building blocks for Hub requests: the transient-failure marker, exponential backoff with
 * jitter, `Retry-After` parsing, an abortable sleep, and a gate that pauses every connection after
 * a 429.
 *
 * @module
 */

/** Retry limits shared by every request of a source. */
export interface RetryOptions {
  /** Failed attempts in a row without a new byte before giving up. @default 8 */
  retries?: number;
  /** First backoff delay; it doubles per failure. @default 250 */
  minDelayMs?: number;
  /**
   * Longest backoff delay. A `Retry-After` is honoured as given, as long as it ends within
   * `retryTimeoutMs`. @default 30_000
   */
  maxDelayMs?: number;
  /** Wall time from a part's first failure after which it gives up. @default 600_000 */
  retryTimeoutMs?: number;
  /** A request that delivers no byte (or no headers) for this long counts as stalled. @default 30_000 */
  stallTimeoutMs?: number;
}

/** {@linkcode RetryOptions} with every default filled in. */
export type RetryLimits = Required<RetryOptions>;

/** Fills in the defaults and checks the values. */
export function retryLimits(options: RetryOptions = {}): RetryLimits {
  const limits: RetryLimits = {
    retries: options.retries ?? 8,
    minDelayMs: options.minDelayMs ?? 250,
    maxDelayMs: options.maxDelayMs ?? 30_000,
    retryTimeoutMs: options.retryTimeoutMs ?? 600_000,
    stallTimeoutMs: options.stallTimeoutMs ?? 30_000,
  };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(
        `Cannot use retry option ${key} as it is not a finite number >= 0: ${value}`,
      );
    }
  }
  return limits;
}

/**
 * A failure worth retrying: network error, stall, short body, 429, 5xx, or an expired CDN link
 * (`relocate`: resolve the file again first).
 */
export class TransientError extends Error {
  /** HTTP status, or null for a network failure. */
  readonly status: number | null;
  /** Delay the server asked for, in ms. */
  readonly retryAfterMs: number | null;
  /** The cached download location went stale; resolve the file again. */
  readonly relocate: boolean;
  constructor(
    message: string,
    fields: { status?: number | null; retryAfterMs?: number | null; relocate?: boolean } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "TransientError";
    this.status = fields.status ?? null;
    this.retryAfterMs = fields.retryAfterMs ?? null;
    this.relocate = fields.relocate ?? false;
  }
}

/**
 * Delay before retry number `attempt` (1-based): `minDelayMs · 2^(attempt-1)` capped at
 * `maxDelayMs`, then "equal jitter" (uniform in [d/2, d]) so parallel connections spread out.
 */
export function backoffDelay(
  attempt: number,
  limits: Pick<RetryLimits, "minDelayMs" | "maxDelayMs">,
  random: () => number = Math.random,
): number {
  const exp = Math.min(limits.maxDelayMs, limits.minDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + random() * exp / 2);
}

/** `Retry-After` as ms from `now`: delta seconds or an HTTP date; null when absent or invalid. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** After a 429 every connection waits, not only the one that was told to. */
export class RateGate {
  #until = 0;

  /** Holds new requests until `Date.now() + ms`. */
  pause(ms: number): void {
    this.#until = Math.max(this.#until, Date.now() + ms);
  }

  /** Waits until the gate opens. */
  async wait(signal?: AbortSignal): Promise<void> {
    for (let left = this.#until - Date.now(); left > 0; left = this.#until - Date.now()) {
      await sleep(left, signal);
    }
  }
}

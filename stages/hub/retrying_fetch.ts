/**
 * A `fetch` for the small API calls made through `@huggingface/hub` (model info, file listing,
 * small files): retries network errors, stalls before the answer, 429 and 5xx with backoff, within
 * the source's limits. It does not resume bodies; those answers are small.
 *
 * @module
 */
import type { HubSourceEvent } from "./hub_context.ts";
import { backoffDelay, parseRetryAfter, type RateGate, type RetryLimits, sleep } from "./retry.ts";
import { StallWatchdog } from "./stall_watchdog.ts";

/** What {@linkcode retryingFetch} needs. */
export interface RetryingFetchOptions {
  readonly fetch: typeof fetch;
  readonly limits: RetryLimits;
  readonly gate: RateGate;
  readonly onEvent: (event: HubSourceEvent) => void;
}

const NEVER = new AbortController().signal;

/** Wraps `options.fetch` with retries; the last failure is returned (or thrown) as is. */
export function retryingFetch(options: RetryingFetchOptions): typeof fetch {
  const { limits, gate, onEvent } = options;
  return async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    const method = init?.method ?? (input instanceof Request ? input.method : "GET");
    const idempotent = method === "GET" || method === "HEAD";
    const parent = init?.signal ?? NEVER;
    const started = Date.now();
    for (let attempt = 1;; attempt++) {
      await gate.wait(parent);
      const giveUp = (delay: number) =>
        attempt > limits.retries || Date.now() - started + delay > limits.retryTimeoutMs;
      let failure: string;
      let status: number | null = null;
      let delay: number;
      {
        using watchdog = new StallWatchdog(parent, limits.stallTimeoutMs);
        try {
          const response = await options.fetch(input, { ...init, signal: watchdog.signal });
          if (!idempotent || (response.status !== 429 && response.status < 500)) return response;
          status = response.status;
          const retryAfterMs = parseRetryAfter(response.headers.get("Retry-After"));
          if (status === 429) {
            gate.pause(retryAfterMs ?? limits.minDelayMs);
          }
          delay = retryAfterMs ?? backoffDelay(attempt, limits);
          // Out of retries: hand the error answer to the caller, which reports it.
          if (giveUp(delay)) return response;
          await response.body?.cancel();
          failure = `HTTP ${status}`;
        } catch (error) {
          if (parent.aborted || !idempotent) throw error;
          delay = backoffDelay(attempt, limits);
          if (giveUp(delay)) throw error;
          failure = watchdog.stalled
            ? `no answer for ${limits.stallTimeoutMs} ms`
            : "network error";
        }
      }
      onEvent({
        type: "retry",
        path: new URL(url).pathname,
        attempt,
        delayMs: delay,
        status,
        reason: failure,
      });
      await sleep(delay, parent);
    }
  };
}

/**
 * Downloads one part of a file with range requests, resuming from the last byte received after a
 * broken body, a stall or a short answer, and retrying 429/5xx with backoff and jitter. Every
 * answer is checked against what was seen first (ETag, size, commit, Content-Range), so bytes of
 * two revisions are never mixed.
 *
 * @module
 */
import type { FetchPart } from "./ordered_read_ahead.ts";
import type { PartSink } from "./part_buffer.ts";
import type { RangePart } from "./range_parts.ts";
import type { FileLocation, HubFileLocator } from "./file_locator.ts";
import { authHeaders, errorForStatus, type HubContext, IDENTITY } from "./hub_context.ts";
import { HubFileChangedError, HubReadError } from "./hub_errors.ts";
import { backoffDelay, sleep, TransientError } from "./retry.ts";
import { StallWatchdog } from "./stall_watchdog.ts";

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
/**
 * An attempt that delivered this much before failing starts a fresh retry count. Smaller progress
 * does not, so a server that sends a few bytes per connection and stalls still runs out of
 * retries: a part costs at most `(retries + 1) · ceil(size / 1 MiB)` attempts.
 */
const PROGRESS_RESETS_RETRIES = 1 << 20;

/**
 * Bytes per body read. Reads land in one scratch buffer per request (a BYOB reader), reused read
 * after read, and are copied from there into the part's pieces while still in the CPU cache.
 * Deno's default reader allocates and zeroes a fresh 64 KiB buffer for every read instead: ad hoc
 * CLI conversions of `deno task bench hub`'s model from its loopback Hub took 1.3–1.6 s of user
 * CPU this way against 2.4–2.6 s, peak RSS 228–263 against 340–380 MiB. Reads do not go straight
 * into the pieces: a failing BYOB read takes its whole buffer along, and with it the bytes
 * received before, which the retry must not fetch again.
 */
const READ_BYTES = 256 << 10;

/**
 * Reads `body` through a reused scratch buffer where it is a byte stream (Deno's fetch), else
 * chunk by chunk (a `fetch` given in the options may answer with any stream). A read's bytes are
 * valid until the next read.
 */
function _bodyReader(body: ReadableStream<Uint8Array>): {
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
  cancel(): Promise<void>;
} {
  let byob: ReadableStreamBYOBReader;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    return body.getReader();
  }
  let scratch = new ArrayBuffer(READ_BYTES);
  return {
    async read() {
      const next = await byob.read(new Uint8Array(scratch));
      if (next.value) scratch = next.value.buffer; // the read moved it: take it back
      return next;
    },
    cancel: () => byob.cancel(),
  };
}

/** A {@linkcode FetchPart} for the ordered read-ahead that reads from the Hub. */
export function hubPartFetcher(ctx: HubContext, locator: HubFileLocator): FetchPart {
  return (part, sink, signal) => _fetchPart(ctx, locator, part, sink, signal);
}

async function _fetchPart(
  ctx: HubContext,
  locator: HubFileLocator,
  part: RangePart,
  sink: PartSink,
  signal: AbortSignal,
): Promise<void> {
  const { limits } = ctx;
  let failures = 0;
  let attempts = 0;
  let firstFailure = 0;
  while (part.start + sink.position < part.end) {
    await ctx.gate.wait(signal);
    const before = sink.position;
    attempts++;
    let location: FileLocation | null = null;
    try {
      location = await locator.locate(part.path, signal);
      await _request(ctx, locator, location, part.start + sink.position, part.end, sink, signal);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (!(error instanceof TransientError)) throw error;
      if (sink.position - before >= PROGRESS_RESETS_RETRIES) failures = 0;
      if (failures === 0) firstFailure = Date.now();
      failures++;
      if (error.relocate && location !== null) locator.invalidate(location);
      const delay = error.relocate && failures === 1
        ? 0
        : error.retryAfterMs ?? backoffDelay(failures, limits);
      const elapsed = Date.now() - firstFailure;
      if (failures > limits.retries || elapsed + delay > limits.retryTimeoutMs) {
        const why = failures > limits.retries
          ? `${failures} attempts in a row failed`
          : `retrying would pass the retry time limit of ${limits.retryTimeoutMs} ms`;
        throw new HubReadError(
          part.path,
          location?.resolveUrl ?? part.path,
          error.status,
          attempts,
          `Cannot read ${part.path} from ${ctx.label} as ${why}: ${error.message}`,
          { cause: error },
        );
      }
      ctx.counters.retries++;
      ctx.onEvent({
        type: "retry",
        path: part.path,
        attempt: failures,
        delayMs: delay,
        status: error.status,
        reason: error.message,
      });
      await sleep(delay, signal);
    }
  }
}

/** One range request for `[from, to)`; throws {@linkcode TransientError} to be retried. */
async function _request(
  ctx: HubContext,
  locator: HubFileLocator,
  location: FileLocation,
  from: number,
  to: number,
  sink: PartSink,
  signal: AbortSignal,
): Promise<void> {
  const { path } = location;
  if (to > location.size) {
    throw new RangeError(
      `Cannot read ${path} bytes ${from}..${to} from ${ctx.label} as the file has ${location.size} bytes`,
    );
  }
  using watchdog = new StallWatchdog(signal, ctx.limits.stallTimeoutMs);
  const network = (error: unknown, state: string): TransientError => {
    if (signal.aborted) throw signal.reason;
    const why = watchdog.stalled
      ? `no byte for ${ctx.limits.stallTimeoutMs} ms ${state}`
      : `connection failed ${state} (${error instanceof Error ? error.message : String(error)})`;
    return new TransientError(why, {}, { cause: error });
  };
  ctx.counters.requests++;
  let response: Response;
  try {
    response = await ctx.fetch(location.url, {
      headers: { ...IDENTITY, Range: `bytes=${from}-${to - 1}`, ...authHeaders(ctx, location.url) },
      signal: watchdog.signal,
    });
  } catch (error) {
    throw network(error, "before the answer");
  }
  watchdog.touch();
  const body = response.body;
  try {
    _checkAnswer(ctx, locator, location, response, from, to);
  } catch (error) {
    await body?.cancel().catch(() => {});
    throw error;
  }
  if (body === null) throw new TransientError("the answer has no body");
  const reader = _bodyReader(body);
  const total = to - from;
  let left = total;
  try {
    while (left > 0) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        throw network(error, `after ${total - left} of ${total} bytes`);
      }
      if (next.done) break;
      watchdog.touch();
      let bytes = next.value.length > left ? next.value.subarray(0, left) : next.value;
      left -= bytes.length;
      ctx.counters.bytesReceived += bytes.length;
      while (bytes.length > 0) {
        const space = sink.space();
        const n = Math.min(space.length, bytes.length);
        space.set(bytes.subarray(0, n));
        sink.filled(n);
        bytes = bytes.subarray(n);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  if (left > 0) {
    throw new TransientError(`the body ended after ${total - left} of ${total} bytes`);
  }
}

/** Status, commit, ETag and Content-Range of a range answer. */
function _checkAnswer(
  ctx: HubContext,
  locator: HubFileLocator,
  location: FileLocation,
  response: Response,
  from: number,
  to: number,
): void {
  const { path } = location;
  const status = response.status;
  const viaLink = location.url !== location.resolveUrl || response.redirected;
  if (viaLink && (status === 401 || status === 403 || status === 410)) {
    // A signed CDN link expired: resolve the file again (its ETag must not change).
    throw new TransientError(`the CDN refused the download link (HTTP ${status})`, {
      status,
      relocate: true,
    });
  }
  if (status !== 200 && status !== 206) {
    throw errorForStatus(ctx, path, response, location.resolveUrl);
  }
  const commit = response.headers.get("X-Repo-Commit");
  if (commit !== null && commit !== ctx.commit) {
    throw new HubFileChangedError(
      path,
      location.resolveUrl,
      ctx.commit,
      commit,
      `Cannot read ${path} from ${ctx.label} as the Hub served commit ${commit} instead of the pinned one`,
    );
  }
  locator.checkDataEtag(location, response.headers.get("ETag"));
  if (status === 200) {
    if (from === 0 && to === location.size) return;
    throw new HubReadError(
      path,
      location.resolveUrl,
      200,
      1,
      `Cannot read ${path} bytes ${from}..${to} from ${ctx.label} as the server ignored the Range header (HTTP 200)`,
    );
  }
  const range = CONTENT_RANGE.exec(response.headers.get("Content-Range") ?? "");
  const [first, total] = [Number(range?.[1]), range?.[3]];
  if (range === null || first !== from) {
    throw new HubReadError(
      path,
      location.resolveUrl,
      206,
      1,
      `Cannot read ${path} bytes ${from}..${to} from ${ctx.label} as the server answered another range: Content-Range ${
        response.headers.get("Content-Range")
      }`,
    );
  }
  if (total !== "*" && Number(total) !== location.size) {
    throw new HubFileChangedError(
      path,
      location.resolveUrl,
      `${location.size} bytes`,
      `${total} bytes`,
      `Cannot read ${path} from ${ctx.label} as the file changed while reading: size ${location.size} became ${total}`,
    );
  }
}

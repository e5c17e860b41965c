/**
 * What every request of one Hub source shares: where the repo is, the pinned commit, the token,
 * retry limits, the 429 gate, counters and the event sink. Also the mapping from an HTTP error
 * answer to the error a caller catches.
 *
 * @module
 */
import { HubAuthError, HubNotFoundError, HubReadError } from "./hub_errors.ts";
import { parseRetryAfter, type RateGate, type RetryLimits, TransientError } from "./retry.ts";

/** Something the source did that a progress display or log may show. Never carries the token. */
export interface HubRetryEvent {
  readonly type: "retry";
  /** File being read. */
  readonly path: string;
  /** Failed attempts in a row so far. */
  readonly attempt: number;
  /** Wait before the next attempt. */
  readonly delayMs: number;
  /** HTTP status of the failure, or null for a network failure or stall. */
  readonly status: number | null;
  readonly reason: string;
}

/** Events of a Hub source. */
export type HubSourceEvent = HubRetryEvent;

/** Request counters of a source. */
export interface HubCounters {
  /** HTTP requests sent for range reads (resolve probes included). */
  requests: number;
  /** Retries after a failed attempt. */
  retries: number;
  /** Tensor-data bytes received. */
  bytesReceived: number;
}

/** Shared state of one Hub source. */
export interface HubContext {
  /** Hub base URL without a trailing slash, e.g. `https://huggingface.co`. */
  readonly endpoint: string;
  /** `owner/name`. */
  readonly repo: string;
  /** The commit every read is pinned to. */
  readonly commit: string;
  /** `hf:owner/name@commit`, for messages. */
  readonly label: string;
  readonly token: string | null;
  readonly fetch: typeof fetch;
  readonly limits: RetryLimits;
  readonly gate: RateGate;
  readonly counters: HubCounters;
  readonly onEvent: (event: HubSourceEvent) => void;
}

/** `Authorization` for requests to the Hub's own origin; nothing for other origins (CDN). */
export function authHeaders(ctx: HubContext, url: string): Record<string, string> {
  if (ctx.token === null || new URL(url).origin !== new URL(ctx.endpoint).origin) return {};
  return { Authorization: `Bearer ${ctx.token}` };
}

/**
 * Headers of every probe and range request: no compression, so sizes and byte offsets are the
 * file's own (huggingface_hub asks for `identity` for the same reason).
 */
export const IDENTITY = { "Accept-Encoding": "identity" } as const;

/** `{endpoint}/{repo}/resolve/{commit}/{path}` with each path segment encoded. */
export function resolveUrl(ctx: HubContext, path: string): string {
  const encoded = path.split("/").map(encodeURIComponent).join("/");
  return `${ctx.endpoint}/${ctx.repo}/resolve/${ctx.commit}/${encoded}`;
}

/**
 * The error for a failed answer about `path`: transient for 408/429/5xx (a 429 also pauses the
 * gate), auth for 401/403, not-found for 404, otherwise a final read error.
 */
export function errorForStatus(
  ctx: HubContext,
  path: string,
  response: Response,
  url: string,
): Error {
  const status = response.status;
  const retryAfterMs = parseRetryAfter(response.headers.get("Retry-After"));
  if (status === 429) {
    ctx.gate.pause(retryAfterMs ?? ctx.limits.minDelayMs);
    return new TransientError(`HTTP 429 (rate limited)`, { status, retryAfterMs });
  }
  if (status === 408 || status >= 500) {
    return new TransientError(`HTTP ${status}`, { status, retryAfterMs });
  }
  const code = response.headers.get("X-Error-Code") ?? "";
  if (status === 401 || status === 403) {
    const why = status === 403
      ? "the token has no access to this gated or private repo (request access on the Hub)"
      : ctx.token === null
      ? "the repo is private or gated and no token was given (set HF_TOKEN)"
      : "the token was refused or the repo does not exist";
    return new HubAuthError(
      ctx.repo,
      status,
      url,
      `Cannot read ${path} from ${ctx.label} as ${why}: HTTP ${status}${code ? ` ${code}` : ""}`,
    );
  }
  if (status === 404) {
    const why = code === "RevisionNotFound"
      ? `the Hub no longer has commit ${ctx.commit} (history rewritten?)`
      : code === "RepoNotFound"
      ? "the repo does not exist"
      : "the file does not exist at this commit";
    return new HubNotFoundError(
      ctx.repo,
      code === "RevisionNotFound" || code === "RepoNotFound" ? null : path,
      status,
      url,
      `Cannot read ${path} from ${ctx.label} as ${why}: HTTP 404${code ? ` ${code}` : ""}`,
    );
  }
  return new HubReadError(
    path,
    url,
    status,
    1,
    `Cannot read ${path} from ${ctx.label} as the server answered HTTP ${status}`,
  );
}

/**
 * Finds where a file's bytes are served from, once per file: a `HEAD` on
 * `/{repo}/resolve/{commit}/{path}` without following redirects. Small files answer 200 on the
 * Hub itself; large (LFS/Xet) files answer 302 to a signed CDN URL, with the real size and ETag in
 * `X-Linked-Size` / `X-Linked-Etag`. Range requests then go straight to that URL, so a model of
 * thousands of parts costs one "resolver" request per file, not per part (the Hub rate-limits
 * resolver requests). An expired CDN URL is resolved again, and the file must still have the same
 * ETag and size.
 *
 * @module
 */
import {
  authHeaders,
  errorForStatus,
  type HubContext,
  IDENTITY,
  resolveUrl,
} from "./hub_context.ts";
import { HubFileChangedError, HubReadError } from "./hub_errors.ts";
import { TransientError } from "./retry.ts";
import { StallWatchdog } from "./stall_watchdog.ts";

/** Where to range-read a file. */
export interface FileLocation {
  readonly path: string;
  /** Resolve URL on the Hub, or the CDN URL it redirected to (may carry a signature). */
  readonly url: string;
  /** The Hub's resolve URL, for messages. */
  readonly resolveUrl: string;
  readonly size: number;
  /** ETag of the file as the Hub reports it (LFS: its sha256), or null. */
  readonly etag: string | null;
}

/** Same-origin redirects (renamed repos) followed before giving up. */
const MAX_HOPS = 5;
/** Probes end by the stall timeout, not by a caller's abort. */
const NEVER = new AbortController().signal;

/** Resolves and caches file locations of one pinned commit. */
export class HubFileLocator {
  readonly #ctx: HubContext;
  readonly #cache = new Map<string, Promise<FileLocation>>();
  /** First ETag and size seen per file; later answers must match. */
  readonly #first = new Map<string, { etag: string | null; size: number }>();
  /** First ETag seen on a data response per file (a CDN's ETag can differ from the Hub's). */
  readonly #dataEtag = new Map<string, string>();

  constructor(ctx: HubContext) {
    this.#ctx = ctx;
  }

  /**
   * The location of `path`, resolving it on first use. The probe is shared by every caller (of
   * every stream), so it is not tied to one caller's signal; only the wait is.
   */
  locate(path: string, signal: AbortSignal): Promise<FileLocation> {
    let found = this.#cache.get(path);
    if (found === undefined) {
      found = this.#resolve(path, NEVER);
      this.#cache.set(path, found);
      found.catch(() => this.#cache.delete(path));
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    const pending = found;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  /** Forgets a stale location (expired CDN signature) so the next read resolves again. */
  invalidate(location: FileLocation): void {
    void this.#cache.get(location.path)?.then((current) => {
      if (current === location) this.#cache.delete(location.path);
    }, () => {});
  }

  /**
   * Checks a data response's ETag against the first one seen for the file.
   * @throws {HubFileChangedError} when it differs.
   */
  checkDataEtag(location: FileLocation, etag: string | null): void {
    if (etag === null) return;
    const first = this.#dataEtag.get(location.path);
    if (first === undefined) this.#dataEtag.set(location.path, etag);
    else if (first !== etag) {
      throw new HubFileChangedError(
        location.path,
        location.resolveUrl,
        first,
        etag,
        `Cannot read ${location.path} from ${this.#ctx.label} as the file changed while reading: ETag ${first} became ${etag}`,
      );
    }
  }

  async #resolve(path: string, signal: AbortSignal): Promise<FileLocation> {
    const ctx = this.#ctx;
    const first = resolveUrl(ctx, path);
    let url = first;
    for (let hop = 0; hop <= MAX_HOPS; hop++) {
      const response = await this.#head(path, url, signal);
      const headers = response.headers;
      const status = response.status;
      const commit = headers.get("X-Repo-Commit");
      if (commit !== null && commit !== ctx.commit) {
        throw new HubFileChangedError(
          path,
          first,
          ctx.commit,
          commit,
          `Cannot read ${path} from ${ctx.label} as the Hub served commit ${commit} instead of the pinned one`,
        );
      }
      const linkedSize = headers.get("X-Linked-Size");
      const etag = headers.get("X-Linked-Etag") ?? headers.get("ETag");
      if (status >= 200 && status < 300) {
        return this.#remember(path, first, url, linkedSize ?? headers.get("Content-Length"), etag);
      }
      if (status >= 300 && status < 400) {
        const location = headers.get("Location");
        if (location === null) break;
        const target = new URL(location, url).href;
        const sameOrigin = new URL(target).origin === new URL(ctx.endpoint).origin;
        // A redirect that carries the file's size is the CDN; a bare same-origin one is a rename.
        if (linkedSize !== null || !sameOrigin) {
          return this.#remember(path, first, target, linkedSize, etag);
        }
        url = target;
        continue;
      }
      throw errorForStatus(ctx, path, response, first);
    }
    throw new HubReadError(
      path,
      first,
      null,
      1,
      `Cannot resolve ${path} of ${ctx.label} as the Hub answered with more than ${MAX_HOPS} redirects or a redirect without Location`,
    );
  }

  async #head(path: string, url: string, signal: AbortSignal): Promise<Response> {
    const ctx = this.#ctx;
    using watchdog = new StallWatchdog(signal, ctx.limits.stallTimeoutMs);
    ctx.counters.requests++;
    try {
      const response = await ctx.fetch(url, {
        method: "HEAD",
        redirect: "manual",
        headers: { ...IDENTITY, ...authHeaders(ctx, url) },
        signal: watchdog.signal,
      });
      await response.body?.cancel();
      return response;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      const why = watchdog.stalled
        ? `no answer for ${ctx.limits.stallTimeoutMs} ms`
        : `network error (${error instanceof Error ? error.message : String(error)})`;
      throw new TransientError(`Cannot resolve ${path}: ${why}`, {}, { cause: error });
    }
  }

  #remember(
    path: string,
    resolve: string,
    url: string,
    sizeText: string | null,
    etag: string | null,
  ): FileLocation {
    const size = Number(sizeText ?? NaN);
    if (sizeText === null || !Number.isSafeInteger(size) || size < 0) {
      throw new HubReadError(
        path,
        resolve,
        null,
        1,
        `Cannot resolve ${path} of ${this.#ctx.label} as the Hub gave no valid size: ${sizeText}`,
      );
    }
    const first = this.#first.get(path);
    if (first === undefined) this.#first.set(path, { etag, size });
    else if (first.etag !== etag || first.size !== size) {
      const was = `${first.etag} (${first.size} bytes)`;
      const now = `${etag} (${size} bytes)`;
      throw new HubFileChangedError(
        path,
        resolve,
        was,
        now,
        `Cannot read ${path} from ${this.#ctx.label} as the file changed while reading: ${was} became ${now}`,
      );
    }
    return { path, url, resolveUrl: resolve, size, etag };
  }
}

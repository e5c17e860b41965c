/**
 * A model repo on the Hugging Face Hub as a {@linkcode ModelSource}, read by HTTP range requests
 * without downloading whole files. The revision is resolved to a commit once and every later read
 * is pinned to it. Tensor data comes over several connections with read-ahead inside a memory
 * budget, emitted strictly in order; failures are retried with backoff and broken bodies resume
 * from the last byte received.
 *
 * Model info and the file list go through `@huggingface/hub` (`modelInfo`, `listFiles`) with our
 * own retrying `fetch`; small files and tensor data go through the range reader.
 *
 * @module
 */
import { HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import type { ByteRange, ModelSource, RangeChunk, ReadRangesOptions } from "../pipeline/source.ts";
import { HubFileLocator } from "./hub/file_locator.ts";
import type { HubContext, HubCounters, HubSourceEvent } from "./hub/hub_context.ts";
import { HubAuthError, HubNotFoundError, HubReadError } from "./hub/hub_errors.ts";
import { hubPartFetcher } from "./hub/hub_part_fetcher.ts";
import {
  emptyReadAheadStats,
  orderedReadAhead,
  type ReadAheadStats,
} from "./hub/ordered_read_ahead.ts";
import { planParts } from "./hub/range_parts.ts";
import { RateGate, retryLimits, type RetryOptions } from "./hub/retry.ts";
import { retryingFetch } from "./hub/retrying_fetch.ts";
import { type HubSpec, parseHubSpec } from "./hub_spec.ts";

export {
  HubAuthError,
  HubFileChangedError,
  HubNotFoundError,
  HubReadError,
} from "./hub/hub_errors.ts";
export type { HubRetryEvent, HubSourceEvent } from "./hub/hub_context.ts";
export type { RetryOptions } from "./hub/retry.ts";

const DEFAULT_ENDPOINT = "https://huggingface.co";
const MIB = 1 << 20;
const DEFAULT_CHUNK = 8 * MIB;
const COMMIT = /^[0-9a-f]{40}$/;

/** Options for {@linkcode HubSource.open}. */
export interface HubSourceOptions extends RetryOptions {
  /**
   * Access token for private and gated repos; null reads anonymously. Sent only to the Hub's own
   * origin, never to the CDN it redirects to, and never shown in messages.
   * @default the HF_TOKEN environment variable
   */
  token?: string | null;
  /** Hub base URL. @default the HF_ENDPOINT environment variable, else https://huggingface.co */
  endpoint?: string;
  /** Range requests in flight at once. @default 8 */
  connections?: number;
  /**
   * Most bytes one `readRanges` stream holds: downloading or downloaded and not yet taken by the
   * consumer. @default 256 MiB
   */
  maxMemory?: number;
  /** Largest range request; bigger ranges are split so they download in parallel. @default 16 MiB */
  partSize?: number;
  /** Ranges of one file at most this far apart share a request. @default 64 KiB */
  coalesceGap?: number;
  /** The `fetch` to use (tests, proxies). @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Receives retry events (for a progress display or log). */
  onEvent?: (event: HubSourceEvent) => void;
}

/** Counters of a source, for progress displays, benchmarks and tests. */
export interface HubSourceStats extends HubCounters, ReadAheadStats {}

type _ReadSettings = Required<
  Pick<HubSourceOptions, "connections" | "maxMemory" | "partSize" | "coalesceGap">
>;

/** Reads a model repo of the Hub, pinned to one commit. */
export class HubSource implements ModelSource {
  /** `hf:owner/name@commit`. */
  readonly label: string;
  /** `owner/name`. */
  readonly repo: string;
  /** The revision asked for (default branch when absent). */
  readonly revision: string | null;
  /** The commit every read is pinned to. */
  readonly commit: string;
  readonly #ctx: HubContext;
  readonly #apiFetch: typeof fetch;
  readonly #locator: HubFileLocator;
  readonly #read: _ReadSettings;
  readonly #readAhead: ReadAheadStats = emptyReadAheadStats();
  #files: Promise<Map<string, number>> | null = null;

  private constructor(
    ctx: HubContext,
    revision: string | null,
    apiFetch: typeof fetch,
    read: _ReadSettings,
  ) {
    this.#ctx = ctx;
    this.label = ctx.label;
    this.repo = ctx.repo;
    this.commit = ctx.commit;
    this.revision = revision;
    this.#apiFetch = apiFetch;
    this.#locator = new HubFileLocator(ctx);
    this.#read = read;
  }

  /**
   * Resolves the revision of `spec` to a commit and returns a source pinned to it.
   *
   * @param spec `hf:owner/name[@revision]`, or a parsed {@linkcode HubSpec}.
   * @throws {TypeError} for a malformed spec, token or endpoint.
   * @throws {HubAuthError} for a private or gated repo without a token that has access.
   * @throws {HubNotFoundError} when the repo or revision does not exist.
   */
  static async open(spec: string | HubSpec, options: HubSourceOptions = {}): Promise<HubSource> {
    const { repo, revision } = typeof spec === "string" ? parseHubSpec(spec) : spec;
    const token = options.token === undefined ? _env("HF_TOKEN") : options.token;
    if (token !== null && !/^hf_[\x21-\x7e]+$/.test(token)) {
      throw new TypeError(
        `Cannot use the Hub token as it does not look like hf_...: ${token.length} characters`,
      );
    }
    const endpoint = _endpoint(options.endpoint ?? _env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT);
    const read = {
      connections: options.connections ?? 8,
      maxMemory: options.maxMemory ?? 256 * MIB,
      partSize: options.partSize ?? 16 * MIB,
      coalesceGap: options.coalesceGap ?? 64 << 10,
    };
    for (const [key, value] of Object.entries(read)) {
      if (!Number.isSafeInteger(value) || value < (key === "coalesceGap" ? 0 : 1)) {
        throw new RangeError(`Cannot open ${repo} as option ${key} is out of range: ${value}`);
      }
    }
    read.partSize = Math.min(read.partSize, read.maxMemory);
    const limits = retryLimits(options);
    const gate = new RateGate();
    const onEvent = _safeSink(options.onEvent, token);
    const baseFetch: typeof fetch = options.fetch ?? ((input, init) => fetch(input, init));
    const apiFetch = retryingFetch({ fetch: baseFetch, limits, gate, onEvent });
    const accessToken = token ?? undefined;
    const asked = revision ?? null;
    const label = `hf:${repo}${asked === null ? "" : `@${asked}`}`;
    let commit: unknown;
    try {
      const info = await modelInfo({
        name: repo,
        ...(revision === undefined ? {} : { revision }),
        additionalFields: ["sha"],
        hubUrl: endpoint,
        fetch: apiFetch,
        ...(accessToken === undefined ? {} : { accessToken }),
      });
      commit = info.sha;
    } catch (error) {
      throw _scrub(_apiError(error, repo, label, null, token), token);
    }
    if (typeof commit !== "string" || !COMMIT.test(commit)) {
      throw new HubReadError(
        "",
        `${endpoint}/api/models/${repo}`,
        null,
        1,
        `Cannot open ${label} as the Hub gave no commit for the revision: ${
          JSON.stringify(commit)
        }`,
      );
    }
    const ctx: HubContext = {
      endpoint,
      repo,
      commit,
      label: `hf:${repo}@${commit}`,
      token,
      fetch: baseFetch,
      limits,
      gate,
      counters: { requests: 0, retries: 0, bytesReceived: 0 },
      onEvent,
    };
    return new HubSource(ctx, asked, apiFetch, read);
  }

  /** Request and memory counters so far (a snapshot). */
  get stats(): HubSourceStats {
    return { ...this.#ctx.counters, ...this.#readAhead };
  }

  /** Every file of the repo at the pinned commit (one listing, cached). */
  async list(): Promise<string[]> {
    return [...(await this.#fileSizes()).keys()];
  }

  /**
   * A whole small file at the pinned commit, or null when the repo has no such file.
   * @throws {HubAuthError} when access is refused.
   */
  async readFile(path: string): Promise<Uint8Array | null> {
    // Through the range reader, so small files get the same resume, retries and checks as shards.
    const size = (await this.#fileSizes()).get(path);
    if (size === undefined) return null;
    const out = new Uint8Array(size);
    for await (const piece of this.readRanges([{ path, start: 0, end: size }])) {
      out.set(piece.bytes, piece.offset);
    }
    return out;
  }

  /**
   * The size of a file in bytes, from the listing.
   * @throws {HubNotFoundError} when the file does not exist at the pinned commit.
   */
  async size(path: string): Promise<number> {
    const size = (await this.#fileSizes()).get(path);
    if (size === undefined) {
      throw new HubNotFoundError(
        this.repo,
        path,
        404,
        `${this.#ctx.endpoint}/${this.repo}/tree/${this.commit}`,
        `Cannot get the size of ${path} as ${this.label} has no such file`,
      );
    }
    return size;
  }

  /**
   * Streams `ranges` in order over several connections, within the memory budget. Empty ranges
   * yield no piece.
   *
   * @throws {RangeError} (from the stream) for a range outside its file.
   */
  readRanges(
    ranges: readonly ByteRange[],
    options: ReadRangesOptions = {},
  ): ReadableStream<RangeChunk> {
    const { connections, maxMemory, partSize, coalesceGap } = this.#read;
    const parts = planParts(ranges, { partSize, coalesceGap });
    const token = this.#ctx.token;
    const inner = orderedReadAhead(parts, hubPartFetcher(this.#ctx, this.#locator), {
      connections,
      maxMemory,
      chunkSize: options.chunkSize ?? DEFAULT_CHUNK,
      stats: this.#readAhead,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    if (token === null) return inner;
    const reader = inner.getReader();
    return new ReadableStream<RangeChunk>({
      async pull(controller) {
        try {
          const next = await reader.read();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        } catch (error) {
          throw _scrub(error, token);
        }
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  #fileSizes(): Promise<Map<string, number>> {
    if (this.#files === null) {
      this.#files = this.#listFiles();
      this.#files.catch(() => (this.#files = null));
    }
    return this.#files;
  }

  async #listFiles(): Promise<Map<string, number>> {
    const ctx = this.#ctx;
    const token = ctx.token ?? undefined;
    const sizes = new Map<string, number>();
    try {
      for await (
        const entry of listFiles({
          repo: ctx.repo,
          revision: ctx.commit,
          recursive: true,
          hubUrl: ctx.endpoint,
          fetch: this.#apiFetch,
          ...(token === undefined ? {} : { accessToken: token }),
        })
      ) {
        if (entry.type === "file") sizes.set(entry.path, entry.lfs?.size ?? entry.size);
      }
    } catch (error) {
      throw _scrub(_apiError(error, ctx.repo, ctx.label, null, ctx.token), ctx.token);
    }
    return sizes;
  }
}

/** Same as {@linkcode HubSource.open}. */
export function openHubSource(
  spec: string | HubSpec,
  options?: HubSourceOptions,
): Promise<HubSource> {
  return HubSource.open(spec, options);
}

function _env(name: string): string | null {
  try {
    return Deno.env.get(name) || null;
  } catch {
    return null; // no --allow-env
  }
}

function _endpoint(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`Cannot use the Hub endpoint as it is not a URL: ${JSON.stringify(text)}`);
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.search) {
    throw new TypeError(
      `Cannot use the Hub endpoint as it is not a plain http(s) URL: ${url.origin}`,
    );
  }
  return url.href.replace(/\/+$/, "");
}

/** Maps an error of `@huggingface/hub` to ours; others pass through. */
function _apiError(
  error: unknown,
  repo: string,
  label: string,
  path: string | null,
  token: string | null,
): unknown {
  if (!(error instanceof HubApiError)) return error;
  const what = path === null ? label : `${path} from ${label}`;
  const status = error.statusCode;
  const options = { cause: error };
  if (status === 401 || status === 403) {
    const why = status === 403
      ? "the token has no access to this gated or private repo (request access on the Hub)"
      : token === null
      ? "the repo is private or gated, or does not exist, and no token was given (set HF_TOKEN)"
      : "the token was refused or the repo does not exist";
    return new HubAuthError(
      repo,
      status,
      error.url,
      `Cannot read ${what} as ${why}: HTTP ${status}`,
      options,
    );
  }
  if (status === 404) {
    return new HubNotFoundError(
      repo,
      path,
      status,
      error.url,
      `Cannot read ${what} as the repo, revision or file does not exist: ${error.message}`,
      options,
    );
  }
  return new HubReadError(
    path ?? "",
    error.url,
    status,
    1,
    `Cannot read ${what} as the Hub answered HTTP ${status}: ${error.message}`,
    options,
  );
}

/** Replaces the token wherever it might appear in an error, its causes and stacks. */
function _scrub(error: unknown, token: string | null): unknown {
  if (token === null) return error;
  const seen = new Set<unknown>();
  for (let e: unknown = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (e.message.includes(token)) e.message = e.message.replaceAll(token, "hf_***");
    if (e.stack?.includes(token)) e.stack = e.stack.replaceAll(token, "hf_***");
    // Fields such as HubApiError.data hold the server's answer.
    const fields = e as unknown as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      const value = fields[key];
      if (key === "cause" || value === null || value === undefined) continue;
      try {
        const text = JSON.stringify(value);
        if (text?.includes(token)) fields[key] = JSON.parse(text.replaceAll(token, "hf_***"));
      } catch {
        fields[key] = "(removed: could not check it for the token)";
      }
    }
  }
  return error;
}

/** Events without the token, whatever a server put in a reason. */
function _safeSink(
  sink: ((event: HubSourceEvent) => void) | undefined,
  token: string | null,
): (event: HubSourceEvent) => void {
  if (sink === undefined) return () => {};
  if (token === null) return sink;
  return (event) => sink({ ...event, reason: event.reason.replaceAll(token, "hf_***") });
}

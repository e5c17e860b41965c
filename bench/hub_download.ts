/**
 * The anchor for Hub benchmarks: a plain parallel ranged download of one file, the way a download
 * accelerator does it (fixed parts, N connections, no retries, no ordering, bytes dropped). A
 * conversion streamed from the Hub is compared against the time this takes for the same bytes.
 *
 * @module
 */

/** Options for {@linkcode plainParallelDownload}. */
export interface PlainDownloadOptions {
  /** Bytes per range request. @default 16 MiB */
  partSize?: number;
  /** Extra request headers, e.g. `Authorization` (sent on every request, as naive clients do). */
  headers?: Record<string, string>;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Sees every received piece (e.g. to hash it); the bytes are dropped afterwards. */
  onBytes?: (offset: number, bytes: Uint8Array) => void;
}

/** What {@linkcode plainParallelDownload} did. */
export interface PlainDownloadResult {
  readonly bytes: number;
  readonly requests: number;
  readonly seconds: number;
  /** Bytes per second. */
  readonly throughput: number;
}

/**
 * Downloads bytes `[0, size)` of `url` with `connections` parallel range requests. The first
 * request follows redirects and the final URL is reused for the others.
 *
 * @throws {Error} on any failed request or a body of the wrong length; there are no retries.
 */
export async function plainParallelDownload(
  url: string,
  size: number,
  connections: number,
  options: PlainDownloadOptions = {},
): Promise<PlainDownloadResult> {
  const partSize = options.partSize ?? 16 << 20;
  const doFetch = options.fetch ?? globalThis.fetch;
  if (!Number.isSafeInteger(size) || size < 0 || !(connections >= 1) || !(partSize >= 1)) {
    throw new RangeError(
      `Cannot download as size, connections or partSize is out of range: ${size}, ${connections}, ${partSize}`,
    );
  }
  const started = performance.now();
  let target = url;
  let next = 0;
  let requests = 0;
  let received = 0;
  const part = async (start: number): Promise<void> => {
    const end = Math.min(size, start + partSize);
    requests++;
    const response = await doFetch(target, {
      headers: { ...options.headers, Range: `bytes=${start}-${end - 1}` },
    });
    if (response.status !== 206 || response.body === null) {
      await response.body?.cancel();
      throw new Error(
        `Cannot download ${url} bytes ${start}..${end} as the server answered HTTP ${response.status}`,
      );
    }
    if (response.redirected) target = response.url;
    let at = start;
    for await (const bytes of response.body) {
      options.onBytes?.(at, bytes);
      at += bytes.length;
    }
    if (at !== end) {
      throw new Error(
        `Cannot download ${url} bytes ${start}..${end} as ${at - start} bytes arrived`,
      );
    }
    received += end - start;
  };
  if (size > 0) {
    // The first part finds the final (CDN) URL, then all connections share it.
    await part(0);
    next = Math.min(size, partSize);
    let failed = false;
    const worker = async () => {
      while (!failed && next < size) {
        const start = next;
        next += partSize;
        await part(start).catch((error) => {
          failed = true; // stop the other workers after their current part
          throw error;
        });
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
  }
  const seconds = (performance.now() - started) / 1000;
  return { bytes: received, requests, seconds, throughput: seconds > 0 ? received / seconds : 0 };
}

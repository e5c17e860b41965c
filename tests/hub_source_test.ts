import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import type { ByteRange, RangeChunk } from "../pipeline/source.ts";
import {
  HubAuthError,
  HubFileChangedError,
  HubReadError,
  HubSource,
  type HubSourceEvent,
  type HubSourceOptions,
} from "../stages/hub_source.ts";
import { parseHubSpec } from "../stages/hub_spec.ts";
import { planParts } from "../stages/hub/range_parts.ts";
import { backoffDelay, parseRetryAfter } from "../stages/hub/retry.ts";
import { plainParallelDownload } from "../bench/hub_download.ts";
import {
  type HubFaultRule,
  HubTestServer,
  type HubTestServerOptions,
} from "../testing/hub_server.ts";
import { SeededRandom } from "../testing/seeded_random.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const TOKEN = "hf_testTokenThatMustNeverLeak123";
const OTHER_TOKEN = "hf_someoneElsesToken456";
const SHARD1 = "model-00001-of-00002.safetensors";
const SHARD2 = "model-00002-of-00002.safetensors";

/** A safetensors file: 8-byte length, JSON header padded to 8, then seeded random tensor bytes. */
function _shard(seed: number, tensorSizes: number[]): { bytes: Uint8Array; headerLength: number } {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  tensorSizes.forEach((size, i) => {
    header[`t${i}`] = { dtype: "U8", shape: [size], data_offsets: [offset, offset + size] };
    offset += size;
  });
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const bytes = new Uint8Array(8 + json.length + offset);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(new TextEncoder().encode(json), 8);
  const random = new SeededRandom(seed, "shard");
  for (let i = 8 + json.length; i < bytes.length; i++) bytes[i] = random.uint32() & 0xff;
  return { bytes, headerLength: json.length };
}

interface _Fixture {
  dir: string;
  dir2: string;
  files: Map<string, Uint8Array>;
  files2: Map<string, Uint8Array>;
  headerLength: number;
}

let _fixture: Promise<_Fixture> | null = null;

/** Two commits' worth of model folders, made once per test run. */
function fixture(): Promise<_Fixture> {
  _fixture ??= (async () => {
    const make = async (seed: number) => {
      const dir = await Deno.makeTempDir({ prefix: "sluice_hub_test_" });
      const shard1 = _shard(seed, [700 * KIB, 1500 * KIB, 1, 900 * KIB]);
      const shard2 = _shard(seed + 1, [600 * KIB, 650 * KIB]);
      const files = new Map<string, Uint8Array>([
        ["config.json", new TextEncoder().encode(JSON.stringify({ seed, model_type: "llama" }))],
        ["tokenizer.json", new TextEncoder().encode(`{"version":"1.0","seed":${seed}}`)],
        [SHARD1, shard1.bytes],
        [SHARD2, shard2.bytes],
        ["extra/notes.txt", new TextEncoder().encode("nested file")],
      ]);
      await Deno.mkdir(`${dir}/extra`);
      for (const [path, bytes] of files) await Deno.writeFile(`${dir}/${path}`, bytes);
      return { dir, files, headerLength: shard1.headerLength };
    };
    const first = await make(11);
    const second = await make(22);
    globalThis.addEventListener("unload", () => {
      Deno.removeSync(first.dir, { recursive: true });
      Deno.removeSync(second.dir, { recursive: true });
    });
    return { ...first, dir2: second.dir, files2: second.files };
  })();
  return _fixture;
}

/** Ranges in converter order: across both shards, unaligned, one split-size, one byte, one empty. */
function ranges(files: Map<string, Uint8Array>): ByteRange[] {
  const n1 = files.get(SHARD1)!.length;
  const n2 = files.get(SHARD2)!.length;
  return [
    { path: SHARD1, start: 0, end: 8 },
    { path: SHARD1, start: 1000, end: 500_000 },
    { path: SHARD1, start: 500_000, end: 2_100_000 },
    { path: SHARD1, start: 2_100_000, end: 2_100_001 },
    { path: SHARD2, start: 0, end: 300_000 },
    { path: SHARD1, start: 2_100_001, end: 2_100_001 },
    { path: SHARD1, start: 2_200_000, end: n1 },
    { path: SHARD2, start: 300_003, end: n2 },
    { path: "config.json", start: 2, end: 12 },
  ];
}

const FAST: HubSourceOptions = {
  token: null,
  connections: 4,
  partSize: 256 * KIB,
  maxMemory: 2 * MIB,
  minDelayMs: 5,
  maxDelayMs: 100,
  stallTimeoutMs: 300,
  retries: 4,
  retryTimeoutMs: 10_000,
};

/** Reads a whole range stream, checking order, and returns each range's bytes. */
async function collect(
  stream: ReadableStream<RangeChunk>,
  list: readonly ByteRange[],
  onChunk?: (chunk: RangeChunk) => Promise<void>,
): Promise<Uint8Array[]> {
  const out = list.map((r) => new Uint8Array(r.end - r.start));
  const filled = list.map(() => 0);
  let last = 0;
  for await (const chunk of stream) {
    ok(chunk.rangeIndex >= last, `range ${chunk.rangeIndex} after ${last}`);
    for (let i = last + 1; i < chunk.rangeIndex; i++) strictEqual(filled[i], out[i]!.length);
    last = chunk.rangeIndex;
    strictEqual(chunk.offset, filled[chunk.rangeIndex], `offset in range ${chunk.rangeIndex}`);
    out[chunk.rangeIndex]!.set(chunk.bytes, chunk.offset);
    filled[chunk.rangeIndex]! += chunk.bytes.length;
    await onChunk?.(chunk);
  }
  deepStrictEqual(filled, out.map((b) => b.length));
  return out;
}

function expected(files: Map<string, Uint8Array>, list: readonly ByteRange[]): Uint8Array[] {
  return list.map((r) => files.get(r.path)!.slice(r.start, r.end));
}

/** Compares byte arrays without printing megabytes on failure. */
function assertSameBytes(actual: Uint8Array[], wanted: Uint8Array[]): void {
  strictEqual(actual.length, wanted.length);
  actual.forEach((bytes, i) => {
    const want = wanted[i]!;
    strictEqual(bytes.length, want.length, `length of range ${i}`);
    const bad = bytes.findIndex((b, j) => b !== want[j]);
    strictEqual(bad, -1, `range ${i} differs first at byte ${bad}`);
  });
}

async function withHub(
  body: (hub: HubTestServer, fx: _Fixture, commit: string) => Promise<void>,
  options: HubTestServerOptions = {},
): Promise<void> {
  const fx = await fixture();
  const hub = HubTestServer.start(options);
  try {
    const commit = await hub.addRepo("acme/tiny", fx.dir);
    await body(hub, fx, commit);
  } finally {
    await hub.close();
  }
}

function open(
  hub: HubTestServer,
  extra: HubSourceOptions = {},
  spec = "hf:acme/tiny",
): Promise<HubSource> {
  return HubSource.open(spec, { ...FAST, endpoint: hub.endpoint, ...extra });
}

Deno.test("parseHubSpec() reads owner, name and revision and refuses malformed specs", () => {
  deepStrictEqual(parseHubSpec("hf:acme/tiny"), { repo: "acme/tiny" });
  deepStrictEqual(parseHubSpec("hf:acme/tiny@main"), { repo: "acme/tiny", revision: "main" });
  deepStrictEqual(parseHubSpec("hf:acme/tiny@refs/pr/3"), {
    repo: "acme/tiny",
    revision: "refs/pr/3",
  });
  deepStrictEqual(parseHubSpec("hf:a-b/c.d_e@v1.0"), { repo: "a-b/c.d_e", revision: "v1.0" });
  throws(() => parseHubSpec("acme/tiny"), {
    name: "TypeError",
    message: 'Cannot parse Hub model as it lacks the hf: prefix: "acme/tiny"',
  });
  throws(() => parseHubSpec("hf:tiny"), {
    name: "TypeError",
    message: 'Cannot parse Hub model as it must look like hf:owner/name[@revision]: "hf:tiny"',
  });
  throws(() => parseHubSpec("hf:acme/tiny@"), TypeError);
  throws(() => parseHubSpec("hf:acme/ti--ny"), TypeError);
  throws(() => parseHubSpec("hf:acme/-tiny"), TypeError);
  throws(() => parseHubSpec("hf:acme/tiny/extra"), TypeError);
});

Deno.test("planParts() shares a request between neighbours and splits big ranges", () => {
  const parts = planParts([
    { path: "a", start: 0, end: 10 },
    { path: "a", start: 10, end: 20 },
    { path: "a", start: 25, end: 30 }, // gap of 5: still shared
    { path: "b", start: 30, end: 40 }, // other file
    { path: "b", start: 100, end: 200 }, // gap of 60: new part, split at 64 bytes
    { path: "b", start: 5, end: 5 }, // empty: nothing
  ], { partSize: 64, coalesceGap: 8 });
  deepStrictEqual(parts.map((p) => [p.path, p.start, p.end, p.slices.map((s) => s.rangeIndex)]), [
    ["a", 0, 30, [0, 1, 2]],
    ["b", 30, 40, [3]],
    ["b", 100, 164, [4]],
    ["b", 164, 200, [4]],
  ]);
  deepStrictEqual(parts[3]!.slices[0], {
    rangeIndex: 4,
    rangeOffset: 64,
    fileStart: 164,
    fileEnd: 200,
  });
  throws(() => planParts([{ path: "a", start: 5, end: 4 }], { partSize: 8, coalesceGap: 0 }), {
    name: "RangeError",
    message: "Cannot read range 0 as its bounds are not integers with 0 <= start <= end: a 5..4",
  });
});

Deno.test("parseRetryAfter() and backoffDelay() follow the header and double with jitter", () => {
  strictEqual(parseRetryAfter("7"), 7000);
  strictEqual(
    parseRetryAfter("Wed, 21 Oct 2015 07:28:05 GMT", Date.UTC(2015, 9, 21, 7, 28, 0)),
    5000,
  );
  strictEqual(parseRetryAfter("soon"), null);
  strictEqual(parseRetryAfter(null), null);
  const limits = { minDelayMs: 100, maxDelayMs: 1000 };
  deepStrictEqual([1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, limits, () => 1)), [
    100,
    200,
    400,
    800,
    1000,
    1000,
  ]);
  deepStrictEqual([1, 2, 3].map((n) => backoffDelay(n, limits, () => 0)), [50, 100, 200]);
});

Deno.test("HubSource lists files, sizes and small files at the pinned commit", async () => {
  await withHub(async (hub, fx, commit) => {
    const source = await open(hub, {}, "hf:acme/tiny@main");
    strictEqual(source.commit, commit);
    strictEqual(source.label, `hf:acme/tiny@${commit}`);
    deepStrictEqual((await source.list()).sort(), [...fx.files.keys()].sort());
    strictEqual(await source.size(SHARD1), fx.files.get(SHARD1)!.length);
    deepStrictEqual(await source.readFile("config.json"), fx.files.get("config.json"));
    deepStrictEqual(await source.readFile("extra/notes.txt"), fx.files.get("extra/notes.txt"));
    strictEqual(await source.readFile("missing.json"), null);
    await rejects(source.size("missing.json"), {
      name: "HubNotFoundError",
      message: `Cannot get the size of missing.json as hf:acme/tiny@${commit} has no such file`,
    });
    // Every resolve and tree request names the commit, never the branch.
    const pinned = hub.requests.filter((r) => r.kind === "resolve" || r.url.includes("/tree/"));
    ok(pinned.length > 0);
    for (const r of pinned) ok(r.url.includes(commit), r.url);
  }, { pageSize: 2 });
});

Deno.test("HubSource.readRanges() returns exactly the bytes of the files, in order", async () => {
  for (const cdn of ["separate", "same"] as const) {
    await withHub(async (hub, fx) => {
      const source = await open(hub);
      const list = ranges(fx.files);
      const chunkSize = 100 * KIB;
      const got = await collect(source.readRanges(list, { chunkSize }), list, (chunk) => {
        ok(chunk.bytes.length <= chunkSize && chunk.bytes.length > 0);
        return Promise.resolve();
      });
      assertSameBytes(got, expected(fx.files, list));
      // One resolve probe per file, then range requests on the URL it gave.
      const probes = hub.requests.filter((r) => r.method === "HEAD").map((r) => r.file).sort();
      deepStrictEqual(probes, ["config.json", SHARD1, SHARD2]);
      strictEqual(source.stats.retries, 0);
    }, { cdn });
  }
});

const FAULTS: {
  name: string;
  rules: HubFaultRule[];
  /** The bytes arrive complete despite the fault, so nothing is retried. */
  noRetry?: boolean;
  check?: (hub: HubTestServer) => void;
}[] = [
  {
    name: "a connection dropped mid-body (resumes from the last byte)",
    rules: [{
      on: "cdn",
      path: SHARD1,
      minLength: 200_000,
      skip: 1,
      times: 2,
      fault: { kind: "drop", afterBytes: 100_001 },
    }],
    check: (hub) => {
      const broken = hub.requests.filter((r) => r.kind === "cdn" && r.bytes === 100_001);
      strictEqual(broken.length, 2);
      for (const r of broken) {
        const resumeAt = _rangeStart(r.range ?? "") + 100_001;
        ok(
          hub.requests.some((q) => q.range !== null && _rangeStart(q.range) === resumeAt),
          `resumed at ${resumeAt}`,
        );
      }
    },
  },
  {
    name: "HTTP 503 answers",
    rules: [{ on: "cdn", times: 3, fault: { kind: "status", status: 503 } }],
  },
  {
    name: "HTTP 500 on the resolve probe",
    rules: [{ on: "resolve", method: "HEAD", times: 2, fault: { kind: "status", status: 500 } }],
  },
  {
    name: "HTTP 503 on the model info API",
    rules: [{ on: "api", times: 2, fault: { kind: "status", status: 503 } }],
  },
  {
    name: "a stalled body (read timeout, then resume)",
    rules: [{
      on: "cdn",
      path: SHARD2,
      minLength: 200_000,
      fault: { kind: "stall", afterBytes: 50_000, ms: 5_000 },
    }],
  },
  {
    name: "a stall before the first byte",
    rules: [{
      on: "cdn",
      path: SHARD1,
      skip: 2,
      fault: { kind: "stall", afterBytes: 0, ms: 5_000 },
    }],
  },
  {
    name: "a slow trickle (no retry needed)",
    noRetry: true,
    rules: [{ on: "cdn", fault: { kind: "trickle", bytesPerTick: 32 * KIB, tickMs: 5 } }],
  },
  {
    name: "a body that ends cleanly but short",
    rules: [{
      on: "cdn",
      minLength: 200_000,
      times: 2,
      fault: { kind: "truncate", afterBytes: 70_000 },
    }],
  },
  {
    name: "a Content-Length below the range",
    rules: [{ on: "cdn", fault: { kind: "wrongLength", delta: -1000 } }],
  },
  {
    name: "a Content-Length above the range (all bytes arrive before the error)",
    noRetry: true,
    rules: [{ on: "cdn", fault: { kind: "wrongLength", delta: 1000 } }],
  },
  {
    name: "an expired CDN link (resolves the file again)",
    rules: [{ on: "cdn", path: SHARD1, skip: 1, fault: { kind: "expired" } }],
    check: (hub) => {
      const heads = hub.requests.filter((r) => r.kind === "resolve" && r.file === SHARD1);
      strictEqual(heads.length, 2);
    },
  },
];

function _rangeStart(range: string): number {
  return Number(/^bytes=(\d+)-/.exec(range)?.[1]);
}

for (const { name, rules, noRetry, check } of FAULTS) {
  Deno.test(`HubSource.readRanges() survives ${name}`, async () => {
    await withHub(async (hub, fx) => {
      for (const rule of rules) hub.inject(rule);
      const events: HubSourceEvent[] = [];
      const source = await open(hub, { onEvent: (e) => events.push(e) });
      const list = ranges(fx.files);
      assertSameBytes(await collect(source.readRanges(list), list), expected(fx.files, list));
      ok(hub.faultHits.every((n) => n > 0), `every fault fired: ${hub.faultHits}`);
      if (noRetry) strictEqual(events.length, 0);
      else ok(events.length > 0, "retries were reported");
      check?.(hub);
    });
  });
}

Deno.test("HubSource.readRanges() reads a fetch whose bodies are not byte streams, and resumes them", async () => {
  await withHub(async (hub, fx) => {
    hub.inject({
      on: "cdn",
      path: SHARD1,
      minLength: 200_000,
      fault: { kind: "drop", afterBytes: 100_001 },
    });
    let wrapped = 0;
    // A proxy-like fetch: each body comes back as a plain stream of odd-sized chunks.
    const plainBodies: typeof fetch = async (input, init) => {
      const answer = await fetch(input, init);
      if (answer.body === null) return answer;
      const reader = answer.body.getReader();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const next = await reader.read();
          if (next.done) return controller.close();
          for (let at = 0; at < next.value.length; at += 7777) {
            controller.enqueue(next.value.slice(at, at + 7777));
          }
        },
        cancel: (reason) => reader.cancel(reason),
      });
      throws(() => body.getReader({ mode: "byob" }));
      wrapped++;
      return new Response(body, { status: answer.status, headers: answer.headers });
    };
    const events: HubSourceEvent[] = [];
    const source = await open(hub, { fetch: plainBodies, onEvent: (e) => events.push(e) });
    const list = ranges(fx.files);
    assertSameBytes(await collect(source.readRanges(list), list), expected(fx.files, list));
    ok(wrapped > 3, `${wrapped} bodies wrapped`);
    strictEqual(events.length, 1, "the dropped connection was retried");
    const broken = hub.requests.find((r) => r.kind === "cdn" && r.bytes === 100_001)!;
    const resumeAt = _rangeStart(broken.range ?? "") + 100_001;
    ok(hub.requests.some((q) => q.range !== null && _rangeStart(q.range) === resumeAt));
  });
});

Deno.test("HubSource.readRanges() waits as long as a 429 Retry-After asks, on every connection", async () => {
  await withHub(async (hub, fx) => {
    hub.inject({ on: "cdn", skip: 2, fault: { kind: "status", status: 429, retryAfter: 1 } });
    const events: (HubSourceEvent & { at: number })[] = [];
    const starts: number[] = [];
    const spy: typeof fetch = (input, init) => {
      starts.push(Date.now());
      return fetch(input, init);
    };
    // A budget big enough that read-ahead alone would not stop the other connections.
    const source = await open(hub, {
      maxMemory: 32 * MIB,
      fetch: spy,
      onEvent: (e) => events.push({ ...e, at: Date.now() }),
    });
    const list = ranges(fx.files);
    const started = Date.now();
    assertSameBytes(await collect(source.readRanges(list), list), expected(fx.files, list));
    ok(Date.now() - started >= 1000, "waited for Retry-After");
    deepStrictEqual(events.map((e) => [e.status, e.delayMs, e.reason]), [
      [429, 1000, "HTTP 429 (rate limited)"],
    ]);
    // No connection started a request while the gate was closed, though parts were left.
    const at = events[0]!.at;
    deepStrictEqual(starts.filter((t) => t > at && t < at + 950), []);
    ok(starts.filter((t) => t >= at + 950).length > 3, "most parts came after the pause");
  });
});

Deno.test("HubSource.readRanges() gives up after bounded retries with an error naming the file", async () => {
  await withHub(async (hub, fx, commit) => {
    hub.inject({
      on: "cdn",
      path: SHARD2,
      times: Infinity,
      fault: { kind: "status", status: 503 },
    });
    const source = await open(hub, { retries: 3 });
    const list = ranges(fx.files);
    const error = await collect(source.readRanges(list), list).then(() => null, (e) => e);
    ok(error instanceof HubReadError, String(error));
    strictEqual(
      error.message,
      `Cannot read ${SHARD2} from hf:acme/tiny@${commit} as 4 attempts in a row failed: HTTP 503`,
    );
    strictEqual(error.file, SHARD2);
    strictEqual(error.status, 503);
    strictEqual(error.url, `${hub.endpoint}/acme/tiny/resolve/${commit}/${SHARD2}`);
  });
});

Deno.test("HubSource.readRanges() stops with a clear error when the file changes mid-run", async () => {
  await withHub(async (hub, fx, commit) => {
    hub.inject({ on: "cdn", path: SHARD1, skip: 2, fault: { kind: "changed" } });
    const source = await open(hub);
    const list = ranges(fx.files);
    const error = await collect(source.readRanges(list), list).then(() => null, (e) => e);
    ok(error instanceof HubFileChangedError, String(error));
    const etag = /ETag ("\w+")/.exec(error.message)?.[1];
    ok(etag !== undefined);
    strictEqual(
      error.message,
      `Cannot read ${SHARD1} from hf:acme/tiny@${commit} as the file changed while reading: ETag ${etag} became ${
        etag.slice(0, 61)
      }beef"`,
    );
    strictEqual(error.file, SHARD1);
  });
});

Deno.test("HubSource.readRanges() refuses an answer from another commit", async () => {
  await withHub(async (hub, fx, commit) => {
    const other = "f".repeat(40);
    hub.inject({ on: "resolve", path: SHARD1, fault: { kind: "commit", commit: other } });
    const source = await open(hub);
    const list = ranges(fx.files);
    await rejects(collect(source.readRanges(list), list), {
      name: "HubFileChangedError",
      message:
        `Cannot read ${SHARD1} from hf:acme/tiny@${commit} as the Hub served commit ${other} instead of the pinned one`,
    });
  });
});

Deno.test("HubSource stays on its commit when the branch moves, and fails clearly once it is gone", async () => {
  await withHub(async (hub, fx, first) => {
    const source = await open(hub, {}, "hf:acme/tiny@main");
    const untouched = await open(hub, {}, "hf:acme/tiny@main");
    const list = ranges(fx.files);
    const second = await hub.commit("acme/tiny", fx.dir2, "main");
    ok(second !== first);
    assertSameBytes(await collect(source.readRanges(list), list), expected(fx.files, list));
    deepStrictEqual(await source.readFile("config.json"), fx.files.get("config.json"));
    const moved = await open(hub, {}, "hf:acme/tiny@main");
    strictEqual(moved.commit, second);
    assertSameBytes(await collect(moved.readRanges(list), list), expected(fx.files2, list));

    hub.forgetCommit("acme/tiny", first);
    await rejects(collect(untouched.readRanges(list), list), {
      name: "HubNotFoundError",
      message:
        `Cannot read ${SHARD1} from hf:acme/tiny@${first} as the Hub no longer has commit ${first} (history rewritten?): HTTP 404 RevisionNotFound`,
    });
    await rejects(open(hub, {}, `hf:acme/tiny@${first}`), { name: "HubNotFoundError" });
  });
});

Deno.test("HubSource refuses a private repo without a token and reads it with one", async () => {
  await withHub(async (hub, fx) => {
    const commit = await hub.addRepo("acme/secret", fx.dir, { private: true, tokens: [TOKEN] });
    const events: HubSourceEvent[] = [];
    await rejects(open(hub, {}, "hf:acme/secret"), (error: unknown) => {
      ok(error instanceof HubAuthError);
      strictEqual(
        error.message,
        "Cannot read hf:acme/secret as the repo is private or gated, or does not exist, and no token was given (set HF_TOKEN): HTTP 401",
      );
      strictEqual(error.status, 401);
      return true;
    });
    await rejects(open(hub, { token: OTHER_TOKEN }, "hf:acme/secret"), { name: "HubAuthError" });
    await hub.addRepo("acme/gated", fx.dir, { gated: true, tokens: [TOKEN] });
    await rejects(open(hub, {}, "hf:acme/gated"), { name: "HubAuthError", status: 401 });
    strictEqual((await open(hub, { token: TOKEN }, "hf:acme/gated")).repo, "acme/gated");
    await rejects(open(hub, { token: "not-a-token" }, "hf:acme/secret"), {
      name: "TypeError",
      message: "Cannot use the Hub token as it does not look like hf_...: 11 characters",
    });

    const source = await open(
      hub,
      { token: TOKEN, onEvent: (e) => events.push(e) },
      "hf:acme/secret",
    );
    strictEqual(source.commit, commit);
    deepStrictEqual(await source.readFile("config.json"), fx.files.get("config.json"));
    hub.inject({ on: "cdn", path: SHARD1, skip: 1, fault: { kind: "drop", afterBytes: 10_000 } });
    const list = ranges(fx.files);
    assertSameBytes(await collect(source.readRanges(list), list), expected(fx.files, list));
    // The token went to the Hub, never to the CDN origin.
    const cdn = hub.requests.filter((r) => r.server === "cdn");
    ok(cdn.length > 0);
    for (const r of cdn) strictEqual(r.authorization, null, r.url);
    ok(hub.requests.some((r) => r.server === "hub" && r.authorization === `Bearer ${TOKEN}`));
    ok(events.length > 0);
    ok(!JSON.stringify(events).includes(TOKEN));
  });
});

Deno.test("HubSource never puts the token in an error or event", async () => {
  await withHub(async (hub, fx) => {
    await hub.addRepo("acme/gated", fx.dir, { gated: true, tokens: [TOKEN] });
    await hub.addRepo("acme/other", fx.dir, { gated: true, tokens: [OTHER_TOKEN] });
    const errors: unknown[] = [];
    const events: HubSourceEvent[] = [];
    const onEvent = (e: HubSourceEvent) => events.push(e);
    // Gated repo, token without access: 403.
    const denied = await open(hub, { token: TOKEN }, "hf:acme/other").then(() => null, (e) => e);
    ok(denied instanceof HubAuthError, String(denied));
    strictEqual(denied.status, 403);
    strictEqual(
      denied.message,
      "Cannot read hf:acme/other as the token has no access to this gated or private repo (request access on the Hub): HTTP 403",
    );
    errors.push(denied);
    // Reads that fail for good, on the Hub origin and on the CDN.
    const source = await open(hub, { token: TOKEN, retries: 1, onEvent }, "hf:acme/gated");
    // A server that repeats the Authorization header in its error message.
    hub.inject({ on: "api", fault: { kind: "status", status: 400, echo: true } });
    hub.inject({
      on: "resolve",
      path: "config.json",
      fault: { kind: "status", status: 400, echo: true },
    });
    const echoed = [
      await open(hub, { token: TOKEN }, "hf:acme/gated").then(() => null, (e) => e),
      await source.readFile("config.json").then(() => null, (e) => e),
    ];
    for (const error of echoed) ok(error instanceof HubReadError, String(error));
    // The API error quotes the server's (scrubbed) text; file reads report the status.
    ok(
      echoed[0].message.includes("Bad request with Authorization: Bearer hf_***"),
      echoed[0].message,
    );
    ok(echoed[1].message.includes("HTTP 400"), echoed[1].message);
    errors.push(...echoed);
    hub.inject({ on: "cdn", times: Infinity, fault: { kind: "stall", afterBytes: 10, ms: 2000 } });
    hub.inject({ on: "data", times: Infinity, fault: { kind: "status", status: 502 } });
    hub.inject({
      on: "resolve",
      path: "config.json",
      times: Infinity,
      fault: { kind: "status", status: 500 },
    });
    const list = ranges(fx.files);
    errors.push(await collect(source.readRanges(list), list).then(() => null, (e) => e));
    errors.push(await source.readFile("config.json").then(() => null, (e) => e));
    errors.push(
      await open(hub, { token: TOKEN, retries: 0 }, "hf:acme/nope").then(() => null, (e) => e),
    );
    for (const error of errors) {
      ok(error instanceof Error, String(error));
      const text = `${Deno.inspect(error, { depth: 10 })} ${error.stack} ${JSON.stringify(error)}`;
      ok(!text.includes(TOKEN), `token in ${text}`);
      ok(!text.includes(TOKEN.slice(3)), `token body in ${text}`);
    }
    ok(events.length > 0);
    ok(!JSON.stringify(events).includes(TOKEN.slice(3)));
  });
});

Deno.test("HubSource.readRanges() keeps buffered bytes within maxMemory while reading ahead", async () => {
  await withHub(async (hub, fx) => {
    const maxMemory = 1 * MIB;
    const source = await open(hub, { maxMemory, partSize: 128 * KIB, connections: 8 });
    const list = ranges(fx.files);
    const got = await collect(
      source.readRanges(list, { chunkSize: 64 * KIB }),
      list,
      () => new Promise((resolve) => setTimeout(resolve, 2)),
    );
    assertSameBytes(got, expected(fx.files, list));
    const stats = source.stats;
    ok(stats.maxReservedBytes <= maxMemory, `reserved ${stats.maxReservedBytes}`);
    ok(stats.maxBufferedBytes <= maxMemory, `buffered ${stats.maxBufferedBytes}`);
    // With a slow consumer the read-ahead fills most of the budget: parallelism happened.
    ok(stats.maxReservedBytes >= maxMemory / 2, `reserved only ${stats.maxReservedBytes}`);
    ok(stats.maxBufferedBytes > 256 * KIB, `buffered only ${stats.maxBufferedBytes}`);
    strictEqual(stats.bufferedBytes, 0);
    strictEqual(stats.reservedBytes, 0);
  });
});

Deno.test("HubSource reads a safetensors header with small range requests only", async () => {
  await withHub(async (hub, fx) => {
    const source = await open(hub);
    const size = await source.size(SHARD1);
    const before = hub.requests.length;
    const [prefix] = await collect(source.readRanges([{ path: SHARD1, start: 0, end: 8 }]), [
      { path: SHARD1, start: 0, end: 8 },
    ]);
    const n = Number(new DataView(prefix!.buffer).getBigUint64(0, true));
    strictEqual(n, fx.headerLength);
    const json = [{ path: SHARD1, start: 8, end: 8 + n }];
    const [header] = await collect(source.readRanges(json), json);
    ok(JSON.parse(new TextDecoder().decode(header)).t3);
    const made = hub.requests.slice(before);
    deepStrictEqual(made.map((r) => [r.method, r.kind, r.range]), [
      ["HEAD", "resolve", null],
      ["GET", "cdn", "bytes=0-7"],
      ["GET", "cdn", `bytes=8-${7 + n}`],
    ]);
    ok(made.reduce((sum, r) => sum + r.bytes, 0) === 8 + n && 8 + n < size / 100);
  });
});

Deno.test("HubSource.readRanges() stops downloading when cancelled or aborted", async () => {
  await withHub(async (hub, fx) => {
    const source = await open(hub, { connections: 2 });
    const list = ranges(fx.files);
    const reader = source.readRanges(list).getReader();
    await reader.read();
    await reader.cancel();
    // Two streams wait on the same first probe of a file; cancelling one leaves the other whole.
    const fresh = await open(hub);
    const one = [{ path: SHARD2, start: 0, end: 1000 }];
    const first = fresh.readRanges(one);
    const second = collect(fresh.readRanges(one), one);
    await first.cancel();
    assertSameBytes(await second, expected(fx.files, one));
    const controller = new AbortController();
    const stream = source.readRanges(list, { signal: controller.signal });
    const reason = new Error("stop");
    await rejects(collect(stream, list, () => Promise.resolve(controller.abort(reason))), reason);
    const total = [...fx.files.values()].reduce((s, b) => s + b.length, 0);
    ok(source.stats.bytesReceived < total, `downloaded ${source.stats.bytesReceived}`);
  });
});

Deno.test("plainParallelDownload() fetches a file through the redirect in parallel ranges", async () => {
  await withHub(async (hub, fx, commit) => {
    const shard = fx.files.get(SHARD1)!;
    const copy = new Uint8Array(shard.length);
    const result = await plainParallelDownload(
      `${hub.endpoint}/acme/tiny/resolve/${commit}/${SHARD1}`,
      shard.length,
      4,
      { partSize: 512 * KIB, onBytes: (offset, bytes) => copy.set(bytes, offset) },
    );
    strictEqual(result.bytes, shard.length);
    strictEqual(result.requests, Math.ceil(shard.length / (512 * KIB)));
    assertSameBytes([copy], [shard]);
  });
});

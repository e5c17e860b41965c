/**
 * Converting straight from a Hub: against the loopback Hub server, with every kind of fault
 * injected, the GGUF is byte-identical to converting the same model from its local folder; a
 * private repo without a token fails cleanly; `inspect` reads headers only.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { convert, HubAuthError, inspectCheckpoint } from "../mod.ts";
import { type HubFaultRule, HubTestServer } from "../testing/hub_server.ts";
import { generateModel } from "../testing/synthetic_model.ts";

const TOKEN = "hf_sluice_test_token_0123456789";
/** Fast retries so fault tests take milliseconds, not the production seconds. */
const FAST = { minDelayMs: 5, maxDelayMs: 50, stallTimeoutMs: 300 };

async function setup() {
  const work = await Deno.makeTempDir({ prefix: "sluice-hubconv-" });
  const dir = `${work}/model`;
  await generateModel(dir, { arch: "llama", seed: 11, dtype: "BF16", maxShardBytes: 120_000 });
  const local = `${work}/local.gguf`;
  await convert({
    input: dir,
    output: local,
    type: "q8_0",
    tokenizerPre: "llama-bpe",
    name: "tiny",
  });
  const hub = HubTestServer.start({ lfsThreshold: 1000 });
  await hub.addRepo("acme/tiny", dir);
  await hub.addRepo("acme/secret", dir, { private: true, tokens: [TOKEN] });
  return {
    work,
    hub,
    expected: await Deno.readFile(local),
    async [Symbol.asyncDispose]() {
      await hub.close();
      await Deno.remove(work, { recursive: true });
    },
  };
}

const FAULTS: [string, HubFaultRule][] = [
  ["dropped connection", {
    on: "cdn",
    minLength: 20_000,
    skip: 1,
    fault: { kind: "drop", afterBytes: 5_000 },
  }],
  ["429 with Retry-After", {
    on: "cdn",
    skip: 1,
    fault: { kind: "status", status: 429, retryAfter: 1 },
  }],
  ["503", { on: "cdn", minLength: 20_000, skip: 2, fault: { kind: "status", status: 503 } }],
  ["stall", {
    on: "cdn",
    minLength: 20_000,
    skip: 1,
    fault: { kind: "stall", afterBytes: 1_000, ms: 2_000 },
  }],
  ["slow trickle", {
    on: "cdn",
    skip: 1,
    fault: { kind: "trickle", bytesPerTick: 4_096, tickMs: 1 },
  }],
  ["truncated body", {
    on: "cdn",
    minLength: 20_000,
    skip: 1,
    fault: { kind: "truncate", afterBytes: 3_000 },
  }],
  ["wrong Content-Length", {
    on: "cdn",
    minLength: 20_000,
    skip: 1,
    fault: { kind: "wrongLength", delta: -100 },
  }],
  ["expired CDN link", { on: "cdn", minLength: 20_000, skip: 2, fault: { kind: "expired" } }],
];

for (const [name, rule] of FAULTS) {
  Deno.test(`convert(hf:) survives a ${name} with byte-identical output`, async () => {
    await using fx = await setup();
    fx.hub.inject(rule);
    const out = `${fx.work}/hub.gguf`;
    await convert({
      input: "hf:acme/tiny",
      output: out,
      type: "q8_0",
      tokenizerPre: "llama-bpe",
      name: "tiny",
      hub: { endpoint: fx.hub.endpoint, token: null, connections: 4, ...FAST },
    });
    assert(fx.hub.faultHits.every((n) => n > 0), `fault ${name} was injected`);
    assertEquals(await Deno.readFile(out), fx.expected);
  });
}

Deno.test("convert(hf:) of a private repo without a token fails cleanly, with it succeeds", async () => {
  await using fx = await setup();
  const out = `${fx.work}/secret.gguf`;
  await assertRejects(
    () =>
      convert({
        input: "hf:acme/secret",
        output: out,
        tokenizerPre: "llama-bpe",
        name: "tiny",
        hub: { endpoint: fx.hub.endpoint, token: null, ...FAST },
      }),
    HubAuthError,
  );
  assert(!(await Deno.stat(out).then(() => true, () => false)), "no output");
  assert(!(await Deno.stat(`${out}.partial`).then(() => true, () => false)), "no partial");
  await convert({
    input: "hf:acme/secret",
    output: out,
    type: "q8_0",
    tokenizerPre: "llama-bpe",
    name: "tiny",
    hub: { endpoint: fx.hub.endpoint, token: TOKEN, ...FAST },
  });
  assertEquals(await Deno.readFile(out), fx.expected);
});

Deno.test("inspect(hf:) reads only headers and small files, quickly", async () => {
  await using fx = await setup();
  const t0 = performance.now();
  const report = await inspectCheckpoint("hf:acme/tiny", {
    type: "q8_0",
    tokenizerPre: "llama-bpe",
    name: "tiny",
    hub: { endpoint: fx.hub.endpoint, token: null },
  });
  const seconds = (performance.now() - t0) / 1000;
  assertEquals(report.architecture, "LlamaForCausalLM");
  assert(report.fileBytes > 0);
  const shardReads = fx.hub.requests.filter((r) => r.file?.endsWith(".safetensors") && r.range);
  assert(shardReads.length > 0);
  for (const r of shardReads) {
    // Only `bytes=0-7` and `bytes=8-<end of JSON>` ranges: no tensor data.
    const [, start, end] = /bytes=(\d+)-(\d+)/.exec(r.range!)!.map(Number);
    assert(start === 0 || start === 8, r.range!);
    assert(end! - start! < 20_000, `header-sized range ${r.range}`);
  }
  assert(seconds < 5, `inspect took ${seconds.toFixed(2)} s`);
});

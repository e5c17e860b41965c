/**
 * `deno task bench <name>`: benchmarks that print ratios against an anchor measured in the same
 * run. Not tests: they take minutes and report numbers.
 *
 * @module
 */
const BENCHES: Record<string, () => Promise<void>> = {
  core: async () => (await import("./core.ts")).benchCore(),
  hub: async () => (await import("./hub.ts")).benchHub(),
  encode: async () => {
    (await import("./encode_q8_0.ts")).reportQ8_0();
    console.log();
    await (await import("./encode_fp4.ts")).benchFp4();
  },
  gpu: async () => (await import("./gpu_convert.ts")).benchGpuConvert(Deno.args.slice(1)),
  quality: async () => {
    const { benchQuality, qualityArgs } = await import("./quality.ts");
    await benchQuality(qualityArgs(Deno.args.slice(1)));
  },
};

const name = Deno.args[0];
const bench = name === undefined ? undefined : BENCHES[name];
if (!bench) {
  console.error(`usage: deno task bench <${Object.keys(BENCHES).join("|")}>`);
  Deno.exit(2);
}
await bench();

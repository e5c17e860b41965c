/**
 * The kernel's handle on the output (stages/kernel_output.ts): copies from several files and
 * positioned writes, all in flight at once, land at their offsets.
 */
import { assertEquals } from "./_assert.ts";
import { openKernelOutput } from "../stages/kernel_output.ts";

Deno.test("concurrent kernel copies from several files and writes land at their offsets", async () => {
  const work = await Deno.makeTempDir({ prefix: "sluice-kernel-" });
  try {
    const part = 8 << 20, files = 6;
    const expected = new Uint8Array(2 * files * part);
    const sources: string[] = [];
    for (let i = 0; i < files; i++) {
      const bytes = new Uint8Array(part).map((_, j) => (i * 31 + j * 7) & 0xff);
      sources.push(`${work}/source-${i}.bin`);
      await Deno.writeFile(sources[i]!, bytes);
      expected.set(bytes, 2 * i * part);
      expected.set(bytes.map((b) => b ^ 0x5a), (2 * i + 1) * part);
    }
    const output = `${work}/out.bin`;
    await Deno.writeFile(output, new Uint8Array(0));
    const kernel = openKernelOutput(output);
    if (kernel === null) {
      console.warn("kernel_output_test: skipped, no kernel path here (not Linux, or no FFI)");
      return;
    }
    try {
      // Every call is started before any is awaited, copies in slices so each loops.
      const calls: Promise<boolean>[] = [];
      for (let i = 0; i < files; i++) {
        for (let at = 0; at < part; at += part / 4) {
          calls.push(kernel.copy(sources[i]!, at, 2 * i * part + at, part / 4));
        }
        const written = expected.slice((2 * i + 1) * part, (2 * i + 2) * part);
        calls.push(kernel.write((2 * i + 1) * part, written));
      }
      assertEquals(await Promise.all(calls), calls.map(() => true));
    } finally {
      kernel.close();
    }
    // The first wrong byte, not a diff of megabytes.
    const got = await Deno.readFile(output);
    assertEquals(got.length, expected.length);
    assertEquals(got.findIndex((b, i) => b !== expected[i]), -1);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

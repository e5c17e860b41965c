/**
 * Runs `sluice convert` in a child process (so its peak RSS is its own) and reads the JSON log's
 * `done` record. Shared by the benchmarks.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));

/** What one CLI conversion took. */
export interface CliConvertResult {
  /** Wall time of the child process, start-up included. */
  readonly seconds: number;
  readonly peakRss: number;
  readonly outputBytes: number;
}

/**
 * Converts `input` to `output` with extra CLI arguments; the output file is removed afterwards.
 * @throws {Error} with the child's log when the conversion fails.
 */
export async function cliConvert(
  input: string,
  output: string,
  args: readonly string[],
): Promise<CliConvertResult> {
  const t0 = performance.now();
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "convert", input, "-o", output, "--log-format", "json", ...args],
    stdout: "piped",
    stderr: "piped",
    env: { HF_TOKEN: "" },
  }).output();
  const seconds = (performance.now() - t0) / 1000;
  const log = new TextDecoder().decode(run.stderr);
  if (!run.success) throw new Error(`sluice convert failed:\n${log}`);
  const done = log.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((e) =>
    e.type === "done"
  );
  const outputBytes = (await Deno.stat(output)).size;
  await Deno.remove(output);
  return { seconds, peakRss: done.stats.peakRssBytes, outputBytes };
}

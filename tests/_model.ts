/**
 * A generated model in a temporary folder for one test, removed afterwards.
 */
import { generateModel } from "../testing/synthetic_model.ts";

/** Runs `fn` with `<work>/model` generated from `spec`; `work` is removed afterwards. */
export async function withModel(
  spec: Parameters<typeof generateModel>[1],
  fn: (dir: string, work: string) => Promise<void>,
): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "sluice-test-" });
  try {
    await generateModel(`${work}/model`, spec);
    await fn(`${work}/model`, work);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

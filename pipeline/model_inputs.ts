/**
 * Opens a model source from a CLI/library input string and reads everything planning needs:
 * config.json, tokenizer files and every shard's safetensors header. No tensor data is read.
 *
 * @module
 */
import { LocalSource } from "../stages/local_source.ts";
import { HubSource, type HubSourceOptions } from "../stages/hub_source.ts";
import { isHubSpec } from "../stages/hub_spec.ts";
import { architectureOf } from "./architectures.ts";
import type { GgufMetadata } from "./gguf_metadata.ts";
import { type ModelConfig, ModelConfigError, parseModelConfig } from "./model_config.ts";
import type { SafetensorsHeader } from "./safetensors_header.ts";
import { readCheckpointHeaders } from "./shards.ts";
import type { ModelSource } from "./source.ts";
import { tokenizerMetadata } from "./tokenizer/mod.ts";
import { readTokenizerFiles } from "./tokenizer/tokenizer_files.ts";

/** Everything planning needs from a model folder. */
export interface ModelInputs {
  readonly config: ModelConfig;
  readonly headers: readonly SafetensorsHeader[];
  readonly name: string;
  readonly tokenizer: GgufMetadata;
}

/** Opens a local folder, or a Hub repo for `hf:owner/name[@rev]`. */
export async function openSource(
  input: string,
  hub: HubSourceOptions = {},
): Promise<ModelSource> {
  if (isHubSpec(input)) return await HubSource.open(input, hub);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(input);
  } catch {
    throw new Deno.errors.NotFound(`Cannot open model folder ${input}: it does not exist`);
  }
  if (!info.isDirectory) {
    throw new TypeError(`Cannot open model ${input}: expected a folder with config.json`);
  }
  return new LocalSource(input);
}

/** Reads a text file of the model, or null. */
async function _text(source: ModelSource, path: string): Promise<string | null> {
  const bytes = await source.readFile(path);
  return bytes === null ? null : new TextDecoder().decode(bytes);
}

/**
 * Reads config, tokenizer and headers of a model.
 * @throws {ModelConfigError} when config.json is missing or malformed.
 */
export async function readModelInputs(
  source: ModelSource,
  tokenizerPre?: string,
): Promise<ModelInputs> {
  const configText = await _text(source, "config.json");
  if (configText === null) {
    throw new ModelConfigError(`Cannot convert ${source.label} as it has no config.json`);
  }
  const config = parseModelConfig(configText, `${source.label}/config.json`);
  architectureOf(config); // fail on an unknown architecture before reading anything else
  const headers = await readCheckpointHeaders(source);
  const tokenizer = await tokenizerMetadata(
    await readTokenizerFiles(source),
    tokenizerPre === undefined
      ? { architecture: config.architecture }
      : { architecture: config.architecture, tokenizerPre },
  );
  // general.name: the Hub repo id, else the folder's name (as llama.cpp's converter).
  const name = source.label.startsWith("hf:")
    ? source.label.slice(3).replace(/@.*$/, "")
    : source.label.split("/").filter(Boolean).at(-1) ?? "model";
  return { config, headers, name, tokenizer };
}

/**
 * Sluice: turns Hugging Face safetensors checkpoints into GGUF files for llama.cpp in one
 * streaming pass, with bounded memory.
 *
 * @example Convert a local folder to Q8_0
 * ```ts ignore
 * import { convert } from "./mod.ts";
 * const stats = await convert({ input: "./my-llama", output: "my-llama-q8_0.gguf", type: "q8_0" });
 * console.log(stats.mbPerSecond, stats.peakRssBytes);
 * ```
 *
 * @module
 */
export * from "./pipeline/convert.ts";
export * from "./pipeline/inspect.ts";
export * from "./pipeline/plan.ts";
export * from "./pipeline/source.ts";
export * from "./pipeline/gguf_header.ts";
export * from "./pipeline/gguf_metadata.ts";
export * from "./pipeline/ggml_types.ts";
export * from "./pipeline/safetensors_header.ts";
export * from "./pipeline/tokenizer/mod.ts";
export { ModelConfigError } from "./pipeline/model_config.ts";
export { UnsupportedModelError } from "./pipeline/architectures.ts";
export { CheckpointError } from "./pipeline/shards.ts";
export { LocalSource } from "./stages/local_source.ts";
export {
  HubAuthError,
  HubFileChangedError,
  HubNotFoundError,
  HubReadError,
  HubSource,
  type HubSourceOptions,
  openHubSource,
} from "./stages/hub_source.ts";
export { isHubSpec, parseHubSpec } from "./stages/hub_spec.ts";
export { EncodeStream, NonFiniteWeightError } from "./stages/encode_stream.ts";
export { GgufSink } from "./stages/gguf_sink.ts";
export { QkPermuteStream } from "./stages/qk_permute_stream.ts";
export { RowGroupStream } from "./stages/row_group_stream.ts";
export { type EncodeOptions } from "./stages/encode_stream.ts";
export * from "./pipeline/type_selection.ts";
export { Imatrix, ImatrixError, ImatrixSizeError, readImatrix } from "./pipeline/imatrix.ts";
export {
  createFp4Encoder,
  encodeFp4Rows,
  type Fp4EncodeOptions,
  type Fp4Encoder,
} from "./gpu/fp4/encode.ts";
export { FP4_FORMATS, fp4Bytes, type Fp4Format, type Fp4FormatName } from "./gpu/fp4/formats.ts";
export { decodeFp4 } from "./gpu/fp4/decode.ts";
export { fp4OuterScale } from "./gpu/fp4/outer_scale.ts";
export { Fp4InputError } from "./gpu/fp4/input_error.ts";

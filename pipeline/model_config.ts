/**
 * The parts of a Hugging Face `config.json` the converter needs, read once and checked, so that
 * later stages work with plain numbers instead of optional JSON fields.
 *
 * @module
 */

/** A config.json that is missing a field or has one of the wrong kind. */
export class ModelConfigError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = "ModelConfigError";
  }
}

/** Checked hyperparameters of a dense decoder-only model. */
export interface ModelConfig {
  /** `architectures[0]`, e.g. `LlamaForCausalLM`. */
  readonly architecture: string;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  /** `head_dim`, or hidden / heads. */
  readonly headDim: number;
  readonly vocab: number;
  /** The raw JSON, for optional keys. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** Reads the first present key as a positive integer, or undefined. */
export function intParam(raw: Readonly<Record<string, unknown>>, keys: readonly string[]) {
  for (const k of keys) {
    const v = raw[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new ModelConfigError(
        `Cannot read config.json ${k} as an integer: ${JSON.stringify(v)}`,
      );
    }
    return v;
  }
  return undefined;
}

/**
 * Parses config.json.
 * @throws {ModelConfigError} naming the missing or malformed key.
 */
export function parseModelConfig(text: string, file = "config.json"): ModelConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ModelConfigError(`Cannot parse ${file}: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelConfigError(`Cannot parse ${file} as it is not a JSON object`);
  }
  const archs = raw.architectures;
  if (!Array.isArray(archs) || typeof archs[0] !== "string") {
    throw new ModelConfigError(`Cannot find the architecture as ${file} has no "architectures"`);
  }
  const need = (keys: readonly string[]): number => {
    const v = intParam(raw, keys);
    if (v === undefined) throw new ModelConfigError(`Cannot convert as ${file} has no ${keys[0]}`);
    return v;
  };
  const hidden = need(["hidden_size", "n_embd", "dim"]);
  const heads = need(["num_attention_heads", "n_head", "n_heads"]);
  const kvHeads = intParam(raw, ["num_key_value_heads", "n_kv_heads"]) ?? heads;
  const headDim = intParam(raw, ["head_dim"]) ?? hidden / heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelConfigError(
      `Cannot use head dim ${headDim} from ${file}: must be an even integer`,
    );
  }
  if (heads % kvHeads !== 0) {
    throw new ModelConfigError(
      `Cannot use ${kvHeads} key-value heads with ${heads} attention heads in ${file}`,
    );
  }
  return {
    architecture: archs[0],
    hidden,
    intermediate: need(["intermediate_size", "n_inner", "hidden_dim"]),
    layers: need(["num_hidden_layers", "n_layers", "n_layer", "num_layers"]),
    heads,
    kvHeads,
    headDim,
    vocab: need(["vocab_size"]),
    raw,
  };
}

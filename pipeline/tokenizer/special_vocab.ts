/**
 * Special token ids, the add-BOS/EOS/SEP flags, the chat template and the normalizer flags, found
 * as gguf-py's `SpecialVocab` finds them, and written with its key names and order.
 *
 * Where the ids come from, first match wins per type:
 * 1. `tokenizer_config.json` `{type}_token` (a string or `{content}`), looked up by content in the
 *    `added_tokens` of `tokenizer.json`;
 * 2. `config.json` `{type}_token_id` (or `text_config.{type}_token_id`), only a plain integer.
 *
 * The add flags are first guessed from the `tokenizer.json` post-processor (TemplateProcessing or
 * RobertaProcessing); an explicit boolean `add_{type}_token` in `tokenizer_config.json` wins.
 *
 * @module
 */
import { type GgufMetadata, gv } from "../gguf_metadata.ts";
import { field, isRecord, type JsonRecord, pyTruthy } from "./_json.ts";
import { writeChatTemplate } from "./chat_template.ts";

/** The types gguf-py looks for unless told otherwise. */
export const DEFAULT_SPECIAL_TYPES = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] as const;

/** GGUF key of each special token id type that gguf-py has a writer for (`sep` is misspelled). */
const ID_KEYS: Readonly<Record<string, string>> = {
  bos: "tokenizer.ggml.bos_token_id",
  eos: "tokenizer.ggml.eos_token_id",
  unk: "tokenizer.ggml.unknown_token_id",
  sep: "tokenizer.ggml.seperator_token_id",
  pad: "tokenizer.ggml.padding_token_id",
  mask: "tokenizer.ggml.mask_token_id",
  eot: "tokenizer.ggml.eot_token_id",
  eom: "tokenizer.ggml.eom_token_id",
};

/** GGUF key of each add flag that gguf-py has a writer for. */
const ADD_KEYS: Readonly<Record<string, string>> = {
  bos: "tokenizer.ggml.add_bos_token",
  eos: "tokenizer.ggml.add_eos_token",
  sep: "tokenizer.ggml.add_sep_token",
};

/** The model files `SpecialVocab` reads, already parsed. */
export interface SpecialVocabSources {
  readonly tokenizerJson: JsonRecord | null;
  readonly tokenizerConfig: JsonRecord | null;
  readonly config: JsonRecord | null;
  /** `chat_template.jinja`, with the `additional_chat_templates` folder. */
  readonly chatTemplateJinja?: string;
  readonly additionalChatTemplates?: ReadonlyMap<string, string>;
  /** `chat_template.json`, read only without `chat_template.jinja`. */
  readonly chatTemplateJson?: JsonRecord;
}

/** Options for {@linkcode SpecialVocab}. */
export interface SpecialVocabOptions {
  /** Token types to look for. @default DEFAULT_SPECIAL_TYPES */
  readonly types?: readonly string[];
  /** Ids at or above this are skipped (with a warning); null checks nothing. @default null */
  readonly nVocab?: number | null;
  /** Receives the notes gguf-py logs as warnings. */
  readonly onWarning?: (message: string) => void;
}

/** Special tokens of one model. */
export class SpecialVocab {
  readonly #ids = new Map<string, number>();
  readonly #add = new Map<string, boolean>();
  readonly #types: string[];
  readonly #nVocab: number | null;
  readonly #warn: (message: string) => void;
  #chatTemplate: string | readonly unknown[] | null = null;
  #lowercase: boolean | null = null;
  #stripAccents: boolean | null = null;

  /**
   * Reads the sources.
   * @throws {RangeError} for a negative special token id.
   */
  constructor(sources: SpecialVocabSources, options: SpecialVocabOptions = {}) {
    this.#types = [...(options.types ?? DEFAULT_SPECIAL_TYPES)];
    this.#nVocab = options.nVocab ?? null;
    this.#warn = options.onWarning ?? (() => {});
    this.#loadTokenizerFiles(sources);
    this.#loadConfig(sources.config);
  }

  /** Special token ids by type, in the order they were found. */
  get ids(): ReadonlyMap<string, number> {
    return this.#ids;
  }

  /** Add flags by type, in the order they were first set. */
  get addFlags(): ReadonlyMap<string, boolean> {
    return this.#add;
  }

  /**
   * Sets a special token id unless that type already has one. Anything but an integer is ignored,
   * as is an id at or above `nVocab`.
   * @throws {RangeError} for a negative id.
   */
  setSpecialToken(type: string, id: unknown): void {
    if (typeof id !== "number" || !Number.isInteger(id)) return;
    if (id < 0) {
      throw new RangeError(`Cannot use special token ${type} as its id is negative: ${id}`);
    }
    if (this.#nVocab !== null && id >= this.#nVocab) {
      this.#warn(`Special token ${type} id ${id} is not below the vocabulary size ${this.#nVocab}`);
      return;
    }
    if (!this.#ids.has(type)) this.#ids.set(type, id);
  }

  /**
   * Adds the keys to `metadata` in gguf-py's order: ids, add flags, chat template, normalizer
   * flags. Types without a GGUF key (`cls`, …) are left out. A key already present keeps its place
   * and takes the new value.
   */
  writeTo(metadata: GgufMetadata): void {
    for (const [type, id] of this.#ids) {
      const key = ID_KEYS[type];
      if (key) metadata.set(key, gv.u32(id));
      else this.#warn(`No GGUF key for special token type ${type} (id ${id}); skipped`);
    }
    for (const [type, value] of this.#add) {
      const key = ADD_KEYS[type];
      if (key) metadata.set(key, gv.bool(value));
    }
    if (this.#chatTemplate !== null) writeChatTemplate(metadata, this.#chatTemplate);
    if (this.#lowercase !== null) {
      metadata.set("tokenizer.ggml.normalizer.lowercase", gv.bool(this.#lowercase));
    }
    if (this.#stripAccents !== null) {
      metadata.set("tokenizer.ggml.normalizer.strip_accents", gv.bool(this.#stripAccents));
    }
  }

  #parseNormalizer(normalizer: unknown): void {
    const type = field(normalizer, "type");
    if (type === "Lowercase") this.#lowercase = true;
    else if (type === "StripAccents") this.#stripAccents = true;
    else if (type === "BertNormalizer" && isRecord(normalizer)) {
      if ("lowercase" in normalizer) this.#lowercase = pyTruthy(normalizer.lowercase);
      if ("strip_accents" in normalizer) this.#stripAccents = pyTruthy(normalizer.strip_accents);
    } else if (type === "Sequence") {
      const list = field(normalizer, "normalizers");
      if (Array.isArray(list)) { for (const n of list) this.#parseNormalizer(n); }
    }
  }

  #loadTokenizerFiles(sources: SpecialVocabSources): void {
    const tokenizer = sources.tokenizerJson;
    let addedTokens: readonly unknown[] = [];
    if (tokenizer) {
      if (pyTruthy(tokenizer.normalizer)) this.#parseNormalizer(tokenizer.normalizer);
      if (Array.isArray(tokenizer.added_tokens)) addedTokens = tokenizer.added_tokens;
    }
    // gguf-py edits its copy of tokenizer_config while reading the post-processor.
    const tc: Record<string, unknown> | null = sources.tokenizerConfig
      ? { ...sources.tokenizerConfig }
      : null;
    if (tokenizer && pyTruthy(tokenizer)) this.#readPostProcessor(tokenizer, tc);
    if (!pyTruthy(tc) || tc === null) return;
    this.#readChatTemplate(tc, sources);
    for (const type of this.#types) {
      const add = tc[`add_${type}_token`];
      if (typeof add === "boolean") this.#add.set(type, add);
      const entry = tc[`${type}_token`];
      const content = typeof entry === "string" ? entry : field(entry, "content");
      if (typeof content !== "string") continue;
      const match = addedTokens.find((t) => field(t, "content") === content);
      this.setSpecialToken(type, field(match, "id"));
    }
  }

  #readChatTemplate(tc: JsonRecord, sources: SpecialVocabSources): void {
    let alt: unknown = null;
    if (sources.chatTemplateJinja !== undefined) {
      alt = sources.chatTemplateJinja;
      const extra = sources.additionalChatTemplates;
      if (extra && extra.size > 0) {
        alt = [
          { name: "default", template: sources.chatTemplateJinja },
          ...[...extra].map(([name, template]) => ({ name, template })),
        ];
      }
    } else if (sources.chatTemplateJson) {
      alt = sources.chatTemplateJson.chat_template ?? null;
    }
    const template = "chat_template" in tc ? tc.chat_template : alt;
    if (typeof template === "string" || Array.isArray(template)) this.#chatTemplate = template;
    else if (template !== null && template !== undefined) {
      this.#warn("Ignoring a chat_template in tokenizer_config.json that is not a string or list");
    }
  }

  /**
   * gguf-py's reading of the post-processor: a crude parse of simple templates that decides the
   * add flags and may fill in bos/cls/eos/sep (and eot/eom) names in its copy of the config.
   */
  #readPostProcessor(tokenizer: JsonRecord, tc: Record<string, unknown> | null): void {
    const hasTc = pyTruthy(tc) && tc !== null;
    let bos: unknown = tc?.bos_token ?? null;
    let cls: unknown = tc?.cls_token ?? null;
    let eos: unknown = tc?.eos_token ?? null;
    let sep: unknown = tc?.sep_token ?? null;
    if (!pyTruthy(bos) && pyTruthy(cls) && hasTc) tc.bos_token = bos = cls;
    if (!pyTruthy(eos) && pyTruthy(sep) && hasTc) tc.eos_token = eos = sep;
    const post = tokenizer.post_processor;
    if (!pyTruthy(post)) return;
    const nested = field(post, "processors");
    const processors: readonly unknown[] = nested === undefined
      ? [post]
      : Array.isArray(nested)
      ? nested
      : [];
    const specialId = (item: unknown): unknown => field(field(item, "SpecialToken"), "id");
    const sequenceId = (item: unknown): unknown => field(field(item, "Sequence"), "id");
    for (const processor of processors) {
      const type = field(processor, "type");
      if (type === "RobertaProcessing") {
        this.#add.set("bos", true);
        this.#add.set("eos", true);
        this.#add.set("sep", true);
        if (!pyTruthy(cls) && hasTc) {
          const c = field(processor, "cls");
          tc.cls_token = cls = Array.isArray(c) ? c[0] : bos;
        }
        if (!pyTruthy(sep) && hasTc) {
          const s = field(processor, "sep");
          tc.sep_token = sep = Array.isArray(s) ? s[0] : eos;
        }
        continue;
      }
      if (type !== "TemplateProcessing") continue;
      const singleRaw = field(processor, "single");
      const pairRaw = field(processor, "pair");
      const single: readonly unknown[] = Array.isArray(singleRaw) ? singleRaw : [];
      let pair: readonly unknown[] = Array.isArray(pairRaw) ? pairRaw : [];
      let first: unknown = null;
      let last: unknown = null;
      if (single.length > 1) {
        first = specialId(single[0]);
        if (pyTruthy(first)) {
          if (!hasTc) bos = first;
          else if (first !== bos && first !== cls) {
            if (!pyTruthy(bos)) tc.bos_token = bos = first;
            if (!pyTruthy(cls)) tc.cls_token = cls = first;
          }
          const known = first === bos || first === cls;
          this.#add.set("bos", known);
          if (!known) this.#warn(`Unknown leading special token ${first} in TemplateProcessing`);
        }
        last = specialId(single[single.length - 1]);
        if (pyTruthy(last)) {
          if (!hasTc) eos = last;
          else if (last !== eos) {
            // The old EOS becomes an end-of-turn (or end-of-message) token.
            if (!this.#types.includes("eot")) {
              this.#types.push("eot");
              tc.eot_token = eos;
            } else if (!this.#types.includes("eom")) {
              this.#types.push("eom");
              tc.eom_token = eos;
            } else {
              this.#warn(`Overriding EOS token ${eos} with ${last} without EOT/EOM fallback`);
            }
            tc.eos_token = eos = last;
          }
          this.#add.set("eos", last === eos);
        }
      }
      if (pair.length === 0) continue;
      const start = pyTruthy(first) && specialId(pair[0]) === first ? 1 : 0;
      const stop = pyTruthy(last) && specialId(pair[pair.length - 1]) === last
        ? pair.length - 1
        : pair.length;
      pair = pair.slice(start, stop);
      if (pair.length === 0) continue;
      if (sequenceId(pair[0]) !== "A" || sequenceId(pair[pair.length - 1]) !== "B") continue;
      pair = pair.slice(1, -1);
      if (pair.length === 0) continue;
      let addSep = false;
      const entry = specialId(pair[0]);
      if (pyTruthy(entry) && (entry === sep || entry === eos) && !pyTruthy(last)) addSep = true;
      if (pair.length === 2) {
        const second = specialId(pair[1]);
        if (pyTruthy(second) && (second === sep || second === eos)) addSep = true;
      }
      this.#add.set("sep", addSep);
      if (addSep && !pyTruthy(sep) && hasTc) tc.sep_token = eos;
    }
  }

  #loadConfig(config: JsonRecord | null): void {
    if (config === null) return;
    for (const type of this.#types) {
      let id = config[`${type}_token_id`];
      if ((id === undefined || id === null) && "text_config" in config) {
        id = field(config.text_config, `${type}_token_id`);
      }
      this.setSpecialToken(type, id);
    }
  }
}

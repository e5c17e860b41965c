/**
 * A checked view of the parts of a Hugging Face `tokenizer.json` that the GGUF export reads: the
 * model's vocabulary, its added tokens and, raw, the rest (post-processor, normalizer, decoder).
 *
 * @module
 */
import { isRecord, type JsonRecord, parseJsonObject } from "./_json.ts";
import type { FileContent } from "./tokenizer_files.ts";

/** One entry of `added_tokens`. */
export interface AddedToken {
  readonly id: number;
  readonly content: string;
  /** Marked special: typed CONTROL in the GGUF. */
  readonly special: boolean;
  /** Whether the tokenizer's normalizer applies to it. */
  readonly normalized: boolean;
}

/** What the export reads from `tokenizer.json`. */
export interface TokenizerJson {
  /** The whole parsed file. */
  readonly raw: JsonRecord;
  /** `model`, e.g. `{ type: "BPE", vocab, merges, byte_fallback, … }`. */
  readonly model: JsonRecord;
  /** `model.type` ("BPE", "Unigram", "WordPiece", …), or null when absent. */
  readonly modelType: string | null;
  /** `model.vocab` as token → id, without the added tokens. */
  readonly vocab: ReadonlyMap<string, number>;
  /** `added_tokens`, in file order. */
  readonly addedTokens: readonly AddedToken[];
}

function _addedToken(entry: unknown, index: number): AddedToken {
  if (
    !isRecord(entry) || typeof entry.content !== "string" || typeof entry.id !== "number" ||
    !Number.isSafeInteger(entry.id) || entry.id < 0
  ) {
    throw new TypeError(
      `Cannot read tokenizer.json as added_tokens[${index}] is not {id, content}: ${
        JSON.stringify(entry)
      }`,
    );
  }
  const special = entry.special === true;
  return {
    id: entry.id,
    content: entry.content,
    special,
    // The tokenizers library defaults `normalized` to the opposite of `special`.
    normalized: typeof entry.normalized === "boolean" ? entry.normalized : !special,
  };
}

function _vocab(model: JsonRecord): Map<string, number> {
  const vocab = new Map<string, number>();
  if (!isRecord(model.vocab)) return vocab;
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0) {
      throw new TypeError(
        `Cannot read tokenizer.json as model.vocab maps ${
          JSON.stringify(token)
        } to a bad id: ${id}`,
      );
    }
    vocab.set(token, id);
  }
  return vocab;
}

/**
 * Parses and checks `tokenizer.json`.
 * @throws {SyntaxError} when it is not a JSON object.
 * @throws {TypeError} when `model` is missing or an id is not a non-negative integer.
 */
export function readTokenizerJson(content: FileContent): TokenizerJson {
  const raw = parseJsonObject(content, "tokenizer.json");
  const model = raw.model;
  if (!isRecord(model)) {
    throw new TypeError("Cannot read tokenizer.json as it has no model object");
  }
  const added = Array.isArray(raw.added_tokens) ? raw.added_tokens : [];
  return {
    raw,
    model,
    modelType: typeof model.type === "string" ? model.type : null,
    vocab: _vocab(model),
    addedTokens: added.map(_addedToken),
  };
}

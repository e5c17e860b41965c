/**
 * The Hugging Face tokenizer itself (transformers.js, through `@lenml/tokenizers`), built from a
 * model's `tokenizer.json` and `tokenizer_config.json` without any network access. llama.cpp's
 * converter runs `AutoTokenizer` to fingerprint the pre-tokenizer and to pre-normalize added
 * tokens; this is the same tokenizer in TypeScript.
 *
 * @module
 */
import { TokenizerLoader, tokenizers } from "@lenml/tokenizers";
import { field, type JsonRecord, parseJsonObject } from "./_json.ts";
import type { FileContent } from "./tokenizer_files.ts";

type LoaderInput = Parameters<typeof TokenizerLoader.fromPreTrained>[0];

/** A loaded Hugging Face tokenizer. */
export interface HfTokenizer {
  /** Token ids of `text`; with `addSpecialTokens` the post-processor adds BOS/EOS as HF does. */
  encode(text: string, addSpecialTokens: boolean): number[];
  /** Text of `ids`, keeping special tokens (HF's `decode` defaults). */
  decode(ids: readonly number[]): string;
}

function _knownClass(name: unknown): boolean {
  const mapping: Readonly<Record<string, unknown>> =
    tokenizers.AutoTokenizer.TOKENIZER_CLASS_MAPPING;
  return typeof name === "string" && name.replace(/Fast$/, "") in mapping;
}

/**
 * A copy of tokenizer_config.json for the library: `{content, …}` special tokens written as their
 * content (transformers accepts both forms, the library only strings and `{__type: "AddedToken"}`),
 * no chat template (it does not change tokenization, and the library rejects some forms
 * transformers accepts), and no tokenizer class the library does not know (e.g. transformers 5's
 * "TokenizersBackend").
 */
function _forLibrary(config: JsonRecord): JsonRecord {
  const contentOf = (v: unknown): unknown => {
    const content = field(v, "content");
    return typeof content === "string" ? content : v;
  };
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(config)) {
    if (key === "chat_template") continue;
    // The library warns on the console for a class it does not know, then uses the base class.
    if (key === "tokenizer_class" && !_knownClass(v)) continue;
    if (key.endsWith("_token")) out[key] = contentOf(v);
    else if (key === "additional_special_tokens" && Array.isArray(v)) out[key] = v.map(contentOf);
    else out[key] = v;
  }
  return out;
}

/**
 * Builds the Hugging Face tokenizer. Parses its own copies of the files, since the library may
 * change the objects it is given.
 * @throws {SyntaxError} when a file is not a JSON object.
 * @throws {TypeError} when the library cannot build a tokenizer from the files.
 */
export function loadHfTokenizer(
  tokenizerJson: FileContent,
  tokenizerConfig: FileContent | undefined,
): HfTokenizer {
  const input = {
    tokenizerJSON: parseJsonObject(tokenizerJson, "tokenizer.json"),
    tokenizerConfig: tokenizerConfig === undefined
      ? {}
      : _forLibrary(parseJsonObject(tokenizerConfig, "tokenizer_config.json")),
  } as unknown as LoaderInput;
  let tokenizer: ReturnType<typeof TokenizerLoader.fromPreTrained>;
  try {
    tokenizer = TokenizerLoader.fromPreTrained(input);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new TypeError(`Cannot build the Hugging Face tokenizer from tokenizer.json as ${reason}`);
  }
  return {
    encode: (text, addSpecialTokens) =>
      tokenizer.encode(text, { add_special_tokens: addSpecialTokens }),
    decode: (ids) => ids.length === 0 ? "" : tokenizer.decode([...ids]),
  };
}

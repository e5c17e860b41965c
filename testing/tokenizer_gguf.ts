/**
 * Vocabulary-only GGUF files for the tokenizer export tests, and the comparison of llama.cpp's
 * tokenization of them with the Hugging Face tokenizer's.
 *
 * @module
 */
import { layoutGguf } from "../pipeline/gguf_header.ts";
import { type GgufMetadata, gv } from "../pipeline/gguf_metadata.ts";
import type { LlamaModel } from "./llama_cpp.ts";

/**
 * Writes a GGUF with no tensors holding `general.architecture` = "llama" and the given tokenizer
 * metadata; llama.cpp loads it with `vocabOnly`, which reads no other `llama.*` key.
 * @returns the path of a new temporary file; the caller removes it.
 */
export async function writeVocabOnlyGguf(tokenizer: GgufMetadata): Promise<string> {
  const metadata: GgufMetadata = new Map([["general.architecture", gv.str("llama")]]);
  for (const [key, value] of tokenizer) metadata.set(key, value);
  const header = layoutGguf(metadata, []).header;
  const path = await Deno.makeTempFile({ prefix: "sluice-tokenizer-", suffix: ".gguf" });
  try {
    await Deno.writeFile(path, header);
  } catch (e) {
    await Deno.remove(path);
    throw e;
  }
  return path;
}

/** Something that encodes text as the Hugging Face tokenizer does. */
export interface ReferenceTokenizer {
  encode(text: string, options: { add_special_tokens: boolean }): number[];
}

/**
 * Tokenizes every text with llama.cpp (special tokens parsed, as Hugging Face always does) and
 * with the reference, with and without special tokens added.
 * @returns one line per mismatch; empty when all agree.
 */
export function tokenizationMismatches(
  llama: LlamaModel,
  reference: ReferenceTokenizer,
  texts: readonly string[],
): string[] {
  const out: string[] = [];
  for (const text of texts) {
    for (const addSpecial of [true, false]) {
      const got = llama.tokenize(text, addSpecial, true);
      const want = reference.encode(text, { add_special_tokens: addSpecial });
      if (got.length !== want.length || got.some((id, i) => id !== want[i])) {
        out.push(
          `${JSON.stringify(text.slice(0, 40))} addSpecial=${addSpecial}: llama.cpp [${got}] ` +
            `Hugging Face [${want}]`,
        );
      }
    }
  }
  return out;
}

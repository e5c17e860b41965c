/**
 * Small tokenizer files built in code for the tokenizer export tests: a byte-level BPE
 * `tokenizer.json` with a handful of merges and added tokens, and SentencePiece `ModelProto`
 * bytes from a list of pieces (with a tiny protobuf encoder).
 *
 * @module
 */

/** Hugging Face's byte-to-unicode table: the character byte-level BPE spells byte `b` with. */
export function byteLevelChar(b: number): string {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
  if (printable) return String.fromCodePoint(b);
  let n = 0;
  for (let i = 0; i < b; i++) {
    if (!((i >= 0x21 && i <= 0x7e) || (i >= 0xa1 && i <= 0xac) || i >= 0xae)) n++;
  }
  return String.fromCodePoint(256 + n);
}

/** Options for {@linkcode tinyBpeTokenizerJson}. */
export interface TinyBpeOptions {
  /** `"a b"` strings (older files) or `[a, b]` pairs (transformers 4.45+). @default "string" */
  mergeForm?: "string" | "pair";
  /** Replaces the byte-level post-processor. */
  postProcessor?: unknown;
  /** Extra `model` fields, e.g. `{ merges: [] }`. */
  model?: Record<string, unknown>;
}

/** Merges of the tiny tokenizer, and the tokens they make (ids 256 on). */
const MERGES: readonly [string, string][] = [
  ["\u0120", "t"],
  ["h", "e"],
  ["\u0120t", "he"],
  ["i", "n"],
  ["\u0120", "a"],
];

/** Added tokens of the tiny tokenizer, after the merged tokens. */
export const TINY_ADDED = [
  { id: 261, content: "<|endoftext|>", special: true, normalized: false },
  { id: 262, content: "<custom>", special: false, normalized: true },
  { id: 263, content: "<|tool|>", special: false, normalized: false },
  { id: 264, content: "\u2581word", special: false, normalized: true },
] as const;

/**
 * A byte-level BPE tokenizer.json: ids 0–255 the bytes, 256–260 the merged tokens, 261–264 the
 * added tokens ({@linkcode TINY_ADDED}).
 */
export function tinyBpeTokenizerJson(options: TinyBpeOptions = {}): string {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[byteLevelChar(b)] = b;
  MERGES.forEach(([a, b], i) => vocab[a + b] = 256 + i);
  const byteLevel = {
    type: "ByteLevel",
    add_prefix_space: false,
    trim_offsets: true,
    use_regex: true,
  };
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: TINY_ADDED.map((t) => ({
      ...t,
      single_word: false,
      lstrip: false,
      rstrip: false,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: options.postProcessor ?? byteLevel,
    decoder: byteLevel,
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: options.mergeForm === "pair" ? MERGES : MERGES.map(([a, b]) => `${a} ${b}`),
      ...options.model,
    },
  });
}

/** A growable byte buffer with protobuf wire-format writers. */
class _ProtoWriter {
  #bytes: number[] = [];

  varint(value: number | bigint): this {
    let v = BigInt.asUintN(64, BigInt(value));
    do {
      const low = Number(v & 0x7fn);
      v >>= 7n;
      this.#bytes.push(v > 0n ? low | 0x80 : low);
    } while (v > 0n);
    return this;
  }
  key(field: number, wireType: number): this {
    return this.varint(field * 8 + wireType);
  }
  int32(field: number, value: number): this {
    return this.key(field, 0).varint(value);
  }
  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.key(field, 5);
    this.#bytes.push(...b);
    return this;
  }
  fixed64(field: number, value: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.key(field, 1);
    this.#bytes.push(...b);
    return this;
  }
  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2).varint(value.length);
    this.#bytes.push(...value);
    return this;
  }
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }
  finish(): Uint8Array {
    return new Uint8Array(this.#bytes);
  }
}

/** One piece for {@linkcode sentencePieceModelBytes}; score and type are left out when absent. */
export interface PieceSpec {
  piece: string;
  score?: number;
  type?: number;
}

/**
 * Serializes a SentencePiece `ModelProto`: the pieces (field 1), a trainer spec (field 2), a
 * normalizer spec (field 3) and an unknown fixed64 field a reader must skip.
 */
export function sentencePieceModelBytes(
  pieces: readonly PieceSpec[],
  normalizer: { addDummyPrefix?: boolean; removeExtraWhitespaces?: boolean } = {},
): Uint8Array {
  const w = new _ProtoWriter();
  for (const p of pieces) {
    const m = new _ProtoWriter().string(1, p.piece);
    if (p.score !== undefined) m.float(2, p.score);
    if (p.type !== undefined) m.int32(3, p.type);
    w.bytes(1, m.finish());
  }
  // trainer_spec: model_type BPE (3 = 2), vocab_size (4).
  w.bytes(2, new _ProtoWriter().int32(3, 2).int32(4, pieces.length).finish());
  const n = new _ProtoWriter().string(1, "identity");
  if (normalizer.addDummyPrefix !== undefined) n.int32(3, normalizer.addDummyPrefix ? 1 : 0);
  if (normalizer.removeExtraWhitespaces !== undefined) {
    n.int32(4, normalizer.removeExtraWhitespaces ? 1 : 0);
  }
  w.bytes(3, n.finish());
  w.fixed64(99, 0x0123456789abcdefn);
  return w.finish();
}

/** A varint of a negative int32 (ten bytes, sign-extended), for enum edge cases. */
export function negativeEnumPiece(piece: string, type: number): Uint8Array {
  return new _ProtoWriter().bytes(1, new _ProtoWriter().string(1, piece).int32(3, type).finish())
    .finish();
}

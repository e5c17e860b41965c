/**
 * A tiny byte-level BPE tokenizer in Hugging Face `tokenizer.json` form, for synthetic models: the
 * 256 byte tokens, merges learned from a fixed English text, and `<|begin_of_text|>` /
 * `<|end_of_text|>`. It pre-tokenizes with Llama 3's split pattern and sets `ignore_merges` like
 * Llama 3, so llama.cpp tokenizes it the same way when the pre-tokenizer is given as `llama-bpe`
 * (its hash is in no table, so a converter must be told).
 *
 * @module
 */

/** Llama 3's pre-tokenizer split pattern, as it appears in its `tokenizer.json`. */
export const LLAMA3_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** The same pattern for JavaScript, with the case-insensitive group spelled out. */
const SPLIT = new RegExp(
  "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|" +
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  "gu",
);

/** Text the merges are learned from. */
const TRAINING_TEXT =
  `A sluice is a gate that holds water back until someone decides to let it through.
The old mill on the river had three of them, and the miller opened one each morning at six.
When the water rose in spring, she opened all three, and the wheel turned so fast that the
whole building hummed. Children from the village came to watch the foam and to throw sticks
into the channel, counting how long each one took to reach the bridge: 12 seconds, 15 seconds,
sometimes 20 when a stick caught on the stones.

In summer the river was low. The miller kept the gates nearly closed and let only a thin
stream run under them. She said that a river is like a story: it has to be let out slowly,
or it is gone before anyone has heard it. Nobody in the village knew what she meant, but they
liked the way she said it, and they repeated it to each other at the market on Saturdays.

One autumn a storm came down from the hills. The rain fell for four days and four nights.
The river grew brown and loud, and it carried whole trees past the mill. The miller did not
sleep. She walked from gate to gate with a lamp, opening and closing, listening to the water
and to the wood of the wheel. On the fifth morning the rain stopped, the sun came out, and the
river went back to its bed as if nothing had happened. The bridge was still there. The mill
was still there. Only the stones of the channel had moved a little, and the sticks the children
threw that week took 14 seconds instead of 12.

Years later, when the mill had become a museum, a teacher brought her class to see the gates.
She asked them what a sluice was for. A boy said it was for stopping water. A girl said it was
for letting water go. The teacher smiled and said that both of them were right, and that the
most important part of the gate was the person who decided when to open it. Then she showed
them the miller's notebook, where every morning for forty years someone had written the height
of the water, the time the gates were opened, and a single word about the weather: clear,
cloudy, windy, wet. The last page said only: "River high. All three gates open. The wheel is
singing." The children read it aloud together, and then they went outside to throw sticks.
`;

/** GPT-2's byte-to-character table: printable bytes map to themselves, the rest to U+0100 on. */
function _byteChars(): string[] {
  const chars: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    chars[b] = String.fromCodePoint(printable ? b : next++);
  }
  return chars;
}

/** Learns `count` merges from the training text, most frequent pair first, ties to the smaller pair. */
function _learnMerges(count: number, byteChars: readonly string[]): [string, string][] {
  const wordCounts = new Map<string, number>();
  const encoder = new TextEncoder();
  for (const match of TRAINING_TEXT.matchAll(SPLIT)) {
    const key = Array.from(encoder.encode(match[0]), (b) => byteChars[b]!).join("\u0000");
    wordCounts.set(key, (wordCounts.get(key) ?? 0) + 1);
  }
  const words = [...wordCounts].map(([key, n]) => ({ symbols: key.split("\u0000"), n }));
  const merges: [string, string][] = [];
  while (merges.length < count) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]}\u0000${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best: string | null = null;
    let bestCount = 0;
    for (const [key, n] of pairs) {
      if (n > bestCount || (n === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = n;
      }
    }
    if (best === null) {
      throw new RangeError(`Cannot learn ${count} merges as the text yields ${merges.length}`);
    }
    const [a, b] = best.split("\u0000") as [string, string];
    merges.push([a, b]);
    for (const word of words) {
      const out: string[] = [];
      const s = word.symbols;
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(a + b);
          i++;
        } else {
          out.push(s[i]!);
        }
      }
      word.symbols = out;
    }
  }
  return merges;
}

/** A generated tokenizer and the ids a model config needs. */
export interface TinyBpeTokenizer {
  /** Contents of `tokenizer.json`. */
  readonly tokenizerJson: Record<string, unknown>;
  /** Contents of `tokenizer_config.json`. */
  readonly tokenizerConfig: Record<string, unknown>;
  /** 256 + merges + 2. */
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
}

/** Options for {@linkcode tinyBpeTokenizer}. */
export interface TinyBpeTokenizerOptions {
  /** Merges to learn. @default 254, for a vocabulary of 512 */
  merges?: number;
}

function _special(id: number, content: string): Record<string, unknown> {
  return {
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

/**
 * Builds the tokenizer; the same options always give the same JSON.
 *
 * @throws {RangeError} when the training text cannot give that many merges.
 */
export function tinyBpeTokenizer(options: TinyBpeTokenizerOptions = {}): TinyBpeTokenizer {
  const byteChars = _byteChars();
  const merges = _learnMerges(options.merges ?? 254, byteChars);
  const vocab: Record<string, number> = {};
  byteChars.forEach((c, b) => vocab[c] = b);
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  const bosId = Object.keys(vocab).length;
  const eosId = bosId + 1;
  const bos = "<|begin_of_text|>";
  const eos = "<|end_of_text|>";
  const tokenizerJson = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [_special(bosId, bos), _special(eosId, eos)],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: { Regex: LLAMA3_SPLIT_PATTERN },
          behavior: "Isolated",
          invert: false,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: true,
      vocab,
      merges,
    },
  };
  const decoder = (id: number, content: string) => {
    const { id: _, ...rest } = _special(id, content);
    return rest;
  };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: { [bosId]: decoder(bosId, bos), [eosId]: decoder(eosId, eos) },
    bos_token: bos,
    eos_token: eos,
    clean_up_tokenization_spaces: true,
    model_max_length: 2048,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  return { tokenizerJson, tokenizerConfig, vocabSize: eosId + 1, bosId, eosId };
}

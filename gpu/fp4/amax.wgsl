// Largest finite |x| of float32 or bfloat16 rows, folded into one word with atomicMax: the GPU
// twin of finiteAmax (stages/encode/finite.ts), so the outer scale of a tensor kept on the GPU
// equals the pre-pass's. Finite magnitudes order like their bits (sign cleared), so the max is
// an integer max over raw bits: exact in any order, no float arithmetic. NaN and ±inf are
// skipped; the encoder reports them.
//
// Each workgroup reduces a span of WORDS_PER_GROUP words, its invocations reading interleaved
// words (coalesced), then one atomicMax per workgroup. Loops stay far below llvmpipe's
// per-invocation cap of 65535 iterations (see encode.wgsl).

struct Params {
  n_words: u32,    // input length in 32-bit words
  input_kind: u32, // 0: float32 bits; 1: bfloat16, two per word (low half first)
  groups_x: u32,   // workgroups per row of the 2-D dispatch
  slot: u32,       // word of `result` to fold into
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<u32>;
@group(0) @binding(2) var<storage, read_write> result: array<atomic<u32>>;

const WORKGROUP: u32 = 256u;
const WORDS_PER_INVOCATION: u32 = 64u;
const WORDS_PER_GROUP: u32 = WORKGROUP * WORDS_PER_INVOCATION;

var<workgroup> partial: array<u32, WORKGROUP>;

// |x| bits of a finite float32, 0 for NaN and ±inf.
fn magnitude(bits: u32) -> u32 {
  let a = bits & 0x7fffffffu;
  return select(a, 0u, a >= 0x7f800000u);
}

@compute @workgroup_size(WORKGROUP)
fn main(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) lane: u32,
) {
  let base = (group.y * params.groups_x + group.x) * WORDS_PER_GROUP;
  var m = 0u;
  for (var k = 0u; k < WORDS_PER_INVOCATION; k++) {
    let i = base + k * WORKGROUP + lane;
    if (i >= params.n_words) {
      break;
    }
    let w = xs[i];
    if (params.input_kind == 0u) {
      m = max(m, magnitude(w));
    } else {
      m = max(m, max(magnitude(w << 16u), magnitude(w & 0xffff0000u)));
    }
  }
  partial[lane] = m;
  workgroupBarrier();
  for (var s = WORKGROUP / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      partial[lane] = max(partial[lane], partial[lane + s]);
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
    atomicMax(&result[params.slot], partial[0]);
  }
}

// One FP4 block encoder for every format (NVFP4, MXFP4, ROCmFP4, ROCmFP4_FAST, AMD-FP4).
// The algorithm and its float32 rules are documented in sub_block.ts, the CPU twin this kernel
// must match byte for byte. In short: work relative to each sub-block's exponent, flush results
// below 2^-125, compare bits instead of dividing, and keep the error sum out of reach of FMA
// contraction with opaque().
//
// Formats are data: geometry and codebook arrive in the uniform block and the lookup tables in a
// storage buffer, so one pipeline serves every format (llvmpipe spends seconds compiling each
// pipeline). Each invocation encodes one sub-block and ORs its bytes into the output words, which
// the shell clears first: blocks of 17, 18 or 9 bytes share words. The two error flags live in
// the two words after the output, so one clear and one copy serve both.
//
// Speed (NVIDIA H200, NVFP4 full + imatrix): the error sum of a candidate is the hot loop. It
// picks each element's quantized value with seven selects against thresholds and level values
// computed once per candidate, and reads nothing from private arrays but the element and its
// weight; indexing private arrays by a computed level index (local memory on NVIDIA) made the
// kernel 4× slower. Scoring four candidates at once in vec4 lanes was slower still.
//
// Loop budget: llvmpipe (Mesa's software driver, our CI adapter) silently ends every loop of an
// invocation once the invocation has run 65535 loop iterations in total. Levels are therefore
// picked without loops, and the worst case here (511 candidates of 32 elements) stays near 17k.

struct Params {
  n_blocks: u32,
  n_per_row: u32,
  mode: u32,          // 0 rtn, 1 window, 2 full
  window: u32,
  four_over_six: u32,
  weight_kind: u32,   // 0 none, 1 per column, 2 per element
  inv_outer: f32,     // 1.0 when there is no outer scale
  max_abs_bits: u32,  // largest |x| bits that inv_outer does not overflow
  zero: u32,          // always 0; see opaque()
  stride_y: u32,      // invocations per row of the 2-D dispatch
  n_words: u32,       // output length in 32-bit words
  block: u32,         // elements per block
  sub: u32,           // elements per scale
  block_bytes: u32,
  scale_offset: u32,  // byte of sub-block 0's scale in a block
  code_offset: u32,   // first code byte in a block
  pair: u32,          // elements per nibble-pairing unit
  min_code: u32,      // lowest code the searches try
  max_code: u32,      // highest code written
  reciprocal: u32,    // 1: ROCmFP4's x·fl(1/d) element rule; 0: ggml's nearest
  input_kind: u32,    // 0: xs holds float32 bits; 1: bfloat16, two per word (low half first)
  outer_source: u32,  // 0: inv_outer and max_abs_bits above; 1: outer_record (see below)
  head_rows: u32,     // rows per head when xs holds Q/K rows in rotate-half order; 0: in order
  levels: array<vec4<f32>, 2>, // magnitudes of codes 0..7 in half-scale units
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
// thresholds top [0, 256), thresholds four [256, 512), hSig bits [512, 768),
// hExp [768, 1024), rSig bits [1024, 1280), top usable level [1280, 1536)
@group(0) @binding(3) var<storage, read> tables: array<u32>;
@group(0) @binding(4) var<storage, read_write> out_words: array<atomic<u32>>;
// Packed output words, then two flags: word n_words holds 0xffffffff − (first non-finite
// element), word n_words + 1 the same for the first element the outer scale overflows; 0 = none.
// The shell zeroes all of it, and atomicMax keeps the first element.
// With outer_source 1, the record outer_scale.wgsl wrote (amax, outer, 1/outer as float32 bits):
// an outer scale found on the GPU. Found from this tensor's own amax, it overflows no element.
@group(0) @binding(5) var<storage, read> outer_record: array<u32, 4>;

const MODE_RTN: u32 = 0u;
const MODE_WINDOW: u32 = 1u;
const MODE_FULL: u32 = 2u;
const LOW_K: i32 = -120;
const HIGH_K: i32 = 40;
const NO_K: i32 = -100000;
// Larger than any error: the largest finite float32 (WGSL may assume there are no infinities).
const INFINITY: f32 = 3.40282347e38;
const SKIP: i32 = -1;
const DONE: i32 = -2;

var<private> levels: array<f32, 8>;
var<private> mids: array<f32, 7>;
var<private> reciprocal: bool;
// Highest usable level of the current code (levels beyond it overflow float32).
var<private> top: u32;
var<private> ax: array<f32, 32>;
var<private> wv: array<f32, 32>;
var<private> neg_mask: u32;
// Output words of the current block, relative to the word holding its first byte.
var<private> words: array<u32, 10>;
var<private> amax: f32;
var<private> amax_bits: u32;
var<private> ec: i32;
var<private> amax_scaled: f32;
var<private> min_weighted: f32;
var<private> has_weighted: bool;
var<private> zero_error: f32;

fn flush(v: f32) -> f32 {
  return select(v, 0.0, abs(v) < bitcast<f32>(0x01000000u)); // 2^-125
}

// An identity the compiler cannot see through, so `sum + opaque(t1 * e)` is never fused.
fn opaque(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ params.zero);
}

// 2^k for k in [-126, 127].
fn pow2(k: i32) -> f32 {
  return bitcast<f32>(u32(k + 127) << 23u);
}

fn exponent_of(v: f32) -> i32 {
  return i32(bitcast<u32>(v) >> 23u) - 127;
}

// Float32 bits of element i; a bfloat16 is its float32's top half, exactly.
fn input_bits(i: u32) -> u32 {
  if (params.input_kind == 0u) {
    return xs[i];
  }
  let w = xs[i >> 1u];
  return select(w << 16u, w & 0xffff0000u, (i & 1u) == 1u);
}

// First input element of the output sub-block at element i: with head_rows, output row 2k + p of
// each head reads input row p·head_rows/2 + k (llama.cpp's rope pairs; gpu/rope_rows.ts).
fn source_of(i: u32) -> u32 {
  if (params.head_rows == 0u) {
    return i;
  }
  let row = i / params.n_per_row;
  let h = row % params.head_rows;
  let src_row = row - h + (h & 1u) * (params.head_rows / 2u) + (h >> 1u);
  return src_row * params.n_per_row + (i - row * params.n_per_row);
}

fn load_sub(start: u32) {
  let n = params.sub;
  let source = source_of(start);
  var am = 0.0;
  neg_mask = 0u;
  var inv_outer = params.inv_outer;
  var max_abs_bits = params.max_abs_bits;
  if (params.outer_source == 1u) {
    inv_outer = bitcast<f32>(outer_record[2]);
    max_abs_bits = 0x7f7fffffu;
  }
  let use_outer = inv_outer != 1.0;
  for (var j = 0u; j < n; j++) {
    let i = start + j;
    let bits = input_bits(source + j);
    var a = 0.0;
    if ((bits & 0x7f800000u) == 0x7f800000u) {
      atomicMax(&out_words[params.n_words], 0xffffffffu - i);
    } else if (use_outer && (bits & 0x7fffffffu) > max_abs_bits) {
      atomicMax(&out_words[params.n_words + 1u], 0xffffffffu - i);
    } else if ((bits & 0x7f800000u) != 0u) {
      a = bitcast<f32>(bits & 0x7fffffffu);
      if (use_outer) {
        a = flush(a * inv_outer);
      }
    }
    if ((bits >> 31u) != 0u) {
      neg_mask |= 1u << j;
    }
    ax[j] = a;
    am = max(am, a);
  }
  amax = am;
  var wmax = 0.0;
  for (var j = 0u; j < n; j++) {
    var w = 1.0;
    if (params.weight_kind != 0u) {
      var raw: u32;
      if (params.weight_kind == 1u) {
        raw = weights[(start + j) % params.n_per_row];
      } else {
        raw = weights[start + j];
      }
      w = select(bitcast<f32>(raw), 0.0, (raw & 0x7f800000u) == 0u);
      wmax = max(wmax, w);
    }
    wv[j] = w;
  }
  if (am == 0.0) {
    has_weighted = false;
    zero_error = 0.0;
    return;
  }
  amax_bits = bitcast<u32>(am);
  ec = min(exponent_of(am), 126);
  let p = pow2(-ec);
  amax_scaled = am * p;
  var pw = 1.0;
  if (wmax > 0.0) {
    pw = pow2(-min(exponent_of(wmax), 126));
  }
  var mw = 0.0;
  has_weighted = false;
  var zero = 0.0;
  for (var j = 0u; j < n; j++) {
    let a = flush(ax[j] * p);
    ax[j] = a;
    var w = wv[j];
    if (wmax > 0.0) {
      w = flush(w * pw);
      wv[j] = w;
    }
    if (w > 0.0 && a > 0.0 && (!has_weighted || a < mw)) {
      mw = a;
      has_weighted = true;
    }
    let t1 = flush(w * a);
    zero = zero + opaque(flush(t1 * a));
  }
  min_weighted = mw;
  zero_error = zero;
}

fn rtn_code(four: bool) -> u32 {
  if (amax == 0.0) {
    return 0u;
  }
  let base = select(0u, 256u, four);
  var lo = 0u;
  var hi = 255u;
  while (lo < hi) {
    let mid = (lo + hi + 1u) >> 1u;
    if (tables[base + mid] <= amax_bits) {
      lo = mid;
    } else {
      hi = mid - 1u;
    }
  }
  return lo;
}

fn h_sig(code: u32) -> f32 {
  return bitcast<f32>(tables[512u + code]);
}

// Exponent k of d' = sig·2^k, or NO_K for a zero scale.
fn k_of(code: u32) -> i32 {
  if (h_sig(code) == 0.0) {
    return NO_K;
  }
  return bitcast<i32>(tables[768u + code]) - ec;
}

fn scaled_half(code: u32) -> f32 {
  let k = k_of(code);
  if (k < LOW_K || k > HIGH_K) {
    return 0.0;
  }
  return h_sig(code) * pow2(k);
}

fn reciprocal_of(code: u32) -> f32 {
  return bitcast<f32>(tables[1024u + code]) * pow2(-k_of(code));
}

fn count_above(v: f32, scale: f32) -> u32 {
  return u32(v > mids[0] * scale) + u32(v > mids[1] * scale) + u32(v > mids[2] * scale) +
    u32(v > mids[3] * scale) + u32(v > mids[4] * scale) + u32(v > mids[5] * scale) +
    u32(v > mids[6] * scale);
}

fn try_level(best: ptr<function, u32>, best_err: ptr<function, f32>, m: u32, a: f32, d: f32) {
  let err = flush(a - levels[m] * d);
  if (m <= top && err < *best_err) {
    *best = m;
    *best_err = err;
  }
}

// ggml's first-minimum rule beyond the top level, where float32 distances may round together.
fn saturated_level(a: f32, d: f32) -> u32 {
  var best = 0u;
  var best_err = a;
  try_level(&best, &best_err, 1u, a, d);
  try_level(&best, &best_err, 2u, a, d);
  try_level(&best, &best_err, 3u, a, d);
  try_level(&best, &best_err, 4u, a, d);
  try_level(&best, &best_err, 5u, a, d);
  try_level(&best, &best_err, 6u, a, d);
  try_level(&best, &best_err, 7u, a, d);
  return best;
}

fn top_level(code: u32) -> u32 {
  return tables[1280u + code];
}

// The level of a scaled magnitude for scale d' (rp = fl(1/d') for the reciprocal rule), at most
// `top` (set it for the code first).
fn level_of(a: f32, d: f32, rp: f32) -> u32 {
  if (reciprocal) {
    return min(count_above(flush(a * rp), 1.0), top);
  }
  if (a > levels[top] * d) {
    return saturated_level(a, d);
  }
  return count_above(a, d);
}

// With a finite `bound` the sum may stop at any value ≥ bound (terms are ≥ 0, so partial sums
// never fall): such a candidate cannot win under strict <. Pass INFINITY for the exact error.
fn error_of(code: u32, bound: f32) -> f32 {
  if (amax == 0.0) {
    return 0.0;
  }
  let d = scaled_half(code);
  if (d == 0.0) {
    return zero_error;
  }
  var rp = 0.0;
  var s = d;
  if (reciprocal) {
    rp = reciprocal_of(code);
    s = 1.0;
  }
  // The level of a is the count of thresholds below it, capped at the top usable level; its
  // value times d' is picked by selects. Beyond the top level ggml's first minimum has the top
  // level's error (the distances never rise with the level), so capping q gives the same error.
  let t0 = mids[0] * s;
  let t1 = mids[1] * s;
  let t2 = mids[2] * s;
  let t3 = mids[3] * s;
  let t4 = mids[4] * s;
  let t5 = mids[5] * s;
  let t6 = mids[6] * s;
  let l = params.levels;
  let q0 = l[0].x * d;
  let q1 = l[0].y * d;
  let q2 = l[0].z * d;
  let q3 = l[0].w * d;
  let q4 = l[1].x * d;
  let q5 = l[1].y * d;
  let q6 = l[1].z * d;
  let q7 = l[1].w * d;
  let qtop = levels[top_level(code)] * d;
  var sum = 0.0;
  for (var j = 0u; j < params.sub && sum < bound; j++) {
    let a = ax[j];
    var v = a;
    if (reciprocal) {
      v = flush(a * rp);
    }
    var q = select(q0, q1, v > t0);
    q = select(q, q2, v > t1);
    q = select(q, q3, v > t2);
    q = select(q, q4, v > t3);
    q = select(q, q5, v > t4);
    q = select(q, q6, v > t5);
    q = select(q, q7, v > t6);
    q = min(q, qtop);
    let e = flush(a - q);
    let t = flush(wv[j] * e);
    sum = sum + opaque(flush(t * e));
  }
  return sum;
}

// First code in [first, last] whose d' reaches the bound (monotone), or last + 1.
// which = 0: top·d' ≥ min_weighted; which = 1: d' ≥ amax' (nearest) or 4·amax' (reciprocal).
fn first_reaching(first: u32, last: u32, which: u32) -> u32 {
  var lo = first;
  var hi = last + 1u;
  var bound = min_weighted;
  if (which == 1u) {
    bound = select(amax_scaled, 4.0 * amax_scaled, reciprocal);
  }
  while (lo < hi) {
    let mid = (lo + hi) >> 1u;
    let k = k_of(mid);
    let factor = select(levels[top_level(mid)], 1.0, which == 1u);
    var reached = false;
    if (k > HIGH_K) {
      reached = true;
    } else if (k >= LOW_K) {
      reached = factor * (h_sig(mid) * pow2(k)) >= bound;
    }
    if (reached) {
      hi = mid;
    } else {
      lo = mid + 1u;
    }
  }
  return lo;
}

// The n-th candidate code of a search, SKIP for a code out of range, DONE after the last.
// rtn: base (and the Four-over-Six code); window: base, base-1, base+1, ..., base+W (and the
// Four-over-Six code); full: lo..hi ascending.
fn candidate(n: u32, base: u32, four: u32, lo: u32, hi: u32) -> i32 {
  if (params.mode == MODE_FULL) {
    return select(DONE, i32(lo + n), lo + n <= hi);
  }
  let w = select(params.window, 0u, params.mode == MODE_RTN);
  if (n == 0u) {
    return i32(base);
  }
  if (n <= 2u * w) {
    let k = i32((n + 1u) / 2u);
    let c = select(i32(base) + k, i32(base) - k, n % 2u == 1u);
    return select(SKIP, c, c >= i32(params.min_code) && c <= i32(params.max_code));
  }
  if (n == 2u * w + 1u && params.four_over_six != 0u) {
    return i32(four);
  }
  return DONE;
}

fn choose() -> u32 {
  if (amax == 0.0) {
    return 0u;
  }
  let full = params.mode == MODE_FULL;
  if (full && !has_weighted) {
    return params.min_code;
  }
  var base = 0u;
  var four = 0u;
  var lo = 0u;
  var hi = 0u;
  if (full) {
    let c_lo = first_reaching(params.min_code, params.max_code, 0u);
    lo = params.min_code;
    if (c_lo > params.max_code) {
      lo = params.max_code;
    } else if (c_lo > params.min_code) {
      lo = c_lo - 1u;
    }
    hi = min(first_reaching(lo, params.max_code, 1u), params.max_code);
  } else {
    base = rtn_code(false);
    if (params.four_over_six == 0u && params.mode == MODE_RTN) {
      return base;
    }
    four = rtn_code(params.four_over_six != 0u);
  }
  var best = 0u;
  var best_err = 0.0;
  var n = 0u;
  loop {
    let c = candidate(n, base, four, lo, hi);
    n++;
    if (c == DONE) {
      break;
    }
    if (c == SKIP) {
      continue;
    }
    let e = error_of(u32(c), select(best_err, INFINITY, n == 1u));
    if (n == 1u || e < best_err) {
      best = u32(c);
      best_err = e;
    }
  }
  // full: below lo errors never fall as the code rises; take the lowest code of a tie.
  if (full && best == lo) {
    var c = lo;
    loop {
      if (c <= params.min_code) {
        break;
      }
      c -= 1u;
      if (error_of(c, INFINITY) != best_err) {
        break;
      }
      best = c;
    }
  }
  return best;
}

fn put_byte(offset: u32, value: u32) {
  words[offset >> 2u] |= value << ((offset & 3u) * 8u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let per_block = params.block / params.sub;
  let g = gid.x + gid.y * params.stride_y;
  if (g >= params.n_blocks * per_block) {
    return;
  }
  let block = g / per_block;
  let s = g - block * per_block;
  let l = params.levels;
  levels = array<f32, 8>(l[0].x, l[0].y, l[0].z, l[0].w, l[1].x, l[1].y, l[1].z, l[1].w);
  for (var k = 0u; k < 7u; k++) {
    mids[k] = (levels[k] + levels[k + 1u]) * 0.5;
  }
  reciprocal = params.reciprocal != 0u;
  for (var i = 0u; i < 10u; i++) {
    words[i] = 0u;
  }
  let first_byte = block * params.block_bytes;
  let lead = first_byte & 3u;
  load_sub(block * params.block + s * params.sub);
  let code = choose();
  put_byte(lead + params.scale_offset + s, code);
  var d = 0.0;
  if (amax != 0.0) {
    d = scaled_half(code);
  }
  if (d != 0.0) {
    var rp = 0.0;
    if (reciprocal) {
      rp = reciprocal_of(code);
    }
    top = top_level(code);
    let half = params.pair / 2u;
    for (var j = 0u; j < params.sub; j++) {
      var m = level_of(ax[j], d, rp);
      if (m != 0u && ((neg_mask >> j) & 1u) != 0u) {
        m |= 8u;
      }
      let i = s * params.sub + j;
      let unit = i / params.pair;
      let k = i - unit * params.pair;
      let byte = lead + params.code_offset + unit * half + (k % half);
      put_byte(byte, select(m << 4u, m, k < half));
    }
  }
  let word0 = first_byte >> 2u;
  for (var i = 0u; i < 10u; i++) {
    if (words[i] != 0u && word0 + i < params.n_words) {
      atomicOr(&out_words[word0 + i], words[i]);
    }
  }
}

// One FP4 block encoder for every format (NVFP4, MXFP4, ROCmFP4, ROCmFP4_FAST, AMD-FP4).
// The algorithm and its float32 rules are documented in sub_block.ts, the CPU twin this kernel
// must match byte for byte. In short: work relative to each sub-block's exponent, flush results
// below 2^-125, compare bits instead of dividing, and keep the error sum out of reach of FMA
// contraction with opaque().
//
// Format geometry is baked in through override constants (one pipeline per format); everything
// else is a uniform. Each invocation encodes BLOCKS_PER_THREAD consecutive blocks, a whole number
// of 32-bit words of output.

override BLOCK: u32 = 64u;
override SUB: u32 = 16u;
override BLOCK_BYTES: u32 = 36u;
override SCALE_OFFSET: u32 = 0u;
override CODE_OFFSET: u32 = 4u;
override PAIR: u32 = 16u;
override BLOCKS_PER_THREAD: u32 = 1u;
override MIN_CODE: u32 = 1u;
override MAX_CODE: u32 = 126u;
override RECIPROCAL: bool = false;
override L1: f32 = 1.0;
override L2: f32 = 2.0;
override L3: f32 = 3.0;
override L4: f32 = 4.0;
override L5: f32 = 6.0;
override L6: f32 = 8.0;
override L7: f32 = 12.0;
override WORKGROUP: u32 = 64u;

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
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> xs: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<u32>;
// thresholds top [0, 256), thresholds four [256, 512), hSig bits [512, 768),
// hExp [768, 1024), rSig bits [1024, 1280)
@group(0) @binding(3) var<storage, read> tables: array<u32>;
@group(0) @binding(4) var<storage, read_write> out_words: array<u32>;
// [0]: first non-finite element, [1]: first element the outer scale overflows
@group(0) @binding(5) var<storage, read_write> flags: array<atomic<u32>, 2>;

const MODE_RTN: u32 = 0u;
const MODE_WINDOW: u32 = 1u;
const LOW_K: i32 = -120;
const HIGH_K: i32 = 40;
const NO_K: i32 = -100000;

var<private> levels: array<f32, 8>;
var<private> mids: array<f32, 7>;
var<private> ax: array<f32, 32>;
var<private> wv: array<f32, 32>;
var<private> neg_mask: u32;
var<private> words: array<u32, 17>;
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

fn load_sub(start: u32) {
  var am = 0.0;
  neg_mask = 0u;
  let use_outer = params.inv_outer != 1.0;
  for (var j = 0u; j < SUB; j++) {
    let i = start + j;
    let bits = xs[i];
    var a = 0.0;
    if ((bits & 0x7f800000u) == 0x7f800000u) {
      atomicMin(&flags[0], i);
    } else if (use_outer && (bits & 0x7fffffffu) > params.max_abs_bits) {
      atomicMin(&flags[1], i);
    } else if ((bits & 0x7f800000u) != 0u) {
      a = bitcast<f32>(bits & 0x7fffffffu);
      if (use_outer) {
        a = flush(a * params.inv_outer);
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
  for (var j = 0u; j < SUB; j++) {
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
  for (var j = 0u; j < SUB; j++) {
    ax[j] = flush(ax[j] * p);
  }
  amax_scaled = am * p;
  if (wmax > 0.0) {
    let pw = pow2(-min(exponent_of(wmax), 126));
    for (var j = 0u; j < SUB; j++) {
      wv[j] = flush(wv[j] * pw);
    }
  }
  var mw = 0.0;
  has_weighted = false;
  var zero = 0.0;
  for (var j = 0u; j < SUB; j++) {
    let a = ax[j];
    let w = wv[j];
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

fn level_of(a: f32, d: f32, rp: f32) -> u32 {
  if (RECIPROCAL) {
    let r = flush(a * rp);
    var m = 0u;
    while (m < 7u && r > mids[m]) {
      m++;
    }
    return m;
  }
  if (a > levels[7] * d) {
    var best = 0u;
    var best_err = a;
    for (var m = 1u; m < 8u; m++) {
      let err = flush(a - levels[m] * d);
      if (err < best_err) {
        best = m;
        best_err = err;
      }
    }
    return best;
  }
  var m = 0u;
  while (m < 7u && a > mids[m] * d) {
    m++;
  }
  return m;
}

fn error_of(code: u32) -> f32 {
  if (amax == 0.0) {
    return 0.0;
  }
  let d = scaled_half(code);
  if (d == 0.0) {
    return zero_error;
  }
  var rp = 0.0;
  if (RECIPROCAL) {
    rp = reciprocal_of(code);
  }
  var sum = 0.0;
  for (var j = 0u; j < SUB; j++) {
    let a = ax[j];
    let q = levels[level_of(a, d, rp)] * d;
    let e = flush(a - q);
    let t1 = flush(wv[j] * e);
    sum = sum + opaque(flush(t1 * e));
  }
  return sum;
}

// First code in [from, to] whose d' reaches the bound (monotone), or to + 1.
// which = 0: level7·d' ≥ min_weighted; which = 1: d' ≥ amax' (nearest) or 4·amax' (reciprocal).
fn first_reaching(from: u32, to: u32, which: u32) -> u32 {
  var lo = from;
  var hi = to + 1u;
  var bound = min_weighted;
  var factor = levels[7];
  if (which == 1u) {
    bound = select(amax_scaled, 4.0 * amax_scaled, RECIPROCAL);
    factor = 1.0;
  }
  while (lo < hi) {
    let mid = (lo + hi) >> 1u;
    let k = k_of(mid);
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

fn choose_full() -> u32 {
  if (!has_weighted) {
    return MIN_CODE;
  }
  let c_lo = first_reaching(MIN_CODE, MAX_CODE, 0u);
  var start = MIN_CODE;
  if (c_lo > MAX_CODE) {
    start = MAX_CODE;
  } else if (c_lo > MIN_CODE) {
    start = c_lo - 1u;
  }
  let end = min(first_reaching(start, MAX_CODE, 1u), MAX_CODE);
  var best = start;
  var best_err = error_of(start);
  for (var c = start + 1u; c <= end; c++) {
    let e = error_of(c);
    if (e < best_err) {
      best = c;
      best_err = e;
    }
  }
  if (best == start) {
    var c = i32(start) - 1;
    while (c >= i32(MIN_CODE) && error_of(u32(c)) == best_err) {
      best = u32(c);
      c--;
    }
  }
  return best;
}

fn choose() -> u32 {
  if (amax == 0.0) {
    return 0u;
  }
  if (params.mode == 2u) {
    return choose_full();
  }
  let base = rtn_code(false);
  let four = params.four_over_six != 0u;
  var best = base;
  if (params.mode == MODE_RTN) {
    if (four) {
      let alt = rtn_code(true);
      if (alt != base && error_of(alt) < error_of(base)) {
        best = alt;
      }
    }
    return best;
  }
  var best_err = error_of(base);
  for (var k = 1u; k <= params.window; k++) {
    let below = i32(base) - i32(k);
    let above = base + k;
    if (below < i32(MIN_CODE) && above > MAX_CODE) {
      break;
    }
    if (below >= i32(MIN_CODE) && below <= i32(MAX_CODE)) {
      let e = error_of(u32(below));
      if (e < best_err) {
        best = u32(below);
        best_err = e;
      }
    }
    if (above >= MIN_CODE && above <= MAX_CODE) {
      let e = error_of(above);
      if (e < best_err) {
        best = above;
        best_err = e;
      }
    }
  }
  if (four) {
    let alt = rtn_code(true);
    if (error_of(alt) < best_err) {
      best = alt;
    }
  }
  return best;
}

fn put_byte(offset: u32, value: u32) {
  words[offset >> 2u] |= value << ((offset & 3u) * 8u);
}

fn encode_block(block: u32, byte0: u32) {
  let half = PAIR / 2u;
  for (var s = 0u; s < BLOCK / SUB; s++) {
    load_sub(block * BLOCK + s * SUB);
    let code = choose();
    put_byte(byte0 + SCALE_OFFSET + s, code);
    var d = 0.0;
    if (amax != 0.0) {
      d = scaled_half(code);
    }
    if (d == 0.0) {
      continue;
    }
    var rp = 0.0;
    if (RECIPROCAL) {
      rp = reciprocal_of(code);
    }
    for (var j = 0u; j < SUB; j++) {
      var m = level_of(ax[j], d, rp);
      if (m != 0u && ((neg_mask >> j) & 1u) != 0u) {
        m |= 8u;
      }
      let i = s * SUB + j;
      let unit = i / PAIR;
      let k = i - unit * PAIR;
      let byte = byte0 + CODE_OFFSET + unit * half + (k % half);
      put_byte(byte, select(m << 4u, m, k < half));
    }
  }
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x + gid.y * params.stride_y;
  let first = t * BLOCKS_PER_THREAD;
  if (first >= params.n_blocks) {
    return;
  }
  levels = array<f32, 8>(0.0, L1, L2, L3, L4, L5, L6, L7);
  for (var k = 0u; k < 7u; k++) {
    mids[k] = (levels[k] + levels[k + 1u]) * 0.5;
  }
  let n_words = BLOCKS_PER_THREAD * BLOCK_BYTES / 4u;
  for (var i = 0u; i < 17u; i++) {
    words[i] = 0u;
  }
  for (var b = 0u; b < BLOCKS_PER_THREAD; b++) {
    let block = first + b;
    if (block >= params.n_blocks) {
      break;
    }
    encode_block(block, b * BLOCK_BYTES);
  }
  for (var i = 0u; i < n_words; i++) {
    out_words[t * n_words + i] = words[i];
  }
}

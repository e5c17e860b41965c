// The outer scale of tensors from their amax, on the GPU, so that an encode can read it without a
// read-back: outer = fl(amax / divisor) kept within 2^±100 (1 for an all-zero tensor), and
// fl(1 / outer), both exactly what outer_scale.ts and search_options.ts compute on the CPU. Those
// round a double quotient to float32, which equals the correctly rounded float32 quotient
// (double rounding is innocuous for division of 24-bit operands, as 53 ≥ 2·24 + 2). WGSL's float
// division may be 2.5 ulp off, so the quotients here are long divisions of the significands.
//
// Records of four words: amax bits (in), outer scale bits, 1/outer bits (out), unused.

struct Params {
  divisor_bits: u32, // float32 bits of the divisor (top level × largest usable scale)
  count: u32,        // records
  pad0: u32,
  pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> records: array<u32>;

const LOW: u32 = 0x0d800000u;  // 2^-100
const HIGH: u32 = 0x71800000u; // 2^100
const ONE: u32 = 0x3f800000u;

// Float32 bits of x / y rounded to nearest, ties to even, for positive normal x and y, kept
// within [2^-100, 2^100].
fn divide_clamped(x: u32, y: u32) -> u32 {
  var mx = (x & 0x7fffffu) | 0x800000u;
  let my = (y & 0x7fffffu) | 0x800000u;
  var e = i32(x >> 23u) - i32(y >> 23u);
  if (mx < my) {
    mx <<= 1u;
    e -= 1;
  }
  // mx / my lies in [1, 2): 24 quotient bits, the remainder kept below 2·my < 2^25.
  var q = 0u;
  var r = mx;
  for (var i = 0u; i < 24u; i++) {
    q <<= 1u;
    if (r >= my) {
      r -= my;
      q |= 1u;
    }
    r <<= 1u;
  }
  // r is twice the remainder: round up past half an ulp, and at half to even.
  if (r > my || (r == my && (q & 1u) == 1u)) {
    q += 1u;
  }
  if (q == 0x1000000u) {
    q = 0x800000u;
    e += 1;
  }
  if (e < -100) {
    return LOW;
  }
  if (e > 100) {
    return HIGH;
  }
  return min((u32(e + 127) << 23u) | (q & 0x7fffffu), HIGH);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let k = id.x;
  if (k >= params.count) {
    return;
  }
  let amax = records[4u * k];
  var outer = ONE;
  if (amax >= 0x00800000u) {
    outer = divide_clamped(amax, params.divisor_bits);
  } else if (amax != 0u) {
    outer = LOW; // a subnormal amax: far below 2^-100 once divided
  }
  records[4u * k + 1u] = outer;
  records[4u * k + 2u] = divide_clamped(ONE, outer);
}

const lib = Deno.dlopen("libc.so.6", { pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true }, open: { parameters: ["buffer", "i32", "i32"], result: "i32" } });
const fd = lib.symbols.open(new TextEncoder().encode("/dev/null\0"), 1, 0);
for (const size of [4096, 512 << 10, 4 << 20]) {
  const b = new Uint8Array(size);
  const n = Math.min(4000, (2 << 29) / size);
  let t0 = performance.now();
  let main = 0;
  for (let i = 0; i < n; i++) { const s = performance.now(); const p = lib.symbols.pwrite(fd, b, BigInt(size), 0n); main += performance.now() - s; await p; }
  console.log(`size ${size}: ${n} calls, ${((performance.now() - t0) / n * 1000).toFixed(1)} µs per call, ${(main / n * 1000).toFixed(1)} µs in the call itself`);
}

const f = await Deno.open(".bench/core/model/model-00002-of-00004.safetensors");
const buf = new Uint8Array(8 << 20);
let ticks = 0, maxGap = 0, last = performance.now();
const iv = setInterval(() => { const n = performance.now(); maxGap = Math.max(maxGap, n - last); last = n; ticks++; }, 0);
const t0 = performance.now();
let total = 0;
for (;;) { const n = await f.read(buf); if (n === null) break; total += n; }
const ms = performance.now() - t0;
clearInterval(iv);
console.log(`read ${(total / 1e6).toFixed(0)} MB in ${ms.toFixed(0)} ms; timer ticks ${ticks}, max gap ${maxGap.toFixed(1)} ms`);

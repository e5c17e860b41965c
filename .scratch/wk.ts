const url = new URL("../stages/encode/encode_worker.ts", import.meta.url).href;
for (let i = 0; i < 4; i++) {
  const t0 = performance.now();
  const w = new Worker(url, { type: "module" });
  const t1 = performance.now();
  console.log(`new Worker ${(t1 - t0).toFixed(1)} ms`);
  w.terminate();
}

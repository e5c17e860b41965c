import { plainParallelDownload } from "../bench/hub_download.ts";
const ep = Deno.args[0]!;
const dir = ".bench/core/model";
const shards = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".safetensors")).sort();
const cpu = () => { const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" "); return [Number(f[11]) * 10, Number(f[12]) * 10]; };
const c0 = cpu(); const t0 = performance.now();
for (let i = 0; i < shards.length; i++) {
  const path = `/tmp/download-${i}.bin`;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const size = Deno.statSync(`${dir}/${shards[i]}`).size;
  await plainParallelDownload(`${ep}/bench/core/resolve/main/${shards[i]}`, size, 8, {
    onBytes: (offset, bytes) => { file.seekSync(offset, Deno.SeekMode.Start); for (let d = 0; d < bytes.length;) d += file.writeSync(bytes.subarray(d)); },
  });
  await file.syncData();
}
const c1 = cpu();
console.log(`download wall ${((performance.now() - t0) / 1000).toFixed(2)} user ${(c1[0]! - c0[0]!) / 1000} sys ${(c1[1]! - c0[1]!) / 1000}`);
for (let i = 0; i < shards.length; i++) await Deno.remove(`/tmp/download-${i}.bin`);

import { HubSource } from "./stages/hub_source.ts";
import { HubTestServer } from "./testing/hub_server.ts";
const dir = await Deno.makeTempDir();
const size = 256 << 20;
await Deno.writeFile(`${dir}/a.safetensors`, new Uint8Array(size));
const hub = HubTestServer.start();
await hub.addRepo("acme/big", dir);
for (let k = 0; k < 3; k++) {
  const src = await HubSource.open("hf:acme/big", { endpoint: hub.endpoint, token: null });
  const t = performance.now();
  let n = 0, chunks = 0;
  for await (const c of src.readRanges([{ path: "a.safetensors", start: 0, end: size }])) {
    n += c.bytes.length;
    chunks++;
  }
  const s = (performance.now() - t) / 1000;
  console.log(
    "hub source",
    (n / s / 1e6).toFixed(0),
    "MB/s",
    "avg chunk KiB",
    (n / chunks / 1024).toFixed(0),
  );
}
await hub.close();
await Deno.remove(dir, { recursive: true });

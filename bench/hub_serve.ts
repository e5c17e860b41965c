/**
 * Serves a model folder as the Hub repo `bench/core` on 127.0.0.1 until killed; prints
 * `{"endpoint": ...}` on the first line. The Hub benchmark runs it in its own process so that the
 * server does not share a thread with either contender.
 *
 * @module
 */
import { HubTestServer } from "../testing/hub_server.ts";

const dir = Deno.args[0];
if (!dir) throw new TypeError("usage: hub_serve.ts <model-dir>");
const hub = HubTestServer.start({ cdn: "separate" });
await hub.addRepo("bench/core", dir);
console.log(JSON.stringify({ endpoint: hub.endpoint }));
await new Promise(() => {});

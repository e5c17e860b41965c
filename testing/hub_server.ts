/**
 * A Hugging Face Hub stand-in on 127.0.0.1 for tests and benchmarks, serving model repos from
 * local folders. It answers what `@huggingface/hub` (`modelInfo`, `listFiles`, `downloadFile`,
 * `fileDownloadInfo`) and the Hub source call:
 *
 * - `GET /api/models/{repo}[/revision/{rev}]`: model info with `sha` and `siblings`;
 * - `GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=&cursor=`: paged listing (`Link` next);
 * - `GET|HEAD /{repo}/resolve/{rev}/{path}`: small files served with Range, ETag,
 *   `X-Repo-Commit`; large (LFS) files answered `302` to a CDN URL with `X-Linked-Size` and
 *   `X-Linked-Etag`, on a second listener (another origin) unless `cdn: "same"`;
 * - `GET|HEAD /cdn/{repo}/{commit}/{path}?sig=`: the CDN, with Range and ETag, no auth.
 *
 * Private repos need `Authorization: Bearer <token>` (401 `RepoNotFound` otherwise); gated ones
 * answer 401 without a token and 403 `GatedRepo` with a token lacking access; an unknown token is
 * refused with 401 everywhere, like the Hub. Faults are injected per test with
 * {@linkcode HubTestServer.inject}; every request is recorded.
 *
 * A folder is snapshotted by path, size and mtime when committed: give each commit its own
 * folder and leave it unchanged.
 *
 * @module
 */
import {
  FileBodyStream,
  type HubFault,
  type HubFaultRule,
  type HubFaultTarget,
} from "./hub_faults.ts";

export type { HubFault, HubFaultRule, HubFaultTarget } from "./hub_faults.ts";

/** Options for {@linkcode HubTestServer.start}. */
export interface HubTestServerOptions {
  /** Where LFS redirects go: another port (a real second origin) or `/cdn/` on the Hub's. @default "separate" */
  cdn?: "separate" | "same";
  /** Files at least this big are LFS; `*.safetensors`, `*.bin`, `*.gguf` always are. @default 10 MiB */
  lfsThreshold?: number;
  /** Entries per page of a tree listing. @default 50 */
  pageSize?: number;
}

/** Options for {@linkcode HubTestServer.addRepo}. */
export interface HubTestRepoOptions {
  /** Needs a token from `tokens`; others get 401 RepoNotFound. */
  private?: boolean;
  /** Needs a token from `tokens`: 401 without a token, 403 with another one. */
  gated?: boolean;
  /** Tokens with access (each must start with hf_). */
  tokens?: readonly string[];
  /** @default "main" */
  branch?: string;
}

/** One request as the server saw it. */
export interface RecordedRequest {
  /** Which listener got it. */
  readonly server: "hub" | "cdn";
  readonly kind: HubFaultTarget | "other";
  readonly method: string;
  /** Path and query. */
  readonly url: string;
  /** File path in the repo for resolve and CDN requests, else null. */
  readonly file: string | null;
  readonly range: string | null;
  readonly authorization: string | null;
  /** `Date.now()` when it arrived. */
  readonly time: number;
  status: number;
  /** Body bytes sent. */
  bytes: number;
}

interface _File {
  readonly path: string;
  readonly abs: string;
  readonly size: number;
  readonly sha256: string;
  readonly oid: string;
  readonly lfs: boolean;
}

interface _Commit {
  readonly sha: string;
  readonly files: Map<string, _File>;
  readonly dirs: Set<string>;
}

interface _Repo {
  readonly id: string;
  readonly private: boolean;
  readonly gated: boolean;
  readonly tokens: Set<string>;
  readonly defaultBranch: string;
  readonly branches: Map<string, string>;
  readonly commits: Map<string, _Commit>;
}

interface _Rule {
  readonly rule: HubFaultRule;
  seen: number;
  hit: number;
}

const MIB = 1 << 20;
const LFS_NAMES = /\.(safetensors|bin|gguf|pt|pth)$/;
const JSON_HEADERS = { "Content-Type": "application/json; charset=utf-8" };

/** The test Hub. Close it with `await using` or {@linkcode HubTestServer.close}. */
export class HubTestServer implements AsyncDisposable {
  /** Base URL to pass as the Hub endpoint, e.g. `http://127.0.0.1:41234`. */
  readonly endpoint: string;
  /** Base URL of the CDN listener (same as `endpoint` with `cdn: "same"`). */
  readonly cdnEndpoint: string;
  /** Every request so far, in arrival order. */
  readonly requests: RecordedRequest[] = [];
  readonly #hub: Deno.HttpServer<Deno.NetAddr>;
  readonly #cdn: Deno.HttpServer<Deno.NetAddr> | null;
  readonly #repos = new Map<string, _Repo>();
  readonly #rules: _Rule[] = [];
  readonly #bodies = new Set<FileBodyStream>();
  readonly #lfsThreshold: number;
  readonly #pageSize: number;
  #commits = 0;
  #signatures = 0;

  private constructor(options: HubTestServerOptions) {
    this.#lfsThreshold = options.lfsThreshold ?? 10 * MIB;
    this.#pageSize = options.pageSize ?? 50;
    const serve = (server: "hub" | "cdn") =>
      Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        onListen: () => {},
        onError: (error) => new Response(`test server error: ${error}`, { status: 500 }),
      }, (request) => this.#handle(server, request));
    this.#hub = serve("hub");
    this.endpoint = `http://127.0.0.1:${this.#hub.addr.port}`;
    this.#cdn = options.cdn === "same" ? null : serve("cdn");
    this.cdnEndpoint = this.#cdn === null
      ? this.endpoint
      : `http://127.0.0.1:${this.#cdn.addr.port}`;
  }

  /** Starts listening on two free ports of 127.0.0.1 (one with `cdn: "same"`). */
  static start(options: HubTestServerOptions = {}): HubTestServer {
    return new HubTestServer(options);
  }

  /**
   * Creates repo `owner/name` whose branch points at a first commit of `dir`.
   * @returns The commit sha.
   */
  async addRepo(repo: string, dir: string, options: HubTestRepoOptions = {}): Promise<string> {
    if (this.#repos.has(repo)) throw new TypeError(`Cannot add repo as it exists: ${repo}`);
    const branch = options.branch ?? "main";
    this.#repos.set(repo, {
      id: repo,
      private: options.private ?? false,
      gated: options.gated ?? false,
      tokens: new Set(options.tokens ?? []),
      defaultBranch: branch,
      branches: new Map(),
      commits: new Map(),
    });
    return await this.commit(repo, dir, branch);
  }

  /**
   * Adds a commit with the files of `dir` and moves `branch` to it (the previous commit stays
   * readable by its sha).
   * @returns The new commit sha.
   */
  async commit(repo: string, dir: string, branch = "main"): Promise<string> {
    const target = this.#repo(repo);
    const files = new Map<string, _File>();
    const dirs = new Set<string>([""]);
    const walk = async (rel: string): Promise<void> => {
      for await (const entry of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
        const path = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory) {
          dirs.add(path);
          await walk(path);
        } else if (entry.isFile) {
          const abs = await Deno.realPath(`${dir}/${path}`);
          const info = await Deno.stat(abs);
          const sha256 = await _hex("SHA-256", `${abs}:${info.size}:${info.mtime?.getTime()}`);
          files.set(path, {
            path,
            abs,
            size: info.size,
            sha256,
            oid: sha256.slice(0, 40),
            lfs: info.size >= this.#lfsThreshold || LFS_NAMES.test(path),
          });
        }
      }
    };
    await walk("");
    const sha = await _hex("SHA-1", `${repo}\n${++this.#commits}\n${[...files.keys()].join("\n")}`);
    target.commits.set(sha, { sha, files, dirs });
    target.branches.set(branch, sha);
    return sha;
  }

  /** Drops a commit, as a force-push and garbage collection would. */
  forgetCommit(repo: string, sha: string): void {
    this.#repo(repo).commits.delete(sha);
  }

  /** Adds a fault rule; rules are checked in the order added, the first match applies. */
  inject(rule: HubFaultRule): void {
    this.#rules.push({ rule, seen: 0, hit: 0 });
  }

  /** How many times each rule fired, in the order added. */
  get faultHits(): number[] {
    return this.#rules.map((r) => r.hit);
  }

  /** Stops both listeners, ending bodies still being sent. */
  async close(): Promise<void> {
    for (const body of this.#bodies) body.abort();
    await Promise.all([this.#hub.shutdown(), this.#cdn?.shutdown()]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #repo(repo: string): _Repo {
    const found = this.#repos.get(repo);
    if (found === undefined) throw new TypeError(`Cannot find test repo: ${repo}`);
    return found;
  }

  /** The fault for a request, if a rule matches; `data`: the answer would carry file bytes. */
  #fault(
    kind: HubFaultTarget,
    request: Request,
    file: _File | null,
    data: boolean,
  ): HubFault | null {
    const range = file === null ? null : _parseRange(request.headers.get("Range"), file.size);
    const length = file === null ? 0 : Array.isArray(range) ? range[1] - range[0] : file.size;
    for (const entry of this.#rules) {
      const { rule } = entry;
      if (rule.on !== undefined && rule.on !== kind && !(rule.on === "data" && data)) continue;
      if (rule.path !== undefined && rule.path !== file?.path) continue;
      if (rule.method !== undefined && rule.method !== request.method) continue;
      if (rule.minLength !== undefined && length < rule.minLength) continue;
      entry.seen++;
      if (entry.seen <= (rule.skip ?? 0) || entry.hit >= (rule.times ?? 1)) continue;
      entry.hit++;
      return rule.fault;
    }
    return null;
  }

  #handle(server: "hub" | "cdn", request: Request): Response | Promise<Response> {
    const url = new URL(request.url);
    const segments = url.pathname.split("/").slice(1).map(decodeURIComponent);
    const record: RecordedRequest = {
      server,
      kind: "other",
      method: request.method,
      url: url.pathname + url.search,
      file: null,
      range: request.headers.get("Range"),
      authorization: request.headers.get("Authorization"),
      time: Date.now(),
      status: 0,
      bytes: 0,
    };
    this.requests.push(record);
    const answer = (response: Response): Response => {
      record.status = response.status;
      return response;
    };
    const resolveAt = segments.indexOf("resolve");
    let kind: RecordedRequest["kind"] = "other";
    if (segments[0] === "cdn") kind = "cdn";
    else if (server === "hub" && segments[0] === "api" && segments[1] === "models") kind = "api";
    else if (server === "hub" && resolveAt === 2) kind = "resolve";
    const file = kind === "cdn"
      ? segments.slice(4).join("/")
      : kind === "resolve"
      ? segments.slice(4).join("/")
      : null;
    Object.assign(record, { kind, file });
    if (kind === "other" || (kind === "cdn" && server === "hub" && this.#cdn !== null)) {
      return answer(_error(404, "EntryNotFound", "Not found"));
    }
    if (kind === "cdn") return answer(this.#cdnAnswer(request, segments, record));
    const repo = this.#repos.get(
      `${segments[kind === "api" ? 2 : 0]}/${segments[kind === "api" ? 3 : 1]}`,
    );
    if (kind === "api") {
      const fault = this.#fault("api", request, null, false);
      if (fault?.kind === "status") return answer(_injected(fault, request));
      const denied = this.#authorize(repo, request);
      if (denied !== null) return answer(denied);
      return answer(this.#api(repo!, segments.slice(4), url));
    }
    const denied = this.#authorize(repo, request);
    if (denied !== null) return answer(denied);
    return answer(this.#resolve(request, repo!, segments[3] ?? "", file ?? "", record));
  }

  #authorize(repo: _Repo | undefined, request: Request): Response | null {
    const header = request.headers.get("Authorization");
    const token = header?.startsWith("Bearer ") ? header.slice(7) : null;
    const known = [...this.#repos.values()].some((r) => token !== null && r.tokens.has(token));
    if (token !== null && !known) {
      return _error(401, null, "Invalid credentials in Authorization header");
    }
    if (repo === undefined) {
      return _error(token === null ? 401 : 404, "RepoNotFound", "Repository not found");
    }
    const allowed = token !== null && repo.tokens.has(token);
    if (repo.private && !allowed) return _error(401, "RepoNotFound", "Repository not found");
    if (repo.gated && !allowed) {
      return _error(
        token === null ? 401 : 403,
        "GatedRepo",
        `Access to model ${repo.id} is restricted`,
      );
    }
    return null;
  }

  #commitOf(repo: _Repo, revision: string): _Commit | null {
    const sha = revision === "HEAD"
      ? repo.branches.get(repo.defaultBranch)
      : repo.branches.get(revision) ?? revision;
    return (sha === undefined ? undefined : repo.commits.get(sha)) ?? null;
  }

  #api(repo: _Repo, rest: string[], url: URL): Response {
    const [what = "", revision = "HEAD", ...path] = rest;
    if (what !== "" && what !== "revision" && what !== "tree") {
      return _error(404, null, "Not found");
    }
    const commit = this.#commitOf(repo, what === "" ? "HEAD" : revision);
    if (commit === null) return _error(404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    if (what !== "tree") {
      return Response.json({
        _id: commit.sha.slice(0, 24),
        id: repo.id,
        private: repo.private,
        gated: repo.gated ? "auto" : false,
        sha: commit.sha,
        siblings: [...commit.files.keys()].sort().map((rfilename) => ({ rfilename })),
        lastModified: new Date(0).toISOString(),
        downloads: 0,
        likes: 0,
        tags: [],
      }, { headers: JSON_HEADERS });
    }
    const dir = path.join("/");
    if (!commit.dirs.has(dir)) return _error(404, "EntryNotFound", `${dir} does not exist`);
    const recursive = url.searchParams.get("recursive") === "true";
    const inside = (p: string) =>
      (dir === "" || p.startsWith(`${dir}/`)) &&
      (recursive || !p.slice(dir === "" ? 0 : dir.length + 1).includes("/"));
    const entries = [
      ...[...commit.dirs].filter((d) => d !== "" && inside(d)).map((d) => ({
        type: "directory",
        oid: "0".repeat(40),
        size: 0,
        path: d,
      })),
      ...[...commit.files.values()].filter((f) => inside(f.path)).map((f) => ({
        type: "file",
        oid: f.oid,
        size: f.size,
        path: f.path,
        ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: 134 } } : {}),
      })),
    ].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const cursor = Number(url.searchParams.get("cursor") ?? 0);
    const page = entries.slice(cursor, cursor + this.#pageSize);
    const headers: Record<string, string> = { ...JSON_HEADERS };
    if (cursor + this.#pageSize < entries.length) {
      const next = new URL(url.pathname + url.search, this.endpoint);
      next.searchParams.set("cursor", String(cursor + this.#pageSize));
      headers["Link"] = `<${next.href}>; rel="next"`;
    }
    return Response.json(page, { headers });
  }

  #resolve(
    request: Request,
    repo: _Repo,
    revision: string,
    path: string,
    record: RecordedRequest,
  ): Response {
    const commit = this.#commitOf(repo, revision);
    if (commit === null) return _error(404, "RevisionNotFound", `Invalid rev id: ${revision}`);
    const file = commit.files.get(path);
    if (file === undefined) return _error(404, "EntryNotFound", `${path} does not exist`);
    const fault = this.#fault("resolve", request, file, !file.lfs && request.method === "GET");
    if (fault?.kind === "status") return _injected(fault, request);
    const changed = fault?.kind === "changed";
    const etag = `"${
      changed ? `${file.sha256.slice(0, 60)}beef` : file.lfs ? file.sha256 : file.oid
    }"`;
    const headers: Record<string, string> = {
      "X-Repo-Commit": fault?.kind === "commit" ? fault.commit : commit.sha,
      "Access-Control-Expose-Headers": "X-Repo-Commit,X-Linked-Size,X-Linked-Etag,ETag",
    };
    if (file.lfs) {
      const cdnPath = [...repo.id.split("/"), commit.sha, ...path.split("/")].map(
        encodeURIComponent,
      ).join("/");
      return new Response(null, {
        status: 302,
        headers: {
          ...headers,
          Location: `${this.cdnEndpoint}/cdn/${cdnPath}?sig=${++this.#signatures}`,
          "X-Linked-Size": String(file.size),
          "X-Linked-Etag": etag,
          ETag: `"${file.oid}"`,
        },
      });
    }
    return this.#bytes(
      request,
      file,
      { ...headers, ETag: etag },
      changed ? null : fault,
      changed,
      record,
    );
  }

  #cdnAnswer(
    request: Request,
    segments: string[],
    record: RecordedRequest,
  ): Response {
    const [, owner = "", name = "", sha = "", ...path] = segments;
    const file = this.#repos.get(`${owner}/${name}`)?.commits.get(sha)?.files.get(path.join("/"));
    if (file === undefined) return _error(404, null, "NoSuchKey");
    const fault = this.#fault("cdn", request, file, request.method === "GET");
    if (fault?.kind === "status") return _injected(fault, request);
    if (fault?.kind === "expired") {
      return new Response("AccessDenied: Request has expired", { status: 403 });
    }
    const changed = fault?.kind === "changed";
    const etag = `"${changed ? `${file.sha256.slice(0, 60)}beef` : file.sha256}"`;
    return this.#bytes(request, file, { ETag: etag }, changed ? null : fault, changed, record);
  }

  /** File bytes with Range support and the byte-level faults. */
  #bytes(
    request: Request,
    file: _File,
    extra: Record<string, string>,
    fault: HubFault | null,
    flip: boolean,
    record: RecordedRequest,
  ): Response {
    const size = file.size;
    const range = _parseRange(request.headers.get("Range"), size);
    if (range === "invalid") {
      return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${size}` } });
    }
    const [start, end] = range ?? [0, size];
    const length = end - start;
    const headers: Record<string, string> = {
      ...extra,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      "Content-Length": String(length),
    };
    if (range !== null) headers["Content-Range"] = `bytes ${start}-${end - 1}/${size}`;
    const status = range === null ? 200 : 206;
    if (request.method === "HEAD") return new Response(null, { status, headers });
    let send = length;
    if (fault?.kind === "drop") send = Math.min(length, fault.afterBytes);
    if (fault?.kind === "truncate") {
      send = Math.min(length, fault.afterBytes);
      headers["Content-Length"] = String(send);
    }
    if (fault?.kind === "wrongLength") {
      headers["Content-Length"] = String(Math.max(0, length + fault.delta));
    }
    const body = new FileBodyStream(
      file.abs,
      start,
      {
        send,
        ...(fault?.kind === "stall" ? { stallAfter: fault.afterBytes, stallMs: fault.ms } : {}),
        ...(fault?.kind === "trickle" ? { trickle: fault } : {}),
        ...(flip ? { flip: 0xff } : {}),
      },
      (n) => (record.bytes += n),
      () => this.#bodies.delete(body),
    );
    this.#bodies.add(body);
    return new Response(body.stream, { status, headers });
  }
}

function _injected(fault: HubFault & { kind: "status" }, request: Request): Response {
  const headers: Record<string, string> = fault.retryAfter === undefined
    ? {}
    : { "Retry-After": String(fault.retryAfter) };
  if (!fault.echo) {
    return new Response(`injected ${fault.status}`, { status: fault.status, headers });
  }
  const error = `Bad request with Authorization: ${request.headers.get("Authorization")}`;
  return Response.json({ error }, {
    status: fault.status,
    headers: { ...headers, ...JSON_HEADERS },
  });
}

function _error(status: number, code: string | null, message: string): Response {
  const headers: Record<string, string> = { ...JSON_HEADERS, "X-Error-Message": message };
  if (code !== null) headers["X-Error-Code"] = code;
  return Response.json({ error: message }, { status, headers });
}

/** `[start, end)` of a single `bytes=` range, null without a header, "invalid" when unsatisfiable. */
function _parseRange(header: string | null, size: number): [number, number] | null | "invalid" {
  if (header === null) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null || (match[1] === "" && match[2] === "")) return "invalid";
  if (match[1] === "") {
    const suffix = Math.min(Number(match[2]), size);
    return suffix === 0 ? "invalid" : [size - suffix, size];
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? size : Math.min(Number(match[2]) + 1, size);
  return start >= size || end <= start ? "invalid" : [start, end];
}

async function _hex(algorithm: "SHA-1" | "SHA-256", text: string): Promise<string> {
  const digest = await crypto.subtle.digest(algorithm, new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

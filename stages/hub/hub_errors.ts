/**
 * Errors of the Hub source that callers catch. URLs in fields and messages never carry a token or
 * a signed query string (see {@linkcode displayUrl}).
 *
 * @module
 */

/** `origin + pathname` of a URL: drops the query (CDN signatures) and any credentials. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return "(invalid URL)";
  }
}

/** The Hub refused access: private or gated repo without a (valid) token. */
export class HubAuthError extends Error {
  /** 401 (no or invalid token) or 403 (token without access to a gated repo). */
  readonly status: number;
  readonly url: string;
  /** `owner/name`. */
  readonly repo: string;
  constructor(repo: string, status: number, url: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HubAuthError";
    this.repo = repo;
    this.status = status;
    this.url = displayUrl(url);
  }
}

/** The repo, revision or file does not exist on the Hub. */
export class HubNotFoundError extends Error {
  readonly status: number;
  readonly url: string;
  readonly repo: string;
  /** Path of the file in the repo, or null when the repo or revision is missing. */
  readonly file: string | null;
  constructor(
    repo: string,
    file: string | null,
    status: number,
    url: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HubNotFoundError";
    this.repo = repo;
    this.file = file;
    this.status = status;
    this.url = displayUrl(url);
  }
}

/**
 * A file no longer matches what was first seen (ETag, size or commit changed mid-run). Reading
 * stops rather than mixing bytes of two revisions.
 */
export class HubFileChangedError extends Error {
  readonly url: string;
  readonly file: string;
  /** What was seen first (ETag, size or commit). */
  readonly expected: string;
  /** What the Hub answered later. */
  readonly actual: string;
  constructor(file: string, url: string, expected: string, actual: string, message: string) {
    super(message);
    this.name = "HubFileChangedError";
    this.file = file;
    this.url = displayUrl(url);
    this.expected = expected;
    this.actual = actual;
  }
}

/** Reading a file failed for good: retries or retry time ran out, or the server misbehaved. */
export class HubReadError extends Error {
  readonly url: string;
  readonly file: string;
  /** HTTP status of the last failed response, or null for a network failure. */
  readonly status: number | null;
  /** Attempts made, the failed ones included. */
  readonly attempts: number;
  constructor(
    file: string,
    url: string,
    status: number | null,
    attempts: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "HubReadError";
    this.file = file;
    this.url = displayUrl(url);
    this.status = status;
    this.attempts = attempts;
  }
}

/**
 * Typed errors. Each carries a stable `code` and an HTTP `status`; one
 * middleware (src/http/error-handler.ts) maps them to `{error: {code, message}}`.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details?: Record<string, unknown>;

  constructor(code: string, status: number, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** Input that fails validation: a bad parameter, body or query. */
export class ValidationError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('validation_failed', 400, message, details);
  }
}

/** The query language could not parse the query. `position` is a 0-based character offset. */
export class QuerySyntaxError extends AppError {
  readonly position: number;
  constructor(message: string, position: number) {
    super('query_syntax', 400, `${message} at position ${position}`, { position, reason: message });
    this.position = position;
  }
}

/** The thing does not exist, or is outside the caller's scope (indistinguishable on purpose). */
export class NotFoundError extends AppError {
  constructor(message = 'Not found') {
    super('not_found', 404, message);
  }
}

/** The object store could not durably write or read. SMTP maps this to 451. */
export class StorageUnavailableError extends AppError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('storage_unavailable', 503, message, undefined, options);
  }
}

/** Stored bytes do not hash to their key: evidence integrity alert. */
export class IntegrityError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('integrity_failure', 500, message, details);
  }
}

/** The message is larger than the configured maximum. SMTP maps this to 552. */
export class MessageTooLargeError extends AppError {
  constructor(limit: number) {
    super('message_too_large', 413, `Message exceeds the maximum size of ${limit} bytes`, { limit });
  }
}

/** A dependency (index, queue) is unavailable; the caller may retry later. */
export class ServiceUnavailableError extends AppError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, 503, message, undefined, options);
  }
}

/** Configuration is invalid. Names the offending variable(s). */
export class ConfigError extends AppError {
  constructor(message: string) {
    super('config_invalid', 500, message);
  }
}

/** An optimistic-concurrency write lost: the record changed since it was read. Re-read and retry. */
export class CatalogConflictError extends AppError {
  constructor(message: string) {
    super('conflict', 409, message);
  }
}

/** No credentials, or credentials that are not valid. */
export class UnauthorizedError extends AppError {
  constructor(message = 'Authentication required') {
    super('unauthorized', 401, message);
  }
}

/** Authenticated, but the role does not allow this. */
export class ForbiddenError extends AppError {
  constructor(message = 'Not allowed') {
    super('forbidden', 403, message);
  }
}

/** Too many attempts; retry after the given number of seconds. */
export class TooManyRequestsError extends AppError {
  constructor(message: string, retryAfterSeconds: number) {
    super('too_many_requests', 429, message, { retryAfterSeconds });
  }
}

/** A deletion refused because the object is under a legal hold or before its retain-until date (fail-closed). */
export class RetentionLockedError extends AppError {
  constructor(message: string) {
    super('retention_locked', 409, message);
  }
}

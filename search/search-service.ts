/**
 * The search service: parses investigator queries, applies the caller's
 * scope (promise 7: in results, totals, facets, views and threads alike),
 * and shapes hits for the API. It never knows which index engine it has.
 */
import type { IndexedMessage, Participant } from '../src/domain/indexed-message.js';
import type { Facets, MessageIndex, Scope, SortField } from '../src/ports/message-index.js';
import { NotFoundError, ValidationError } from '../src/errors.js';
import { parseQuery } from './query-parser.js';
import { makeSnippet } from './snippet.js';

export interface SearchOptions {
  q: string;
  size: number;
  sort: SortField;
  order: 'asc' | 'desc';
  cursor?: string;
  facets: boolean;
  scope?: Scope | null;
}

export interface SearchHit {
  id: string;
  messageId: string | null;
  date: string;
  from: Participant[];
  to: Participant[];
  subject: string;
  snippet: string;
  size: number;
  hasAttachments: boolean;
  parseError?: string;
}

export interface SearchResponse {
  total: number;
  hits: SearchHit[];
  facets: Facets | null;
  nextCursor: string | null;
}

export class SearchService {
  constructor(private readonly index: MessageIndex) {}

  async search(opts: SearchOptions): Promise<SearchResponse> {
    const query = parseQuery(opts.q, { allowEmpty: true });
    let page;
    try {
      page = await this.index.search({ query, scope: opts.scope, sort: opts.sort, order: opts.order, size: opts.size, cursor: opts.cursor, facets: opts.facets });
    } catch (err) {
      if ((err as Error).message?.includes('cursor')) throw new ValidationError(`invalid cursor: ${(err as Error).message}`);
      throw err;
    }
    return {
      total: page.total,
      hits: page.hits.map((doc) => ({
        id: doc.id,
        messageId: doc.messageId ?? null,
        date: new Date(doc.date).toISOString(),
        from: doc.from,
        to: doc.to,
        subject: doc.subject,
        snippet: makeSnippet(doc.body || doc.attachmentText || doc.subject, query),
        size: doc.size,
        hasAttachments: doc.hasAttachments,
        ...(doc.parseError ? { parseError: doc.parseError } : {}),
      })),
      facets: page.facets ?? null,
      nextCursor: page.nextCursor ?? null,
    };
  }

  /** One message's document, or NotFoundError when absent or outside scope (indistinguishable on purpose). */
  async getMessage(id: string, scope?: Scope | null): Promise<IndexedMessage> {
    const doc = /^[0-9a-f]{64}$/.test(id) ? await this.index.get(id, scope) : undefined;
    if (!doc) throw new NotFoundError(`message ${id} not found`);
    return doc;
  }

  /** The thread of a message the caller may see, oldest first, only messages inside scope. */
  async thread(id: string, scope?: Scope | null): Promise<IndexedMessage[]> {
    const doc = await this.getMessage(id, scope);
    return this.index.thread(doc.threadId, scope);
  }
}

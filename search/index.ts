/** The search module's public face: other modules import from here only. */
export { parseQuery, describeQuery } from './query-parser.js';
export type { QueryNode } from './query-ast.js';
export { SearchService, type SearchOptions, type SearchResponse, type SearchHit } from './search-service.js';
export { makeSnippet } from './snippet.js';
export { analyzed, queryTokens } from './index-analysis.js';
export { MAX_HISTOGRAM_BUCKETS, HISTOGRAM_INTERVALS, addBuckets, bucketStarts, ceilToBucket, floorToBucket } from './ingest-histogram.js';

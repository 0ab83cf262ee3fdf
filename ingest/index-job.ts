/** Name and payload of the job that indexes one stored message (all of its envelopes). */
export const INDEX_JOB = 'index-message';

export interface IndexJobPayload {
  sha256: string;
}

/**
 * What a user asks an export for: its source, its format and the production
 * options. One zod schema validates it at the API and the CLI alike, and its
 * parsed form is what the job record keeps (JSON, so it survives a queue).
 */
import { z } from 'zod';

export const EXPORT_FORMATS = ['eml', 'mbox', 'pdf', 'load'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** The Concordance DAT fields of a standard production, in their usual order. */
export const STANDARD_FIELDS = [
  'BEGDOC',
  'ENDDOC',
  'BEGATTACH',
  'ENDATTACH',
  'CUSTODIAN',
  'FROM',
  'TO',
  'CC',
  'BCC',
  'SUBJECT',
  'DATESENT',
  'MESSAGEID',
  'MD5HASH',
  'SHA256HASH',
  'NATIVEPATH',
  'TEXTPATH',
] as const;

/** Further fields a field mapping may take in. */
export const EXTRA_FIELDS = ['ALLCUSTODIANS', 'TIMESENT', 'DATETIMESENT', 'DOCTYPE', 'FILENAME', 'FILESIZE', 'PAGECOUNT', 'PARENTDOCID', 'ARCHIVESHA256', 'PARSEERROR'] as const;

export const ALL_FIELDS = [...STANDARD_FIELDS, ...EXTRA_FIELDS] as const;
export type FieldName = (typeof ALL_FIELDS)[number];

/**
 * Where the items come from: a query, or a case's held set (every message
 * that the case's active holds cover, as the holds define it), always within
 * the requester's scope.
 */
export const exportSourceSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('query'),
    q: z.string().max(2000).describe('Query in the investigator query language (docs/search.md); empty: everything in your scope.'),
  }),
  z.object({
    kind: z.literal('case'),
    caseId: z.string().min(1).max(200).describe("A case id: exports the case's held set (all active holds)."),
  }),
]);
export type ExportSource = z.infer<typeof exportSourceSchema>;

/** Control numbers and file names are built from the prefix, so it is kept to characters safe in paths and load files. */
const batesSchema = z
  .object({
    prefix: z.string().regex(/^[A-Za-z0-9_.-]{0,20}$/, 'letters, digits, _ . - (at most 20)').default('ARCH'),
    start: z.number().int().min(0).max(1e12).default(1),
    padding: z.number().int().min(1).max(15).default(7),
  })
  .default({});

export const exportRequestSchema = z.object({
  source: exportSourceSchema,
  format: z.enum(EXPORT_FORMATS).describe('eml: native EML files; mbox: one mboxrd file; pdf: Bates-stamped PDFs + OPT; load: natives, PDFs, text, DAT, OPT and EDRM XML'),
  bates: batesSchema,
  pdf: z
    .object({
      mode: z.enum(['per-message', 'combined']).default('per-message'),
      /** Endorsement printed at the bottom left of every page, e.g. CONFIDENTIAL. */
      legend: z.string().max(100).optional(),
    })
    .default({}),
  /**
   * none: every stored message once (identical bytes are stored once anyway);
   * global: one copy per message across the production; custodian: one copy
   * per custodian. Families (a message and its attachments) are never split.
   */
  dedup: z.enum(['none', 'global', 'custodian']).default('none'),
  /** Mailbox addresses the production is for. Without them, a message's custodian is its sender. */
  custodians: z
    .array(z.string().max(320).transform((s) => s.trim().toLowerCase()))
    .max(1000)
    .default([]),
  /** DAT and CSV columns: which field, under which name, in which order. Default: the standard fields. */
  fields: z
    .array(z.object({ field: z.enum(ALL_FIELDS), name: z.string().regex(/^[A-Za-z0-9_ #-]{1,64}$/) }))
    .min(1)
    .max(64)
    .optional(),
  volume: z.string().regex(/^[A-Za-z0-9_-]{1,20}$/).default('VOL001'),
});

export type ExportRequest = z.infer<typeof exportRequestSchema>;
export type ExportRequestInput = z.input<typeof exportRequestSchema>;

export interface FieldMapping {
  field: FieldName;
  name: string;
}

export function fieldMappingOf(req: ExportRequest): FieldMapping[] {
  return req.fields ?? STANDARD_FIELDS.map((f) => ({ field: f, name: f }));
}

/** A control number: prefix and zero-padded number (longer numbers are never cut). */
export function batesNumber(bates: ExportRequest['bates'], n: number): string {
  return `${bates.prefix}${String(n).padStart(bates.padding, '0')}`;
}

/** Which parts a format produces. */
export function partsOf(format: ExportFormat): { natives: boolean; mbox: boolean; images: boolean; text: boolean; dat: boolean; opt: boolean; edrm: boolean; children: boolean } {
  switch (format) {
    case 'eml':
      return { natives: true, mbox: false, images: false, text: false, dat: false, opt: false, edrm: false, children: false };
    case 'mbox':
      return { natives: false, mbox: true, images: false, text: false, dat: false, opt: false, edrm: false, children: false };
    case 'pdf':
      return { natives: false, mbox: false, images: true, text: false, dat: false, opt: true, edrm: false, children: true };
    case 'load':
      return { natives: true, mbox: false, images: true, text: true, dat: true, opt: true, edrm: true, children: true };
  }
}

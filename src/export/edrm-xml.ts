/**
 * The EDRM XML manifest (EDRM XML 1.2 layout: Root > Batch > Documents,
 * Relationships), written as a stream: one Document element per produced
 * document, the attachment relationships after them. Values are escaped and
 * characters that XML 1.0 cannot carry become U+FFFD, so hostile header
 * fields cannot break the file (promise 8).
 */
export interface EdrmFile {
  type: 'Native' | 'Text' | 'Image';
  /** Package-relative, forward slashes. */
  path: string;
  size: number;
  sha256: string;
  md5?: string;
}

export interface EdrmDocument {
  docId: string;
  docType: 'Message' | 'File';
  mimeType: string;
  tags: { name: string; type: 'Text' | 'DateTime' | 'Integer'; value: string }[];
  files: EdrmFile[];
}

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const INVALID_XML = /[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu;

/** An attribute value: escaped, with line breaks and tabs kept as character references. */
export function xmlAttr(v: string): string {
  return v
    .replace(INVALID_XML, '\ufffd')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    .replace(/\r/g, '&#13;')
    .replace(/\n/g, '&#10;')
    .replace(/\t/g, '&#9;');
}

export function edrmHead(batchName: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Root MajorVersion="1" MinorVersion="2" Description="${xmlAttr(batchName)}" Locale="en-US" DataInterchangeType="Update">\n<Batch name="${xmlAttr(batchName)}">\n<Documents>\n`;
}

export function edrmDocument(d: EdrmDocument): string {
  const tags = d.tags.map((t) => `<Tag TagName="${xmlAttr(t.name)}" TagDataType="${t.type}" TagValue="${xmlAttr(t.value)}"/>`).join('');
  const files = d.files
    .map((f) => {
      const slash = f.path.lastIndexOf('/');
      const dir = slash < 0 ? '' : f.path.slice(0, slash);
      const name = f.path.slice(slash + 1);
      return `<File FileType="${f.type}"><ExternalFile FilePath="${xmlAttr(dir)}" FileName="${xmlAttr(name)}" FileSize="${f.size}" Hash="${f.sha256}" HashType="SHA-256"${f.md5 ? ` MD5="${f.md5}"` : ''}/></File>`;
    })
    .join('');
  return `<Document DocID="${xmlAttr(d.docId)}" DocType="${d.docType}" MimeType="${xmlAttr(d.mimeType)}"><Tags>${tags}</Tags><Files>${files}</Files></Document>\n`;
}

export function edrmRelationship(parentDocId: string, childDocId: string): string {
  return `<Relationship Type="Attachment" ParentDocID="${xmlAttr(parentDocId)}" ChildDocID="${xmlAttr(childDocId)}"/>\n`;
}

export const EDRM_BETWEEN = '</Documents>\n<Relationships>\n';
export const EDRM_TAIL = '</Relationships>\n</Batch>\n</Root>\n';

/**
 * Groups a listing of envelope names that arrives sorted by message (both
 * stores list in name order, and an envelope's name starts with its
 * message's hash) into one entry per message. Holds one message's ids at a
 * time.
 */
export async function* groupEnvelopeIds(names: AsyncIterable<{ sha256: string; id: string }>): AsyncIterable<{ sha256: string; ids: string[] }> {
  let current: { sha256: string; ids: string[] } | undefined;
  for await (const { sha256, id } of names) {
    if (current && current.sha256 !== sha256) {
      yield current;
      current = undefined;
    }
    current ??= { sha256, ids: [] };
    current.ids.push(id);
  }
  if (current) yield current;
}

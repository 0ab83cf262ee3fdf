const UNITS: Record<string, number> = { '': 1, B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/**
 * Parses `150MB`, `10 KB`, `1048576` into bytes (binary units: 1 KB = 1024 B).
 * Returns undefined for anything else.
 */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = UNITS[(m[2] ?? '').toUpperCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(m[1]) * unit);
}

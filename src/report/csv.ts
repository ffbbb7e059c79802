/** CSV writing (RFC 4180): comma-separated, CRLF-free ("\n" line ends), fields quoted only when they need it. */

export type CsvValue = string | number | boolean | null | undefined;

/** One field: numbers at full precision, null/undefined/NaN/±Infinity as empty, quotes doubled. */
export function csvField(value: CsvValue): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "";
  const s = String(value);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function toCsv(header: readonly string[], rows: readonly (readonly CsvValue[])[]): string {
  for (const [i, row] of rows.entries()) {
    if (row.length !== header.length) {
      throw new Error(`csv row ${i} has ${row.length} fields, header has ${header.length}`);
    }
  }
  return [header, ...rows].map((row) => row.map(csvField).join(",")).join("\n") + "\n";
}

/** Removes credentials (`scheme://user:pass@`) from text a command or a shipper prints. */
export function redact(s: string): string {
  return s.replace(/(\w+:\/\/)[^@/\s]+@/g, '$1***@')
}

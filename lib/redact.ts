/**
 * Removes credentials (`scheme://user:pass@`) from text a command or a shipper prints.
 *
 * @example
 * ```ts
 * redact('nats://alice:secret@host:4222') // 'nats://***@host:4222'
 * ```
 */
export function redact(s: string): string {
  return s.replace(/(\w+:\/\/)[^@/\s]+@/g, '$1***@')
}

import type { Document } from 'yaml';
import { TopasError } from '../errors';

/**
 * The document as plain values. An alias bomb ("billion laughs") is refused by
 * the yaml package's alias budget; very deep nesting by the stack: both are input errors.
 */
export function yamlToJs(doc: Document, file: string, code: 'INVALID_APP_SPEC' | 'INVALID_PLAYBOOK'): unknown {
  try {
    return doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    const msg = (err as Error).message ?? '';
    if (/excessive alias count/i.test(msg)) {
      throw new TopasError(code, `${file}: too many YAML alias expansions (*name); at most 1000 are allowed`, {
        problems: [{ path: file, message: 'excessive YAML aliases (an alias bomb?); write the values out or use fewer aliases' }],
      });
    }
    if (err instanceof RangeError) {
      throw new TopasError(code, `${file}: the YAML is nested too deeply`, { problems: [{ path: file, message: 'nested too deeply' }] });
    }
    // e.g. an alias used before its anchor: the document, not topas, is at fault
    if (err instanceof ReferenceError || err instanceof TypeError) {
      const first = msg.split('\n')[0];
      throw new TopasError(code, `${file}: YAML error: ${first}`, { problems: [{ path: file, message: first }] });
    }
    throw err;
  }
}

import type { z } from 'zod';
import type { AppSpec } from './app-spec';
import { databaseSchema, serviceSchema } from './app-spec-schema';
import { normalizeDatabase, normalizeService } from './normalize-spec';

type Segment = string | number;

/** An AppSpec made of the entries that parse, and where each came from in the file. */
export interface PartialAppSpec {
  spec: AppSpec;
  /** index in `spec.services` -> index in the file's `services:` (likewise databases) */
  from: { services: number[]; databases: number[] };
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The services and databases of a spec that has problems, as far as they
 * parse: so a backend's checks can run beside the spec's own and one error
 * lists both. An entry with a bad optional field is taken without that field
 * (its problem is reported already); one without a usable name or port is left out.
 */
export function partialAppSpec(body: Record<string, unknown>, base: { name: string; file: string; dir: string }): PartialAppSpec {
  const services = parseEntries(body.services, serviceSchema);
  const databases = parseEntries(body.databases, databaseSchema);
  const names = new Set<string>([...services.map((s) => s.value.name), ...databases.map((d) => d.value.name)]);
  const spec: AppSpec = {
    ...base,
    services: services.map((s) => normalizeService(s.value, names)),
    databases: databases.map((d) => normalizeDatabase(d.value, undefined)),
  };
  return { spec, from: { services: services.map((s) => s.index), databases: databases.map((d) => d.index) } };
}

function parseEntries<S extends z.ZodType>(list: unknown, schema: S): Array<{ index: number; value: z.output<S> }> {
  if (!Array.isArray(list)) return [];
  const out: Array<{ index: number; value: z.output<S> }> = [];
  list.forEach((raw, index) => {
    if (!isMapping(raw)) return;
    let parsed = schema.safeParse(raw);
    if (!parsed.success) {
      // once more without the fields the schema refused
      const bad = new Set<string>();
      for (const issue of parsed.error.issues) {
        if (issue.code === 'unrecognized_keys') issue.keys.forEach((k) => bad.add(k));
        else if (typeof issue.path[0] === 'string') bad.add(issue.path[0]);
      }
      const rest = Object.fromEntries(Object.entries(raw).filter(([k]) => !bad.has(k)));
      parsed = schema.safeParse(rest);
    }
    if (parsed.success) out.push({ index, value: parsed.data });
  });
  return out;
}

/**
 * A problem path as backends write it (`services[0].command`, `databases[1]`)
 * as segments of the file: the entry's index in the file, under `spec:` in the
 * `kind: App` form. Undefined for a path that is not one of these.
 */
export function locateInFile(problemPath: string, partial: PartialAppSpec, prefix: readonly Segment[]): Segment[] | undefined {
  const segments = parsePath(problemPath);
  if (!segments) return undefined;
  const [kind, index] = segments;
  if ((kind === 'services' || kind === 'databases') && typeof index === 'number') {
    const inFile = partial.from[kind][index];
    if (inFile === undefined) return undefined;
    return [...prefix, kind, inFile, ...segments.slice(2)];
  }
  return [...prefix, ...segments];
}

/** `a.b[0]["x.y"]` -> ['a', 'b', 0, 'x.y']; undefined when it is not written so. */
function parsePath(p: string): Segment[] | undefined {
  const out: Segment[] = [];
  const re = /(?:^|\.)([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;
  let at = 0;
  while (at < p.length) {
    re.lastIndex = at;
    const m = re.exec(p);
    if (!m) return undefined;
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push(Number(m[2]));
    else out.push(JSON.parse(m[3]) as string);
    at = re.lastIndex;
  }
  return out.length ? out : undefined;
}

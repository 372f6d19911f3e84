import * as fs from 'node:fs';
import * as path from 'node:path';
import { TopasError, type Problem } from '../errors';

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `--env-file .env`: the dotenv format as docker compose and dotenv read it:
 * `KEY=value`, an optional `export ` prefix, blank lines and `#` comments,
 * values in single quotes (literal) or double quotes (`\n`, `\t`, `\"`, `\\`
 * escapes), and ` #` comments after unquoted values. One variable a line;
 * every bad line is reported at once as `file:line`.
 */
export function parseEnvFile(text: string, label: string): { values: Record<string, string>; problems: Problem[] } {
  const values: Record<string, string> = {};
  const problems: Problem[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const at = `${label}:${i + 1}`;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const body = line.replace(/^export\s+/, '');
    const eq = body.indexOf('=');
    if (eq <= 0) return problems.push({ path: at, message: `expected NAME=value, got ${JSON.stringify(clip(line))}` });
    const name = body.slice(0, eq).trim();
    if (!NAME_RE.test(name)) return problems.push({ path: at, message: `expected a variable name (letters, digits, "_"), got ${JSON.stringify(clip(name))}` });
    const value = parseValue(body.slice(eq + 1).trim());
    if (typeof value !== 'string') return problems.push({ path: at, message: value.error });
    values[name] = value;
  });
  return { values, problems };
}

function parseValue(v: string): string | { error: string } {
  const q = v[0];
  if (q === "'" || q === '"') {
    let out = '';
    for (let i = 1; i < v.length; i++) {
      const c = v[i];
      if (c === q) {
        const rest = v.slice(i + 1).trim();
        if (rest !== '' && !rest.startsWith('#')) return { error: `unexpected ${JSON.stringify(clip(rest))} after the closing quote` };
        return out;
      }
      if (q === '"' && c === '\\' && i + 1 < v.length) {
        const n = v[++i];
        out += n === 'n' ? '\n' : n === 't' ? '\t' : n === 'r' ? '\r' : n;
      } else out += c;
    }
    return { error: `unclosed ${q} quote (a value is one line)` };
  }
  // unquoted: a ` #` starts a comment, as in dotenv
  const hash = v.search(/\s#/);
  return (hash >= 0 ? v.slice(0, hash) : v).trim();
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/** Reads every `--env-file` (later files win over earlier ones); a missing file or a bad line is invalid input. */
export function readEnvFiles(files: string[], cwd: string): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: Problem[] = [];
  for (const f of files) {
    const abs = path.resolve(cwd, f);
    let text: string;
    try {
      text = fs.readFileSync(abs, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push({ path: `--env-file ${f}`, message: code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a file' : (err as Error).message });
      continue;
    }
    const parsed = parseEnvFile(text, f);
    problems.push(...parsed.problems);
    Object.assign(out, parsed.values);
  }
  if (problems.length) throw new TopasError('INVALID_FLAGS', `invalid --env-file: ${problems.length} problem(s)`, { problems });
  return out;
}

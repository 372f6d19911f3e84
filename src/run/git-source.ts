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

/** Transports git may use, also for redirects and submodules: never ext:: (runs commands) or fd::. */
const ALLOWED_PROTOCOLS = 'http:https:ssh:git:file';

const SCHEME_URL = /^(https?|ssh|git|file):\/\/(.*)$/i;
// user@host:path as git reads it: no slash before the first colon; host starts with a letter or digit
const SCP_URL = /^(?:[A-Za-z0-9._~%+-]+@)?(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):(?!:)[^]+$/;

/**
 * The URL and ref end up as arguments of git: a value that starts with "-"
 * would be read as an option (`--upload-pack=...` runs a command), and
 * transports like `ext::` run commands by design. Both are refused here,
 * before git is started; git calls also put `--` before user values.
 */
export function validateGitSource(source: GitSource): void {
  const url = source.url;
  const badUrl = (why: string) =>
    new TopasError('INVALID_FLAGS', `--git ${JSON.stringify(url)}: ${why}`, {
      hint: 'use an http(s)://, ssh://, git:// or file:// URL, or user@host:path',
    });
  if (!url) throw badUrl('is empty');
  if (url.startsWith('-')) throw badUrl('must not start with "-"');
  const scheme = SCHEME_URL.exec(url);
  if (!scheme && (url.includes('::') || /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url))) {
    throw badUrl('only the http, https, ssh, git and file transports are allowed');
  }
  if (/[\x00-\x20\x7f]/.test(url)) throw badUrl('must not contain spaces or control characters');
  if (scheme) {
    // ssh://-oProxyCommand=... : a host that git would hand to ssh as an option
    if (/^(?:[^/@]*@)?-/.test(scheme[2])) throw badUrl('the host must not start with "-"');
  } else if (!SCP_URL.test(url)) {
    throw badUrl('is not a URL (a local repository is file:///absolute/path)');
  }
  const ref = source.ref;
  if (ref !== undefined) {
    const badRef = (why: string) => new TopasError('INVALID_FLAGS', `--git-ref ${JSON.stringify(ref)}: ${why}`, { hint: 'give a branch, tag or commit' });
    if (!ref) throw badRef('is empty');
    if (ref.startsWith('-')) throw badRef('must not start with "-"');
    // git check-ref-format's rules, enough to keep it a plain name
    if (/[\x00-\x20\x7f~^:?*[\\]/.test(ref) || ref.includes('..') || ref.includes('@{') || ref.includes('//') || ref.endsWith('/') || ref.endsWith('.') || ref.endsWith('.lock')) {
      throw badRef('is not a valid branch, tag or commit name');
    }
  }
}

/** http(s) URLs: the transports a runner without a `git` binary (isomorphic-git in a cluster's runner pod) can fetch itself. */
export function isHttpGitUrl(url: string): boolean {
  return /^https?:\/\//i.test(url);
}

export interface GitAuth {
  username: string;
  password: string;
}

/** The token's environment variable: basic auth for http(s) sources (on the host and in a runner pod), never in a URL. */
export const GIT_TOKEN_ENV = 'TOPAS_GIT_TOKEN';
/** the user name sent with the token (GitHub takes any; GitLab wants `oauth2` for OAuth tokens, Bitbucket `x-token-auth`) */
export const GIT_USERNAME_ENV = 'TOPAS_GIT_USERNAME';

/**
 * An http(s) URL without its `user:password@`, and the credentials: from the
 * URL, else from TOPAS_GIT_TOKEN. The URL without them is what may be shown
 * and stored in plain objects; the credentials go in secrets only.
 */
export function splitGitCredentials(url: string, env: NodeJS.ProcessEnv = {}): { url: string; auth?: GitAuth } {
  let bare = url;
  let auth: GitAuth | undefined;
  if (isHttpGitUrl(url)) {
    try {
      const u = new URL(url);
      if (u.username || u.password) {
        auth = { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
        u.username = '';
        u.password = '';
        bare = u.toString();
      }
    } catch {
      // not a URL node parses: git will say so
    }
    const token = env[GIT_TOKEN_ENV];
    if (!auth && token) auth = { username: env[GIT_USERNAME_ENV] || 'x-access-token', password: token };
  }
  return auth ? { url: bare, auth } : { url: bare };
}

/** A URL (or a message naming one) as it may be shown: the user info of http(s) URLs replaced. */
export function redactGitUrl(text: string): string {
  return text.replace(/(https?:\/\/)[^/@\s]+@/gi, '$1***@');
}

/** System git's environment for a token: an Authorization header through GIT_CONFIG_* (never on the command line, where `ps` shows it). */
function authEnv(source: GitSource, env: NodeJS.ProcessEnv): Record<string, string> {
  const { auth } = splitGitCredentials(source.url, env);
  if (!auth || !env[GIT_TOKEN_ENV] || /^https?:\/\/[^/@]*@/i.test(source.url)) return {};
  const basic = Buffer.from(`${auth.username}:${auth.password}`).toString('base64');
  return { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}` };
}

async function git(args: string[], cwd?: string, extraEnv: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync('git', args, {
      cwd,
      timeout: 120_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, ...extraEnv, GIT_TERMINAL_PROMPT: '0', GIT_ALLOW_PROTOCOL: ALLOWED_PROTOCOLS },
    });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: string };
    if (e.code === 'ENOENT') throw new TopasError('INVALID_FLAGS', 'git sources need the `git` command', { hint: 'install git (apt-get install git)' });
    throw new TopasError('FILE_NOT_FOUND', `git ${args[0]} failed: ${redactGitUrl((e.stderr || e.message).trim().split('\n').slice(-2).join(' '))}`);
  }
}

/**
 * Scripts and playbooks from a Git repository, through system git: the ref is
 * resolved to a commit, fetched shallow once, and reused from the cache by
 * commit (a commit never changes, so the cache never goes stale).
 */
export async function fetchGitSource(source: GitSource, env: NodeJS.ProcessEnv = process.env): Promise<FetchedGitSource> {
  validateGitSource(source);
  const auth = authEnv(source, env);
  const repoKey = createHash('sha256').update(source.url).digest('hex').slice(0, 16);
  const root = path.join(cacheRoot(env), repoKey);
  fs.mkdirSync(root, { recursive: true });
  const ref = source.ref ?? 'HEAD';
  let commit: string | undefined;
  if (/^[0-9a-f]{40}$/i.test(ref)) commit = ref.toLowerCase();
  else {
    const out = await git(['ls-remote', '--', source.url, ref, `refs/tags/${ref}^{}`], undefined, auth);
    const lines = out.split('\n').filter(Boolean);
    // an annotated tag's peeled line names the commit; prefer it
    const line = lines.find((l) => l.endsWith('^{}')) ?? lines[0];
    if (!line && source.ref === undefined) throw await headPointsNowhere(source.url, auth);
    if (!line) throw new TopasError('FILE_NOT_FOUND', `git ref "${ref}" not found in ${redactGitUrl(source.url)}`);
    commit = line.split(/\s+/)[0];
    // it becomes an argument of checkout and a folder name: only an object id will do
    if (!/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(commit)) throw new TopasError('FILE_NOT_FOUND', `git ls-remote ${redactGitUrl(source.url)} answered an unexpected line: ${line.slice(0, 80)}`);
  }
  const dir = path.join(root, commit);
  let cached = fs.existsSync(path.join(dir, '.topas-complete'));
  if (!cached) {
    const tmp = fs.mkdtempSync(path.join(root, 'fetch-'));
    try {
      await git(['init', '-q', '--', tmp]);
      try {
        await git(['fetch', '-q', '--depth', '1', '--', source.url, commit], tmp, auth);
      } catch {
        // servers that refuse fetching by commit: fetch the ref instead
        await git(['fetch', '-q', '--depth', '1', '--', source.url, ref], tmp, auth);
      }
      await git(['-c', 'advice.detachedHead=false', 'checkout', '-q', commit, '--'], tmp);
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
  if (!fs.existsSync(target)) throw new TopasError('FILE_NOT_FOUND', `--git-path ${source.path} does not exist in ${redactGitUrl(source.url)} at ${commit.slice(0, 12)}`);
  return { commit, dir, target, cached };
}

/** No --git-ref and the repository's HEAD names no commit: empty, or HEAD names a branch that is gone. Invalid input (exit 2). */
async function headPointsNowhere(url: string, auth: Record<string, string>): Promise<TopasError> {
  const heads = (await git(['ls-remote', '--heads', '--tags', '--', url], undefined, auth).catch(() => ''))
    .split('\n')
    .map((l) => l.split(/\s+/)[1])
    .filter((r): r is string => Boolean(r) && !r.endsWith('^{}'))
    .map((r) => r.replace(/^refs\/(heads|tags)\//, ''));
  return new TopasError('FILE_NOT_FOUND', `${redactGitUrl(url)}: the repository's HEAD points nowhere (its default branch has no commit)`, {
    hint: heads.length
      ? `pass --git-ref with a branch, tag or commit; the repository has: ${heads.slice(0, 10).join(', ')}${heads.length > 10 ? `, … (${heads.length} in all)` : ''}`
      : 'the repository has no commits at all: push one, or point --git at another repository',
  });
}

import * as fs from 'node:fs';
import * as git from 'isomorphic-git';
import http from 'isomorphic-git/http/node';
import { TopasError } from 'topas';

/** a fetch that takes longer (a server that accepts and then says nothing) fails the run */
export const GIT_FETCH_TIMEOUT_MS = 120_000;

/** what the runner fetches: a commit (a run), or the ref's newest (a CronJob's firing) */
export interface PodGitSource {
  url: string;
  ref?: string;
  commit?: string;
  auth?: { username: string; password: string };
}

export interface GitFetchResult {
  commit: string;
  fetchMs: number;
}

/**
 * The runner pod's own fetch of a run's Git source (the runner image has no
 * `git`): isomorphic-git over http(s), shallow, one ref, into `dir`, then the
 * commit checked out there. A source with a commit (a run: what the host
 * validated) fetches exactly that commit; without (a CronJob's firing) the
 * ref's newest. Failures are GIT_FETCH_FAILED with the URL without
 * credentials.
 */
export async function fetchGitInPod(source: PodGitSource, dir: string, timeoutMs = GIT_FETCH_TIMEOUT_MS): Promise<GitFetchResult> {
  const t0 = Date.now();
  fs.mkdirSync(dir, { recursive: true });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TopasError('GIT_FETCH_FAILED', `git fetch of ${source.url} did not finish within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
  });
  try {
    const commit = await Promise.race([fetchAndCheckout(source, dir), timeout]);
    return { commit, fetchMs: Date.now() - t0 };
  } catch (err) {
    throw err instanceof TopasError ? err : fetchError(source, err);
  } finally {
    clearTimeout(timer);
  }
}

async function fetchAndCheckout(source: PodGitSource, dir: string): Promise<string> {
  const auth = source.auth;
  let asked = false;
  const common = {
    fs,
    http,
    dir,
    url: source.url,
    singleBranch: true,
    depth: 1,
    tags: false,
    // credentials only from the run's Secret; a refusal of them is final (no retry loop)
    onAuth: () => {
      if (!auth || asked) return { cancel: true };
      asked = true;
      return { username: auth.username, password: auth.password };
    },
    onAuthFailure: () => ({ cancel: true }),
  };
  await git.init({ fs, dir });
  // where fetched refs go (a fetch needs a remote's refspec); the URL without credentials
  await git.addRemote({ fs, dir, remote: 'origin', url: source.url });
  let fetched: string | null = null;
  if (source.commit) {
    // the commit the host validated: its own want (a tip, or a server that serves reachable commits), else the ref's tip when it is still that commit
    try {
      fetched = (await git.fetch({ ...common, ref: source.commit })).fetchHead;
    } catch (err) {
      if (isAuthError(err)) throw err;
      fetched = null;
    }
    if (!fetched || !(await hasCommit(dir, source.commit))) {
      const tip = await fetchRef(common, source.ref);
      if (tip !== source.commit) {
        throw new TopasError('GIT_FETCH_FAILED', `git: ${source.ref ?? 'HEAD'} of ${source.url} moved from ${source.commit.slice(0, 12)} (validated by the CLI) to ${tip.slice(0, 12)}, and the server does not serve ${source.commit.slice(0, 12)} by itself`, {
          hint: 'run again (the CLI validates the newest commit), or pass --git-ref with the commit',
        });
      }
    }
    fetched = source.commit;
  } else {
    fetched = await fetchRef(common, source.ref);
  }
  await git.checkout({ fs, dir, ref: fetched, force: true });
  return fetched;
}

type FetchArgs = Parameters<typeof git.fetch>[0];

/** Fetches the ref (none: the remote's HEAD), shallow; the commit it names (an annotated tag peeled). */
async function fetchRef(common: FetchArgs, ref: string | undefined): Promise<string> {
  const r = await git.fetch({ ...common, ...(ref ? { ref } : {}) });
  if (!r.fetchHead) throw new TopasError('GIT_FETCH_FAILED', `git: ${common.url} has no commits`);
  let oid = r.fetchHead;
  for (let i = 0; i < 5; i++) {
    const o = await git.readObject({ fs, dir: common.dir, oid, format: 'parsed' });
    if (o.type !== 'tag') break;
    oid = (o.object as { object: string }).object;
  }
  return oid;
}

async function hasCommit(dir: string, oid: string): Promise<boolean> {
  try {
    await git.readCommit({ fs, dir, oid });
    return true;
  } catch {
    return false;
  }
}

function isAuthError(err: unknown): boolean {
  const e = err as { code?: string; data?: { statusCode?: number } };
  return e.code === 'UserCanceledError' || (e.code === 'HttpError' && (e.data?.statusCode === 401 || e.data?.statusCode === 403));
}

/** What went wrong, said for a user: unreachable, unknown ref, refused credentials; never the credentials themselves. */
export function fetchError(source: PodGitSource, err: unknown): TopasError {
  const e = err as Error & { code?: string; data?: { statusCode?: number; statusMessage?: string } };
  const where = `${source.url}${source.ref ? ` (ref ${source.ref})` : ''}`;
  const net = e.code && /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)$/.test(e.code);
  let message: string;
  let hint: string | undefined;
  if (net) {
    message = `git: cannot reach ${where} from the runner pod: ${e.code}`;
    hint = 'the repository must be reachable from inside the cluster (its DNS and network), not only from the machine that scheduled the run';
  } else if (isAuthError(err)) {
    message = `git: ${where} refused ${source.auth ? 'the credentials' : 'access without credentials'}${e.data?.statusCode ? ` (HTTP ${e.data.statusCode})` : ''}`;
    hint = source.auth ? 'check the token or the user:password of the URL' : `give credentials: https://user:token@host/..., or the token in TOPAS_GIT_TOKEN when scheduling`;
  } else if (e.code === 'NotFoundError') {
    message = `git: ref ${source.ref ?? 'HEAD'} not found in ${source.url}`;
    hint = 'pass --git-ref with an existing branch, tag or commit';
  } else if (e.code === 'HttpError') {
    message = `git: ${where}: HTTP ${e.data?.statusCode ?? '?'} ${e.data?.statusMessage ?? ''}`.trim();
  } else {
    message = `git: fetching ${where} failed: ${e.code ? `${e.code}: ` : ''}${e.message}`;
  }
  // a server's message may quote the URL it was asked for
  const clean = (s: string) => s.replace(/(https?:\/\/)[^/@\s]+@/gi, '$1***@');
  return new TopasError('GIT_FETCH_FAILED', clean(message), { ...(hint ? { hint } : {}), cause: err });
}

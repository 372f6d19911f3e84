import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

/**
 * A bare repository served over git's smart HTTP protocol: a node server that
 * runs `git http-backend` as CGI (GIT_PROJECT_ROOT, GIT_HTTP_EXPORT_ALL), with
 * optional basic auth. `work` is a clone to commit and push from.
 */
export interface GitHttpRepo {
  /** http://HOST:PORT/<name>.git */
  url: string;
  work: string;
  /** write files (path -> content), commit them, push to `branch`; the new commit */
  commit(files: Record<string, string>, message: string, branch?: string): string;
  /** requests the server answered, with their status (an unauthenticated one is 401) */
  requests: Array<{ method: string; path: string; status: number; authorized: boolean }>;
  close(): Promise<void>;
}

export async function serveGitRepo(opts: { root: string; host: string; name?: string; auth?: { username: string; password: string } }): Promise<GitHttpRepo> {
  const name = opts.name ?? 'tests';
  const bare = path.join(opts.root, `${name}.git`);
  const work = path.join(opts.root, `${name}-work`);
  const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } }).trim();
  fs.mkdirSync(opts.root, { recursive: true });
  git(opts.root, 'init', '-q', '--bare', '-b', 'main', bare);
  git(opts.root, 'init', '-q', '-b', 'main', work);
  const requests: GitHttpRepo['requests'] = [];
  const expected = opts.auth ? `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}` : undefined;
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const authorized = !expected || req.headers.authorization === expected;
    const record = (status: number) => requests.push({ method: req.method ?? '', path: u.pathname, status, authorized });
    if (!authorized) {
      record(401);
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end();
      return;
    }
    const child = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: opts.root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: decodeURIComponent(u.pathname),
        QUERY_STRING: u.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_ADDR: req.socket.remoteAddress ?? '',
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
        ...(opts.auth ? { REMOTE_USER: opts.auth.username } : {}),
      },
    });
    req.pipe(child.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]);
        else headers[k] = v;
      }
      record(status);
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    child.stdout.on('end', () => res.end());
    child.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.host, resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  const url = `http://${opts.host}:${port}/${name}.git`;
  return {
    url,
    work,
    requests,
    commit(files, message, branch = 'main') {
      for (const [f, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
        fs.writeFileSync(path.join(work, f), content);
      }
      git(work, 'add', '-A');
      git(work, 'commit', '-q', '-m', message);
      git(work, 'push', '-q', bare, `HEAD:refs/heads/${branch}`);
      return git(work, 'rev-parse', 'HEAD');
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';

/**
 * What a kubelet gives pods to reach the API server, for the tests' node
 * agent: a TCP relay on the agent network's gateway to the API server on
 * 127.0.0.1 (pods dial it as API_HOST_ALIAS, a SAN of the serving
 * certificate, so in-cluster clients verify TLS), and the service-account
 * files (a TokenRequest token, the cluster CA, the namespace).
 */

/** what in-cluster clients dial: mapped to the relay with --add-host */
export const API_HOST_ALIAS = 'kubernetes.default.svc';
const TOKEN_SECONDS = 3600;

export class ApiRelay {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  /** Listens on `host` (any free port) and forwards every connection to the API server `serverUrl`; returns the port. */
  async start(host: string, serverUrl: string): Promise<number> {
    const server = new URL(serverUrl);
    const target = { host: server.hostname.replace(/^\[|\]$/g, ''), port: Number(server.port || 443) };
    this.server = net.createServer((inbound) => {
      const outbound = net.connect(target);
      for (const s of [inbound, outbound]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
    const srv = this.server;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, host, resolve);
    });
    return (srv.address() as AddressInfo).port;
  }

  stop(): void {
    for (const s of this.sockets) s.destroy();
    this.server?.close();
  }
}

/** The service-account files of a pod (token from the TokenRequest API for its serviceAccountName) in a private host folder; returns it. */
export async function writeServiceAccountFiles(core: k8s.CoreV1Api, kc: k8s.KubeConfig, pod: k8s.V1Pod): Promise<string> {
  const namespace = pod.metadata!.namespace!;
  const sa = pod.spec?.serviceAccountName || 'default';
  // bound to the pod as a kubelet's token is; a pod admitted without the ServiceAccount plugin names no account, and its token cannot be bound
  const bound = pod.spec?.serviceAccountName ? { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: pod.metadata!.uid! } } : {};
  const tr = await core.createNamespacedServiceAccountToken({ name: sa, namespace, body: { spec: { audiences: [], expirationSeconds: TOKEN_SECONDS, ...bound } } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'topas-node-agent-sa-'));
  fs.chmodSync(dir, 0o755);
  const cluster = kc.getCurrentCluster()!;
  const ca = cluster.caData ? Buffer.from(cluster.caData, 'base64') : cluster.caFile ? fs.readFileSync(cluster.caFile) : Buffer.alloc(0);
  // readable by any uid the image runs as, as a kubelet's projected volume is (mode 0644)
  fs.writeFileSync(path.join(dir, 'token'), tr.status?.token ?? '', { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'ca.crt'), ca, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'namespace'), namespace, { mode: 0o644 });
  return dir;
}

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import type { ServiceSpec } from '../../src/spec/app-spec';
import { CoreSut } from '../../src/sut/core-sut';
import type { Adopted, DatabaseHandle, DriverHost, ExecResult, Fault, ReplicaHandle, ReplicaRequest, SavedReplicas, SutDriver } from '../../src/sut/driver';
import { TopasError } from '../../src/errors';

/**
 * The SUT core over an in-memory driver: the policies (surge-one rollout,
 * scale-down order, healing, delegation to native rollouts, attach) without
 * processes or containers.
 */
const spec = parseAppSpec(
  `
name: fake
services:
  - name: api
    command: ["x"]
    version: "1"
    port: 8080
    replicas: 2
    env: { PEER: "\${api.url}" }
`,
  '/tmp/topas.yaml',
);

class FakeDriver implements SutDriver {
  readonly name = 'fake';
  readonly tuning = { drainMs: 1, reconcileIntervalMs: 10 };
  readonly events: string[] = [];
  readonly gone = new Set<string>();
  /** versions whose replicas never get ready */
  failing = new Set<string>();
  adoptable: Adopted = { replicas: [], databases: [] };
  rollouts = 0;
  private n = 0;
  host!: DriverHost;
  constructor(readonly capabilities: SutDriver['capabilities'] = { faults: ['kill'] }) {}
  bind(host: DriverHost): void {
    this.host = host;
  }
  async prepare(): Promise<{ dependents: boolean }> {
    return { dependents: false };
  }
  async startReplica(req: ReplicaRequest): Promise<ReplicaHandle> {
    const n = ++this.n;
    const a = { host: '127.0.0.1', port: 40000 + n };
    const h: ReplicaHandle = { key: `r${n}`, service: req.service.name, index: req.index, version: req.service.version, revision: req.service.version, host: { main: a, ports: {} }, inside: { main: a, ports: {} } };
    let peer: string;
    try {
      peer = this.host.resolve(req.service.env.PEER ?? '');
    } catch (e) {
      peer = (e as TopasError).code;
    }
    this.events.push(`start ${h.key} slot ${req.index} v${req.service.version} env ${peer}`);
    req.created(h);
    return h;
  }
  async waitReplicaReady(h: ReplicaHandle, svc: ServiceSpec): Promise<void> {
    if (this.failing.has(svc.version ?? '')) throw new TopasError('READINESS_TIMEOUT', `${h.key} never ready`);
  }
  async removeReplica(h: ReplicaHandle): Promise<void> {
    this.events.push(`remove ${h.key}`);
    this.gone.add(h.key);
  }
  isGone(h: ReplicaHandle): boolean {
    return this.gone.has(h.key);
  }
  async fault(h: ReplicaHandle, f: Fault): Promise<'gone' | 'alive'> {
    this.events.push(`fault ${h.key} ${f.kind}`);
    this.gone.add(h.key);
    return 'gone';
  }
  async replicaLogs(h: ReplicaHandle): Promise<string> {
    return `hello from ${h.key}\n`;
  }
  async exec(): Promise<ExecResult> {
    return { code: 0, stdout: '', stderr: '' };
  }
  async startDatabase(): Promise<DatabaseHandle> {
    throw new Error('no databases here');
  }
  databaseGone(): boolean {
    return true;
  }
  async databaseLogs(): Promise<string> {
    return '';
  }
  async adopt(saved: SavedReplicas): Promise<Adopted> {
    this.events.push(`adopt ${JSON.stringify(saved)}`);
    return this.adoptable;
  }
  state(): Record<string, unknown> {
    return { fake: true };
  }
  proxyHostDir(): string {
    return '/nonexistent';
  }
  async dispose(): Promise<void> {
    this.events.push('dispose');
  }
  async rollout(svc: ServiceSpec, replicas: number): Promise<void> {
    this.rollouts++;
    this.events.push(`native rollout v${svc.version} x${replicas}`);
  }
}

/** events without the resolved env */
function plain(events: string[]): string[] {
  return events.map((e) => e.replace(/ env .*$/, ''));
}

async function started(driver = new FakeDriver()): Promise<{ sut: CoreSut; driver: FakeDriver }> {
  const sut = await CoreSut.start(spec, driver, { runId: 'fake-1', workDir: '', log: () => {}, processEnv: process.env });
  return { sut, driver };
}

describe('sut core over a driver', () => {
  test('start: every replica in its slot, references resolved through the inside view', async () => {
    const { sut, driver } = await started();
    try {
      // a reference to api while no replica of api runs is the one error for it
      assert.equal(driver.events[0], 'start r1 slot 1 v1 env SUT_START_FAILED');
      // the second starts beside the first, which runs (not yet ready): the pool falls back to it
      assert.match(driver.events[1], /^start r2 slot 2 v1 env (SUT_START_FAILED|http:\/\/127\.0\.0\.1:40001)$/);
      const api = (await sut.services())[0];
      assert.deepEqual([api.replicas, api.ready, api.version], [2, true, '1']);
      // once it runs: the first replica in rotation, as the SUT's own services see it
      await sut.restart('api');
      assert.match(driver.events[2], /^start r3 slot 1 v1 env http:\/\/127\.0\.0\.1:4000[12]$/);
    } finally {
      await sut.dispose();
    }
  });

  test('rollout: surge one at a time, new ready before the old one goes, never below the declared count', async () => {
    const { sut, driver } = await started();
    let fewest = Infinity;
    sut.onEndpointsChange((m) => (fewest = Math.min(fewest, m.api.urls.length)));
    try {
      await sut.applyService('api', { version: '2' });
      assert.deepEqual(plain(driver.events.slice(2)), ['start r3 slot 1 v2', 'remove r1', 'start r4 slot 2 v2', 'remove r2']);
      assert.ok(fewest >= 2, `endpoints fell to ${fewest} during the rollout`);
      assert.equal((await sut.services())[0].version, '2');
    } finally {
      await sut.dispose();
    }
  });

  test('a rollout whose new replica never gets ready keeps the old config and the old replicas', async () => {
    const { sut, driver } = await started();
    driver.failing.add('2');
    try {
      await assert.rejects(sut.applyService('api', { version: '2' }), /never ready/);
      const api = (await sut.services())[0];
      assert.deepEqual([api.replicas, api.version], [2, '1']);
      assert.equal((sut.state().data as { services: { api: { version: string } } }).services.api.version, '1');
    } finally {
      await sut.dispose();
    }
  });

  test('scale down: replicas of another config first, then the highest slots', async () => {
    const { sut, driver } = await started();
    try {
      await sut.scale('api', 3);
      assert.deepEqual(plain(driver.events.slice(-1)), ['start r3 slot 3 v1']);
      await sut.scale('api', 1);
      assert.deepEqual(driver.events.slice(-2).sort(), ['remove r2', 'remove r3']);
      assert.equal((await sut.services())[0].replicas, 1);
    } finally {
      await sut.dispose();
    }
  });

  test('a replica that died leaves rotation and is replaced in its slot; wait_ready waits for it', async () => {
    const { sut, driver } = await started();
    try {
      driver.gone.add('r1');
      await sut.waitReady('api', 5000);
      assert.ok(driver.events.includes('remove r1'));
      assert.match(driver.events.at(-1)!, /^start r3 slot 1 /);
      assert.equal(sut.endpointMap().api.urls.length, 2);
    } finally {
      await sut.dispose();
    }
  });

  test('kill takes the replica out at once and the same error for a slot that does not run', async () => {
    const { sut, driver } = await started();
    try {
      await assert.rejects(sut.kill('api', { replica: 9 }), { code: 'SUT_NOT_UP', message: 'service api has no running replica 9 (running: 1, 2)' });
      await sut.kill('api', { replica: 2 });
      assert.ok(driver.events.includes('fault r2 kill'));
      await sut.waitReady('api', 5000);
      assert.deepEqual((await sut.services())[0].replicas, 2);
    } finally {
      await sut.dispose();
    }
  });

  test('a driver with native rollouts is asked to roll; the core starts and stops nothing itself', async () => {
    const { sut, driver } = await started(new FakeDriver({ faults: ['kill'], nativeRollout: true }));
    try {
      const before = driver.events.length;
      await sut.applyService('api', { version: '3' });
      assert.equal(driver.rollouts, 1);
      assert.deepEqual(driver.events.slice(before), ['native rollout v3 x2']);
    } finally {
      await sut.dispose();
    }
  });

  test('state and attach: the replicas the driver adopts are taken as they are; one being retired is stopped', async () => {
    const { sut, driver } = await started();
    const state = sut.state();
    await sut.detach();
    assert.equal(sut.lifecycle, 'kept');
    const again = new FakeDriver();
    const a = { host: '127.0.0.1', port: 40001 };
    const mk = (key: string, index: number): ReplicaHandle => ({ key, service: 'api', index, version: '1', revision: '1', host: { main: a, ports: {} }, inside: { main: a, ports: {} } });
    again.adoptable = { replicas: [{ replica: mk('r1', 1), alive: true }, { replica: mk('r2', 2), alive: true }, { replica: mk('old', 2), alive: true, retiring: true }], databases: [] };
    const attached = await CoreSut.attach(spec, again, state, { runId: 'fake-1', workDir: '', log: () => {}, processEnv: process.env });
    try {
      assert.match(again.events[0], /^adopt \{"api":\[\{"index":1/);
      assert.equal(attached.lifecycle, 'kept');
      await attached.waitReady('api', 5000);
      assert.ok(again.events.includes('remove old'));
      assert.equal((await attached.services())[0].replicas, 2);
      assert.ok(!again.events.some((e) => e.startsWith('start')), 'alive replicas are not restarted');
    } finally {
      await attached.dispose();
      await sut.dispose();
    }
    assert.equal(driver.events.at(-1), 'dispose');
  });

  test('a driver that can prepare replicas gets every declared slot at once; starts still wait for what they depend on', async () => {
    const withDb = parseAppSpec(
      `
name: fake
services:
  - name: api
    command: ["x"]
    version: "1"
    port: 8080
    replicas: 2
    depends_on: [db]
databases:
  - name: db
    port: 5432
    credentials: { user: u, password: p, dbname: d }
`,
      '/tmp/topas.yaml',
    );
    let dbReady!: () => void;
    class PreparingDriver extends FakeDriver {
      prepareReplica(req: { service: ServiceSpec; index: number }): void {
        this.events.push(`prepare ${req.service.name} slot ${req.index}`);
      }
      override async startDatabase(): Promise<DatabaseHandle> {
        this.events.push('db starting');
        await new Promise<void>((r) => (dbReady = r));
        this.events.push('db ready');
        const a = { host: '127.0.0.1', port: 5432 };
        return { name: 'db', host: a, inside: a };
      }
    }
    const driver = new PreparingDriver();
    const starting = CoreSut.start(withDb, driver, { runId: 'fake-2', workDir: '', log: () => {}, processEnv: process.env });
    for (let i = 0; i < 100 && !dbReady; i++) await new Promise((r) => setTimeout(r, 5));
    // both slots prepared while the database is not ready, and nothing of api started yet
    assert.deepEqual(driver.events.slice().sort(), ['db starting', 'prepare api slot 1', 'prepare api slot 2']);
    dbReady();
    const sut = await starting;
    try {
      assert.deepEqual(plain(driver.events.slice(3)), ['db ready', 'start r1 slot 1 v1', 'start r2 slot 2 v1']);
    } finally {
      await sut.dispose();
    }
  });
});

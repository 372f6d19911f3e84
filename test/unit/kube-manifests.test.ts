import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import {
  LABELS,
  databaseObjects,
  envHash,
  labelValue,
  objectName,
  ownedBy,
  parentConfigMap,
  portName,
  resolveForCluster,
  runSelector,
  serviceObjects,
} from '../../plugins/kubernetes/src/manifests';

const QUICKSTART = path.resolve(__dirname, '..', '..', '..', 'fixtures', 'quickstart', 'topas.yaml');
const spec = parseAppSpec(fs.readFileSync(QUICKSTART, 'utf8'), QUICKSTART);
const RUN = '20261202-101500-123-10-abcdef';
const opts = { runId: RUN, namespace: 'tests' };
const api = spec.services.find((s) => s.name === 'api')!;
const db = spec.databases.find((d) => d.name === 'db')!;

describe('kubernetes manifests', () => {
  test('names are DNS labels, per run, short enough for pod-name suffixes', () => {
    const n = objectName('quickstart', 'api', RUN);
    assert.match(n, /^quickstart-api-[0-9a-f]{6}$/);
    assert.notEqual(n, objectName('quickstart', 'api', `${RUN}x`));
    const long = objectName('A_very_long_Application_name_that_goes_on', 'and-a-long-service-name-too', RUN);
    assert.ok(long.length <= 52, long);
    assert.match(long, /^[a-z][a-z0-9-]*[a-z0-9]$/);
    assert.equal(labelValue('-a b!c-'), 'a-b-c');
    assert.equal(portName('Admin_HTTP_Port_Extra'), 'admin-http-port');
    assert.equal(portName('9090'), 'p-9090');
  });

  test('${db.url} and ${api.url} resolve to Service DNS names and declared ports', () => {
    const host = `${objectName('quickstart', 'db', RUN)}.tests.svc.cluster.local`;
    assert.equal(resolveForCluster(spec, opts, '${db.url}'), `postgres://admin:secret@${host}:5432/testdb`);
    assert.equal(resolveForCluster(spec, opts, '${db.host}:${db.port}'), `${host}:5432`);
    assert.equal(resolveForCluster(spec, opts, '${api.url} ${api.ports.grpc}'), `http://${objectName('quickstart', 'api', RUN)}.tests.svc.cluster.local:8080 9090`);
    assert.throws(() => resolveForCluster(spec, opts, '${db.nope}'), /databases have no field "nope"/);
  });

  test('a service: Secret with its env, Deployment (zero-downtime rolling update, probe, named ports), Service', () => {
    const o = serviceObjects(spec, api, { ...opts, env: { EXTRA: 'x' } });
    const name = objectName('quickstart', 'api', RUN);
    assert.equal(o.secret.metadata?.name, `${name}-env`);
    assert.equal(o.secret.stringData?.DATABASE_URL, resolveForCluster(spec, opts, '${db.url}'));
    assert.equal(o.secret.stringData?.PORT, '8080');
    assert.equal(o.secret.stringData?.PORT_GRPC, '9090');
    assert.equal(o.secret.stringData?.EXTRA, 'x');
    const d = o.deployment;
    assert.equal(d.spec?.replicas, 2);
    assert.deepEqual(d.spec?.strategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    const c = d.spec!.template.spec!.containers[0];
    assert.equal(c.image, 'local/mock-app:1.0.0');
    assert.deepEqual(c.envFrom, [{ secretRef: { name: `${name}-env` } }]);
    assert.deepEqual(c.ports, [
      { name: 'main', containerPort: 8080 },
      { name: 'grpc', containerPort: 9090 },
    ]);
    assert.deepEqual(c.readinessProbe?.httpGet, { path: '/healthz', port: 'main', scheme: 'HTTP' });
    // the selector picks this run's pods of this service only, and the pod template carries every label
    assert.deepEqual(d.spec?.selector.matchLabels, { [LABELS.run]: RUN, [LABELS.component]: 'api' });
    for (const [k, v] of Object.entries(d.spec!.selector.matchLabels!)) assert.equal(d.spec!.template.metadata!.labels![k], v);
    assert.equal(d.spec!.template.metadata!.labels![LABELS.app], 'quickstart');
    assert.equal(d.spec!.template.metadata!.labels![LABELS.version], '1.0.0');
    assert.deepEqual(
      o.service.spec?.ports?.map((p) => [p.name, p.port, p.targetPort]),
      [
        ['main', 8080, 'main'],
        ['grpc', 9090, 'grpc'],
      ],
    );
  });

  test('an upgrade or a new env changes the pod template (a rollout); the same input renders the same objects', () => {
    const a = serviceObjects(spec, api, opts);
    assert.deepEqual(serviceObjects(spec, api, opts), a);
    const up = serviceObjects(spec, api, opts, { version: '1.1.0' });
    assert.equal(up.deployment.spec!.template.spec!.containers[0].image, 'local/mock-app:1.1.0');
    assert.equal(up.secret.stringData?.TOPAS_VERSION, '1.1.0');
    const env = serviceObjects(spec, api, opts, { env: { FLAG: 'on' } });
    assert.notEqual(env.deployment.spec!.template.metadata!.annotations!['topas.dev/env-hash'], a.deployment.spec!.template.metadata!.annotations!['topas.dev/env-hash']);
    assert.equal(envHash({ a: '1', b: '2' }), envHash({ b: '2', a: '1' }));
    assert.equal(serviceObjects(spec, api, opts, { replicas: 5 }).deployment.spec?.replicas, 5);
  });

  test('PostgreSQL: StatefulSet from the configured image, credentials from a Secret, initSQL in a Job', () => {
    const o = databaseObjects(spec, db, opts);
    const c = o.statefulSet.spec!.template.spec!.containers[0];
    assert.equal(c.image, 'local/postgres:15');
    assert.deepEqual(
      c.env?.map((e) => [e.name, e.valueFrom?.secretKeyRef?.key]),
      [
        ['POSTGRES_USER', 'POSTGRES_USER'],
        ['POSTGRES_PASSWORD', 'POSTGRES_PASSWORD'],
        ['POSTGRES_DB', 'POSTGRES_DB'],
      ],
    );
    assert.equal(o.secret.stringData?.POSTGRES_PASSWORD, 'secret');
    assert.deepEqual(c.readinessProbe?.exec?.command?.slice(0, 3), ['pg_isready', '-h', '127.0.0.1']);
    assert.equal(o.service.spec?.ports?.[0].port, 5432);
    const job = o.initJob!;
    assert.equal(job.spec?.template.spec?.restartPolicy, 'Never');
    assert.match(o.secret.stringData!.INIT_SQL, /CREATE TABLE users/);
    // the SQL is not on any command line
    assert.ok(!JSON.stringify(job).includes('CREATE TABLE'));
    assert.equal(job.spec!.template.spec!.containers[0].env!.find((e) => e.name === 'PGHOST')!.value, `${objectName('quickstart', 'db', RUN)}.tests.svc.cluster.local`);
    const noImage = databaseObjects(spec, { ...db, image: undefined, version: undefined, initSQL: undefined }, { ...opts, postgresImage: 'local/postgres:15' });
    assert.equal(noImage.statefulSet.spec!.template.spec!.containers[0].image, 'local/postgres:15');
    assert.equal(noImage.initJob, undefined);
  });

  test('everything carries the run labels and can be owned by the run ConfigMap', () => {
    const parent = parentConfigMap(spec, opts, { host: 'h', pid: 1 }, '2026-12-02T10:15:00Z');
    assert.equal(parent.data?.runId, RUN);
    const objs = [...Object.values(serviceObjects(spec, api, opts)), ...Object.values(databaseObjects(spec, db, opts))];
    const selector = Object.fromEntries(runSelector(RUN).split(',').map((kv) => kv.split('=')));
    for (const o of [parent, ...objs]) {
      for (const [k, v] of Object.entries(selector)) assert.equal(o.metadata?.labels?.[k], v, `${o.kind} ${o.metadata?.name} ${k}`);
      assert.equal(o.metadata?.namespace, 'tests');
    }
    const owned = ownedBy(objs[0], { name: parent.metadata!.name!, uid: 'u-1' });
    assert.deepEqual(owned.metadata?.ownerReferences, [{ apiVersion: 'v1', kind: 'ConfigMap', name: parent.metadata!.name!, uid: 'u-1', blockOwnerDeletion: false }]);
  });
});

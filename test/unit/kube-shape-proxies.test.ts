import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAppSpec } from '../../src/spec/load-app-spec';
import { LABELS, resolveForCluster, serviceObjects } from '../../plugins/kubernetes/src/manifests';
import { SHAPE_CONTROL_PORT, controlAddress, controlPortFor, proxyHostConfig, proxyNotReady, shapeProxyObjects, shapeTokenSecret, tokenOf } from '../../plugins/kubernetes/src/shape-proxies';
import { parseFixedConfig } from '../../src/shape/proxy-host-fixed';
import { KubernetesBackend } from '../../plugins/kubernetes/src/kube-backend';
import { TopasError } from '../../src/errors';

const QUICKSTART = path.resolve(__dirname, '..', '..', '..', 'fixtures', 'quickstart', 'topas.yaml');
const spec = parseAppSpec(fs.readFileSync(QUICKSTART, 'utf8'), QUICKSTART);
const RUN = '20261202-101500-123-10-abcdef';
const opts = { runId: RUN, namespace: 'tests', shaping: true, proxyImage: 'topas-runner:test' };
const api = spec.services.find((s) => s.name === 'api')!;

describe('kubernetes shaping proxies (manifests)', () => {
  test('with shaping, references name the proxy Service on the same port; without, the component itself', () => {
    assert.match(resolveForCluster(spec, opts, '${db.url}'), /^postgres:\/\/admin:secret@quickstart-db-shape-[0-9a-f]{6}\.tests\.svc\.cluster\.local:5432\/testdb$/);
    assert.match(resolveForCluster(spec, opts, '${api.url}'), /^http:\/\/quickstart-api-shape-[0-9a-f]{6}\.tests\.svc\.cluster\.local:8080$/);
    assert.match(resolveForCluster(spec, opts, '${api.host}:${api.ports.grpc}'), /^quickstart-api-shape-[0-9a-f]{6}\.tests\.svc\.cluster\.local:9090$/);
    assert.match(resolveForCluster(spec, { ...opts, shaping: false }, '${db.url}'), /@quickstart-db-[0-9a-f]{6}\.tests\.svc\.cluster\.local:5432\//);
    // the dependent's Secret holds the proxy's name
    const o = serviceObjects(spec, api, opts);
    assert.match(o.secret.stringData!.DATABASE_URL, /quickstart-db-shape-/);
  });

  test('a proxy per component: its ports, forwarding to the component\'s own Service, in HTTP mode on main', () => {
    const c = proxyHostConfig(spec, 'api', opts);
    assert.deepEqual(c.control, { host: '0.0.0.0', port: SHAPE_CONTROL_PORT });
    assert.deepEqual(
      c.proxies.map((p) => [p.key, p.mode, p.listen.port, p.targets[0].port]),
      [
        ['api:main', 'http', 8080, 8080],
        ['api:grpc', 'tcp', 9090, 9090],
      ],
    );
    assert.match(c.proxies[0].targets[0].host, /^quickstart-api-[0-9a-f]{6}\.tests\.svc\.cluster\.local$/);
    const db = proxyHostConfig(spec, 'db', opts);
    assert.deepEqual(db.proxies.map((p) => [p.key, p.mode, p.listen.port]), [['db:db', 'tcp', 5432]]);
    // what the pod reads back is what was written
    assert.deepEqual(parseFixedConfig(JSON.stringify(c)), c);
  });

  test('Deployment and Service: the runner image running the proxy host, labelled with the run, ports equal to target ports', () => {
    const { deployment, service } = shapeProxyObjects(spec, 'api', opts);
    assert.match(deployment.metadata!.name!, /^quickstart-api-shape-[0-9a-f]{6}$/);
    assert.equal(deployment.metadata!.labels![LABELS.run], RUN);
    assert.equal(deployment.metadata!.labels![LABELS.component], 'api-shape');
    assert.equal(deployment.metadata!.labels![LABELS.kind], 'shape');
    const c = deployment.spec!.template.spec!.containers[0];
    assert.equal(c.image, 'topas-runner:test');
    assert.deepEqual(c.command, ['topas', 'proxy-host', '--serve']);
    assert.equal(c.env!.find((e) => e.name === 'TOPAS_PROXY_HOST_TOKEN')?.valueFrom?.secretKeyRef?.key, 'token');
    assert.deepEqual(JSON.parse(c.env!.find((e) => e.name === 'TOPAS_PROXY_HOST_CONFIG')!.value!), proxyHostConfig(spec, 'api', opts));
    assert.deepEqual(c.readinessProbe?.tcpSocket?.port, 'shape-control');
    assert.deepEqual(
      service.spec!.ports!.map((p) => [p.name, p.port, p.targetPort]),
      [
        ['main', 8080, 'main'],
        ['grpc', 9090, 'grpc'],
        ['shape-control', SHAPE_CONTROL_PORT, 'shape-control'],
      ],
    );
    // the proxy's pods are not the component's: rollouts and pod counts of api never see them
    assert.deepEqual(service.spec!.selector, deployment.spec!.selector!.matchLabels);
    assert.equal(deployment.spec!.selector!.matchLabels![LABELS.component], 'api-shape');
  });

  test('the control port steps aside when the component uses it', () => {
    assert.equal(controlPortFor([8080]), SHAPE_CONTROL_PORT);
    assert.equal(controlPortFor([SHAPE_CONTROL_PORT, SHAPE_CONTROL_PORT + 1]), SHAPE_CONTROL_PORT + 2);
    assert.match(controlAddress(spec, 'api', opts).host, /^quickstart-api-shape-[0-9a-f]{6}\.tests\.svc\.cluster\.local$/);
  });

  test('the token Secret: labelled with the run, the token read back from base64 data', () => {
    const s = shapeTokenSecret('quickstart', opts, 'tok-123');
    assert.equal(s.metadata!.labels![LABELS.run], RUN);
    assert.equal(tokenOf({ data: { token: Buffer.from('tok-123').toString('base64') } }), 'tok-123');
    assert.equal(tokenOf({ data: {} }), undefined);
  });

  test('a config that is not what topas writes is refused, naming the field', () => {
    assert.throws(() => parseFixedConfig(undefined), /TOPAS_PROXY_HOST_CONFIG is not set/);
    assert.throws(() => parseFixedConfig('{'), /is not JSON/);
    assert.throws(() => parseFixedConfig(JSON.stringify({ control: { host: '0.0.0.0', port: 1 }, proxies: [{ key: 'a', service: 'a', mode: 'udp', listen: { host: 'x', port: 1 }, targets: [] }] })), /proxies\[0\]\.mode/);
    assert.throws(() => parseFixedConfig(JSON.stringify({ control: { host: '0.0.0.0', port: 70000 }, proxies: [] })), /control: expected \{host, port\}/);
  });

  test('a component named like another one\'s proxy is refused before anything starts', () => {
    const clash = parseAppSpec(['name: x', 'services:', '  - { name: api, image: a, port: 8080 }', '  - { name: api-shape, image: b, port: 8081 }', ''].join('\n'), '/tmp/x.yaml');
    assert.deepEqual(new KubernetesBackend().validate(clash), [{ path: 'services[1].name', message: '"api-shape" takes the object names of the shaping proxy of "api" on kubernetes (api-shape); rename it' }]);
    assert.deepEqual(new KubernetesBackend().validate(spec), []);
  });

  test('a proxy that does not get ready says whose it is and that it runs the runner image', () => {
    const err = proxyNotReady(new TopasError('READINESS_TIMEOUT', 'kubernetes: api-shape was not ready within 60s', { problems: [{ path: 'p', message: 'waiting: ErrImageNeverPull' }] }), 'api', 'topas-runner:x') as TopasError;
    assert.equal(err.message, 'kubernetes: api-shape was not ready within 60s (the shaping proxy of api)');
    assert.deepEqual(err.problems, [{ path: 'p', message: 'waiting: ErrImageNeverPull' }]);
    assert.match(err.hint!, /runner image topas-runner:x .*TOPAS_KUBE_SHAPING=off/);
    const other = new Error('boom');
    assert.equal(proxyNotReady(other, 'api', 'x'), other);
  });
});

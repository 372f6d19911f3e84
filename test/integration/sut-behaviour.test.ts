import { LocalBackend } from '../../src/backends/local/local-backend';
import { DockerBackend } from '../../src/backends/docker/docker-backend';
import { sutBehaviourSuite } from './sut-behaviour-suite';

// One behaviour suite per driver under the SUT core (test/integration/sut-behaviour-suite.ts).
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';

sutBehaviourSuite('local', () => new LocalBackend());
sutBehaviourSuite('docker', () => new DockerBackend());

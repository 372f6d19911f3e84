import Compare from './compare';
import Dashboard from './dashboard';
import Down from './down';
import Export from './export';
import Help from './help';
import Import from './import';
import Init from './init';
import Load from './load';
import Ps from './ps';
import Report from './report';
import Run from './run';
import SyncServer from './sync-server';
import Up from './up';
import TestLogs from './test/logs';
import TestSchedule from './test/schedule';
import TestStatus from './test/status';

/** oclif explicit command discovery: the single binary never looks commands up on disk. */
export const COMMANDS = {
  compare: Compare,
  dashboard: Dashboard,
  down: Down,
  export: Export,
  help: Help,
  import: Import,
  init: Init,
  load: Load,
  ps: Ps,
  report: Report,
  run: Run,
  'sync-server': SyncServer,
  up: Up,
  'test:logs': TestLogs,
  'test:schedule': TestSchedule,
  'test:status': TestStatus,
};

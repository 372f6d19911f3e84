import Down from './down';
import Ps from './ps';
import Run from './run';
import Up from './up';
import TestLogs from './test/logs';
import TestSchedule from './test/schedule';
import TestStatus from './test/status';

/** oclif explicit command discovery: the single binary never looks commands up on disk. */
export const COMMANDS = {
  init: (require('./init') as typeof import('./init')).default,
  down: Down,
  ps: Ps,
  run: Run,
  up: Up,
  'test:logs': TestLogs,
  'test:schedule': TestSchedule,
  'test:status': TestStatus,
};

import * as fs from 'node:fs';
import * as path from 'node:path';

// dist/src/util -> the package root (bin/run.js lives there); a single executable has no script
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/** argv that starts this same topas (script or single executable). */
export function selfCommand(): string[] {
  const script = path.join(PACKAGE_ROOT, 'bin', 'run.js');
  return fs.existsSync(script) ? [process.execPath, script] : [process.execPath];
}

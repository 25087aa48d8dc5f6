// Loaded with --import into the `agentgate` processes the tests spawn (see childEnv in
// process.ts) while tap collects coverage: V8 block coverage of the project's own files (dist/
// and bin/, mapped back to gateway/*.ts by their source maps when tap reports), written at exit
// into the folder tap's coverage report reads. It stands in for @tapjs/processinfo in those
// children: that does the same plus per-module bookkeeping through loader hooks, which costs
// each short CLI process about 0.6 s of CPU on Node 20. Plain JavaScript: the child runs without
// a TypeScript loader.
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.AGENTGATE_TEST_COVERAGE_DIR;
const root = process.env.AGENTGATE_TEST_COVERAGE_ROOT;
if (dir && root) {
  const prefix = `${pathToFileURL(root).href}/`;
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  // 'exit' runs for a normal end, process.exit() and the gateway's own SIGTERM/SIGINT handling;
  // a SIGKILL leaves no coverage, as with any collector. The inspector answers synchronously here.
  process.on('exit', () => {
    session.post('Profiler.takePreciseCoverage', (error, coverage) => {
      if (error) return;
      const result = coverage.result.filter((script) => script.url.startsWith(prefix) && !script.url.includes('/node_modules/'));
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `agentgate-${process.pid}-${randomUUID()}.json`), JSON.stringify({ result }));
    });
  });
}

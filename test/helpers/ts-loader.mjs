// The TypeScript loader of the test processes (package.json "tap": `node-arg` imports this file,
// `test-env` sets TAP_TYPE_STRIP_ONLY=1 so tap's own ts-node loader stays out). It registers
// ts-hooks.mjs, which strips types with swc. ts-node did the same through swc too, but loaded the
// whole TypeScript compiler into every test process only to read tsconfig.json: about 0.5 s of CPU
// per test file, some 45 s over the suite. Types are not checked here: `npm run lint` does that.
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);

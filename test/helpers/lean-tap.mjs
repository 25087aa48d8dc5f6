// Loaded first in every test process (package.json "tap": `test-env` puts it in NODE_OPTIONS,
// ahead of what tap adds there). On Node versions without synchronous module hooks (Node 20),
// @tapjs/processinfo and @tapjs/mock each register an off-thread module loader, and every module a
// test loads then makes a round trip to that thread, where processinfo also reads it again to
// record its path and line lengths (for `tap --changed`): together 1.5 to 2 s of CPU per test
// file, about as much as the test itself. Their registration is skipped here. processinfo's
// coverage collector does not depend on its loader (it starts its V8 coverage session before
// registering it, and tap's report reads each file and its source map from disk; the coverage
// figures are the same with and without); the suite uses neither `t.mockImport` nor `--changed`,
// which are what is lost. On Node 24, where both use synchronous hooks in the test's own thread,
// nothing is changed.
// It removes itself from NODE_OPTIONS so the processes the tests spawn do not load it.
// Plain JavaScript: it runs before anything else in the process.
import module from 'node:module';

const self = /(?:^|\s)"?--import[= ]\S*lean-tap\.mjs"?/;
if (process.env.NODE_OPTIONS !== undefined) process.env.NODE_OPTIONS = process.env.NODE_OPTIONS.replace(self, '').trim();

const TAP_LOADERS = /\/node_modules\/@tapjs\/(processinfo|mock)\/dist\/esm\/loader\.mjs$/;
const register = module.register;
if (typeof register === 'function') {
  module.register = function leanRegister(specifier, parentURL, options) {
    if (TAP_LOADERS.test(String(specifier))) {
      // The loader would have owned this port; closed, it keeps nothing alive.
      const data = typeof parentURL === 'object' && parentURL !== null ? parentURL.data : options?.data;
      data?.port?.close?.();
      return;
    }
    return register.call(this, specifier, parentURL, options);
  };
  module.syncBuiltinESMExports();
}


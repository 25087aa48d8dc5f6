#!/usr/bin/env node
// Entry point of the `agentgate` command: runs the compiled CLI from dist/ (built by `npm install`
// through the `prepare` script, or by `npm run build`).
let cli;
try {
  cli = await import('../dist/gateway/main.js');
} catch (error) {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/gateway/main.js')) {
    process.stderr.write('agentgate: not built yet; run `npm install` (or `npm run build`) in the project folder\n');
    process.exit(1);
  }
  throw error;
}
process.exitCode = await cli.main(process.argv.slice(2));

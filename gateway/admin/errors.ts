// The admin errors the CLI turns into one line and exit code 1. A leaf: the dispatcher
// (cli/index.ts) tells them apart without loading the admin socket's server side.

/** Another gateway serves the admin socket; this one does not start. */
export class AdminSocketInUseError extends Error {
  constructor(readonly path: string) {
    super(`another gateway is serving the admin socket ${path}; stop it first, or set AGENTGATE_ADMIN_SOCKET to another path`);
    this.name = 'AdminSocketInUseError';
  }
}

// Entry point of the `agentgate` command (bin/agentgate.js imports this file from dist/). The
// verbs live in cli/, one file per group; cli/index.ts holds the verb table and the dispatcher.
export { COMMANDS, main } from './cli/index.js';

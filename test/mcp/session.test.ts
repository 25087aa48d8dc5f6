// MCP session ids sealed to their owner (the agent, and the user it acts for) and backend: what
// opens, what does not (another agent's or user's id, another backend's, altered bytes, the
// server's bare id, fields shifted from one to the next), and the secret file two processes agree on.
import t from 'tap';
import { readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createMcpSessions, isServerSessionId } from '../../gateway/mcp/session.js';
import { openSessionSecret, SESSION_SECRET_FILE } from '../../gateway/tokens/session-secret.js';

const openMcpSessions = async (dir: string) => createMcpSessions(await openSessionSecret(dir));

const sessions = createMcpSessions(randomBytes(32));
const serverId = '6f1c2a4e-0b9d-4c53-9a8e-2f7d1c0b5e31';
const agent = (name: string, onBehalfOf: string | null = null) => ({ agent: name, onBehalfOf });
const owner = agent('support-agent-01');
const sealed = sessions.seal(owner, 'tools', serverId);

t.test('the agent gets a sealed id that opens to the server id for it alone', async (t) => {
  t.not(sealed, serverId);
  t.match(sealed, /^ag1\.[A-Za-z0-9_-]{43}\./);
  t.ok(sealed.endsWith(`.${serverId}`));
  t.ok(isServerSessionId(sealed), 'still visible ASCII, as MCP requires of a session id');
  t.equal(sessions.open(owner, 'tools', sealed), serverId);
  const forAlice = sessions.seal(agent('support-agent-01', 'alice'), 'tools', serverId);
  t.equal(sessions.open(agent('support-agent-01', 'alice'), 'tools', forAlice), serverId, 'a delegated session opens for the same agent and user');
});

t.test('what does not open', async (t) => {
  const mac = sealed.slice(4, 47);
  const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  const forAlice = sessions.seal(agent('support-agent-01', 'alice'), 'tools', serverId);
  const cases: Array<{ name: string; owner?: { agent: string; onBehalfOf: string | null }; backend?: string; presented: string }> = [
    { name: 'another agent presenting it', owner: agent('support-agent-02'), presented: sealed },
    { name: 'an agent whose name extends the first', owner: agent('support-agent-011'), presented: sealed },
    { name: 'the same agent acting for a user', owner: agent('support-agent-01', 'alice'), presented: sealed },
    { name: "a user's session used by the agent for itself", presented: forAlice },
    { name: "a user's session used for another user", owner: agent('support-agent-01', 'bob'), presented: forAlice },
    { name: "a user's session used by another agent for that user", owner: agent('support-agent-02', 'alice'), presented: forAlice },
    { name: 'the user named like the agent', owner: agent('support-agent-01', 'support-agent-01'), presented: sealed },
    { name: 'the same agent on another backend', backend: 'tools2', presented: sealed },
    { name: 'a field moved from the agent to the backend', owner: agent('support-agent-0'), backend: '1tools', presented: sealed },
    { name: 'the server id alone', presented: serverId },
    { name: 'a MAC bit changed', presented: `ag1.${flip(mac, 5)}.${serverId}` },
    { name: 'the server id changed', presented: `ag1.${mac}.${serverId.slice(0, -1)}0` },
    { name: 'the server id extended', presented: `${sealed}x` },
    { name: 'the MAC cut short', presented: `ag1.${mac.slice(0, 42)}.${serverId}` },
    { name: 'no server id', presented: `ag1.${mac}.` },
    { name: 'another version prefix', presented: `ag2.${mac}.${serverId}` },
    { name: 'upper-case prefix', presented: `AG1.${mac}.${serverId}` },
    { name: 'a comma-joined pair (a repeated header, as node joins it)', presented: `${sealed}, ${sealed}` },
    { name: 'a space inside', presented: `ag1.${mac}.${serverId} ` },
    { name: 'empty', presented: '' },
    { name: 'the MAC of another id moved onto this one', presented: `ag1.${sessions.seal(owner, 'tools', 'other').slice(4, 47)}.${serverId}` },
    { name: 'sealed under another secret', presented: createMcpSessions(randomBytes(32)).seal(owner, 'tools', serverId) },
  ];
  for (const c of cases) t.equal(sessions.open(c.owner ?? owner, c.backend ?? 'tools', c.presented), null, c.name);
});

t.test('server ids: visible ASCII, 1 to 512 characters', async (t) => {
  const cases: Array<[unknown, boolean]> = [
    [serverId, true],
    ['a', true],
    ['~!#$%&*+-./:;<=>?@[]^_`{|}', true],
    ['x'.repeat(512), true],
    ['x'.repeat(513), false],
    ['', false],
    ['has space', false],
    ['tab\there', false],
    ['caf\u00e9', false],
    [['a', 'b'], false],
    [undefined, false],
  ];
  for (const [id, ok] of cases) t.equal(isServerSessionId(id), ok, typeof id === 'string' && id.length > 40 ? `${id.length} characters` : String(JSON.stringify(id)));
});

t.test('the secret file: made once, private, shared by every opener; a bad one is a clear error', async (t) => {
  const dir = t.testdir();
  const [a, b] = await Promise.all([openMcpSessions(dir), openMcpSessions(dir)]);
  t.equal(b.open(owner, 'tools', a.seal(owner, 'tools', 'srv')), 'srv', 'two processes starting at once agree');
  const file = join(dir, SESSION_SECRET_FILE);
  t.equal((await stat(file)).mode & 0o777, 0o600);
  const again = await openMcpSessions(dir);
  t.equal(again.open(owner, 'tools', a.seal(owner, 'tools', 'srv')), 'srv', 'a restart reads the same secret');
  t.match((await readFile(file, 'utf8')).trim(), /^[A-Za-z0-9_-]{43}$/);

  const bad = join(t.testdirName, 'bad');
  await mkdir(bad, { recursive: true });
  await writeFile(join(bad, SESSION_SECRET_FILE), 'short\n');
  await t.rejects(openMcpSessions(bad), /does not hold an MCP session secret/);
  await t.rejects(openMcpSessions(join(t.testdirName, 'missing', 'folder')), /cannot read or write the MCP session secret/);
  t.throws(() => createMcpSessions(randomBytes(16)), /at least 32 bytes/);
});

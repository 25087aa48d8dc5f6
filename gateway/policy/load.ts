// YAML files -> raw trees that remember the file and line of every node, so validation can say
// `file:line  path: message`; merges a policy folder's files. The only module that imports the
// YAML parser. Syntax errors and unreadable files become problems, never exceptions.
import { readdir, readFile } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';
import { unknownKeyMessage } from './units.js';

/** Where a node was written. `file` is already in display form (see displayPath). */
export interface Position {
  readonly file: string;
  readonly line: number;
}

export type RawNode =
  | { readonly kind: 'map'; readonly at: Position; readonly entries: ReadonlyMap<string, RawEntry> }
  | { readonly kind: 'seq'; readonly at: Position; readonly items: readonly RawNode[] }
  | { readonly kind: 'scalar'; readonly at: Position; readonly value: unknown };

export interface RawEntry {
  /** Position of the key (what an "unknown key" problem points at). */
  readonly at: Position;
  readonly value: RawNode;
}

export interface LoadedFile {
  /** Display path. */
  readonly file: string;
  /** null when the file is empty, unreadable or has syntax errors (already reported). */
  readonly root: RawNode | null;
  /** The file does not exist. */
  readonly missing: boolean;
  /** The file was read and is usable (an empty file is; one with syntax errors is not). */
  readonly parsed: boolean;
}

/** Top-level keys of a policy file. `defaults` maps its keys (breaker, rateLimit, token) like a section maps names. */
export const POLICY_SECTIONS = ['defaults', 'backends', 'roles', 'agents', 'users'] as const;
export type PolicySection = (typeof POLICY_SECTIONS)[number];

/** A policy folder's files merged: each section maps a name to its entry, wherever it was written. */
export interface RawPolicy {
  readonly files: readonly string[];
  /** False when a file could not be read or parsed (its names are unknown, not absent). */
  readonly complete: boolean;
  readonly sections: Readonly<Record<PolicySection, ReadonlyMap<string, RawEntry>>>;
}

/** Format one problem the way every validator message looks. */
export function problemAt(at: Position, path: string, message: string): string {
  return `${at.file}:${at.line}  ${path}: ${message}`;
}

/** A file name as shown in messages: relative to the working directory when inside it, else absolute. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  const outside = rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
  return outside ? file : rel;
}

/** Read and parse one YAML file. */
export async function loadYamlFile(path: string, problems: string[]): Promise<LoadedFile> {
  const file = displayPath(path);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') {
      problems.push(`${file}: no such file`);
      return { file, root: null, missing: true, parsed: false };
    }
    problems.push(`${file}: cannot read (${code === 'EISDIR' ? 'it is a folder' : code})`);
    return { file, root: null, missing: false, parsed: false };
  }
  const { root, ok } = parseYaml(file, text, problems);
  return { file, root, missing: false, parsed: ok };
}

/** What parseYaml makes of a text: `ok` false when it cannot be used as a whole (already reported). */
export interface ParsedYaml {
  /** null when the text is empty (only comments) or not ok. */
  readonly root: RawNode | null;
  readonly ok: boolean;
}

/**
 * Parse YAML text. `file` is the display path used in positions. Syntax errors, aliases and keys
 * that are not words make the text unusable; a key repeated in one map is reported and the first
 * one kept.
 */
export function parseYaml(file: string, text: string, problems: string[]): ParsedYaml {
  const lineCounter = new LineCounter();
  // uniqueKeys off: duplicates are reported below with their path and both lines.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false, strict: true });
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lineCounter.linePos(offset).line);
  if (doc.errors.length > 0) {
    const seen = new Set<string>();
    for (const error of doc.errors) {
      const line = `${file}:${lineOf(error.pos[0])}  YAML syntax: ${syntaxMessage(error.code, error.message)}`;
      if (!seen.has(line)) problems.push(line);
      seen.add(line);
    }
    return { root: null, ok: false };
  }
  for (const warning of doc.warnings) {
    problems.push(`${file}:${lineOf(warning.pos[0])}  YAML: ${firstLine(warning.message)}`);
  }
  if (doc.contents === null) return { root: null, ok: true };

  let ok = true;
  const convert = (node: YamlNode | null, fallback: number, path: string): RawNode => {
    const at: Position = { file, line: node?.range ? lineOf(node.range[0]) : fallback };
    if (node === null) return { kind: 'scalar', at, value: null };
    if (isMap(node)) {
      const entries = new Map<string, RawEntry>();
      for (const pair of node.items) {
        const keyNode = isScalar(pair.key) || isMap(pair.key) || isSeq(pair.key) || isAlias(pair.key) ? pair.key : null;
        const keyLine = keyNode?.range ? lineOf(keyNode.range[0]) : at.line;
        if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
          problems.push(`${file}:${keyLine}  ${path === '' ? '(top level)' : path}: keys must be plain words`);
          ok = false;
          continue;
        }
        const key = String(keyNode.value);
        const keyPath = path === '' ? key : `${path}.${key}`;
        const previous = entries.get(key);
        if (previous !== undefined) {
          problems.push(`${file}:${keyLine}  ${keyPath}: defined twice (also at ${file}:${previous.at.line})`);
          continue;
        }
        const value = isScalar(pair.value) || isMap(pair.value) || isSeq(pair.value) || isAlias(pair.value) ? pair.value : null;
        entries.set(key, { at: { file, line: keyLine }, value: convert(value, keyLine, keyPath) });
      }
      return { kind: 'map', at, entries };
    }
    if (isSeq(node)) {
      const items = node.items.map((item, i) => {
        const child = isScalar(item) || isMap(item) || isSeq(item) || isAlias(item) ? item : null;
        return convert(child, at.line, `${path}[${i}]`);
      });
      return { kind: 'seq', at, items };
    }
    if (isScalar(node)) return { kind: 'scalar', at, value: node.value };
    problems.push(`${file}:${at.line}  ${path === '' ? '(top level)' : path}: anchors and aliases are not supported (write the value out)`);
    ok = false;
    return { kind: 'scalar', at, value: null };
  };
  const root = convert(doc.contents, 1, '');
  return ok ? { root, ok } : { root: null, ok };
}

/** Every `*.yaml` / `*.yml` of a folder (not hidden files, not subfolders), sorted by name. */
export async function loadPolicyFiles(dir: string, problems: string[]): Promise<LoadedFile[]> {
  let names: string[];
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    names = entries
      .filter((e) => !e.isDirectory() && !e.name.startsWith('.') && (e.name.endsWith('.yaml') || e.name.endsWith('.yml')))
      .map((e) => e.name)
      .sort();
  } catch (error) {
    const code = errorCode(error);
    const why = code === 'ENOENT' ? 'no such folder' : code === 'ENOTDIR' ? 'is not a folder' : `cannot read the folder (${code})`;
    problems.push(`${displayPath(dir)}: ${why}`);
    return [];
  }
  if (names.length === 0) {
    problems.push(`${displayPath(dir)}: no policy files (*.yaml or *.yml) in this folder`);
    return [];
  }
  return Promise.all(names.map((name) => loadYamlFile(join(dir, name), problems)));
}

/**
 * Merge the top-level `backends`, `roles` and `agents` maps of every file. A name defined in two
 * places is reported at the second, naming the first; the first definition is kept.
 */
export function mergePolicyFiles(files: readonly LoadedFile[], problems: string[]): RawPolicy {
  const sections: Record<PolicySection, Map<string, RawEntry>> = { defaults: new Map(), backends: new Map(), roles: new Map(), agents: new Map(), users: new Map() };
  for (const f of files) {
    const root = f.root;
    if (root === null) continue;
    if (root.kind !== 'map') {
      problems.push(problemAt(root.at, '(top level)', `expected a map with keys ${POLICY_SECTIONS.join(', ')}`));
      continue;
    }
    for (const [key, entry] of root.entries) {
      if (!isSection(key)) {
        problems.push(problemAt(entry.at, key, unknownKeyMessage(key, POLICY_SECTIONS)));
        continue;
      }
      const node = entry.value;
      if (node.kind === 'scalar' && node.value === null) continue; // `agents:` with nothing under it
      if (node.kind !== 'map') {
        problems.push(problemAt(node.at, key, `expected a map of ${key} by name, got ${node.kind === 'seq' ? 'a list' : 'a single value'}`));
        continue;
      }
      for (const [name, named] of node.entries) {
        const previous = sections[key].get(name);
        if (previous !== undefined) {
          problems.push(problemAt(named.at, `${key}.${name}`, `defined twice (also at ${previous.at.file}:${previous.at.line})`));
          continue;
        }
        sections[key].set(name, named);
      }
    }
  }
  return { files: files.map((f) => f.file), complete: files.every((f) => f.parsed), sections };
}

/** Read and merge a policy folder. */
export async function loadPolicyDir(dir: string, problems: string[]): Promise<RawPolicy> {
  return mergePolicyFiles(await loadPolicyFiles(dir, problems), problems);
}

function isSection(key: string): key is PolicySection {
  return (POLICY_SECTIONS as readonly string[]).includes(key);
}

function syntaxMessage(code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') return 'more than one document (remove the extra "---")';
  return firstLine(message);
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return String(error);
}

// YAML files -> raw trees that remember file and line of every node, so validation can say
// `file:line  path: message`. The only module that imports the YAML parser.
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';

/** Where a node was written. */
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
  readonly file: string;
  readonly root: RawNode | null;
}

/** Format one problem the way every validator message looks. */
export function problemAt(at: Position, path: string, message: string): string {
  return `${at.file}:${at.line}  ${path}: ${message}`;
}

/** A file name as shown in messages: relative to the working directory when inside it. */
export function displayPath(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}

/** Parse one YAML file. Syntax errors and unreadable files become problems, never throws. */
export async function loadYamlFile(path: string, problems: string[]): Promise<LoadedFile> {
  const file = displayPath(path);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    problems.push(`${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${String(code ?? error)})`}`);
    return { file, root: null };
  }
  return { file, root: parseYaml(file, text, problems) };
}

export function parseYaml(file: string, text: string, problems: string[]): RawNode | null {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true });
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lineCounter.linePos(offset).line);
  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      problems.push(`${file}:${lineOf(error.pos[0])}  ${error.message.split('\n')[0] ?? 'YAML syntax error'}`);
    }
    return null;
  }
  for (const warning of doc.warnings) {
    problems.push(`${file}:${lineOf(warning.pos[0])}  ${warning.message.split('\n')[0] ?? 'YAML warning'}`);
  }
  if (doc.contents === null) return null;

  const convert = (node: YamlNode | null, fallback: number): RawNode => {
    const at: Position = { file, line: node?.range ? lineOf(node.range[0]) : fallback };
    if (node === null) return { kind: 'scalar', at, value: null };
    if (isMap(node)) {
      const entries = new Map<string, RawEntry>();
      for (const pair of node.items) {
        const keyNode = pair.key as YamlNode | null;
        const keyLine = keyNode?.range ? lineOf(keyNode.range[0]) : at.line;
        const key = isScalar(keyNode) ? String(keyNode.value) : null;
        if (key === null) {
          problems.push(`${file}:${keyLine}  keys must be plain strings`);
          continue;
        }
        entries.set(key, { at: { file, line: keyLine }, value: convert(pair.value as YamlNode | null, keyLine) });
      }
      return { kind: 'map', at, entries };
    }
    if (isSeq(node)) {
      return { kind: 'seq', at, items: node.items.map((item) => convert(item as YamlNode | null, at.line)) };
    }
    if (isScalar(node)) return { kind: 'scalar', at, value: node.value };
    problems.push(`${file}:${at.line}  aliases and tags are not supported here`);
    return { kind: 'scalar', at, value: null };
  };
  return convert(doc.contents as YamlNode, 1);
}

/** Every `*.yaml` / `*.yml` of a folder, sorted by name. */
export async function loadPolicyFiles(dir: string, problems: string[]): Promise<LoadedFile[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.yaml') || n.endsWith('.yml')).sort();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    problems.push(`${displayPath(dir)}: ${code === 'ENOENT' ? 'no such folder' : `cannot read policies folder (${String(code ?? error)})`}`);
    return [];
  }
  if (names.length === 0) {
    problems.push(`${displayPath(dir)}: no *.yaml policy files in this folder`);
    return [];
  }
  return Promise.all(names.map((name) => loadYamlFile(join(dir, name), problems)));
}

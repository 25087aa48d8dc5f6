// Durable whole-file writes for the state drivers' files (the memory driver's snapshot, the Redis
// driver's local journal): a temporary file written and fsynced, renamed over the old one, then
// the folder fsynced, so a crash leaves the old file or the new one, never a torn one.
import { mkdir, open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Replace `file` with `data` atomically and durably (folder created 0700, file 0600). */
export async function writeAtomic(file: string, data: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  // The rename is durable only once the folder entry is on disk.
  await syncDir(dir);
}

/** fsync a folder: a file created, renamed or removed in it is durable only then. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

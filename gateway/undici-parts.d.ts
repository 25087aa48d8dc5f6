// Types for the three undici modules the forward stage imports directly: the Pool and error
// classes and the `request` method the package's index exports, without loading the rest of the
// package (fetch, WebSocket, EventSource, caches: about 4 MiB of a running gateway's RSS). undici
// ships no exports map, so these paths are importable; test/undici-parts.test.ts holds them equal
// to the index's. The index adds `request` to every dispatcher's prototype; without it, it is
// called on the pool explicitly.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';
  const PoolClass: typeof Pool;
  export default PoolClass;
}

declare module 'undici/lib/core/errors.js' {
  import type { errors } from 'undici';
  const undiciErrors: typeof errors;
  export default undiciErrors;
}

declare module 'undici/lib/api/api-request.js' {
  import type { Dispatcher } from 'undici';
  function request(this: Dispatcher, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData>;
  export default request;
}

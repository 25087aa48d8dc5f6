// agentgate.yaml plus environment overrides -> validated, frozen Settings.
// Relative paths resolve against the config file's folder.

export interface Endpoint {
  readonly host: string;
  /** 0 picks a free port; the gateway prints what it bound. */
  readonly port: number;
}

export interface TrustedIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly audience: string | null;
}

export type StateSettings =
  | { readonly driver: 'memory'; readonly file: string | null }
  | { readonly driver: 'redis'; readonly url: string };

export interface Settings {
  /** Absolute path of the config file read (or the path that would have been read). */
  readonly configFile: string;
  /** Folder relative paths were resolved against. */
  readonly baseDir: string;
  readonly listen: Endpoint;
  readonly metrics: Endpoint;
  readonly admin: { readonly socket: string };
  /** Absolute path of the policies folder. */
  readonly policies: string;
  readonly issuer: {
    readonly url: string;
    /** Absolute path of the signing key folder. */
    readonly keys: string;
    readonly alg: 'EdDSA' | 'ES256';
    readonly rotateSeconds: number;
  };
  readonly trust: readonly TrustedIssuer[];
  readonly state: StateSettings;
  readonly audit: { readonly file: string };
  readonly limits: {
    readonly maxBodyBytes: number;
    readonly upstreamTimeoutMs: number;
    readonly maxHeaderBytes: number;
  };
}

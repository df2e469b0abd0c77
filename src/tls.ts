/**
 * TLS in the process: the certificate and key that the public listeners
 * (the API's gRPC and HTTP ports, an edge's WebSocket port) serve when
 * REALTIME_TLS_CERT_FILE and REALTIME_TLS_KEY_FILE are set. The link between
 * edges and the API stays plain TCP: keep it on a private network.
 */
import { readFileSync } from "node:fs";
import { ConfigError, type Config } from "./config.js";

export interface TlsFiles {
  /** PEM certificate chain, leaf first. */
  cert: Buffer;
  /** PEM private key of the leaf certificate. */
  key: Buffer;
}

/**
 * The TLS material of the configuration, or undefined for plain listeners.
 * Throws ConfigError when only one of the two files is set.
 */
export function readTls(config: Pick<Config, "tlsCertFile" | "tlsKeyFile">): TlsFiles | undefined {
  const { tlsCertFile, tlsKeyFile } = config;
  if (!tlsCertFile && !tlsKeyFile) return undefined;
  if (!tlsCertFile || !tlsKeyFile) {
    throw new ConfigError(
      `invalid configuration:\n  ${tlsCertFile ? "REALTIME_TLS_KEY_FILE" : "REALTIME_TLS_CERT_FILE"}: must be set too: TLS needs both the certificate and its key`,
    );
  }
  return { cert: readFileSync(tlsCertFile), key: readFileSync(tlsKeyFile) };
}

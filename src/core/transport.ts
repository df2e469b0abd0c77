/**
 * The Transport seam: how bytes reach one client connection. The WebSocket
 * edge (src/edge/) implements it over `ws`; unit tests implement it in memory.
 */
export interface Transport {
  /**
   * Queues one frame for the client. text=true sends a text frame (the JSON
   * encoding), otherwise a binary frame. The same data object may be passed
   * to many transports and must not be modified by them.
   */
  send(data: Uint8Array, text: boolean): void;

  /**
   * Closes the connection with a code from close-codes.ts and a reason.
   * From this call on, the adapter hands none of the connection's frames to
   * the Edge (Edge.receive), and sends none; the first code given is the
   * one the client sees. Edge.disconnect follows once the connection is gone.
   */
  close(code: number, reason: string): void;
}

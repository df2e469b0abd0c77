/**
 * A TCP proxy between a process and what it connects to, so that a test
 * can cut that connection the way a network does (the sockets are
 * destroyed, not closed cleanly) and keep it cut for a while: the process
 * under test sees its link or its Redis drop, reconnects, and is refused
 * until the proxy is opened again.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  /** The sockets of the process under test's side. */
  private readonly clientSockets = new Set<Socket>();
  private open = true;

  private constructor(
    private readonly server: Server,
    /** host:port the process under test connects to. */
    readonly address: string,
  ) {}

  /** Listens on 127.0.0.1, port 0, forwarding every connection to target (host:port). */
  static async start(target: string): Promise<TcpProxy> {
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      if (!proxy!.open) return client.destroy();
      const upstream = connect(port, host);
      proxy!.clientSockets.add(client);
      client.once("close", () => proxy!.clientSockets.delete(client));
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ] as const) {
        proxy!.sockets.add(a);
        a.on("error", () => b.destroy());
        a.on("close", () => {
          proxy!.sockets.delete(a);
          b.destroy();
        });
        a.pipe(b);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    proxy = new TcpProxy(server, `127.0.0.1:${(server.address() as AddressInfo).port}`);
    return proxy;
  }

  /** Destroys every connection through the proxy and refuses new ones until reopen(). */
  cut(): void {
    this.open = false;
    for (const socket of this.sockets) socket.destroy();
  }

  /** Destroys one connection through the proxy, picked at random (the network cuts it); false when there is none. */
  cutOne(): boolean {
    const clients = [...this.clientSockets];
    if (clients.length === 0) return false;
    clients[Math.floor(Math.random() * clients.length)]!.destroy();
    return true;
  }

  reopen(): void {
    this.open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// A minimal gRPC client over node:http2, for the load generator only: grpc-js's client machinery (channels, load
// balancing, interceptors, codecs) costs several times the CPU of the server work being measured, on the same two
// cores. This speaks just enough of the gRPC wire protocol: framed messages out, framed messages and trailers in.
import http2 from 'node:http2';
import net from 'node:net';
import { gzipSync } from 'node:zlib';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_TE } = http2.constants;

/** A message with gRPC's 5-byte prefix (uncompressed flag, big-endian length). */
export function frame(message: Buffer): Buffer {
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

/** A message gzip-compressed and framed with the compressed flag (sent with `grpc-encoding: gzip`). */
export function frameGzip(message: Buffer): Buffer {
  const compressed = gzipSync(message);
  const framed = Buffer.alloc(5 + compressed.length);
  framed[0] = 1;
  framed.writeUInt32BE(compressed.length, 1);
  compressed.copy(framed, 5);
  return framed;
}

/** Splits a byte stream into gRPC messages, across DATA chunks. */
export class MessageReader {
  private pending: Buffer | null = null;
  constructor(private readonly onMessage: (message: Buffer) => void) {}

  push(chunk: Buffer): void {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    let at = 0;
    while (buf.length - at >= 5) {
      const length = buf.readUInt32BE(at + 1);
      if (buf.length - at - 5 < length) break;
      this.onMessage(buf.subarray(at + 5, at + 5 + length));
      at += 5 + length;
    }
    if (at < buf.length) this.pending = buf.subarray(at);
    buf = Buffer.alloc(0);
  }
}

export interface CallEnd {
  /** grpc-status (from trailers, or from headers for trailers-only answers); -1 if the stream broke. */
  code: number;
  trailers: http2.IncomingHttpHeaders;
}

export class GrpcH2Client {
  private readonly session: http2.ClientHttp2Session;
  readonly ready: Promise<void>;

  constructor(
    target: string,
    private readonly gzip = false,
  ) {
    // Every request goes out at once: with Nagle's algorithm (Node's default for a socket) a small write waits for
    // the ACK of the one before it, which the peer may delay by up to 40 ms, and that wait counted as latency.
    const colon = target.lastIndexOf(':');
    const [host, port] = [target.slice(0, colon), Number(target.slice(colon + 1))];
    this.session = http2.connect(`http://${target}`, {
      maxSessionMemory: 256,
      createConnection: () => net.connect({ host, port, noDelay: true }),
    });
    this.session.on('error', () => {});
    this.ready = new Promise((resolve, reject) => {
      this.session.once('connect', () => resolve());
      this.session.once('error', reject);
    });
  }

  /** Opens a call; `onMessage` gets each answer's bytes; `onEnd` once, with the status. */
  open(path: string, onMessage: (message: Buffer) => void, onEnd: (end: CallEnd) => void): http2.ClientHttp2Stream {
    const stream = this.session.request({
      [HTTP2_HEADER_METHOD]: 'POST',
      [HTTP2_HEADER_PATH]: path,
      [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [HTTP2_HEADER_TE]: 'trailers',
      ...(this.gzip ? { 'grpc-encoding': 'gzip', 'grpc-accept-encoding': 'identity,gzip' } : {}),
    });
    const reader = new MessageReader(onMessage);
    let ended = false;
    let headerStatus = -1;
    const finish = (code: number, trailers: http2.IncomingHttpHeaders) => {
      if (ended) return;
      ended = true;
      onEnd({ code, trailers });
    };
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) headerStatus = Number(headers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => reader.push(chunk));
    stream.on('trailers', (trailers) => finish(Number(trailers['grpc-status'] ?? 2), trailers));
    stream.on('close', () => finish(headerStatus, {}));
    stream.on('error', () => {});
    return stream;
  }

  close(): void {
    this.session.close();
  }
}

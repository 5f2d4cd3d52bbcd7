// TLS and mutual TLS with certificates made at test time.
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeCerts, read, type TestCerts } from './helpers/certs';
import { featuresFor } from './helpers/models';
import { modelClient, predict, startServer, type TestServer } from './helpers/server';

const request = { features: featuresFor(1, 1, 17) };

async function callWith(server: TestServer, credentials: grpc.ChannelCredentials) {
  const client = modelClient(server.address, credentials);
  try {
    return await predict(client, request, { deadline: Date.now() + 5000 });
  } finally {
    client.close();
  }
}

const refused = (error: grpc.ServiceError) => {
  assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
  return true;
};

describe('TLS', () => {
  let certs: TestCerts;
  let server: TestServer;
  before(async () => {
    certs = makeCerts();
    server = await startServer({ TLS_CERT_FILE: certs.serverCert, TLS_KEY_FILE: certs.serverKey });
  });
  after(() => server.close());

  it('serves a client that trusts the CA', async () => {
    const { reply } = await callWith(server, grpc.credentials.createSsl(read(certs.caCert)));
    assert.equal(reply.predictions.length, 5);
  });

  it('refuses a plaintext client', async () => {
    await assert.rejects(callWith(server, grpc.credentials.createInsecure()), refused);
  });

  it('is refused by a client that trusts another CA', async () => {
    const rogueCa = read(`${certs.dir}/rogue-ca.crt`);
    await assert.rejects(callWith(server, grpc.credentials.createSsl(rogueCa)), refused);
  });
});

describe('mutual TLS', () => {
  let certs: TestCerts;
  let server: TestServer;
  before(async () => {
    certs = makeCerts();
    server = await startServer({
      TLS_CERT_FILE: certs.serverCert,
      TLS_KEY_FILE: certs.serverKey,
      TLS_CLIENT_CA_FILE: certs.caCert,
    });
  });
  after(() => server.close());

  it('serves a client with a certificate from the client CA', async () => {
    const credentials = grpc.credentials.createSsl(read(certs.caCert), read(certs.clientKey), read(certs.clientCert));
    const { reply } = await callWith(server, credentials);
    assert.equal(reply.predictions.length, 5);
  });

  it('refuses a client without a certificate', async () => {
    await assert.rejects(callWith(server, grpc.credentials.createSsl(read(certs.caCert))), refused);
  });

  it('refuses a client whose certificate another CA issued', async () => {
    const credentials = grpc.credentials.createSsl(read(certs.caCert), read(certs.rogueKey), read(certs.rogueCert));
    await assert.rejects(callWith(server, credentials), refused);
  });
});

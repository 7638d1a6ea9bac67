#!/usr/bin/env node
// The test Authority: npm's `oidc-provider`, served over HTTPS, issuing sender-constrained
// JWT access tokens (OpToks) for the registry token realm.
//
//   node authority.mjs --port 9443 --tls-cert server.crt --tls-key server.key \
//        [--client-ca ca.crt] [--issuer https://127.0.0.1:9443] [--signing-key key.pem] \
//        [--clients clients.json] [--resource urn:registry-token] [--ttl 300]
//
// What it offers:
// - the `client_credentials` grant, for the `registry.token.issue` scope;
// - JWT access tokens (RFC 9068, `typ: at+jwt`, RS256) for one resource indicator
//   (`--resource`, default `urn:registry-token`), which becomes the token's `aud`; a token
//   request naming no resource gets that one;
// - DPoP (RFC 9449): a token request with a DPoP proof gets a token with `cnf.jkt`;
// - certificate-bound tokens (RFC 8705): a client registered with
//   `tls_client_certificate_bound_access_tokens` gets `cnf.x5t#S256` of the TLS client
//   certificate it presented; `tls_client_auth` (certificate issued by `--client-ca`, subject
//   DN registered) and `self_signed_tls_client_auth` (certificate in the client's `jwks`)
//   authenticate clients by their certificate;
// - `stellaops:plan` / `stellaops:license` claims per client: a client entry in the clients
//   file may carry `"claims": {"stellaops:plan": "enterprise"}` (added by extraTokenClaims),
//   and `AUTHORITY_CLAIMS` (JSON `{client_id: {claim: value}}`) adds or overrides them.
//
// The signing key is RSA 2048 generated at start, or read from `--signing-key` (PEM).
// One line of JSON on stdout says it is ready: {"ready": true, "issuer": …, "port": …}.
// Every request is logged on stdout as one JSON line (never with credentials).
//
// FOR TESTS ONLY: clients and keys live in memory, client secrets come from a file.

import { readFileSync } from 'node:fs';
import * as crypto from 'node:crypto';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    issuer: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'client-ca': { type: 'string' },
    'signing-key': { type: 'string' },
    clients: { type: 'string' },
    resource: { type: 'string', default: 'urn:registry-token' },
    scope: { type: 'string', default: 'registry.token.issue' },
    ttl: { type: 'string', default: '300' },
  },
  strict: true,
});

function fail(message) {
  process.stderr.write(`authority: ${message}\n`);
  process.exit(2);
}

const port = Number.parseInt(args.port ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('--port <1..65535> is required');
if (!args['tls-cert'] || !args['tls-key']) fail('--tls-cert and --tls-key are required (the Authority speaks HTTPS only)');
const ttl = Number.parseInt(args.ttl, 10);
if (!Number.isInteger(ttl) || ttl < 1) fail('--ttl must be a positive number of seconds');
const issuer = args.issuer ?? `https://${args.host}:${port}`;
const resource = args.resource;
const scope = args.scope;

function log(record) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
}

// --- signing key -------------------------------------------------------------------------

const signingKey = args['signing-key']
  ? crypto.createPrivateKey(readFileSync(args['signing-key']))
  : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
if (signingKey.asymmetricKeyType !== 'rsa') fail('--signing-key must be an RSA private key (RS256)');
const signingJwk = { ...signingKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

// --- clients -----------------------------------------------------------------------------

const clientEntries = args.clients
  ? JSON.parse(readFileSync(args.clients, 'utf8'))
  : [];
if (!Array.isArray(clientEntries)) fail('--clients must hold a JSON array of client metadata');

const claimsByClient = new Map();
const clients = clientEntries.map((entry) => {
  const { claims, ...metadata } = entry;
  if (typeof metadata.client_id !== 'string') fail('every client needs a client_id');
  if (claims) claimsByClient.set(metadata.client_id, claims);
  return {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope,
    ...metadata,
  };
});
if (process.env.AUTHORITY_CLAIMS) {
  const extra = JSON.parse(process.env.AUTHORITY_CLAIMS);
  for (const [clientId, claims] of Object.entries(extra)) {
    claimsByClient.set(clientId, { ...claimsByClient.get(clientId), ...claims });
  }
}

// --- TLS client certificate helpers ----------------------------------------------------------

function peerCertificate(ctx) {
  const socket = ctx.req?.socket ?? ctx.socket;
  if (typeof socket?.getPeerX509Certificate !== 'function') return undefined;
  return socket.getPeerX509Certificate() ?? undefined;
}

// "CN=a\nO=b" (node's X509Certificate.subject) → "CN=a,O=b".
function distinguishedName(text) {
  return text.split('\n').map((s) => s.trim()).filter(Boolean).join(',');
}

function subjectMatches(cert, property, expected) {
  switch (property) {
    case 'tls_client_auth_subject_dn':
      return distinguishedName(cert.subject) === distinguishedName(expected.replaceAll(',', '\n'));
    case 'tls_client_auth_san_dns':
      return (cert.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
    case 'tls_client_auth_san_ip':
      return (cert.subjectAltName ?? '').split(', ').includes(`IP Address:${expected}`);
    case 'tls_client_auth_san_email':
      return (cert.subjectAltName ?? '').split(', ').includes(`email:${expected}`);
    case 'tls_client_auth_san_uri':
      return (cert.subjectAltName ?? '').split(', ').includes(`URI:${expected}`);
    default:
      return false;
  }
}

// --- the provider --------------------------------------------------------------------------

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingJwk] },
  scopes: [scope],
  clientAuthMethods: [
    'none',
    'client_secret_basic',
    'client_secret_post',
    'private_key_jwt',
    'tls_client_auth',
    'self_signed_tls_client_auth',
  ],
  claims: { openid: ['sub'] },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    id_token_signed_response_alg: 'RS256',
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope,
          audience: resource,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
    dPoP: { enabled: true },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => peerCertificate(ctx),
      certificateAuthorized: (ctx) => Boolean((ctx.req?.socket ?? ctx.socket)?.authorized),
      certificateSubjectMatches: (ctx, property, expected) => {
        const cert = peerCertificate(ctx);
        return Boolean(cert) && subjectMatches(cert, property, expected);
      },
    },
  },
  extraTokenClaims: async (_ctx, token) => claimsByClient.get(token.clientId),
  // No end-user flows: client_credentials only.
  findAccount: async () => undefined,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

provider.on('server_error', (_ctx, err) => log({ event: 'server_error', error: String(err?.stack ?? err) }));
provider.on('grant.error', (ctx, err) => log({
  event: 'grant.error',
  client_id: ctx.oidc?.client?.clientId,
  error: err.error,
  error_description: err.error_description,
}));
provider.on('grant.success', (ctx) => log({
  event: 'grant.success',
  client_id: ctx.oidc?.client?.clientId,
  dpop: Boolean(ctx.get('dpop')),
  client_certificate: Boolean(peerCertificate(ctx)),
}));

// One line per request: method, path (no query), status, whether a client certificate came.
provider.use(async (ctx, next) => {
  const started = Date.now();
  try {
    await next();
  } finally {
    log({
      event: 'request',
      method: ctx.method,
      path: ctx.path,
      status: ctx.status,
      client_certificate: Boolean(peerCertificate(ctx)),
      ms: Date.now() - started,
    });
  }
});

const tlsOptions = {
  cert: readFileSync(args['tls-cert']),
  key: readFileSync(args['tls-key']),
  // Ask every client for a certificate, accept connections without one (the gateway
  // fetching the JWKS has none); whether it chains to --client-ca is `socket.authorized`.
  requestCert: true,
  rejectUnauthorized: false,
  ...(args['client-ca'] ? { ca: readFileSync(args['client-ca']) } : {}),
};

// Static clients are validated lazily by oidc-provider: load each now, so a bad entry fails
// at start with its reason instead of at the first token request.
for (const { client_id: id } of clients) {
  try {
    // eslint-disable-next-line no-await-in-loop
    await provider.Client.find(id);
  } catch (err) {
    fail(`client ${id} is invalid: ${err.error_description ?? err.message}`);
  }
}

const server = https.createServer(tlsOptions, provider.callback());
server.on('tlsClientError', (err) => log({ event: 'tls_error', error: err.message }));
server.listen(port, args.host, () => {
  log({
    ready: true,
    issuer,
    port,
    resource,
    kid: provider.keys?.[0]?.kid,
    clients: clients.map((c) => c.client_id),
  });
});

function shutdown() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

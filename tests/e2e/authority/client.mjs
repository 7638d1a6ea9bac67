#!/usr/bin/env node
// Client tooling for the end-to-end tests, built on standard libraries only (never on the
// filter's code): `oauth4webapi` talks to the Authority, `dpop` makes DPoP proofs, `jose`
// makes the deliberately broken proofs.
//
//   node client.mjs token --issuer URL --client-id ID [--client-secret S]
//        [--dpop] [--cert F --key F] [--ca F] [--resource R] [--scope S]
//     Obtains an OpTok with the client_credentials grant and prints
//     {access_token, token_type, expires_in, scope, claims, header, dpop_jwk?, dpop_jkt?}.
//     --dpop: a fresh ES256 key pair, a DPoP proof on the token request (use_dpop_nonce is
//       retried); dpop_jwk is the private JWK, for `proof` and `variants`.
//     --cert/--key: the TLS client certificate presented to the Authority (mTLS-bound
//       tokens, tls_client_auth). Without --client-secret the client authenticates with
//       that certificate (tls_client_auth).
//     --ca: the CA that issued the Authority's server certificate.
//
//   node client.mjs proof --jwk JWK --htu URL [--htm GET] [--token T] [--nonce N] [--count N]
//     Prints a JSON array of N (default 1) DPoP proofs made with `dpop`'s generateProof
//     (`ath` from --token, `nonce` from --nonce).
//
//   node client.mjs variants --jwk JWK --htu URL --token T [--nonce N]
//     Prints {name: proof} with one valid proof ("valid") and one per violated DPoP check,
//     made with `jose` (and by hand for `alg: none`).
//
// Errors: a message on stderr and exit status 1 (2 for bad arguments).

import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import * as crypto from 'node:crypto';
import { parseArgs } from 'node:util';

import * as oauth from 'oauth4webapi';
import * as dpop from 'dpop';
import * as jose from 'jose';

const [command, ...rest] = process.argv.slice(2);

function usage(message) {
  process.stderr.write(`client: ${message}\n`);
  process.exit(2);
}

function parse(options) {
  try {
    return parseArgs({ args: rest, options, strict: true }).values;
  } catch (e) {
    return usage(e.message);
  }
}

function out(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function decodeJwt(token) {
  const [header, payload] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')),
    claims: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')),
  };
}

// A fetch for oauth4webapi over node:https, so the request can carry a TLS client
// certificate and trust the test CA (the global fetch can do neither without undici).
function httpsFetch(tls) {
  return (url, init = {}) => new Promise((resolve, reject) => {
    const body = init.body === undefined || init.body === null ? undefined : String(init.body);
    const req = https.request(url, {
      method: init.method ?? 'GET',
      headers: init.headers ?? {},
      ...tls,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const headers = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
        }
        resolve(new Response(Buffer.concat(chunks), { status: res.statusCode, headers }));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function importKeyPair(jwkText) {
  const jwk = typeof jwkText === 'string' ? JSON.parse(jwkText) : jwkText;
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) usage('--jwk must be a private P-256 JWK');
  // Only the key members: an exported JWK also says key_ops/ext, which would clash with the
  // usages asked for below.
  const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  const privateJwk = { ...publicJwk, d: jwk.d };
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const privateKey = await crypto.subtle.importKey('jwk', privateJwk, algorithm, true, ['sign']);
  const publicKey = await crypto.subtle.importKey('jwk', publicJwk, algorithm, true, ['verify']);
  return { privateKey, publicKey, jwk: privateJwk, publicJwk };
}

function readMaybeFile(value) {
  if (value === undefined) return undefined;
  return value.trim().startsWith('{') ? value : readFileSync(value, 'utf8');
}

// --- token -----------------------------------------------------------------------------------

async function token() {
  const a = parse({
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    dpop: { type: 'boolean', default: false },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    resource: { type: 'string', default: 'urn:registry-token' },
    scope: { type: 'string', default: 'registry.token.issue' },
  });
  if (!a.issuer || !a['client-id']) usage('token needs --issuer and --client-id');
  if (Boolean(a.cert) !== Boolean(a.key)) usage('--cert and --key go together');

  const tls = {
    ...(a.ca ? { ca: readFileSync(a.ca) } : {}),
    ...(a.cert ? { cert: readFileSync(a.cert), key: readFileSync(a.key) } : {}),
  };
  const options = { [oauth.customFetch]: httpsFetch(tls) };
  const issuer = new URL(a.issuer);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options));
  const client = { client_id: a['client-id'] };
  let clientAuth;
  if (a['client-secret']) clientAuth = oauth.ClientSecretBasic(a['client-secret']);
  else if (a.cert) clientAuth = oauth.TlsClientAuth();
  else clientAuth = oauth.None();

  let keyPair;
  if (a.dpop) {
    keyPair = await oauth.generateKeyPair('ES256', { extractable: true });
    options.DPoP = oauth.DPoP(client, keyPair);
  }
  const parameters = new URLSearchParams({ scope: a.scope, resource: a.resource });
  const request = () => oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, options);
  let result;
  try {
    result = await oauth.processClientCredentialsResponse(as, client, await request());
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err;
    // The DPoP handle has stored the server's nonce: one retry.
    result = await oauth.processClientCredentialsResponse(as, client, await request());
  }
  const decoded = decodeJwt(result.access_token);
  const output = {
    access_token: result.access_token,
    token_type: result.token_type,
    expires_in: result.expires_in,
    scope: result.scope,
    header: decoded.header,
    claims: decoded.claims,
  };
  if (keyPair) {
    output.dpop_jwk = await crypto.subtle.exportKey('jwk', keyPair.privateKey);
    output.dpop_jkt = await dpop.calculateThumbprint(keyPair.publicKey);
  }
  out(output);
}

// --- proof -----------------------------------------------------------------------------------

async function proof() {
  const a = parse({
    jwk: { type: 'string' },
    htu: { type: 'string' },
    htm: { type: 'string', default: 'GET' },
    token: { type: 'string' },
    nonce: { type: 'string' },
    count: { type: 'string', default: '1' },
  });
  if (!a.jwk || !a.htu) usage('proof needs --jwk and --htu');
  const count = Number.parseInt(a.count, 10);
  if (!Number.isInteger(count) || count < 1 || count > 1000) usage('--count must be 1..1000');
  const { privateKey, publicKey } = await importKeyPair(readMaybeFile(a.jwk));
  const proofs = [];
  for (let i = 0; i < count; i += 1) {
    proofs.push(await dpop.generateProof({ privateKey, publicKey }, a.htu, a.htm, a.nonce, a.token));
  }
  out(proofs);
}

// --- variants ----------------------------------------------------------------------------

async function variants() {
  const a = parse({
    jwk: { type: 'string' },
    htu: { type: 'string' },
    token: { type: 'string' },
    nonce: { type: 'string' },
  });
  if (!a.jwk || !a.htu || !a.token) usage('variants needs --jwk, --htu and --token');
  const { privateKey, jwk, publicJwk } = await importKeyPair(readMaybeFile(a.jwk));
  const now = Math.floor(Date.now() / 1000);
  const ath = crypto.createHash('sha256').update(a.token).digest('base64url');
  const claims = (extra = {}) => ({
    jti: crypto.randomUUID(),
    htm: 'GET',
    htu: a.htu,
    iat: now,
    ath,
    ...(a.nonce ? { nonce: a.nonce } : {}),
    ...extra,
  });
  const sign = (payload, header = {}, key = privateKey) => new jose.SignJWT(payload)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk, ...header })
    .sign(key);
  const without = (name) => {
    const c = claims();
    delete c[name];
    return c;
  };

  // Another ES256 key: a proof that verifies, from a key the token is not bound to.
  const other = await jose.generateKeyPair('ES256', { extractable: true });
  const otherJwk = await jose.exportJWK(other.publicKey);

  // alg none: no signature at all.
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const algNone = `${b64({ alg: 'none', typ: 'dpop+jwt', jwk: publicJwk })}.${b64(claims())}.`;

  // HS256 keyed with some secret, the public jwk in the header as usual.
  const hs256 = await new jose.SignJWT(claims())
    .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: publicJwk })
    .sign(crypto.randomBytes(32));

  out({
    valid: await sign(claims()),
    typ_jwt: await sign(claims(), { typ: 'JWT' }),
    typ_missing: await sign(claims(), { typ: undefined }),
    alg_none: algNone,
    alg_hs256: hs256,
    jwk_private: await sign(claims(), { jwk: jwk }),
    htm_post: await sign(claims({ htm: 'POST' })),
    htu_other_host: await sign(claims({ htu: 'https://attacker.example/token' })),
    htu_other_path: await sign(claims({ htu: new URL('/v2/', a.htu).href })),
    iat_stale: await sign(claims({ iat: now - 3600 })),
    iat_future: await sign(claims({ iat: now + 3600 })),
    ath_missing: await sign(without('ath')),
    ath_wrong: await sign(claims({
      ath: crypto.createHash('sha256').update(`${a.token}x`).digest('base64url'),
    })),
    jkt_other_key: await sign(claims(), { jwk: otherJwk }, other.privateKey),
    signature_other_key: await sign(claims(), {}, other.privateKey),
    jti_missing: await sign(without('jti')),
  });
}

const commands = { token, proof, variants };
if (!commands[command]) usage(`usage: client.mjs ${Object.keys(commands).join('|')} …`);
try {
  await commands[command]();
} catch (err) {
  const detail = err?.cause instanceof Response
    ? ` (HTTP ${err.cause.status})`
    : (err?.error ? ` (${err.error}: ${err.error_description ?? ''})` : '');
  process.stderr.write(`client ${command}: ${err?.message ?? err}${detail}\n`);
  process.exit(1);
}

// A real OpenID provider for the login-flow tests: `oidc-provider` (v8,
// pinned in package.json) on 127.0.0.1 with one confidential client and two
// test accounts, using the library's built-in development interactions (a
// login form that takes the account id as "login" and any password, then a
// consent form).
//
//   node tests/idp/server.mjs [PORT]        # PORT 0 (the default) = ephemeral
//
// The first stdout line is `listening http://127.0.0.1:PORT`; the issuer is
// that URL. The second, `ready`, comes once the client is configured (until
// then every request gets 503). Endpoints (oidc-provider's defaults): /auth,
// /token, /me (userinfo), /jwks, /session/end,
// /.well-known/openid-configuration.
//
// Environment:
//   IDP_PORT               the port when no argument is given (default 0)
//   IDP_CLIENT_ID          default `authz-test`
//   IDP_CLIENT_SECRET      required
//   IDP_REDIRECT_URIS      comma-separated; when unset, the first line on
//                          stdin gives them (so a test can start the provider
//                          before it knows its app's port)
//   IDP_TOKEN_AUTH_METHOD  the client's registered token_endpoint_auth_method:
//                          client_secret_basic (default) or client_secret_post
//                          (oidc-provider 8 takes the secret either way)
//   IDP_PKCE_REQUIRED      `true` (default): /auth without S256 PKCE fails
//   IDP_SIGNING_ALG        unset (default): the library's development RSA key
//                          signs (RS256); RS256, ES256, ES384 or EdDSA: a key
//                          of that kind is generated at start, and ID tokens
//                          and JWT access tokens are signed with it
//   IDP_JWT_ACCESS_TOKENS  `true`: resource indicators (RFC 8707) issue JWT
//                          access tokens (RFC 9068): `client_credentials` (and
//                          a code exchange) with `resource=URI` gets a signed
//                          JWT whose `aud` is that URI, scope `api:read
//                          api:write`. Without `resource`, access tokens stay
//                          opaque (for userinfo), as by default.
//   IDP_ACCESS_TOKEN_TTL   seconds (default 3600)
//
// Every request is logged to stderr as one line, `idp: METHOD PATH STATUS`
// (the path without its query string), for the tests' failure messages.
// GET /__test/stats answers the number of requests served per endpoint, so a
// test can tell whether its client went back to the provider.
// POST /__test/rotate-keys rotates the signing key: a new key (of
// IDP_SIGNING_ALG's kind, RS256 by default) with a new `kid` replaces the old
// one, which disappears from /jwks; the answer is {"kid": NEW_KID}. Grants,
// sessions and tokens survive it (the in-memory adapter is process-wide).
// POST /__test/groups with the JSON body {"account": ID, "groups": [..]}
// replaces that account's `groups` claim: what userinfo (and new ID tokens)
// say from then on; the answer echoes {account, groups}. 400 for an unknown
// account or groups that are not an array of strings.
//
// Accounts (login = the account id, any password): alice (alice@example.com,
// groups admins + staff), bob (bob@example.org, staff), carol
// (carol@example.com but email_verified false, staff). `groups` is released
// with the `profile` scope.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.IDP_PORT ?? 0);
const clientId = process.env.IDP_CLIENT_ID || 'authz-test';
const clientSecret = required('IDP_CLIENT_SECRET');
const tokenAuthMethod = process.env.IDP_TOKEN_AUTH_METHOD || 'client_secret_basic';
const pkceRequired = (process.env.IDP_PKCE_REQUIRED ?? 'true') !== 'false';
const signingAlg = process.env.IDP_SIGNING_ALG || '';
const jwtAccessTokens = process.env.IDP_JWT_ACCESS_TOKENS === 'true';
const accessTokenTtl = Number(process.env.IDP_ACCESS_TOKEN_TTL || 3600);

const KEY_KINDS = {
  RS256: ['rsa', { modulusLength: 2048 }],
  ES256: ['ec', { namedCurve: 'P-256' }],
  ES384: ['ec', { namedCurve: 'P-384' }],
  EdDSA: ['ed25519', {}],
};
if (signingAlg && !KEY_KINDS[signingAlg]) {
  console.error(`idp: IDP_SIGNING_ALG must be one of ${Object.keys(KEY_KINDS).join(', ')}`);
  process.exit(2);
}

/** A fresh private signing JWK for `alg`, with a new kid. */
function generateJwk(alg) {
  const [type, options] = KEY_KINDS[alg];
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`idp: ${name} must be set`);
    process.exit(2);
  }
  return value;
}

// The test accounts. The dev-interactions login form's "login" field is the
// account id; any password is accepted.
const ACCOUNTS = {
  alice: {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Liddell',
    nickname: 'alice',
    preferred_username: 'alice',
    picture: 'https://avatars.example.com/alice.png',
    groups: ['admins', 'staff'],
  },
  bob: {
    sub: 'bob',
    email: 'bob@example.org',
    email_verified: true,
    name: 'Bob Builder',
    nickname: 'bob',
    preferred_username: 'bob',
    picture: 'https://avatars.example.com/bob.png',
    groups: ['staff'],
  },
  carol: {
    sub: 'carol',
    email: 'carol@example.com',
    email_verified: false,
    name: 'Carol Unverified',
    nickname: 'carol',
    preferred_username: 'carol',
    picture: 'https://avatars.example.com/carol.png',
    groups: ['staff'],
  },
};

async function findAccount(ctx, id) {
  const account = ACCOUNTS[id];
  if (!account) return undefined;
  return {
    accountId: id,
    // oidc-provider filters these by the granted scopes and claims.
    // Read at every call, so that /__test/groups shows in the next answer.
    async claims() {
      return { ...account, groups: [...account.groups] };
    },
  };
}

let handler = (req, res) => {
  res.statusCode = 503;
  res.end('not configured yet');
};
const server = createServer((req, res) => handler(req, res));
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
console.log(`listening ${issuer}`);

const redirectUris = (process.env.IDP_REDIRECT_URIS || (await firstStdinLine()))
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);
if (redirectUris.length === 0) {
  console.error('idp: no redirect URIs (IDP_REDIRECT_URIS or the first stdin line)');
  process.exit(2);
}

async function firstStdinLine() {
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    lines.close();
    return line;
  }
  return '';
}

const stats = {};

/** The request body parsed as JSON (no body parser in front of the hooks). */
async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** The provider with `keys` (private JWKs; undefined: the library's
 * development key). Built again, with new keys, by a key rotation. */
function makeProvider(keys) {
  const alg = keys?.[0]?.alg ?? 'RS256';
  const client = {
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: tokenAuthMethod,
  };
  if (keys) client.id_token_signed_response_alg = alg;
  if (jwtAccessTokens) client.grant_types.push('client_credentials');
  const features = {
    // The library's own login and consent pages (development only, which
    // this is): GET and POST /interaction/:uid, GET /interaction/:uid/abort.
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    revocation: { enabled: true },
  };
  if (jwtAccessTokens) {
    features.clientCredentials = { enabled: true };
    features.resourceIndicators = {
      enabled: true,
      // Any resource URI is an API whose JWT access tokens have it as `aud`.
      async getResourceServerInfo() {
        return {
          scope: 'api:read api:write',
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    };
  }
  const provider = new Provider(issuer, {
    ...(keys ? { jwks: { keys } } : {}),
    clients: [client],
    findAccount,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'nickname', 'picture', 'preferred_username', 'groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    features,
    pkce: {
      methods: ['S256'],
      required: () => pkceRequired,
    },
    cookies: {
      keys: cookieKeys,
    },
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      ClientCredentials: accessTokenTtl,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Grant: 24 * 3600,
      Interaction: 600,
      Session: 24 * 3600,
    },
    // Refresh tokens only for offline_access, as by default; never rotate in
    // tests (a rotation is a different test).
    rotateRefreshToken: false,
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/__test/stats') {
      ctx.type = 'json';
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/__test/rotate-keys' && ctx.method === 'POST') {
      const key = generateJwk(signingAlg || 'RS256');
      handler = makeProvider([key]).callback();
      console.error(`idp: rotated the signing key to ${key.kid}`);
      ctx.type = 'json';
      ctx.body = { kid: key.kid };
      return;
    }
    if (ctx.path === '/__test/groups' && ctx.method === 'POST') {
      const { account, groups } = await readJson(ctx.req).catch(() => ({}));
      const valid =
        Object.hasOwn(ACCOUNTS, account ?? '') &&
        Array.isArray(groups) &&
        groups.every((g) => typeof g === 'string');
      ctx.type = 'json';
      if (!valid) {
        ctx.status = 400;
        ctx.body = { error: 'want {"account": KNOWN_ID, "groups": [STRING, ...]}' };
        return;
      }
      ACCOUNTS[account].groups = [...groups];
      console.error(`idp: groups of ${account} are now ${JSON.stringify(groups)}`);
      ctx.body = { account, groups };
      return;
    }
    try {
      await next();
    } finally {
      const route = ctx.oidc?.route ?? ctx.path;
      stats[route] = (stats[route] ?? 0) + 1;
      console.error(`idp: ${ctx.method} ${ctx.path} ${ctx.status}`);
    }
  });

  for (const event of [
    'server_error',
    'authorization.error',
    'grant.error',
    'userinfo.error',
    'introspection.error',
  ]) {
    provider.on(event, (ctx, error) => {
      const detail = error?.error_description ? ` (${error.error_description})` : '';
      console.error(`idp: ${event}: ${error?.message ?? error}${detail}`);
    });
  }
  return provider;
}

// Kept across key rotations, so that the provider's cookies stay valid.
const cookieKeys = [randomBytes(32).toString('base64url')];

handler = makeProvider(signingAlg ? [generateJwk(signingAlg)] : undefined).callback();
console.log('ready');

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}

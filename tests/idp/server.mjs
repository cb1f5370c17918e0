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
//   IDP_ROTATE_REFRESH_TOKENS
//                          `true`: every refresh_token grant consumes the
//                          refresh token it redeems and answers a new one
//                          (default `false`: the same refresh token serves
//                          again and again). Redeeming a consumed one again
//                          fails with invalid_grant ("refresh token already
//                          used") and, oidc-provider's reuse detection, also
//                          revokes the whole grant: its access tokens and the
//                          newest refresh token stop working too.
//   IDP_BACKCHANNEL_LOGOUT_URI
//                          OpenID Connect Back-Channel Logout 1.0: the
//                          client's registered `backchannel_logout_uri`, with
//                          `backchannel_logout_session_required: true`, so
//                          that ID tokens (from the code and the refresh
//                          grants) carry `sid` and logout tokens name it. The
//                          literal `stdin`: the URI is the next stdin line
//                          after the redirect URIs (the second line, or the
//                          first when IDP_REDIRECT_URIS is set). The provider
//                          POSTs its logout tokens there when a session ends
//                          at /session/end (and on /__test/backchannel-logout)
//                          and resolves every host name to 127.0.0.1 for it,
//                          so a URI may name an app host such as
//                          app.example.com:ENVOY_PORT.
//
// Refresh tokens come only with the `offline_access` scope, which
// oidc-provider grants only to an authorization request that also has
// `prompt=consent` (otherwise it drops the scope silently).
//
// Every request is logged to stderr as one line, `idp: METHOD PATH STATUS`
// (the path without its query string), for the tests' failure messages.
// GET /__test/stats answers the number of requests served per endpoint, so a
// test can tell whether its client went back to the provider; token-endpoint
// requests are also counted by grant type, `grant:authorization_code`,
// `grant:refresh_token` (all requests with that grant_type) and
// `grant:authorization_code:ok`, `grant:refresh_token:ok` (those answered
// 200). A name that never occurred is absent.
// POST /__test/rotate-keys rotates the signing key: a new key (of
// IDP_SIGNING_ALG's kind, RS256 by default) with a new `kid` replaces the old
// one, which disappears from /jwks; the answer is {"kid": NEW_KID}. Grants,
// sessions and tokens survive it (the in-memory adapter is process-wide).
// POST /__test/groups with the JSON body {"account": ID, "groups": [..]}
// replaces that account's `groups` claim: what userinfo (and new ID tokens)
// say from then on; the answer echoes {account, groups}. 400 for an unknown
// account or groups that are not an array of strings.
// POST /__test/backchannel-logout with the JSON body {"account": ID} makes the
// provider send its back-channel logout (oidc-provider's own
// Client#backchannelLogout: a logout token signed like the ID tokens, typ
// logout+jwt, with sub, sid, jti, events) for every session of that account
// that has signed in to the client (the sessions are tracked through the
// provider's session.saved/destroyed events and looked up again in its
// store), one POST per sid, one after the other. The answer, once every POST
// has been answered: {"sent": N, "sids": [SID, ...], "statuses": [STATUS or
// null (no answer), ...]} in the same order. The provider's own sessions and
// grants stay as they are. 400 without IDP_BACKCHANNEL_LOGOUT_URI or for an
// unknown account. Each POST is logged as `idp: backchannel -> STATUS`, and
// the provider's backchannel.success / backchannel.error events (from
// /session/end) are logged too.
// POST /__test/sign with the JSON body {"claims": {...}, "alg": ALG,
// "header": {...}} answers {"token": JWT}: the claims exactly as given (no
// iss, iat or exp added), signed with the current signing key, the one /jwks
// publishes (alg: that key's algorithm, the default; protected header
// {alg, kid, typ: "JWT"}), or unsigned with alg "none" (header {alg: "none",
// typ: "JWT"}, empty signature). `header` (optional) is merged over those
// fields; a field set to null is left out. 400 while the library's
// development key signs (no IDP_SIGNING_ALG and no rotation yet: that key is
// not ours to sign with) or for another alg.
//
// Accounts (login = the account id, any password): alice (alice@example.com,
// groups admins + staff), bob (bob@example.org, staff), carol
// (carol@example.com but email_verified false, staff). `groups` is released
// with the `profile` scope.

import { Agent, createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

import { SignJWT, base64url, importJWK } from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.IDP_PORT ?? 0);
const clientId = process.env.IDP_CLIENT_ID || 'authz-test';
const clientSecret = required('IDP_CLIENT_SECRET');
const tokenAuthMethod = process.env.IDP_TOKEN_AUTH_METHOD || 'client_secret_basic';
const pkceRequired = (process.env.IDP_PKCE_REQUIRED ?? 'true') !== 'false';
const signingAlg = process.env.IDP_SIGNING_ALG || '';
const jwtAccessTokens = process.env.IDP_JWT_ACCESS_TOKENS === 'true';
const accessTokenTtl = Number(process.env.IDP_ACCESS_TOKEN_TTL || 3600);
const rotateRefreshTokens = process.env.IDP_ROTATE_REFRESH_TOKENS === 'true';

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

// What the environment leaves to stdin, one line each, in this order.
const stdin = createInterface({ input: process.stdin });
const stdinLines = stdin[Symbol.asyncIterator]();
async function nextStdinLine() {
  const { value, done } = await stdinLines.next();
  return done ? '' : value;
}

const redirectUris = (process.env.IDP_REDIRECT_URIS || (await nextStdinLine()))
  .split(',')
  .map((u) => u.trim())
  .filter(Boolean);
if (redirectUris.length === 0) {
  console.error('idp: no redirect URIs (IDP_REDIRECT_URIS or the first stdin line)');
  process.exit(2);
}
let backchannelLogoutUri = process.env.IDP_BACKCHANNEL_LOGOUT_URI || '';
if (backchannelLogoutUri === 'stdin') {
  backchannelLogoutUri = (await nextStdinLine()).trim();
  if (!URL.canParse(backchannelLogoutUri)) {
    console.error(`idp: no back-channel logout URI on stdin (got ${JSON.stringify(backchannelLogoutUri)})`);
    process.exit(2);
  }
}
stdin.close();

const stats = {};
function count(name) {
  stats[name] = (stats[name] ?? 0) + 1;
}

// The sessions that signed in to the client: session id -> {accountId, sid}.
// An index only: /__test/backchannel-logout looks each one up again in the
// provider's store (process-wide, so it survives key rotations, as this does).
const sessions = new Map();

// The back-channel logout POSTs go through this agent, which logs the RP's
// answer and hands it to the /__test/backchannel-logout in progress, if any.
let onBackchannelStatus;
class BackchannelAgent extends Agent {
  addRequest(req, options) {
    const report = (status) => {
      console.error(`idp: backchannel -> ${status ?? 'no answer'}`);
      onBackchannelStatus?.(status);
    };
    req.once('response', (res) => report(res.statusCode));
    req.once('error', () => report(null));
    return super.addRequest(req, options);
  }
}
const backchannelAgent = new BackchannelAgent();

/** dns.lookup's interface, answering 127.0.0.1 for every name: the tests'
 * app hosts (app.example.com, ...) are all Envoy on loopback. */
function loopbackLookup(hostname, options, callback) {
  const done = typeof options === 'function' ? options : callback;
  if (options?.all) done(null, [{ address: '127.0.0.1', family: 4 }]);
  else done(null, '127.0.0.1', 4);
}

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
  if (backchannelLogoutUri) {
    client.backchannel_logout_uri = backchannelLogoutUri;
    client.backchannel_logout_session_required = true;
  }
  if (keys) client.id_token_signed_response_alg = alg;
  if (jwtAccessTokens) client.grant_types.push('client_credentials');
  const features = {
    // The library's own login and consent pages (development only, which
    // this is): GET and POST /interaction/:uid, GET /interaction/:uid/abort.
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    revocation: { enabled: true },
    backchannelLogout: { enabled: Boolean(backchannelLogoutUri) },
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
    // Refresh tokens only for offline_access, as by default; rotated only
    // with IDP_ROTATE_REFRESH_TOKENS.
    rotateRefreshToken: rotateRefreshTokens,
    // Outgoing requests are only the back-channel logouts.
    httpOptions(url) {
      if (!backchannelLogoutUri || url.origin !== new URL(backchannelLogoutUri).origin) return {};
      return { agent: backchannelAgent, dnsLookup: loopbackLookup };
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/__test/stats') {
      ctx.type = 'json';
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/__test/rotate-keys' && ctx.method === 'POST') {
      const key = generateJwk(signingAlg || 'RS256');
      signingKey = key;
      currentProvider = makeProvider([key]);
      handler = currentProvider.callback();
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
    if (ctx.path === '/__test/backchannel-logout' && ctx.method === 'POST') {
      const { account } = await readJson(ctx.req).catch(() => ({}));
      ctx.type = 'json';
      if (!backchannelLogoutUri || !Object.hasOwn(ACCOUNTS, account ?? '')) {
        ctx.status = 400;
        ctx.body = {
          error: backchannelLogoutUri
            ? 'want {"account": KNOWN_ID}'
            : 'no IDP_BACKCHANNEL_LOGOUT_URI',
        };
        return;
      }
      ctx.body = await backchannelLogout(account);
      return;
    }
    if (ctx.path === '/__test/sign' && ctx.method === 'POST') {
      const body = await readJson(ctx.req).catch(() => undefined);
      ctx.type = 'json';
      const token = await sign(body ?? {}).catch((error) => ({ error: error.message }));
      if (token.error) {
        ctx.status = 400;
        ctx.body = token;
        return;
      }
      ctx.body = { token };
      return;
    }
    try {
      await next();
    } finally {
      const route = ctx.oidc?.route ?? ctx.path;
      count(route);
      const grantType = ctx.oidc?.params?.grant_type ?? ctx.oidc?.body?.grant_type;
      if (route === 'token' && typeof grantType === 'string') {
        count(`grant:${grantType}`);
        if (ctx.status === 200) count(`grant:${grantType}:ok`);
      }
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
  provider.on('backchannel.success', (ctx, client, accountId, sid) => {
    console.error(`idp: backchannel.success: ${accountId} sid ${sid}`);
  });
  provider.on('backchannel.error', (ctx, error, client, accountId, sid) => {
    console.error(`idp: backchannel.error: ${accountId} sid ${sid}: ${error?.message ?? error}`);
  });
  provider.on('session.saved', (session) => {
    const sid = session.authorizations?.[clientId]?.sid;
    if (session.accountId && sid) {
      sessions.set(session.jti, { accountId: session.accountId, sid });
    } else {
      sessions.delete(session.jti);
    }
  });
  provider.on('session.destroyed', (session) => sessions.delete(session.jti));
  return provider;
}

/** The back-channel logout of every live session of `account` at the
 * client, by the current provider. */
async function backchannelLogout(account) {
  const provider = currentProvider;
  const client = await provider.Client.find(clientId);
  const sids = [];
  for (const [id, entry] of [...sessions]) {
    const session = await provider.Session.find(id);
    const sid = session?.authorizations?.[clientId]?.sid;
    if (!session || !sid) {
      sessions.delete(id);
      continue;
    }
    if (session.accountId === account && !sids.includes(sid)) sids.push(sid);
    entry.sid = sid;
  }
  const statuses = [];
  for (const sid of sids) {
    let status = null;
    onBackchannelStatus = (s) => {
      status = s;
    };
    try {
      await client.backchannelLogout(account, sid);
    } catch (error) {
      console.error(`idp: backchannel logout of ${account} sid ${sid}: ${error.message}`);
    } finally {
      onBackchannelStatus = undefined;
    }
    statuses.push(status);
  }
  console.error(`idp: backchannel logout of ${account}: sids ${JSON.stringify(sids)} -> ${JSON.stringify(statuses)}`);
  return { sent: sids.length, sids, statuses };
}

/** /__test/sign: `claims` as a compact JWT, signed with the current key or
 * (alg "none") unsigned. */
async function sign({ claims, alg, header = {} }) {
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
    throw new Error('want {"claims": {...}, "alg": ALG, "header": {...}}');
  }
  if (alg === 'none') {
    const protectedHeader = withoutNulls({ alg: 'none', typ: 'JWT', ...header });
    const encode = (value) => base64url.encode(JSON.stringify(value));
    return `${encode(protectedHeader)}.${encode(claims)}.`;
  }
  if (!signingKey) throw new Error('no key of ours to sign with: set IDP_SIGNING_ALG');
  if ((alg ?? signingKey.alg) !== signingKey.alg) {
    throw new Error(`the signing key is ${signingKey.alg}, not ${alg}`);
  }
  const key = await importJWK(signingKey, signingKey.alg);
  const protectedHeader = withoutNulls({
    alg: signingKey.alg,
    kid: signingKey.kid,
    typ: 'JWT',
    ...header,
  });
  return new SignJWT(claims).setProtectedHeader(protectedHeader).sign(key);
}

function withoutNulls(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== null));
}

// Kept across key rotations, so that the provider's cookies stay valid.
const cookieKeys = [randomBytes(32).toString('base64url')];

// The signing key (IDP_SIGNING_ALG or a rotation; undefined: the library's
// development key) and the provider that uses it.
let signingKey = signingAlg ? generateJwk(signingAlg) : undefined;
let currentProvider = makeProvider(signingKey ? [signingKey] : undefined);
handler = currentProvider.callback();
console.log('ready');

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}

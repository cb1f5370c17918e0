// The OAuth2 login flow in a real headless Chromium, through Envoy, against a
// real OpenID provider (tests/idp/server.mjs).
//
//   node tests/browser/login.mjs ENVOY_URL PROVIDER_URL
//
// ENVOY_URL is Envoy's listener (http://127.0.0.1:PORT). The browser visits
// it as http://APP_HOST:PORT (APP_HOST defaults to app.example.com, resolved
// to 127.0.0.1 by Chromium's --host-resolver-rules), the host the ingress
// config and the provider's redirect_uris name. PROVIDER_URL is the issuer
// (http://127.0.0.1:PORT). Run by tests/envoy/idp.rs; exits 0 when every
// check passed, 1 otherwise, with screenshots of the open pages in
// SCREENSHOT_DIR (default target/browser-screenshots/).
//
// LOGIN_MODE=oidc (default `oauth2`): the route is `type: oidc` (by
// discovery): the authorize URL must also carry a `nonce` (>= 128 bits) and
// the `openid` scope. Everything else is checked the same way.
//
// Chromium is Debian's /usr/bin/chromium (CHROMIUM overrides): playwright-core
// never downloads a browser. Each launch gets a fresh, empty profile. Requests
// to any host other than the app and the provider are aborted (the provider's
// pages import a web font; this machine has no internet).

import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const [envoyArg, providerArg] = process.argv.slice(2);
if (!envoyArg || !providerArg) {
  console.error('usage: node login.mjs ENVOY_URL PROVIDER_URL');
  process.exit(2);
}
const envoyUrl = new URL(envoyArg);
const provider = new URL(providerArg).origin;
const appHost = process.env.APP_HOST || 'app.example.com';
const app = `http://${appHost}:${envoyUrl.port}`;
const login = process.env.LOGIN || 'alice';
const expectedEmail = process.env.LOGIN_EMAIL || 'alice@example.com';
const screenshotDir = process.env.SCREENSHOT_DIR || resolve(here, '../../target/browser-screenshots');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const overallTimeoutMs = Number(process.env.BROWSER_TEST_TIMEOUT_MS || 120_000);
const loginMode = process.env.LOGIN_MODE || 'oauth2';
if (!['oauth2', 'oidc'].includes(loginMode)) {
  console.error(`LOGIN_MODE must be oauth2 or oidc, not ${loginMode}`);
  process.exit(2);
}

const SESSION_COOKIE = 'ingress_authz';
const LOGIN_COOKIE_PREFIX = 'ingress_authz_login_';

// ---------------------------------------------------------------- harness

class CheckFailed extends Error {}

function check(condition, message, detail) {
  if (!condition) {
    const suffix = detail === undefined ? '' : `\n  observed: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`;
    throw new CheckFailed(`${message}${suffix}`);
  }
}

function ok(message) {
  console.log(`ok: ${message}`);
}

/** Every request any context made, in order, for the failure report. */
const requestLog = [];
const contexts = [];

async function newContext(browser, name) {
  const context = await browser.newContext({ ignoreHTTPSErrors: false });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  const appOrigin = new URL(app).origin;
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === appOrigin || url.origin === provider) return route.continue();
    requestLog.push(`[${name}] blocked ${route.request().method()} ${url.origin}`);
    return route.abort('blockedbyclient');
  });
  context.on('request', (r) => requestLog.push(`[${name}] ${r.method()} ${r.url()}`));
  context.on('response', (r) => requestLog.push(`[${name}]   -> ${r.status()} ${r.url()}`));
  contexts.push({ name, context });
  return context;
}

/** The request chain that ended in `response`, first hop first. */
function chain(response) {
  const hops = [];
  for (let request = response.request(); request; request = request.redirectedFrom()) {
    hops.unshift(request);
  }
  return hops;
}

/** Every cookie the browser keeps for the app's host, whatever its path
 * (`context.cookies(url)` would leave out the `Path=/oauth2/` ones). */
async function appCookies(context) {
  return (await context.cookies()).filter((c) => c.domain === appHost);
}

async function setCookies(response) {
  return (await response.headersArray())
    .filter((h) => h.name.toLowerCase() === 'set-cookie')
    .map((h) => h.value);
}

function cookieAttrs(setCookie) {
  const [pair, ...attrs] = setCookie.split(';').map((s) => s.trim());
  const eq = pair.indexOf('=');
  const out = { name: pair.slice(0, eq), value: pair.slice(eq + 1), attrs: {} };
  for (const attr of attrs) {
    const [k, ...v] = attr.split('=');
    out.attrs[k.toLowerCase()] = v.join('=');
  }
  return out;
}

function clears(cookie) {
  return (
    cookie.value === '' ||
    cookie.attrs['max-age'] === '0' ||
    (cookie.attrs.expires !== undefined && Date.parse(cookie.attrs.expires) < Date.now())
  );
}

function decodeJwtPayload(token) {
  const [, payload] = token.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

async function providerStats() {
  const response = await fetch(`${provider}/__test/stats`);
  return response.json();
}

/** What the echo upstream says it received (tests/common/upstream.rs). */
async function echoed(response) {
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    check(false, `${response.url()} did not answer the upstream's JSON echo`, text.slice(0, 500));
  }
  check(body.upstream === true, 'the response comes from the upstream', body);
  const headers = new Map();
  for (const [name, value] of body.headers) {
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { target: body.target, headers };
}

function checkUpstreamIdentity(upstream, where) {
  const token = upstream.headers.get('x-connect-token');
  check(token, `${where}: the upstream received X-Connect-Token`, [...upstream.headers.keys()]);
  const claims = decodeJwtPayload(token);
  check(claims.sub === login && claims.id === login, `${where}: X-Connect-Token sub/id is ${login}`, claims);
  check(claims.email === expectedEmail, `${where}: X-Connect-Token email is ${expectedEmail}`, claims);
  check(claims.iss === 'ingress-authz', `${where}: X-Connect-Token iss`, claims);
  check(/^\d{13}$/.test(upstream.headers.get('x-connect-timestamp') ?? ''), `${where}: X-Connect-Timestamp in ms`, upstream.headers.get('x-connect-timestamp'));
  const cookie = upstream.headers.get('cookie') ?? '';
  check(!cookie.includes(SESSION_COOKIE), `${where}: our cookies are stripped from the upstream's Cookie`, cookie);
}

// ------------------------------------------------------ the provider's pages

async function expectLoginForm(page, where) {
  check(page.url().startsWith(`${provider}/interaction/`), `${where}: on the provider's login page`, page.url());
  await page.locator('input[name=prompt][value=login]').waitFor({ state: 'attached' });
}

/** Signs in on the provider's login page, and consents when the provider
 * asks (the first time; a grant it already has is not asked for again).
 * Resolves with the response of the navigation back to `target` on the app,
 * and whether a consent page was shown. */
async function signIn(page, target) {
  const landed = page.waitForResponse(
    (r) => r.url() === target && r.request().isNavigationRequest() && r.status() < 300,
  );
  const consentForm = page.locator('input[name=prompt][value=consent]').waitFor({ state: 'attached' });
  // Whichever loses the race below must not become an unhandled rejection.
  landed.catch(() => {});
  consentForm.catch(() => {});
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any-password');
  await page.click('button[type=submit]');
  const next = await Promise.race([
    landed.then((response) => ({ response })),
    consentForm.then(() => ({ consent: true })),
  ]);
  if (next.response) return { response: next.response, consented: false };
  await page.click('button[type=submit]');
  return { response: await landed, consented: true };
}

// ------------------------------------------------------------- scenarios

/** One tab: login, reload, fetch, logout. */
async function singleTab(browser) {
  const context = await newContext(browser, 'single');
  const page = await context.newPage();
  const target = `${app}/dashboard?tab=1`;

  // 1. A navigation without a session goes to the provider.
  const loginPage = await page.goto(target);
  await expectLoginForm(page, 'first visit');
  const hops = chain(loginPage);
  check(hops[0].url() === target, 'the chain starts at the protected page', hops.map((h) => h.url()));
  const first = await hops[0].response();
  check(first.status() === 302, 'protected page without session: 302', first.status());
  const authorize = new URL(first.headers().location ?? '', target);
  check(authorize.origin + authorize.pathname === `${provider}/auth`, 'redirect to the provider authorize URL', authorize.href);
  const q = authorize.searchParams;
  check(q.get('client_id') === 'authz-test', 'authorize: client_id', q.toString());
  check(q.get('response_type') === 'code', 'authorize: response_type=code', q.toString());
  check(q.get('redirect_uri') === `${app}/oauth2/callback`, 'authorize: redirect_uri on the app host', q.get('redirect_uri'));
  check((q.get('state') ?? '').length >= 22, 'authorize: state with >=128 bits', q.get('state'));
  check(q.get('code_challenge_method') === 'S256' && q.get('code_challenge'), 'authorize: PKCE S256', q.toString());
  if (loginMode === 'oidc') {
    check((q.get('nonce') ?? '').length >= 22, 'authorize (oidc): nonce with >=128 bits', q.get('nonce'));
    check((q.get('scope') ?? '').split(' ').includes('openid'), 'authorize (oidc): scope includes openid', q.get('scope'));
    check(q.get('nonce') !== q.get('state'), 'authorize (oidc): nonce is not the state', q.toString());
  }
  const loginCookies = (await setCookies(first)).map(cookieAttrs).filter((c) => c.name.startsWith(LOGIN_COOKIE_PREFIX));
  check(loginCookies.length === 1, 'one login-state cookie set', await setCookies(first));
  const lc = loginCookies[0].attrs;
  check(lc.path === '/oauth2/' && 'httponly' in lc && (lc.samesite ?? '').toLowerCase() === 'lax', 'login-state cookie: Path=/oauth2/; HttpOnly; SameSite=Lax', loginCookies[0]);
  ok(`navigation without session: 302 to the provider (state, PKCE S256${loginMode === 'oidc' ? ', nonce' : ''}) with a login-state cookie`);

  // 2. Sign in and consent at the provider; back on the original URL.
  const { response: landed, consented } = await signIn(page, target);
  check(consented, 'the provider asked for consent on the first login', consented);
  check(page.url() === target, 'back on the original URL, query intact', page.url());
  check(landed.status() === 200, 'the original page answers 200', landed.status());
  const back = chain(landed);
  const callback = back.find((r) => r.url().startsWith(`${app}/oauth2/callback?`));
  check(callback, 'the provider redirected to /oauth2/callback', back.map((r) => r.url()));
  const callbackResponse = await callback.response();
  check(callbackResponse.status() === 302, 'callback answers 302', callbackResponse.status());
  const cbCookies = (await setCookies(callbackResponse)).map(cookieAttrs);
  const session = cbCookies.find((c) => c.name === SESSION_COOKIE);
  check(session && !clears(session), 'callback sets the session cookie', cbCookies);
  check(session.attrs.path === '/' && 'httponly' in session.attrs && (session.attrs.samesite ?? '').toLowerCase() === 'lax', 'session cookie: Path=/; HttpOnly; SameSite=Lax', session);
  check(!('domain' in session.attrs), 'session cookie is host-only', session);
  check(!('secure' in session.attrs), 'no Secure on plain http', session);
  const upstream = await echoed(landed);
  check(upstream.target === '/dashboard?tab=1', 'the upstream received the original path and query', upstream.target);
  checkUpstreamIdentity(upstream, 'after login');
  ok('signed in at the provider; back on /dashboard?tab=1 with the identity upstream');

  // 3. The browser's cookie jar: a session, no leftover login state, and
  // nothing script-readable.
  const jar = await appCookies(context);
  const sessionCookie = jar.find((c) => c.name === SESSION_COOKIE);
  check(sessionCookie?.httpOnly && sessionCookie.sameSite === 'Lax' && sessionCookie.path === '/', 'jar: session cookie HttpOnly, Lax, Path=/', jar);
  check(sessionCookie.value.length < 4096, 'session cookie under 4 KB', sessionCookie.value.length);
  check(!jar.some((c) => c.name.startsWith(LOGIN_COOKIE_PREFIX)), 'jar: the login-state cookie is gone', jar.map((c) => c.name));
  const scriptCookies = await page.evaluate(() => document.cookie);
  check(!scriptCookies.includes(SESSION_COOKIE), 'document.cookie cannot see our cookies', scriptCookies);
  ok('cookie jar: HttpOnly session cookie, login-state cookie cleared');

  // 4. Reload: served with the session, the provider is not involved.
  const statsBefore = await providerStats();
  const providerHits = () => requestLog.filter((l) => l.startsWith('[single] ') && l.includes(` ${provider}/`)).length;
  const hitsBefore = providerHits();
  const reloaded = await page.reload();
  check(reloaded.status() === 200 && page.url() === target, 'reload: 200 on the same URL', `${reloaded.status()} ${page.url()}`);
  check(reloaded.request().redirectedFrom() === null, 'reload: no redirect', chain(reloaded).map((r) => r.url()));
  check(providerHits() === hitsBefore, 'reload: the browser did not visit the provider', requestLog.slice(-6));
  const statsAfter = await providerStats();
  check(JSON.stringify(statsAfter) === JSON.stringify(statsBefore), 'reload: the provider served nothing (no token or userinfo call either)', { statsBefore, statsAfter });
  checkUpstreamIdentity(await echoed(reloaded), 'after reload');
  ok('reload: served from the session, no provider request');

  // 5. Script requests (non-navigations) with the session are allowed. (From
  // a page the app served: Chromium's local-network-access rules treat a
  // page Playwright made up as public, and block its requests to loopback.)
  const apiWithSession = await page.evaluate(async () => {
    const r = await fetch('/api/items?page=2', { headers: { accept: 'application/json' } });
    return { status: r.status, redirected: r.redirected, body: await r.text() };
  });
  check(apiWithSession.status === 200, 'fetch() with a session: 200', apiWithSession);
  check(JSON.parse(apiWithSession.body).target === '/api/items?page=2', 'fetch() reached the upstream', apiWithSession.body);
  ok('fetch() with the session reaches the upstream');

  // 6. Logout: the session cookie goes, and / (protected) sends the browser
  // to the provider again. The provider still has its own session and would
  // sign the browser straight back in (redirects cannot be intercepted), so
  // its cookies are dropped first: the provider's login form shows that the
  // app sent the browser there.
  await context.clearCookies({ domain: new URL(provider).hostname });
  const loggedOut = await page.goto(`${app}/oauth2/logout`);
  const logoutHops = chain(loggedOut);
  const logoutResponse = await logoutHops[0].response();
  check(logoutHops[0].url() === `${app}/oauth2/logout`, 'the chain starts at /oauth2/logout', logoutHops.map((r) => r.url()));
  check(logoutResponse.status() === 302, '/oauth2/logout: 302', logoutResponse.status());
  const logoutLocation = new URL(logoutResponse.headers().location ?? '', `${app}/oauth2/logout`).href;
  check(logoutLocation === `${app}/`, '/oauth2/logout redirects to /', logoutLocation);
  const cleared = (await setCookies(logoutResponse)).map(cookieAttrs).find((c) => c.name === SESSION_COOKIE);
  check(cleared && clears(cleared), '/oauth2/logout clears the session cookie', await setCookies(logoutResponse));
  check(logoutHops.length >= 3 && logoutHops[1].url() === `${app}/`, 'after logout, / is visited', logoutHops.map((r) => r.url()));
  const root = await logoutHops[1].response();
  check(root.status() === 302 && (root.headers().location ?? '').startsWith(`${provider}/auth?`), 'after logout, / redirects to the provider', `${root.status()} ${root.headers().location}`);
  await expectLoginForm(page, 'after logout');
  check(!(await appCookies(context)).some((c) => c.name === SESSION_COOKIE), 'jar: no session cookie after logout', await appCookies(context));
  ok('logout: session cookie cleared, / goes to the provider again');

  const again = await page.goto(target);
  const againFirst = await chain(again)[0].response();
  check(againFirst.status() === 302 && (againFirst.headers().location ?? '').startsWith(`${provider}/auth?`), 'after logout, the protected page redirects to the provider', chain(again).map((r) => r.url()));
  await expectLoginForm(page, 'protected page after logout');

  // 7. And script requests without a session get 401 JSON, never a redirect.
  // The page they run on: the sidecar's sign-in error page (a callback
  // without state), an app page that needs no session.
  const errorPage = await page.goto(`${app}/oauth2/callback`);
  check(errorPage.status() === 400, 'a callback without state: 400 error page', errorPage.status());
  check((await page.content()).includes('Try again'), 'the error page offers to try again', await page.content());
  const apiWithout = await page.evaluate(async () => {
    const r = await fetch('/api/items', { headers: { accept: 'application/json' } });
    return { status: r.status, redirected: r.redirected, type: r.headers.get('content-type'), body: await r.text() };
  });
  check(apiWithout.status === 401 && !apiWithout.redirected, 'fetch() without a session: 401, no redirect', apiWithout);
  check((apiWithout.type ?? '').startsWith('application/json'), 'fetch() without a session: JSON', apiWithout);
  JSON.parse(apiWithout.body);
  ok('logged out: protected pages redirect to the provider, fetch() gets 401 JSON');
  await context.close();
}

/** Two tabs of one browser log in at once: neither breaks the other. */
async function twoTabs(browser) {
  const context = await newContext(browser, 'tabs');
  const targets = [`${app}/reports?id=1`, `${app}/settings?section=profile&x=2`];
  const pages = await Promise.all(targets.map(() => context.newPage()));

  // Both tabs reach the provider before either signs in.
  const starts = await Promise.all(pages.map((p, i) => p.goto(targets[i])));
  await Promise.all(pages.map((p, i) => expectLoginForm(p, `tab ${i + 1}`)));
  const tabCookie = [];
  for (const [i, start] of starts.entries()) {
    const set = (await setCookies(await chain(start)[0].response())).map(cookieAttrs);
    const own = set.filter((c) => c.name.startsWith(LOGIN_COOKIE_PREFIX));
    check(own.length === 1, `tab ${i + 1}: its own login-state cookie`, set);
    tabCookie.push(own[0].name);
  }
  check(tabCookie[0] !== tabCookie[1], 'the two logins use two cookies', tabCookie);
  const loginCookies = (await appCookies(context)).filter((c) => c.name.startsWith(LOGIN_COOKIE_PREFIX));
  check(loginCookies.length === 2, 'two logins in flight: two login-state cookies in the jar', loginCookies.map((c) => c.name));
  ok('two tabs at the provider at once, each with its own login-state cookie');

  // The provider's own steps run one tab at a time: oidc-provider rotates
  // its session id whenever an interaction resumes, so two sign-ins
  // submitted at the same instant in one browser fail at the provider
  // itself (its "interaction session and authentication session mismatch"
  // page, or a userinfo 401 for a token bound to the replaced session). What
  // is tested here is ours: two logins in flight at once, each completing
  // with its own state while the other one is still pending.
  const first = await signIn(pages[0], targets[0]);
  const pending = (await appCookies(context)).filter((c) => c.name.startsWith(LOGIN_COOKIE_PREFIX));
  check(pending.length === 1 && pending[0].name === tabCookie[1], 'tab 1 done: tab 2\'s login-state cookie is still there', { pending: pending.map((c) => c.name), tabCookie });
  const second = await signIn(pages[1], targets[1]);
  const landed = [first.response, second.response];
  for (const [i, response] of landed.entries()) {
    check(pages[i].url() === targets[i], `tab ${i + 1} is back on its own URL`, pages[i].url());
    check(response.status() === 200, `tab ${i + 1}: 200`, response.status());
    const upstream = await echoed(response);
    check(upstream.target === new URL(targets[i]).pathname + new URL(targets[i]).search, `tab ${i + 1}: upstream got its path and query`, upstream.target);
    checkUpstreamIdentity(upstream, `tab ${i + 1}`);
  }
  const jar = await appCookies(context);
  check(jar.some((c) => c.name === SESSION_COOKIE), 'a session cookie after both logins', jar.map((c) => c.name));
  check(!jar.some((c) => c.name.startsWith(LOGIN_COOKIE_PREFIX)), 'no login-state cookie left', jar.map((c) => c.name));

  // Both tabs keep working with the session that the browser kept.
  const after = await Promise.all(pages.map((p) => p.reload()));
  for (const [i, response] of after.entries()) {
    check(response.status() === 200 && response.request().redirectedFrom() === null, `tab ${i + 1}: reload served from the session`, chain(response).map((r) => r.url()));
  }
  ok('two tabs logged in at once: both back on their own pages, both keep the session');
  await context.close();
}

// ------------------------------------------------------------------- main

async function screenshots() {
  // Only this run's pictures.
  rmSync(screenshotDir, { recursive: true, force: true });
  mkdirSync(screenshotDir, { recursive: true });
  const saved = [];
  for (const { name, context } of contexts) {
    for (const [i, page] of context.pages().entries()) {
      const path = join(screenshotDir, `${name}-tab${i + 1}.png`);
      try {
        await page.screenshot({ path, fullPage: true, timeout: 5_000 });
        saved.push(`${path} (${page.url()})`);
      } catch {
        // A closed page or context: nothing to show.
      }
    }
  }
  return saved;
}

let browser;
let failed = false;
const watchdog = setTimeout(async () => {
  console.error(`FAIL: timed out after ${overallTimeoutMs} ms`);
  await report();
  process.exit(1);
}, overallTimeoutMs);

async function report() {
  const saved = await screenshots().catch(() => []);
  for (const path of saved) console.error(`screenshot: ${path}`);
  for (const { name } of contexts) {
    const lines = requestLog.filter((l) => l.startsWith(`[${name}] `));
    console.error(`requests of the "${name}" browser context (last 60 of ${lines.length}):`);
    for (const line of lines.slice(-60)) console.error(`  ${line}`);
  }
}

try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox',
      '--headless=new',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=MAP ${appHost} 127.0.0.1`,
    ],
  });
  ok(`launched Chromium ${browser.version()}; app ${app}, provider ${provider}, mode ${loginMode}`);
  await singleTab(browser);
  await twoTabs(browser);
  console.log('browser login flow: all checks passed');
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error instanceof CheckFailed ? error.message : error.stack ?? error}`);
  await report();
} finally {
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
}
process.exit(failed ? 1 : 0);

// A real OpenID provider for the tests: npm's OpenID-certified `oidc-provider` (installed by
// scripts/setup-test-clients.sh into .tools/oidc-provider), on a loopback port, with clients
// and accounts given by the test, and interactions a test completes without a person.
//
//   node tests/support/oidc_provider.mjs <port> '<config json>'
//
// config: {
//   "clients":  [{ "client_id", "client_secret", "redirect_uris": [..] }],
//   "accounts": [{ "sub", "email", "email_verified", "name" }],
//   "auto_login": "<sub>" | null   // who an interaction signs in when nothing else says
// }
//
// GET /_test/issued answers every code and token the provider issued, for tests that search
// the platform's storage for them; POST /_test/sign-out destroys every refresh token issued.
// config.access_token_ttl (seconds) shortens the access tokens' life.
//
// Interactions (GET /interaction/:uid):
//   - login: the account named by, in order, a `POST /_test/login {"sub": ..}` made before
//     (kept for the following interactions), the authorization request's `login_hint`, or
//     `auto_login`; the interaction completes at once (303 back to the provider). With none
//     of them, a small form is shown whose POST /interaction/:uid/login (login=<sub>)
//     completes it.
//   - consent: every requested scope and claim is granted at once.
// `resource` (RFC 8707) is accepted for any URL. Prints `ready <issuer>` once listening.

import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const tools = process.env.OIDC_PROVIDER_MODULES
  ?? path.resolve(here, '../../.tools/oidc-provider/node_modules');
const require = createRequire(path.join(tools, 'noop.js'));
const { default: Provider, errors } = await import(require.resolve('oidc-provider'));

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const config = JSON.parse(process.argv[3] ?? process.env.OIDC_CONFIG ?? '{}');
const accounts = new Map((config.accounts ?? []).map((account) => [account.sub, account]));
let nextLogin = config.auto_login ?? null;

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((client) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  async findAccount(ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const claims = { sub };
        if (account.email !== undefined) claims.email = account.email;
        if (account.email_verified !== undefined) claims.email_verified = account.email_verified;
        if (account.name !== undefined) claims.name = account.name;
        return claims;
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  // The ID token carries the granted scopes' claims (email, email_verified, name), so a client
  // whose access token is for another audience (`resource`) still learns who signed in.
  conformIdTokenClaims: false,
  cookies: { keys: ['oidc-stand-in-cookie-key-0123456789'] },
  // A short access token life lets a test see the platform refresh it.
  ...(config.access_token_ttl ? { ttl: { AccessToken: config.access_token_ttl } } : {}),
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // Tokens for a named resource are for userinfo too, so a client sending `resource`
      // still reads the user.
      useGrantedResource: () => true,
      async getResourceServerInfo(ctx, resource) {
        return { scope: 'openid email profile', audience: resource, accessTokenFormat: 'opaque' };
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // Every client here is confidential; PKCE is still accepted (the platform sends it).
  pkce: { required: () => false },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

// Every code and token the provider issued (opaque: the value is the jti), for tests that
// search the platform's storage for them (GET /_test/issued).
const issued = [];
for (const kind of ['access_token', 'refresh_token', 'authorization_code']) {
  provider.on(`${kind}.saved`, (token) => issued.push(token.jti));
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function finishConsent(req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const result = details.grantId ? {} : { consent: { grantId } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function interaction(req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch');
  if (details.prompt.name === 'consent') return finishConsent(req, res, details);
  if (req.method === 'POST' && action === 'login') {
    const sub = new URLSearchParams(await readBody(req)).get('login');
    if (!accounts.has(sub)) return send(res, 400, 'text/plain', 'unknown account');
    return provider.interactionFinished(req, res, { login: { accountId: sub } },
      { mergeWithLastSubmission: false });
  }
  const sub = nextLogin ?? details.params.login_hint;
  if (sub && accounts.has(sub)) {
    return provider.interactionFinished(req, res, { login: { accountId: sub } },
      { mergeWithLastSubmission: false });
  }
  const options = [...accounts.keys()].map((s) => `<option>${s}</option>`).join('');
  return send(res, 200, 'text/html', `<!doctype html><form method="post" action="/interaction/${uid}/login">`
    + `<select name="login">${options}</select><button>Sign in</button></form>`);
}

const handler = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname.startsWith('/interaction/')) return await interaction(req, res, url);
    if (url.pathname === '/_test/sign-out' && req.method === 'POST') {
      // Every refresh token issued is destroyed: the end users are signed out here.
      for (const jti of issued) {
        const token = await provider.RefreshToken.find(jti);
        if (token) await token.destroy();
      }
      return send(res, 200, 'application/json', '{}');
    }
    if (url.pathname === '/_test/issued') {
      return send(res, 200, 'application/json', JSON.stringify(issued));
    }
    if (url.pathname === '/_test/login' && req.method === 'POST') {
      const body = JSON.parse((await readBody(req)) || '{}');
      nextLogin = body.sub ?? null;
      return send(res, 200, 'application/json', JSON.stringify({ login: nextLogin }));
    }
    return handler(req, res);
  } catch (error) {
    const status = error instanceof errors.OIDCProviderError ? error.statusCode : 500;
    return send(res, status, 'application/json',
      JSON.stringify({ error: error.error ?? 'server_error', error_description: error.message }));
  }
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));

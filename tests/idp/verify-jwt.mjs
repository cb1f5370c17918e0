// Verifies an X-Connect-Token with `jose` (a standard JWT library, pinned in
// package.json), independently of the Rust code that signed it.
//
//   JWT=... JWT_SECRET=... node tests/idp/verify-jwt.mjs
//
// Accepts only HS256 and the issuer `ingress-authz`, checks `exp`/`iat`, and
// prints the verified protected header and payload as one JSON line:
// {"header":{...},"payload":{...}}. Exits 1 (with the reason on stderr) when
// the token does not verify.

import { jwtVerify } from 'jose';

const token = process.env.JWT;
const secret = process.env.JWT_SECRET;
if (!token || !secret) {
  console.error('verify-jwt: JWT and JWT_SECRET must be set');
  process.exit(2);
}

try {
  const { payload, protectedHeader } = await jwtVerify(token, new TextEncoder().encode(secret), {
    algorithms: [process.env.JWT_ALG || 'HS256'],
    issuer: 'ingress-authz',
    requiredClaims: ['iat', 'exp', 'sub'],
  });
  console.log(JSON.stringify({ header: protectedHeader, payload }));
} catch (error) {
  console.error(`verify-jwt: ${error.code ?? 'error'}: ${error.message}`);
  process.exit(1);
}

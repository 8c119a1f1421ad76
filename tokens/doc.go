// Package tokens builds, signs and strictly validates the three AORTA VGU tokens:
// the inschrijftoken (Enrolment), the mandaattoken (Mandate) and the
// transactietoken (Transaction), as SAML 2.0 assertions with an enveloped
// XML-DSig signature (aorta-uzi.md sections 1-7, docs/tokens.md).
//
// # Signing
//
// A Signer turns a typed struct into an etree element, signs it with one recipe
// (goxmldsig NewSigningContext over a crypto.Signer, exclusive C14N without
// prefix list, RSA-SHA256, SHA-256 digest, one Reference to "#ID", transforms
// enveloped + exc-c14n), places the ds:Signature directly after saml:Issuer and
// serialises the result once, in exclusive-canonical form, into an immutable
// Signed. The canonicaliser plugged into goxmldsig is this package's own
// (fast) one; tests cross-check it byte for byte against goxmldsig's. Before
// signing the Signer checks, through internal/uzi, that the certificate's key
// purpose and card type are allowed for the token type and that the validity
// rules hold; it never signs a token the rules forbid. A Signer is immutable
// after NewSigner and safe for concurrent use (each call owns its tree).
//
// # Validating
//
// A Validator runs the pipeline of security.md section 7: xmlsafe pre-parse;
// exactly one token in a fixed place; a pinned signature profile; the signer
// resolved from KeyInfo or the CertDirectory and verified with x509.Verify to
// the configured roots plus CRLs (never trusting KeyInfo by itself); the
// signature verified by this package over canonical bytes AND by goxmldsig with
// a store holding only the verified leaf, the two results required to be
// identical; claims read only from the verified canonical bytes; SAML
// semantics; replay through a ReplayCache. A Validator is safe for concurrent
// use. It caches chain-verification results per (certificate hash, CRL
// generation), and fully verified enrolment and mandate tokens (bounded LRU,
// ValidatorConfig.VerifiedCacheSize) per (SHA-256 of the exact token bytes,
// CRL generation): on every hit the time checks (IssueInstant, NotBefore,
// NotOnOrAfter with skew, the chain's validity where checked at "now") and
// revocation plus CRL freshness are re-run against the clock and the current
// CRLs, so only the parse, signature and chain work is saved. Transaction
// tokens and replay checks are never cached. UpdateCRLs starts a new
// generation, which empties both caches in effect.
package tokens

// Package lsp talks to the LSP (the national exchange point, ZIM) and
// simulates it.
//
// # Client
//
// Client posts SOAP 1.1 envelopes (HL7v3 in the body, the three VGU tokens in
// one wsse:Security header for the zim actor) over mutual TLS: the UZI server
// certificate with its key as a crypto.Signer (in production from the HSM via
// pkcs11), the LSP's CA set pinned (never the system roots), no proxy, no
// redirects, no compression. Connect and response timeouts and a response size
// cap are configured. A Client is safe for concurrent use and pools
// connections; Close releases idle connections.
//
// Retries: a transaction token is one-time, so the Client never re-sends a
// request that may have reached the LSP. It does not retry at all by itself;
// a failure before any byte was written (dial error, connection refused), and
// a 503/429 answer, wrap ErrRetryable: the caller (the gateway) mints a new
// transaction token for the same message and sends again. A failure after
// writing wraps ErrOutcomeUnknown.
//
// Answers: a SOAP fault becomes *FaultError; an HL7 acknowledgement with
// typeCode AE/AR (or a queryAck AE/QE) becomes *AckError; anything else that
// is not a well-formed SOAP 1.1 envelope with an HL7v3 message wraps
// ErrBadResponse.
//
// # Simulator
//
// Simulator is a strict LSP for tests and the demo (`aortagw sim lsp`): an
// http.Handler served behind mutual TLS that checks the client certificate
// (UZI server certificate, type S, from the configured CA), the envelope, the
// HL7 message, the three tokens with the tokens validator, their binding to
// each other, to the message and to the TLS client's URA, the BSN rules and
// replay; every refusal is a SOAP fault with a specific code (see
// docs/lsp.md). Accepted queries get HL7v3 answers from a seeded synthetic
// dataset, and are recorded (Accepted, GET /sim/accepted). A Simulator is
// safe for concurrent use; it keeps its records in memory (bounded).
package lsp

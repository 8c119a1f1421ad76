// Package gateway is aortagw's signing reverse proxy between the XIS and the
// LSP: for each HL7v3 SOAP message it finds the patient's enrolment token and
// the responsible caregiver's mandate token in the store, mints a fresh
// transaction token with the UZI server key (in the HSM), inserts the three
// tokens byte for byte in one wsse:Security header and forwards the message
// over mutual TLS; the LSP's answer goes back unchanged. Every refusal is a
// SOAP fault with its own code (see Code and docs/gateway.md), and for every
// refusal nothing is sent to the LSP.
//
// Besides the proxy the package holds the admin API (register, list, revoke
// and report expiring enrolment and mandate tokens; block leavers), the
// trigger API and workers (conditional queries from appointments, dossier
// events, schedules and user actions, through the store's durable queue),
// the configuration (Config: defaults < file < AORTAGW_* env < flags, strict
// by default, secrets redacted), Open (wiring from a Config: HSM key, store,
// LSP client, token validator, metrics registry) and RunDemo.
//
// Lifecycle: New validates the configuration and reads small local files
// (bearer tokens, listener certificates) but opens no socket, database or HSM
// session; Start opens the XIS and admin listeners and starts the trigger
// workers; Shutdown stops accepting, lets in-flight requests finish (bounded
// by its context), stops the workers and waits for every goroutine it
// started. A Server is started at most once; Shutdown is idempotent.
//
// Concurrency: a Server is safe for concurrent use by any number of requests.
// It keeps no mutable state of its own besides metrics: enrolments, mandates,
// blocks, the audit log and the queue live in the store, which every replica
// shares, and nothing is cached, so a revocation or a block takes effect for
// the next message on every replica. The transaction signer and the LSP
// client must be safe for concurrent use (tokens.Signer and lsp.Client are).
//
// Security: the XIS is authenticated by mutual TLS or a bearer token; client
// identity headers are deleted before any handler runs and no XIS header is
// forwarded; bodies and headers are capped before parsing; an inbound
// envelope that carries any wsse:Security header is refused; the audit log
// records every minted token before the message leaves (fail closed) and the
// outcome of every message. Logs never contain a PIN, a token body or a
// message body.
package gateway

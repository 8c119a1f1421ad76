// Package testpki builds a UZI-shaped test PKI at run time: roots, the UZI-register CAs, Z/N/M
// cards with their AUT/HND/VRT certificates, UZI server certificates, signed CRLs and the edge
// cases tests need (expired, not yet valid, revoked, wrong key usage, a look-alike attacker
// chain, a stale CRL). Everything follows the UZI profile of aorta-uzi.md section 8 with TEST
// in every CA name and the test OID CAs of internal/uzi, so production configurations that set
// uzi.ParseOptions.ProductionOnly refuse these certificates. See docs/testpki.md.
//
// # Keys
//
// By default all keys are software RSA-2048 keys (Cert.Key). With Options.SoftHSM every card
// becomes its own SoftHSM token (label = card name) and the server keys go into one token
// labelled "hsm" (the simulators' LSP and SBV-Z keys stay software keys, as they stand for outside
// parties); token keys are generated inside the token (non-extractable, sensitive; the
// HND key with CKA_ALWAYS_AUTHENTICATE) and Cert.Key is nil: open them with pkcs11.Open and
// Cert.KeyURI. CA, edge-case and attacker keys stay software keys.
//
// # SoftHSM and the process environment
//
// SoftHSM reads SOFTHSM2_CONF once, when the module is initialised. New with SoftHSM writes
// <Dir>/softhsm/softhsm2.conf (token directory inside Dir, file object store, log level
// ERROR) and sets SOFTHSM2_CONF to it when the variable is empty; when it already points
// elsewhere New fails with ErrSoftHSMConf. So one process (one test binary) works with one
// token directory: set SOFTHSM2_CONF to SoftHSMConfPath(dir) before anything in the process
// loads the module, and never point two PKIs of one process at different directories.
//
// # Determinism, time and cost
//
// Options.Seed drives names, UZI numbers, URAs and AGB codes; keys, serial numbers and PINs
// are always random (serials 20 bytes, full width). Options.Now freezes the clock every
// validity period and CRL is computed from. New generates about 40 RSA keys on at most two
// goroutines (about a second without -race); use Shared for one PKI per test binary.
//
// A *PKI is immutable after New or Load and safe for concurrent reads. Callers must not
// modify the certificates, keys or maps it holds.
package testpki

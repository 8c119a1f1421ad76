// Package sbvz is the client for CIBG's SBV-Z (Sectorale Berichtenvoorziening
// in de Zorg) and a strict simulator of it.
//
// SBV-Z is plain SOAP 1.1 document/literal over mutual TLS with the care
// provider's UZI server certificate; no WS-Security, no HL7v3. The client
// speaks:
//
//   - OpvragenVerifieren (namespace .../mrt21): look up a BSN (Client.Lookup,
//     no BSN in the question) or verify one (Client.Verify, BSN plus person
//     data), search path 1 (geboortedatum + geslacht + huisnummer + postcode)
//     or 2 (geboortedatum + geslacht + geslachtsnaam);
//   - OpvragenPersoonsgegevens (namespace .../dec14): Client.PersonData;
//   - the ID-document check (WID, Client.CheckDocument) and the initial-fill
//     "afspraak" (Client.CreateAppointment, Client.DeleteAppointment): their
//     message shapes are not public, so these use our own proposal namespaces
//     (see docs/sbvz.md) until the CIBG WSDLs are in hand.
//
// Contracts:
//
//   - A Client is safe for concurrent use. It holds one http.Client (keep-alive
//     connections are reused); it caches nothing else. Close releases idle
//     connections and is idempotent.
//   - Every question is checked before it is sent: the BSN eleven-test, the
//     completeness of the search path, field formats and lengths. A refused
//     question never reaches the network.
//   - Every answer is size-capped and parsed strictly (no DOCTYPE, depth and
//     element caps, no duplicate or unknown elements, value formats). The
//     LokaalKenmerk echo is compared with the one sent, and a verification must
//     answer with the BSN that was asked. Violations are protocol errors
//     (ErrProtocol and friends), never a result.
//   - Functional answers become a *Result (Outcome G, A or F with Meldingen);
//     SOAP faults and non-2xx HTTP answers become a *FaultError.
//
// The Simulator is an http.Handler meant to sit behind real mutual TLS (see
// Simulator.TLSConfig). It is safe for concurrent use; it records every
// request it received for tests (Simulator.Records).
//
// Fill runs the initial fill of a patient file (CSV in, CSV out), rate limited
// and resumable through an fsync'ed journal.
package sbvz

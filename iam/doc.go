// Package iam keeps caregivers, their rights and their mandates in sync: it
// reads persons with contracts from HR and roster sources, computes the
// desired state (SOLL) from rules, manual grants and exclusions, reads the
// actual state (IST) of every target with its connector, and turns the
// difference into a plan of actions that it applies with retries.
//
// Layout:
//   - package iam: the model (Person, Contract, shifts), rules and
//     timeframes, the Connector contract, the planner (pure, no I/O), the
//     Engine (apply, thresholds, event-driven propagation, reconciliation
//     loop), deviations and attestation, and the Store interface.
//   - iam/store: the persistent state, SQLite (modernc.org/sqlite) or PostgreSQL (pgx), chosen by DSN.
//   - iam/source: the HR file source (CSV/JSON, watched), the HR webhook and
//     the staffing-platform REST source with its simulator.
//   - iam/connector/...: the targets (ldap, scim, hix, mandate, directory).
//
// Concurrency: Plan and the rule functions are pure and safe for concurrent
// use. An Engine is safe for concurrent use; it serialises work per person
// (one person's actions never run concurrently with another run for the same
// person) and honours each connector's concurrency limit. Goroutines are
// owned: Engine.Run and the source watchers return when their context is
// cancelled, after their goroutines have exited.
//
// Safety by default: a source import that would remove too many persons is
// blocked whole until approved; output thresholds block only the action
// type that exceeds them; accounts are disabled first and deleted only after
// a grace period (never for targets without the delete capability); a
// correlation that finds several accounts is a deviation, never a guess; dry
// run runs connector code right up to the write call. Nothing is cached
// between runs except what the Store holds.
package iam

package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Queue is the durable trigger queue. A job moves through
//
//	queued -> claimed -> sending -> done
//	            |           |-> queued (Fail DispRetry: provably not delivered; backoff) -> ... -> dead
//	            |           |-> dead (Fail DispDead, or MaxAttempts reached)
//	            |           `-> unknown (Fail DispUnknown, or the lease ran out while sending)
//	            `-> queued (lease ran out before BeginSend: nothing was sent)
//
// The guarantee ("never sends twice"): BeginSend commits state "sending" with
// a fresh attempt ID before the worker may touch the network, and a job in
// "sending" or "unknown" is never handed to a worker again by the store.
// Only Fail(DispRetry), which the worker calls when it knows the message did
// not reach the LSP, or an operator's Resolve(ResolveRequeue) makes it
// claimable again. A crash at any point therefore leads to at most one send
// per attempt and never to an automatic second attempt after a send that may
// have gone out. Each attempt carries its own attempt ID, which the gateway
// uses as the HL7 message id, so even an operator's requeue is
// distinguishable at the LSP.
type Queue interface {
	// Enqueue adds a job unless one with the same IdempotencyKey exists, in
	// which case it returns that job and created=false.
	Enqueue(ctx context.Context, spec JobSpec) (job *Job, created bool, err error)
	// Claim leases the oldest due queued job to worker for lease; ErrNoJob
	// when none is due. It first returns expired leases (RecoverLeases).
	Claim(ctx context.Context, worker string, lease time.Duration) (*Job, error)
	// BeginSend records, durably, that attempt N is about to be sent and
	// returns its attempt ID. ErrLeaseLost if the claim is no longer valid.
	BeginSend(ctx context.Context, id, claimToken string) (Attempt, error)
	// Complete stores the result of a sent job (state done). It also accepts a
	// job that recovery moved to unknown under the same claim token.
	Complete(ctx context.Context, id, claimToken string, result []byte) error
	// Fail ends the current attempt with cause; see Disposition.
	Fail(ctx context.Context, id, claimToken, cause string, d Disposition) (*Job, error)
	// RecoverLeases handles jobs whose lease ran out: claimed -> queued,
	// sending -> unknown.
	RecoverLeases(ctx context.Context) (requeued, unknown int64, err error)
	// Resolve is the operator's decision on an unknown (or dead) job.
	Resolve(ctx context.Context, id string, r Resolution, by string) error
	// Job returns a job by ID, JobByKey by idempotency key (ErrNotFound).
	Job(ctx context.Context, id string) (*Job, error)
	JobByKey(ctx context.Context, key string) (*Job, error)
	// QueueDepth counts jobs per state.
	QueueDepth(ctx context.Context) (map[JobState]int64, error)
	// PurgeJobs deletes done and dead jobs (and their attempts) last updated
	// before `before`: results hold patient data, so keep them only as long
	// as the XIS needs to fetch them.
	PurgeJobs(ctx context.Context, before time.Time) (int64, error)
}

// JobState is a job's state.
type JobState string

// Job states.
const (
	JobQueued  JobState = "queued"
	JobClaimed JobState = "claimed"
	JobSending JobState = "sending"
	JobDone    JobState = "done"
	JobUnknown JobState = "unknown" // may have been sent: needs a status check or an operator
	JobDead    JobState = "dead"
)

// AllJobStates lists every state (for metrics).
var AllJobStates = []JobState{JobQueued, JobClaimed, JobSending, JobDone, JobUnknown, JobDead}

// Disposition says what a failed attempt means.
type Disposition int

const (
	// DispRetry: the message provably did not reach the LSP (no connection,
	// refused before the request was written, or failed before BeginSend):
	// retry with backoff, dead after MaxAttempts.
	DispRetry Disposition = iota + 1
	// DispDead: permanent failure (bad template, LSP fault that will not change).
	DispDead
	// DispUnknown: the message may have been delivered (timeout after writing):
	// park the job for a status check or an operator.
	DispUnknown
)

// Resolution is an operator's decision on an unknown job.
type Resolution int

const (
	// ResolveRequeue: the operator established the message was not processed; send again (new attempt ID).
	ResolveRequeue Resolution = iota + 1
	// ResolveDone: the message was processed; nothing more to do.
	ResolveDone
	// ResolveDead: give up.
	ResolveDead
)

// JobSpec describes a job to enqueue.
type JobSpec struct {
	IdempotencyKey string // required; e.g. trigger ID + occurrence
	Kind           string // e.g. "trigger.appointment"
	Payload        []byte // opaque to the store (JSON by convention)
	RunAt          time.Time
	MaxAttempts    int // default Options.Retry.MaxAttempts
}

// Job is a queued job.
type Job struct {
	ID             string
	IdempotencyKey string
	Kind           string
	Payload        []byte
	State          JobState
	RunAt          time.Time
	Attempts       int
	MaxAttempts    int
	ClaimToken     string
	ClaimedBy      string
	LeaseUntil     time.Time
	AttemptID      string // ID of the current or last attempt
	Result         []byte
	LastError      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Attempt is one send attempt.
type Attempt struct {
	N  int
	ID string // use as the message id of this send
}

const jobCols = `id, idempotency_key, kind, payload, state, run_at, attempts, max_attempts, claim_token, claimed_by,
	lease_until, attempt_id, result, last_error, created_at, updated_at`

func scanJob(r scanner) (*Job, error) {
	var j Job
	var state string
	err := r.Scan(&j.ID, &j.IdempotencyKey, &j.Kind, &j.Payload, &state, tsScan{&j.RunAt}, &j.Attempts, &j.MaxAttempts,
		nullString{&j.ClaimToken}, nullString{&j.ClaimedBy}, tsScan{&j.LeaseUntil}, nullString{&j.AttemptID},
		&j.Result, &j.LastError, tsScan{&j.CreatedAt}, tsScan{&j.UpdatedAt})
	if err != nil {
		return nil, err
	}
	j.State = JobState(state)
	return &j, nil
}

func (s *sqlStore) backoff(attempts int) time.Duration {
	d := s.opts.Retry.Base
	for i := 1; i < attempts && d < s.opts.Retry.Max; i++ {
		d *= 2
	}
	return min(d, s.opts.Retry.Max)
}

func (s *sqlStore) Enqueue(ctx context.Context, spec JobSpec) (*Job, bool, error) {
	if spec.IdempotencyKey == "" || spec.Kind == "" {
		return nil, false, fmt.Errorf("%w: job needs an idempotency key and a kind", ErrInvalid)
	}
	if spec.MaxAttempts <= 0 {
		spec.MaxAttempts = s.opts.Retry.MaxAttempts
	}
	now := s.opts.Now()
	if spec.RunAt.IsZero() {
		spec.RunAt = now
	}
	if spec.Payload == nil {
		spec.Payload = []byte{}
	}
	var job *Job
	created := false
	err := s.b.tx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `INSERT INTO jobs (id, idempotency_key, kind, payload, state, run_at, max_attempts, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7) ON CONFLICT (idempotency_key) DO NOTHING`,
			s.opts.NewID(), spec.IdempotencyKey, spec.Kind, spec.Payload, s.d.ts(spec.RunAt), spec.MaxAttempts, s.d.ts(now))
		if err != nil {
			return err
		}
		created = n == 1
		job, err = scanJob(q.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE idempotency_key = $1`, spec.IdempotencyKey))
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: enqueue (key=%s): %w", spec.IdempotencyKey, err)
	}
	return job, created, nil
}

func (s *sqlStore) recoverTx(ctx context.Context, q querier, now any) (requeued, unknown int64, err error) {
	requeued, err = q.exec(ctx, `UPDATE jobs SET state = 'queued', claim_token = NULL, claimed_by = NULL, lease_until = NULL,
		updated_at = $1 WHERE state = 'claimed' AND lease_until <= $1`, now)
	if err != nil {
		return 0, 0, err
	}
	// The claim token stays, so a worker that did send and finishes late can
	// still Complete the job.
	unknown, err = q.exec(ctx, `UPDATE jobs SET state = 'unknown', last_error = 'lease expired while sending',
		updated_at = $1 WHERE state = 'sending' AND lease_until <= $1`, now)
	return requeued, unknown, err
}

func (s *sqlStore) RecoverLeases(ctx context.Context) (requeued, unknown int64, err error) {
	now := s.d.ts(s.opts.Now())
	err = s.b.tx(ctx, func(q querier) error {
		requeued, unknown, err = s.recoverTx(ctx, q, now)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: recover leases: %w", err)
	}
	if unknown > 0 {
		s.log.Warn("trigger jobs in unknown state after lease expiry: not resent; resolve them", "count", unknown)
	}
	return requeued, unknown, nil
}

func (s *sqlStore) Claim(ctx context.Context, worker string, lease time.Duration) (*Job, error) {
	if worker == "" || lease <= 0 {
		return nil, fmt.Errorf("%w: claim needs a worker name and a positive lease", ErrInvalid)
	}
	now := s.opts.Now()
	token := s.opts.NewID()
	lock := ""
	if s.d == dialectPostgres {
		lock = " FOR UPDATE SKIP LOCKED"
	}
	var (
		job    *Job
		none   bool
		unknwn int64
	)
	err := s.b.tx(ctx, func(q querier) error {
		var err error
		job, none = nil, false
		if _, unknwn, err = s.recoverTx(ctx, q, s.d.ts(now)); err != nil {
			return err
		}
		job, err = scanJob(q.queryRow(ctx, `UPDATE jobs SET state = 'claimed', claim_token = $1, claimed_by = $2,
			lease_until = $3, updated_at = $4
			WHERE state = 'queued' AND id = (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $4
				ORDER BY run_at, id LIMIT 1`+lock+`)
			RETURNING `+jobCols, token, worker, s.d.ts(now.Add(lease)), s.d.ts(now)))
		if errors.Is(err, errNoRows) {
			// No job due: still commit the lease recovery above, so an
			// expired lease is handled even when nothing else is queued.
			job, none = nil, true
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	if unknwn > 0 {
		s.log.Warn("trigger jobs in unknown state after lease expiry: not resent; resolve them", "count", unknwn)
	}
	if none {
		return nil, ErrNoJob
	}
	return job, nil
}

func (s *sqlStore) BeginSend(ctx context.Context, id, claimToken string) (Attempt, error) {
	now := s.opts.Now()
	attemptID := s.opts.NewID()
	var a Attempt
	err := s.b.tx(ctx, func(q querier) error {
		var worker string
		err := q.queryRow(ctx, `UPDATE jobs SET state = 'sending', attempts = attempts + 1, attempt_id = $3, updated_at = $4
			WHERE id = $1 AND claim_token = $2 AND state = 'claimed' AND lease_until > $4
			RETURNING attempts, claimed_by`, id, claimToken, attemptID, s.d.ts(now)).Scan(&a.N, &worker)
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("%w (job=%s)", ErrLeaseLost, id)
		}
		if err != nil {
			return fmt.Errorf("store: begin send (job=%s): %w", id, err)
		}
		a.ID = attemptID
		if _, err := q.exec(ctx, `INSERT INTO job_attempts (job_id, attempt, attempt_id, worker, started_at)
			VALUES ($1, $2, $3, $4, $5)`, id, a.N, attemptID, worker, s.d.ts(now)); err != nil {
			return fmt.Errorf("store: record attempt (job=%s): %w", id, err)
		}
		return nil
	})
	return a, err
}

func (s *sqlStore) finishAttempt(ctx context.Context, q querier, id, attemptID, outcome, cause string, now any) error {
	if attemptID == "" {
		return nil
	}
	_, err := q.exec(ctx, `UPDATE job_attempts SET finished_at = $3, outcome = $4, error = $5
		WHERE job_id = $1 AND attempt_id = $2`, id, attemptID, now, outcome, cause)
	return err
}

func (s *sqlStore) Complete(ctx context.Context, id, claimToken string, result []byte) error {
	if result == nil {
		result = []byte{}
	}
	now := s.d.ts(s.opts.Now())
	return s.b.tx(ctx, func(q querier) error {
		var attemptID string
		err := q.queryRow(ctx, `UPDATE jobs SET state = 'done', result = $3, lease_until = NULL, last_error = '', updated_at = $4
			WHERE id = $1 AND claim_token = $2 AND state IN ('sending', 'unknown')
			RETURNING attempt_id`, id, claimToken, result, now).Scan(nullString{&attemptID})
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("%w (job=%s)", ErrLeaseLost, id)
		}
		if err != nil {
			return fmt.Errorf("store: complete (job=%s): %w", id, err)
		}
		return s.finishAttempt(ctx, q, id, attemptID, "done", "", now)
	})
}

func (s *sqlStore) Fail(ctx context.Context, id, claimToken, cause string, d Disposition) (*Job, error) {
	if d < DispRetry || d > DispUnknown {
		return nil, fmt.Errorf("%w: unknown disposition %d", ErrInvalid, d)
	}
	now := s.opts.Now()
	var job *Job
	err := s.b.tx(ctx, func(q querier) error {
		j, err := scanJob(q.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = $1 AND claim_token = $2
			AND state IN ('claimed', 'sending', 'unknown')`, id, claimToken))
		if errors.Is(err, errNoRows) {
			return fmt.Errorf("%w (job=%s)", ErrLeaseLost, id)
		}
		if err != nil {
			return fmt.Errorf("store: fail (job=%s): %w", id, err)
		}
		attempts := j.Attempts
		if j.State == JobClaimed {
			attempts++ // a failure before sending still counts toward MaxAttempts
		}
		next, runAt, outcome := JobDead, j.RunAt, "dead"
		switch d {
		case DispRetry:
			if attempts < j.MaxAttempts {
				next, runAt, outcome = JobQueued, now.Add(s.backoff(attempts)), "not-delivered"
			}
		case DispUnknown:
			next, outcome = JobUnknown, "unknown"
		}
		claim := any(claimToken)
		if next != JobUnknown {
			claim = nil
		}
		if _, err := q.exec(ctx, `UPDATE jobs SET state = $2, attempts = $3, run_at = $4, last_error = $5,
			claim_token = $6, lease_until = NULL, updated_at = $7 WHERE id = $1`,
			id, string(next), attempts, s.d.ts(runAt), cause, claim, s.d.ts(now)); err != nil {
			return fmt.Errorf("store: fail (job=%s): %w", id, err)
		}
		if j.State != JobClaimed {
			if err := s.finishAttempt(ctx, q, id, j.AttemptID, outcome, cause, s.d.ts(now)); err != nil {
				return fmt.Errorf("store: fail (job=%s): %w", id, err)
			}
		}
		j.State, j.Attempts, j.RunAt, j.LastError = next, attempts, micro(runAt), cause
		job = j
		return nil
	})
	return job, err
}

func (s *sqlStore) Resolve(ctx context.Context, id string, r Resolution, by string) error {
	var next JobState
	switch r {
	case ResolveRequeue:
		next = JobQueued
	case ResolveDone:
		next = JobDone
	case ResolveDead:
		next = JobDead
	default:
		return fmt.Errorf("%w: unknown resolution %d", ErrInvalid, r)
	}
	if by == "" {
		return fmt.Errorf("%w: resolve needs who decided", ErrInvalid)
	}
	now := s.opts.Now()
	return s.b.tx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE jobs SET state = $2, run_at = $3, claim_token = NULL, claimed_by = NULL,
			lease_until = NULL, last_error = $4, updated_at = $3 WHERE id = $1 AND state IN ('unknown', 'dead')`,
			id, string(next), s.d.ts(now), "resolved "+string(next)+" by "+by)
		if err != nil {
			return fmt.Errorf("store: resolve (job=%s): %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("%w: no unknown or dead job (job=%s)", ErrNotFound, id)
		}
		return nil
	})
}

func (s *sqlStore) Job(ctx context.Context, id string) (*Job, error) {
	j, err := scanJob(s.b.read().queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = $1`, id))
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%w: job (id=%s)", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: job: %w", err)
	}
	return j, nil
}

func (s *sqlStore) JobByKey(ctx context.Context, key string) (*Job, error) {
	j, err := scanJob(s.b.read().queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE idempotency_key = $1`, key))
	if errors.Is(err, errNoRows) {
		return nil, fmt.Errorf("%w: job (key=%s)", ErrNotFound, key)
	}
	if err != nil {
		return nil, fmt.Errorf("store: job: %w", err)
	}
	return j, nil
}

func (s *sqlStore) QueueDepth(ctx context.Context) (map[JobState]int64, error) {
	rows, err := s.b.read().query(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("store: queue depth: %w", err)
	}
	defer rows.Close()
	out := make(map[JobState]int64, len(AllJobStates))
	for _, st := range AllJobStates {
		out[st] = 0
	}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("store: queue depth: %w", err)
		}
		out[JobState(st)] = n
	}
	return out, rows.Err()
}

func (s *sqlStore) PurgeJobs(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.b.tx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM job_attempts WHERE job_id IN
			(SELECT id FROM jobs WHERE state IN ('done', 'dead') AND updated_at < $1)`, s.d.ts(before)); err != nil {
			return err
		}
		var err error
		n, err = q.exec(ctx, `DELETE FROM jobs WHERE state IN ('done', 'dead') AND updated_at < $1`, s.d.ts(before))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: purge jobs: %w", err)
	}
	return n, nil
}

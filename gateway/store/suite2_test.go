package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func auditRec(i int) AuditRecord {
	return AuditRecord{Kind: "message", Giver: "900000001:01.015", Actor: "900000111:30.000",
		BSN: fmt.Sprintf("99999%04d", i%3), Interaction: "QUMA_IN991203UV", MessageID: fmt.Sprintf("2.16.1^%d", i),
		TokenIDs: []string{fmt.Sprintf("_tx%d", i), "_e1", "_m1"}, TriggerID: "", Outcome: "ok",
		Details: json.RawMessage(fmt.Sprintf(`{ "n": %d, "note": "<&>" }`, i))}
}

func testAuditChain(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)

	rep, err := s.VerifyChain(ctx)
	require.NoError(t, err, "empty chain verifies")
	assert.True(t, rep.OK)
	assert.Zero(t, rep.Records)

	var last AuditRecord
	for i := 1; i <= 25; i++ {
		clk.Add(time.Second)
		last, err = s.Append(ctx, auditRec(i))
		require.NoError(t, err)
		assert.Equal(t, int64(i), last.Seq)
	}
	assert.Equal(t, `{"n":25,"note":"<&>"}`, string(last.Details), "details compacted, not escaped")
	rep, err = s.VerifyChain(ctx)
	require.NoError(t, err)
	assert.True(t, rep.OK)
	assert.Equal(t, int64(25), rep.Records)
	assert.Equal(t, int64(25), rep.HeadSeq)
	assert.Equal(t, fmt.Sprintf("%x", last.Hash), rep.HeadHash)

	recs, err := s.AuditRecords(ctx, AuditFilter{BSN: "999990001"})
	require.NoError(t, err)
	assert.Len(t, recs, 9)
	for _, r := range recs {
		assert.Equal(t, recordHash(&r), r.Hash, "records read back hash to their stored hash")
	}
	from := newClock().Now().Add(5 * time.Second)
	recs, err = s.AuditRecords(ctx, AuditFilter{From: from, To: from.Add(5 * time.Second)})
	require.NoError(t, err)
	assert.Len(t, recs, 5, "From inclusive, To exclusive")

	for _, bad := range []AuditRecord{{Kind: "", Outcome: "ok"}, {Kind: "x", Outcome: "ok", Details: json.RawMessage(`[1]`)}, {Kind: "x", Outcome: "ok", Details: json.RawMessage(`{`)}} {
		_, err := s.Append(ctx, bad)
		assert.ErrorIs(t, err, ErrInvalid)
	}

	// The table refuses updates and deletes outright (append-only trigger).
	err = s.b.tx(ctx, func(q querier) error {
		_, err := q.exec(ctx, "UPDATE audit_log SET outcome = 'x' WHERE seq = 1")
		return err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "append-only")
}

func testAuditConcurrentReplicas(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	dsn := newDSN(t)
	clk := newClock()
	replicas := []*sqlStore{openStore(t, dsn, clk), openStore(t, dsn, clk), openStore(t, dsn, clk)}
	const perWorker, workers = 15, 6
	seqs := make(chan int64, perWorker*workers)
	errs := make(chan error, perWorker*workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := replicas[w%len(replicas)]
			for i := range perWorker {
				r, err := s.Append(ctx, auditRec(w*100+i))
				if err != nil {
					errs <- err
					return
				}
				seqs <- r.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	seen := map[int64]bool{}
	for s := range seqs {
		assert.False(t, seen[s], "seq %d handed out twice", s)
		seen[s] = true
	}
	assert.Len(t, seen, perWorker*workers)
	rep, err := replicas[1].VerifyChain(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(perWorker*workers), rep.Records)
}

// tamper runs statements as an attacker with database access would: with
// the append-only trigger out of the way.
func tamper(t *testing.T, s *sqlStore, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.b.tx(ctx, func(q querier) error {
		if s.d == dialectPostgres {
			if _, err := q.exec(ctx, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"); err != nil {
				return err
			}
		} else {
			for _, tr := range []string{"audit_log_no_update", "audit_log_no_delete"} {
				if _, err := q.exec(ctx, "DROP TRIGGER IF EXISTS "+tr); err != nil {
					return err
				}
			}
		}
		for _, st := range stmts {
			if _, err := q.exec(ctx, st); err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
		}
		return nil
	}))
}

func testAuditTamper(t *testing.T, newDSN func(*testing.T) string) {
	tests := []struct {
		name     string
		stmts    []string
		wantSeq  int64
		wantKind string
	}{
		{name: "change outcome", stmts: []string{"UPDATE audit_log SET outcome = 'ok-ish' WHERE seq = 4"}, wantSeq: 4, wantKind: "hash-mismatch"},
		{name: "change patient", stmts: []string{"UPDATE audit_log SET bsn = '111111111' WHERE seq = 2"}, wantSeq: 2, wantKind: "hash-mismatch"},
		{name: "change details", stmts: []string{`UPDATE audit_log SET details = '{"n":3,"note":"<&> "}' WHERE seq = 3`}, wantSeq: 3, wantKind: "hash-mismatch"},
		{name: "change token ids", stmts: []string{`UPDATE audit_log SET token_ids = '["_other"]' WHERE seq = 5`}, wantSeq: 5, wantKind: "hash-mismatch"},
		{name: "change hash too", stmts: []string{"UPDATE audit_log SET outcome = 'x', hash = prev_hash WHERE seq = 3"}, wantSeq: 3, wantKind: "hash-mismatch"},
		{name: "delete middle", stmts: []string{"DELETE FROM audit_log WHERE seq = 3"}, wantSeq: 4, wantKind: "gap"},
		{name: "truncate refused", stmts: nil, wantSeq: -1},
		{name: "delete tail", stmts: []string{"DELETE FROM audit_log WHERE seq = 6"}, wantSeq: 6, wantKind: "head-mismatch"},
		{name: "delete tail and fix head", stmts: []string{"DELETE FROM audit_log WHERE seq = 6",
			"UPDATE audit_head SET last_seq = 5, last_hash = (SELECT hash FROM audit_log WHERE seq = 5)"}, wantSeq: 0},
		{name: "reorder", stmts: []string{"UPDATE audit_log SET seq = 100 WHERE seq = 2", "UPDATE audit_log SET seq = 2 WHERE seq = 3",
			"UPDATE audit_log SET seq = 3 WHERE seq = 100"}, wantSeq: 2, wantKind: "prev-mismatch"},
		{name: "insert beyond head", stmts: []string{`INSERT INTO audit_log SELECT 7, version, at, kind, giver, actor, bsn,
			interaction, message_id, token_ids, trigger_id, outcome, details, hash, hash FROM audit_log WHERE seq = 6`}, wantSeq: 7, wantKind: "hash-mismatch"},
		{name: "insert in the middle with renumbering", stmts: []string{
			"UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 3", "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1003",
			`INSERT INTO audit_log SELECT 3, version, at, kind, giver, actor, bsn, interaction, message_id, token_ids,
				trigger_id, 'forged', details, prev_hash, hash FROM audit_log WHERE seq = 2`}, wantSeq: 3, wantKind: "prev-mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newClock()
			s := openStore(t, newDSN(t), clk)
			for i := 1; i <= 6; i++ {
				_, err := s.Append(ctx, auditRec(i))
				require.NoError(t, err)
			}
			if tc.wantSeq == -1 {
				err := s.b.tx(ctx, func(q querier) error {
					_, err := q.exec(ctx, "DELETE FROM audit_log")
					if err == nil && s.d == dialectPostgres {
						_, err = q.exec(ctx, "TRUNCATE audit_log")
					}
					return err
				})
				require.Error(t, err, "the append-only trigger refuses")
				assert.Contains(t, err.Error(), "append-only")
				if s.d == dialectPostgres {
					err := s.b.tx(ctx, func(q querier) error {
						_, err := q.exec(ctx, "TRUNCATE audit_log")
						return err
					})
					require.Error(t, err)
					assert.Contains(t, err.Error(), "append-only")
				}
				return
			}
			tamper(t, s, tc.stmts...)
			rep, err := s.VerifyChain(ctx)
			if tc.wantSeq == 0 {
				// Truncating the tail AND rewriting the head is only caught by
				// comparing with a head hash noted earlier (documented).
				require.NoError(t, err)
				assert.Equal(t, int64(5), rep.HeadSeq)
				return
			}
			require.ErrorIs(t, err, ErrChainBroken)
			assert.False(t, rep.OK)
			require.NotEmpty(t, rep.Problems)
			found := false
			for _, p := range rep.Problems {
				if p.Seq == tc.wantSeq && p.Kind == tc.wantKind {
					found = true
				}
			}
			assert.True(t, found, "want %s at seq %d, got %v", tc.wantKind, tc.wantSeq, rep.Problems)
			assert.Equal(t, tc.wantSeq, rep.Problems[0].Seq, "first problem is where the break is: %v", rep.Problems)
		})
	}
}

func testQueue(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)

	job, created, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "trigger-1/2026-03-01T12:00", Kind: "trigger.appointment",
		Payload: []byte(`{"bsn":"999990019"}`)})
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, JobQueued, job.State)
	again, created, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "trigger-1/2026-03-01T12:00", Kind: "trigger.appointment"})
	require.NoError(t, err)
	assert.False(t, created, "same idempotency key: not enqueued twice")
	assert.Equal(t, job.ID, again.ID)
	_, _, err = s.Enqueue(ctx, JobSpec{Kind: "x"})
	assert.ErrorIs(t, err, ErrInvalid)

	// A job in the future is not due.
	_, _, err = s.Enqueue(ctx, JobSpec{IdempotencyKey: "later", Kind: "trigger.schedule", RunAt: clk.Now().Add(time.Hour)})
	require.NoError(t, err)

	c, err := s.Claim(ctx, "w1", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, job.ID, c.ID)
	assert.Equal(t, JobClaimed, c.State)
	assert.Equal(t, []byte(`{"bsn":"999990019"}`), c.Payload)
	_, err = s.Claim(ctx, "w2", time.Minute)
	assert.ErrorIs(t, err, ErrNoJob, "claimed job is not handed out again; later job not due")

	_, err = s.BeginSend(ctx, c.ID, "wrong-token")
	assert.ErrorIs(t, err, ErrLeaseLost)
	att, err := s.BeginSend(ctx, c.ID, c.ClaimToken)
	require.NoError(t, err)
	assert.Equal(t, 1, att.N)
	assert.NotEmpty(t, att.ID)
	_, err = s.BeginSend(ctx, c.ID, c.ClaimToken)
	assert.ErrorIs(t, err, ErrLeaseLost, "a second BeginSend for the same claim is refused")

	// Retry after a provable non-delivery: backoff, then due again.
	j, err := s.Fail(ctx, c.ID, c.ClaimToken, "connection refused", DispRetry)
	require.NoError(t, err)
	assert.Equal(t, JobQueued, j.State)
	assert.Equal(t, micro(clk.Now().Add(time.Minute)), j.RunAt, "first backoff = base")
	_, err = s.Claim(ctx, "w1", time.Minute)
	assert.ErrorIs(t, err, ErrNoJob, "not due during backoff")
	clk.Add(time.Minute)
	c, err = s.Claim(ctx, "w1", time.Minute)
	require.NoError(t, err)
	att2, err := s.BeginSend(ctx, c.ID, c.ClaimToken)
	require.NoError(t, err)
	assert.Equal(t, 2, att2.N)
	assert.NotEqual(t, att.ID, att2.ID, "every attempt has its own message id")
	require.NoError(t, s.Complete(ctx, c.ID, c.ClaimToken, []byte("<response/>")))
	assert.ErrorIs(t, s.Complete(ctx, c.ID, c.ClaimToken, []byte("again")), ErrLeaseLost)

	done, err := s.Job(ctx, job.ID)
	require.NoError(t, err)
	assert.Equal(t, JobDone, done.State)
	assert.Equal(t, []byte("<response/>"), done.Result, "result can be fetched")
	assert.Equal(t, 2, done.Attempts)
	byKey, err := s.JobByKey(ctx, "trigger-1/2026-03-01T12:00")
	require.NoError(t, err)
	assert.Equal(t, job.ID, byKey.ID)
	_, err = s.Job(ctx, "nope")
	assert.ErrorIs(t, err, ErrNotFound)

	// Backoff doubles and the job dies after MaxAttempts (3).
	dj, _, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "doomed", Kind: "trigger.user"})
	require.NoError(t, err)
	wantBackoff := []time.Duration{time.Minute, 2 * time.Minute}
	for i := range 3 {
		c, err := s.Claim(ctx, "w1", time.Minute)
		require.NoError(t, err)
		require.Equal(t, dj.ID, c.ID)
		_, err = s.BeginSend(ctx, c.ID, c.ClaimToken)
		require.NoError(t, err)
		j, err := s.Fail(ctx, c.ID, c.ClaimToken, "lsp unreachable", DispRetry)
		require.NoError(t, err)
		if i < 2 {
			assert.Equal(t, JobQueued, j.State)
			assert.Equal(t, micro(clk.Now().Add(wantBackoff[i])), j.RunAt)
			clk.Add(wantBackoff[i])
		} else {
			assert.Equal(t, JobDead, j.State, "dead after MaxAttempts")
		}
	}
	// Permanent failure: dead at once.
	pj, _, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "bad-template", Kind: "trigger.user"})
	require.NoError(t, err)
	c, err = s.Claim(ctx, "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, pj.ID, c.ID)
	j, err = s.Fail(ctx, c.ID, c.ClaimToken, "template error", DispDead)
	require.NoError(t, err)
	assert.Equal(t, JobDead, j.State)
	_, err = s.Fail(ctx, c.ID, c.ClaimToken, "x", Disposition(42))
	assert.ErrorIs(t, err, ErrInvalid)

	depth, err := s.QueueDepth(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[JobState]int64{JobQueued: 1, JobClaimed: 0, JobSending: 0, JobDone: 1, JobUnknown: 0, JobDead: 2}, depth)

	// Retention: finished jobs older than the cut-off go, the rest stays.
	n, err := s.PurgeJobs(ctx, clk.Now().Add(time.Second))
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
	depth, err = s.QueueDepth(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), depth[JobQueued])
	assert.Zero(t, depth[JobDone]+depth[JobDead])
}

func testQueueRecovery(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	a, _, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "a", Kind: "k"})
	require.NoError(t, err)
	clk.Add(time.Second)
	b, _, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "b", Kind: "k"})
	require.NoError(t, err)

	// Worker 1 claims a and crashes before sending; worker 2 claims b,
	// records the send and crashes.
	ca, err := s.Claim(ctx, "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, a.ID, ca.ID)
	cb, err := s.Claim(ctx, "w2", time.Minute)
	require.NoError(t, err)
	require.Equal(t, b.ID, cb.ID)
	_, err = s.BeginSend(ctx, cb.ID, cb.ClaimToken)
	require.NoError(t, err)

	clk.Add(2 * time.Minute)
	// Worker 1 wakes up after its lease ran out: it may not send.
	_, err = s.BeginSend(ctx, ca.ID, ca.ClaimToken)
	assert.ErrorIs(t, err, ErrLeaseLost)
	requeued, unknown, err := s.RecoverLeases(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), requeued)
	assert.Equal(t, int64(1), unknown)

	// a (never sent) is claimable again; b (maybe sent) is never handed out.
	c, err := s.Claim(ctx, "w3", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, a.ID, c.ID)
	_, err = s.Claim(ctx, "w3", time.Minute)
	assert.ErrorIs(t, err, ErrNoJob)
	jb, err := s.Job(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, JobUnknown, jb.State)
	// The old claim of a is fenced off.
	assert.ErrorIs(t, s.Complete(ctx, a.ID, ca.ClaimToken, nil), ErrLeaseLost)

	// Operator resolution of b: requeue gives a new attempt with a new ID.
	assert.ErrorIs(t, s.Resolve(ctx, a.ID, ResolveRequeue, "op"), ErrNotFound, "only unknown/dead jobs")
	require.NoError(t, s.Resolve(ctx, b.ID, ResolveRequeue, "operator checked LSP log"))
	c2, err := s.Claim(ctx, "w4", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, b.ID, c2.ID)
	att, err := s.BeginSend(ctx, c2.ID, c2.ClaimToken)
	require.NoError(t, err)
	assert.Equal(t, 2, att.N)
	assert.NotEqual(t, jb.AttemptID, att.ID)

	// A worker that did send but finishes after recovery still completes.
	clk.Add(2 * time.Minute)
	_, unknown, err = s.RecoverLeases(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), unknown)
	require.NoError(t, s.Complete(ctx, c2.ID, c2.ClaimToken, []byte("late answer")))
	jb, err = s.Job(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, JobDone, jb.State)
	assert.Equal(t, []byte("late answer"), jb.Result)
}

func testQueueConcurrentClaim(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	dsn := newDSN(t)
	clk := newClock()
	replicas := []*sqlStore{openStore(t, dsn, clk), openStore(t, dsn, clk)}
	const jobs = 40
	for i := range jobs {
		_, _, err := replicas[0].Enqueue(ctx, JobSpec{IdempotencyKey: fmt.Sprintf("job-%d", i), Kind: "k"})
		require.NoError(t, err)
	}
	var mu sync.Mutex
	sent := map[string]int{}
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := replicas[w%2]
			for {
				c, err := s.Claim(ctx, fmt.Sprintf("w%d", w), time.Minute)
				if errors.Is(err, ErrNoJob) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				if _, err := s.BeginSend(ctx, c.ID, c.ClaimToken); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				sent[c.ID]++
				mu.Unlock()
				if err := s.Complete(ctx, c.ID, c.ClaimToken, []byte("ok")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Len(t, sent, jobs)
	for id, n := range sent {
		assert.Equal(t, 1, n, "job %s sent %d times", id, n)
	}
}

func testMetrics(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	reg := prometheus.NewRegistry()
	s, err := Open(ctx, newDSN(t), Options{Now: clk.Now, Logger: quietLogger(), Registerer: reg})
	require.NoError(t, err)
	defer s.Close()
	_, _, err = s.Enqueue(ctx, JobSpec{IdempotencyKey: "m1", Kind: "k"})
	require.NoError(t, err)
	_, _, err = s.Enqueue(ctx, JobSpec{IdempotencyKey: "m2", Kind: "k"})
	require.NoError(t, err)
	_, err = s.Claim(ctx, "w", time.Minute)
	require.NoError(t, err)
	_, err = s.Append(ctx, auditRec(1))
	require.NoError(t, err)
	want := `
# HELP aortagw_store_queue_jobs Trigger jobs per state in the shared queue.
# TYPE aortagw_store_queue_jobs gauge
aortagw_store_queue_jobs{state="claimed"} 1
aortagw_store_queue_jobs{state="dead"} 0
aortagw_store_queue_jobs{state="done"} 0
aortagw_store_queue_jobs{state="queued"} 1
aortagw_store_queue_jobs{state="sending"} 0
aortagw_store_queue_jobs{state="unknown"} 0
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "aortagw_store_queue_jobs"))
	n, err := testutil.GatherAndCount(reg, "aortagw_store_audit_append_seconds")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
	_, err = s.Append(ctx, auditRec(2))
	assert.ErrorIs(t, err, ErrClosed)
}

// testQueueIdleClaimRecovers: a Claim that finds no due job still commits
// the lease recovery it ran first (it used to roll it back, so an expired
// sending lease stayed "sending" until some other job was due).
func testQueueIdleClaimRecovers(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	a, _, err := s.Enqueue(ctx, JobSpec{IdempotencyKey: "a", Kind: "k"})
	require.NoError(t, err)
	ca, err := s.Claim(ctx, "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, a.ID, ca.ID)
	_, err = s.BeginSend(ctx, ca.ID, ca.ClaimToken)
	require.NoError(t, err)

	clk.Add(2 * time.Minute) // w1 died while sending
	_, err = s.Claim(ctx, "w2", time.Minute)
	assert.ErrorIs(t, err, ErrNoJob)
	ja, err := s.Job(ctx, a.ID)
	require.NoError(t, err)
	assert.Equal(t, JobUnknown, ja.State, "recovery by an idle Claim is committed")
	depth, err := s.QueueDepth(ctx)
	require.NoError(t, err)
	assert.Zero(t, depth[JobSending])
}

package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHotLookups pins the semantics of the per-message look-ups
// (FindEnrolment, ActorBlocked, FindMandate), which run as prepared single
// statements without a read transaction, on every backend.
func TestHotLookups(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Run("FindMandateSemantics", func(t *testing.T) { testFindMandateSemantics(t, b.newDSN) })
			t.Run("BlockSeenAtOnce", func(t *testing.T) { testBlockSeenAtOnce(t, b.newDSN) })
			t.Run("Concurrent", func(t *testing.T) { testHotConcurrent(t, b.newDSN) })
			t.Run("AfterClose", func(t *testing.T) { testHotAfterClose(t, b.newDSN) })
		})
	}
}

// testCtxURI is the autorisatieregel/context of the mandate fixture.
const testCtxURI = "https://ziekenhuis.nl/autorisatieregels/medicatiecontext/v2"

func hotQuery(giver, actor string, at time.Time) MandateQuery {
	return MandateQuery{URA: "12345678", GiverUZI: giver, Context: testCtxURI, ApplicationID: "urn:app:hix",
		Actor: actor, At: at}
}

func testFindMandateSemantics(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	now := clk.Now()

	// Giver 900000001: an older mandate, a newer one that gets revoked, and
	// two with the same issue instant (the later registration wins).
	odd := []string{"900000111", `urn:x:"quoted"\back`, "naïve\nline", "urn:oid:2.16.840.1.113883.2.4.6.6:app"}
	require.NoError(t, s.RegisterMandate(ctx, mandate("_old", "900000001", odd,
		now.Add(-48*time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))
	require.NoError(t, s.RegisterMandate(ctx, mandate("_new", "900000001", []string{"900000111"},
		now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))
	// Giver 900000002: no actors at all; valid until exactly now+1h.
	require.NoError(t, s.RegisterMandate(ctx, mandate("_noactors", "900000002", nil,
		now.Add(-time.Hour), now.Add(time.Hour), now.AddDate(1, 0, 0))))
	// Giver 900000003: same issue instant, registered one after the other.
	require.NoError(t, s.RegisterMandate(ctx, mandate("_tie-a", "900000003", []string{"900000111"},
		now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))
	clk.Add(time.Second)
	require.NoError(t, s.RegisterMandate(ctx, mandate("_tie-b", "900000003", []string{"900000111"},
		now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))

	m, err := s.FindMandate(ctx, hotQuery("900000001", "900000111:01.015", now))
	require.NoError(t, err)
	assert.Equal(t, "_new", m.ID, "newest issue instant wins")
	assert.Equal(t, []string{"900000111"}, m.Mandated)
	assert.Nil(t, m.Revocation)
	assert.Equal(t, []byte(`<saml:Assertion ID="_new"/>`), m.Raw)
	assert.Equal(t, "01.015", m.GiverRole)
	assert.Equal(t, micro(now.Add(-time.Hour)), m.NotBefore)
	assert.Equal(t, micro(now), m.RegisteredAt)

	// A revoked mandate is never returned: the older one takes its place,
	// with its actors byte for byte, sorted as before.
	require.NoError(t, s.Revoke(ctx, "_new", "stolen card", "security officer"))
	m, err = s.FindMandate(ctx, hotQuery("900000001", "900000111:01.015", now))
	require.NoError(t, err)
	assert.Equal(t, "_old", m.ID)
	want, err := s.GetToken(ctx, "_old")
	require.NoError(t, err)
	assert.Equal(t, want.Mandated, m.Mandated, "same actors, same order as GetToken")
	assert.ElementsMatch(t, odd, m.Mandated)
	// Only the older mandate names this actor now; the revoked one does not count.
	m, err = s.FindMandate(ctx, hotQuery("900000001", "naïve\nline", now))
	require.NoError(t, err)
	assert.Equal(t, "_old", m.ID)
	require.NoError(t, s.Revoke(ctx, "_old", "leaver", "iam"))
	_, err = s.FindMandate(ctx, hotQuery("900000001", "900000111", now))
	assert.ErrorIs(t, err, ErrNotFound)

	// Same issue instant: the later registration wins.
	m, err = s.FindMandate(ctx, hotQuery("900000003", "900000111", now))
	require.NoError(t, err)
	assert.Equal(t, "_tie-b", m.ID)

	// No actor in the query skips the actor check; a mandate without actors
	// comes back with Mandated nil; valid_until is exclusive.
	m, err = s.FindMandate(ctx, hotQuery("900000002", "", now))
	require.NoError(t, err)
	assert.Equal(t, "_noactors", m.ID)
	assert.Nil(t, m.Mandated)
	_, err = s.FindMandate(ctx, hotQuery("900000002", "900000111", now))
	assert.ErrorIs(t, err, ErrNotFound, "an actor is asked for but none is mandated")
	_, err = s.FindMandate(ctx, hotQuery("900000002", "", now.Add(time.Hour)))
	assert.ErrorIs(t, err, ErrNotFound, "at valid_until the mandate has ended")
	_, err = s.FindMandate(ctx, hotQuery("900000002", "", now.Add(time.Hour-time.Microsecond)))
	require.NoError(t, err)

	// A blocked giver or actor is refused even when no mandate matches, and
	// blocked wins over not found.
	require.NoError(t, s.BlockActor(ctx, "900000009", "suspended"))
	_, err = s.FindMandate(ctx, hotQuery("900000009", "", now))
	assert.ErrorIs(t, err, ErrActorBlocked, "blocked giver without any mandate")
	assert.EqualError(t, err, "store: actor blocked (giver=900000009 actor=)")
	_, err = s.FindMandate(ctx, hotQuery("900000002", "900000009:01.015", now))
	assert.ErrorIs(t, err, ErrActorBlocked, "blocked actor not mandated at all")
	assert.EqualError(t, err, "store: actor blocked (giver=900000002 actor=900000009:01.015)")
	_, err = s.FindMandate(ctx, hotQuery("900000001", "900000009", now))
	assert.ErrorIs(t, err, ErrActorBlocked, "bare UZI actor")
	_, err = s.FindMandate(ctx, hotQuery("900000042", "", now))
	assert.ErrorIs(t, err, ErrNotFound)
	assert.NotErrorIs(t, err, ErrActorBlocked)
	assert.EqualError(t, err, "store: not found: no covering mandate (giver=900000042 context="+testCtxURI+")")

	blocked, err := s.ActorBlocked(ctx, "900000009")
	require.NoError(t, err)
	assert.True(t, blocked)
	blocked, err = s.ActorBlocked(ctx, "900000001")
	require.NoError(t, err)
	assert.False(t, blocked)
}

// testBlockSeenAtOnce: nothing is cached by the prepared statements: a block,
// an unblock or a revocation committed by one replica is seen by the very
// next look-up of the other, and of itself.
func testBlockSeenAtOnce(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	dsn := newDSN(t)
	clk := newClock()
	a := openStore(t, dsn, clk)
	b := openStore(t, dsn, clk)
	now := clk.Now()
	require.NoError(t, a.RegisterMandate(ctx, mandate("_mb", "900000001", []string{"900000111"},
		now.Add(-time.Hour), now.AddDate(0, 1, 0), now.AddDate(1, 0, 0))))
	require.NoError(t, a.RegisterEnrolment(ctx, enrolment("_eb", "12345678", "999990019",
		now.Add(-time.Hour), now.AddDate(1, 0, 0))))
	q := hotQuery("900000001", "900000111:01.015", now)
	for _, s := range []*sqlStore{a, b} { // warm the prepared statements on both
		_, err := s.FindMandate(ctx, q)
		require.NoError(t, err)
		_, err = s.FindEnrolment(ctx, "12345678", "999990019", now)
		require.NoError(t, err)
	}
	for _, who := range []string{"900000111", "900000001"} {
		require.NoError(t, a.BlockActor(ctx, who, "leaver"))
		for _, s := range []*sqlStore{a, b} {
			_, err := s.FindMandate(ctx, q)
			assert.ErrorIs(t, err, ErrActorBlocked, "blocked %s", who)
			blocked, err := s.ActorBlocked(ctx, who)
			require.NoError(t, err)
			assert.True(t, blocked)
		}
		require.NoError(t, b.UnblockActor(ctx, who, "re-joiner"))
		for _, s := range []*sqlStore{a, b} {
			_, err := s.FindMandate(ctx, q)
			require.NoError(t, err, "unblocked %s", who)
			blocked, err := s.ActorBlocked(ctx, who)
			require.NoError(t, err)
			assert.False(t, blocked)
		}
	}
	require.NoError(t, b.Revoke(ctx, "_eb", "consent withdrawn", "admin"))
	_, err := a.FindEnrolment(ctx, "12345678", "999990019", now)
	assert.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, b.Revoke(ctx, "_mb", "stolen card", "admin"))
	_, err = a.FindMandate(ctx, q)
	assert.ErrorIs(t, err, ErrNotFound)
}

// testHotConcurrent runs the shared prepared statements from many goroutines
// (for -race) while another blocks and unblocks an unrelated actor.
func testHotConcurrent(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	now := clk.Now()
	for i := range 4 {
		require.NoError(t, s.RegisterMandate(ctx, mandate(fmt.Sprintf("_mc%d", i), fmt.Sprintf("90000000%d", i),
			[]string{fmt.Sprintf("91000000%d", i)}, now.Add(-time.Hour), now.AddDate(1, 0, 0), now.AddDate(1, 0, 0))))
		require.NoError(t, s.RegisterEnrolment(ctx, enrolment(fmt.Sprintf("_ec%d", i), "12345678",
			fmt.Sprintf("99999000%d", i), now.Add(-time.Hour), now.AddDate(1, 0, 0))))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for g := range 8 {
		wg.Go(func() {
			for j := range 50 {
				i := (g + j) % 4
				m, err := s.FindMandate(ctx, hotQuery(fmt.Sprintf("90000000%d", i), fmt.Sprintf("91000000%d:01.015", i), now))
				if err != nil || m.ID != fmt.Sprintf("_mc%d", i) {
					errs <- fmt.Errorf("find mandate %d: %v %v", i, m, err)
					return
				}
				if e, err := s.FindEnrolment(ctx, "12345678", fmt.Sprintf("99999000%d", i), now); err != nil || e.ID != fmt.Sprintf("_ec%d", i) {
					errs <- fmt.Errorf("find enrolment %d: %v", i, err)
					return
				}
				if _, err := s.ActorBlocked(ctx, "919999999"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := s.BlockActor(ctx, "919999999", "x"); err != nil {
				errs <- err
				return
			}
			if err := s.UnblockActor(ctx, "919999999", "x"); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testHotAfterClose: the look-ups fail cleanly (no panic) after Close.
func testHotAfterClose(t *testing.T, newDSN func(*testing.T) string) {
	ctx := context.Background()
	clk := newClock()
	s := openStore(t, newDSN(t), clk)
	now := clk.Now()
	_, err := s.FindMandate(ctx, hotQuery("900000001", "900000111", now))
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Close())
	_, err = s.FindMandate(ctx, hotQuery("900000001", "900000111", now))
	assert.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	_, err = s.FindEnrolment(ctx, "12345678", "999990019", now)
	assert.Error(t, err)
	assert.NotErrorIs(t, err, ErrNotFound)
	_, err = s.ActorBlocked(ctx, "900000111")
	assert.Error(t, err)
}

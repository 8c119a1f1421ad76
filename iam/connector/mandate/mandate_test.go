package mandate_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/internal/authoritytest"
	"github.com/aortagw/aortagw/iam/store"
)

func TestMandateConnector(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }
	auth, err := authoritytest.Open(ctx, filepath.Join(dir, "gw.db"), now)
	require.NoError(t, err)
	defer auth.Close()
	st, err := store.Open(ctx, filepath.Join(dir, "iam.db"))
	require.NoError(t, err)
	defer st.Close()
	c, err := mandate.New("mandates", auth, st, now)
	require.NoError(t, err)
	require.NoError(t, auth.AddMandate(ctx, "m1", "123456782", "987654321"))
	require.NoError(t, auth.AddMandate(ctx, "m2", "123456782", "111111110"))

	// a block placed by somebody else (security officer) is never lifted by create
	require.NoError(t, auth.BlockActor(ctx, "555555555", "security officer"))
	_, err = c.CreateOrCorrelate(ctx, iam.AccountRequest{Key: "555555555"})
	require.NoError(t, err)
	b, err := auth.Blocked(ctx, "555555555")
	require.NoError(t, err)
	assert.True(t, b)

	tests := []struct {
		name string
		uzi  string
	}{{"too short", "12345"}, {"letters", "12345678x"}, {"empty", ""}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Disable(ctx, iam.AccountRequest{Ref: tc.uzi})
			assert.ErrorIs(t, err, iam.ErrInvalid)
		})
	}

	req := iam.AccountRequest{Ref: "123456782", Reason: "leaver", DryRun: true}
	_, err = c.Disable(ctx, req)
	require.NoError(t, err)
	n, err := auth.ValidMandates(ctx, "123456782")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "dry run revoked mandates")

	req.DryRun = false
	res, err := c.Disable(ctx, req)
	require.NoError(t, err)
	assert.Contains(t, res.Audit[0], "revoked 2 mandates")
	n, err = auth.ValidMandates(ctx, "123456782")
	require.NoError(t, err)
	assert.Zero(t, n)
	res, err = c.Disable(ctx, req)
	require.NoError(t, err)
	assert.True(t, res.NoChange, "idempotent")

	accs, err := c.Lookup(ctx, "123456782")
	require.NoError(t, err)
	require.Len(t, accs, 1)
	assert.False(t, accs[0].Enabled)

	_, err = c.Enable(ctx, req)
	require.NoError(t, err)
	b, err = auth.Blocked(ctx, "123456782")
	require.NoError(t, err)
	assert.False(t, b, "re-joiner unblocked")
	n, err = auth.ValidMandates(ctx, "123456782")
	require.NoError(t, err)
	assert.Zero(t, n, "revoked mandates stay revoked: the caregiver signs new ones")

	_, err = c.Delete(ctx, req)
	assert.ErrorIs(t, err, iam.ErrUnsupported)
}

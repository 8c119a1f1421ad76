package directory_test

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/directory"
)

func TestDeregistrationAndDueList(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0).UTC() }
	sim := directory.NewSimulator(clock)
	hs := httptest.NewServer(sim)
	defer hs.Close()
	c, err := directory.New(directory.Config{Name: "hsa", BaseURL: hs.URL, Organisation: "12345678", HTTPClient: hs.Client()})
	require.NoError(t, err)
	ctx := context.Background()
	req := iam.AccountRequest{Key: "123456782", Attributes: map[string]string{"displayName": "Anna"}, Reason: "leaver"}

	dry := req
	dry.DryRun = true
	_, err = c.CreateOrCorrelate(ctx, dry)
	require.NoError(t, err)
	_, ok := sim.Role("123456782")
	assert.False(t, ok, "dry run registered")

	_, err = c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	req.Ref = "123456782"
	due, err := c.Due(ctx, clock())
	require.NoError(t, err)
	assert.Empty(t, due)

	now.Add(int64(92 * 24 * time.Hour / time.Second))
	due, err = c.Due(ctx, clock())
	require.NoError(t, err)
	require.Len(t, due, 1, "quarterly confirmation due")
	require.NoError(t, c.ConfirmEmployment(ctx, "123456782"))
	due, err = c.Due(ctx, clock())
	require.NoError(t, err)
	assert.Empty(t, due)

	_, err = c.Disable(ctx, req)
	require.NoError(t, err)
	r, _ := sim.Role("123456782")
	assert.False(t, r.Active)
	res, err := c.Disable(ctx, req)
	require.NoError(t, err)
	assert.True(t, res.NoChange, "deregistering twice is a no-op")
	_, err = c.Delete(ctx, req)
	assert.ErrorIs(t, err, iam.ErrUnsupported)
	_, err = c.CreateOrCorrelate(ctx, iam.AccountRequest{Key: "12"})
	assert.Error(t, err, "the directory refuses a malformed UZI number")
}

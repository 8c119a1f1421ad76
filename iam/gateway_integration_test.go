package iam_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	gwstore "github.com/aortagw/aortagw/gateway/store"
	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/mandate"
	"github.com/aortagw/aortagw/iam/store"
)

var _ iam.MandateAuthority = gwstore.Store(nil)

// TestLeaverRevokesMandatesInGatewayStore runs the leaver path against the
// gateway's own store: after the event the gateway finds no mandate for the
// leaver, as giver or as mandated actor.
func TestLeaverRevokesMandatesInGatewayStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := newClock(t0)
	gw, err := gwstore.Open(ctx, "sqlite:"+filepath.Join(dir, "gateway.db"), gwstore.Options{Now: clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { _ = gw.Close() })
	m := gwstore.Mandate{ID: "_m1", Issuer: "CN=test", URA: "12345678", GiverUZI: "123456782", GiverRole: "01.015",
		Mandated: []string{"987654321"}, ApplicationID: "xis", Context: "urn:ctx", IssueInstant: t0.Add(-time.Hour),
		NotBefore: t0.Add(-time.Hour), NotOnOrAfter: t0.AddDate(0, 6, 0), CertNotAfter: t0.AddDate(1, 0, 0), Raw: []byte("<saml:Assertion/>"), RegisteredBy: "test"}
	require.NoError(t, gw.RegisterMandate(ctx, m))
	q := gwstore.MandateQuery{URA: "12345678", GiverUZI: "123456782", Context: "urn:ctx", ApplicationID: "xis", Actor: "987654321", At: t0}
	_, err = gw.FindMandate(ctx, q)
	require.NoError(t, err, "mandate valid before the leave")

	st, err := store.Open(ctx, filepath.Join(dir, "iam.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	mc, err := mandate.New("mandates", gw, st, clk.Now)
	require.NoError(t, err)
	eng, err := iam.New(iam.Config{
		Rules:   []iam.Rule{{Name: "uzi-holders", Entitlements: []iam.Entitlement{{Target: "mandates"}}}},
		Targets: []iam.TargetConfig{{Name: "mandates", CorrelationField: "uzi", RequiredFields: []string{"uzi"}}},
	}, st, []iam.Connector{mc}, iam.Options{Now: clk.Now, NewID: ids()})
	require.NoError(t, err)
	p := iam.Person{ID: "p1", Email: "a@z.test", EmployeeNumber: "1", UZI: "123456782", Contracts: []iam.Contract{{ID: "c", Start: day(-100)}}}
	_, err = eng.Import(ctx, "hr", []iam.Person{p}, "test")
	require.NoError(t, err)
	_, err = eng.SyncPerson(ctx, "p1", iam.Origin{Kind: iam.OriginPersonChange}, iam.RunOptions{})
	require.NoError(t, err)
	_, err = gw.FindMandate(ctx, q)
	require.NoError(t, err, "a joiner/active person keeps the mandate")

	_, err = eng.EndContracts(ctx, "hr", "p1", day(-1), "webhook")
	require.NoError(t, err)
	res, err := eng.SyncPerson(ctx, "p1", iam.Origin{Kind: iam.OriginPersonChange}, iam.RunOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Failed())
	_, err = gw.FindMandate(ctx, q)
	assert.True(t, errors.Is(err, gwstore.ErrActorBlocked) || errors.Is(err, gwstore.ErrNotFound), "gateway still honours the leaver's mandate: %v", err)
	blocked, err := gw.ActorBlocked(ctx, "123456782")
	require.NoError(t, err)
	assert.True(t, blocked)
	info, err := gw.GetToken(ctx, "_m1")
	require.NoError(t, err)
	assert.NotNil(t, info)
}

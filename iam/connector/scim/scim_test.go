package scim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/scim"
	"github.com/aortagw/aortagw/iam/internal/scimtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*scim.Connector, *scimtest.Server) {
	t.Helper()
	srv := scimtest.New("s3cret")
	srv.RequireIfMatch = true
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c, err := scim.New(scim.Config{Name: "ysis", BaseURL: hs.URL, Token: "s3cret", HTTPClient: hs.Client(), PageSize: 2})
	require.NoError(t, err)
	return c, srv
}

func TestLifecycleAgainstStrictServer(t *testing.T) {
	c, srv := setup(t)
	ctx := context.Background()
	p := &iam.Person{ID: "p1"}
	req := iam.AccountRequest{Key: "anna@zorg.test", Person: p, Enabled: true,
		Attributes: map[string]string{"givenName": "Anna", "familyName": "Jansen", "displayName": "Anna Jansen", "email": "anna@zorg.test", "department": "Cardiologie", "employeeNumber": "1001"}}

	dry := req
	dry.DryRun = true
	_, err := c.CreateOrCorrelate(ctx, dry)
	require.NoError(t, err)
	assert.Empty(t, srv.Users(), "dry run created a user")

	res, err := c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	require.NotEmpty(t, res.Ref)
	req.Ref = res.Ref
	res2, err := c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	assert.True(t, res2.Correlated)
	assert.Equal(t, res.Ref, res2.Ref)

	_, err = c.Grant(ctx, req, "Ysis-Behandelaar")
	require.NoError(t, err)
	r, err := c.Grant(ctx, req, "Ysis-Behandelaar")
	require.NoError(t, err)
	assert.True(t, r.NoChange)
	g, ok := srv.Group("Ysis-Behandelaar")
	require.True(t, ok)
	assert.Len(t, g.Members, 1)

	upd := req
	upd.Attributes = map[string]string{"department": "Longziekten", "email": "a.jansen@zorg.test"}
	_, err = c.Update(ctx, upd)
	require.NoError(t, err)
	u := srv.Users()[0]
	assert.Equal(t, "Longziekten", u.Enterprise.Department)
	assert.Equal(t, "a.jansen@zorg.test", u.Emails[0].Value)

	writes := srv.WriteCount()
	dd := req
	dd.DryRun = true
	_, err = c.Disable(ctx, dd)
	require.NoError(t, err)
	assert.Equal(t, writes, srv.WriteCount(), "dry-run disable wrote")
	_, err = c.Disable(ctx, req)
	require.NoError(t, err)
	assert.False(t, *srv.Users()[0].Active)
	r, err = c.Disable(ctx, req)
	require.NoError(t, err)
	assert.True(t, r.NoChange)

	accs, err := c.ImportAll(ctx)
	require.NoError(t, err)
	require.Len(t, accs, 1)
	assert.False(t, accs[0].Enabled)
	assert.Equal(t, []string{"Ysis-Behandelaar"}, accs[0].Permissions)

	_, err = c.Revoke(ctx, req, "Ysis-Behandelaar")
	require.NoError(t, err)
	g, _ = srv.Group("Ysis-Behandelaar")
	assert.Empty(t, g.Members)

	_, err = c.Delete(ctx, req)
	require.NoError(t, err)
	assert.Empty(t, srv.Users())
	r, err = c.Delete(ctx, req)
	require.NoError(t, err)
	assert.True(t, r.NoChange)
}

func TestHonoursRetryAfter(t *testing.T) {
	c, srv := setup(t)
	srv.ThrottleEvery = 3
	ctx := context.Background()
	for _, k := range []string{"a@z.test", "b@z.test", "c@z.test"} {
		_, err := c.CreateOrCorrelate(ctx, iam.AccountRequest{Key: k, Enabled: true, Attributes: map[string]string{}})
		require.NoError(t, err)
	}
	assert.Len(t, srv.Users(), 3)
	assert.Zero(t, srv.Violations(), "client came back before Retry-After")
}

func TestStrictServerRejectsOtherFilters(t *testing.T) {
	// the connector's lookups must stay inside what strict targets support
	c, _ := setup(t)
	_, err := c.Lookup(context.Background(), `x" or userName pr or userName eq "y`)
	require.NoError(t, err, "escaped quote keeps the filter a single eq")
}

func TestETagConflictIsReReadOnce(t *testing.T) {
	c, srv := setup(t)
	ctx := context.Background()
	res, err := c.CreateOrCorrelate(ctx, iam.AccountRequest{Key: "e@z.test", Enabled: true, Attributes: map[string]string{"displayName": "E"}})
	require.NoError(t, err)
	req := iam.AccountRequest{Ref: res.Ref, Key: "e@z.test"}

	srv.ChangeAfterGet = 1 // someone changes the user between our GET and PATCH
	_, err = c.Disable(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, 1, srv.PreconditionFailed)
	assert.False(t, *srv.Users()[0].Active)

	srv.ChangeAfterGet = 5 // keeps changing: give up as transient, never write blind
	_, err = c.Enable(ctx, req)
	assert.ErrorIs(t, err, iam.ErrTransient)
	assert.False(t, *srv.Users()[0].Active)
}

// raceGroupCreate lets "another replica" create the group just before the
// connector's own POST /Groups reaches the server, so that POST gets a 409.
type raceGroupCreate struct {
	next  http.Handler
	group string
	once  sync.Once
}

func (h *raceGroupCreate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/Groups" {
		h.once.Do(func() {
			body := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"` + h.group + `"}`
			other := httptest.NewRequest(http.MethodPost, "/Groups", strings.NewReader(body))
			other.Header = r.Header.Clone()
			h.next.ServeHTTP(httptest.NewRecorder(), other)
		})
	}
	h.next.ServeHTTP(w, r)
}

func TestGrantWhenGroupIsCreatedConcurrently(t *testing.T) {
	srv := scimtest.New("s3cret")
	hs := httptest.NewServer(&raceGroupCreate{next: srv, group: "Ysis-Arts"})
	t.Cleanup(hs.Close)
	c, err := scim.New(scim.Config{Name: "ysis", BaseURL: hs.URL, Token: "s3cret", HTTPClient: hs.Client()})
	require.NoError(t, err)
	ctx := context.Background()
	req := iam.AccountRequest{Key: "bram@zorg.test", Person: &iam.Person{ID: "p2"}, Enabled: true,
		Attributes: map[string]string{"givenName": "Bram", "familyName": "de Vries", "displayName": "Bram de Vries", "email": "bram@zorg.test"}}
	res, err := c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	req.Ref = res.Ref

	_, err = c.Grant(ctx, req, "Ysis-Arts")
	require.NoError(t, err, "a group created concurrently must not fail the grant")
	g, ok := srv.Group("Ysis-Arts")
	require.True(t, ok)
	require.Len(t, g.Members, 1, "the member must be added to the concurrently created group")
	assert.Equal(t, req.Ref, g.Members[0].Value)
}

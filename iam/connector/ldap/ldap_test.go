package ldap_test

import (
	"context"
	"errors"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/ldap"
	"github.com/aortagw/aortagw/iam/internal/slapdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newConn(t *testing.T) (*ldap.Connector, *slapdtest.Server) {
	t.Helper()
	s := slapdtest.Start(t)
	c, err := ldap.New(ldap.Config{Name: "ad", URL: s.URL, BindDN: s.RootDN, Password: s.Password,
		PeopleDN: s.PeopleDN, DisabledDN: s.DisabledDN, GroupsDN: s.GroupsDN})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, s
}

// raw reads the directory with an independent connection.
func raw(t *testing.T, s *slapdtest.Server, base, filter string) []*goldap.Entry {
	t.Helper()
	conn, err := goldap.DialURL(s.URL)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Bind(s.RootDN, s.Password))
	res, err := conn.Search(goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, []string{"*"}, nil))
	require.NoError(t, err)
	return res.Entries
}

func TestLifecycleAgainstSlapd(t *testing.T) {
	c, s := newConn(t)
	ctx := context.Background()
	attrs := map[string]string{"givenName": "Anna", "familyName": "Jansen", "displayName": "Anna Jansen", "email": "anna@zorg.test", "function": "Verpleegkundige", "department": "Cardiologie", "location": "Utrecht"}
	req := iam.AccountRequest{Key: "1001", Attributes: attrs, Enabled: true}

	// dry run: runs the searches, writes nothing
	dr := req
	dr.DryRun = true
	res, err := c.CreateOrCorrelate(ctx, dr)
	require.NoError(t, err)
	assert.Equal(t, "1001", res.Ref)
	assert.Empty(t, raw(t, s, s.Suffix, "(employeeNumber=1001)"), "dry run must not write")

	res, err = c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	assert.False(t, res.Correlated)
	es := raw(t, s, s.PeopleDN, "(employeeNumber=1001)")
	require.Len(t, es, 1)
	assert.Equal(t, "anna@zorg.test", es[0].GetAttributeValue("mail"))

	// idempotent: a second create correlates
	res, err = c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	assert.True(t, res.Correlated)

	req.Ref = "1001"
	_, err = c.Grant(ctx, req, "EPD-Verpleging")
	require.NoError(t, err)
	res, err = c.Grant(ctx, req, "EPD-Verpleging")
	require.NoError(t, err)
	assert.True(t, res.NoChange, "second grant is a no-op")

	accs, err := c.Lookup(ctx, "1001")
	require.NoError(t, err)
	require.Len(t, accs, 1)
	assert.True(t, accs[0].Enabled)
	assert.Equal(t, []string{"EPD-Verpleging"}, accs[0].Permissions)
	assert.Equal(t, "Cardiologie", accs[0].Attributes["department"])

	req.Attributes = map[string]string{"department": "Longziekten", "email": ""}
	_, err = c.Update(ctx, req)
	require.NoError(t, err)
	es = raw(t, s, s.PeopleDN, "(employeeNumber=1001)")
	require.Len(t, es, 1)
	assert.Equal(t, "Longziekten", es[0].GetAttributeValue("departmentNumber"))
	assert.Empty(t, es[0].GetAttributeValue("mail"))

	// disable in dry run leaves the entry where it is
	dd := req
	dd.DryRun = true
	_, err = c.Disable(ctx, dd)
	require.NoError(t, err)
	assert.Len(t, raw(t, s, s.PeopleDN, "(uid=1001)"), 1)

	_, err = c.Disable(ctx, req)
	require.NoError(t, err)
	assert.Empty(t, raw(t, s, s.PeopleDN, "(uid=1001)"))
	assert.Len(t, raw(t, s, s.DisabledDN, "(uid=1001)"), 1)
	// membership followed the move
	assert.Len(t, raw(t, s, s.GroupsDN, "(member=uid=1001,"+s.DisabledDN+")"), 1)
	res, err = c.Disable(ctx, req)
	require.NoError(t, err)
	assert.True(t, res.NoChange)

	_, err = c.Enable(ctx, req)
	require.NoError(t, err)
	assert.Len(t, raw(t, s, s.PeopleDN, "(uid=1001)"), 1)

	_, err = c.Revoke(ctx, req, "EPD-Verpleging")
	require.NoError(t, err)
	assert.Empty(t, raw(t, s, s.GroupsDN, "(member=uid=1001,"+s.PeopleDN+")"))
	res, err = c.Revoke(ctx, req, "EPD-Verpleging")
	require.NoError(t, err)
	assert.True(t, res.NoChange)

	all, err := c.ImportAll(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	perms, err := c.ListPermissions(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"EPD-Verpleging"}, perms)

	_, err = c.Delete(ctx, req)
	require.NoError(t, err)
	assert.Empty(t, raw(t, s, s.Suffix, "(uid=1001)"))
	res, err = c.Delete(ctx, req)
	require.NoError(t, err)
	assert.True(t, res.NoChange)
}

func TestMultipleFoundIsAnError(t *testing.T) {
	c, s := newConn(t)
	ctx := context.Background()
	conn, err := goldap.DialURL(s.URL)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Bind(s.RootDN, s.Password))
	for _, uid := range []string{"ajansen", "a.jansen"} {
		add := goldap.NewAddRequest("uid="+uid+","+s.PeopleDN, nil)
		add.Attribute("objectClass", []string{"inetOrgPerson"})
		add.Attribute("cn", []string{"Anna"})
		add.Attribute("sn", []string{"Jansen"})
		add.Attribute("employeeNumber", []string{"2002"})
		require.NoError(t, conn.Add(add))
	}
	_, err = c.CreateOrCorrelate(ctx, iam.AccountRequest{Key: "2002", Enabled: true})
	assert.True(t, errors.Is(err, iam.ErrMultipleFound), "got %v", err)
}

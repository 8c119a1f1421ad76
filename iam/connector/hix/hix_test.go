package hix_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/aortagw/aortagw/iam"
	"github.com/aortagw/aortagw/iam/connector/hix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T) (*hix.Connector, *hix.Simulator) {
	t.Helper()
	sim := hix.NewSimulator("VPK", "ARTS", "ASS")
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	c, err := hix.New(hix.Config{Name: "hix", BaseURL: hs.URL, HTTPClient: hs.Client(),
		Functions: map[string]string{"Verpleegkundige": "VPK", "Arts": "ARTS", "Zorgassistent": "ASS"}})
	require.NoError(t, err)
	return c, sim
}

func TestEmployeeType(t *testing.T) {
	no, yes := false, true
	tests := []struct {
		name   string
		p      *iam.Person
		active bool
		want   string
	}{
		{"regular", &iam.Person{Trained: &yes}, true, "MW"},
		{"unknown training counts as regular", &iam.Person{}, true, "MW"},
		{"untrained", &iam.Person{Trained: &no}, true, "GS"},
		{"regular leaver", &iam.Person{}, false, "MWU"},
		{"untrained leaver", &iam.Person{Trained: &no}, false, "GSU"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, hix.EmployeeType(tc.p, tc.active))
		})
	}
}

func TestLifecycleAgainstStrictSimulator(t *testing.T) {
	c, sim := setup(t)
	ctx := context.Background()
	no := false
	p := &iam.Person{ID: "p1", Trained: &no}
	req := iam.AccountRequest{Key: "1001", Person: p, Enabled: true, Attributes: map[string]string{"displayName": "Anna Jansen", "email": "a@z.test", "function": "Zorgassistent"}}

	dry := req
	dry.DryRun = true
	_, err := c.CreateOrCorrelate(ctx, dry)
	require.NoError(t, err)
	assert.Empty(t, sim.Accounts())

	res, err := c.CreateOrCorrelate(ctx, req)
	require.NoError(t, err)
	req.Ref = res.Ref
	a := sim.Accounts()[0]
	assert.Equal(t, "ASS", a.FunctionCode)
	assert.Equal(t, "GS", a.EmployeeType)

	_, err = c.Grant(ctx, req, "group:EPD")
	require.NoError(t, err)
	_, err = c.Grant(ctx, req, "login:SEH")
	require.NoError(t, err)
	r, err := c.Grant(ctx, req, "login:SEH")
	require.NoError(t, err)
	assert.True(t, r.NoChange)
	_, err = c.Grant(ctx, req, "printer:x")
	assert.ErrorIs(t, err, iam.ErrInvalid)

	upd := req
	upd.Attributes = map[string]string{"function": "Kok"}
	_, err = c.Update(ctx, upd)
	assert.ErrorIs(t, err, iam.ErrInvalid, "unmapped function label is an error, not a guess")

	_, err = c.Disable(ctx, req)
	require.NoError(t, err)
	a = sim.Accounts()[0]
	assert.False(t, a.Active)
	assert.Equal(t, "GSU", a.EmployeeType)
	assert.Equal(t, []string{"EPD"}, a.Groups)
	assert.Equal(t, []string{"SEH"}, a.LoginGroups)

	_, err = c.Delete(ctx, req)
	assert.ErrorIs(t, err, iam.ErrUnsupported)
	assert.True(t, c.Capabilities().NoDelete)

	accs, err := c.ImportAll(ctx)
	require.NoError(t, err)
	require.Len(t, accs, 1)
	assert.Equal(t, []string{"group:EPD", "login:SEH"}, accs[0].Permissions)
	assert.Equal(t, "Zorgassistent", accs[0].Attributes["function"])
}

func TestConnectorSerialisesCalls(t *testing.T) {
	c, sim := setup(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CreateOrCorrelate(ctx, iam.AccountRequest{Key: string(rune('A' + i)), Enabled: true,
				Attributes: map[string]string{"displayName": "X", "function": "Arts"}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Len(t, sim.Accounts(), 8)
	assert.Zero(t, sim.Refused(), "simulator saw concurrent requests")
}

func TestSimulatorRefusesConcurrentRequests(t *testing.T) {
	sim := hix.NewSimulator("ARTS")
	sim.Delay = 50 * time.Millisecond
	hs := httptest.NewServer(sim)
	defer hs.Close()
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hs.Client().Get(hs.URL + "/accounts")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	var got []int
	for c := range codes {
		got = append(got, c)
	}
	assert.ElementsMatch(t, []int{http.StatusOK, http.StatusServiceUnavailable}, got)
	assert.Equal(t, 1, sim.Refused())

	// the connector, driven concurrently against the slow simulator, never overlaps
	c, err := hix.New(hix.Config{Name: "hix", BaseURL: hs.URL, HTTPClient: hs.Client(), Functions: map[string]string{"Arts": "ARTS"}})
	require.NoError(t, err)
	var cw sync.WaitGroup
	for i := range 3 {
		cw.Add(1)
		go func() {
			defer cw.Done()
			_, _ = c.Lookup(context.Background(), string(rune('0'+i)))
		}()
	}
	cw.Wait()
	assert.Equal(t, 1, sim.Refused(), "connector overlapped its own requests")
}

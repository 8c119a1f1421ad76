package sbvz

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gate holds the n-th OpvragenVerifieren request before the simulator sees
// it, until the client goes away; the test kills the client meanwhile.
type gate struct {
	mu      sync.Mutex
	n       int
	blockAt int
	blocked chan struct{}
}

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("SOAPAction") == `"`+ActionVerify+`"` {
			g.mu.Lock()
			g.n++
			hold := g.n == g.blockAt
			g.mu.Unlock()
			if hold {
				_, _ = io.Copy(io.Discard, r.Body) // lets net/http notice the peer closing
				close(g.blocked)
				select {
				case <-r.Context().Done():
				case <-time.After(60 * time.Second):
				}
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func fillCSV(rows [][]string) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"id", "bsn", "voornamen", "voorvoegsel", "geslachtsnaam", "geboortedatum", "geslacht", "postcode", "huisnummer"})
	_ = w.WriteAll(rows)
	return b.String()
}

func row(id string, p SimPerson, path int, verify bool) []string {
	r := []string{id, "", "", "", "", p.BirthDate[:4] + "-" + p.BirthDate[4:6] + "-" + p.BirthDate[6:], p.Sex, "", ""}
	if verify {
		r[1] = p.BSN
	}
	if path == 2 {
		r[2], r[3], r[4] = p.GivenNames, p.SurnamePrefix, p.Surname
	} else {
		r[7], r[8] = strings.ToLower(p.Address.PostalCode[:4]+" "+p.Address.PostalCode[4:]), p.Address.HouseNumber
	}
	return r
}

func TestFillKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	pki := sharedPKI(t)
	persons := Dataset(7, 8)
	g := &gate{blockAt: 6, blocked: make(chan struct{})}
	sim, srv := startSim(t, pki, SimConfig{Persons: persons}, g.wrap)

	dir := t.TempDir()
	files := map[string]string{}
	for _, f := range []string{"key", "cert", "ca", "in", "out", "state"} {
		files[f] = filepath.Join(dir, f)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pki.client.key)
	require.NoError(t, err)
	require.NoError(t, writePEM(files["key"], "PRIVATE KEY", keyDER))
	require.NoError(t, writePEM(files["cert"], "CERTIFICATE", certDER(pki.client.chain())...))
	require.NoError(t, writePEM(files["ca"], "CERTIFICATE", pki.ca.cert.Raw))

	rows := [][]string{
		row("p-found", Persona("found"), 1, false),
		row("p-twin", Persona("twin-a"), 1, false),
		row("p-secret", Persona("secret"), 2, false),
		row("p-deceased", Persona("deceased"), 2, true),
		row("p-rni", Persona("non-resident"), 2, false),
		row("p-onderzoek", Persona("onderzoek"), 1, true),
	}
	want := map[string]string{"p-found": "G", "p-twin": "F", "p-secret": "G", "p-deceased": "G", "p-rni": "G", "p-onderzoek": "G"}
	for i, p := range persons[len(Personas()):] {
		id := "gen-" + p.BSN
		rows = append(rows, row(id, p, 1+i%2, i%3 == 0))
		want[id] = "G"
	}
	bad := row("p-badbsn", Persona("found"), 2, true)
	bad[1] = "123456789"
	rows = append(rows, bad)
	want["p-badbsn"] = StatusInvalid
	asked := len(rows) - 1
	require.NoError(t, os.WriteFile(files["in"], []byte(fillCSV(rows)), 0o600))

	run := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "SBVZ_FILL_CHILD=1", "SBVZ_FILL_ENDPOINT="+srv.URL, "SBVZ_FILL_RATE=200",
			"SBVZ_FILL_KEY="+files["key"], "SBVZ_FILL_CERT="+files["cert"], "SBVZ_FILL_CA="+files["ca"],
			"SBVZ_FILL_IN="+files["in"], "SBVZ_FILL_OUT="+files["out"], "SBVZ_FILL_STATE="+files["state"])
		return cmd
	}

	// First run: killed with SIGKILL while the 6th question is in flight.
	first := run()
	var firstErr bytes.Buffer
	first.Stderr = &firstErr
	require.NoError(t, first.Start())
	select {
	case <-g.blocked:
	case <-time.After(90 * time.Second):
		_ = first.Process.Kill()
		_ = first.Wait()
		t.Fatalf("fill never reached the 6th question; stderr:\n%s", firstErr.String())
	}
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	err = first.Wait()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, syscall.SIGKILL, exitErr.Sys().(syscall.WaitStatus).Signal())
	state, err := os.ReadFile(files["state"])
	require.NoError(t, err)
	assert.Equal(t, 5, strings.Count(string(state), `"kind":"row"`), "5 rows finished before the kill")
	_, err = os.Stat(files["out"])
	assert.True(t, os.IsNotExist(err), "no output written by the killed run")

	// Second run: resumes and completes.
	second := run()
	var out bytes.Buffer
	second.Stderr = &out
	require.NoError(t, second.Run(), out.String())
	assert.Contains(t, out.String(), "5 resumed from the journal")

	seen := map[string]int{}
	var creates, deletes int
	for _, rec := range sim.Records() {
		switch rec.Operation {
		case "OpvragenVerifieren":
			q := rec.Query
			seen[q.Person.BSN+"|"+q.Person.Surname+"|"+q.Person.BirthDate+"|"+q.Address.PostalCode+"|"+q.Address.HouseNumber]++
		case "AfspraakAanmaken":
			creates++
		case "AfspraakVerwijderen":
			deletes++
		}
	}
	assert.Len(t, seen, asked, "every row asked")
	for k, n := range seen {
		assert.Equal(t, 1, n, "row asked more than once: %s", k)
	}
	assert.Equal(t, 1, creates, "afspraak made once, reused after the restart")
	assert.Equal(t, 1, deletes)
	assert.Empty(t, sim.Appointments())

	f, err := os.Open(files["out"])
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, len(rows)+1)
	got := map[string][]string{}
	for _, r := range recs[1:] {
		got[r[0]] = r
	}
	for id, status := range want {
		assert.Equal(t, status, got[id][1], "status of %s", id)
	}
	assert.Equal(t, Persona("found").BSN, got["p-found"][2])
	assert.Equal(t, "23006", got["p-twin"][3])
	assert.Equal(t, "ja", got["p-secret"][5])
	assert.Equal(t, "20240817", got["p-deceased"][6])
	assert.Equal(t, "ja", got["p-onderzoek"][7])
	assert.Equal(t, "Persoonslijst aangelegd in de RNI", got["p-rni"][8])

	// A third run asks nothing.
	before := len(sim.Records())
	third := run()
	require.NoError(t, third.Run())
	assert.Equal(t, before, len(sim.Records()))
}

// fakeFill is an in-process FillClient for journal edge cases.
type fakeFill struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (f *fakeFill) answer() (*Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &Result{Outcome: OutcomeFound, BSN: TestBSN(1), Messages: []Melding{{"G", CodeFound, "BSN gevonden"}}}, nil
}
func (f *fakeFill) Lookup(context.Context, Query) (*Result, error) { return f.answer() }
func (f *fakeFill) Verify(context.Context, Query) (*Result, error) { return f.answer() }
func (f *fakeFill) CreateAppointment(context.Context, int, string) (string, error) {
	return "A1", nil
}
func (f *fakeFill) DeleteAppointment(context.Context, string) error { return nil }

func TestFillJournal(t *testing.T) {
	dir := t.TempDir()
	in, out, state := filepath.Join(dir, "in.csv"), filepath.Join(dir, "out.csv"), filepath.Join(dir, "s")
	p := Persona("found")
	rows := [][]string{row("a", p, 2, false), row("b", p, 1, false), row("c", p, 2, false)}
	require.NoError(t, os.WriteFile(in, []byte(fillCSV(rows)), 0o600))
	cfg := FillConfig{InPath: in, OutPath: out, StatePath: state, Rate: 1000, Attempts: 2, Backoff: time.Millisecond}

	t.Run("transient errors leave rows unfinished", func(t *testing.T) {
		f := &fakeFill{err: &FaultError{HTTPStatus: 503}}
		s, err := Fill(context.Background(), cfg, f)
		require.ErrorIs(t, err, ErrUnfinished)
		assert.Equal(t, 3, s.Unfinished)
		assert.Equal(t, 6, f.calls, "two attempts per row")
		b, _ := os.ReadFile(out)
		assert.Equal(t, 3, strings.Count(string(b), StatusUnfinished))
	})
	t.Run("torn last journal line is dropped", func(t *testing.T) {
		fh, err := os.OpenFile(state, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = fh.WriteString(`{"kind":"row","id":"a","status":"G"}` + "\n" + `{"kind":"row","id":"b","sta`)
		require.NoError(t, err)
		require.NoError(t, fh.Close())
		f := &fakeFill{}
		s, err := Fill(context.Background(), cfg, f)
		require.NoError(t, err)
		assert.Equal(t, 1, s.Resumed)
		assert.Equal(t, 2, f.calls, "b and c asked, a not")
	})
	t.Run("journal of another input refused", func(t *testing.T) {
		require.NoError(t, os.WriteFile(in, []byte(fillCSV(rows[:1])), 0o600))
		_, err := Fill(context.Background(), cfg, &fakeFill{})
		require.ErrorIs(t, err, ErrState)
	})
	t.Run("parallel workers ask each row once", func(t *testing.T) {
		var many [][]string
		for i := range 60 {
			many = append(many, row(fmt.Sprintf("w%d", i), p, 2, false))
		}
		in2, st2 := filepath.Join(dir, "many.csv"), filepath.Join(dir, "many.state")
		require.NoError(t, os.WriteFile(in2, []byte(fillCSV(many)), 0o600))
		f := &fakeFill{}
		s, err := Fill(context.Background(), FillConfig{InPath: in2, OutPath: filepath.Join(dir, "many.out"), StatePath: st2, Rate: 10000, Workers: 8}, f)
		require.NoError(t, err)
		assert.Equal(t, 60, f.calls)
		assert.Equal(t, 60, s.Counts["G"])
		b, err := os.ReadFile(st2)
		require.NoError(t, err)
		assert.Equal(t, 60, strings.Count(string(b), `"kind":"row"`))
	})
	t.Run("progress bar and summary", func(t *testing.T) {
		in3 := filepath.Join(dir, "bar.csv")
		require.NoError(t, os.WriteFile(in3, []byte(fillCSV([][]string{row("x1", p, 2, false), row("x2", p, 2, false)})), 0o600))
		clock := time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)
		var out bytes.Buffer
		_, err := Fill(context.Background(), FillConfig{InPath: in3, OutPath: filepath.Join(dir, "bar.out"), StatePath: filepath.Join(dir, "bar.state"),
			Rate: 1000, Terminal: true, Progress: &out, Now: func() time.Time { clock = clock.Add(time.Second); return clock }}, &fakeFill{})
		require.NoError(t, err)
		assert.Contains(t, out.String(), "\r[===============               ] 1/2  50.0%")
		assert.Contains(t, out.String(), "ETA ")
		assert.Contains(t, out.String(), "2 rows, 0 resumed from the journal, 2 asked now, 0 unfinished")
		assert.Contains(t, out.String(), "G (gevonden)                       2")
	})
	t.Run("bad input refused", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.csv")
		require.NoError(t, os.WriteFile(bad, []byte("id,shoe\n1,2\n"), 0o600))
		_, err := Fill(context.Background(), FillConfig{InPath: bad, OutPath: out, StatePath: filepath.Join(dir, "s2")}, &fakeFill{})
		require.ErrorIs(t, err, ErrInput)
		require.NoError(t, os.WriteFile(bad, []byte("id;geslachtsnaam\n1;a\n1;b\n"), 0o600))
		_, err = Fill(context.Background(), FillConfig{InPath: bad, OutPath: out, StatePath: filepath.Join(dir, "s3")}, &fakeFill{})
		require.ErrorIs(t, err, ErrInput)
	})
}

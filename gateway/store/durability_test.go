package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childEnv makes the test binary run runChild instead of the tests.
const childEnv = "AORTAGW_STORE_DURABILITY_CHILD"

// runChild writes audit records, enrolments and replay entries from several
// goroutines as fast as it can and prints one line per committed write. It
// runs until it is killed.
func runChild(dsn string) int {
	ctx := context.Background()
	s, err := Open(ctx, dsn, Options{Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 3
	}
	var mu sync.Mutex // one write(2) per line
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+" ok\n", args...)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				r, err := s.Append(ctx, auditRec(i))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				say("audit %d", r.Seq)
				now := time.Now()
				id := fmt.Sprintf("_dur-%d-%d-%d", os.Getpid(), w, i)
				if err := s.RegisterEnrolment(ctx, enrolment(id, "12345678", "999990019", now.Add(-time.Hour), now.AddDate(1, 0, 0))); err != nil {
					fmt.Fprintln(os.Stderr, "child register:", err)
					os.Exit(5)
				}
				say("enrol %s", id)
				if err := s.Use(ctx, "urn:dur", id, now.Add(time.Hour)); err != nil {
					fmt.Fprintln(os.Stderr, "child replay:", err)
					os.Exit(6)
				}
				say("replay %s", id)
			}
		}()
	}
	wg.Wait()
	return 0
}

// TestDurabilitySIGKILL kills a writing child with SIGKILL and checks that
// every write the child saw committed is there and the chain verifies.
func TestDurabilitySIGKILL(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.newDSN(t)
			for round := range 2 { // the second round starts on a crash-recovered database
				committed := killChildUnderLoad(t, dsn, 150)
				require.NotEmpty(t, committed.audit, "child committed nothing (round %d)", round)

				ctx := context.Background()
				s, err := Open(ctx, dsn, Options{Logger: quietLogger()})
				require.NoError(t, err)
				rep, err := s.VerifyChain(ctx)
				require.NoError(t, err, "chain intact after SIGKILL")
				recs, err := s.AuditRecords(ctx, AuditFilter{Limit: 1 << 30})
				require.NoError(t, err)
				have := map[int64]bool{}
				for _, r := range recs {
					have[r.Seq] = true
				}
				for _, seq := range committed.audit {
					assert.True(t, have[seq], "committed audit seq %d lost", seq)
					assert.LessOrEqual(t, seq, rep.HeadSeq)
				}
				for _, id := range committed.enrol {
					_, err := s.GetToken(ctx, id)
					assert.NoError(t, err, "committed enrolment %s lost", id)
				}
				for _, id := range committed.replay {
					assert.ErrorIs(t, s.Use(ctx, "urn:dur", id, time.Now().Add(time.Hour)), ErrReplay, "replay entry %s lost", id)
				}
				t.Logf("round %d: %d audit, %d enrolments, %d replay entries committed before SIGKILL; head %d",
					round, len(committed.audit), len(committed.enrol), len(committed.replay), rep.HeadSeq)
				require.NoError(t, s.Close())
			}
		})
	}
}

type committedWrites struct {
	audit         []int64
	enrol, replay []string
}

func killChildUnderLoad(t *testing.T, dsn string, minAudit int) committedWrites {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dsn)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var c committedWrites
	sc := bufio.NewScanner(out)
	killed := false
	deadline := time.Now().Add(60 * time.Second)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "ok" {
			continue // a line cut by the kill is not a confirmed commit
		}
		switch f[0] {
		case "audit":
			n, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			c.audit = append(c.audit, n)
		case "enrol":
			c.enrol = append(c.enrol, f[1])
		case "replay":
			c.replay = append(c.replay, f[1])
		}
		if !killed && (len(c.audit) >= minAudit || time.Now().After(deadline)) {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	err = cmd.Wait()
	require.True(t, killed, "child exited on its own: %v; stderr: %s", err, stderr.String())
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	ws, ok := ee.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	require.True(t, ws.Signaled(), "child not killed by a signal: %v; stderr: %s", err, stderr.String())
	return c
}

package gateway

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/aortagw/aortagw/internal/hl7"
	"github.com/aortagw/aortagw/internal/mtls"
	"github.com/aortagw/aortagw/internal/soap"
	"github.com/aortagw/aortagw/internal/testenv"
	"github.com/aortagw/aortagw/lsp"
	"github.com/aortagw/aortagw/tokens"
)

// BenchmarkGatewayEndToEnd measures, in one run, the XIS -> gateway -> LSP
// simulator path at concurrency 1, 8, 32 and 64 against XIS -> simulator
// direct (same envelopes, tokens pre-minted), and the raw SoftHSM RSA-2048
// sign rate of the server key. It prints a table; run it with
//
//	go test -run '^$' -bench GatewayEndToEnd -benchtime 1x ./gateway
//
// It then starts the gateway again in a process of its own and measures its
// CPU time per message (benchproc_test.go). AORTAGW_BENCH_LEVEL (default 5s)
// sets the time per level, AORTAGW_BENCH_CONC (default 1,8,32,64) the
// concurrency levels, and AORTAGW_BENCH_SOAK (e.g. 10m) adds a soak of
// that process at concurrency 32 that samples its heap and RSS.
func BenchmarkGatewayEndToEnd(b *testing.B) {
	module := testenv.SoftHSMModule(b)
	if os.Getenv("SOFTHSM2_CONF") != "" {
		b.Skip("SOFTHSM2_CONF is set; the benchmark needs its own token directory")
	}
	level := 5 * time.Second
	if v := os.Getenv("AORTAGW_BENCH_LEVEL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		level = d
	}
	concs := []int{1, 8, 32, 64}
	if v := os.Getenv("AORTAGW_BENCH_CONC"); v != "" {
		concs = concs[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("AORTAGW_BENCH_CONC: %q is not a list of positive numbers", v)
			}
			concs = append(concs, n)
		}
	}
	ctx := context.Background()
	dbDir := testenv.ShortTempDir(b) // on disk; AORTAGW_BENCH_DB_DIR=/dev/shm shows the cost of fsync
	if v := os.Getenv("AORTAGW_BENCH_DB_DIR"); v != "" {
		dbDir = v
	}
	d := &demo{storeDSN: "sqlite:" + filepath.Join(dbDir, "bench-"+uuid.NewString()[:8]+".db"), opts: DemoOptions{Dir: filepath.Join(testenv.ShortTempDir(b), "bench"), Out: io.Discard, ModulePath: module},
		out: io.Discard, log: slog.New(slog.DiscardHandler), client: &http.Client{}}
	defer func() {
		for i := len(d.stop) - 1; i >= 0; i-- {
			d.stop[i]()
		}
		_ = os.Unsetenv("SOFTHSM2_CONF")
	}()
	for _, step := range []func(context.Context) error{d.stepPKI, d.stepStart, d.stepEnrol, d.stepMandate} {
		if err := step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	xisTok, err := ReadSecretFile(filepath.Join(d.dir, "config", "xis.token"))
	if err != nil {
		b.Fatal(err)
	}
	pat := demoPatient()
	message := func() ([]byte, *hl7.QueryParams) {
		p := hl7.QueryParams{Interaction: hl7.QURXQuery,
			MessageID: hl7.ID{Root: "2.16.840.1.113883.2.4.6.6." + demoAppID + ".1", Ext: uuid.NewString()},
			Created:   time.Now(), SenderApp: demoAppID, BSN: pat.BSN,
			Author:   hl7.Person{UZI: d.actor.UZI, Role: d.actor.Role, URA: d.actor.URA},
			Overseer: &hl7.Person{UZI: d.giver.UZI, Role: d.giver.Role, URA: d.giver.URA}}
		body, err := hl7.BuildQuery(p)
		if err != nil {
			b.Fatal(err)
		}
		return envelope(body), &p
	}

	// Raw SoftHSM sign rate of the server key, 8 in flight.
	digest := sha256.Sum256([]byte("aortagw"))
	var cpuPerSign time.Duration // CPU time of one raw signature (8 in flight)
	rawRate := func(conc int, dur time.Duration) float64 {
		cpu0 := selfCPU()
		var n atomic.Int64
		deadline := time.Now().Add(dur)
		var wg sync.WaitGroup
		for i := 0; i < conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if _, err := d.rt.Key.Sign(nil, digest[:], crypto.SHA256); err != nil {
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if conc > 1 && n.Load() > 0 {
			cpuPerSign = (selfCPU() - cpu0) / time.Duration(n.Load())
		}
		return float64(n.Load()) / dur.Seconds()
	}

	// Direct: XIS -> simulator with pre-minted tokens over the same mTLS.
	signer, err := tokens.NewSigner(d.rt.Key, d.rt.Chain)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := mtls.Certificate(d.rt.Key, d.rt.Chain)
	if err != nil {
		b.Fatal(err)
	}
	lc := lsp.DefaultClientConfig()
	lc.Endpoint, lc.Certificate, lc.RootCAs = d.cfg.LSP.Endpoint, cert, []*x509.Certificate{d.pki.Servers["lsp"].Chain[len(d.pki.Servers["lsp"].Chain)-1]}
	lc.MaxConnsPerHost = 128
	direct, err := lsp.NewClient(lc)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	premint := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			env, p := message()
			tx, err := signer.SignTransaction(tokens.Transaction{URA: d.giver.URA, BSN: pat.BSN,
				InteractionID: p.Interaction, MessageIDRoot: p.MessageID.Root, MessageIDExt: p.MessageID.Ext,
				ApplicationID: tokens.AppIDPrefix + demoAppID, Context: MedicationContext,
				ContextCodeSystem: "2.16.840.1.113883.2.4.3.111.15.1", ContextCode: "KZDI",
				Audiences: []string{ZIMAudience}})
			if err != nil {
				b.Fatal(err)
			}
			full, err := soap.WithSecurity(env, d.enrolment, d.mandate, tx.Bytes())
			if err != nil {
				b.Fatal(err)
			}
			out[i] = full
		}
		return out
	}

	xisClient := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}}
	defer xisClient.CloseIdleConnections()
	xisURL := d.xis + "/"
	viaGateway := func() error {
		env, _ := message()
		req, _ := http.NewRequest(http.MethodPost, xisURL, bytes.NewReader(env))
		req.Header.Set("Authorization", "Bearer "+string(xisTok))
		req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		resp, err := xisClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}

	run := func(conc int, dur time.Duration, next func(i int) error) (rate float64, lat []time.Duration, errs int64) {
		var mu sync.Mutex
		var n, bad atomic.Int64
		deadline := time.Now().Add(dur)
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for time.Now().Before(deadline) {
					i := int(n.Add(1)) - 1
					t0 := time.Now()
					if err := next(i); err != nil {
						if bad.Add(1) == 1 {
							b.Logf("first error: %v", err)
						}
						if err == errExhausted {
							break
						}
						continue
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		el := time.Since(start)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return float64(len(lat)) / el.Seconds(), lat, bad.Load()
	}
	pct := func(l []time.Duration, p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[int(float64(len(l)-1)*p)]
	}

	b.ResetTimer()
	raw := rawRate(8, 3*time.Second)
	raw1 := rawRate(1, 2*time.Second)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nraw SoftHSM RSA-2048 C_Sign via pkcs11.Key: %.0f/s (8 in flight), %.0f/s (1 in flight); CPU per signature %s (8 in flight)\n",
		raw, raw1, r(cpuPerSign))
	fmt.Fprintf(&sb, "%-5s | %10s %9s %9s | %10s %9s %9s | %9s %9s | %s\n", "conc", "gw msg/s", "gw p50", "gw p99",
		"direct/s", "dir p50", "dir p99", "add p50", "add p99", "gw/raw")
	for _, conc := range concs {
		// Direct first (pre-minted envelopes, enough for the level).
		dirRate0, _, _ := run(conc, 300*time.Millisecond, func(int) error { return viaGateway() }) // warm both paths
		_ = dirRate0
		// Enough for the level at up to 1500 msg/s (the simulator's cache of
		// verified enrolment and mandate tokens made the direct path fast).
		envs := premint(max(int(float64(conc)*30+400), int((level/2).Seconds()*1500)))
		dRate, dLat, dErr := run(conc, level/2, func(i int) error {
			if i >= len(envs) {
				return errExhausted
			}
			_, err := direct.Send(ctx, envs[i], "")
			return err
		})
		gRate, gLat, gErr := run(conc, level, func(int) error { return viaGateway() })
		fmt.Fprintf(&sb, "%-5d | %10.0f %9s %9s | %10.0f %9s %9s | %9s %9s | %.2f  (errors gw=%d direct=%d)\n", conc,
			gRate, r(pct(gLat, .5)), r(pct(gLat, .99)), dRate, r(pct(dLat, .5)), r(pct(dLat, .99)),
			r(pct(gLat, .5)-pct(dLat, .5)), r(pct(gLat, .99)-pct(dLat, .99)), gRate/raw, gErr, dErr)
		if conc == 8 {
			b.ReportMetric(float64(pct(gLat, .99)-pct(dLat, .99))/1e6, "added-p99-ms@8")
		}
	}
	// The same load against an upstream that answers at once with a recorded
	// simulator answer (same listener, same mTLS): what the gateway itself
	// sustains when the LSP is not the bottleneck.
	canned := cannedAnswer(b, direct, premint(1)[0])
	var cannedH http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		_, _ = w.Write(canned)
	})
	simH := *d.upstream.Load()
	d.upstream.Store(&cannedH)
	fmt.Fprintf(&sb, "gateway -> instant upstream (no token checks at the LSP side):\n")
	for _, conc := range concs {
		gRate, gLat, gErr := run(conc, level, func(int) error { return viaGateway() })
		fmt.Fprintf(&sb, "%-5d | %10.0f %9s %9s | gw/raw %.2f (errors %d)\n", conc, gRate, r(pct(gLat, .5)), r(pct(gLat, .99)), gRate/raw, gErr)
	}
	d.upstream.Store(&simH)

	// The gateway in a process of its own, from the same configuration file
	// with a fresh store holding the same enrolment and mandate: its CPU time
	// per message is its own. "alone/raw" is what the goal asks on a machine
	// where the gateway has the cores to itself: the raw rate times the CPU
	// of one signature over the gateway's CPU per message.
	child := startBenchChild(b, filepath.Join(d.dir, "aortagw.yaml"),
		"sqlite:"+filepath.Join(dbDir, "bench-child-"+uuid.NewString()[:8]+".db"))
	defer child.stop()
	inProcAdmin := d.admin
	d.admin = child.admin
	for typ, raw := range map[string][]byte{"enrolment": d.enrolment, "mandate": d.mandate} {
		if _, err := d.registerToken(typ, raw, "bench"); err != nil {
			b.Fatalf("gateway child: %v", err)
		}
	}
	d.admin = inProcAdmin
	xisURL = child.xis + "/"
	// What the gateway process burns while idle (trigger poller, timers,
	// maintenance): part of every CPU-per-message figure below.
	time.Sleep(500 * time.Millisecond)
	idle0 := child.cpu()
	time.Sleep(3 * time.Second)
	fmt.Fprintf(&sb, "gateway process idle: %.1f %% of one core\n", 100*float64(child.cpu()-idle0)/float64(3*time.Second))
	split := func(title string) {
		fmt.Fprintf(&sb, "%s\n%-5s | %10s %9s %9s | %11s %10s | %s\n", title, "conc", "gw msg/s", "gw p50", "gw p99",
			"gw CPU/msg", "alone/s", "alone/raw")
		for _, conc := range concs {
			_, _, _ = run(conc, 300*time.Millisecond, func(int) error { return viaGateway() })
			c0 := child.cpu()
			gRate, gLat, gErr := run(conc, level, func(int) error { return viaGateway() })
			perMsg := time.Duration(float64(child.cpu()-c0) / (gRate * level.Seconds()))
			alone := child.cpuPerCores / perMsg.Seconds()
			fmt.Fprintf(&sb, "%-5d | %10.0f %9s %9s | %11s %10.0f | %.2f  (errors %d)\n", conc, gRate, r(pct(gLat, .5)), r(pct(gLat, .99)),
				r(perMsg), alone, float64(cpuPerSign)/float64(perMsg), gErr)
		}
	}
	split("gateway in its own process -> LSP simulator (CPU per message: the gateway process only):")
	d.upstream.Store(&cannedH)
	split("gateway in its own process -> instant upstream:")
	d.upstream.Store(&simH)

	if soak := os.Getenv("AORTAGW_BENCH_SOAK"); soak != "" {
		dur, err := time.ParseDuration(soak)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&sb, "soak of the gateway process at concurrency 32 for %s (after a GC, every %s):\n", dur, dur/10)
		h, g, rs := child.mem()
		fmt.Fprintf(&sb, "  %s start: heap %.1f MiB, goroutines %d, rss %s\n", time.Now().Format("15:04:05"), h, g, rs)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			tk := time.NewTicker(dur / 10)
			defer tk.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tk.C:
					h, g, rs := child.mem()
					fmt.Fprintf(&sb, "  %s heap %.1f MiB, goroutines %d, rss %s\n", time.Now().Format("15:04:05"), h, g, rs)
				}
			}
		}()
		rate, _, errs := run(32, dur, func(int) error { return viaGateway() })
		close(stop)
		<-done
		fmt.Fprintf(&sb, "  soak: %.0f msg/s, errors %d\n", rate, errs)
	}
	b.StopTimer()
	b.Log(sb.String())
	fmt.Print(sb.String())
}

var errExhausted = fmt.Errorf("pre-minted envelopes exhausted")

func r(d time.Duration) string {
	return d.Round(10 * time.Microsecond).String()
}

// cannedAnswer sends one valid envelope to the simulator and returns its answer.
func cannedAnswer(b *testing.B, c *lsp.Client, env []byte) []byte {
	resp, err := c.Send(context.Background(), env, "")
	if err != nil {
		b.Fatal(err)
	}
	return resp.Envelope
}

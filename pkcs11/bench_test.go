//go:build cgo && !nopkcs11

package pkcs11

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// BenchmarkRSA2048 compares, in one run, RSA-2048 PKCS#1 v1.5 signatures per second at
// concurrency 1, 2 and 8 through (a) our pool on SoftHSM, (b) a bare miekg/pkcs11 C_Sign loop
// with one session per goroutine on the same token, and (c) Go's in-memory crypto/rsa.
//
//	go test -run '^$' -bench 'RSA2048|PoolVsBare' -benchtime 3s ./pkcs11
func BenchmarkRSA2048(b *testing.B) {
	useSigningProcs(b)
	env := newBenchEnv(b)
	for _, c := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("pool/c=%d", c), func(b *testing.B) {
			k := env.openKey(b, c)
			defer k.Close()
			run(b, c, poolOp(k), nil)
		})
		b.Run(fmt.Sprintf("bare-miekg/c=%d", c), func(b *testing.B) {
			workers, done := env.bareWorkers(b, c)
			defer done()
			i := 0
			run(b, c, nil, func() func() error { i++; return workers[i-1] })
		})
		b.Run(fmt.Sprintf("go-crypto-rsa/c=%d", c), func(b *testing.B) {
			run(b, c, func() error {
				_, err := rsa.SignPKCS1v15(nil, env.goKey, crypto.SHA256, digest)
				return err
			}, nil)
		})
	}
}

// BenchmarkPoolVsBare interleaves the pool and the bare loop in short alternating rounds of
// 64 signatures, so that load from other processes on a shared machine hits both alike, and
// reports the ratio of their rates (pool/bare; 1.0 = no overhead). A third series,
// "bare+handoff", is the bare loop with only what rule G8 adds to every signature: the C calls
// run on a fresh goroutine and the caller waits for the result on a channel (so it can leave at
// its deadline). pool/handoff is then the cost of the pool's own machinery (session pool,
// deadline, metrics), and handoff/bare the cost of G8 alone.
func BenchmarkPoolVsBare(b *testing.B) {
	useSigningProcs(b)
	env := newBenchEnv(b)
	for _, c := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			k := env.openKey(b, c)
			defer k.Close()
			workers, done := env.bareWorkers(b, c)
			defer done()
			pool := make([]func() error, c)
			handoff := make([]func() error, c)
			for i := range pool {
				pool[i] = poolOp(k)
				handoff[i] = withHandoff(workers[i])
			}
			series := [][]func() error{pool, workers, handoff}
			const round = 64
			var t [3]time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range series { // rotate which goes first
					s := (i + j) % len(series)
					t[s] += timed(b, round, series[s])
				}
			}
			b.StopTimer()
			n := float64(b.N * round)
			b.ReportMetric(n/t[0].Seconds(), "pool-signs/s")
			b.ReportMetric(n/t[1].Seconds(), "bare-signs/s")
			b.ReportMetric(t[1].Seconds()/t[0].Seconds(), "pool/bare")
			b.ReportMetric(t[2].Seconds()/t[0].Seconds(), "pool/handoff")
			b.ReportMetric(t[1].Seconds()/t[2].Seconds(), "handoff/bare")
		})
	}
}

// withHandoff runs f as rule G8 makes the pool run a signature: on a fresh goroutine, the
// caller waiting for its result on a channel.
func withHandoff(f func() error) func() error {
	return func() error {
		ch := make(chan error, 1)
		go func() { ch <- f() }()
		return <-ch
	}
}

// useSigningProcs runs the benchmark with GOMAXPROCS as the aortagw binary
// sets it (TuneGOMAXPROCS; bare loop and pool alike) and restores it after.
func useSigningProcs(b *testing.B) {
	old := runtime.GOMAXPROCS(0)
	TuneGOMAXPROCS()
	b.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

func poolOp(k *Key) func() error {
	return func() error {
		sig, err := k.Sign(rand.Reader, digest, crypto.SHA256)
		if err == nil && len(sig) != 256 {
			err = fmt.Errorf("bad signature length %d", len(sig))
		}
		return err
	}
}

func (env *benchEnv) openKey(b *testing.B, c int) *Key {
	k, err := Open(context.Background(), "pkcs11:token="+env.label+";id=%01?module-path="+env.mod+"&pin-source=file:"+env.pinFile,
		Options{AllowedModules: []string{env.mod}, PoolSize: c})
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// bareWorkers returns c functions, each signing on its own session with plain miekg calls.
func (env *benchEnv) bareWorkers(b *testing.B, c int) ([]func() error, func()) {
	lib, err := loadModule(env.mod)
	if err != nil {
		b.Fatal(err)
	}
	ctx := lib.mod.(*realModule).Ctx
	slot, err := slotByLabel(lib.mod, env.label)
	if err != nil {
		b.Fatal(err)
	}
	var key pkcs11.ObjectHandle
	var sessions []pkcs11.SessionHandle
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}
	workers := make([]func() error, c)
	for i := range c {
		sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		sessions = append(sessions, sh)
		if i == 0 {
			if err := lib.mod.Login(sh, pkcs11.CKU_USER, env.pin); err != nil {
				if code, _ := rv(err); code != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
					b.Fatal(err)
				}
			}
			hs, err := findObjects(lib.mod, sh, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{1})}, 1)
			if err != nil || len(hs) != 1 {
				b.Fatal("bench key not found", err)
			}
			key = hs[0]
		}
		workers[i] = func() error {
			if err := ctx.SignInit(sh, mech, key); err != nil {
				return err
			}
			_, err := ctx.Sign(sh, env.data)
			return err
		}
	}
	return workers, func() {
		for _, sh := range sessions {
			_ = ctx.CloseSession(sh)
		}
		lib.release()
	}
}

// timed runs n operations spread over the workers (one goroutine each) and returns the time.
func timed(b *testing.B, n int, workers []func() error) time.Duration {
	var wg sync.WaitGroup
	errs := make(chan error, len(workers))
	start := time.Now()
	for w, f := range workers {
		m := n / len(workers)
		if w == 0 {
			m += n % len(workers)
		}
		wg.Go(func() {
			for range m {
				if err := f(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return d
}

// benchEnv is a SoftHSM token with one RSA-2048 key, plus a Go key, for the benchmarks.
type benchEnv struct {
	mod, label, pinFile string
	pin                 []byte
	goKey               *rsa.PrivateKey
	data                []byte // DigestInfo || SHA-256 digest
}

func newBenchEnv(b *testing.B) *benchEnv {
	mod := softhsm(b)
	label := fmt.Sprintf("bench-%d", tokenSeq.Add(1))
	pin := []byte("bench-pin-1234")
	a, err := OpenAdmin(mod)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if err := a.InitToken(label, []byte("bench-so-1234"), pin); err != nil {
		b.Fatal(err)
	}
	_, err = a.GenerateRSAKey(label, pin, []byte{1}, "bench", 2048, false)
	if err != nil {
		b.Fatal(err)
	}
	pinFile := writePINFile(b, pin)
	goKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	data := append(append([]byte{}, digestInfo[crypto.SHA256]...), digest...)

	return &benchEnv{mod: mod, label: label, pinFile: pinFile, pin: pin, goKey: goKey, data: data}
}

// run executes b.N operations on c goroutines and reports signs/s.
func run(b *testing.B, c int, op func() error, perWorker func() func() error) {
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, c)
	per := b.N / c
	start := time.Now()
	for w := range c {
		n := per
		if w == 0 {
			n += b.N % c
		}
		f := op
		if perWorker != nil {
			f = perWorker()
		}
		wg.Go(func() {
			for range n {
				if err := f(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "signs/s")
}

// nopSigner is a module whose C_SignInit/C_Sign cost nothing, to measure the pool's own
// per-signature overhead independently of the (noisy, shared) CPU.
type nopSigner struct{ *softModule }

func (nopSigner) SignInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	return nil
}
func (nopSigner) Sign(pkcs11.SessionHandle, []byte) ([]byte, error) { return make([]byte, 256), nil }

// BenchmarkPoolOverhead measures the time our layer adds per signature (session borrow and
// return, deadline, the worker goroutine, metrics, DigestInfo), with a module that signs in
// zero time. Divide by a token's signature time to get the relative overhead.
func BenchmarkPoolOverhead(b *testing.B) {
	keys, err := softKeys()
	if err != nil {
		b.Fatal(err)
	}
	soft := newSoftModule()
	soft.addToken(1, "t", []byte("pin-1"), 0)
	soft.addObject(1, &softObject{class: pkcs11.CKO_PRIVATE_KEY, id: []byte{1}, key: keys[0], pub: keys[0].Public()})
	soft.addObject(1, &softObject{class: pkcs11.CKO_PUBLIC_KEY, id: []byte{1}, pub: keys[0].Public()})
	bk := &backend{label: "t", pin: []byte("pin-1"), logs: &syncBuffer{}}
	bk.lib = newTestLibrary(nopSigner{soft})
	bk.pinFile = writePINFile(b, bk.pin)
	for _, c := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			k, err := bk.open(context.Background(), bk.uri([]byte{1}), Options{PoolSize: c})
			if err != nil {
				b.Fatal(err)
			}
			defer k.Close()
			b.ReportAllocs()
			run(b, c, func() error {
				_, err := k.Sign(rand.Reader, digest, crypto.SHA256)
				return err
			}, nil)
		})
	}
}

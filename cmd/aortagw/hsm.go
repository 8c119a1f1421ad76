package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/aortagw/aortagw/pkcs11"
)

// newHSMCmd builds `aortagw hsm list` and `aortagw hsm test`.
func newHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Inspect and test PKCS#11 tokens (smartcards, HSMs, SoftHSM)",
	}
	cmd.AddCommand(newHSMListCmd(), newHSMTestCmd())
	return cmd
}

const defaultHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

func newHSMListCmd() *cobra.Command {
	var module, pinFile, token string
	c := &cobra.Command{
		Use:   "list",
		Short: "List slots, tokens, mechanisms, keys and certificates of a PKCS#11 module",
		Long: "List slots, tokens, mechanisms, keys and certificates of a PKCS#11 module.\n" +
			"Private keys are shown only after a login: pass --token LABEL and --pin-file; the PIN\n" +
			"is tried once, on that token only (a wrong PIN is never retried, and never tried on\n" +
			"another card). PINs are never printed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := pkcs11.Inspect(module, pinFile, token)
			if err != nil {
				return err
			}
			printListing(cmd.OutOrStdout(), l)
			return nil
		},
	}
	c.Flags().StringVar(&module, "module", defaultHSMModule, "PKCS#11 module (absolute path)")
	c.Flags().StringVar(&pinFile, "pin-file", "", "user PIN file (mode 0600/0400) to list the private keys of --token")
	c.Flags().StringVar(&token, "token", "", "label of the token to log in to with --pin-file")
	c.MarkFlagsRequiredTogether("pin-file", "token")
	return c
}

func printListing(w io.Writer, l *pkcs11.ModuleListing) {
	fmt.Fprintf(w, "module   %s\n         %s, %s (library %s, cryptoki %s)\n", l.Path, l.Description, l.Manufacturer, l.LibraryVersion, l.CryptokiVersion)
	if len(l.Slots) == 0 {
		fmt.Fprintln(w, "no slots")
	}
	for _, s := range l.Slots {
		fmt.Fprintf(w, "\nslot %d   %s (%s)\n", s.ID, s.Description, s.Manufacturer)
		t := s.Token
		if t == nil {
			fmt.Fprintln(w, "  no token present")
			continue
		}
		if !t.Initialized {
			fmt.Fprintln(w, "  token not initialised")
			continue
		}
		fmt.Fprintf(w, "  token    %q  serial %s  %s %s\n", t.Label, t.Serial, t.Manufacturer, t.Model)
		fmt.Fprintf(w, "  uri      %s\n", t.URI)
		fmt.Fprintf(w, "  sessions max %s (rw %s)  login required: %v\n", t.MaxSessions, t.MaxRwSessions, t.LoginRequired)
		fmt.Fprintf(w, "  signing  %s\n", signingSupport(t.Mechanisms))
		var named []string
		for _, m := range t.Mechanisms {
			if strings.HasPrefix(m, "CKM_") {
				named = append(named, m)
			}
		}
		fmt.Fprintf(w, "  mechanisms (%d): %s", len(t.Mechanisms), strings.Join(named, " "))
		if rest := len(t.Mechanisms) - len(named); rest > 0 {
			fmt.Fprintf(w, " (+%d others)", rest)
		}
		fmt.Fprintln(w)
		if !t.LoggedIn && t.LoginRequired {
			fmt.Fprintln(w, "  (not logged in: private keys hidden; use --token and --pin-file)")
		}
		if len(t.Objects) == 0 {
			fmt.Fprintln(w, "  no objects")
		}
		for _, o := range t.Objects {
			switch o.Class {
			case "certificate":
				fmt.Fprintf(w, "  cert     id=%x label=%q\n           subject  %s\n           issuer   %s\n           serial %s  not after %s  key usage %s\n",
					o.ID, o.Label, o.Subject, o.Issuer, o.Serial, o.NotAfter, strings.Join(o.KeyUsage, ","))
			default:
				aa := ""
				if o.AlwaysAuthenticate {
					aa = "  CKA_ALWAYS_AUTHENTICATE"
				}
				fmt.Fprintf(w, "  %-8s id=%x label=%q %s%s\n", strings.TrimSuffix(o.Class, "-key"), o.ID, o.Label, o.KeyType, aa)
			}
			fmt.Fprintf(w, "           %s\n", o.URI)
		}
	}
}

// signingSupport summarises what aortagw can do with the token's mechanisms.
func signingSupport(m []string) string {
	var out []string
	if slices.Contains(m, "CKM_RSA_PKCS") {
		out = append(out, "RSA PKCS#1 v1.5 (digest)")
	} else if slices.Contains(m, "CKM_SHA256_RSA_PKCS") {
		out = append(out, "RSA PKCS#1 v1.5 hash-and-sign only (SignMessage)")
	}
	if slices.Contains(m, "CKM_RSA_PKCS_PSS") {
		out = append(out, "RSA-PSS")
	}
	if slices.Contains(m, "CKM_ECDSA") {
		out = append(out, "ECDSA")
	}
	if len(out) == 0 {
		return "none usable by aortagw"
	}
	return strings.Join(out, ", ")
}

func newHSMTestCmd() *cobra.Command {
	var (
		keyURI      string
		n, workers  int
		allow       []string
		pss         bool
		timeout     time.Duration
		allowPINVal bool
	)
	c := &cobra.Command{
		Use:   "test",
		Short: "Sign and verify a test digest with a key, and print the latency",
		Long: "Open the key named by --key (an RFC 7512 URI with module-path and pin-source=file:),\n" +
			"sign a SHA-256 test digest --n times with --concurrency workers, verify every signature\n" +
			"with the public key and print latency figures. The module in the URI is allowed for\n" +
			"this run because you name it on the command line; --allow-module restricts it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 || workers < 1 {
				return errors.New("hsm test: --n and --concurrency must be at least 1")
			}
			u, err := pkcs11.ParseURI(keyURI)
			if err != nil {
				return err
			}
			if len(allow) == 0 && u.ModulePath() != "" {
				allow = []string{u.ModulePath()}
			}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			t0 := time.Now()
			k, err := pkcs11.Open(ctx, keyURI, pkcs11.Options{AllowedModules: allow, Logger: logger,
				OpTimeout: timeout, PoolSize: workers, AllowPINValue: allowPINVal})
			if err != nil {
				return err
			}
			defer k.Close()
			fmt.Fprintf(out, "key      %s\nopened   in %v (module load, login, key lookup)\n", k.URI(), time.Since(t0).Round(time.Microsecond))
			if c := k.Certificate(); c != nil {
				fmt.Fprintf(out, "cert     %s (chain of %d on the token)\n", c.Subject, len(k.Chain()))
			}
			return runHSMTest(ctx, out, k, n, workers, pss)
		},
	}
	c.Flags().StringVar(&keyURI, "key", "", "key URI, e.g. pkcs11:token=T;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin")
	c.Flags().IntVar(&n, "n", 10, "number of signatures")
	c.Flags().IntVar(&workers, "concurrency", 1, "parallel signers (also the pool size)")
	c.Flags().StringSliceVar(&allow, "allow-module", nil, "allowed module paths (default: the module-path of --key)")
	c.Flags().BoolVar(&pss, "pss", false, "sign with RSA-PSS instead of PKCS#1 v1.5")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "per-signature deadline")
	c.Flags().BoolVar(&allowPINVal, "insecure-allow-pin-value", false, "accept pin-value in the URI (insecure)")
	_ = c.MarkFlagRequired("key")
	return c
}

func runHSMTest(ctx context.Context, out io.Writer, k *pkcs11.Key, n, workers int, pss bool) error {
	digest := sha256.Sum256([]byte("aortagw hsm test"))
	var opts crypto.SignerOpts = crypto.SHA256
	if _, isRSA := k.Public().(*rsa.PublicKey); pss && isRSA {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range next {
				t := time.Now()
				sig, err := k.SignContext(ctx, digest[:], opts)
				lat[i] = time.Since(t)
				if err == nil {
					err = verifySig(k.Public(), digest[:], sig, opts)
				}
				errs[i] = err
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	total := time.Since(start)
	failed := 0
	for _, err := range errs {
		if err != nil {
			if failed == 0 {
				fmt.Fprintf(out, "error    %v\n", err)
			}
			failed++
		}
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Fprintf(out, "signed   %d (verified %d, failed %d) with %d worker(s) in %v\n", n, n-failed, failed, workers, total.Round(time.Microsecond))
	fmt.Fprintf(out, "latency  min %v  avg %v  p50 %v  p99 %v  max %v\n", lat[0].Round(time.Microsecond),
		(sum / time.Duration(n)).Round(time.Microsecond), pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[n-1].Round(time.Microsecond))
	fmt.Fprintf(out, "rate     %.1f signatures/s\n", float64(n)/total.Seconds())
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("hsm test: %d of %d signatures failed", failed, n)}
	}
	return nil
}

func verifySig(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if po, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(p, crypto.SHA256, digest, sig, po)
		}
		return rsa.VerifyPKCS1v15(p, crypto.SHA256, digest, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			return errors.New("hsm test: ecdsa signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("hsm test: unsupported public key %T", pub)
}

// Package testenv lets tests find the real components they need (SoftHSM,
// xmlsec1, slapd, PostgreSQL) and decides what happens when one is missing.
//
// On a developer machine a missing component skips the test with a hint to run
// `make deps`. Under CI (CI=true) or with AORTAGW_REQUIRE_ALL=1 it fails the
// test instead, so CI can never go green by skipping the real-component tests.
//
// Everything here is safe for concurrent use by parallel tests.
package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Strict reports whether missing components must fail tests rather than skip them.
func Strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("AORTAGW_REQUIRE_ALL") == "1"
}

// Missing fails the test under Strict and skips it otherwise: for any
// component a test needs that the helpers here do not cover.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("required test component missing: %s (CI=true forbids skipping; run `make deps`)", msg)
	}
	t.Skipf("%s; run `make deps` to install it", msg)
}

// RequireTool returns the absolute path of each named program, or fails/skips.
func RequireTool(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, 0, len(names))
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			// slapd lives in /usr/sbin, which is not on every PATH.
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
				if _, serr := os.Stat(dir + "/" + n); serr == nil {
					p, err = dir+"/"+n, nil
					break
				}
			}
		}
		if err != nil {
			Missing(t, "program %q not found", n)
			return nil
		}
		paths = append(paths, p)
	}
	return paths
}

// SoftHSMModulePaths are the places Debian and other distributions install SoftHSM2.
var SoftHSMModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSMModule returns the path of the SoftHSM2 PKCS#11 module, or fails/skips.
func SoftHSMModule(t testing.TB) string {
	t.Helper()
	if p := FindSoftHSMModule(); p != "" {
		return p
	}
	Missing(t, "SoftHSM2 module not found in %v", SoftHSMModulePaths)
	return ""
}

// FindSoftHSMModule returns the first SoftHSM2 module path that exists, or "".
func FindSoftHSMModule() string {
	if p := os.Getenv("AORTAGW_SOFTHSM_MODULE"); p != "" {
		return p
	}
	for _, p := range SoftHSMModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// PostgresAdminURL is the server tests create their throwaway databases on.
// Override with AORTAGW_TEST_POSTGRES.
func PostgresAdminURL() string {
	if u := os.Getenv("AORTAGW_TEST_POSTGRES"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var dbSeq atomic.Int64

// PostgresDatabase creates a fresh, empty database for one test and returns its
// connection URL. The database is dropped when the test ends. A server that
// cannot be reached fails or skips the test.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		Missing(t, "PostgreSQL not reachable at %s: %v", redactURL(admin), err)
		return ""
	}
	defer conn.Close(context.Background())
	name := fmt.Sprintf("aortagw_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, dbSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse postgres url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable url>"
	}
	return u.Redacted()
}

// ShortTempDir returns a short temporary directory (unix socket paths are
// limited to 108 bytes, and t.TempDir can exceed that).
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agw")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return strings.TrimRight(dir, "/")
}

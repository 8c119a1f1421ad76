package gateway

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/testenv"
)

// TestDemo runs the whole demo flow in-process against SoftHSM: PKI with
// card and HSM tokens, simulators over mTLS, the gateway from its config
// file, enrolment after the SBV-Z checks, mandate with the HND key, query,
// trigger, LSP record and audit verification; then reruns it in the same
// directory. It is the only test in this package that loads the PKCS#11
// module (SoftHSM reads SOFTHSM2_CONF once per process).
func TestDemo(t *testing.T) {
	module := testenv.SoftHSMModule(t)
	if os.Getenv("SOFTHSM2_CONF") != "" {
		testenv.Missing(t, "SOFTHSM2_CONF is set for this process; the demo needs its own token directory")
	}
	dir := filepath.Join(testenv.ShortTempDir(t), "demo")
	t.Cleanup(func() { _ = os.Unsetenv("SOFTHSM2_CONF") })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var out bytes.Buffer
	require.NoError(t, RunDemo(ctx, DemoOptions{Dir: dir, Out: &out, ModulePath: module}), out.String())
	s := out.String()
	for _, want := range []string{"1. Create the test PKI", "WID check", "verified by SBV-Z", "HTTP 201",
		"gateway -> XIS  HTTP 200", "callback", "The LSP accepted 2 messages", "Chain verified: 7 records intact", "The demo passed"} {
		assert.Contains(t, s, want)
	}
	assert.NotContains(t, s, "FAILED")
	for _, secret := range []string{"pin-value"} {
		assert.NotContains(t, s, secret)
	}
	assert.FileExists(t, filepath.Join(dir, "aortagw.db"))

	// A directory the demo did not make is refused.
	other := filepath.Join(testenv.ShortTempDir(t), "notdemo")
	require.NoError(t, os.MkdirAll(other, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(other, "precious.txt"), []byte("x"), 0o600))
	err := RunDemo(ctx, DemoOptions{Dir: other, Out: &bytes.Buffer{}, ModulePath: module})
	require.ErrorIs(t, err, ErrDemo)
	assert.True(t, strings.Contains(err.Error(), "--force"), err.Error())
	assert.FileExists(t, filepath.Join(other, "precious.txt"))
}

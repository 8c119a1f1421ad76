//go:build cgo && !nopkcs11

package pkcs11

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aortagw/aortagw/internal/testenv"
	"go.uber.org/goleak"
)

// softhsmDir is the throwaway SoftHSM token directory of this test binary ("" when SoftHSM is
// not installed). SOFTHSM2_CONF must be set before the module is first initialised, and a
// process reads it only once, hence TestMain.
var softhsmDir string

func TestMain(m *testing.M) {
	code := func() int {
		if testenv.FindSoftHSMModule() != "" {
			dir, err := os.MkdirTemp("", "agw-p11")
			if err != nil {
				fmt.Fprintln(os.Stderr, "softhsm temp dir:", err)
				return 1
			}
			defer os.RemoveAll(dir)
			tokDir := filepath.Join(dir, "tokens")
			conf := filepath.Join(dir, "softhsm2.conf")
			if err := os.Mkdir(tokDir, 0o700); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			cfg := "directories.tokendir = " + tokDir + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
			if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			os.Setenv("SOFTHSM2_CONF", conf)
			softhsmDir = dir
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// softhsm returns the SoftHSM module path or skips (fails under CI).
func softhsm(t testing.TB) string {
	t.Helper()
	p := testenv.SoftHSMModule(t)
	if softhsmDir == "" {
		t.Fatal("SoftHSM found after TestMain ran")
	}
	return p
}

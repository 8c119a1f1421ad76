package pkcs11

import (
	"runtime"
	"testing"
)

func TestTuneGOMAXPROCS(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })

	t.Setenv("GOMAXPROCS", "3") // the operator's choice wins
	runtime.GOMAXPROCS(3)
	if got := TuneGOMAXPROCS(); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Fatalf("GOMAXPROCS set in the environment was overridden: got %d", got)
	}

	t.Setenv("GOMAXPROCS", "")
	if got := TuneGOMAXPROCS(); got != 2*startProcs || got != SigningGOMAXPROCS() {
		t.Fatalf("TuneGOMAXPROCS = %d, want twice the start value %d", got, startProcs)
	}
	if TuneGOMAXPROCS() != 2*startProcs {
		t.Fatal("a second call must not double again")
	}
}

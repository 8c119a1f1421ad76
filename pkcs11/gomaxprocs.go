package pkcs11

import (
	"os"
	"runtime"
)

// SigningGOMAXPROCS is the GOMAXPROCS for a process that signs through this
// package: twice the runtime's default (the CPUs it may use). A goroutine
// inside a C call keeps its P until the runtime's monitor takes it back
// (after 20 µs to 10 ms), and every signature ends with a handoff from the
// goroutine that made the C call to the caller (CONVENTIONS G8). With as many
// Ps as CPUs and every CPU inside C_Sign, that caller waits for a P; with
// spare Ps it runs at once. Measured on 2 CPUs (docs/benchmarks.md): the pool
// against a bare C_Sign loop at concurrency 2 went from a median 0.88 to 0.97
// on a quiet host; when the host is contended both settings drop to 0.8-0.9.
func SigningGOMAXPROCS() int { return 2 * startProcs }

// startProcs is GOMAXPROCS as the process started (the runtime's default,
// which follows a cgroup CPU limit, or the environment's GOMAXPROCS).
var startProcs = runtime.GOMAXPROCS(0)

// TuneGOMAXPROCS sets GOMAXPROCS to SigningGOMAXPROCS unless the GOMAXPROCS
// environment variable is set (the operator's choice wins), and returns the
// value in effect. Call it once at process start, before signing.
func TuneGOMAXPROCS() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(SigningGOMAXPROCS())
	return runtime.GOMAXPROCS(0)
}

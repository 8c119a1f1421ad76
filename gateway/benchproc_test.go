package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aortagw/aortagw/pkcs11"
)

// The gateway benchmark can run the gateway in a process of its own (the
// test binary started again with benchChildEnv set), so that its CPU time
// and memory are its own and not mixed with the load generator's and the
// LSP simulator's. The child talks over stdin/stdout, one line per command:
//
//	child -> parent: "ready <xis addr> <admin addr>" once it serves
//	parent -> child: "mem"  child -> parent: "mem <heap in use bytes> <goroutines>" (after a GC)
//	parent closes stdin: the child shuts down and exits.
//
// AORTAGW_BENCH_CHILD_CPUPROFILE=FILE writes the child's CPU profile.
const (
	benchChildEnv    = "AORTAGW_BENCH_CHILD_CONFIG"
	benchChildDSNEnv = "AORTAGW_BENCH_CHILD_DSN"
)

// benchChildMain is the child's main; TestMain calls it when benchChildEnv is set.
func benchChildMain(cfgPath string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1
	}
	pkcs11.TuneGOMAXPROCS() // as the aortagw binary does
	cfg := DefaultConfig()
	if err := cfg.LoadFile(cfgPath); err != nil {
		return fail(err)
	}
	if dsn := os.Getenv(benchChildDSNEnv); dsn != "" {
		cfg.Store.DSN = dsn
	}
	if path := os.Getenv("AORTAGW_BENCH_CHILD_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	ctx := context.Background()
	rt, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return fail(err)
	}
	defer rt.Close()
	if err := rt.Server.Start(ctx); err != nil {
		return fail(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Server.Shutdown(sctx)
	}()
	fmt.Printf("ready %s %s\n", rt.Server.XISAddr(), rt.Server.AdminAddr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "mem" {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("mem %d %d\n", ms.HeapInuse, runtime.NumGoroutine())
		}
	}
	return 0
}

// benchChild is the parent's handle on a gateway child process.
type benchChild struct {
	cmd         *exec.Cmd
	in          io.WriteCloser
	out         *bufio.Scanner
	xis, admin  string
	cpuPerCores float64 // logical CPUs of the machine, for capacity figures
}

// startBenchChild starts the gateway from cfgPath with the store at dsn in
// a child process and waits until it serves.
func startBenchChild(b *testing.B, cfgPath, dsn string) *benchChild {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+cfgPath, benchChildDSNEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &benchChild{cmd: cmd, in: in, out: bufio.NewScanner(outR), cpuPerCores: float64(runtime.NumCPU())}
	line, err := c.line()
	if err != nil {
		c.stop()
		b.Fatalf("gateway child: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" {
		c.stop()
		b.Fatalf("gateway child: unexpected %q", line)
	}
	c.xis, c.admin = "http://"+f[1], "http://"+f[2]
	return c
}

func (c *benchChild) line() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	return c.out.Text(), nil
}

// cpu returns the child's user+system CPU time so far.
func (c *benchChild) cpu() time.Duration { return procCPU(c.cmd.Process.Pid) }

// mem asks the child for its heap in use (after a GC) and goroutine count,
// and reads its RSS.
func (c *benchChild) mem() (heapMiB float64, goroutines int, rssKB string) {
	if _, err := io.WriteString(c.in, "mem\n"); err != nil {
		return -1, -1, "?"
	}
	line, err := c.line()
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		return -1, -1, "?"
	}
	h, _ := strconv.ParseFloat(f[1], 64)
	g, _ := strconv.Atoi(f[2])
	return h / (1 << 20), g, procRSS(c.cmd.Process.Pid)
}

func (c *benchChild) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// procCPU reads utime+stime of a process from /proc/<pid>/stat (clock ticks
// of 10 ms, USER_HZ = 100 on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime is field 14
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU returns this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procRSS returns VmRSS of a process as /proc reports it.
func procRSS(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

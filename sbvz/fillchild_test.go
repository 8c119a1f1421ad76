package sbvz

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aortagw/aortagw/internal/pemfile"
)

// fillChildMain runs the initial fill in a child process when the test
// binary is re-executed by TestFillKillAndResume, so the test can kill -9 it.
func fillChildMain() bool {
	if os.Getenv("SBVZ_FILL_CHILD") != "1" {
		return false
	}
	os.Exit(runFillChild())
	return true
}

func runFillChild() int {
	env := os.Getenv
	key, err := pemfile.ReadPrivateKey(env("SBVZ_FILL_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	chain, err := pemfile.ReadCertificates(env("SBVZ_FILL_CERT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cas, err := pemfile.ReadCertificates(env("SBVZ_FILL_CA"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ep, err := EndpointsFor(env("SBVZ_FILL_ENDPOINT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := NewClient(ClientConfig{Endpoints: ep, Key: key, Chain: chain, PinnedCAs: cas, ServerName: "localhost", Timeout: 30 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	r, _ := strconv.ParseFloat(env("SBVZ_FILL_RATE"), 64)
	_, err = Fill(context.Background(), FillConfig{InPath: env("SBVZ_FILL_IN"), OutPath: env("SBVZ_FILL_OUT"), StatePath: env("SBVZ_FILL_STATE"),
		Rate: r, Appointment: true, Progress: os.Stderr, ProgressEvery: time.Millisecond}, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func writePEM(path, typ string, der ...[]byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for _, d := range der {
		if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: d}); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func certDER(cs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}

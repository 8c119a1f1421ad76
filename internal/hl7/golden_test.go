package hl7

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestBuildQueryGolden pins the exact bytes of both query templates.
func TestBuildQueryGolden(t *testing.T) {
	for _, in := range []string{QURXQuery, GQZGQuery} {
		t.Run(in, func(t *testing.T) {
			b, err := BuildQuery(validParams(in))
			require.NoError(t, err)
			golden := filepath.Join("testdata", in+".golden.xml")
			if *update {
				require.NoError(t, os.WriteFile(golden, b, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(b))
		})
	}
}

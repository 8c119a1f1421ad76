package setup_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/iam/setup"
)

// TestDocumentedExampleParses keeps the example in docs/iam.md valid.
func TestDocumentedExampleParses(t *testing.T) {
	b, err := os.ReadFile("../../docs/iam.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)### Example configuration\n\n```yaml\n(.*?)```").FindSubmatch(b)
	require.NotNil(t, m, "example block missing")
	_, err = setup.Parse(m[1])
	require.NoError(t, err)
}

package lsp

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aortagw/aortagw/internal/hl7"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestResponsesGolden pins the simulator's answer shapes (frozen clock and
// dataset) and checks that the client's reader accepts them.
func TestResponsesGolden(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ds := NewDataset(1, 2, now)
	req := &hl7.Message{MessageIDRoot: "2.16.528.1.1007.3.3.98004271.1", MessageIDExt: "m-1", SenderApp: testApp,
		QueryIDRoot: "2.16.528.1.1007.3.3.98004271.1", QueryIDExt: "q-m-1", BSN: WellKnownBSNs[0]}
	p := ds.Patient(WellKnownBSNs[0])
	tests := []struct {
		name, code string
		body       []byte
	}{
		{"QURX_IN990113NL", "OK", medicationResponse(req, p, "1", now)},
		{"QURX_IN990113NL-empty", "NF", medicationResponse(req, nil, "2", now)},
		{"GQZG_IN000002NL", "OK", genericResponse(req, p, "3", now)},
		{"MCCI_IN000002NL", "", rejectAck(req, "4", now, "ZIM-INT-01", "Interactie wordt niet ondersteund")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			golden := filepath.Join("testdata", tc.name+".golden.xml")
			if *update {
				require.NoError(t, os.WriteFile(golden, tc.body, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(tc.body))
			m, err := hl7.Read(tc.body)
			require.NoError(t, err)
			assert.Equal(t, tc.code, m.QueryResponseCode)
			assert.Equal(t, "m-1", m.Ack.TargetExt)
			assert.Equal(t, hl7.LSPApp, m.SenderApp)
			assert.Equal(t, testApp, m.ReceiverApp)
		})
	}
}

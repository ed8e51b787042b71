package main

// Reporting the cells of the compatibility matrix (tests/matrix/README.md): one JSON line per
// (client, scenario) appended to $TIDEPOOL_MATRIX when that scenario has ended, and a
// `MATRIX <client> <scenario> <RESULT> <detail>` line on stdout, as tests/compat/matrix.py does.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// matrixScenarios: the ids of tests/matrix/scenarios.json this program covers (all of them).
var matrixScenarios = []string{
	"codec-none", "codec-gzip", "codec-snappy", "codec-lz4", "codec-zstd", "idempotence",
	"group-rebalance", "group-cooperative", "commits", "admin", "compaction",
}

const matrixDetailMax = 400

type matrixCell struct {
	Client   string `json:"client"`
	Scenario string `json:"scenario"`
	Result   string `json:"result"`
	Detail   string `json:"detail"`
}

type matrix struct {
	client string // the id in scenarios.json: franz-go or sarama
	path   string // $TIDEPOOL_MATRIX; empty: print only
	mu     sync.Mutex
	done   map[string]bool
	errs   []string // the file could not be written
}

func newMatrix(client string) *matrix {
	return &matrix{client: client, path: os.Getenv("TIDEPOOL_MATRIX"), done: map[string]bool{}}
}

// oneLine keeps a detail to its first line, bounded.
func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > matrixDetailMax {
		s = s[:matrixDetailMax] + "..."
	}
	return s
}

// report records one cell once (a second report of the same scenario is ignored).
func (m *matrix) report(scenario, result, detail string) {
	detail = oneLine(detail)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done[scenario] {
		return
	}
	m.done[scenario] = true
	line := fmt.Sprintf("MATRIX %s %s %s", m.client, scenario, strings.ToUpper(result))
	if detail != "" {
		line += " " + detail
	}
	fmt.Println(line)
	if m.path == "" {
		return
	}
	encoded, err := json.Marshal(matrixCell{m.client, scenario, result, detail})
	if err == nil {
		var f *os.File
		f, err = os.OpenFile(m.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			// One write per line: programs running at once append to the same file.
			_, err = f.Write(append(encoded, '\n'))
			err = errors.Join(err, f.Close())
		}
	}
	if err != nil {
		m.errs = append(m.errs, fmt.Sprintf("%s: %v", scenario, err))
	}
}

// fromChecks reports pass, or fail with the first failed check `match` accepts (nil: any).
func (m *matrix) fromChecks(scenario string, c *Checks, match func(string) bool) {
	if failure, failed := c.FirstFailure(match); failed {
		m.report(scenario, "fail", failure)
	} else {
		m.report(scenario, "pass", "")
	}
}

// rest reports every scenario not reported yet as failed: a cell is never silently missing.
func (m *matrix) rest(detail string, except map[string]bool) {
	for _, s := range matrixScenarios {
		m.mu.Lock()
		done := m.done[s]
		m.mu.Unlock()
		if !done && !except[s] {
			m.report(s, "fail", detail)
		}
	}
}

// writeErrors: the matrix file could not be written (the run fails then).
func (m *matrix) writeErrors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.errs...)
}

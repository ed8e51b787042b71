package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Checks collects check outcomes by name, as tests/compat/compat_common.py's Checks does: a
// check fails when any single assertion under it fails, and a few reasons are kept per check so
// the report says what went wrong.
type Checks struct {
	client      string
	parent      *Checks // a scope forwards everything to its parent as well
	mu          sync.Mutex
	order       []string
	passed      map[string]int
	failed      map[string][]string
	failedCount map[string]int
	skipped     map[string]string
}

const reasonsKeptMax = 8

func NewChecks(client string) *Checks {
	return &Checks{
		client:      client,
		passed:      map[string]int{},
		failed:      map[string][]string{},
		failedCount: map[string]int{},
		skipped:     map[string]string{},
	}
}

func (c *Checks) note(name string) {
	for _, n := range c.order {
		if n == name {
			return
		}
	}
	c.order = append(c.order, name)
}

// Scope returns a Checks for one scenario of the matrix: what it records is also recorded here,
// and FirstFailure on the scope tells that scenario's result.
func (c *Checks) Scope() *Checks {
	s := NewChecks(c.client)
	s.parent = c
	return s
}

// Check records one assertion under check `name` and returns ok, so callers can branch.
func (c *Checks) Check(name string, ok bool, reason string, args ...any) bool {
	if !ok && len(args) > 0 {
		reason = fmt.Sprintf(reason, args...)
	}
	c.record(name, ok, reason)
	return ok
}

func (c *Checks) record(name string, ok bool, reason string) {
	c.mu.Lock()
	c.note(name)
	if ok {
		c.passed[name]++
	} else {
		c.failedCount[name]++
		if len(c.failed[name]) < reasonsKeptMax {
			c.failed[name] = append(c.failed[name], reason)
		}
	}
	c.mu.Unlock()
	if c.parent != nil {
		c.parent.record(name, ok, reason)
	}
}

// Fail records a failed check, e.g. a client call that returned an error.
func (c *Checks) Fail(name string, reason string, args ...any) {
	c.Check(name, false, reason, args...)
}

// Err records err under `name` as a failure (or one passing assertion when err is nil) and
// says whether err was nil.
func (c *Checks) Err(name string, err error, what string) bool {
	if err == nil {
		return c.Check(name, true, "")
	}
	return c.Check(name, false, "%s: %v", what, err)
}

// Skip records a check not run, with the reason; never silent.
func (c *Checks) Skip(name, reason string) {
	c.mu.Lock()
	c.note(name)
	c.skipped[name] = reason
	c.mu.Unlock()
	if c.parent != nil {
		c.parent.Skip(name, reason)
	}
}

// FirstFailure returns "check name: its first reason" for the first failed check (in the order
// checks were first recorded) whose name `match` accepts (nil: any), and whether there is one.
func (c *Checks) FirstFailure(match func(name string) bool) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.order {
		if c.failedCount[name] == 0 || (match != nil && !match(name)) {
			continue
		}
		reason := ""
		if len(c.failed[name]) > 0 {
			reason = c.failed[name][0]
		}
		return name + ": " + reason, true
	}
	return "", false
}

func (c *Checks) OK() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.failedCount) == 0
}

// Report prints one line per check and the verdict, in compat_common.py's format, and returns
// the exit code.
func (c *Checks) Report(summary string, notes []string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Printf("== %s: %s\n", c.client, summary)
	for _, n := range notes {
		fmt.Printf("   note: %s\n", n)
	}
	failed := 0
	for _, name := range c.order {
		switch {
		case c.failedCount[name] > 0:
			failed++
			fmt.Printf("  FAIL %s: %d failed, %d passed\n", name, c.failedCount[name], c.passed[name])
			for _, r := range c.failed[name] {
				fmt.Printf("       - %s\n", r)
			}
			if hidden := c.failedCount[name] - len(c.failed[name]); hidden > 0 {
				fmt.Printf("       - ... and %d more\n", hidden)
			}
		case c.skipped[name] != "":
			fmt.Printf("  SKIP %s: %s\n", name, c.skipped[name])
		default:
			fmt.Printf("  ok   %s (%d assertions)\n", name, c.passed[name])
		}
	}
	verdict := "PASS"
	if failed > 0 {
		verdict = "FAIL"
	}
	fmt.Printf("== %s: %s (%d checks ok or skipped, %d failed)\n", c.client, verdict, len(c.order)-failed, failed)
	os.Stdout.Sync()
	if failed > 0 {
		return 1
	}
	return 0
}

// Deadline bounds a wait loop, so no wait is unbounded.
type Deadline struct{ at time.Time }

func NewDeadline(d time.Duration) Deadline { return Deadline{time.Now().Add(d)} }

func (d Deadline) Remaining() time.Duration {
	if r := time.Until(d.at); r > 0 {
		return r
	}
	return 0
}

func (d Deadline) Expired() bool { return !time.Now().Before(d.at) }

// waitUntil polls cond every `every` until it returns true or d expires; says whether it did.
func waitUntil(d Deadline, every time.Duration, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if d.Expired() {
			return false
		}
		time.Sleep(min(every, d.Remaining()+time.Millisecond))
	}
}

package main

import (
	"fmt"
	"io"
	"strings"
)

// Result is one assertion about one subject.
type Result struct {
	Check   string
	Subject string
	Err     error
}

// Report collects results in the order the checks ran.
type Report struct {
	results []Result
	order   []string
	seen    map[string]bool
}

func (r *Report) add(res Result) {
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if !r.seen[res.Check] {
		r.seen[res.Check] = true
		r.order = append(r.order, res.Check)
	}
	r.results = append(r.results, res)
}

// Pass records that check holds for subject.
func (r *Report) Pass(check, subject string) { r.add(Result{Check: check, Subject: subject}) }

// Fail records that check does not hold for subject.
func (r *Report) Fail(check, subject, format string, a ...any) {
	r.add(Result{Check: check, Subject: subject, Err: fmt.Errorf(format, a...)})
}

// Skip records a check that could not run (printed, never a failure).
func (r *Report) Skip(check, why string) {
	r.add(Result{Check: check, Subject: "skip: " + why})
}

// Failures are the results whose check did not hold.
func (r *Report) Failures() []Result {
	var out []Result
	for _, res := range r.results {
		if res.Err != nil {
			out = append(out, res)
		}
	}
	return out
}

// FailuresOf are the failures of one check.
func (r *Report) FailuresOf(check string) []Result {
	var out []Result
	for _, res := range r.Failures() {
		if res.Check == check {
			out = append(out, res)
		}
	}
	return out
}

// Print writes one line per check: "ok" with its subjects, or one "FAIL"
// line per failed subject.
func (r *Report) Print(w io.Writer, prefix string) {
	for _, check := range r.order {
		var subjects []string
		var failed []Result
		for _, res := range r.results {
			if res.Check != check {
				continue
			}
			if res.Err != nil {
				failed = append(failed, res)
			} else if res.Subject != "" {
				subjects = append(subjects, res.Subject)
			}
		}
		if len(failed) == 0 {
			fmt.Fprintf(w, "%sok    %s: %s\n", prefix, check, summarize(subjects))
			continue
		}
		for _, f := range failed {
			fmt.Fprintf(w, "%sFAIL  %s: %s: %v\n", prefix, check, f.Subject, f.Err)
		}
	}
}

func summarize(subjects []string) string {
	if len(subjects) == 0 {
		return "nothing to check"
	}
	uniq := []string{}
	seen := map[string]bool{}
	for _, s := range subjects {
		if !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	if len(uniq) > 6 {
		return fmt.Sprintf("%s and %d more", strings.Join(uniq[:6], ", "), len(uniq)-6)
	}
	return strings.Join(uniq, ", ")
}

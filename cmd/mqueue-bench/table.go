package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// row is one line of the table. Negative numbers mean "not measured".
type row struct {
	section  string // http, engine, scale
	target   string
	cas      string
	rate     float64
	unit     string
	p50, p99 time.Duration
	ratio    float64 // to the reference of the section (see printTable)
	p99ratio float64
	allocs   float64 // per request or per message
	syscalls float64 // read+write syscalls per request
	cpu      time.Duration
	batch    float64 // messages per group commit
	notes    []string
}

// printTable writes the markdown table.
func printTable(w io.Writer, header []string, rows []row) {
	for _, h := range header {
		fmt.Fprintf(w, "<!-- %s -->\n", h)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ratios: http rows are to the ceiling of the same case (median of per-round ratios); scale rows are backlog to empty; engine Append rows are to RawWriteFsync of the same batch size.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| section | server / package | case | rate | p50 | p99 | × ref rate | × ref p99 | allocs/msg | syscalls/req | CPU/req | msgs/commit | notes |")
	fmt.Fprintln(w, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.section, r.target, r.cas,
			fmtRate(r.rate, r.unit),
			fmtDur(r.p50), fmtDur(r.p99),
			fmtRatio(r.ratio), fmtRatio(r.p99ratio),
			fmtNum(r.allocs, 2), fmtNum(r.syscalls, 2), fmtDur(r.cpu), fmtNum(r.batch, 1),
			strings.Join(r.notes, "; "))
	}
}

func fmtRate(v float64, unit string) string {
	if v <= 0 {
		return "–"
	}
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM %s", v/1e6, unit)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk %s", v/1e3, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0fµs", float64(d)/1e3)
}

func fmtRatio(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func fmtNum(v float64, prec int) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

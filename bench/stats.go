package main

import (
	"sort"
	"time"
)

// Summary is the median, minimum and maximum of a set of samples.
type Summary struct {
	N                int
	Median, Min, Max time.Duration
}

// Summarize returns the summary of xs; N is 0 when xs is empty. The median of
// an even count is the mean of the two middle samples.
func Summarize(xs []time.Duration) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = s[n/2-1] + (s[n/2]-s[n/2-1])/2
	}
	return Summary{N: n, Median: med, Min: s[0], Max: s[n-1]}
}

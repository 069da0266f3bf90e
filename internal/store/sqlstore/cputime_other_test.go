//go:build !unix

package sqlstore

import "time"

// processCPU is not measured here: the benchmarks report no cpu-µs/cert.
func processCPU() time.Duration { return 0 }

//go:build race

package grpcapi

// raceEnabled: built with -race, whose sync.Pool drops a quarter of what
// it is given.
const raceEnabled = true

// Package cache is the server's response cache: a least-recently-used map
// from a request's key (a SHA-256 of everything that decides its answer)
// to its answer, bounded by the bytes the answers hold.
package cache

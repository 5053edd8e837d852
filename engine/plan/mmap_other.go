//go:build !unix

package plan

import "os"

// mapFile reads path into memory (no mapping on this system).
func mapFile(path string) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}

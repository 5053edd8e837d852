// Package tempfile creates the temporary files kiln writes a result into
// before renaming it into place (plans, timing caches), so that a reader
// never sees half a file.
//
// Unlike os.CreateTemp, whose files are 0600, Create makes them 0644 less
// the process's umask, the mode the renamed file keeps: a plan or cache
// that kiln serve, another user or a container reads is as readable as
// any file the user writes.
package tempfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Create creates a new file in dir named prefix followed by a random
// number, open for writing, with mode 0644 less the umask.
func Create(dir, prefix string) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, fmt.Sprintf("%s%d", prefix, rand.Uint32()))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("tempfile: no free name for %s* in %s", prefix, dir)
}

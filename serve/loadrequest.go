package serve

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kilnai/kiln/serve/repository"
)

// LoadRequest is what an explicit load may carry, as Triton's load_model
// parameters: a config override and the model's files.
type LoadRequest struct {
	// Config, when not empty, is a model config in JSON (the "config"
	// parameter) used instead of the model folder's config.pbtxt; it is
	// checked as a config.pbtxt is.
	Config []byte
	// Files are the files of the model folder by path in it ("file:<path>"
	// parameters, such as "1/model.onnx"); with them the model is loaded
	// from these files alone, and Config must be given too. A path that
	// would leave the model folder is refused.
	Files map[string][]byte
}

// prepare checks lr and returns the override it makes: the parsed config,
// and the folder written with the files (Dir, inside a temporary folder
// the caller removes).
func (lr LoadRequest) prepare(name string) (repository.Override, error) {
	var ov repository.Override
	if len(lr.Config) == 0 && len(lr.Files) == 0 {
		return ov, nil
	}
	if len(lr.Files) > 0 && len(lr.Config) == 0 {
		return ov, fmt.Errorf("%w: file parameters need the config parameter too", ErrInvalid)
	}
	if name == "" || filepath.Base(name) != name || !filepath.IsLocal(name) {
		return ov, fmt.Errorf("%w: bad model name %q", ErrInvalid, name)
	}
	cfg, err := repository.ParseConfigJSON(lr.Config)
	if err != nil {
		return ov, fmt.Errorf("config parameter: %w", err)
	}
	if cfg.Name != "" && cfg.Name != name {
		return ov, fmt.Errorf("%w: config parameter: the config names the model %q", repository.ErrConfig, cfg.Name)
	}
	ov.Config = cfg
	if len(lr.Files) == 0 {
		return ov, nil
	}
	for p := range lr.Files {
		if p == "" || !filepath.IsLocal(p) || strings.ContainsAny(p, "\\:\x00") {
			return ov, fmt.Errorf("%w: file:%s must name a file inside the model folder", ErrInvalid, p)
		}
	}
	tmp, err := os.MkdirTemp("", "kiln-load-")
	if err != nil {
		return ov, err
	}
	dir := filepath.Join(tmp, name)
	for p, b := range lr.Files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		err := os.MkdirAll(filepath.Dir(full), 0o755)
		if err == nil {
			err = os.WriteFile(full, b, 0o644)
		}
		if err != nil {
			os.RemoveAll(tmp)
			// a path that is both a file and a folder ("1" and "1/model.onnx"),
			// a name too long for the file system: the model's folder cannot
			// be written, which Triton reports (INTERNAL) as here
			return ov, fmt.Errorf("failed to poll from model repository: file:%s: %w", p, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		os.RemoveAll(tmp)
		return ov, err
	}
	ov.Dir = dir
	return ov, nil
}

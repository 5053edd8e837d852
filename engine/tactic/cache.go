package tactic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/kilnai/kiln/device"
	"github.com/kilnai/kiln/internal/tempfile"
	"github.com/kilnai/kiln/internal/version"
)

var (
	// ErrCorrupt is returned by Open for a timing cache file that cannot be
	// read as one (truncated, not JSON, bad entries).
	ErrCorrupt = errors.New("tactic: corrupt timing cache")
	// ErrVersion is returned by Open for a timing cache written in a format
	// version this kiln does not read.
	ErrVersion = errors.New("tactic: unsupported timing cache version")
	// ErrNoPath is returned by Save on a cache made with New.
	ErrNoPath = errors.New("tactic: timing cache has no file")
)

// Format and Version identify the timing cache file format: a JSON object
// {"format": Format, "version": Version, "entries": [...]}, each entry
// {"device", "layer", "tactic", "ns"}, and "timer" for a time measured by
// Select (CPUTimer: how it was measured).
const (
	Format  = "kiln-timing-cache"
	Version = 1
)

// key identifies one measurement; timer is how it was measured ("" for
// Lookup and Store, CPUTimer for Select's).
type key struct{ device, layer, tactic, timer string }

// Cache is a timing cache: the measured time of a tactic of a layer on a
// device. It is safe for concurrent use.
type Cache struct {
	path    string
	mu      sync.Mutex
	entries map[key]time.Duration
	scratch map[key]int64 // scratch bytes, where measured
}

// fileEntry and file are the JSON form.
type fileEntry struct {
	Device string `json:"device"`
	Layer  string `json:"layer"`
	Tactic string `json:"tactic"`
	NS     int64  `json:"ns"`
	// Scratch is the peak scratch memory the tactic used, in bytes, when
	// it was measured (absent: not measured).
	Scratch *int64 `json:"scratch_bytes,omitempty"`
	// Timer names how the time was measured: CPUTimer for Select's, absent
	// for Store's (and for CPU times of a kiln before CPUTimer, which Select
	// does not use).
	Timer string `json:"timer,omitempty"`
}

type file struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	Entries []fileEntry `json:"entries"`
}

// New returns an empty cache that lives in memory only (Save fails).
func New() *Cache { return &Cache{entries: map[key]time.Duration{}, scratch: map[key]int64{}} }

// Open reads the timing cache at path. A missing file is an empty cache
// (Save creates it); a file that is not a timing cache, or is damaged, is
// an error wrapping ErrCorrupt or ErrVersion that names the file.
func Open(path string) (*Cache, error) {
	c := &Cache{path: path, entries: map[key]time.Duration{}, scratch: map[key]int64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tactic: timing cache: %w", err)
	}
	if err := c.decode(b); err != nil {
		return nil, fmt.Errorf("%s: %w (delete the file to start a new cache)", path, err)
	}
	return c, nil
}

// decode adds the entries of a cache file's contents to c.
func (c *Cache) decode(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var f file
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON object", ErrCorrupt)
	}
	if f.Format != Format {
		return fmt.Errorf("%w: format %q, want %q", ErrCorrupt, f.Format, Format)
	}
	if f.Version != Version {
		return fmt.Errorf("%w: version %d, this kiln reads version %d", ErrVersion, f.Version, Version)
	}
	for i, e := range f.Entries {
		if e.Layer == "" || e.Tactic == "" || e.NS <= 0 {
			return fmt.Errorf("%w: entry %d has an empty layer or tactic or a time <= 0", ErrCorrupt, i)
		}
		k := key{e.Device, e.Layer, e.Tactic, e.Timer}
		c.entries[k] = time.Duration(e.NS)
		if e.Scratch != nil {
			if *e.Scratch < 0 {
				return fmt.Errorf("%w: entry %d has negative scratch bytes", ErrCorrupt, i)
			}
			c.scratch[k] = *e.Scratch
		}
	}
	return nil
}

// Path returns the file the cache was opened from ("" for New).
func (c *Cache) Path() string { return c.path }

// Len returns the number of entries, of every device.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Key is what a measurement on the device with fingerprint fp is filed
// under: fp with the kiln version ("kiln"), whose kernels were timed, so
// that another kiln measures again. Every device's timings are filed so,
// the CPU's (tactic.Select) and a GPU's alike: Lookup, Store and their
// scratch forms apply it to the fingerprint they are given.
func Key(fp device.Fingerprint) device.Fingerprint {
	out := make(device.Fingerprint, len(fp)+1)
	for k, v := range fp {
		out[k] = v
	}
	out["kiln"] = version.Kiln
	return out
}

func entryKey(fp device.Fingerprint, layer, tactic, timer string) key {
	return key{Key(fp).String(), layer, tactic, timer}
}

// Lookup returns the time recorded for a tactic of a layer (a Signature)
// on the device with fingerprint fp (filed under Key(fp)) by Store. Select's
// times, measured otherwise (CPUTimer), are LookupTimer's.
func (c *Cache) Lookup(fp device.Fingerprint, layer, tactic string) (time.Duration, bool) {
	return c.LookupTimer(fp, layer, tactic, "")
}

// LookupTimer is Lookup of a time measured by the named timer (CPUTimer
// for Select's).
func (c *Cache) LookupTimer(fp device.Fingerprint, layer, tactic, timer string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.entries[entryKey(fp, layer, tactic, timer)]
	return d, ok
}

// Store records the time of a tactic of a layer on the device with
// fingerprint fp, replacing an earlier one. Times below a nanosecond are
// stored as one.
func (c *Cache) Store(fp device.Fingerprint, layer, tactic string, d time.Duration) {
	c.StoreTimer(fp, layer, tactic, "", d)
}

// StoreTimer is Store of a time measured by the named timer.
func (c *Cache) StoreTimer(fp device.Fingerprint, layer, tactic, timer string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[entryKey(fp, layer, tactic, timer)] = max(d, 1)
}

// LookupScratch returns the peak scratch memory recorded for a tactic of a
// layer on the device with fingerprint fp.
func (c *Cache) LookupScratch(fp device.Fingerprint, layer, tactic string) (int64, bool) {
	return c.LookupScratchTimer(fp, layer, tactic, "")
}

// LookupScratchTimer is LookupScratch of the entry of the named timer.
func (c *Cache) LookupScratchTimer(fp device.Fingerprint, layer, tactic, timer string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.scratch[entryKey(fp, layer, tactic, timer)]
	return b, ok
}

// StoreScratch records the peak scratch memory of a tactic of a layer.
func (c *Cache) StoreScratch(fp device.Fingerprint, layer, tactic string, bytes int64) {
	c.StoreScratchTimer(fp, layer, tactic, "", bytes)
}

// StoreScratchTimer is StoreScratch of the entry of the named timer.
func (c *Cache) StoreScratchTimer(fp device.Fingerprint, layer, tactic, timer string, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scratch[entryKey(fp, layer, tactic, timer)] = bytes
}

// Save writes the cache to its file atomically (a temporary file in the
// same directory, renamed over it). Entries another process saved to the
// file since Open are kept, unless c measured the same ones.
func (c *Cache) Save() error {
	if c.path == "" {
		return ErrNoPath
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, err := os.ReadFile(c.path); err == nil {
		disk := &Cache{entries: map[key]time.Duration{}, scratch: map[key]int64{}}
		if disk.decode(b) == nil {
			for k, d := range disk.entries {
				if _, ok := c.entries[k]; !ok {
					c.entries[k] = d
					if b, ok := disk.scratch[k]; ok {
						c.scratch[k] = b
					}
				}
			}
		}
	}
	f := file{Format: Format, Version: Version, Entries: make([]fileEntry, 0, len(c.entries))}
	for k, d := range c.entries {
		e := fileEntry{Device: k.device, Layer: k.layer, Tactic: k.tactic, NS: int64(d), Timer: k.timer}
		if b, ok := c.scratch[k]; ok {
			e.Scratch = &b
		}
		f.Entries = append(f.Entries, e)
	}
	sort.Slice(f.Entries, func(i, j int) bool {
		a, b := f.Entries[i], f.Entries[j]
		if a.Device != b.Device {
			return a.Device < b.Device
		}
		if a.Layer != b.Layer {
			return a.Layer < b.Layer
		}
		if a.Tactic != b.Tactic {
			return a.Tactic < b.Tactic
		}
		return a.Timer < b.Timer
	})
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("tactic: timing cache: %w", err)
	}
	b = append(b, '\n')
	tmp, err := tempfile.Create(filepath.Dir(c.path), "."+filepath.Base(c.path)+".tmp")
	if err != nil {
		return fmt.Errorf("tactic: save timing cache: %w", err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), c.path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("tactic: save timing cache %s: %w", c.path, werr)
	}
	return nil
}

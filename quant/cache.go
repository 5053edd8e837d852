package quant

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/kilnai/kiln/ir"
)

// CacheVersion is the version of the calibration cache format WriteTable
// writes and ReadTable reads.
const CacheVersion = 1

const cacheMagic = "kiln-calibration"

// WriteTable writes t to path as a calibration cache, a text file:
//
//	kiln-calibration 1
//	method entropy            (or "percentile 99.99", "minmax")
//	graph sha256:<hex>        (GraphHash of the calibrated graph)
//	entries <n>
//	<amax as float32 bits, 8 hex digits> <value name, Go-quoted>  # amax <a>, scale <a/127>
//	...
//
// one entry per line, sorted by name: the range amax as the exact bits of a
// float32 (the INT8 scale is amax/127), so that a table reads back bit for
// bit; the text after '#' is a comment for people. The file is written to a temporary name and renamed, so a reader
// never sees half of it.
func WriteTable(path string, t *Table) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d\n", cacheMagic, CacheVersion)
	switch t.Method {
	case Percentile:
		fmt.Fprintf(&b, "method %s %s\n", t.Method, strconv.FormatFloat(t.Percentile, 'g', -1, 64))
	default:
		fmt.Fprintf(&b, "method %s\n", t.Method)
	}
	if t.Graph != "" {
		fmt.Fprintf(&b, "graph %s\n", t.Graph)
	}
	fmt.Fprintf(&b, "entries %d\n", len(t.Entries))
	for _, name := range t.Names() {
		a := t.Entries[name]
		fmt.Fprintf(&b, "%08x %s  # amax %g, scale %g\n", math.Float32bits(a), strconv.Quote(name), a, a/127)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrCache, path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: write %s: %w", ErrCache, path, err)
	}
	return nil
}

// ReadTable reads a calibration cache written by WriteTable. Check it
// against the graph to quantize with Table.CheckGraph (QuantizeINT8 does).
func ReadTable(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCache, err)
	}
	t, err := parseTable(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCache, path, err)
	}
	t.Source = path
	return t, nil
}

// parseTable parses a cache file's contents (errors are not wrapped).
func parseTable(data []byte) (*Table, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	next := func() (string, bool) {
		for sc.Scan() {
			line++
			s := strings.TrimSpace(sc.Text())
			if s != "" {
				return s, true
			}
		}
		return "", false
	}
	s, ok := next()
	if !ok {
		return nil, fmt.Errorf("empty file, not a calibration cache")
	}
	f := strings.Fields(s)
	if len(f) != 2 || f[0] != cacheMagic {
		return nil, fmt.Errorf("line %d: not a kiln calibration cache (want %q)", line, cacheMagic+" "+strconv.Itoa(CacheVersion))
	}
	if v, err := strconv.Atoi(f[1]); err != nil || v != CacheVersion {
		return nil, fmt.Errorf("line %d: cache format version %s, this kiln reads version %d; calibrate again", line, f[1], CacheVersion)
	}
	t := &Table{Entries: map[string]float32{}}
	want := -1
	sawMethod := false
	for {
		s, ok := next()
		if !ok {
			break
		}
		f := strings.Fields(s)
		switch f[0] {
		case "method":
			if len(f) < 2 {
				return nil, fmt.Errorf("line %d: method without a name", line)
			}
			m, err := ParseMethod(f[1])
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			t.Method = m
			if m == Percentile {
				if len(f) != 3 {
					return nil, fmt.Errorf("line %d: percentile without its value", line)
				}
				p, err := strconv.ParseFloat(f[2], 64)
				if err != nil || !(p > 0 && p <= 100) {
					return nil, fmt.Errorf("line %d: bad percentile %q", line, f[2])
				}
				t.Percentile = p
			}
			sawMethod = true
			continue
		case "graph":
			if len(f) != 2 {
				return nil, fmt.Errorf("line %d: bad graph line", line)
			}
			t.Graph = f[1]
			continue
		case "entries":
			n, err := strconv.Atoi(f[len(f)-1])
			if len(f) != 2 || err != nil || n < 0 {
				return nil, fmt.Errorf("line %d: bad entries line", line)
			}
			want = n
			continue
		}
		// an entry: 8 hex digits, a space, a quoted name, an optional comment.
		if len(s) < 10 || s[8] != ' ' {
			return nil, fmt.Errorf("line %d: want <8 hex digits> <quoted name>, got %q", line, clip(s))
		}
		bits, err := strconv.ParseUint(s[:8], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad float32 bits %q", line, s[:8])
		}
		rest := strings.TrimLeft(s[9:], " ")
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: the value name is not a quoted string: %q", line, clip(rest))
		}
		name, _ := strconv.Unquote(q)
		if tail := strings.TrimSpace(rest[len(q):]); tail != "" && !strings.HasPrefix(tail, "#") {
			return nil, fmt.Errorf("line %d: unexpected %q after the name", line, clip(tail))
		}
		a := math.Float32frombits(uint32(bits))
		if math.IsNaN(float64(a)) || a < 0 {
			return nil, fmt.Errorf("line %d: range of %q is %v", line, name, a)
		}
		if _, dup := t.Entries[name]; dup {
			return nil, fmt.Errorf("line %d: %q appears twice", line, name)
		}
		t.Entries[name] = a
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !sawMethod {
		return nil, fmt.Errorf("no method line")
	}
	if want < 0 {
		return nil, fmt.Errorf("no entries line")
	}
	if want != len(t.Entries) {
		return nil, fmt.Errorf("the file says %d entries but holds %d (truncated?)", want, len(t.Entries))
	}
	return t, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// GraphHash returns "sha256:<hex>", a digest of g's structure: its inputs
// (names, types), outputs, nodes (op, domain, name, attributes, input and
// output names, subgraphs) and constants (name, type, contents). It does not
// depend on the order of g.Nodes, nor on the types inference gives to
// intermediate values, so it is the same before and after engine.New.
func GraphHash(g *ir.Graph) string {
	return "sha256:" + hex.EncodeToString(graphDigest(g))
}

func graphDigest(g *ir.Graph) []byte {
	h := sha256.New()
	w := func(parts ...string) {
		for _, p := range parts {
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
			h.Write(n[:])
			h.Write([]byte(p))
		}
	}
	consts := map[*ir.Value]bool{}
	w("inputs")
	for _, v := range g.Inputs {
		w(v.Name, v.Type.String())
		if v.Const != nil {
			consts[v] = true
		}
	}
	w("outputs")
	for _, v := range g.Outputs {
		w(v.Name)
	}
	nodes := make([]string, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		nh := sha256.New()
		nw := func(parts ...string) {
			for _, p := range parts {
				var l [8]byte
				binary.LittleEndian.PutUint64(l[:], uint64(len(p)))
				nh.Write(l[:])
				nh.Write([]byte(p))
			}
		}
		nw(n.Domain, n.OpType, n.Name)
		for _, v := range n.Inputs {
			if v == nil {
				nw("<nil>")
				continue
			}
			nw(v.Name)
			if v.Const != nil && v.Producer == nil {
				consts[v] = true
			}
		}
		nw("->")
		for _, v := range n.Outputs {
			if v == nil {
				nw("<nil>")
			} else {
				nw(v.Name)
			}
		}
		keys := make([]string, 0, len(n.Attrs))
		for k := range n.Attrs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := n.Attrs[k]
			nw(k, strconv.Itoa(int(a.Type)), strconv.FormatFloat(float64(a.F), 'g', -1, 32), strconv.FormatInt(a.I, 10), a.S,
				fmt.Sprint(a.Floats), fmt.Sprint(a.Ints), strings.Join(a.Strings, "\x00"))
			if a.T != nil {
				nw(a.T.DType.String(), fmt.Sprint(a.T.Shape), string(a.T.Data))
			}
			for _, t := range a.Tensors {
				nw(t.DType.String(), fmt.Sprint(t.Shape), string(t.Data))
			}
			if a.G != nil {
				nh.Write(graphDigest(a.G))
			}
			for _, sg := range a.Graphs {
				nh.Write(graphDigest(sg))
			}
		}
		nodes = append(nodes, string(nh.Sum(nil)))
	}
	sort.Strings(nodes)
	w("nodes")
	w(nodes...)
	cv := make([]*ir.Value, 0, len(consts))
	for v := range consts {
		cv = append(cv, v)
	}
	sort.Slice(cv, func(i, j int) bool { return cv[i].Name < cv[j].Name })
	w("consts")
	for _, v := range cv {
		c := v.Const
		w(v.Name, c.DType.String(), fmt.Sprint(c.Shape), string(c.Data), strings.Join(c.Strings, "\x00"))
	}
	return h.Sum(nil)
}

package cuda

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Enumerated cuBLASLt candidates (MatmulOptions.Enumerate): besides the
// heuristic's results, the algorithms cublasLtMatmulAlgoGetIds lists for
// the product's types, each in configurations its capability attributes
// allow (tiles, stages, CTA swizzling, cluster shapes), ranked by an
// estimate of their time from the waves their tile grids make on the
// GPU's SMs (tileCost), the heuristic's algorithms and the others in turn,
// each checked by cublasLtMatmulAlgoCheck within the workspace limit.
//
// Enumerator values, from cublasLt.h (CUDA 12.x/13; the values have not
// changed since they were added):
//
//	cublasLtMatmulAlgoCapAttributes_t: CUBLASLT_ALGO_CAP_SPLITK_SUPPORT = 0
//	(int32), CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT = 2 (uint32),
//	CUBLASLT_ALGO_CAP_TILE_IDS = 6 (uint32 array; size 0 queries its
//	length through sizeWritten), CUBLASLT_ALGO_CAP_STAGES_IDS = 13 (uint32
//	array, likewise).
//	cublasLtMatmulAlgoConfigAttributes_t: CUBLASLT_ALGO_CONFIG_ID = 0,
//	_TILE_ID = 1 (uint32), _SPLITK_NUM = 2, _REDUCTION_SCHEME = 3,
//	_CTA_SWIZZLING = 4 (uint32), _CUSTOM_OPTION = 5, _STAGES_ID = 6
//	(uint32), _INNER_SHAPE_ID = 7 (uint16), _CLUSTER_SHAPE_ID = 8 (uint16).
//	cublasLtClusterShape_t: CUBLASLT_CLUSTER_SHAPE_AUTO = 0, _1x1x1 = 2,
//	_2x1x1 = 3, _4x1x1 = 4, _1x2x1 = 5, _2x2x1 = 6.
//	cublasLtMatmulTile_t: CUBLASLT_MATMUL_TILE_UNDEFINED = 0, 8x8 = 1, ...
//	(ltTileShapes below, rows x columns of cuBLASLt's column-major D).
//
// Signatures: cublasLtMatmulAlgoGetIds(handle, computeType, scaleType,
// Atype, Btype, Ctype, Dtype, int requestedAlgoCount, int algoIdsArray[],
// int *returnAlgoCount); cublasLtMatmulAlgoInit(handle, computeType,
// scaleType, Atype, Btype, Ctype, Dtype, int algoId, cublasLtMatmulAlgo_t
// *algo); cublasLtMatmulAlgoCapGetAttribute(const cublasLtMatmulAlgo_t
// *algo, attr, void *buf, size_t sizeInBytes, size_t *sizeWritten).
const (
	ltCapSwizzle       = 2
	ltCapTileIDs       = 6
	ltCapStagesIDs     = 13
	ltAlgoConfigTile   = 1
	ltAlgoConfigSwz    = 4
	ltAlgoConfigStages = 6
	ltAlgoConfigClust  = 8
)

// ltTileShapes are cublasLtMatmulTile_t's shapes (rows x columns) by id.
var ltTileShapes = map[int][2]int{
	1: {8, 8}, 2: {8, 16}, 3: {16, 8}, 4: {8, 32}, 5: {16, 16}, 6: {32, 8}, 7: {8, 64}, 8: {16, 32},
	9: {32, 16}, 10: {64, 8}, 11: {32, 32}, 12: {32, 64}, 13: {64, 32}, 14: {32, 128}, 15: {64, 64},
	16: {128, 32}, 17: {64, 128}, 18: {128, 64}, 19: {64, 256}, 20: {128, 128}, 21: {256, 64},
	22: {64, 512}, 23: {128, 256}, 24: {256, 128}, 25: {512, 64}, 26: {64, 96}, 27: {96, 64},
	28: {96, 128}, 29: {128, 160}, 30: {160, 128}, 31: {192, 128}, 32: {128, 192}, 33: {128, 96},
	34: {32, 256}, 35: {256, 32},
}

// ltClusterShapes are the cluster shapes tried beside AUTO (0) where
// cuBLASLt accepts the attribute: 1x1x1, 2x1x1, 1x2x1.
var ltClusterShapes = []int{2, 3, 5}

// Bounds of the enumeration: at most ltEnumMax candidates a product, at
// most ltEnumStages stage counts of one algorithm and tile (then that
// tile's first with CTA swizzling, and with a cluster shape: at most 3 a
// tile), at most ltEnumChecks
// calls of cublasLtMatmulAlgoCheck, at most ltEnumIDs algorithms.
const ltEnumMax, ltEnumStages, ltEnumChecks, ltEnumIDs = 24, 1, 600, 256

// ltDefaultSMs is the SM count the waves arithmetic assumes when
// MatmulOptions.SMs is 0 (an H100 SXM).
const ltDefaultSMs = 132

// LtConfig is one cuBLASLt algorithm configuration: its identity in a
// plan and in the timing cache (String, ParseLtConfig). Fields are
// cuBLASLt's enumerator values (0: undefined or automatic).
type LtConfig struct {
	Algo, Tile, Stages, Swizzle, Cluster, SplitK, Reduction int
}

// String is the stable description: "algo=66 tile=20 stages=22 swizzle=0
// cluster=0" (split-K and reduction only when split).
func (c LtConfig) String() string {
	s := fmt.Sprintf("algo=%d tile=%d stages=%d swizzle=%d cluster=%d", c.Algo, c.Tile, c.Stages, c.Swizzle, c.Cluster)
	if c.SplitK > 1 {
		s += fmt.Sprintf(" splitk=%d reduction=%d", c.SplitK, c.Reduction)
	}
	return s
}

// TileString names the tile shape ("128x256"), or its id when unknown.
func (c LtConfig) TileString() string {
	if sh, ok := ltTileShapes[c.Tile]; ok {
		return fmt.Sprintf("%dx%d", sh[0], sh[1])
	}
	return fmt.Sprintf("tile#%d", c.Tile)
}

// ParseLtConfig reads what LtConfig.String wrote.
func ParseLtConfig(s string) (LtConfig, error) {
	var c LtConfig
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 || seen[k] {
			return c, fmt.Errorf("cuBLASLt configuration %q: bad field %q", s, f)
		}
		seen[k] = true
		switch k {
		case "algo":
			c.Algo = n
		case "tile":
			c.Tile = n
		case "stages":
			c.Stages = n
		case "swizzle":
			c.Swizzle = n
		case "cluster":
			c.Cluster = n
		case "splitk":
			c.SplitK = n
		case "reduction":
			c.Reduction = n
		default:
			return c, fmt.Errorf("cuBLASLt configuration %q: unknown field %q", s, k)
		}
	}
	if !seen["algo"] {
		return c, fmt.Errorf("cuBLASLt configuration %q: no algo", s)
	}
	return c, nil
}

// ltAlgoFn holds the enumeration's functions, all optional.
type ltAlgoFn struct {
	getIDs, init, capGet uintptr
}

func (b *CUBLASLt) algoFns() *ltAlgoFn {
	f := &ltAlgoFn{}
	f.getIDs, _ = b.lib.sym("cublasLtMatmulAlgoGetIds")
	f.init, _ = b.lib.sym("cublasLtMatmulAlgoInit")
	f.capGet, _ = b.lib.sym("cublasLtMatmulAlgoCapGetAttribute")
	return f
}

// tileCost estimates, in arbitrary units, the time of a product whose D
// (rows x cols) is cut in tiles of tr x tc on sms SMs, one tile an SM at
// a time: waves x the time of one tile, a tile's time per step of K being
// its math (tr*tc) or, for small tiles, its loads (tr+tc, weighted so that
// 128 x 128 is where the two meet: 64 (tr+tc)). Whole waves of large
// tiles cost least: BERT-base's output projection (D 768 x 4096, 132
// SMs) in 128 x 128 tiles is 192 tiles, 2 waves: 32768; in 128 x 192, 132
// tiles, 1 wave: 24576; in 64 x 64, 6 waves: 49152. +Inf for a tile of
// unknown shape.
func tileCost(rows, cols, tr, tc, sms int) float64 {
	if tr <= 0 || tc <= 0 || sms <= 0 {
		return math.Inf(1)
	}
	tiles := ((rows + tr - 1) / tr) * ((cols + tc - 1) / tc)
	waves := (tiles + sms - 1) / sms
	return float64(waves) * float64(max(tr*tc, 64*(tr+tc)))
}

// config reads the configuration of the algorithm in C memory at buf.
func (p *LtMatmul) config(buf unsafe.Pointer) LtConfig {
	f := p.f
	var c LtConfig
	if f.algoConfigGet == 0 {
		return LtConfig{Algo: -1}
	}
	get := func(attr, size int) int {
		var v uint32
		var written uint64
		if call(f.algoConfigGet, uintptr(buf), uintptr(attr), uintptr(unsafe.Pointer(&v)), uintptr(size), uintptr(unsafe.Pointer(&written))) != 0 {
			return 0
		}
		if size == 2 {
			return int(uint16(v))
		}
		return int(int32(v))
	}
	c.Algo = get(ltAlgoConfigID, 4)
	c.Tile = get(ltAlgoConfigTile, 4)
	c.Stages = get(ltAlgoConfigStages, 4)
	c.Swizzle = get(ltAlgoConfigSwz, 4)
	c.Cluster = get(ltAlgoConfigClust, 2)
	if c.SplitK = get(ltAlgoConfigSplitK, 4); c.SplitK > 1 {
		c.Reduction = get(ltAlgoConfigReduction, 4)
	} else {
		c.SplitK = 0
	}
	return c
}

// capU32s reads an array capability (TILE_IDS, STAGES_IDS) of the
// algorithm at buf; nil when the library does not say.
func capU32s(fn uintptr, buf unsafe.Pointer, attr int) []uint32 {
	var written uint64
	if call(fn, uintptr(buf), uintptr(attr), 0, 0, uintptr(unsafe.Pointer(&written))) != 0 || written == 0 || written%4 != 0 || written > 4096 {
		return nil
	}
	vals := make([]uint32, written/4)
	if call(fn, uintptr(buf), uintptr(attr), uintptr(unsafe.Pointer(&vals[0])), uintptr(written), uintptr(unsafe.Pointer(&written))) != 0 {
		return nil
	}
	return vals
}

func capU32(fn uintptr, buf unsafe.Pointer, attr int) uint32 {
	var v uint32
	var written uint64
	if call(fn, uintptr(buf), uintptr(attr), uintptr(unsafe.Pointer(&v)), 4, uintptr(unsafe.Pointer(&written))) != 0 {
		return 0
	}
	return v
}

// setConfig initializes the algorithm at buf as c says (AlgoInit, then
// each attribute); false when cuBLASLt refuses one.
func (p *LtMatmul) setConfig(h CUBLASLtHandle, af *ltAlgoFn, buf unsafe.Pointer, c LtConfig) bool {
	f := p.f
	dt := uintptr(p.dt)
	if call(af.init, uintptr(h.p), cublasCompute32F, cudaR32F, dt, dt, dt, dt, uintptr(int32(c.Algo)), uintptr(buf)) != 0 {
		return false
	}
	set := func(attr, size, v int) bool {
		u := uint32(v)
		return call(f.algoConfigSet, uintptr(buf), uintptr(attr), uintptr(unsafe.Pointer(&u)), uintptr(size)) == 0
	}
	ok := set(ltAlgoConfigTile, 4, c.Tile) && set(ltAlgoConfigStages, 4, c.Stages)
	if ok && c.Swizzle != 0 {
		ok = set(ltAlgoConfigSwz, 4, c.Swizzle)
	}
	if ok && c.Cluster != 0 {
		ok = set(ltAlgoConfigClust, 2, c.Cluster)
	}
	if ok && c.SplitK > 1 {
		ok = set(ltAlgoConfigSplitK, 4, c.SplitK) && set(ltAlgoConfigReduction, 4, c.Reduction)
	}
	return ok
}

// check runs cublasLtMatmulAlgoCheck on the algorithm at buf (res: 96
// bytes after it) and returns the workspace it needs, or false.
func (p *LtMatmul) check(h CUBLASLtHandle, buf unsafe.Pointer, maxWorkspace int) (int, bool) {
	res := unsafe.Slice((*byte)(unsafe.Add(buf, 64)), ltHeuristicResultSize)
	clear(res)
	lc := p.ly
	if p.lc != nil {
		lc = p.lc
	}
	if call(p.f.algoCheck, uintptr(h.p), uintptr(p.desc), uintptr(p.la), uintptr(p.lb), uintptr(lc), uintptr(p.ly),
		uintptr(buf), uintptr(unsafe.Pointer(&res[0]))) != 0 {
		return 0, false
	}
	if state := int32(binary.LittleEndian.Uint32(res[72:76])); state != 0 {
		return 0, false
	}
	ws := binary.LittleEndian.Uint64(res[64:72])
	if ws > uint64(maxWorkspace) {
		return 0, false
	}
	return int(ws), true
}

// appendConfig adds the algorithm at buf as a candidate described by c.
func (p *LtMatmul) appendConfig(buf unsafe.Pointer, c LtConfig, ws int) {
	var a [64]byte
	copy(a[:], unsafe.Slice((*byte)(buf), 64))
	p.algos = append(p.algos, a)
	p.Candidates = append(p.Candidates, LtAlgo{Index: -1, Workspace: ws, ID: c.Algo})
	p.Splits = append(p.Splits, LtSplit{Parts: c.SplitK, Reduction: c.Reduction})
	p.setConfigName(len(p.Candidates)-1, c.String())
}

// setConfigName records candidate i's description in Configs.
func (p *LtMatmul) setConfigName(i int, c string) {
	for len(p.Configs) < len(p.Candidates) {
		p.Configs = append(p.Configs, "")
	}
	p.Configs[i] = c
}

// Config is candidate i's configuration (LtConfig.String), "" when not
// known (a product planned without MatmulOptions.Enumerate).
func (p *LtMatmul) Config(i int) string {
	if i < 0 || i >= len(p.Configs) {
		return ""
	}
	return p.Configs[i]
}

// addEnumerated appends, after the heuristic's results, up to ltEnumMax
// configurations of the algorithms cublasLtMatmulAlgoGetIds lists
// (MatmulOptions.Enumerate). The list depends only on the library, the
// product and sms: planning the same product twice gives the same list.
func (p *LtMatmul) addEnumerated(h CUBLASLtHandle, maxWorkspace, sms int) {
	f := p.f
	af := p.b.algoFns()
	if af.getIDs == 0 || af.init == 0 || af.capGet == 0 || f.algoConfigSet == 0 || f.algoCheck == 0 || f.algoConfigGet == 0 {
		return
	}
	if sms <= 0 {
		sms = ltDefaultSMs
	}
	buf := cMalloc(64 + ltHeuristicResultSize)
	defer cFree(buf)
	algo := unsafe.Slice((*byte)(buf), 64)
	// the heuristic's configurations: not added twice
	have := map[string]bool{}
	heurStages := map[int][]int{}   // the stage counts the heuristic chose, by algorithm
	heurClusters := map[int][]int{} // and the cluster shapes
	for i, a := range p.algos {
		copy(algo, a[:])
		c := p.config(buf)
		have[c.String()] = true
		p.setConfigName(i, c.String())
		if !slices.Contains(heurStages[c.Algo], c.Stages) {
			heurStages[c.Algo] = append(heurStages[c.Algo], c.Stages)
		}
		if !slices.Contains(heurClusters[c.Algo], c.Cluster) {
			heurClusters[c.Algo] = append(heurClusters[c.Algo], c.Cluster)
		}
	}
	ids := make([]int32, ltEnumIDs)
	var got int32
	dt := uintptr(p.dt)
	if call(af.getIDs, uintptr(h.p), cublasCompute32F, cudaR32F, dt, dt, dt, dt, ltEnumIDs,
		uintptr(unsafe.Pointer(&ids[0])), uintptr(unsafe.Pointer(&got))) != 0 || got <= 0 {
		return
	}
	ids = ids[:min(int(got), ltEnumIDs)]
	// the heuristic's algorithms even where the list leaves them out (on an
	// H100 with cuBLASLt 13, 64 ids asked did not reach its algorithm 66)
	for _, a := range p.Candidates {
		if a.ID >= 0 && !slices.Contains(ids, int32(a.ID)) {
			ids = append(ids, int32(a.ID))
		}
	}
	// cuBLASLt's D is N x M (column-major): tiles are cut over N rows and M columns.
	type tileOf struct {
		algo, tile   int
		cost         float64
		area         int
		stages       []int
		swz, cluster bool
		bases        []int // cluster shapes for the first configuration: AUTO, the heuristic's, ltClusterShapes
	}
	heurAlgo := map[int]bool{}
	for _, a := range p.Candidates {
		heurAlgo[a.ID] = true
	}
	var family, others []tileOf // the heuristic's algorithms' tiles, the others'
	for _, id := range ids {
		if call(af.init, uintptr(h.p), cublasCompute32F, cudaR32F, dt, dt, dt, dt, uintptr(id), uintptr(buf)) != 0 {
			continue
		}
		// the stage counts the heuristic chose for this algorithm first,
		// then the capability's order
		var stages, rest []int
		for _, s := range capU32s(af.capGet, buf, ltCapStagesIDs) {
			if slices.Contains(heurStages[int(id)], int(s)) {
				stages = append(stages, int(s))
			} else {
				rest = append(rest, int(s))
			}
		}
		if stages = append(stages, rest...); len(stages) == 0 {
			stages = []int{0}
		}
		swz := capU32(af.capGet, buf, ltCapSwizzle) == 1
		// cluster shapes: only where the attribute can be set (Hopper's algorithms)
		cl := uint16(ltClusterShapes[0])
		cluster := call(f.algoConfigSet, uintptr(buf), ltAlgoConfigClust, uintptr(unsafe.Pointer(&cl)), 2) == 0
		for _, t := range capU32s(af.capGet, buf, ltCapTileIDs) {
			sh := ltTileShapes[int(t)]
			to := tileOf{algo: int(id), tile: int(t), cost: tileCost(p.N, p.M, sh[0], sh[1], sms),
				area: sh[0] * sh[1], stages: stages, swz: swz, cluster: cluster, bases: []int{0}}
			if cluster {
				for _, cl := range append(slices.Clone(heurClusters[int(id)]), ltClusterShapes...) {
					if !slices.Contains(to.bases, cl) {
						to.bases = append(to.bases, cl)
					}
				}
			}
			if heurAlgo[int(id)] {
				family = append(family, to)
			} else {
				others = append(others, to)
			}
		}
	}
	// least estimated cost (whole waves of large tiles) first, then larger
	// tiles, then the ids; the heuristic's algorithms and the others in turn
	byCost := func(a, b tileOf) int {
		if c := cmp.Compare(a.cost, b.cost); c != 0 {
			return c
		}
		if c := cmp.Compare(b.area, a.area); c != 0 {
			return c
		}
		if c := cmp.Compare(a.algo, b.algo); c != 0 {
			return c
		}
		return cmp.Compare(a.tile, b.tile)
	}
	slices.SortStableFunc(family, byCost)
	slices.SortStableFunc(others, byCost)
	var tiles []tileOf
	for i := range max(len(family), len(others)) {
		if i < len(family) {
			tiles = append(tiles, family[i])
		}
		if i < len(others) {
			tiles = append(tiles, others[i])
		}
	}
	added, checks := 0, 0
	try := func(c LtConfig) bool {
		if have[c.String()] || checks >= ltEnumChecks || added >= ltEnumMax {
			return false
		}
		checks++
		if !p.setConfig(h, af, buf, c) {
			return false
		}
		ws, ok := p.check(h, buf, maxWorkspace)
		if !ok {
			return false
		}
		have[c.String()] = true
		p.appendConfig(buf, c, ws)
		added++
		return true
	}
	for _, t := range tiles {
		if added >= ltEnumMax || checks >= ltEnumChecks {
			break
		}
		// per tile: the first ltEnumStages stage counts that check (with the
		// cluster shape AUTO, else the first of t.bases that checks: Hopper's
		// algorithm 66 may refuse AUTO), then the first of them with CTA
		// swizzling, and with another cluster shape (2x1x1, else 1x2x1)
		n := 0
		var first *LtConfig
		for _, s := range t.stages {
			if n >= ltEnumStages || checks >= ltEnumChecks {
				break
			}
			for _, cl := range t.bases {
				c := LtConfig{Algo: t.algo, Tile: t.tile, Stages: s, Cluster: cl}
				if try(c) {
					n++
					if first == nil {
						first = &c
					}
					break
				}
			}
		}
		if first == nil {
			continue
		}
		if t.swz {
			c := *first
			c.Swizzle = 1
			try(c)
		}
		if t.cluster {
			for _, cl := range ltClusterShapes[1:] {
				c := *first
				if cl == c.Cluster {
					continue
				}
				c.Cluster = cl
				if try(c) {
					break
				}
			}
		}
	}
}

// AddConfig adds the configuration c describes (LtConfig.String) to the
// candidates, checked by cublasLtMatmulAlgoCheck within maxWorkspace
// bytes, and returns its index; one already there is found, not added.
// It is how a plan's enumerated choice is planned again.
func (p *LtMatmul) AddConfig(h CUBLASLtHandle, c string, maxWorkspace int) (int, error) {
	if i := slices.Index(p.Configs, c); i >= 0 && c != "" {
		return i, nil
	}
	cfg, err := ParseLtConfig(c)
	if err != nil {
		return -1, err
	}
	af := p.b.algoFns()
	f := p.f
	if af.init == 0 || f.algoConfigSet == 0 || f.algoCheck == 0 {
		return -1, &Error{Call: "cublasLtMatmulAlgoInit", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED", Msg: "this cuBLASLt cannot configure algorithms"}
	}
	buf := cMalloc(64 + ltHeuristicResultSize)
	defer cFree(buf)
	if !p.setConfig(h, af, buf, cfg) {
		return -1, &Error{Call: "cublasLtMatmulAlgoConfigSetAttribute", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED", Msg: c}
	}
	ws, ok := p.check(h, buf, maxWorkspace)
	if !ok {
		return -1, &Error{Call: "cublasLtMatmulAlgoCheck", Code: 15, Name: "CUBLAS_STATUS_NOT_SUPPORTED",
			Msg: fmt.Sprintf("%s for %dx%dx%d within %d bytes of workspace", c, p.M, p.N, p.K, maxWorkspace)}
	}
	p.appendConfig(buf, cfg, ws)
	return len(p.Candidates) - 1, nil
}
